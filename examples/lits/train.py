"""``train``: the paper's two-phase training on prepared healthy slices, and the run folder it writes.

    python -m examples.lits train --data prepared/train --out runs/cpu --preset cpu [--val prepared/test]

Zhang, Deng & Li (SASHIMI 2023, Sec. 3.1): the restoration U-Net learns to undo synthesized anomalies for 200
epochs, then, with it frozen, DRAEM's segmentation net learns to find them for a single epoch (longer overfits
to the synthetic anomalies, their Fig. 3). Adam at lr 1e-4, batch 8, 256 x 256 slices.

Settings and presets (``paper``, ``cpu``, ``demo``): :mod:`examples.lits.settings`; the run folder it writes:
:mod:`examples.lits.runs`.

``--val`` names prepared tumor slices on which Dice and AUROC are tracked during phase 2 for the Fig. 3 plot; they
never influence training (no early stopping, no threshold tuning).

Several GPUs (or CPU processes): ``torchrun --nproc-per-node N -m examples.lits train ...`` runs the library's
data parallelism: ``--batch-size`` stays the global batch, each process takes its shard of every batch and the
gradients are averaged (for the same images and anomalies, the step of one process on the whole batch, as the
library's tests check), except for batch-norm statistics, which each process computes over its own shard. Each
process draws the anomalies of its shard from its own seeded stream, so a run is reproducible for a given number
of processes, not equal to a one-process run. Rank 0 holds the run folder and writes everything in it;
``--resume`` needs the same number of processes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

import pseudoanomaly
from pseudoanomaly.models import AnomalySegmenter, EnsembleSegmenter
from pseudoanomaly.training import TwoPhaseTrainer, init_distributed, save_segmenter
from pseudoanomaly.training.distributed import rank_and_world_size

from .arguments import open_unit_interval
from .calibration import DEFAULT_FALSE_POSITIVE_FRACTION, calibration_record
from .dataset import load_slices
from .locking import writes_folder
from .runs import INFER_BATCH, SEGMENTER_FORMAT, RunFiles, load_run, pick_device, seeded_nets, write_json
from .settings import TrainSettings, add_settings_arguments, prepare_mismatch, settings_from_args, training_inputs

__all__ = ["TrainResult", "train", "add_arguments", "main"]


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
    calibration: dict[str, Any] | None = None  # the lesion threshold set on the training livers (rank 0)


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
    false_positive_fraction: float = DEFAULT_FALSE_POSITIVE_FRACTION,
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
        false_positive_fraction: the run's lesion threshold is set at the end so that this share of the training
            livers' volume lies above it (:mod:`examples.lits.calibrate`; ``calibrate`` sets it again on held-out
            healthy scans).

    Returns:
        A :class:`TrainResult`.
    """
    if isinstance(false_positive_fraction, bool) or not isinstance(false_positive_fraction, (int, float)) or \
            not 0 < false_positive_fraction < 1:
        raise ValueError(f"false_positive_fraction must be in (0, 1), got {false_positive_fraction!r}")
    if settings.ensemble > 1:
        return _train_ensemble(data, Path(out), settings, preset=preset, val=val, resume=resume, progress=progress,
                               stop_after=stop_after, false_positive_fraction=false_positive_fraction)
    start = time.perf_counter()
    run = RunFiles(Path(out))
    if resume and not run.checkpoint.is_file():
        raise FileNotFoundError(f"{run.checkpoint}: no checkpoint to resume from")
    if not resume and run.checkpoint.is_file():
        raise FileExistsError(f"{run.root} already holds a run ({run.checkpoint}); pass --resume to continue it "
                              "or choose another --out")
    # slabs need every slice of a run of neighbours: max_slices then counts slabs (training_inputs)
    prepared = load_slices(data, settings.size, settings.max_slices if settings.slab is None else None)
    size = int(prepared.images.shape[-1])
    if size % settings.nets.size_multiple:
        raise ValueError(f"{data}: slices are {size} x {size}, not a multiple of {settings.nets.size_multiple} as "
                         "these nets need; set --size")
    val_set = load_slices(val, size) if val is not None else None
    arch = settings.nets.architecture()
    restoration, segmentation = seeded_nets(arch, settings.trainer.seed)
    train_set, synthesis, batch_size = training_inputs(prepared, settings)
    config = dataclasses.replace(settings.trainer, out_dir=str(run.root), progress=progress,
                                 device=pick_device(settings.trainer.device), batch_size=batch_size)
    slices = len(prepared) if settings.slab is None else int(train_set.index.unique().numel())
    record = {
        "format": "examples.lits.run/1",
        "preset": preset,
        "settings": settings.to_dict(),
        "trainer": config.to_dict(),
        "architecture": arch,
        "size": size,
        "synthesis": repr(synthesis),
        "data": {"path": str(Path(data).resolve()), "slices": slices, "volumes": len(set(prepared.case_ids)),
                 "prepare_config": prepared.manifest.get("config"), "fingerprint": prepared.fingerprint()},
        "val": None if val_set is None else {"path": str(Path(val).resolve()), "slices": len(val_set)},
        "versions": {"pseudoanomaly": pseudoanomaly.__version__, "torch": torch.__version__,
                     "python": platform.python_version()},
    }
    rank, world = rank_and_world_size()  # under torchrun: each process trains on its shard of every batch
    if world > 1:
        record["processes"] = world
    if resume:
        _check_same_run(run, record)
    elif rank == 0:  # one writer
        run.root.mkdir(parents=True, exist_ok=True)
        write_json(run.config, record)

    trainer = TwoPhaseTrainer(restoration, segmentation, synthesis, config)
    result = TrainResult(run=run, completed=False, train_slices=slices)
    if bool(prepared.tumor.any()):
        result.warnings.append(f"{data}: the training slices hold tumor labels; the method expects healthy livers "
                               "(prepare --layout btcv)")
    mismatch = prepare_mismatch(preset, prepared.manifest.get("config"))
    if mismatch:
        result.warnings.append(f"{data}: prepared with {mismatch}, not as prepare's {preset!r} preset that goes "
                               f"with train's; run prepare --preset {preset} for this preset's intended data")
    history = trainer.fit(train_set, None if val_set is None else val_set.eval_dataset(),
                          resume=run.checkpoint if resume else None, stop_after=stop_after)
    if trainer.stopped_early:
        result.steps, result.seconds = stop_after, time.perf_counter() - start
        return result
    if rank == 0:
        write_json(run.history, history)
        meta = {"format": SEGMENTER_FORMAT, "architecture": arch, "size": size, "preset": preset,
                "prepare_config": prepared.manifest.get("config"), "trainer": config.to_dict()}
        # the run's lesion threshold, on the healthy livers it trained on (calibrate sets it on held-out ones)
        inference = AnomalySegmenter(trainer.restoration, trainer.segmentation, batch_size=INFER_BATCH).eval()
        meta["calibration"] = result.calibration = calibration_record(inference, prepared, false_positive_fraction,
                                                                       "training", data)
        save_segmenter(inference, run.segmenter, config=meta)  # the same weights as trainer.export()
    steps_per_epoch = len(train_set) // config.batch_size
    result.completed, result.history = True, history
    result.steps = sum(phase.total_steps(steps_per_epoch) for phase in trainer.phases)
    result.seconds = time.perf_counter() - start
    return result


