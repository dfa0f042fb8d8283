"""``train``: the paper's two-phase training on prepared healthy slices, and the run folder it writes.

    python -m examples.lits train --data prepared/train --out runs/cpu --preset cpu [--val prepared/test]

Zhang, Deng & Li (SASHIMI 2023, Sec. 3.1): the restoration U-Net learns to undo synthesized anomalies for 200
epochs, then, with it frozen, DRAEM's segmentation net learns to find them for a single epoch (longer overfits
to the synthetic anomalies, their Fig. 3). Adam at lr 1e-4, batch 8, 256 x 256 slices.

Presets (every field can be overridden on the command line):

- ``paper``: the settings above with the released architectures (7.7 M + 28.4 M parameters); a GPU job.
- ``cpu``: 128 x 128 slices (at most 150), a restoration U-Net of 8 base channels and a 4-level segmentation
  net of 16, 1,200 + 400 steps at lr 1e-3 with a cosine decay per phase, and the ``mixed`` synthesis; about 10
  minutes on 2 CPU cores (``benchmarks/lits_cpu_preset.py``, ``benchmarks/lits_instrument.py``). Prepare its
  data with ``prepare``'s ``cpu`` preset (the default): liver-box crops and a liver-centred HU window.
- ``demo``: 64 x 64 slices, both nets at 16 base channels, 400 + 300 steps; the ``demo`` command's preset.

NOTE: the CPU presets depart from the paper to fit the budget: slim nets, lr 1e-3 instead of 1e-4, lengths in
steps, and a cosine decay (``scheduler="cosine"``) that lets a short phase end on a settled model rather than
on one step's noise (we saw phase-2 Dice swing by 0.2 between evaluations at a constant lr 1e-3).

A run folder ``RUN`` holds:

- ``config.json``: every setting (preset, overrides, trainer config, data, synthesis, versions);
- ``checkpoint.pt``, ``log.jsonl``: the trainer's resumable checkpoint and JSON-lines log;
- ``history.json``: the phase-2 evaluation history (with ``--val``), the data of the paper's Fig. 3;
- ``segmenter.pt``: the final weights (``torch.load(..., weights_only=True)``) with the architecture and the
  preprocessing needed to rebuild and apply them (:func:`load_run`).

``--val`` names prepared tumor slices on which Dice and AUROC are tracked during phase 2 for the Fig. 3 plot; they
never influence training (no early stopping, no threshold tuning).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import pickle
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import pseudoanomaly
from pseudoanomaly import OneOf, PseudoAnomaly, presets
from pseudoanomaly.masks import BlobMask, BlurredNoiseMask, PerlinMask
from pseudoanomaly.models import AnomalySegmenter, ReconstructiveAE, RestorationUNet, SegmentationNet
from pseudoanomaly.overlays import IntensityShift, TextureBlend
from pseudoanomaly.io import atomic_write
from pseudoanomaly.training import TwoPhaseConfig, TwoPhaseTrainer, load_checkpoint, load_segmenter, save_segmenter

from .arguments import device as device_arg
from .arguments import positive_int
from .dataset import PreparedSet, load_prepared
from .preprocess import PREPARE_PRESETS
from .locking import writes_folder

__all__ = [
    "PRESETS", "SYNTHESES", "mixed_synthesis", "TrainSettings", "TrainResult", "RunFiles", "train", "load_run",
    "build_nets", "load_slices", "add_arguments", "main",
]

# The paper's settings (Sec. 3.1) and the released architectures (RestorationUNet / SegmentationNet defaults).
PAPER_SIZE = 256
PAPER_WIDTH = 64
PAPER_RESTORATION_DEPTH = 3
PAPER_SEGMENTATION_MULTIPLIERS = (1, 2, 4, 8, 8, 8)
PAPER_RESTORATION_EPOCHS = 200
PAPER_SEGMENTATION_EPOCHS = 1
PAPER_LR = 1e-4
PAPER_BATCH_SIZE = 8
# DRAEM's autoencoder is twice as wide as the paper's U-Net (128 vs 64): ablation rows keep that ratio.
AE_WIDTH_RATIO = 2

SEGMENTER_FILE = "segmenter.pt"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.json"
CHECKPOINT_FILE = "checkpoint.pt"  # written by the trainer (pseudoanomaly.training.engine.CHECKPOINT_NAME)
SEGMENTER_FORMAT = "examples.lits.segmenter/1"



# The paper's mask is empty inside a liver-sized ROI ~88% of the time: enough redraws that almost every
# sample gets its anomaly inside the liver (1 - 0.88^50 > 99.8%).
MIXED_MAX_TRIES = 50


def mixed_synthesis() -> OneOf:
    """One of three anomaly families per sample, each inside the liver (redrawn when empty there).

    The paper's first principle is diversity of the synthetic anomalies; its own synthesis is one family,
    and a net trained on one family learns that family's signs. Equal odds of: the paper's blurred-noise
    blobs with its intensity shift; tumor-like smooth blobs (:class:`~pseudoanomaly.masks.BlobMask`) with the
    same shift; DRAEM's Perlin masks filled with a blended noise texture. Unlike ``zhang2023`` (p = 1 but an
    empty mask inside the liver for most liver slices, so most samples carried no anomaly there), every
    sample is anomalous inside the liver. Measured in ``benchmarks/RESULTS.md``.
    """
    return OneOf([
        PseudoAnomaly(BlurredNoiseMask(rejection=True, max_tries=MIXED_MAX_TRIES), IntensityShift()),
        PseudoAnomaly(BlobMask(rejection=True), IntensityShift()),
        PseudoAnomaly(PerlinMask(rejection=True), TextureBlend()),
    ])


# name -> factory of the training synthesis
SYNTHESES = {
    "zhang2023": presets.zhang2023,
    "mixed": mixed_synthesis,
}


@dataclass(frozen=True)
class TrainSettings:
    """Everything that decides a training run.

    Args:
        size: slice side the nets train on (``None``: as prepared).
        restoration_width: channels of the restoration U-Net's first level.
        restoration_depth: its number of downsamplings.
        segmentation_width: channels of the segmentation net's first block.
        segmentation_multipliers: widths of its blocks as multiples of ``segmentation_width``.
        restoration_epochs, segmentation_epochs: length of each phase in epochs...
        restoration_steps, segmentation_steps: ... or in optimizer steps when set.
        batch_size, lr, seed: optimizer batch, Adam learning rate, seed of everything.
        scheduler: ``"none"`` (constant lr, the paper) or ``"cosine"`` (decay to 0 over each phase).
        eval_every: with validation data, evaluate every this many phase-2 steps (0: at its end only).
        checkpoint_every: also checkpoint every this many steps (besides epoch and phase ends).
        max_slices: train on at most this many slices, spread evenly over the volumes (``None``: all).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ...
        synthesis: name of the pseudo-anomaly synthesis in :data:`SYNTHESES`.
        restoration: ``"unet"`` (the paper's restoration U-Net) or ``"ae"`` (DRAEM's autoencoder, no skips).
    """

    size: int | None = PAPER_SIZE
    restoration_width: int = PAPER_WIDTH
    restoration_depth: int = PAPER_RESTORATION_DEPTH
    segmentation_width: int = PAPER_WIDTH
    segmentation_multipliers: tuple[int, ...] = PAPER_SEGMENTATION_MULTIPLIERS
    restoration_epochs: int = PAPER_RESTORATION_EPOCHS
    segmentation_epochs: int = PAPER_SEGMENTATION_EPOCHS
    restoration_steps: int | None = None
    segmentation_steps: int | None = None
    batch_size: int = PAPER_BATCH_SIZE
    lr: float = PAPER_LR
    seed: int = 0
    scheduler: str = "none"
    eval_every: int = 50
    checkpoint_every: int = 100
    max_slices: int | None = None
    device: str = "auto"
    synthesis: str = "zhang2023"
    restoration: str = "unet"

    def __post_init__(self) -> None:
        if self.synthesis not in SYNTHESES:
            raise ValueError(f"synthesis must be one of {sorted(SYNTHESES)}, got {self.synthesis!r}")
        if self.restoration not in ("unet", "ae"):
            raise ValueError(f"restoration must be 'unet' or 'ae', got {self.restoration!r}")
        object.__setattr__(self, "segmentation_multipliers", tuple(int(m) for m in self.segmentation_multipliers))
        for name in ("restoration_width", "segmentation_width", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.size is not None and self.size % self.size_multiple:
            raise ValueError(f"size must be a multiple of {self.size_multiple} for these nets, got {self.size}")

    @property
    def size_multiple(self) -> int:
        """Slice sides must be multiples of this: each net halves the image once per downsampling."""
        return max(2**self.restoration_depth, 2 ** (len(self.segmentation_multipliers) - 1))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["segmentation_multipliers"] = list(self.segmentation_multipliers)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainSettings:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown training setting(s) {unknown}")
        return cls(**data)


PRESETS: dict[str, TrainSettings] = {
    "paper": TrainSettings(eval_every=50, checkpoint_every=500),
    "cpu": TrainSettings(
        size=128, restoration_width=8, segmentation_width=16, segmentation_multipliers=(1, 2, 4, 8),
        restoration_steps=1200, segmentation_steps=400, batch_size=8, lr=1e-3, scheduler="cosine", eval_every=40,
        checkpoint_every=100, max_slices=150, synthesis="mixed",
    ),
    "demo": TrainSettings(
        size=64, restoration_width=16, segmentation_width=16, segmentation_multipliers=(1, 2, 4, 8),
        restoration_steps=400, segmentation_steps=300, batch_size=8, lr=1e-3, scheduler="cosine", eval_every=30,
        checkpoint_every=100,
    ),
}


@dataclass(frozen=True)
class RunFiles:
    """The files of a run folder."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def checkpoint(self) -> Path:
        return self.root / CHECKPOINT_FILE

    @property
    def segmenter(self) -> Path:
        return self.root / SEGMENTER_FILE

    @property
    def history(self) -> Path:
        return self.root / HISTORY_FILE


