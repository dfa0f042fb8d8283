"""Inference pipeline: image -> restoration net -> segmentation net -> anomaly probability map.

Papers: Zavrtanik et al., DRAEM, ICCV 2021 (the anomaly map is softmax channel 1 of the discriminative network
applied to ``cat([restored, image])``); Zhang, Deng & Li, SASHIMI 2023 (same pipeline with a restoration U-Net;
predictions are restricted to the liver).

Reference code: github.com/VitjanZ/DRAEM ``test_DRAEM.py`` and github.com/nono-zz/LiTs-Segmentation
``evaluation.py`` (``softmax(model_segment(cat(rec, img)))[:, 1]``).

NOTE: the references evaluate one image at a time; this module is batched and chunks big inputs with
``batch_size``. Zeroing the map outside a foreground is done here rather than in the evaluation script.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from .._checks import check_choice, check_foreground, check_int_at_least, check_network_images

__all__ = ["AnomalySegmenter"]

#: Precisions of :class:`AnomalySegmenter`: float32, or bfloat16 autocast.
PRECISIONS = ("fp32", "bf16")


class AnomalySegmenter(nn.Module):
    """Anomaly probability maps from images, with a restoration net and a segmentation net.

    Always runs both networks in eval mode without recording gradients; the networks' own train/eval modes are
    restored afterwards, so a trainer may share them with a segmenter used for validation.

    Args:
        restoration: maps images :math:`(B, C, H, W)` to restored images of the same shape.
        segmentation: maps :math:`(B, 2C, H, W)` (restored, image) to 2-class logits :math:`(B, 2, H, W)`.
        batch_size: images per forward pass; ``None`` runs the whole input at once. Each chunk runs on the
            networks' device and the map comes back on the images' device, so a CPU volume can be segmented
            on a GPU chunk by chunk.
        precision: ``"fp32"``, or ``"bf16"`` for bfloat16 autocast on the networks' device (CPU or CUDA; the
            maps still come back in float32). On a CPU with AMX or AVX-512 BF16 it is about 2-3x faster than
            fp32 (the released nets at 256 x 256: 558 against 1,625 ms per slice with ``channels_last``, 2-core dev
            VM, ``benchmarks/training_speed.py``); elsewhere it may be slower. The probabilities differ from fp32 by
            bfloat16 rounding (up to about 0.002 on untrained nets): validate a threshold in the precision you
            deploy.
        channels_last: convert the networks' parameters to the channels-last memory format (in place, at
            construction) and feed them channels-last images: oneDNN's convolutions run faster on it on a CPU
            (1.3x in fp32, and most of the bf16 gain). The maps equal the default layout's up to float rounding.

    Returns:
        Calling it, ``segmenter(images, foreground=None)``, returns anomaly probability maps: softmax channel 1
        of the segmentation net, exactly 0 outside the foreground, on the images' device.

    Shape:
        - images: :math:`(B, C, H, W)`.
        - foreground: :math:`(B, 1, H, W)` bool or 0/1, optional; the map is exactly 0 outside it.
        - Output: :math:`(B, 1, H, W)` in :math:`[0, 1]`.

    Example:
        >>> from pseudoanomaly.models import RestorationUNet, SegmentationNet
        >>> _ = torch.manual_seed(0)
        >>> segmenter = AnomalySegmenter(RestorationUNet(base_width=8), SegmentationNet(base_width=4))
        >>> images = torch.rand(3, 1, 32, 32)
        >>> foreground = torch.zeros(3, 1, 32, 32, dtype=torch.bool)
        >>> foreground[..., 8:24, 8:24] = True
        >>> maps = segmenter(images, foreground)
        >>> maps.shape, bool(maps[~foreground].eq(0).all())
        (torch.Size([3, 1, 32, 32]), True)
    """

    def __init__(
        self,
        restoration: nn.Module,
        segmentation: nn.Module,
        batch_size: int | None = None,
        *,
        precision: str = "fp32",
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        check_int_at_least("batch_size", batch_size, 1, allow_none=True)
        self.precision = check_choice("precision", precision, PRECISIONS)
        if not isinstance(channels_last, bool):
            raise ValueError(f"channels_last must be True or False, got {channels_last!r}")
        self.restoration = restoration
        self.segmentation = segmentation
        self.batch_size = batch_size
        self.channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last)

    @torch.no_grad()
    def forward(self, images: Tensor, foreground: Tensor | None = None) -> Tensor:
        check_network_images(images)
        # an empty foreground is allowed: that image's map is all 0
        foreground = check_foreground(foreground, images, allow_empty=True)
        device = next(self.parameters(), images).device
        if device.type == "meta":
            raise ValueError("the networks' weights are meta tensors (no data): load weights before segmenting")
        chunks = images.split(self.batch_size or len(images))
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")
        with _eval_mode(self), autocast:
            maps = torch.cat([
                self._probability(chunk.to(device, memory_format=layout)).to(images.device) for chunk in chunks
            ]).contiguous()  # the default layout, whatever the networks ran in
        if foreground is not None:
            maps = maps.masked_fill(~foreground, 0.0)
        return maps

    def extra_repr(self) -> str:
        parts = [f"batch_size={self.batch_size}"] if self.batch_size is not None else []
        parts += [f"precision={self.precision!r}"] if self.precision != "fp32" else []
        parts += ["channels_last=True"] if self.channels_last else []
        return ", ".join(parts)

    def _probability(self, images: Tensor) -> Tensor:
        restored = self.restoration(images)
        logits = self.segmentation(torch.cat([restored, images], dim=1))  # (B, 2, H, W)
        if logits.dtype in (torch.bfloat16, torch.float16):  # autocast: the softmax and the map in float32
            logits = logits.float()
        return logits.softmax(dim=1)[:, 1:]  # (B, 1, H, W)


@contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Put ``module`` and its children in eval mode, then restore each one's previous mode."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training
