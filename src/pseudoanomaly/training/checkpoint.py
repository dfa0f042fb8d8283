"""Checkpoint files: written atomically, read back with ``torch.load(..., weights_only=True)``; the layout of a
trainer's ``checkpoint.pt`` (:func:`training_state` writes it, :func:`read_training_state` checks it for resume).

Everything stored is a tensor, a number, a string, a bool, ``None`` or a list/tuple/dict of those, so no code
is unpickled on load. A write goes to a temporary file in the same directory that is then ``os.replace``-d
over the target: a crash or a full disk mid-write leaves the previous checkpoint as it was.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..io import atomic_write
from .config import TrainerConfig

__all__ = [
    "atomic_save",
    "load_checkpoint",
    "save_segmenter",
    "load_segmenter",
    "training_state",
    "read_training_state",
    "CHECKPOINT_FORMAT",
]

# Bumped when the layout of a training checkpoint changes incompatibly.
CHECKPOINT_FORMAT = 1


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` ``obj`` to ``path`` via a temporary file and ``os.replace``; return the path.

    Args:
        obj: plain data and tensors.
        path: target file; its directory is created if needed.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = atomic_save({"step": 3, "weight": torch.ones(2)}, Path(tmp) / "run" / "state.pt")
        ...     load_checkpoint(path)["step"]
        3
    """
    return atomic_write(path, lambda f: torch.save(obj, f))


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``.

    Args:
        path: file written by a trainer or :func:`save_segmenter`.
        map_location: where tensors are loaded.

    Returns:
        The stored dict. A trainer's ``checkpoint.pt`` holds ``"format"``, ``"trainer"``, ``"config"``,
        ``"progress"``, ``"models"`` (``restoration`` and ``segmentation`` state dicts), ``"optimizer"``,
        ``"scheduler"``, ``"rng"`` and ``"history"``.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     load_checkpoint(atomic_save({"weight": torch.zeros(2)}, Path(tmp) / "state.pt"))
        {'weight': tensor([0., 0.])}
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"checkpoint path={str(path)!r} is a directory; pass the checkpoint file itself")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint path={str(path)!r} does not exist")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, IndexError) as exc:
        # torch's own message runs to several paragraphs and suggests weights_only=False, which would run whatever
        # code the file holds: give the file and the reason in one line instead.
        raise ValueError(f"checkpoint path={str(path)!r} cannot be loaded: {_unreadable_reason(exc)}") from None
    if not isinstance(data, dict):
        raise ValueError(f"checkpoint path={str(path)!r} holds a {type(data).__name__}, not a checkpoint dict")
    return data


def _unreadable_reason(exc: BaseException) -> str:
    """One line on why ``torch.load(..., weights_only=True)`` failed."""
    refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
    if refused:
        return (f"it refers to {refused.group(1)}, which is code, not tensor data (refused: loading it could run "
                "that code; a checkpoint holds only tensors and plain data)")
    if isinstance(exc, EOFError):
        return "the file is empty"
    if isinstance(exc, pickle.UnpicklingError):
        return "not a torch checkpoint, or one holding objects other than tensors and plain data (refused)"
    return f"truncated or not a torch checkpoint ({type(exc).__name__})"


def save_segmenter(segmenter: nn.Module, path: str | os.PathLike[str], config: dict[str, Any] | None = None) -> Path:
    """Save the final weights of an :class:`~pseudoanomaly.models.AnomalySegmenter` (or any module).

    Args:
        segmenter: the module whose ``state_dict`` is saved (e.g. ``trainer.export()``).
        path: target file.
        config: optional plain-data record of how it was trained (e.g. ``trainer.config.to_dict()``).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from pseudoanomaly.models import AnomalySegmenter, RestorationUNet, SegmentationNet
        >>> def small_segmenter():
        ...     return AnomalySegmenter(RestorationUNet(base_width=4, depth=1),
        ...                             SegmentationNet(base_width=2, channel_multipliers=(1, 2)))
        >>> trained = small_segmenter()
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = save_segmenter(trained, Path(tmp) / "segmenter.pt", config={"seed": 0})
        ...     loaded = load_segmenter(small_segmenter(), path)
        >>> all(torch.equal(a, b) for a, b in zip(trained.state_dict().values(), loaded.state_dict().values()))
        True
    """
    state = {k: v.detach().cpu() for k, v in segmenter.state_dict().items()}
    return atomic_save({"format": CHECKPOINT_FORMAT, "state_dict": state, "config": config}, path)