@dataclass
class TrainResult:
    """What :func:`train` did: ``completed`` is False when it stopped early (``stop_after``); ``steps`` counts
    the optimizer steps of both phases when it completed, those of this call when it stopped early."""

    run: RunFiles
    completed: bool
    history: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    train_slices: int = 0
    warnings: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------ building blocks


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def architecture(settings: TrainSettings, restoration: str = "unet") -> dict[str, Any]:
    """Plain-data description of the two nets, enough for :func:`build_nets` to rebuild them."""
    if restoration == "unet":
        rest = {"type": "unet", "base_width": settings.restoration_width, "depth": settings.restoration_depth}
    elif restoration == "ae":
        rest = {"type": "ae", "base_width": AE_WIDTH_RATIO * settings.restoration_width}
    else:
        raise ValueError(f"restoration must be 'unet' or 'ae', got {restoration!r}")
    seg = {"base_width": settings.segmentation_width,
           "channel_multipliers": list(settings.segmentation_multipliers)}
    return {"restoration": rest, "segmentation": seg}


def build_nets(arch: dict[str, Any]) -> tuple[nn.Module, nn.Module]:
    """The restoration and segmentation nets described by :func:`architecture` (fresh weights)."""
    rest = dict(arch["restoration"])
    kind = rest.pop("type")
    restoration = {"unet": RestorationUNet, "ae": ReconstructiveAE}[kind](**rest)
    seg = dict(arch["segmentation"])
    seg["channel_multipliers"] = tuple(seg["channel_multipliers"])
    return restoration, SegmentationNet(**seg)


