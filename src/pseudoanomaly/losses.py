"""Training losses: focal loss for the segmentation net, SSIM and L2 + SSIM for reconstruction.

Papers: Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017; Wang et al., "Image quality assessment:
from error visibility to structural similarity", IEEE TIP 2004 (SSIM); Zavrtanik et al., DRAEM, ICCV 2021
(reconstruction loss L2 + (1 - SSIM), segmentation loss focal with alpha = 1, gamma = 2).

Reference code: github.com/VitjanZ/DRAEM ``loss.py``. Zhang, Deng & Li (SASHIMI 2023) train the restoration net
with plain L1 (``torch.nn.functional.l1_loss``) and the segmentation net with DRAEM's focal loss.
"""

from __future__ import annotations

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_choice, check_non_negative, check_odd_size

__all__ = ["focal_loss", "FocalLoss", "ssim_loss", "SSIMLoss", "draem_reconstruction_loss"]

REDUCTIONS = ("mean", "sum", "none")
# DRAEM's focal loss: FocalLoss() with alpha=None (every class weighted 1) and gamma=2 (DRAEM loss.py, train_DRAEM.py).
FOCAL_ALPHA = 1.0
FOCAL_GAMMA = 2.0
# DRAEM's SSIM: 11x11 Gaussian window with sigma 1.5 (Wang et al. 2004; DRAEM loss.py).
SSIM_WINDOW_SIZE = 11
# Data range L of the images (c1 = (0.01 L)^2, c2 = (0.03 L)^2). DRAEM infers L from the values (1 for images in
# [0, 1], which is what this library feeds the networks).
SSIM_DATA_RANGE = 1.0


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    check_choice("reduction", reduction, REDUCTIONS)
    if reduction == "mean":
        return loss.mean()
    return loss.sum() if reduction == "sum" else loss


def focal_loss(
    logits: Tensor,
    target: Tensor,
    alpha: float = FOCAL_ALPHA,
    gamma: float = FOCAL_GAMMA,
    reduction: str = "mean",
) -> Tensor:
    r"""Focal loss of 2-class logits against a binary mask (Lin et al. 2017), as DRAEM trains its segmentation net.

    Per pixel, :math:`\mathrm{FL} = -\alpha\,(1 - p_t)^{\gamma} \log p_t` with :math:`p_t` the softmax
    probability of the target class. See :class:`FocalLoss`.

    Args:
        logits: unnormalized scores of (normal, anomalous).
        target: binary mask, 1 = anomalous (bool or 0/1 of any dtype).
        alpha: weight of every pixel (DRAEM weights both classes by 1).
        gamma: focusing parameter; 0 gives cross entropy.
        reduction: ``"mean"`` over pixels, ``"sum"``, or ``"none"``.

    Returns:
        The loss: a scalar tensor, or the per-pixel loss with ``reduction="none"``.

    Shape:
        - logits: :math:`(B, 2, H, W)`; target: :math:`(B, 1, H, W)` or :math:`(B, H, W)`.
        - Output: scalar, or :math:`(B, 1, H, W)` with ``reduction="none"``.

    NOTE: DRAEM applies its focal loss to softmax probabilities with a label smoothing of 1e-5 (targets clamped to
    [1e-5, 1 - 1e-5] and 1e-5 added to :math:`p_t` before the log); this version works on log-softmax logits
    without smoothing (stable for confident logits), and differs from DRAEM's by about 1e-5 per pixel.
    NOTE: ``kornia.losses.focal_loss`` is not used: its ``alpha`` weights class 0 by :math:`1 - \alpha` (``alpha=1``
    would drop every normal pixel) and its ``"mean"`` divides by twice the pixel count.

    Example:
        >>> logits = torch.tensor([0.0, 0.0]).view(1, 2, 1, 1)
        >>> focal_loss(logits, torch.ones(1, 1, 1, 1))  # -(1 - 0.5)**2 * log(0.5)
        tensor(0.1733)
    """
    check_non_negative("alpha", alpha)
    check_non_negative("gamma", gamma)
    if logits.ndim != 4 or logits.shape[1] != 2:
        raise ValueError(f"logits must have shape (B, 2, H, W), got {tuple(logits.shape)}")
    if target.ndim == 3:
        target = target.unsqueeze(1)
    b, _, h, w = logits.shape
    if tuple(target.shape) != (b, 1, h, w):
        raise ValueError(
            f"target must have shape (B, 1, H, W) or (B, H, W) matching logits {tuple(logits.shape)}, "
            f"got {tuple(target.shape)}"
        )
    if target.dtype != torch.bool and not bool(((target == 0) | (target == 1)).all()):
        raise ValueError(f"target must be binary (bool or 0/1), got values {target.unique()[:8].tolist()}")
    log_pt = logits.log_softmax(dim=1).gather(1, target.long())  # (B, 1, H, W)
    loss = -alpha * (1.0 - log_pt.exp()).pow(gamma) * log_pt
    return _reduce(loss, reduction)