def load_segmenter(segmenter: nn.Module, path: str | os.PathLike[str]) -> nn.Module:
    """Load weights saved by :func:`save_segmenter` (or a training checkpoint) into ``segmenter``; return it.

    Args:
        segmenter: a module built with the same architecture as the saved one.
        path: file from :func:`save_segmenter`, or a trainer's ``checkpoint.pt`` (its ``restoration`` and
            ``segmentation`` weights are loaded into ``segmenter.restoration`` / ``segmenter.segmentation``).

    Returns:
        ``segmenter``, with the saved weights.

    Example:
        From a file of :func:`save_segmenter` (see there), or from a trainer's checkpoint, which stores the two
        nets under ``"models"``:

        >>> import tempfile
        >>> from pathlib import Path
        >>> from pseudoanomaly.models import AnomalySegmenter, RestorationUNet, SegmentationNet
        >>> def small_segmenter():
        ...     return AnomalySegmenter(RestorationUNet(base_width=4, depth=1),
        ...                             SegmentationNet(base_width=2, channel_multipliers=(1, 2)))
        >>> trained = small_segmenter()
        >>> models = {"restoration": trained.restoration.state_dict(),
        ...           "segmentation": trained.segmentation.state_dict()}
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = atomic_save({"models": models}, Path(tmp) / "checkpoint.pt")
        ...     loaded = load_segmenter(small_segmenter(), path).eval()
        >>> torch.equal(loaded.restoration.head.weight, trained.restoration.head.weight)
        True
    """
    data = load_checkpoint(path)
    if "state_dict" in data:
        load_state_dict_checked(segmenter, data["state_dict"], path)
    elif "models" in data:
        for name, state in data["models"].items():
            load_state_dict_checked(getattr(segmenter, name), state, path, name)
    else:
        raise ValueError(f"path={str(path)!r} holds neither 'state_dict' nor 'models'; keys: {sorted(data)}")
    return segmenter


def load_state_dict_checked(module: nn.Module, state: object, path: str | os.PathLike[str], name: str = "") -> None:
    """``module.load_state_dict(state)``, raising a one-line ``ValueError`` naming ``path`` and the first key that
    does not match (missing, unexpected or of another shape) instead of torch's multi-line report."""
    where = f"checkpoint path={str(path)!r}" + (f" ({name})" if name else "")
    if not isinstance(state, dict):
        raise ValueError(f"{where}: holds a {type(state).__name__} where a state dict was expected")
    own = module.state_dict()
    for key, value in own.items():
        if key not in state:
            raise ValueError(f"{where} does not match the {type(module).__name__}: key {key!r} is missing "
                             f"(another architecture?)")
        theirs = state[key]
        if isinstance(theirs, torch.Tensor) and theirs.shape != value.shape:
            raise ValueError(f"{where} does not match the {type(module).__name__}: key {key!r} has shape "
                             f"{tuple(theirs.shape)} in the checkpoint, {tuple(value.shape)} in the model "
                             "(another architecture?)")
    unexpected = [key for key in state if key not in own]
    if unexpected:
        raise ValueError(f"{where} does not match the {type(module).__name__}: unexpected key {unexpected[0]!r} "
                         "(another architecture?)")
    module.load_state_dict(state)


# The keys of a trainer's checkpoint besides "format" and "trainer", in the order written.
TRAINING_STATE_KEYS = ("config", "progress", "models", "optimizer", "scheduler", "rng", "history")


