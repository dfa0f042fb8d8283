"""``calibrate``: the run's lesion threshold, set on healthy livers alone (no tumour labels).

    python -m examples.lits calibrate --run runs/cpu --data prepared/healthy_heldout [--false-positive-fraction F]

Why a calibrated threshold: :mod:`examples.lits.calibration`.

``train`` calibrates every run at its end on its own training slices (recorded as ``"source": "training"``);
``calibrate`` sets it again on other healthy livers (held-out scans, prepared with ``prepare --layout btcv`` or
``pair``), which is the better choice when there are any: a net scores the livers it trained on lower than new
ones. The threshold is stored in the run's ``segmenter.pt`` (rewritten atomically) and ``segment`` and
``evaluate`` use it unless given ``--threshold``.

Refused with a one-line error naming the folder: no liver pixels, or tumour labels in the calibration slices (the
threshold must come from healthy data only); a fraction outside (0, 1).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from pseudoanomaly.training import load_checkpoint, save_segmenter

from .arguments import add_inference_arguments, open_unit_interval
from .calibration import DEFAULT_FALSE_POSITIVE_FRACTION, calibration_record
from .dataset import load_slices
from .locking import writes_folder
from .runs import INFER_BATCH, RunFiles, load_run, pick_device

__all__ = ["calibrate", "add_arguments", "main"]

def _segmenter_file(run: Path) -> Path:
    return RunFiles(run).segmenter if run.is_dir() else run


@writes_folder("lock_dir", "calibrate")
def _store(lock_dir: Path, path: Path, record: dict[str, Any]) -> None:
    checkpoint = load_checkpoint(path)
    meta = dict(checkpoint.get("config") or {})
    meta["calibration"] = record
    segmenter, _ = load_run(path, "cpu")
    save_segmenter(segmenter, path, config=meta)  # atomic: the old file stays whole until the new one is


def calibrate(
    run: str | os.PathLike,
    data: str | os.PathLike,
    *,
    false_positive_fraction: float = DEFAULT_FALSE_POSITIVE_FRACTION,
    device: str = "auto",
    batch_size: int = INFER_BATCH,
    precision: str = "fp32",
) -> dict[str, Any]:
    """Set the run's threshold on the prepared healthy slices in ``data`` and store it in its ``segmenter.pt``.

    Args:
        run: a run folder written by ``train`` (or its ``segmenter.pt``).
        data: a ``prepare`` output of healthy livers (no tumour labels), ideally scans the run did not train on.
        false_positive_fraction: share of healthy liver volume allowed above the threshold, in (0, 1).
        device, batch_size, precision: inference settings, as for ``segment``.

    Returns:
        The calibration record stored (``threshold``, ``false_positive_fraction``, ``achieved``, ``voxels``,
        ``liver_ml``, ``slices``, ``source``, ``data``, ``fingerprint``).
    """
    if isinstance(false_positive_fraction, bool) or not isinstance(false_positive_fraction, (int, float)) or \
            not 0 < false_positive_fraction < 1:
        raise ValueError(f"false_positive_fraction must be in (0, 1), got {false_positive_fraction!r}")
    start = time.perf_counter()
    path = _segmenter_file(Path(run))
    segmenter, meta = load_run(path, pick_device(device), batch_size, precision)
    healthy = load_slices(data, int(meta["size"]))
    record = calibration_record(segmenter, healthy, false_positive_fraction, "held-out", data)
    _store(path.parent, path, record)
    return {**record, "seconds": time.perf_counter() - start}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the ``calibrate`` command."""
    parser.add_argument("--run", type=Path, required=True, help="run folder written by train")
    parser.add_argument("--data", type=Path, required=True,
                        help="prepared healthy slices (prepare --layout btcv or pair), ideally scans the run did not "
                             "train on")
    parser.add_argument("--false-positive-fraction", type=open_unit_interval, metavar="F",
                        default=DEFAULT_FALSE_POSITIVE_FRACTION,
                        help="share of healthy liver volume allowed above the threshold (default: %(default)s)")
    add_inference_arguments(parser, INFER_BATCH)


def main(args: argparse.Namespace) -> int:
    """Run ``calibrate`` from parsed arguments."""
    record = calibrate(args.run, args.data, false_positive_fraction=args.false_positive_fraction,
                       device=args.device, batch_size=args.batch_size, precision=args.precision)
    print(f"threshold {record['threshold']:.4f}: {100 * record['achieved']:.3f}% of {record['liver_ml']:.0f} mL of "
          f"healthy liver ({record['slices']} slices) above it; stored in {_segmenter_file(Path(args.run))}")
    return 0