def load_slices(directory: str | os.PathLike, size: int | None, max_slices: int | None = None) -> PreparedSet:
    """Prepared slices from ``directory``; a missing folder or manifest raises ``FileNotFoundError`` naming it."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such folder (expected the output of `prepare`)")
    return load_prepared(directory, size=size, max_slices=max_slices)


def _trainer_config(settings: TrainSettings, out: Path | None, progress: bool) -> TwoPhaseConfig:
    return TwoPhaseConfig(
        seed=settings.seed, batch_size=settings.batch_size, lr=settings.lr, scheduler=settings.scheduler,
        restoration_epochs=settings.restoration_epochs, restoration_max_steps=settings.restoration_steps,
        segmentation_epochs=settings.segmentation_epochs, segmentation_max_steps=settings.segmentation_steps,
        eval_every=settings.eval_every, eval_unit="step", checkpoint_every=settings.checkpoint_every,
        out_dir=None if out is None else str(out), progress=progress, device=resolve_device(settings.device),
    )


def seeded_nets(arch: dict[str, Any], seed: int) -> tuple[nn.Module, nn.Module]:
    """:func:`build_nets` with initial weights drawn from ``seed``, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_nets(arch)


class _StopAfter(nn.Module):
    """Wraps the synthesis; raises :class:`_Stop` at the call that would start step ``limit + 1``."""

    def __init__(self, synthesis: nn.Module, limit: int) -> None:
        super().__init__()
        self.synthesis, self.limit, self.calls = synthesis, limit, 0

    def forward(self, images, foreground=None, generator=None):
        if self.calls >= self.limit:
            raise _Stop
        self.calls += 1
        return self.synthesis(images, foreground, generator=generator)


