"""DRAEM's discriminative sub-network: a U-Net that segments anomalies from an image and its restoration.

Paper: Zavrtanik, Kristan & Skocaj, "DRAEM -- A discriminatively trained reconstruction embedding for surface
anomaly detection", ICCV 2021. Zhang, Deng & Li (SASHIMI 2023) use it unchanged as their segmentation net.

Reference code: github.com/VitjanZ/DRAEM, ``model_unet.py``, ``DiscriminativeSubNetwork(in_channels=2 * C,
out_channels=2, base_channels=64)``; github.com/nono-zz/LiTs-Segmentation builds it with ``in_channels=2``.
Design: Conv-BN-ReLU steps, two per block; encoder of 6 blocks at widths 64/128/256/512/512/512 with 5 max-pool
downsamplings; decoder of 5 stages, each bilinear x2 upsampling + one step that narrows to the next width
(512, 256, 128, 64, 64), skip concatenation and a two-step block; a 3x3 output conv giving 2-class logits.
28,371,842 parameters at defaults (1-channel images, 2 input channels).

NOTE: ``in_channels`` is the channel count C of one image; the network takes the restored image and the image
concatenated, 2C channels (DRAEM's constructor takes 2C directly).
NOTE: ``channel_multipliers`` generalizes DRAEM's fixed (1, 2, 4, 8, 8, 8).
NOTE: DRAEM's convs keep a bias before BatchNorm (redundant, kept so the parameter count matches).
NOTE: DRAEM also returns intermediate decoder features on request; this network returns the logits only.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_int_at_least, check_model_input
from .layers import ActLayer, ConvBlock, NormLayer, UpsampleConvNormAct, block_widths

__all__ = ["SegmentationNet"]

# DRAEM: DiscriminativeSubNetwork(base_channels=64), encoder widths base * (1, 2, 4, 8, 8, 8).
DRAEM_DISCRIMINATIVE_BASE_WIDTH = 64
DRAEM_DISCRIMINATIVE_MULTIPLIERS = (1, 2, 4, 8, 8, 8)
# Logit channels: 0 = normal, 1 = anomalous (DRAEM trains them with a 2-class focal loss).
NUM_CLASSES = 2


class SegmentationNet(nn.Module):
    """U-Net giving 2-class (normal, anomalous) logits from ``cat([restored, image], dim=1)``.

    Args:
        in_channels: channels C of one image; the input has 2C channels.
        base_width: channels of the first encoder block.
        channel_multipliers: width of each encoder block as a multiple of ``base_width``; one max-pool between
            consecutive blocks.
        norm_layer: called with a channel count.
        act_layer: activation class.

    Returns:
        Calling it on ``torch.cat([restored, image], dim=1)`` returns 2-class logits (normal, anomalous).

    Shape:
        - Input: :math:`(B, 2C, H, W)` with :math:`H, W` divisible by :math:`2^{n-1}`, ``n`` the number of
          blocks (32 by default).
        - Output: :math:`(B, 2, H, W)` logits; softmax channel 1 is the anomaly probability.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> net = SegmentationNet(base_width=4)
        >>> net(torch.rand(2, 2, 32, 32)).shape
        torch.Size([2, 2, 32, 32])
    """

    def __init__(
        self,
        in_channels: int = 1,
        base_width: int = DRAEM_DISCRIMINATIVE_BASE_WIDTH,
        channel_multipliers: Sequence[int] = DRAEM_DISCRIMINATIVE_MULTIPLIERS,
        *,
        norm_layer: NormLayer = nn.BatchNorm2d,
        act_layer: ActLayer = nn.ReLU,
    ) -> None:
        super().__init__()
        check_int_at_least("in_channels", in_channels, 1)
        widths = block_widths(base_width, channel_multipliers)
        self.in_channels, self.num_pools = in_channels, len(widths) - 1
        step = dict(norm_layer=norm_layer, act_layer=act_layer)
        self.encoder = nn.ModuleList(
            ConvBlock(c_in, c_out, **step) for c_in, c_out in zip([2 * in_channels] + widths[:-1], widths)
        )
        # Decoder stage to level i (deepest first): upsample and narrow to widths[i - 1], concatenate the skip
        # (widths[i] channels), then a block at the narrowed width.
        self.upsamplers = nn.ModuleList()
        self.decoder = nn.ModuleList()
        width = widths[-1]
        for i in reversed(range(self.num_pools)):
            narrowed = widths[max(i - 1, 0)]
            self.upsamplers.append(UpsampleConvNormAct(width, narrowed, **step))
            self.decoder.append(ConvBlock(narrowed + widths[i], narrowed, **step))
            width = narrowed
        self.head = nn.Conv2d(width, NUM_CLASSES, kernel_size=3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        check_model_input(x, 2 * self.in_channels, 2**self.num_pools, 2**self.num_pools, type(self).__name__)
        skips = []
        for i, block in enumerate(self.encoder):
            x = block(F.max_pool2d(x, 2) if i > 0 else x)  # (B, widths[i], H / 2**i, W / 2**i)
            skips.append(x)
        x = skips.pop()
        for up, block, skip in zip(self.upsamplers, self.decoder, reversed(skips)):
            x = block(torch.cat([up(x), skip], dim=1))
        return self.head(x)
