"""Restoration U-Net of Zhang, Deng & Li (2023).

Paper: Zhang, Deng & Li, "Unsupervised Liver Tumor Segmentation with Pseudo Anomaly Synthesis",
SASHIMI 2023 (MICCAI workshop). The restoration net maps an image with pseudo anomalies back to the normal image.

Reference code: github.com/nono-zz/LiTs-Segmentation, ``model_reconstruction.py``, built as
``UNet(in_channels=1, n_classes=1, depth=4, wf=6, padding=True, norm="group", up_mode="upconv")``; its U-Net derives
from Kascenas et al., "Denoising autoencoders for unsupervised anomaly detection in brain MRI" (MIDL 2022).
Design: each conv step is reflection pad 1 -> weight-standardized 3x3 conv -> Swish -> GroupNorm, two steps per
block; encoder widths 64/128/256/512 with 3 average-pool downsamplings; decoder of 2x2 transposed convs, skip
concatenation and a two-step block; a 1x1 output conv with a linear output. 7,701,825 parameters at defaults.

NOTE: the reference counts depth as the number of levels (``depth=4``); ``depth`` here counts downsamplings (3),
which is what bounds the image size.
NOTE: Swish is ``nn.SiLU`` (the same function; the reference uses a memory-saving custom autograd version).
NOTE: the reference's centre crop of the skip is a no-op with padding and is left out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_int_at_least, check_model_input
from .layers import ActLayer, ConvBlock, MedianDivisorGroupNorm, NormLayer, PadLayer, WSConv2d

__all__ = ["RestorationUNet"]

# Released configuration (reference code: UNet(..., depth=4, wf=6)): widths 2**6 = 64 ... 512, 3 downsamplings.
RESTORATION_BASE_WIDTH = 64
RESTORATION_DEPTH = 3


class RestorationUNet(nn.Module):
    """U-Net that restores a normal image from one with (pseudo) anomalies; linear output, same size as input.

    Level ``i`` has ``base_width * 2**i`` channels, ``i = 0 .. depth``; the defaults are the released network.

    Args:
        in_channels: channels of the input image.
        out_channels: channels of the restored image.
        base_width: channels of the first level.
        depth: number of average-pool downsamplings (and of transposed-conv upsamplings).
        conv_layer: conv class of every 3x3 step (weight-standardized by default).
        norm_layer: called with a channel count; by default GroupNorm with 8/16/16/32 groups at 64/128/256/512.
        act_layer: activation class (Swish = SiLU by default).
        pad_layer: padding class called with the padding width; ``None`` lets the conv zero-pad.

    Returns:
        Calling it on a batch returns the restored images (linear output: not clipped to the value range).

    Shape:
        - Input: :math:`(B, C_{in}, H, W)` with :math:`H, W` divisible by :math:`2^{depth}` and at least
          :math:`2^{depth+1}` (reflection padding needs two pixels at the coarsest level).
        - Output: :math:`(B, C_{out}, H, W)`.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> net = RestorationUNet(base_width=8)
        >>> net(torch.rand(2, 1, 32, 32)).shape
        torch.Size([2, 1, 32, 32])
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        base_width: int = RESTORATION_BASE_WIDTH,
        depth: int = RESTORATION_DEPTH,
        *,
        conv_layer: type[nn.Conv2d] = WSConv2d,
        norm_layer: NormLayer = MedianDivisorGroupNorm,
        act_layer: ActLayer = nn.SiLU,
        pad_layer: PadLayer | None = nn.ReflectionPad2d,
    ) -> None:
        super().__init__()
        for name, value, low in (("in_channels", in_channels, 1), ("out_channels", out_channels, 1),
                                 ("base_width", base_width, 1), ("depth", depth, 0)):
            check_int_at_least(name, value, low)
        self.in_channels, self.depth = in_channels, depth
        step = dict(conv_layer=conv_layer, norm_layer=norm_layer, act_layer=act_layer, pad_layer=pad_layer,
                    act_before_norm=True)
        widths = [base_width * 2**i for i in range(depth + 1)]
        self.encoder = nn.ModuleList(
            ConvBlock(c_in, c_out, **step) for c_in, c_out in zip([in_channels] + widths[:-1], widths)
        )
        # Decoder level i (deepest first): upsample widths[i+1] -> widths[i], concatenate the skip, block back to
        # widths[i].
        self.upsamplers = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], kernel_size=2, stride=2) for i in reversed(range(depth))
        )
        self.decoder = nn.ModuleList(ConvBlock(2 * widths[i], widths[i], **step) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], out_channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        check_model_input(x, self.in_channels, 2**self.depth, 2 ** (self.depth + 1), type(self).__name__)
        skips = []
        for i, block in enumerate(self.encoder):
            x = block(x)
            if i < self.depth:
                skips.append(x)
                x = F.avg_pool2d(x, 2)  # (B, C, H / 2**(i+1), W / 2**(i+1))
        for up, block, skip in zip(self.upsamplers, self.decoder, reversed(skips)):
            x = block(torch.cat([up(x), skip], dim=1))
        return self.head(x)