MEMBERS = "members"  # an ensemble's runs: RUN/members/<k>/, each a whole run folder


def member_seed(seed: int, member: int, members: int) -> int:
    """The training seed of member ``member`` of an ensemble of ``members`` started with ``seed``: ensembles of
    consecutive seeds share no member, and an ensemble of one is the plain run of ``seed``."""
    return seed * members + member


def _train_ensemble(data: str | os.PathLike, out: Path, settings: TrainSettings, *, preset: str | None,
                    val: str | os.PathLike | None, resume: bool, progress: bool, stop_after: int | None,
                    false_positive_fraction: float) -> TrainResult:
    """``settings.ensemble`` whole runs of consecutive seeds in ``out/members/<k>``, one after the other, then the
    ensemble's ``segmenter.pt`` (every member's weights) calibrated on the training livers."""
    start = time.perf_counter()
    run = RunFiles(out)
    count = settings.ensemble
    members = [out / MEMBERS / str(k) for k in range(count)]
    record = {"format": "examples.lits.run/1", "preset": preset, "settings": settings.to_dict(),
              "members": [str(Path(MEMBERS) / str(k)) for k in range(count)],
              "member_seeds": [member_seed(settings.trainer.seed, k, count) for k in range(count)]}
    started = run.config.is_file() or any(RunFiles(m).checkpoint.is_file() for m in members)
    if not resume and (started or run.segmenter.is_file()):
        raise FileExistsError(f"{run.root} already holds a run ({run.config}); pass --resume to continue it or "
                              "choose another --out")
    if resume:
        if not run.config.is_file():
            raise FileNotFoundError(f"{run.config}: missing; nothing to resume in {run.root}")
        saved = json.loads(run.config.read_text())
        if saved.get("settings") != record["settings"]:
            raise ValueError(f"{run.config}: --resume with other settings than the ensemble was started with")
    else:
        run.root.mkdir(parents=True, exist_ok=True)
        write_json(run.config, record)
    result = TrainResult(run=run, completed=False)
    left, per_member = stop_after, 0
    for k, folder in enumerate(members):
        if RunFiles(folder).segmenter.is_file():
            continue  # a member finished by an earlier call
        member = settings.replace(ensemble=1, seed=member_seed(settings.trainer.seed, k, count))
        part = train(data, folder, member, preset=preset, val=val, resume=RunFiles(folder).checkpoint.is_file(),
                     progress=progress, stop_after=left, false_positive_fraction=false_positive_fraction)
        result.warnings.extend(w for w in part.warnings if w not in result.warnings)
        result.steps += part.steps
        result.train_slices = part.train_slices
        if not part.completed:
            result.seconds = time.perf_counter() - start
            return result
        per_member = part.steps
        if left is not None:
            left = max(left - part.steps, 1)
    loaded = [load_run(folder, pick_device(settings.trainer.device), INFER_BATCH) for folder in members]
    ensemble = EnsembleSegmenter([segmenter for segmenter, _ in loaded])
    meta = dict(loaded[0][1])
    meta.pop("calibration", None)
    meta.update(members=count, member_seeds=record["member_seeds"])
    prepared = load_slices(data, settings.size, settings.max_slices if settings.slab is None else None)
    meta["calibration"] = result.calibration = calibration_record(ensemble, prepared, false_positive_fraction,
                                                                   "training", data)
    save_segmenter(ensemble, run.segmenter, config=meta)
    first = RunFiles(members[0]).history
    if first.is_file():  # Fig. 3 of the report: the first member's phase-2 history
        result.history = json.loads(first.read_text())
        write_json(run.history, result.history)
    result.completed = True
    result.train_slices = result.train_slices or len(prepared)
    if per_member:  # every member trains as long: the whole ensemble's steps
        result.steps = per_member * count
    result.seconds = time.perf_counter() - start
    return result


