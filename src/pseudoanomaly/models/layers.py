"""Building blocks shared by the models: weight-standardized conv, conv-norm-act steps and blocks.

Papers:
    Qiao et al., "Micro-Batch Training with Batch-Channel Normalization and Weight Standardization",
    arXiv:1903.10520 (2019) -- weight standardization.
    Wu & He, "Group Normalization", ECCV 2018.

Reference code: github.com/joe-siyuan-qiao/WeightStandardization (WS conv, reused unchanged by the released
restoration net of Zhang, Deng & Li 2023, github.com/nono-zz/LiTs-Segmentation) and timm's ``StdConv2d``.

Blocks take their layers as classes (``conv_layer``, ``norm_layer``, ``act_layer``, ``pad_layer``), as timm does,
so the restoration U-Net (reflection pad -> WS conv -> SiLU -> GroupNorm) and DRAEM's sub-networks
(conv -> BatchNorm -> ReLU) are two constructor calls of the same block rather than two copies.

NOTE: timm's ``StdConv2d`` uses the biased variance with ``eps`` inside the square root; we follow the reference
code used by the released restoration net instead: unbiased std, ``eps`` added to the std.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch  # noqa: F401 -- the doctests below use it
from torch import Tensor, nn

from .._checks import check_int_at_least, check_int_sequence, check_odd_size
from ._group_norm import channels_last_group_norm, use_channels_last_group_norm

__all__ = ["WSConv2d", "standardize_weight", "group_count", "MedianDivisorGroupNorm", "ConvNormAct", "ConvBlock",
           "UpsampleConvNormAct"]

# Added to the per-filter std before dividing (Qiao et al. reference code, also in the released restoration net).
WS_EPS = 1e-5

NormLayer = Callable[[int], nn.Module]  # called with the number of channels
ActLayer = Callable[[], nn.Module]
PadLayer = Callable[[int], nn.Module]  # called with the padding width


def standardize_weight(weight: Tensor, eps: float = WS_EPS) -> Tensor:
    """Standardize a conv kernel per output filter: subtract the mean, divide by ``std + eps``.

    Args:
        weight: conv kernel.
        eps: added to the (unbiased) standard deviation of each filter.

    Shape:
        - weight: :math:`(C_{out}, C_{in}, k_h, k_w)`; output: same.

    Example:
        >>> w = standardize_weight(torch.randn(4, 3, 3, 3))
        >>> w.flatten(1).mean(1).abs().max() < 1e-6
        tensor(True)
    """
    flat = weight.flatten(1)  # (C_out, C_in * k_h * k_w)
    mean = flat.mean(dim=1)
    std = flat.std(dim=1)  # unbiased, as in the reference code
    shape = (-1,) + (1,) * (weight.ndim - 1)
    return (weight - mean.view(shape)) / (std.view(shape) + eps)


class WSConv2d(nn.Conv2d):
    """2-D convolution whose kernel is weight-standardized on every forward (Qiao et al. 2019).

    Takes the arguments of :class:`torch.nn.Conv2d`; the stored ``weight`` stays unconstrained and the
    convolution uses :func:`standardize_weight` of it.

    Args:
        *args: positional arguments of :class:`torch.nn.Conv2d` (``in_channels``, ``out_channels``,
            ``kernel_size``, ...).
        **kwargs: keyword arguments of :class:`torch.nn.Conv2d` (``stride``, ``padding``, ``bias``, ...).

    Returns:
        Calling it returns the convolution of the input with the standardized kernel.

    Shape:
        - Input: :math:`(B, C_{in}, H, W)`; output: :math:`(B, C_{out}, H', W')` as for ``nn.Conv2d``.

    Example:
        >>> conv = WSConv2d(1, 4, 3, padding=1)
        >>> conv(torch.rand(2, 1, 8, 8)).shape
        torch.Size([2, 4, 8, 8])
    """

    def forward(self, input: Tensor) -> Tensor:
        return self._conv_forward(input, standardize_weight(self.weight), self.bias)


def group_count(num_channels: int) -> int:
    """Number of GroupNorm groups for ``num_channels``: the median divisor (the upper one of an even count).

    This is the rule of the released restoration net; it gives 8/16/16/32 groups for 64/128/256/512 channels.

    Example:
        >>> [group_count(c) for c in (64, 128, 256, 512)]
        [8, 16, 16, 32]
    """
    check_int_at_least("num_channels", num_channels, 1)
    divisors = [d for d in range(1, num_channels + 1) if num_channels % d == 0]
    return divisors[len(divisors) // 2]


class MedianDivisorGroupNorm(nn.GroupNorm):
    """GroupNorm constructed from the channel count alone, with :func:`group_count` groups.

    Args:
        num_channels: channels of the input.
        eps: as for ``nn.GroupNorm``.
        affine: as for ``nn.GroupNorm``.

    Shape:
        - Input: :math:`(B, C, *)`; output: same.

    Example:
        >>> MedianDivisorGroupNorm(64).num_groups
        8
    """

    def __init__(self, num_channels: int, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__(group_count(num_channels), num_channels, eps=eps, affine=affine)

    def forward(self, input: Tensor) -> Tensor:
        if use_channels_last_group_norm(input):  # PyTorch's CPU kernel is slow on channels-last tensors
            return channels_last_group_norm(input, self.num_groups, self.weight, self.bias, self.eps)
        return super().forward(input)


class ConvNormAct(nn.Sequential):
    """One conv step: [pad ->] conv -> norm -> act, or conv -> act -> norm with ``act_before_norm``.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: square kernel side (odd); the output keeps the input's height and width.
        conv_layer: conv class called as ``conv_layer(in, out, kernel_size, padding=...)``.
        norm_layer: called with the channel count (``nn.BatchNorm2d``, :class:`MedianDivisorGroupNorm`,
            ``functools.partial(nn.GroupNorm, 8)``, ``nn.Identity``).
        act_layer: called with no argument (``nn.ReLU``, ``nn.SiLU``).
        pad_layer: called with the padding width (``nn.ReflectionPad2d``); ``None`` lets the conv zero-pad.
        act_before_norm: apply the activation before the norm, as the released restoration net does.

    Shape:
        - Input: :math:`(B, C_{in}, H, W)`; output: :math:`(B, C_{out}, H, W)`.

    Example:
        >>> step = ConvNormAct(1, 8, norm_layer=MedianDivisorGroupNorm, act_layer=nn.SiLU)
        >>> step(torch.rand(2, 1, 16, 16)).shape
        torch.Size([2, 8, 16, 16])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        conv_layer: type[nn.Conv2d] = nn.Conv2d,
        norm_layer: NormLayer = nn.BatchNorm2d,
        act_layer: ActLayer = nn.ReLU,
        pad_layer: PadLayer | None = None,
        act_before_norm: bool = False,
    ) -> None:
        check_odd_size("kernel_size", kernel_size)
        padding = kernel_size // 2
        layers: list[tuple[str, nn.Module]] = []
        if pad_layer is not None:
            layers.append(("pad", pad_layer(padding)))
            padding = 0
        layers.append(("conv", conv_layer(in_channels, out_channels, kernel_size, padding=padding)))
        norm_act = [("norm", norm_layer(out_channels)), ("act", act_layer())]
        layers += norm_act[::-1] if act_before_norm else norm_act
        super().__init__(OrderedDict(layers))


