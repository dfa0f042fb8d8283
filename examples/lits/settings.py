"""What decides a training run: the library's trainer config, the two nets, the data size and the synthesis.

:class:`TrainSettings` holds a :class:`~pseudoanomaly.training.TwoPhaseConfig` (optimizer, lengths, seed,
evaluation and checkpoint cadence, device) and a :class:`NetSettings` rather than copying their fields, so a
field the library adds is a setting here at once. The command-line flags of ``train`` and ``ablation`` are
generated from the fields of all three (:func:`add_settings_arguments`), with the help text of their docstrings
and each preset's value shown.

Presets (every field can be overridden on the command line):

- ``paper``: Zhang, Deng & Li (SASHIMI 2023, Sec. 3.1) with the released architectures (7.7 M + 28.4 M
  parameters): 256 x 256 slices, 200 + 1 epochs, Adam at lr 1e-4, batch 8 (the library's defaults); a GPU job.
- ``cpu``: 128 x 128 slices (at most 150), a restoration U-Net of 8 base channels and a 4-level segmentation
  net of 16, 1,200 + 400 steps at lr 1e-3 with a cosine decay per phase, the ``mixed`` synthesis, and an
  ensemble of two such runs (one run's answer on another patient's scan moved by 14 points of Dice over seeds,
  two runs' by 5: ``benchmarks/lits_crossover.py``); about 4-5 minutes a run on 2 CPU cores. Prepare its data with
  ``prepare``'s ``cpu`` preset (the default): liver-box crops and a liver-centred HU window.
- ``demo``: 64 x 64 slices, both nets at 16 base channels, 400 + 300 steps; the ``demo`` command's preset.

NOTE: the CPU presets depart from the paper to fit the budget: slim nets, lr 1e-3 instead of 1e-4, lengths in
steps, and a cosine decay (``scheduler="cosine"``) that lets a short phase end on a settled model rather than
on one step's noise (we saw phase-2 Dice swing by 0.2 between evaluations at a constant lr 1e-3).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import inspect
import re
import types
import typing
import warnings
from dataclasses import dataclass, field
from typing import Any

from pseudoanomaly import OneOf, PseudoAnomaly, presets
from pseudoanomaly.masks import BlobMask, BlurredNoiseMask, PerlinMask
from pseudoanomaly.masks.perlin import VOLUME_THRESHOLD
from pseudoanomaly.models import RestorationUNet, SegmentationNet
from pseudoanomaly.overlays import IntensityShift, TextureBlend
from pseudoanomaly.training import TwoPhaseConfig
from pseudoanomaly.training.config import EVAL_UNITS, OPTIMIZERS, PRECISIONS, RESTORATION_LOSSES, SCHEDULERS

from .arguments import device as device_arg
from .arguments import positive_int
from .preprocess import PREPARE_PRESETS

__all__ = [
    "PRESETS", "SYNTHESES", "RESTORATIONS", "NetSettings", "TrainSettings", "mixed_synthesis", "build_synthesis",
    "training_inputs",
    "add_settings_arguments", "settings_from_args", "prepare_mismatch",
]

# The paper's slice size (Sec. 3.1).
PAPER_SIZE = 256
# DRAEM's autoencoder is twice as wide as the paper's U-Net (128 vs 64): its width follows restoration_width.
AE_WIDTH_RATIO = 2
RESTORATIONS = ("unet", "ae")
# The paper's mask is empty inside a liver-sized ROI ~88% of the time: enough redraws that almost every
# sample gets its anomaly inside the liver (1 - 0.88^50 > 99.8%).
MIXED_MAX_TRIES = 50


def mixed_synthesis(spacing: tuple[float, float, float] | None = None, side: int | None = None) -> OneOf:
    """One of three anomaly families per sample, each inside the liver (redrawn when empty there).

    The paper's first principle is diversity of the synthetic anomalies; its own synthesis is one family,
    and a net trained on one family learns that family's signs. Equal odds of: the paper's blurred-noise
    blobs with its intensity shift; tumor-like smooth blobs (:class:`~pseudoanomaly.masks.BlobMask`) with the
    same shift; DRAEM's Perlin masks filled with a blended noise texture. Unlike ``zhang2023`` (p = 1 but an
    empty mask inside the liver for most liver slices, so most samples carried no anomaly there), every
    sample is anomalous inside the liver. Measured in ``benchmarks/RESULTS.md``.

    With a voxel ``spacing`` (slabs) in units of in-plane pixels, the blurred-noise sizes keep their values in
    these units, as :func:`~pseudoanomaly.presets.zhang2023` does, and the blobs their radii relative to the
    slices' ``side`` (in 2-D a fraction of the image's side); Perlin lattices are counted per slab along each axis, with
    the 3-D threshold that covers volumes as DRAEM's covers images (:data:`pseudoanomaly.masks.perlin.VOLUME_THRESHOLD`).
    """
    if spacing is None:
        noise, blobs = BlurredNoiseMask(rejection=True, max_tries=MIXED_MAX_TRIES), BlobMask(rejection=True)
    else:
        noise = BlurredNoiseMask(rejection=True, max_tries=MIXED_MAX_TRIES, spacing=spacing,
                                 kernel_size=float(_library_default(BlurredNoiseMask, "kernel_size")))
        if side is None:
            raise ValueError("mixed_synthesis: slabs (a spacing) need the slices' side, for the blobs' radii")
        radius = tuple(r * side for r in _library_default(BlobMask, "radius"))  # in-plane pixels, as in 2-D
        blobs = BlobMask(rejection=True, spacing=spacing, radius=radius)
    # slabs: the 3-D threshold with DRAEM's coverage (at 0.5, 3-D Perlin masks cover a tenth as much)
    perlin = PerlinMask(rejection=True) if spacing is None else PerlinMask(rejection=True, threshold=VOLUME_THRESHOLD)
    return OneOf([
        PseudoAnomaly(noise, IntensityShift()),
        PseudoAnomaly(blobs, IntensityShift()),
        PseudoAnomaly(perlin, TextureBlend()),
    ])


def build_synthesis(name: str, spacing: tuple[float, float, float] | None = None, side: int | None = None
                    ) -> OneOf | PseudoAnomaly:
    """The synthesis ``name`` of :data:`SYNTHESES`, for slices, or for slabs of voxels of ``spacing`` (z, y, x)
    in units of in-plane pixels, of slices ``side`` pixels wide.

    Example:
        >>> build_synthesis("zhang2023", spacing=(2.5, 1.0, 1.0), side=128).mask.spacing
        (2.5, 1.0, 1.0)
    """
    if name not in SYNTHESES:
        raise ValueError(f"synthesis must be one of {sorted(SYNTHESES)}, got {name!r}")
    if spacing is None:
        return SYNTHESES[name]()
    return SYNTHESES[name](spacing=spacing) if name == "zhang2023" else SYNTHESES[name](spacing=spacing, side=side)


# name -> factory of the training synthesis
SYNTHESES = {
    "zhang2023": presets.zhang2023,
    "mixed": mixed_synthesis,
}


def _library_default(cls: type, argument: str) -> Any:
    return inspect.signature(cls).parameters[argument].default


@dataclass(frozen=True)
class NetSettings:
    """The two nets (defaults: the released architectures, i.e. the library's defaults).

    Args:
        restoration: ``"unet"`` (the paper's restoration U-Net) or ``"ae"`` (DRAEM's autoencoder, no skips).
        restoration_width: channels of the restoration net's first level.
        restoration_depth: downsamplings of the restoration U-Net.
        segmentation_width: channels of the segmentation net's first block.
        segmentation_multipliers: widths of its blocks as multiples of ``segmentation_width``.
    """

    restoration: str = "unet"
    restoration_width: int = _library_default(RestorationUNet, "base_width")
    restoration_depth: int = _library_default(RestorationUNet, "depth")
    segmentation_width: int = _library_default(SegmentationNet, "base_width")
    segmentation_multipliers: tuple[int, ...] = _library_default(SegmentationNet, "channel_multipliers")

    def __post_init__(self) -> None:
        if self.restoration not in RESTORATIONS:
            raise ValueError(f"restoration must be one of {RESTORATIONS}, got {self.restoration!r}")
        object.__setattr__(self, "segmentation_multipliers", tuple(int(m) for m in self.segmentation_multipliers))
        for name in ("restoration_width", "segmentation_width", "restoration_depth"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def size_multiple(self) -> int:
        """Slice sides must be multiples of this: each net halves the image once per downsampling."""
        return max(2**self.restoration_depth, 2 ** (len(self.segmentation_multipliers) - 1))

    def architecture(self) -> dict[str, Any]:
        """Plain-data description of the two nets (``runs.build_nets`` rebuilds them from it)."""
        if self.restoration == "unet":
            rest = {"type": "unet", "base_width": self.restoration_width, "depth": self.restoration_depth}
        else:
            rest = {"type": "ae", "base_width": AE_WIDTH_RATIO * self.restoration_width}
        seg = {"base_width": self.segmentation_width, "channel_multipliers": list(self.segmentation_multipliers)}
        return {"restoration": rest, "segmentation": seg}


def _trainer_defaults() -> TwoPhaseConfig:
    # Lengths, optimizer and batch are the paper's (the library's defaults); the example evaluates and
    # checkpoints in steps, and picks the device itself ("auto": CUDA when there is one).
    return TwoPhaseConfig(eval_every=50, eval_unit="step", checkpoint_every=100, device="auto")


# Names of earlier versions -> their field now.
_RENAMED = {"restoration_steps": "restoration_max_steps", "segmentation_steps": "segmentation_max_steps"}
# Trainer fields each command sets itself: where the run goes, whether bars show.
COMMAND_FIELDS = frozenset({"out_dir", "progress"})


@dataclass(frozen=True)
class TrainSettings:
    """Everything that decides a training run.

    Any field of ``trainer`` or ``nets`` reads as an attribute of the settings too (``settings.lr``), and
    :meth:`replace` changes fields of any of the three by name.

    Args:
        trainer: the library's two-phase training config; ``out_dir`` and ``progress`` are set by ``train``.
        nets: the two nets.
        size: slice side the nets train on (``None``: as prepared).
        max_slices: train on at most this many slices, spread evenly over the volumes (``None``: all).
        synthesis: name of the pseudo-anomaly synthesis in :data:`SYNTHESES`.
        slab: train on slabs of this many neighbouring slices of a volume, the anomalies synthesized in 3-D
            across them so that one spans slices as a tumour does (``None``: single slices, as the paper).
            ``batch_size`` still counts slices: a step holds ``batch_size // slab`` slabs. ``max_slices`` keeps
            ``max_slices // slab`` slabs.
        ensemble: train this many pairs of nets, of seeds ``seed * ensemble + k`` for ``k < ensemble`` (each a
            whole run in ``members/k``), and segment with the mean of their maps: the answer then depends less
            on one run's luck (``pseudoanomaly.models.EnsembleSegmenter``). 1: one pair, of seed ``seed``.

    Example:
        >>> s = TrainSettings().replace(size=64, lr=1e-3, restoration_width=8)
        >>> s.size, s.trainer.lr, s.nets.restoration_width, s.lr
        (64, 0.001, 8, 0.001)
    """

    trainer: TwoPhaseConfig = field(default_factory=_trainer_defaults)
    nets: NetSettings = field(default_factory=NetSettings)
    size: int | None = PAPER_SIZE
    max_slices: int | None = None
    synthesis: str = "zhang2023"
    slab: int | None = None
    ensemble: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.ensemble, bool) or not isinstance(self.ensemble, int) or self.ensemble < 1:
            raise ValueError(f"ensemble must be an integer >= 1 (pairs of nets), got {self.ensemble!r}")
        if self.synthesis not in SYNTHESES:
            raise ValueError(f"synthesis must be one of {sorted(SYNTHESES)}, got {self.synthesis!r}")
        if self.slab is not None:
            if isinstance(self.slab, bool) or not isinstance(self.slab, int) or self.slab < 2:
                raise ValueError(f"slab must be an integer >= 2 (slices per slab) or None, got {self.slab!r}")
            if self.trainer.batch_size < self.slab:
                raise ValueError(f"slab={self.slab} needs batch_size >= {self.slab} (batch_size counts slices: a "
                                 f"step holds batch_size // slab slabs), got batch_size={self.trainer.batch_size}")
        if self.size is not None and self.size % self.nets.size_multiple:
            raise ValueError(f"size must be a multiple of {self.nets.size_multiple} for these nets, got {self.size}")
        if self.max_slices is not None and self.max_slices < 1:
            raise ValueError(f"max_slices must be >= 1, got {self.max_slices}")

    def __getattr__(self, name: str) -> Any:
        # Called only for names that are not fields: read them from the trainer config or the nets.
        if name.startswith("__"):
            raise AttributeError(name)
        if name in _RENAMED:
            warnings.warn(f"TrainSettings.{name} is now {_RENAMED[name]} (of TwoPhaseConfig)", DeprecationWarning,
                          stacklevel=2)
            name = _RENAMED[name]
        for part in ("trainer", "nets"):
            if name in _field_names(type(object.__getattribute__(self, part))):
                return getattr(object.__getattribute__(self, part), name)
        raise AttributeError(f"{type(self).__name__} has no setting {name!r}")

    def replace(self, **changes: Any) -> TrainSettings:
        """A copy with ``changes`` applied; each name is a field of the settings, of ``trainer`` or of ``nets``.

        Raises:
            ValueError: an unknown name, or a value its dataclass refuses (the message names it).
        """
        own, nets, trainer = {}, {}, {}
        for name, value in changes.items():
            name = _RENAMED.get(name, name)
            if name in _field_names(TrainSettings):
                own[name] = value
            elif name in _field_names(NetSettings):
                nets[name] = value
            elif name in _field_names(TwoPhaseConfig):
                trainer[name] = value
            else:
                raise ValueError(f"unknown training setting {name!r}")
        if nets:
            own["nets"] = dataclasses.replace(own.get("nets", self.nets), **nets)
        if trainer:
            own["trainer"] = dataclasses.replace(own.get("trainer", self.trainer), **trainer)
        return dataclasses.replace(self, **own)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"size", "max_slices", "synthesis", ["slab",] ["ensemble",] "nets", "trainer"}``."""
        nets = dataclasses.asdict(self.nets)
        nets["segmentation_multipliers"] = list(self.nets.segmentation_multipliers)
        own = {"size": self.size, "max_slices": self.max_slices, "synthesis": self.synthesis}
        if self.slab is not None:  # absent from the records of single-slice runs, as before slabs existed
            own["slab"] = self.slab
        if self.ensemble != 1:  # absent from the records of single runs, as before ensembles existed
            own["ensemble"] = self.ensemble
        return {**own, "nets": nets, "trainer": self.trainer.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainSettings:
        """Rebuild settings from :meth:`to_dict` output, or from the flat dict that runs of earlier versions
        recorded in ``config.json`` (so they can still be resumed and read).

        Raises:
            ValueError: an unknown setting, or a value refused.
        """
        data = dict(data)
        if isinstance(data.get("trainer"), dict):
            trainer = TwoPhaseConfig.from_dict(data.pop("trainer"))
            nets = data.pop("nets", {})
            unknown = sorted(set(nets) - _field_names(NetSettings))
            if unknown:
                raise ValueError(f"unknown net setting(s) {unknown}")
            return cls(trainer=trainer, nets=NetSettings(**nets), **data)
        return cls().replace(**data)


def training_inputs(prepared: Any, settings: TrainSettings) -> tuple[Any, OneOf | PseudoAnomaly, int]:
    """What a run trains on: ``(dataset, synthesis, batch_size)`` for the trainer, from the loaded slices.

    Single slices: the slices, the synthesis of ``settings.synthesis`` and the batch size. Slabs
    (``settings.slab``): slabs of the slices (at most ``max_slices // slab``; load the slices without
    ``max_slices``), the synthesis for volumes whose voxel is ``(r, 1, 1)`` with ``r`` the set's median ratio of
    slice thickness to pixel size (so sizes stay the 2-D recipe's in pixels in-plane, and are as deep in the
    patient as they are wide), and ``batch_size // slab`` slabs per step.

    Args:
        prepared: a :class:`~examples.lits.dataset.PreparedSet`.
        settings: the run's settings.
    """
    if settings.slab is None:
        return prepared.train_dataset(), build_synthesis(settings.synthesis), settings.trainer.batch_size
    max_slabs = None if settings.max_slices is None else max(1, settings.max_slices // settings.slab)
    slabs = prepared.slab_dataset(settings.slab, max_slabs)
    voxel = prepared.voxel_mm[slabs.index.flatten()]
    ratio = float((voxel[:, 0] / voxel[:, 1:].mean(dim=1)).median())
    spacing = (round(ratio, 2), 1.0, 1.0)
    synthesis = build_synthesis(settings.synthesis, spacing, side=int(prepared.images.shape[-1]))
    return slabs, synthesis, settings.trainer.batch_size // settings.slab


def _field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls))


PRESETS: dict[str, TrainSettings] = {
    "paper": TrainSettings().replace(checkpoint_every=500),
    "cpu": TrainSettings().replace(
        size=128, restoration_width=8, segmentation_width=16, segmentation_multipliers=(1, 2, 4, 8),
        restoration_max_steps=1200, segmentation_max_steps=400, batch_size=8, lr=1e-3, scheduler="cosine",
        eval_every=40, checkpoint_every=100, max_slices=150, synthesis="mixed", ensemble=2,
    ),
    "demo": TrainSettings().replace(
        size=64, restoration_width=16, segmentation_width=16, segmentation_multipliers=(1, 2, 4, 8),
        restoration_max_steps=400, segmentation_max_steps=300, batch_size=8, lr=1e-3, scheduler="cosine",
        eval_every=30, checkpoint_every=100,
    ),
}


def prepare_mismatch(preset: str | None, config: dict[str, Any] | None) -> str:
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


# ------------------------------------------------------------------------------------------- command line

# Flag spellings of earlier versions, kept working beside the generated ``--field-name``.
_FLAG_ALIASES = {
    "restoration_epochs": ("--epochs-restoration",),
    "segmentation_epochs": ("--epochs-segmentation",),
    "restoration_max_steps": ("--steps-restoration",),
    "segmentation_max_steps": ("--steps-segmentation",),
    "segmentation_width": ("--seg-width",),
}
_CHOICES = {
    "optimizer": OPTIMIZERS, "scheduler": SCHEDULERS, "restoration_loss": RESTORATION_LOSSES,
    "precision": PRECISIONS, "eval_unit": EVAL_UNITS, "synthesis": tuple(SYNTHESES), "restoration": RESTORATIONS,
}
_TYPES = {"batch_size": positive_int, "device": device_arg}
# What the config docstrings call by its library name, as ``train`` spells it on the command line.
_COMMAND_LINE_NAMES = {"``val_data`` in ``fit``": "--val", "``out_dir``": "--out"}


def field_help(cls: type) -> dict[str, str]:
    """``field -> text`` from the ``Args:`` sections of the docstrings of ``cls`` and its bases."""
    texts: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        doc = inspect.getdoc(klass) or ""
        section = re.search(r"^Args:\n((?:(?: {4}.*)?\n)+)", doc + "\n", re.MULTILINE)
        if not section:
            continue
        for names, text in re.findall(r"^ {4}(\w+(?:, \w+)*): (.*(?:\n {8}.*)*)", section.group(1), re.MULTILINE):
            for name in names.split(", "):
                texts[name] = " ".join(text.split())
    return texts


def _flag_fields() -> list[tuple[str, type, str]]:
    """``(field, owner class, group)`` of every setting that has a flag, in help order."""
    groups = [(TrainSettings, "data and synthesis"), (NetSettings, "networks"),
              (TwoPhaseConfig, "training (pseudoanomaly.training.TwoPhaseConfig)")]
    out = []
    for cls, group in groups:
        for f in dataclasses.fields(cls):
            if f.name not in ("trainer", "nets") and f.name not in COMMAND_FIELDS:
                out.append((f.name, cls, group))
    return out


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)  # once per dataclass, not once per field