def _check_same_run(run: RunFiles, record: dict[str, Any]) -> None:
    """Resume only the run that was started: same settings, data and slices (output settings aside)."""
    if not run.config.is_file():
        raise FileNotFoundError(f"{run.config}: missing; cannot check that --resume continues the same run")
    saved = json.loads(run.config.read_text())
    # Settings compare as what they mean: runs of earlier versions recorded them flat.
    saved["settings"] = _saved_settings(run.config)[0].to_dict()
    if "fingerprint" not in (saved.get("data") or {}):  # a run started before data fingerprints were recorded
        record = {**record, "data": {k: v for k, v in record["data"].items() if k != "fingerprint"}}
    keys = ("settings", "architecture", "size", "data")
    diff = [k for k in keys if saved.get(k) != record.get(k)]
    if diff:
        detail = "; ".join(f"{k}: saved {saved.get(k)!r} vs now {record.get(k)!r}" for k in diff)
        raise ValueError(f"{run.config}: --resume with different {', '.join(diff)} ({detail})")


def _saved_settings(path: Path) -> tuple[TrainSettings, str | None]:
    """The settings and preset a run folder's ``config.json`` records; errors name the file."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; nothing to resume in {path.parent}")
    saved = json.loads(path.read_text())
    try:
        return TrainSettings.from_dict(saved.get("settings") or {}), saved.get("preset")
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: {exc}") from exc


# -------------------------------------------------------------------------------------------------- CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the ``train`` command."""
    parser.add_argument("--data", type=Path, required=True, help="prepared healthy slices (prepare --layout btcv)")
    parser.add_argument("--out", type=Path, required=True, help="run folder to write")
    parser.add_argument("--val", type=Path, help="prepared tumor slices to track Dice/AUROC in phase 2 (Fig. 3)")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    parser.add_argument("--stop-after", type=int, metavar="STEPS",
                        help="stop after STEPS optimizer steps as if interrupted (continue with --resume)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--false-positive-fraction", type=open_unit_interval, metavar="F",
                        default=DEFAULT_FALSE_POSITIVE_FRACTION,
                        help="set the run's lesion threshold so that this share of the training livers' volume "
                             "lies above it (calibrate sets it again on held-out healthy scans; default: "
                             "%(default)s)")
    add_settings_arguments(parser)