class ConvBlock(nn.Sequential):
    """Two :class:`ConvNormAct` steps, ``in -> mid -> out`` (the usual U-Net block).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        mid_channels: channels between the two steps; defaults to ``out_channels``.
        **step_kwargs: passed to both :class:`ConvNormAct` steps (``conv_layer``, ``norm_layer`` ...).

    Shape:
        - Input: :math:`(B, C_{in}, H, W)`; output: :math:`(B, C_{out}, H, W)`.

    Example:
        >>> ConvBlock(2, 8)(torch.rand(2, 2, 16, 16)).shape
        torch.Size([2, 8, 16, 16])
    """

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int | None = None, **step_kwargs) -> None:
        mid = out_channels if mid_channels is None else mid_channels
        super().__init__(ConvNormAct(in_channels, mid, **step_kwargs), ConvNormAct(mid, out_channels, **step_kwargs))


# DRAEM's decoders upsample with bilinear interpolation, align_corners=True (Zavrtanik et al. 2021, reference code).
UPSAMPLE_ALIGN_CORNERS = True


class UpsampleConvNormAct(nn.Sequential):
    """Bilinear x2 upsampling followed by one :class:`ConvNormAct` step (DRAEM's decoder upsampling).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        **step_kwargs: passed to :class:`ConvNormAct`.

    Shape:
        - Input: :math:`(B, C_{in}, H, W)`; output: :math:`(B, C_{out}, 2H, 2W)`.

    Example:
        >>> UpsampleConvNormAct(4, 2)(torch.rand(2, 4, 8, 8)).shape
        torch.Size([2, 2, 16, 16])
    """

    def __init__(self, in_channels: int, out_channels: int, **step_kwargs) -> None:
        super().__init__(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=UPSAMPLE_ALIGN_CORNERS),
            ConvNormAct(in_channels, out_channels, **step_kwargs),
        )


def block_widths(base_width: int, channel_multipliers: Sequence[int]) -> list[int]:
    """Block widths ``base_width * m``; raise naming the value unless all are positive integers (two at least)."""
    check_int_at_least("base_width", base_width, 1)
    multipliers = check_int_sequence("channel_multipliers", channel_multipliers, 1, min_length=2)
    return [base_width * m for m in multipliers]