def _argument_type(cls: type, name: str) -> tuple[Any, str | None]:
    """``(type, nargs)`` for a field from its annotation (``int | None`` -> int; tuples take several values)."""
    base = _type_hints(cls)[name]
    if typing.get_origin(base) in (typing.Union, types.UnionType):
        base = next(a for a in typing.get_args(base) if a is not type(None))
    if typing.get_origin(base) is tuple:
        return typing.get_args(base)[0], "+"
    return _TYPES.get(name, base), None


def _plain(text: str) -> str:
    """Docstring text without reStructuredText markup, for ``--help``."""
    text = re.sub(r":\w+:`~?(?:[\w.]+\.)?([\w]+)`", r"\1", text)  # :class:`~a.b.Name` -> Name
    return text.replace("``", "").replace("%", "%%").rstrip(".")


def _shown(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return " ".join(str(v) for v in value) or "()"
    return "none" if value is None else str(value)


def add_settings_arguments(parser: argparse.ArgumentParser, unused: dict[str, str] | None = None) -> None:
    """``--preset`` and one flag per setting (shared by ``train`` and ``ablation``), generated from the fields.

    Args:
        parser: the command's parser.
        unused: field -> why the command ignores it. Its flag stays (the commands share presets and flags) and
            its help says it has no effect here instead of describing it.
    """
    unused = unused or {}
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu",
                        help="paper: 256 px, released nets, 200 + 1 epochs (GPU); cpu: 128 px, slim nets, "
                             "~10 min on 2 cores; demo: 64 px, ~4 min (default: %(default)s)")
    texts = {**field_help(TwoPhaseConfig), **field_help(NetSettings), **field_help(TrainSettings)}
    groups: dict[str, Any] = {}  # group title -> argument group
    for name, cls, group in _flag_fields():
        if group not in groups:
            groups[group] = parser.add_argument_group(f"{group}; each overrides the preset")
            if cls is NetSettings:
                groups[group].add_argument("--width", type=positive_int, metavar="C",
                                           help="first-level channels of both nets")
        values = {preset: getattr(settings, name) for preset, settings in sorted(PRESETS.items())}
        shown = {_shown(v) for v in values.values()}
        default = (f"all presets: {shown.pop()}" if len(shown) == 1 else
                   "; ".join(f"{p}: {_shown(v)}" for p, v in values.items()))
        kind, nargs = _argument_type(cls, name)
        text = texts.get(name, "")
        for library, flag in _COMMAND_LINE_NAMES.items():
            text = text.replace(library, flag)
        text = f"no effect here: {unused[name]}" if name in unused else _plain(text)
        groups[group].add_argument(f"--{name.replace('_', '-')}", *_FLAG_ALIASES.get(name, ()), dest=name,
                                   type=kind, nargs=nargs, choices=_CHOICES.get(name),
                                   metavar=None if name in _CHOICES else name.split("_")[-1].upper(),
                                   help=f"{text} ({default})")


def settings_from_args(args: argparse.Namespace, base: TrainSettings | None = None) -> TrainSettings:
    """The preset named by ``args.preset`` (or ``base``) with the settings given on the command line."""
    settings = PRESETS[args.preset] if base is None else base
    changes: dict[str, Any] = {}
    # A phase length given in epochs replaces the preset's length in steps (steps would take precedence).
    if getattr(args, "restoration_epochs", None) is not None:
        changes["restoration_max_steps"] = None
    if getattr(args, "segmentation_epochs", None) is not None:
        changes["segmentation_max_steps"] = None
    if getattr(args, "width", None) is not None:
        changes.update(restoration_width=args.width, segmentation_width=args.width)
    for name, _, _ in _flag_fields():  # after --width: --segmentation-width wins for the segmentation net
        value = getattr(args, name, None)
        if value is not None:
            changes[name] = tuple(value) if isinstance(value, list) else value
    return settings.replace(**changes)
