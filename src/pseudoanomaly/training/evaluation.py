"""Validation of an anomaly segmenter on images with true tumor labels: pixel Dice and pixel AUROC.

The paper (Zhang, Deng & Li 2023, Fig. 3) tracks both during the segmentation phase to show that training it
longer overfits to synthetic anomalies. Scores are pooled over every pixel of the validation set, restricted to
the foreground (the liver) when the data gives one.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..metrics import auroc, dice
from .batches import check_map_dataset, unpack_eval_batch

__all__ = ["evaluate_segmenter", "evaluation_due", "EVAL_THRESHOLD"]

# Dice of the map binarized at 0.5: the segmentation net's softmax decision boundary.
EVAL_THRESHOLD = 0.5


@torch.no_grad()
def evaluate_segmenter(
    segmenter: nn.Module, val_data: object, batch_size: int = 8, device: str | torch.device = "cpu"
) -> dict[str, float]:
    """Pixel Dice (at 0.5) and pixel AUROC of ``segmenter``'s maps against the labels of ``val_data``.

    Args:
        segmenter: ``segmenter(images, foreground) -> (B, 1, H, W)`` probabilities (an
            :class:`~pseudoanomaly.models.AnomalySegmenter`).
        val_data: map-style dataset of ``(image, foreground, label)`` tuples or dicts (see
            :mod:`pseudoanomaly.training.batches`).
        batch_size: images per forward pass.
        device: where the images are sent.

    Returns:
        ``{"dice": ..., "auroc": ...}``; AUROC is NaN when the pixels scored hold a single class.

    Shape:
        - each item of ``val_data``: image :math:`(C, H, W)`, foreground and label :math:`(1, H, W)`

    Example:
        >>> from pseudoanomaly.models import AnomalySegmenter, RestorationUNet, SegmentationNet
        >>> _ = torch.manual_seed(0)
        >>> segmenter = AnomalySegmenter(RestorationUNet(base_width=4, depth=1),
        ...                              SegmentationNet(base_width=2, channel_multipliers=(1, 2)))
        >>> label = torch.zeros(1, 16, 16); label[:, 4:8, 4:8] = 1
        >>> val_data = [(torch.rand(1, 16, 16), torch.ones(1, 16, 16), label) for _ in range(4)]
        >>> scores = evaluate_segmenter(segmenter, val_data, batch_size=2)
        >>> sorted(scores), 0.0 <= scores["dice"] <= 1.0
        (['auroc', 'dice'], True)
    """
    check_map_dataset("val_data", val_data)
    device = torch.device(device)
    maps, labels, inside = [], [], []
    for batch in DataLoader(val_data, batch_size=batch_size, shuffle=False):
        images, foreground, label = unpack_eval_batch(batch, device)
        maps.append(segmenter(images, foreground).float().cpu())  # (B, 1, H, W)
        labels.append(label.cpu())
        inside.append(torch.ones_like(label, device="cpu") if foreground is None else foreground.cpu())
    scores, truth, keep = torch.cat(maps), torch.cat(labels), torch.cat(inside)
    # Maps are already 0 outside the foreground, so Dice over all pixels equals Dice inside it.
    result = {"dice": float(dice(scores, truth.float(), threshold=EVAL_THRESHOLD))}
    pixel_scores, pixel_labels = scores[keep], truth[keep]
    two_classes = bool(pixel_labels.any()) and not bool(pixel_labels.all())
    result["auroc"] = float(auroc(pixel_scores, pixel_labels)) if two_classes else float("nan")
    return result


def evaluation_due(step: int, steps_per_epoch: int, total: int, every: int, unit: str) -> bool:
    """Whether a phase of ``total`` steps evaluates after ``step`` steps: at its end, and every ``every``
    ``unit`` (``"step"`` or ``"epoch"``; ``every=0``: only at the end).

    Example:
        >>> [s for s in range(1, 9) if evaluation_due(s, steps_per_epoch=2, total=8, every=2, unit="epoch")]
        [4, 8]
    """
    if step == total:
        return True
    if every == 0:
        return False
    if unit == "step":
        return step % every == 0
    return step % steps_per_epoch == 0 and (step // steps_per_epoch) % every == 0
