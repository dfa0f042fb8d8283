"""Checkpoint files: written atomically, read back with ``torch.load(..., weights_only=True)``.

Everything stored is a tensor, a number, a string, a bool, ``None`` or a list/tuple/dict of those, so no code
is unpickled on load. A write goes to a temporary file in the same directory that is then ``os.replace``-d
over the target: a crash or a full disk mid-write leaves the previous checkpoint as it was.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["atomic_save", "load_checkpoint", "save_segmenter", "load_segmenter", "CHECKPOINT_FORMAT"]

# Bumped when the layout of a training checkpoint changes incompatibly.
CHECKPOINT_FORMAT = 1


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` ``obj`` to ``path`` via a temporary file and ``os.replace``; return the path.

    Args:
        obj: plain data and tensors.
        path: target file; its directory is created if needed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            # Without fsync, a power loss after os.replace can leave a renamed but empty file.
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``.

    Args:
        path: file written by a trainer or :func:`save_segmenter`.
        map_location: where tensors are loaded.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint path={str(path)!r} does not exist")
    return torch.load(path, map_location=map_location, weights_only=True)


def save_segmenter(segmenter: nn.Module, path: str | os.PathLike[str], config: dict[str, Any] | None = None) -> Path:
    """Save the final weights of an :class:`~pseudoanomaly.models.AnomalySegmenter` (or any module).

    Args:
        segmenter: the module whose ``state_dict`` is saved (e.g. ``trainer.export()``).
        path: target file.
        config: optional plain-data record of how it was trained (e.g. ``trainer.config.to_dict()``).
    """
    state = {k: v.detach().cpu() for k, v in segmenter.state_dict().items()}
    return atomic_save({"format": CHECKPOINT_FORMAT, "state_dict": state, "config": config}, path)


def load_segmenter(segmenter: nn.Module, path: str | os.PathLike[str]) -> nn.Module:
    """Load weights saved by :func:`save_segmenter` (or a training checkpoint) into ``segmenter``; return it.

    Args:
        segmenter: a module built with the same architecture as the saved one.
        path: file from :func:`save_segmenter`, or a trainer's ``checkpoint.pt`` (its ``restoration`` and
            ``segmentation`` weights are loaded into ``segmenter.restoration`` / ``segmenter.segmentation``).
    """
    data = load_checkpoint(path)
    if "state_dict" in data:
        segmenter.load_state_dict(data["state_dict"])
    elif "models" in data:
        for name, state in data["models"].items():
            getattr(segmenter, name).load_state_dict(state)
    else:
        raise ValueError(f"path={str(path)!r} holds neither 'state_dict' nor 'models'; keys: {sorted(data)}")
    return segmenter
