"""Evaluation metrics on torch tensors: Dice (global and per volume), AUROC, average precision, image scores.

Papers: Zhang, Deng & Li (SASHIMI 2023) report a global Dice (every test pixel pooled, maps thresholded at 0.5)
and an image-level AUROC with the maximum of the map as image score; Zavrtanik et al., DRAEM (ICCV 2021) take the
image score as the maximum of the map after a 21x21 mean filter.

Reference code: github.com/nono-zz/LiTs-Segmentation ``evaluation.py``; github.com/VitjanZ/DRAEM ``test_DRAEM.py``.

All functions take tensors of any device and return Python floats (:func:`image_scores` returns a tensor of
scores, an input to :func:`auroc`). AUROC and AP sort once and count ties exactly, matching scikit-learn's
``roc_auc_score`` and ``average_precision_score``, and handle millions of pixels in well under a second.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from statistics import fmean
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import check_has_data, check_odd_size

__all__ = [
    "dice",
    "dice_per_volume",
    "VolumeDice",
    "auroc",
    "average_precision",
    "image_scores",
    "best_dice_oracle",
    "OracleDice",
    "DRAEM_SMOOTHING_KERNEL",
]

# Zhang, Deng & Li (reference evaluation.py) binarize the anomaly map at 0.5 for Dice.
DICE_THRESHOLD = 0.5
# DRAEM smooths the anomaly map with avg_pool2d(kernel 21, stride 1, padding 10) before taking its maximum.
DRAEM_SMOOTHING_KERNEL = 21


def _check_same_shape(a: Tensor, b: Tensor, names: tuple[str, str]) -> None:
    for name, x in zip(names, (a, b)):
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    if a.numel() == 0:
        raise ValueError(f"{names[0]} and {names[1]} must be non-empty, got shape {tuple(a.shape)}")
    for name, x in zip(names, (a, b)):
        check_has_data(x, name)


def _binary(x: Tensor, name: str) -> Tensor:
    """``x`` as bool, raising (with some offending values) unless it is bool or holds only 0 and 1."""
    if x.dtype == torch.bool:
        return x
    bad = (x != 0) & (x != 1)
    if bool(bad.any()):
        raise ValueError(f"{name} must be binary (bool or 0/1), got values such as {x[bad].unique()[:5].tolist()}")
    return x != 0


def _scores(x: Tensor, name: str) -> Tensor:
    """Flattened real scores in a dtype that sorts exactly (float32 at least); NaN raises."""
    x = x.reshape(-1)
    if x.dtype == torch.bool or not x.is_floating_point():
        x = x.to(torch.float64)
    elif x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    if bool(torch.isnan(x).any()):
        raise ValueError(f"{name} contains NaN")
    return x


def _overlap(pred: Tensor, target: Tensor, threshold: float) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample |pred > t & target|, |pred > t| and |target| as int64 tensors of shape (B,)."""
    # NaN compares False with everything: a NaN score or threshold would silently count as "not predicted".
    try:
        is_nan = math.isnan(threshold)
    except TypeError:
        raise ValueError(f"threshold must be a number, got {threshold!r}") from None
    if is_nan:
        raise ValueError(f"threshold must be a number, not NaN, got {threshold!r}")
    if pred.is_floating_point():
        nans = int(torch.isnan(pred).sum())
        if nans:
            raise ValueError(f"pred contains {nans} NaN value(s) of {pred.numel()}")
    predicted = (pred > threshold).flatten(1)
    truth = _binary(target, "target").flatten(1)
    return (predicted & truth).sum(1), predicted.sum(1), truth.sum(1)


def _dice_from_counts(intersection: int, predicted: int, truth: int) -> float:
    # Both masks empty: perfect agreement, Dice 1 (no 0/0).
    return 1.0 if predicted + truth == 0 else 2.0 * intersection / (predicted + truth)


def dice(pred: Tensor, target: Tensor, threshold: float = DICE_THRESHOLD) -> float:
    """Dice of ``pred > threshold`` against a binary ``target``, pooled over every element (global Dice).

    Both masks empty gives 1.0 (perfect agreement), never NaN.

    Args:
        pred: scores or probabilities.
        target: binary ground truth (bool or 0/1).
        threshold: ``pred > threshold`` is predicted anomalous (strict, so ``-inf`` selects everything).

    Returns:
        The Dice coefficient :math:`2 |P \\cap T| / (|P| + |T|)` as a Python float in [0, 1].

    Shape:
        - pred, target: any shape, the same for both.

    Example:
        >>> dice(torch.tensor([0.9, 0.8, 0.1, 0.2]), torch.tensor([1, 0, 0, 0]))
        0.6666666666666666
    """
    _check_same_shape(pred, target, ("pred", "target"))
    counts = _overlap(pred.reshape(1, -1), target.reshape(1, -1), threshold)
    return _dice_from_counts(*(int(c) for c in counts))


