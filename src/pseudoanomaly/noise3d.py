"""Smooth random fields in volumes ``(B, 1, D, H, W)``: the 3-D counterpart of :func:`~pseudoanomaly.noise.smooth_field`.

The field is Gaussian-blurred white noise, as in 2-D: made on a grid coarser by ``f_i = max(1, round(s_i / 4))``
along each axis (``s_i`` the blur in voxels along that axis), blurred there by a separable Gaussian with
reflect-101 borders (replicate on a grid too small for them), and upsampled trilinearly. With a voxel
``spacing`` the blur is given in millimetres, so it is isotropic in the patient however thick the slices:
``sigma`` mm is ``sigma / spacing_i`` voxels along axis ``i``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import check_positive, check_spacing

__all__ = ["volume_sigmas", "volume_noise_grid_shape", "smooth_volume_field"]


def volume_sigmas(sigma: float, spacing: Sequence[float] | None = None) -> tuple[float, float, float]:
    """The blur ``(s_d, s_h, s_w)`` in voxels of ``sigma`` (voxels, or mm with a ``spacing`` ``(z, y, x)`` in mm).

    Args:
        sigma: blur standard deviation in voxels, or in mm with a ``spacing``.
        spacing: voxel size ``(z, y, x)`` in mm, or ``None``.

    Returns:
        The standard deviation along each axis in voxels.

    Example:
        >>> volume_sigmas(5.0, spacing=(2.5, 0.5, 0.5))
        (2.0, 10.0, 10.0)
    """
    check_positive("sigma", sigma)
    spacing = check_spacing("spacing", spacing, 3)
    return (float(sigma),) * 3 if spacing is None else tuple(sigma / s for s in spacing)  # type: ignore[return-value]


def _factors(sigmas: tuple[float, ...], downsample: int | None) -> tuple[int, ...]:
    if downsample is None:
        return tuple(max(1, round(s / 4.0)) for s in sigmas)  # the 2-D rule, per axis
    if isinstance(downsample, bool) or not isinstance(downsample, int) or downsample < 1:
        raise ValueError(f"downsample must be a positive integer or None, got {downsample!r}")
    return (downsample,) * len(sigmas)


def volume_noise_grid_shape(
    size: Sequence[int], sigma: float, spacing: Sequence[float] | None = None, downsample: int | None = None
) -> tuple[int, int, int]:
    """Shape ``(d, h, w)`` of the white-noise grid that :func:`smooth_volume_field` turns into a ``size`` field.

    Args:
        size: the field's ``(D, H, W)`` in voxels.
        sigma: blur standard deviation in voxels, or in mm with a ``spacing``.
        spacing: voxel size ``(z, y, x)`` in mm, or ``None``.
        downsample: one coarsening factor for all axes; ``None`` picks ``max(1, round(s_i / 4))`` per axis.

    Returns:
        ``(ceil(D / f_d), ceil(H / f_h), ceil(W / f_w))`` with ``f_i`` the coarsening factor of each axis.

    Example:
        >>> volume_noise_grid_shape((32, 256, 256), sigma=7.5, spacing=(2.5, 0.5, 0.5))  # 3 x 15 x 15 voxels
        (32, 64, 64)
    """
    factors = _factors(volume_sigmas(sigma, spacing), downsample)
    return tuple(math.ceil(n / f) for n, f in zip(size, factors))  # type: ignore[return-value]


def _gaussian_1d(sigma: float, device, dtype) -> Tensor:
    radius = math.ceil(3.0 * sigma)  # 3 sigma either side, as the 2-D field
    x = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    k = torch.exp(-(x * x) / (2 * sigma * sigma))
    return k / k.sum()


def smooth_volume_field(
    noise: Tensor,
    size: Sequence[int],
    sigma: float,
    spacing: Sequence[float] | None = None,
    downsample: int | None = None,
    *,
    scale: float = 1.0,
    offset: float = 0.0,
) -> Tensor:
    """Blur standard-normal noise drawn on the grid of :func:`volume_noise_grid_shape` into a smooth volume field.

    Args:
        noise: standard-normal draws on the coarse grid.
        size: output ``(D, H, W)``.
        sigma: blur standard deviation in voxels, or in mm with a ``spacing``.
        spacing: voxel size ``(z, y, x)`` in mm, or ``None``.
        downsample: coarsening factor for all axes; ``None`` picks one per axis (see the module).
        scale: multiplies the field (applied on the coarse grid).
        offset: added to the field (likewise).

    Returns:
        ``offset + scale * field``, same dtype and device as ``noise``.

    Shape:
        - noise: :math:`(B, 1, d, h, w)` with ``(d, h, w) = volume_noise_grid_shape(size, sigma, spacing, downsample)``
        - output: :math:`(B, 1, D, H, W)`

    Example:
        >>> shape = volume_noise_grid_shape((8, 40, 40), 4.0, spacing=(2.0, 1.0, 1.0))
        >>> noise = torch.randn(2, 1, *shape, generator=torch.Generator().manual_seed(0))
        >>> smooth_volume_field(noise, (8, 40, 40), 4.0, spacing=(2.0, 1.0, 1.0)).shape
        torch.Size([2, 1, 8, 40, 40])
    """
    sigmas = volume_sigmas(sigma, spacing)
    factors = _factors(sigmas, downsample)
    grid = tuple(math.ceil(n / f) for n, f in zip(size, factors))
    if not isinstance(noise, Tensor) or noise.ndim != 5 or tuple(noise.shape[1:]) != (1, *grid):
        got = tuple(noise.shape) if isinstance(noise, Tensor) else type(noise).__name__
        raise ValueError(f"noise must have shape (B, 1, {grid[0]}, {grid[1]}, {grid[2]}), got {got}")
    # a coarse cell stands for the mean of prod(f) unit-variance voxels; blur and upsampling are linear and keep
    # constants, so scale and offset go in here, where the grid is smallest
    field = noise * (scale / math.sqrt(math.prod(factors))) + offset
    for axis, (s, f, n) in enumerate(zip(sigmas, factors, grid)):
        kernel = _gaussian_1d(s / f, noise.device, noise.dtype)
        r = kernel.numel() // 2
        if r == 0:
            continue
        pad = [0] * 6
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = r  # F.pad lists the last axis first
        field = F.pad(field, pad, mode="reflect" if r < n else "replicate")
        field = F.conv3d(field, kernel.view(1, 1, *[-1 if i == axis else 1 for i in range(3)]))
    if any(f > 1 for f in factors):
        field = F.interpolate(field, size=tuple(g * f for g, f in zip(grid, factors)), mode="trilinear",
                              align_corners=False)
        field = field[:, :, : size[0], : size[1], : size[2]]
    return field
