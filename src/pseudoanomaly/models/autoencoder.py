"""DRAEM's reconstructive sub-network: a convolutional autoencoder without skip connections.

Paper: Zavrtanik, Kristan & Skocaj, "DRAEM -- A discriminatively trained reconstruction embedding for surface
anomaly detection", ICCV 2021.

Reference code: github.com/VitjanZ/DRAEM, ``model_unet.py``, ``ReconstructiveSubNetwork(base_width=128)``.
Design: Conv-BN-ReLU steps, two per block; encoder of 5 blocks at widths 128/256/512/1024/1024 with 4 max-pool
downsamplings; decoder of 4 stages, each bilinear x2 upsampling + one step at the same width, then a block whose
second step narrows to the next width (512, 256, 128, 128); a 3x3 output conv with a linear output.
Here it serves ablations that restore without a U-Net's skips. 69,043,969 parameters at defaults (1 channel).

NOTE: ``channel_multipliers`` generalizes DRAEM's fixed (1, 2, 4, 8, 8); the decoder keeps DRAEM's pattern of
narrowing one level ahead of the encoder, so its widths are not the mirror image of the encoder's.
NOTE: DRAEM's convs keep a bias before BatchNorm (redundant, kept so the parameter count matches).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_int_at_least, check_model_input
from .layers import ActLayer, ConvBlock, NormLayer, UpsampleConvNormAct, block_widths

__all__ = ["ReconstructiveAE"]

# DRAEM: ReconstructiveSubNetwork(base_width=128), encoder widths base * (1, 2, 4, 8, 8).
DRAEM_RECONSTRUCTIVE_BASE_WIDTH = 128
DRAEM_RECONSTRUCTIVE_MULTIPLIERS = (1, 2, 4, 8, 8)


class ReconstructiveAE(nn.Module):
    """Autoencoder without skips that reconstructs the anomaly-free image (DRAEM's reconstructive sub-network).

    Args:
        in_channels: channels of the input image.
        out_channels: channels of the reconstruction.
        base_width: channels of the first encoder block.
        channel_multipliers: width of each encoder block as a multiple of ``base_width``; one max-pool between
            consecutive blocks.
        norm_layer: called with a channel count.
        act_layer: activation class.

    Returns:
        Calling it on a batch returns the reconstructed images (linear output).

    Shape:
        - Input: :math:`(B, C_{in}, H, W)` with :math:`H, W` divisible by :math:`2^{n-1}`, ``n`` the number of
          blocks (16 by default).
        - Output: :math:`(B, C_{out}, H, W)`.

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> net = ReconstructiveAE(base_width=4)
        >>> net(torch.rand(2, 1, 32, 32)).shape
        torch.Size([2, 1, 32, 32])
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        base_width: int = DRAEM_RECONSTRUCTIVE_BASE_WIDTH,
        channel_multipliers: Sequence[int] = DRAEM_RECONSTRUCTIVE_MULTIPLIERS,
        *,
        norm_layer: NormLayer = nn.BatchNorm2d,
        act_layer: ActLayer = nn.ReLU,
    ) -> None:
        super().__init__()
        check_int_at_least("in_channels", in_channels, 1)
        check_int_at_least("out_channels", out_channels, 1)
        widths = block_widths(base_width, channel_multipliers)
        self.in_channels, self.num_pools = in_channels, len(widths) - 1
        step = dict(norm_layer=norm_layer, act_layer=act_layer)
        self.encoder = nn.ModuleList(
            ConvBlock(c_in, c_out, **step) for c_in, c_out in zip([in_channels] + widths[:-1], widths)
        )
        # Decoder stage to level i (deepest first): upsample at constant width, then narrow to widths[i - 1].
        self.upsamplers = nn.ModuleList()
        self.decoder = nn.ModuleList()
        width = widths[-1]
        for i in reversed(range(self.num_pools)):
            narrowed = widths[max(i - 1, 0)]
            self.upsamplers.append(UpsampleConvNormAct(width, width, **step))
            self.decoder.append(ConvBlock(width, narrowed, mid_channels=width, **step))
            width = narrowed
        self.head = nn.Conv2d(width, out_channels, kernel_size=3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        check_model_input(x, self.in_channels, 2**self.num_pools, 2**self.num_pools, type(self).__name__)
        for i, block in enumerate(self.encoder):
            x = F.max_pool2d(x, 2) if i > 0 else x
            x = block(x)  # (B, widths[i], H / 2**i, W / 2**i)
        for up, block in zip(self.upsamplers, self.decoder):
            x = block(up(x))
        return self.head(x)

