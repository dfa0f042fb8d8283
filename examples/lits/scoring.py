"""The metrics of a set of anomaly maps against tumor labels, and the label-free baselines they must beat.

Metrics (maps binarized at 0.5, the segmentation net's decision boundary; nothing is tuned on the test data):

- ``dice_global``: Dice pooled over every pixel of every slice, the paper's metric (Zhang, Deng & Li, SASHIMI
  2023, Table 1: 53.03 on LiTS);
- ``dice_per_volume``: Dice of each volume, averaged over volumes (``per_volume`` lists them);
- ``pixel_auroc`` / ``pixel_ap``: pixel-level ranking quality inside the liver;
- ``image_auroc``: slice-level detection (does the slice hold tumor?) over liver slices, the slice score being
  the map's maximum (the paper's image-level score);
- ``baselines``: the same metrics for rules that need no training and no labels, for scale: all-zero,
  all-liver, and ``darkest-10%`` (the darkest :data:`DARK_RULE_FRACTION` of each slice's liver pixels, the
  simplest rule for hypodense tumors; its score ranks each slice's liver pixels from bright to dark). A model
  that does not beat these has learned nothing a reader could not get for free;
- ``dice_best_threshold``: the best pooled Dice over thresholds chosen *with* the labels: a diagnostic of the
  calibration, never a result.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from pseudoanomaly.metrics import auroc, average_precision, dice, dice_per_volume, image_scores

from .dataset import stack_slices

__all__ = ["THRESHOLD", "DARK_RULE_FRACTION", "SIZE_BINS", "CONNECTIVITY", "Lesions", "match_lesions", "score_maps",
           "lesion_metrics", "darkness_scores", "baseline_metrics", "headline"]

# Zhang et al.'s evaluation binarizes the anomaly map at 0.5 (reference evaluation.py).
THRESHOLD = 0.5
# The intensity rule flags this fraction of each slice's liver, the darkest pixels. Fixed by us before any
# measurement (about the tumor share of the liver on LiTS's tumor slices), never tuned on test labels.
DARK_RULE_FRACTION = 0.10
CONNECTIVITY = {6: 1, 26: 3}  # neighbours -> rank of scipy's generate_binary_structure
# Lesion size bins by equivalent-sphere diameter: < 10 mm, 10 to 20 mm (both included), > 20 mm.
SIZE_BINS = ("<10 mm", "10-20 mm", ">20 mm")
SIZE_EDGES_MM = (10.0, 20.0)


@dataclass(frozen=True)
class Lesions:
    """Counts of one case's lesion matching; ``by_size[bin] = [lesions, found, false]``."""

    lesions: int
    found: int
    false: int
    by_size: dict[str, list[int]]


def _diameter_mm(voxels: np.ndarray, voxel_mm3: float) -> np.ndarray:
    return np.cbrt(6 * voxels * voxel_mm3 / math.pi)


def _size_bin(diameter: float) -> str:
    small, large = SIZE_EDGES_MM
    return SIZE_BINS[0] if diameter < small else SIZE_BINS[1] if diameter <= large else SIZE_BINS[2]


def match_lesions(pred: np.ndarray, truth: np.ndarray, voxel_mm3: float, connectivity: int = 26,
                  min_overlap: float = 0.0) -> Lesions:
    """Match the 3-D connected components of ``truth`` and ``pred`` (``score``'s rules: a true lesion is found when
    the prediction covers more than 0 and at least ``min_overlap`` of its voxels; a predicted component that
    touches no found lesion is false; sizes by equivalent-sphere diameter in :data:`SIZE_BINS`)."""
    structure = ndimage.generate_binary_structure(3, CONNECTIVITY[connectivity])
    true_ids, n_true = ndimage.label(truth, structure)
    pred_ids, n_pred = ndimage.label(pred, structure)
    true_size = np.bincount(true_ids.ravel(), minlength=n_true + 1)
    covered = np.bincount(true_ids[pred].ravel(), minlength=n_true + 1)  # voxels of each true lesion predicted
    found = (covered > 0) & (covered >= min_overlap * true_size)
    found[0] = False
    both = pred & truth
    pairs = np.unique(np.stack([true_ids[both], pred_ids[both]]), axis=1)  # (2, K): true id, predicted id
    hits = np.zeros(n_pred + 1, bool)
    hits[pairs[1][found[pairs[0]]]] = True
    false = ~hits
    false[0] = False
    by_size = {name: [0, 0, 0] for name in SIZE_BINS}
    for i, d in enumerate(_diameter_mm(true_size[1:], voxel_mm3), start=1):
        counts = by_size[_size_bin(float(d))]
        counts[0] += 1
        counts[1] += int(found[i])
    pred_size = np.bincount(pred_ids.ravel(), minlength=n_pred + 1)
    for j in np.flatnonzero(false):
        by_size[_size_bin(float(_diameter_mm(pred_size[j], voxel_mm3)))][2] += 1
    return Lesions(int(n_true), int(found.sum()), int(false.sum()), by_size)


