"""Checkpoint files: written atomically, read back with ``torch.load(..., weights_only=True)``.

Everything stored is a tensor, a number, a string, a bool, ``None`` or a list/tuple/dict of those, so no code
is unpickled on load. A write goes to a temporary file in the same directory that is then ``os.replace``-d
over the target: a crash or a full disk mid-write leaves the previous checkpoint as it was.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..io import atomic_write

__all__ = ["atomic_save", "load_checkpoint", "save_segmenter", "load_segmenter", "CHECKPOINT_FORMAT"]

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