class _Stop(Exception):
    pass


# ------------------------------------------------------------------------------------------------ command


@writes_folder("out", "train")  # one writer per run folder: a second train --out R fails instead of interleaving
def train(
    data: str | os.PathLike,
    out: str | os.PathLike,
    settings: TrainSettings,
    *,
    preset: str | None = None,
    val: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
) -> TrainResult:
    """Train the paper's pipeline on the prepared healthy slices in ``data``; write the run folder ``out``.

    Args:
        data: a ``prepare`` output of healthy livers.
        out: the run folder.
        settings: see :class:`TrainSettings` (``PRESETS`` holds the named ones).
        preset: name recorded in ``config.json``.
        val: optional ``prepare`` output with tumors, to record Dice/AUROC during phase 2 (Fig. 3).
        resume: continue the run in ``out`` from its checkpoint (same settings and data).
        progress: progress bars.
        stop_after: stop (as an interruption would) after this many optimizer steps of this call.

    Returns:
        A :class:`TrainResult`.
    """
    start = time.perf_counter()
    run = RunFiles(Path(out))
    if resume and not run.checkpoint.is_file():
        raise FileNotFoundError(f"{run.checkpoint}: no checkpoint to resume from")
    if not resume and run.checkpoint.is_file():
        raise FileExistsError(f"{run.root} already holds a run ({run.checkpoint}); pass --resume to continue it "
                              "or choose another --out")
    prepared = load_slices(data, settings.size, settings.max_slices)
    size = int(prepared.images.shape[-1])
    if size % settings.size_multiple:
        raise ValueError(f"{data}: slices are {size} x {size}, not a multiple of {settings.size_multiple} as these "
                         "nets need; set --size")
    val_set = load_slices(val, size) if val is not None else None
    arch = architecture(settings, settings.restoration)
    restoration, segmentation = seeded_nets(arch, settings.seed)
    synthesis = SYNTHESES[settings.synthesis]()
    config = _trainer_config(settings, run.root, progress)
    record = {
        "format": "examples.lits.run/1",
        "preset": preset,
        "settings": settings.to_dict(),
        "trainer": config.to_dict(),
        "architecture": arch,
        "size": size,
        "synthesis": repr(synthesis),
        "data": {"path": str(Path(data).resolve()), "slices": len(prepared), "volumes": len(set(prepared.case_ids)),
                 "prepare_config": prepared.manifest.get("config"), "fingerprint": prepared.fingerprint()},
        "val": None if val_set is None else {"path": str(Path(val).resolve()), "slices": len(val_set)},
        "versions": {"pseudoanomaly": pseudoanomaly.__version__, "torch": torch.__version__,
                     "python": platform.python_version()},
    }
    if resume:
        _check_same_run(run, record)
    else:
        run.root.mkdir(parents=True, exist_ok=True)
        write_json(run.config, record)

    trainer = TwoPhaseTrainer(restoration, segmentation,
                              synthesis if stop_after is None else _StopAfter(synthesis, stop_after), config)
    result = TrainResult(run=run, completed=False, train_slices=len(prepared))
    if bool(prepared.tumor.any()):
        result.warnings.append(f"{data}: the training slices hold tumor labels; the method expects healthy livers "
                               "(prepare --layout btcv)")
    mismatch = _prepare_mismatch(preset, prepared.manifest.get("config"))
    if mismatch:
        result.warnings.append(f"{data}: prepared with {mismatch}, not as prepare's {preset!r} preset that goes "
                               f"with train's; run prepare --preset {preset} for this preset's intended data")
    train_set = prepared.train_dataset()
    try:
        history = trainer.fit(train_set, None if val_set is None else val_set.eval_dataset(),
                              resume=run.checkpoint if resume else None)
    except _Stop:
        result.steps, result.seconds = stop_after, time.perf_counter() - start
        return result
    write_json(run.history, history)
    meta = {"format": SEGMENTER_FORMAT, "architecture": arch, "size": size, "preset": preset,
            "prepare_config": prepared.manifest.get("config"), "trainer": config.to_dict()}
    save_segmenter(trainer.export(), run.segmenter, config=meta)
    steps_per_epoch = len(train_set) // settings.batch_size
    result.completed, result.history = True, history
    result.steps = sum(phase.total_steps(steps_per_epoch) for phase in trainer.phases)
    result.seconds = time.perf_counter() - start
    return result