def darkness_scores(images: Tensor, foreground: Tensor) -> Tensor:
    """Per-slice darkness rank of every liver pixel: the fraction of the slice's liver pixels at least as bright.

    The darkest pixels of a slice score 1, the brightest ``1 / n``; 0 outside the liver. Thresholding at
    ``1 - q`` flags the darkest fraction ``q`` of each slice's liver (ties at the cut all go in).

    Shape:
        - images, foreground: :math:`(N, 1, S, S)`; output :math:`(N, 1, S, S)` float32.
    """
    scores = torch.zeros(images.shape, dtype=torch.float32)
    for i in range(len(images)):
        inside = foreground[i, 0]
        values = images[i, 0][inside].float()
        if values.numel() == 0:
            continue
        ordered = values.sort().values
        # pixels at least as bright as v: n - (number strictly darker than v)
        darker = torch.searchsorted(ordered, values, side="left")
        scores[i, 0][inside] = (values.numel() - darker).float() / values.numel()
    return scores


def baseline_metrics(images: Tensor, labels: Tensor, foreground: Tensor,
                     volume_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The metrics of :func:`score_maps` for the label-free rules of the module docstring."""
    dark = darkness_scores(images, foreground)
    rules = {
        "all-zero": (torch.zeros(images.shape), THRESHOLD),
        "all-liver": (foreground.float(), THRESHOLD),
        f"darkest-{round(100 * DARK_RULE_FRACTION)}%": (dark, 1 - DARK_RULE_FRACTION),
    }
    out = {}
    for name, (maps, threshold) in rules.items():
        scores = score_maps(maps, labels, foreground, volume_ids, threshold)
        out[name] = {k: v for k, v in scores.items() if k != "per_volume"}
    return out


def _two_classes(labels: Tensor) -> bool:
    return bool(labels.any()) and not bool(labels.all())


def score_maps(maps: Tensor, labels: Tensor, foreground: Tensor, volume_ids: Sequence[str],
               threshold: float = THRESHOLD) -> dict[str, Any]:
    """The metrics of the module docstring for one set of maps (AUROC/AP ``None`` when undefined).

    Shape:
        - maps: :math:`(N, 1, S, S)` float; labels, foreground: :math:`(N, 1, S, S)` bool; volume_ids: N.
    """
    per_volume = dice_per_volume(maps, labels, list(volume_ids), threshold)
    binary = maps > threshold
    inside_scores, inside_labels = maps[foreground], labels[foreground]
    liver_slices = foreground.flatten(1).any(1)
    slice_scores = image_scores(maps[liver_slices])
    slice_labels = labels[liver_slices].flatten(1).any(1)
    pixel_ok, slice_ok = _two_classes(inside_labels), _two_classes(slice_labels)
    return {
        "dice_global": dice(maps, labels, threshold),
        "predicted_fraction": float(binary[foreground].float().mean()) if bool(foreground.any()) else None,
        "dice_per_volume": per_volume.mean,
        "pixel_auroc": auroc(inside_scores, inside_labels) if pixel_ok else None,
        "pixel_ap": average_precision(inside_scores, inside_labels) if pixel_ok else None,
        "image_auroc": auroc(slice_scores, slice_labels) if slice_ok else None,
        "per_volume": per_volume.per_volume,
    }


def lesion_metrics(maps: Tensor, labels: Tensor, foreground: Tensor, volume_ids: Sequence[str],
                   slice_index: Tensor, voxel_mm: Tensor, to_lesions) -> dict[str, Any]:
    """Lesion-wise figures of prepared slices, each volume's slices stacked in their order into a 3-D grid at the
    prepared resolution (slices missing between two kept ones are empty).

    Args:
        maps: :math:`(N, 1, S, S)` scores; labels, foreground: :math:`(N, 1, S, S)` bool.
        volume_ids: the volume of each slice; slice_index: :math:`(N,)` its axial index in the volume;
            voxel_mm: :math:`(N, 3)` its voxel size (slices, rows, columns) in mm.
        to_lesions: ``(scores (Z, S, S) ndarray, spacing) -> bool lesion mask``.

    Returns:
        ``dice_global`` of the lesions, ``lesions``, ``found``, ``missed``, ``false``, ``recall``,
        ``false_per_volume``, ``by_size`` (``bin -> [lesions, found, false]``) and ``per_volume``
        (``id -> {lesions, found, false}``); a volume whose slices differ in voxel size by more than 1% (per-slice
        crops) cannot be stacked and is listed in ``skipped``.
    """
    ids = np.asarray(list(volume_ids))
    totals = {"overlap": 0, "predicted": 0, "true": 0, "lesions": 0, "found": 0, "false": 0}
    by_size = {name: [0, 0, 0] for name in SIZE_BINS}
    per_volume, skipped = {}, []
    for volume in dict.fromkeys(ids.tolist()):
        rows = np.flatnonzero(ids == volume)
        mm = voxel_mm[rows].double()
        if float((mm.max(0).values / mm.min(0).values).max()) > 1.01:
            skipped.append(volume)
            continue
        z = slice_index[rows].numpy()
        score, _ = stack_slices((maps[rows, 0] * foreground[rows, 0]).float().numpy(), z)
        truth, _ = stack_slices((labels[rows, 0] & foreground[rows, 0]).numpy(), z)
        spacing = tuple(float(v) for v in mm.median(0).values)
        pred = to_lesions(score, spacing)
        found = match_lesions(pred, truth, float(np.prod(spacing)))
        per_volume[volume] = {"lesions": found.lesions, "found": found.found, "false": found.false}
        for name, counts in found.by_size.items():
            by_size[name] = [a + b for a, b in zip(by_size[name], counts)]
        totals["overlap"] += int((pred & truth).sum())
        totals["predicted"] += int(pred.sum())
        totals["true"] += int(truth.sum())
        for key in ("lesions", "found", "false"):
            totals[key] += getattr(found, key)
    denominator = totals["predicted"] + totals["true"]
    return {"dice_global": 2 * totals["overlap"] / denominator if denominator else 1.0,
            "lesions": totals["lesions"], "found": totals["found"], "missed": totals["lesions"] - totals["found"],
            "false": totals["false"], "recall": totals["found"] / totals["lesions"] if totals["lesions"] else None,
            "false_per_volume": totals["false"] / len(per_volume) if per_volume else None,
            "by_size": by_size, "per_volume": per_volume, "skipped": skipped}


def headline(metrics: dict[str, Any]) -> str:
    """A few lines for the terminal: our Dice and AUROCs next to the label-free baselines."""
    b = metrics["baselines"]
    names = list(b)

    def pct(v):
        return "  n/a" if v is None else f"{100 * v:5.1f}"

    widths = [max(len(n) + 2, 8) for n in names]
    lines = [f"{'':24}{'ours':>7}" + "".join(f"{n:>{w}}" for n, w in zip(names, widths))]
    for key, label in (("dice_global", "Dice (pooled, paper)"), ("dice_per_volume", "Dice (mean per volume)"),
                       ("pixel_auroc", "pixel AUROC (liver)"), ("image_auroc", "slice AUROC")):
        lines.append(f"{label:24}{pct(metrics[key]):>7}" + "".join(f"{pct(b[n][key]):>{w}}"
                                                                    for n, w in zip(names, widths)))
    lesions = metrics.get("lesions")
    if lesions:  # the lesion output: found / missed / false lesions, summed over volumes
        ours, rules = lesions["ours"], lesions["baselines"]

        def counts(m):
            return f"{m['found']}/{m['missed']}/{m['false']}"

        lines.append(f"{'Dice (lesion output)':24}{pct(ours['dice_global']):>7}" + "".join(
            f"{pct(rules[n]['dice_global']) if n in rules else '':>{w}}" for n, w in zip(names, widths)))
        lines.append("lesions found / missed / false: " + "; ".join(
            f"{name} {counts(m)}" for name, m in [("ours", ours), *rules.items()]))
    return "\n".join(lines)