def main(args: argparse.Namespace) -> int:
    """Run ``train`` from parsed arguments; under ``torchrun`` (``WORLD_SIZE`` > 1) as one of its processes."""
    if not init_distributed():
        return _main(args)
    try:
        code = _main(args)
        # every process reaches the end before any tears the group down: a process that leaves while a peer
        # still talks to it can abort the peer (gloo: "terminate called without an active exception")
        dist.barrier()
        return code
    finally:
        dist.destroy_process_group()


def _main(args: argparse.Namespace) -> int:
    rank = rank_and_world_size()[0]
    base = None
    preset = args.preset
    if args.resume:
        # A resumed run keeps the settings it started with; overrides given now must agree with them.
        base, preset = _saved_settings(RunFiles(args.out).config)
    settings = settings_from_args(args, base)
    result = train(args.data, args.out, settings, preset=preset, val=args.val, resume=args.resume,
                   progress=not args.no_progress, stop_after=args.stop_after,
                   false_positive_fraction=args.false_positive_fraction)
    if rank != 0:  # rank 0 reports
        return 0
    for warning in result.warnings:
        print(f"warning: {warning}")
    if not result.completed:
        print(f"stopped after {result.steps} steps ({result.seconds:.0f} s); continue with: "
              f"python -m examples.lits train --data {args.data} --out {args.out} --resume")
        return 0
    print(f"trained on {result.train_slices} slices, {result.steps} steps in {result.seconds:.0f} s; "
          f"weights: {result.run.segmenter}")
    if result.calibration is not None:
        print(f"lesion threshold {result.calibration['threshold']:.3f}: {100 * result.calibration['achieved']:.3g}% "
              f"of the training livers' volume lies above it (at most "
              f"{100 * result.calibration['false_positive_fraction']:g}%; calibrate sets it on held-out healthy scans)")
    if result.history:
        last = result.history[-1]
        print(f"phase-2 validation at its last step: Dice {_pct(last.get('dice'))}, "
              f"pixel AUROC {_pct(last.get('auroc'))}")
    return 0


def _pct(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{100 * value:.1f}%"