def _prepare_mismatch(preset: str | None, config: dict[str, Any] | None) -> str:
    """How the data's intensity settings differ from those of ``prepare --preset PRESET`` ('' when they agree
    or there is no such prepare preset). The slice size and crop are free; the intensity mapping is not: a net
    trained on one mapping sees another as anomalous everywhere."""
    if preset not in PREPARE_PRESETS or not config:
        return ""
    expected = PREPARE_PRESETS[preset].to_dict()
    keys = ("equalize", "liver_window", "hu_window") if expected.get("liver_window") is None else (
        "equalize", "liver_window")
    diff = [f"{k}={config.get(k)!r}" for k in keys if config.get(k) != expected[k]]
    return ", ".join(diff)


def _check_same_run(run: RunFiles, record: dict[str, Any]) -> None:
    """Resume only the run that was started: same settings, data and slices (output settings aside)."""
    if not run.config.is_file():
        raise FileNotFoundError(f"{run.config}: missing; cannot check that --resume continues the same run")
    saved = json.loads(run.config.read_text())
    if "fingerprint" not in (saved.get("data") or {}):  # a run started before data fingerprints were recorded
        record = {**record, "data": {k: v for k, v in record["data"].items() if k != "fingerprint"}}
    keys = ("settings", "architecture", "size", "data")
    diff = [k for k in keys if saved.get(k) != record.get(k)]
    if diff:
        detail = "; ".join(f"{k}: saved {saved.get(k)!r} vs now {record.get(k)!r}" for k in diff)
        raise ValueError(f"{run.config}: --resume with different {', '.join(diff)} ({detail})")


def write_json(path: Path, data: Any) -> None:
    text = json.dumps(data, indent=1, allow_nan=False, default=_json_default) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def load_run(run: str | os.PathLike, device: str = "cpu") -> tuple[AnomalySegmenter, dict[str, Any]]:
    """The trained segmenter of a run folder (in eval mode, on ``device``) and its metadata.

    Args:
        run: a folder written by :func:`train` (or a ``segmenter.pt`` file).
        device: where the nets go.

    Returns:
        ``(segmenter, meta)``: ``meta`` has ``architecture``, ``size`` and ``prepare_config``.
    """
    path = Path(run)
    if path.is_dir():
        path = RunFiles(path).segmenter
    elif not path.exists():
        raise FileNotFoundError(f"{path}: no such run folder")
    if not path.is_file():
        interrupted = (path.parent / CHECKPOINT_FILE).is_file()
        hint = " (training was interrupted: continue it with train --resume)" if interrupted else ""
        raise FileNotFoundError(f"{path}: no trained weights in this run folder{hint}")
    try:
        meta = load_checkpoint(path).get("config") or {}
    except (RuntimeError, EOFError, pickle.UnpicklingError) as exc:  # truncated or foreign file
        # torch's own message (several paragraphs about weights_only) would bury the path: keep the type only
        raise ValueError(f"{path}: not a readable weights file ({type(exc).__name__}); was it written by "
                         "train?") from exc
    if meta.get("format") != SEGMENTER_FORMAT:
        raise ValueError(f"{path}: not a segmenter written by `train` (format {meta.get('format')!r})")
    restoration, segmentation = build_nets(meta["architecture"])
    segmenter = load_segmenter(AnomalySegmenter(restoration, segmentation), path)
    return segmenter.to(device).eval(), meta


# -------------------------------------------------------------------------------------------------- CLI