class FocalLoss(nn.Module):
    """Module form of :func:`focal_loss`; stores its arguments.

    Args:
        alpha: weight of every pixel.
        gamma: focusing parameter.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Returns:
        Calling it, ``loss(logits, target)``, returns :func:`focal_loss` of the two.

    Shape:
        - logits: :math:`(B, 2, H, W)`; target: :math:`(B, 1, H, W)` or :math:`(B, H, W)`; output as
          :func:`focal_loss`.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> FocalLoss()(torch.randn(2, 2, 8, 8), torch.rand(2, 1, 8, 8) > 0.5).shape
        torch.Size([])
    """

    def __init__(self, alpha: float = FOCAL_ALPHA, gamma: float = FOCAL_GAMMA, reduction: str = "mean") -> None:
        super().__init__()
        self.alpha = check_non_negative("alpha", alpha)
        self.gamma = check_non_negative("gamma", gamma)
        self.reduction = check_choice("reduction", reduction, REDUCTIONS)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return focal_loss(logits, target, self.alpha, self.gamma, self.reduction)


def ssim_loss(pred: Tensor, target: Tensor, window_size: int = SSIM_WINDOW_SIZE, reduction: str = "mean") -> Tensor:
    r"""DRAEM's SSIM loss, :math:`1 - \mathrm{SSIM}`, with zero padding, for images in :math:`[0, 1]`.

    Local means and (co)variances are Gaussian-weighted (sigma 1.5) over ``window_size`` taps, with the image
    zero-padded by ``window_size // 2``, as DRAEM computes them; the SSIM map is ``kornia.metrics.ssim`` of the
    padded images with ``padding="valid"`` and ``eps=0``.

    Args:
        pred: predicted (restored) images.
        target: reference images.
        window_size: odd number of Gaussian taps.
        reduction: ``"mean"`` (:math:`1 -` mean SSIM, DRAEM's loss), ``"sum"``, or ``"none"`` (the map
            :math:`1 - \mathrm{SSIM}`).

    Returns:
        The loss: a scalar tensor, or the map :math:`1 - \mathrm{SSIM}` with ``reduction="none"``.

    Shape:
        - pred, target: :math:`(B, C, H, W)`.
        - Output: scalar, or :math:`(B, C, H, W)` with ``reduction="none"``.

    NOTE: ``kornia.losses.SSIMLoss`` returns :math:`(1 - \mathrm{SSIM}) / 2` and pads with reflection; this loss is
    twice that away from the borders and equals DRAEM's at the borders too.

    Example:
        >>> x = torch.rand(1, 1, 16, 16)
        >>> ssim_loss(x, x)
        tensor(0.)
    """
    check_odd_size("window_size", window_size)
    if pred.ndim != 4 or pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape (B, C, H, W), got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}"
        )
    pad = [window_size // 2] * 4
    ssim_map = kornia.metrics.ssim(
        F.pad(pred, pad), F.pad(target, pad), window_size, max_val=SSIM_DATA_RANGE, eps=0.0, padding="valid"
    )
    return _reduce(1.0 - ssim_map, reduction)


class SSIMLoss(nn.Module):
    """Module form of :func:`ssim_loss`; stores its arguments.

    Args:
        window_size: odd number of Gaussian taps.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Returns:
        Calling it, ``loss(pred, target)``, returns :func:`ssim_loss` of the two.

    Shape:
        - pred, target: :math:`(B, C, H, W)`; output as :func:`ssim_loss`.

    Example:
        >>> x = torch.rand(1, 1, 16, 16)
        >>> SSIMLoss()(x, x)
        tensor(0.)
    """

    def __init__(self, window_size: int = SSIM_WINDOW_SIZE, reduction: str = "mean") -> None:
        super().__init__()
        self.window_size = check_odd_size("window_size", window_size)
        self.reduction = check_choice("reduction", reduction, REDUCTIONS)

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return ssim_loss(pred, target, self.window_size, self.reduction)


def draem_reconstruction_loss(pred: Tensor, target: Tensor) -> Tensor:
    """DRAEM's reconstruction loss: mean squared error plus :func:`ssim_loss` (both weighted 1).

    Args:
        pred: reconstructed images.
        target: anomaly-free images.

    Returns:
        A scalar tensor, ``mse(pred, target) + ssim_loss(pred, target)``.

    Shape:
        - pred, target: :math:`(B, C, H, W)`; output: scalar.

    Example:
        >>> draem_reconstruction_loss(torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 16, 16))
        tensor(0.)
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    return F.mse_loss(pred, target) + ssim_loss(pred, target)
