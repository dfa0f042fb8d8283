"""What each training phase minimises, as modules: ``objective(clean, augmented, masks) -> {"loss": ..., ...}``.

An objective owns the nets it runs, so one ``DistributedDataParallel`` wrapper around it synchronises exactly
the parameters that phase trains (frozen ones have ``requires_grad=False`` and are skipped). ``clean`` are the
healthy images, ``augmented`` the same images with synthesized anomalies, ``masks`` the anomaly masks; all
``(B, C, H, W)`` / ``(B, 1, H, W)`` on one device. The returned dict holds scalar tensors; ``"loss"`` is what
is back-propagated, the other entries are logged.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_choice
from ..losses import draem_reconstruction_loss, focal_loss
from .config import RESTORATION_LOSSES

__all__ = ["RestorationObjective", "SegmentationObjective", "JointObjective", "restoration_loss_fn"]

LossFn = Callable[[Tensor, Tensor], Tensor]


def restoration_loss_fn(name: str) -> LossFn:
    """The image-to-image loss called ``name``: ``"l1"`` (Zhang et al.), ``"l2"``, or ``"l2+ssim"`` (DRAEM).

    Args:
        name: one of :data:`~pseudoanomaly.training.config.RESTORATION_LOSSES`.
    """
    check_choice("restoration_loss", name, RESTORATION_LOSSES)
    return {"l1": F.l1_loss, "l2": F.mse_loss, "l2+ssim": draem_reconstruction_loss}[name]


def _segmentation_logits(segmentation: nn.Module, restored: Tensor, augmented: Tensor) -> Tensor:
    # The segmentation net compares the input with its restoration, channel-stacked in this order.
    return segmentation(torch.cat([restored, augmented], dim=1))  # (B, 2, H, W)


class RestorationObjective(nn.Module):
    """Phase 1 of two-phase training: restore the clean image from the synthesized one.

    Args:
        restoration: the restoration net.
        loss: name of the restoration loss (see :func:`restoration_loss_fn`).
    """

    def __init__(self, restoration: nn.Module, loss: str = "l1") -> None:
        super().__init__()
        self.restoration = restoration
        self.loss_fn = restoration_loss_fn(loss)

    def forward(self, clean: Tensor, augmented: Tensor, masks: Tensor) -> dict[str, Tensor]:
        restored = self.restoration(augmented)
        # Restored output may be bf16 under autocast; compare in float32.
        return {"loss": self.loss_fn(restored.float(), clean)}


class SegmentationObjective(nn.Module):
    """Phase 2 of two-phase training: segment the synthetic anomalies from ``[restored, augmented]``.

    The restoration net runs without gradients: it is frozen in this phase.

    Args:
        restoration: the trained, frozen restoration net.
        segmentation: the segmentation net.
        focal_alpha: focal loss alpha.
        focal_gamma: focal loss gamma.
    """

    def __init__(self, restoration: nn.Module, segmentation: nn.Module, focal_alpha: float, focal_gamma: float):
        super().__init__()
        self.restoration, self.segmentation = restoration, segmentation
        self.focal_alpha, self.focal_gamma = focal_alpha, focal_gamma

    def forward(self, clean: Tensor, augmented: Tensor, masks: Tensor) -> dict[str, Tensor]:
        with torch.no_grad():
            restored = self.restoration(augmented)
        logits = _segmentation_logits(self.segmentation, restored, augmented)
        return {"loss": focal_loss(logits.float(), masks, alpha=self.focal_alpha, gamma=self.focal_gamma)}


class JointObjective(nn.Module):
    """DRAEM's joint objective: reconstruction loss plus focal loss, both nets trained by the sum.

    As in DRAEM, the restored image is not detached before the segmentation net, so the focal loss also
    trains the restoration net.

    Args:
        restoration: the restoration (reconstructive) net.
        segmentation: the segmentation net.
        restoration_loss: name of the reconstruction loss (DRAEM: ``"l2+ssim"``).
        focal_alpha: focal loss alpha.
        focal_gamma: focal loss gamma.
    """

    def __init__(
        self,
        restoration: nn.Module,
        segmentation: nn.Module,
        restoration_loss: str,
        focal_alpha: float,
        focal_gamma: float,
    ) -> None:
        super().__init__()
        self.restoration, self.segmentation = restoration, segmentation
        self.loss_fn = restoration_loss_fn(restoration_loss)
        self.focal_alpha, self.focal_gamma = focal_alpha, focal_gamma

    def forward(self, clean: Tensor, augmented: Tensor, masks: Tensor) -> dict[str, Tensor]:
        restored = self.restoration(augmented)
        logits = _segmentation_logits(self.segmentation, restored, augmented)
        reconstruction = self.loss_fn(restored.float(), clean)
        focal = focal_loss(logits.float(), masks, alpha=self.focal_alpha, gamma=self.focal_gamma)
        return {"loss": reconstruction + focal, "reconstruction": reconstruction, "focal": focal}