# command-line flag -> TrainSettings field
OVERRIDES = {
    "epochs_restoration": "restoration_epochs",
    "epochs_segmentation": "segmentation_epochs",
    "steps_restoration": "restoration_steps",
    "steps_segmentation": "segmentation_steps",
    "batch_size": "batch_size",
    "lr": "lr",
    "size": "size",
    "width": ("restoration_width", "segmentation_width"),
    "seg_width": "segmentation_width",
    "seed": "seed",
    "device": "device",
    "max_slices": "max_slices",
    "eval_every": "eval_every",
    "checkpoint_every": "checkpoint_every",
    "synthesis": "synthesis",
    "restoration": "restoration",
}


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """``--preset`` and the per-field overrides (shared by ``train`` and ``ablation``)."""
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu",
                        help="paper: 256 px, released nets, 200 + 1 epochs (GPU); cpu: 128 px, slim nets, "
                             "~10 min on 2 cores; demo: 64 px, ~4 min (default: cpu)")
    g = parser.add_argument_group("overrides of the preset")
    g.add_argument("--epochs-restoration", type=int, metavar="N", help="phase-1 epochs")
    g.add_argument("--epochs-segmentation", type=int, metavar="N", help="phase-2 epochs")
    g.add_argument("--steps-restoration", type=int, metavar="N", help="phase-1 steps (instead of epochs)")
    g.add_argument("--steps-segmentation", type=int, metavar="N", help="phase-2 steps (instead of epochs)")
    g.add_argument("--batch-size", type=positive_int, metavar="B")
    g.add_argument("--lr", type=float)
    g.add_argument("--size", type=int, metavar="PX", help="train on PX x PX slices (resized from prepared)")
    g.add_argument("--width", type=int, metavar="C", help="first-level channels of both nets")
    g.add_argument("--seg-width", type=int, metavar="C", help="first-level channels of the segmentation net")
    g.add_argument("--seed", type=int)
    g.add_argument("--device", type=device_arg, help="auto (default), cpu, cuda, cuda:1, ...")
    g.add_argument("--max-slices", type=int, metavar="N", help="train on at most N slices")
    g.add_argument("--eval-every", type=int, metavar="N", help="phase-2 steps between evaluations (with --val)")
    g.add_argument("--checkpoint-every", type=int, metavar="N", help="steps between checkpoints")
    g.add_argument("--synthesis", choices=sorted(SYNTHESES), help="pseudo-anomaly synthesis of training")
    g.add_argument("--restoration", choices=("unet", "ae"), help="restoration net: the paper's U-Net or DRAEM's AE")


def settings_from_args(args: argparse.Namespace, base: TrainSettings | None = None) -> TrainSettings:
    """The preset named by ``args.preset`` (or ``base``) with the overrides given on the command line."""
    settings = PRESETS[args.preset] if base is None else base
    changes = {}
    # A phase length given in epochs replaces the preset's length in steps (steps would take precedence).
    if getattr(args, "epochs_restoration", None) is not None:
        changes["restoration_steps"] = None
    if getattr(args, "epochs_segmentation", None) is not None:
        changes["segmentation_steps"] = None
    for flag, fields in OVERRIDES.items():  # in order: --seg-width after --width wins for the segmentation net
        value = getattr(args, flag, None)
        if value is None:
            continue
        for name in (fields,) if isinstance(fields, str) else fields:
            changes[name] = value
    return dataclasses.replace(settings, **changes)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the ``train`` command."""
    parser.add_argument("--data", type=Path, required=True, help="prepared healthy slices (prepare --layout btcv)")
    parser.add_argument("--out", type=Path, required=True, help="run folder to write")
    parser.add_argument("--val", type=Path, help="prepared tumor slices to track Dice/AUROC in phase 2 (Fig. 3)")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    parser.add_argument("--stop-after", type=int, metavar="STEPS",
                        help="stop after STEPS optimizer steps as if interrupted (continue with --resume)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_settings_arguments(parser)


def main(args: argparse.Namespace) -> int:
    """Run ``train`` from parsed arguments."""
    base = None
    preset = args.preset
    if args.resume:
        # A resumed run keeps the settings it started with; overrides given now must agree with them.
        config = RunFiles(args.out).config
        if not config.is_file():
            raise FileNotFoundError(f"{config}: missing; nothing to resume in {args.out}")
        saved = json.loads(config.read_text())
        base, preset = TrainSettings.from_dict(saved["settings"]), saved.get("preset")
    settings = settings_from_args(args, base)
    result = train(args.data, args.out, settings, preset=preset, val=args.val, resume=args.resume,
                   progress=not args.no_progress, stop_after=args.stop_after)
    for warning in result.warnings:
        print(f"warning: {warning}")
    if not result.completed:
        print(f"stopped after {result.steps} steps ({result.seconds:.0f} s); continue with: "
              f"python -m examples.lits train --data {args.data} --out {args.out} --resume")
        return 0
    print(f"trained on {result.train_slices} slices, {result.steps} steps in {result.seconds:.0f} s; "
          f"weights: {result.run.segmenter}")
    if result.history:
        last = result.history[-1]
        print(f"phase-2 validation at its last step: Dice {_pct(last.get('dice'))}, "
              f"pixel AUROC {_pct(last.get('auroc'))}")
    return 0


def _pct(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{100 * value:.1f}%"