@dataclass(frozen=True)
class VolumeDice:
    """Dice of each volume, by volume id (in order of first appearance), and their unweighted mean.

    Returned by :func:`dice_per_volume`.

    Args:
        per_volume: ``{volume id: Dice}``.

    Example:
        >>> result = VolumeDice({"a": 1.0, "b": 0.5})
        >>> result.mean, result.per_volume["b"]
        (0.75, 0.5)
    """

    per_volume: dict[Hashable, float]

    @property
    def mean(self) -> float:
        """Mean over volumes, each volume counting once whatever its size."""
        return fmean(self.per_volume.values())


def dice_per_volume(
    pred: Tensor, target: Tensor, volume_ids: Sequence[Hashable] | Tensor, threshold: float = DICE_THRESHOLD
) -> VolumeDice:
    """Dice of each volume, slices grouped by ``volume_ids``, each pooled over its own slices as in :func:`dice`.

    A volume with an empty ground truth and an empty prediction scores 1.0 (see :func:`dice`).

    Args:
        pred: scores or probabilities, one slice per row.
        target: binary ground truth (bool or 0/1).
        volume_ids: the volume of each slice (ints, strings, ...), a sequence or a 1-D tensor of length B.
        threshold: ``pred > threshold`` is predicted anomalous.

    Shape:
        - pred, target: :math:`(B, *)`, the same for both; volume_ids: :math:`(B,)`.

    Returns:
        A :class:`VolumeDice`: ``.per_volume`` dict ``{id: dice}`` and ``.mean`` over volumes.

    Example:
        >>> pred = torch.tensor([[0.9, 0.1], [0.2, 0.1], [0.7, 0.8]])
        >>> target = torch.tensor([[1, 0], [0, 0], [0, 1]])
        >>> result = dice_per_volume(pred, target, ["a", "a", "b"])
        >>> result.per_volume, result.mean
        ({'a': 1.0, 'b': 0.6666666666666666}, 0.8333333333333333)
    """
    _check_same_shape(pred, target, ("pred", "target"))
    ids = volume_ids.tolist() if isinstance(volume_ids, Tensor) else list(volume_ids)
    if pred.ndim == 0 or len(ids) != len(pred):
        raise ValueError(f"volume_ids must have one id per slice ({len(pred) if pred.ndim else 0}), got {len(ids)}")
    index = {}
    slice_to_volume = torch.tensor([index.setdefault(v, len(index)) for v in ids], device=pred.device)
    per_slice = torch.stack(_overlap(pred.reshape(len(pred), -1), target.reshape(len(target), -1), threshold))
    per_volume = torch.zeros(3, len(index), dtype=torch.int64, device=pred.device)
    per_volume.index_add_(1, slice_to_volume, per_slice)  # (3, n_volumes): intersection, predicted, truth
    counts = per_volume.T.tolist()
    return VolumeDice({v: _dice_from_counts(*counts[i]) for v, i in index.items()})


class _RankedCounts(NamedTuple):
    values: Tensor  # distinct scores, descending
    tps: Tensor  # positives with score >= value (int64)
    fps: Tensor  # negatives with score >= value (int64)


def _ranked_counts(scores: Tensor, labels: Tensor, names: tuple[str, str]) -> _RankedCounts:
    """Cumulative true/false positive counts at every distinct score, highest first (one sort)."""
    _check_same_shape(scores, labels, names)
    s = _scores(scores, names[0])
    y = _binary(labels, names[1]).reshape(-1)
    s, order = torch.sort(s, descending=True)
    tps_all = torch.cumsum(y[order], 0)  # int64
    last_of_value = torch.ones_like(s, dtype=torch.bool)
    last_of_value[:-1] = s[1:] != s[:-1]
    ends = last_of_value.nonzero().squeeze(1)
    tps = tps_all[ends]
    return _RankedCounts(s[ends], tps, ends + 1 - tps)


def _check_two_classes(counts: _RankedCounts, name: str) -> tuple[int, int]:
    positives, negatives = int(counts.tps[-1]), int(counts.fps[-1])
    if positives == 0 or negatives == 0:
        raise ValueError(
            f"{name} must contain both classes, got {positives} positive and {negatives} negative elements"
        )
    return positives, negatives


def auroc(scores: Tensor, labels: Tensor) -> float:
    """Area under the ROC curve, ties counted as half (equal to scikit-learn's ``roc_auc_score``).

    Args:
        scores: higher means more anomalous.
        labels: binary (bool or 0/1), both classes present.

    Returns:
        The AUROC as a Python float in [0, 1]; 0.5 is chance.

    Shape:
        - scores, labels: any shape, the same for both (pixels or images).

    Example:
        >>> auroc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1]))
        0.75
    """
    counts = _ranked_counts(scores, labels, ("scores", "labels"))
    positives, negatives = _check_two_classes(counts, "labels")
    zero = counts.tps.new_zeros(1)
    tps, fps = torch.cat([zero, counts.tps]), torch.cat([zero, counts.fps])
    # Trapezoids in integer counts: exact (no overflow below ~4e9 elements), one rounding at the division.
    twice_area = int(((fps[1:] - fps[:-1]) * (tps[1:] + tps[:-1])).sum())
    return twice_area / (2 * positives * negatives)


