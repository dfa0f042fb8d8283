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

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from pseudoanomaly.metrics import auroc, average_precision, dice, dice_per_volume, image_scores

__all__ = ["THRESHOLD", "DARK_RULE_FRACTION", "score_maps", "darkness_scores", "baseline_metrics", "headline"]

# Zhang et al.'s evaluation binarizes the anomaly map at 0.5 (reference evaluation.py).
THRESHOLD = 0.5
# The intensity rule flags this fraction of each slice's liver, the darkest pixels. Fixed by us before any
# measurement (about the tumor share of the liver on LiTS's tumor slices), never tuned on test labels.
DARK_RULE_FRACTION = 0.10


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
    return "\n".join(lines)