def training_state(
    *,
    trainer: str,
    config: TrainerConfig,
    phase: int,
    phase_name: str,
    step: int,
    steps_per_epoch: int,
    world_size: int,
    models: Mapping[str, nn.Module],
    optimizer: torch.optim.Optimizer | None,
    scheduler: Any,
    rng: Sequence[Mapping[str, Any]],
    history: list[dict[str, Any]],
    max_steps: int | Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The content of a trainer's ``checkpoint.pt`` after ``step`` steps of phase number ``phase``.

    Args:
        trainer: class name of the trainer; :func:`read_training_state` accepts only the same one.
        config: the run's config (stored with :meth:`~pseudoanomaly.training.TrainerConfig.to_dict`).
        phase: index of the phase to continue (``len(phases)`` once training is done).
        phase_name: its name (``"done"`` once training is done).
        step: steps of that phase already taken.
        steps_per_epoch: batches per epoch of the training data.
        world_size: number of processes.
        models: name -> net whose ``state_dict`` is stored (``restoration`` and ``segmentation``).
        optimizer: the phase's optimizer, or ``None`` between phases (the next phase starts a fresh one).
        scheduler: its lr scheduler, or ``None``.
        rng: one ``{"torch": ..., "synthesis": ...}`` RNG state per process, in rank order.
        history: the evaluation history so far.
        max_steps: the step budget of ``fit``, stored only when set (see
            :meth:`~pseudoanomaly.training.Trainer.fit`).

    Returns:
        ``{"format", "trainer", "config", "progress", "models", "optimizer", "scheduler", "rng", "history"}``:
        plain data and tensors only, for :func:`atomic_save`.
    """
    epoch, batch = divmod(step, steps_per_epoch)
    progress = {"phase": phase, "phase_name": phase_name, "step": step, "epoch": epoch, "batch": batch,
                "steps_per_epoch": steps_per_epoch, "world_size": world_size}
    if max_steps is not None:  # absent, not None, when unset: checkpoints of runs without a budget keep their layout
        progress["max_steps"] = dict(max_steps) if isinstance(max_steps, Mapping) else max_steps
    return {
        "format": CHECKPOINT_FORMAT,
        "trainer": trainer,
        "config": config.to_dict(),
        "progress": progress,
        "models": {name: net.state_dict() for name, net in models.items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        # The data order needs no state of its own: it is a function of these numbers (see SeededBatchSampler).
        "rng": {"torch": [r["torch"] for r in rng], "synthesis": [r["synthesis"] for r in rng],
                "data_order": {"seed": config.seed, "phase": phase, "epoch": epoch, "batch": batch}},
        "history": history,
    }


def read_training_state(
    path: str | os.PathLike[str],
    *,
    trainer: str,
    config: TrainerConfig,
    steps_per_epoch: int,
    world_size: int,
    max_steps: int | Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Load a trainer's checkpoint and check that this run can resume from it.

    Args:
        path: a ``checkpoint.pt`` written from :func:`training_state`.
        trainer, config, steps_per_epoch, world_size, max_steps: those of the resuming run; each must match the
            checkpoint's (the config except its output settings,
            :meth:`~pseudoanomaly.training.TrainerConfig.trajectory_diff`), or the run would not continue the same
            trajectory.

    Returns:
        The stored dict (layout in :func:`training_state`).

    Raises:
        ValueError: naming ``path`` and what differs, or what is missing.
    """
    saved = load_checkpoint(path)
    where = f"resume={str(path)!r}"
    if saved.get("format") != CHECKPOINT_FORMAT or saved.get("trainer") != trainer:
        raise ValueError(f"{where} is a checkpoint of {saved.get('trainer')!r} (format {saved.get('format')}), "
                         f"not of {trainer} (format {CHECKPOINT_FORMAT})")
    missing = [k for k in TRAINING_STATE_KEYS if k not in saved]
    if missing:
        raise ValueError(f"{where} is an incomplete checkpoint: no {', '.join(missing)}")
    diff = config.trajectory_diff(saved["config"])
    if diff:
        detail = ", ".join(f"{k}: checkpoint {a!r} vs config {b!r}" for k, (a, b) in diff.items())
        raise ValueError(f"{where} was written with a different config ({detail})")
    progress = saved["progress"]
    if progress["steps_per_epoch"] != steps_per_epoch:
        raise ValueError(f"{where} was trained with {progress['steps_per_epoch']} steps per epoch, this train_data "
                         f"gives {steps_per_epoch}: the data order would not match")
    if progress["world_size"] != world_size:
        raise ValueError(f"{where} was written by {progress['world_size']} processes, this run has {world_size}")
    budget = dict(max_steps) if isinstance(max_steps, Mapping) else max_steps
    if progress.get("max_steps") != budget:
        raise ValueError(f"{where} was trained with max_steps={progress.get('max_steps')!r}, this run has "
                         f"max_steps={budget!r}: pass fit the same step budget, or the phase lengths would differ")
    return saved