def average_precision(scores: Tensor, labels: Tensor) -> float:
    """Average precision, the step-wise area under the precision-recall curve (as scikit-learn's
    ``average_precision_score``): the sum over distinct thresholds of recall gain times precision.

    Args:
        scores: higher means more anomalous.
        labels: binary (bool or 0/1), both classes present.

    Returns:
        The average precision as a Python float in [0, 1]; chance is the fraction of positives.

    Shape:
        - scores, labels: any shape, the same for both.

    Example:
        >>> average_precision(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1]))
        0.8333333333333333
    """
    counts = _ranked_counts(scores, labels, ("scores", "labels"))
    positives, _ = _check_two_classes(counts, "labels")
    tps = counts.tps.double()
    precision = tps / (tps + counts.fps)
    recall_gain = torch.diff(tps, prepend=tps.new_zeros(1))
    return float((recall_gain * precision).sum()) / positives


def image_scores(maps: Tensor, smoothing_kernel: int | None = None) -> Tensor:
    """Image-level anomaly score: the maximum of each map, optionally after a mean filter (DRAEM).

    Args:
        maps: anomaly maps.
        smoothing_kernel: odd side of the mean filter applied first (stride 1, zero padding counted in the mean,
            as DRAEM's ``avg_pool2d``); DRAEM uses ``DRAEM_SMOOTHING_KERNEL`` = 21. ``None`` takes the raw maximum.

    Returns:
        One score per map, the input of :func:`auroc` with per-image labels.

    Shape:
        - maps: :math:`(B, C, H, W)` or :math:`(B, H, W)`; output: :math:`(B,)` float tensor on the maps' device.

    Example:
        >>> maps = torch.zeros(2, 1, 8, 8)
        >>> maps[1, 0, 4, 4] = 0.9
        >>> image_scores(maps)
        tensor([0.0000, 0.9000])
        >>> image_scores(maps, smoothing_kernel=3)
        tensor([0.0000, 0.1000])
    """
    if not isinstance(maps, Tensor) or maps.ndim not in (3, 4) or maps.numel() == 0:
        shape = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
        raise ValueError(f"maps must be a non-empty tensor of shape (B, C, H, W) or (B, H, W), got {shape}")
    maps = maps if maps.is_floating_point() else maps.float()
    if smoothing_kernel is not None:
        check_odd_size("smoothing_kernel", smoothing_kernel)
        batched = maps if maps.ndim == 4 else maps.unsqueeze(1)
        maps = F.avg_pool2d(batched, smoothing_kernel, stride=1, padding=smoothing_kernel // 2)
    return maps.flatten(1).amax(dim=1)


class OracleDice(NamedTuple):
    """Best Dice over thresholds and a threshold that reaches it (``dice(pred, target, threshold) == dice``).

    Returned by :func:`best_dice_oracle`; a named tuple.

    Args:
        dice: the best global Dice.
        threshold: a threshold reaching it.

    Example:
        >>> dice_value, threshold = OracleDice(0.9, 0.3)
        >>> dice_value, threshold
        (0.9, 0.3)
    """

    dice: float
    threshold: float


def best_dice_oracle(pred: Tensor, target: Tensor) -> OracleDice:
    """Best global Dice over every threshold, chosen WITH the labels: an optimistic upper bound, not a result.

    Use it to see how much a better-calibrated threshold could gain; report :func:`dice` at a threshold fixed
    without test labels (0.5, or one picked on validation data) as the result.

    Args:
        pred: scores or probabilities.
        target: binary ground truth (bool or 0/1).

    Shape:
        - pred, target: any shape, the same for both.

    Returns:
        :class:`OracleDice` ``(dice, threshold)``; ``dice(pred, target, threshold)`` gives the same Dice. The
        threshold is a score of ``pred`` (or ``-inf`` when every element is predicted anomalous); with an empty
        target the best is predicting nothing (Dice 1.0, threshold = the maximum score).

    Example:
        >>> best_dice_oracle(torch.tensor([0.9, 0.8, 0.3, 0.2]), torch.tensor([1, 1, 0, 0]))
        OracleDice(dice=1.0, threshold=0.30000001192092896)
    """
    counts = _ranked_counts(pred, target, ("pred", "target"))
    positives = int(counts.tps[-1])
    if positives == 0:
        return OracleDice(1.0, float(counts.values[0]))
    predicted = counts.tps + counts.fps  # elements with score >= each distinct value
    dices = 2.0 * counts.tps.double() / (predicted + positives)
    best = int(torch.argmax(dices))  # first maximum: the highest such threshold
    # Predicting the elements >= values[best] is `pred > the next lower distinct value`.
    threshold = float(counts.values[best + 1]) if best + 1 < len(counts.values) else -math.inf
    return OracleDice(float(dices[best]), threshold)
