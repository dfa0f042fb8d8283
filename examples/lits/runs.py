"""A run folder: its files, how they are written, and how a trained run is loaded back.

A run folder ``RUN`` (written by ``train``) holds:

- ``config.json``: every setting (preset, settings, trainer config, data, synthesis, versions);
- ``checkpoint.pt``, ``log.jsonl``: the trainer's resumable checkpoint and JSON-lines log;
- ``history.json``: the phase-2 evaluation history (with ``--val``), the data of the paper's Fig. 3;
- ``segmenter.pt``: the final weights (``torch.load(..., weights_only=True)``) with the architecture and the
  preprocessing needed to rebuild and apply them (:func:`load_run`).
"""

from __future__ import annotations

import json
import math
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pseudoanomaly.io import atomic_write
from pseudoanomaly.models import (
    AnomalySegmenter,
    EnsembleSegmenter,
    ReconstructiveAE,
    RestorationUNet,
    SegmentationNet,
)
from pseudoanomaly.training import load_checkpoint, load_segmenter

from .arguments import INFER_PRECISIONS

__all__ = [
    "RunFiles", "load_run", "build_nets", "seeded_nets", "write_json", "finite", "pick_device", "INFER_BATCH",
    "SEGMENTER_FORMAT",
]

SEGMENTER_FILE = "segmenter.pt"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.json"
CHECKPOINT_FILE = "checkpoint.pt"  # written by the trainer (its CHECKPOINT_NAME)
SEGMENTER_FORMAT = "examples.lits.segmenter/1"
# Images per forward pass at inference.
INFER_BATCH = 32
MAX_MEMBERS = 64  # members of an ensemble a segmenter.pt may record (a bound on what loading it allocates)


def pick_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when this machine has one, else ``"cpu"``; any other name as given."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


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


def build_nets(arch: dict[str, Any]) -> tuple[nn.Module, nn.Module]:
    """The restoration and segmentation nets described by :func:`architecture` (fresh weights)."""
    rest = dict(arch["restoration"])
    kind = rest.pop("type")
    restoration = {"unet": RestorationUNet, "ae": ReconstructiveAE}[kind](**rest)
    seg = dict(arch["segmentation"])
    seg["channel_multipliers"] = tuple(seg["channel_multipliers"])
    return restoration, SegmentationNet(**seg)


def seeded_nets(arch: dict[str, Any], seed: int) -> tuple[nn.Module, nn.Module]:
    """:func:`build_nets` with initial weights drawn from ``seed``, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_nets(arch)


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as strict JSON (NaN and Inf as ``null``), atomically."""
    text = json.dumps(finite(data), indent=1, allow_nan=False) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


def finite(value: Any) -> Any:
    """NaN/Inf -> None, recursively (strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def load_run(run: str | os.PathLike, device: str = "cpu", batch_size: int | None = INFER_BATCH,
             precision: str = "fp32") -> tuple[AnomalySegmenter | EnsembleSegmenter, dict[str, Any]]:
    """The trained segmenter of a run folder (in eval mode, on ``device``) and its metadata.

    Args:
        run: a folder written by :func:`train` (or a ``segmenter.pt`` file).
        device: where the nets go.
        batch_size: images per forward pass of the segmenter (inputs may stay on the CPU: each chunk goes to
            ``device`` and its map comes back).
        precision: ``"fp32"``, or ``"bf16"`` for bfloat16 autocast with channels-last nets (see
            :class:`~pseudoanomaly.models.AnomalySegmenter`).

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
    if precision not in INFER_PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(INFER_PRECISIONS)}, got {precision!r}")
    count = meta.get("members", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_MEMBERS:
        raise ValueError(f"{path}: records {count!r} ensemble members (1 to {MAX_MEMBERS} expected)")

    def member() -> AnomalySegmenter:
        return AnomalySegmenter(*build_nets(meta["architecture"]), batch_size=batch_size, precision=precision,
                                channels_last=precision == "bf16")

    segmenter = member() if count == 1 else EnsembleSegmenter([member() for _ in range(count)])
    segmenter = load_segmenter(segmenter, path)
    return segmenter.to(device).eval(), meta
