"""The run's lesion threshold, set on healthy livers alone: what ``train`` records and ``calibrate`` sets again.

The segmentation net learns where synthetic anomalies are; where its map crosses 0.5 on a real scan depends on the
training run's luck (two seeds of one recipe gave pooled Dice 0.67 and 0.49 on real tumours at 0.5, with the same
pixel AUROC). A one-class operating point removes the scale of that luck: the threshold is the score that only a
fraction ``F`` of healthy liver volume exceeds (:func:`pseudoanomaly.postprocess.healthy_threshold`), so every
model marks the same false-positive volume on healthy liver, whatever the scale of its scores. Stored in the
``"calibration"`` entry of the run's ``segmenter.pt`` metadata.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pseudoanomaly.postprocess import healthy_threshold, smooth_across_slices

from .dataset import PreparedSet, stack_slices

__all__ = ["DEFAULT_FALSE_POSITIVE_FRACTION", "DEFAULT_SMOOTHING_MM", "UNCALIBRATED_THRESHOLD", "calibration_record",
           "run_threshold"]

# The share of healthy liver volume allowed above the threshold: 1.5 mL of a 1.5 L liver, about one sphere of
# 14 mm. Chosen among 0.0003, 0.001, 0.003 and 0.01 on the label-free out-of-sample instrument (lesions inserted
# into another patient's healthy scan, benchmarks/lits_crossover.py; every value's figures are in RESULTS), never on
# tumour labels.
DEFAULT_FALSE_POSITIVE_FRACTION = 0.001
# The segmentation net's own decision boundary: the threshold of a run that records no calibration, and the lowest a
# calibration may set (a net scores the livers it trained on lower than new ones: a cut below its boundary, set on
# them, marks far more of a new liver; on the instrument, 6x the healthy volume at 0.5).
UNCALIBRATED_THRESHOLD = 0.5
# mm: the standard deviation of the lesion output's smoothing across slices (examples.lits.lesion_output), which the
# calibration applies too. Neighbouring slices 1-2 mm apart share most of their evidence, slices 5 mm apart little
# (a weight of 4% each): a lesion across several slices keeps its score, a one-slice speck of a thin-slice scan
# about a third of it.
DEFAULT_SMOOTHING_MM = 2.0


def calibration_record(segmenter: Any, healthy: PreparedSet, false_positive_fraction: float, source: str,
                       data: str | os.PathLike, smoothing_mm: float = DEFAULT_SMOOTHING_MM) -> dict[str, Any]:
    """The calibration of ``segmenter`` on the prepared healthy slices ``healthy``: a JSON-ready dict.

    ``threshold`` is the healthy threshold of :func:`~pseudoanomaly.postprocess.healthy_threshold`
    (``healthy_threshold`` in the record), but never below the net's decision boundary 0.5; ``achieved`` is the
    share of the healthy volume above ``threshold``. The scores are those the lesion output thresholds: each
    volume's slices stacked in their order and smoothed across slices by ``smoothing_mm``. Each liver pixel weighs
    its voxel's volume in mm³ (slices of scans of different spacing count by volume).

    Raises:
        ValueError: the slices hold tumour labels, or no liver pixel.
    """
    if bool(healthy.tumor.any()):
        raise ValueError(f"{data}: the calibration slices hold tumour labels; calibrate on healthy livers only "
                         "(prepare --layout btcv or pair)")
    if not bool(healthy.foreground.any()):
        raise ValueError(f"{data}: no liver pixels to calibrate on")
    with torch.no_grad():
        maps = segmenter(healthy.images, healthy.foreground)[:, 0].float().numpy()  # (N, S, S)
    if smoothing_mm > 0:
        maps = _smoothed(maps, healthy, smoothing_mm)
    inside = healthy.foreground[:, 0].numpy()  # (N, S, S)
    voxel_mm3 = healthy.voxel_mm.prod(dim=1).numpy()  # (N,)
    scores = maps[inside]
    weights = np.broadcast_to(voxel_mm3[:, None, None], inside.shape)[inside]
    result = healthy_threshold(scores, false_positive_fraction, weights=weights)
    threshold = max(result.threshold, UNCALIBRATED_THRESHOLD)
    achieved = float(weights[scores > threshold].sum() / weights.sum())
    return {"threshold": threshold, "healthy_threshold": result.threshold,
            "false_positive_fraction": result.false_positive_fraction,
            "achieved": achieved, "voxels": result.voxels, "liver_ml": float(weights.sum()) / 1000,
            "slices": len(healthy), "smoothing_mm": smoothing_mm, "source": source, "data": str(Path(data).resolve()),
            "fingerprint": healthy.fingerprint()}


def _smoothed(maps: np.ndarray, healthy: PreparedSet, smoothing_mm: float) -> np.ndarray:
    """``maps`` (N, S, S) smoothed across slices within each volume (slices stacked at their axial index)."""
    out = np.empty_like(maps)
    ids = np.asarray(healthy.case_ids)
    for case in dict.fromkeys(ids.tolist()):
        rows = np.flatnonzero(ids == case)
        stack, z = stack_slices(maps[rows], healthy.slice_index[rows].numpy())
        spacing = tuple(float(v) for v in healthy.voxel_mm[rows].median(dim=0).values)
        out[rows] = smooth_across_slices(stack, 0, smoothing_mm, spacing)[z]
    return out


def run_threshold(meta: dict[str, Any]) -> tuple[float, str]:
    """``(threshold, where it comes from)`` of a run's metadata (``load_run``'s second value)."""
    record = meta.get("calibration")
    if isinstance(record, dict) and isinstance(record.get("threshold"), (int, float)):
        fraction = record.get("false_positive_fraction")
        return float(record["threshold"]), f"calibrated on {record.get('source', 'healthy')} livers (F={fraction:g})"
    return UNCALIBRATED_THRESHOLD, "the net's decision boundary: the run records no calibration"


