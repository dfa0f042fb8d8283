"""GroupNorm of a channels-last 4-D tensor on the CPU, in a few passes over memory.

PyTorch's CPU GroupNorm kernel is fast on NCHW tensors and slow on channels-last ones with few channels,
slower still in bfloat16: on 8 x 8 x 128 x 128 (2 threads, 2026-12-02) its forward and backward take 4.4 ms in
float32 and 12.5 ms in bfloat16, against 1.1 ms for the same tensor in NCHW. In the ``cpu`` preset's restoration
U-Net (8 channels at full resolution, a GroupNorm after every convolution) that made GroupNorm the largest cost
of a channels-last training step in bfloat16.

Here the tensor is seen as ``(N, H*W, C)`` (its memory order when channels-last): per-sample, per-channel sums
over pixels are reductions along the middle dimension, which vectorize over the contiguous channels; the
group statistics follow from those ``N x C`` sums; and the normalization and its gradient are each one or two
elementwise passes with per-(sample, channel) coefficients. The mean is taken first and the variance from the
centred values (two passes, no cancellation of a sum of squares). Statistics and coefficients are float32
whatever the input dtype; the output and the input gradient have the input's dtype and layout.

The gradient follows Wu & He (2018), as derived for any normalization over a group: with ``xhat`` the
normalized input, ``g = dy * gamma``, ``D`` the group's element count,
``dx = rstd * (g - mean_D(g) - xhat * mean_D(g * xhat))``, written as ``dx = c1 * dy + c2 * x + c3`` with
per-(sample, channel) ``c1, c2, c3`` so that it is two passes.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["use_channels_last_group_norm", "channels_last_group_norm"]

# Widen the innermost dimension of the per-pixel passes to about this many elements: with C = 8 channels
# innermost, a broadcast of per-(sample, channel) coefficients runs loops of 8 and is 4-5x slower.
_INNER = 256

# Where this path is faster (2 threads, dev VM, 2026-12-02, forward + backward, ``benchmarks/cpu_preset_step.py``
# and alternating pairs): with few channels on many pixels, where PyTorch's channels-last kernel cannot vectorize
# over the channels: 8 x 8 x 128 x 128, 3.2 against 4.8 ms in float32 and 4.5 against 12.4 ms in bfloat16 (with
# freed memory retained; 4.2 against 6.2 and 11.0 against 13.4 without). With more channels PyTorch's kernel
# wins (8 x 32 x 128 x 128: equal in float32; 8 x 64 x 256 x 256: 149 against 274 ms) and so it does on small
# images, where the ~15 small operations here cost ~0.3 ms whatever the size.
_MAX_CHANNELS = 8
_MIN_PIXELS = 128 * 128


def use_channels_last_group_norm(x: Tensor) -> bool:
    """Whether :func:`channels_last_group_norm` should handle ``x``: a CPU float tensor of 4 dimensions stored
    channels-last (and not also contiguous, as a tensor of 1 channel or 1 pixel is), of at most 8 channels and at
    least 128 x 128 pixels."""
    return (x.device.type == "cpu" and x.dim() == 4 and x.dtype in (torch.float32, torch.bfloat16, torch.float16)
            and x.shape[1] <= _MAX_CHANNELS and x.shape[-2] * x.shape[-1] >= _MIN_PIXELS
            and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous())


def channels_last_group_norm(x: Tensor, num_groups: int, weight: Tensor | None, bias: Tensor | None,
                             eps: float) -> Tensor:
    """``torch.nn.functional.group_norm`` for a channels-last ``x`` (see :func:`use_channels_last_group_norm`).

    Equal to it up to float rounding; once differentiable (no gradient of the gradient)."""
    return _ChannelsLastGroupNorm.apply(x, num_groups, weight, bias, eps)


def _pixels(x: Tensor) -> Tensor:
    """``(N, H*W, C)`` float32 view (or copy) of a channels-last ``(N, C, H, W)`` tensor."""
    n, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(n, h * w, c).float()


def _fold(pixels: int, channels: int) -> int:
    """How many pixels to fold into the innermost dimension: a power of two dividing ``pixels``."""
    k = 1
    while k * 2 * channels <= _INNER and pixels % (k * 2) == 0:
        k *= 2
    return k


def _wide(x: Tensor, k: int) -> Tensor:
    """``(N, P, C)`` -> ``(N, P / k, k * C)`` (a view)."""
    n, p, c = x.shape
    return x.view(n, p // k, k * c)


def _per_channel(coef: Tensor, k: int) -> Tensor:
    """``(N, C)`` coefficients -> ``(N, 1, k * C)``, to broadcast over a :func:`_wide` view."""
    return coef.repeat(1, k).unsqueeze(1)


def _per_group(stat: Tensor, per_group: int) -> Tensor:
    """``(N, G)`` -> ``(N, C)``."""
    return stat.repeat_interleave(per_group, dim=1)


def _group_sum(per_channel: Tensor, groups: int) -> Tensor:
    """``(N, C)`` -> ``(N, G)``."""
    n, c = per_channel.shape
    return per_channel.view(n, groups, c // groups).sum(-1)


class _ChannelsLastGroupNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, num_groups: int, weight: Tensor | None, bias: Tensor | None,
                eps: float) -> Tensor:
        n, c, h, w = x.shape
        per_group = c // num_groups
        count = per_group * h * w
        px = _pixels(x)
        k = _fold(h * w, c)
        mean = _group_sum(px.sum(dim=1), num_groups) / count  # (N, G)
        mean_c = _per_group(mean, per_group)  # (N, C)
        centred = _wide(px, k) - _per_channel(mean_c, k)
        var = _group_sum(centred.square_().view(n, h * w, c).sum(dim=1), num_groups) / count
        del centred
        rstd = torch.rsqrt(var + eps)  # (N, G)
        scale = _per_group(rstd, per_group)
        if weight is not None:
            scale = scale * weight.float()
        shift = -mean_c * scale
        if bias is not None:
            shift = shift + bias.float()
        y = torch.addcmul(_per_channel(shift, k), _wide(px, k), _per_channel(scale, k)).to(x.dtype)
        ctx.save_for_backward(x, weight, mean, rstd)
        ctx.num_groups = num_groups
        ctx.bias_dtype = None if bias is None else bias.dtype
        return y.view(n, h, w, c).permute(0, 3, 1, 2)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy: Tensor):
        x, weight, mean, rstd = ctx.saved_tensors
        groups = ctx.num_groups
        n, c, h, w = x.shape
        per_group = c // groups
        count = per_group * h * w
        k = _fold(h * w, c)
        px = _pixels(x)
        dpx = _pixels(dy.contiguous(memory_format=torch.channels_last))
        sum_dy = dpx.sum(dim=1)  # (N, C)
        sum_dy_x = (dpx * px).sum(dim=1)
        gamma = torch.ones(c, dtype=torch.float32, device=x.device) if weight is None else weight.float()
        sum_g = _group_sum(sum_dy * gamma, groups)  # (N, G): sum of dy * gamma over the group
        sum_gx = _group_sum(sum_dy_x * gamma, groups)  # sum of dy * gamma * x
        rstd_c = _per_group(rstd, per_group)
        dx = d_weight = d_bias = None
        if ctx.needs_input_grad[0]:  # dx = rstd * gamma * dy + c2 * x + c3 (see the module docstring)
            c2 = (sum_g * mean - sum_gx) * rstd.pow(3) / count
            c3 = -c2 * mean - sum_g * rstd / count
            wide = torch.addcmul(_per_channel(_per_group(c3, per_group), k), _wide(px, k),
                                 _per_channel(_per_group(c2, per_group), k))
            wide.addcmul_(_wide(dpx, k), _per_channel(rstd_c * gamma, k))
            dx = wide.to(x.dtype).view(n, h, w, c).permute(0, 3, 1, 2)
        if weight is not None and ctx.needs_input_grad[2]:
            d_weight = ((sum_dy_x - sum_dy * _per_group(mean, per_group)) * rstd_c).sum(0).to(weight.dtype)
        if ctx.bias_dtype is not None and ctx.needs_input_grad[3]:
            d_bias = sum_dy.sum(0).to(ctx.bias_dtype)
        return dx, None, d_weight, d_bias, None
