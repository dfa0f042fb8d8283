"""Random fields in volumes ``(B, 1, D, H, W)``: the 3-D counterparts of :mod:`pseudoanomaly.noise`.

The field is Gaussian-blurred white noise, as in 2-D: made on a grid coarser by ``f_i = max(1, round(s_i / 4))``
along each axis (``s_i`` the blur in voxels along that axis), blurred there by a separable Gaussian with
reflect-101 borders (replicate on a grid too small for them), and upsampled trilinearly. With a voxel
``spacing`` the blur is given in millimetres, so it is isotropic in the patient however thick the slices:
``sigma`` mm is ``sigma / spacing_i`` voxels along axis ``i``.

Perlin gradient noise on a 3-D lattice (:func:`perlin_volume`, :func:`fractal_volume`) follows the 2-D
:func:`~pseudoanomaly.noise.perlin_noise`: voxel ``(z, y, x)`` sits at lattice coordinates
``(z r_z / D, y r_y / H, x r_x / W)``, the eight corner ramps of its cell are blended with the quintic fade, and
the sum is scaled into [-1, 1]. NOTE: gradients are unit vectors given directly (``(..., 3)``, e.g. normalized
Gaussian draws: uniform on the sphere) rather than angles, and there is no rotation option (the 2-D one models
DRAEM's image rotation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import check_positive, check_spacing
from ._filters import _blur_matrix

__all__ = ["volume_sigmas", "volume_noise_grid_shape", "smooth_volume_field", "perlin_volume", "fractal_volume",
           "random_unit_vectors", "PERLIN_SCALE_3D"]

#: Factor on 3-D Perlin noise: with unit gradients the noise of N dimensions is bounded by sqrt(N) / 2, so the
#: scaled noise lies in [-1, 1] (the 2-D noise's sqrt(2) for the same reason).
PERLIN_SCALE_3D = 2 / math.sqrt(3.0)


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
        if math.ceil(3.0 * s / f) == 0:
            continue
        # the blur along one axis, borders included, is one (n x n) matrix: a product on the last axis is an
        # order of magnitude faster on CPU than a single-channel conv3d with a thin kernel
        matrix = torch.tensor(_blur_matrix(n, s / f), device=noise.device, dtype=noise.dtype)
        field = torch.movedim(torch.movedim(field, 2 + axis, -1) @ matrix.T, -1, 2 + axis)
    if any(f > 1 for f in factors):
        field = F.interpolate(field, size=tuple(g * f for g, f in zip(grid, factors)), mode="trilinear",
                              align_corners=False)
        field = field[:, :, : size[0], : size[1], : size[2]]
    return field


def _check_volume_lattice(gradients: object, resolution: object) -> None:
    if not isinstance(gradients, Tensor) or gradients.ndim != 5 or gradients.shape[-1] != 3 \
            or not gradients.is_floating_point():
        got = tuple(gradients.shape) if isinstance(gradients, Tensor) else type(gradients).__name__
        raise ValueError(f"gradients must be a floating-point tensor of shape (B, Lz, Ly, Lx, 3), got {got}")
    n, lattice = gradients.shape[0], gradients.shape[1:4]
    if not isinstance(resolution, Tensor) or tuple(resolution.shape) != (n, 3) or resolution.is_floating_point():
        got = tuple(resolution.shape) if isinstance(resolution, Tensor) else type(resolution).__name__
        raise ValueError(f"resolution must be an integer tensor of shape (B, 3) = ({n}, 3), got {got}")
    if n and (int(resolution.min()) < 1 or any(int(resolution[:, i].max()) >= lattice[i] for i in range(3))):
        raise ValueError(f"resolution must be >= 1 and below the lattice size {tuple(lattice)} along each axis, got "
                         f"{resolution.tolist()}")


def _fade(t: Tensor) -> Tensor:
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)  # Perlin's quintic, as the 2-D noise


def perlin_volume(gradients: Tensor, resolution: Tensor, size: Sequence[int]) -> Tensor:
    """Evaluate 3-D Perlin gradient noise, one lattice per sample, at every voxel of a ``(D, H, W)`` volume.

    Args:
        gradients: unit gradient vectors ``(g_z, g_y, g_x)`` at the lattice points; only the first
            ``resolution + 1`` points along each axis are used, so a batch of mixed resolutions shares one tensor.
        resolution: integer lattice cells ``(r_z, r_y, r_x)`` per sample, each below its axis's lattice size.
        size: output ``(D, H, W)``.

    Returns:
        The noise, in [-1, 1], in the dtype and on the device of ``gradients``; 0 on every lattice point.

    Shape:
        - gradients: :math:`(B, L_z, L_y, L_x, 3)`
        - resolution: :math:`(B, 3)`
        - output: :math:`(B, 1, D, H, W)`

    Example:
        >>> g = torch.randn(2, 5, 9, 9, 3, generator=torch.Generator().manual_seed(0))
        >>> resolution = torch.tensor([[2, 4, 4], [4, 8, 8]])
        >>> noise = perlin_volume(g / g.norm(dim=-1, keepdim=True), resolution, (8, 24, 20))
        >>> noise.shape, bool(noise.abs().max() <= 1), float(noise[0, 0, 0, 0, 0])
        (torch.Size([2, 1, 8, 24, 20]), True, 0.0)
    """
    _check_volume_lattice(gradients, resolution)
    n, lz, ly, lx, _ = gradients.shape
    device = gradients.device
    dtype = torch.float64 if gradients.dtype == torch.float64 else torch.float32
    cells, fracs = [], []
    for axis, side in enumerate(size):
        coords = torch.arange(side, device=device, dtype=dtype)
        f = coords * (resolution[:, axis].to(device, dtype)[:, None] / side)  # (B, side), lattice coordinates
        frac = torch.frac(f)
        cells.append((f - frac).long())
        fracs.append(frac)
    shapes = [(n, -1, 1, 1), (n, 1, -1, 1), (n, 1, 1, -1)]
    cz, cy, cx = (c.view(s) for c, s in zip(cells, shapes))
    tz, ty, tx = (t.view(s) for t, s in zip(fracs, shapes))
    first = torch.arange(n, device=device).view(n, 1, 1, 1) * (lz * ly * lx)
    flat = gradients.to(dtype).reshape(-1, 3)
    d, h, w = size
    corners = {}
    for oz in (0, 1):
        for oy in (0, 1):
            for ox in (0, 1):
                index = first + ((cz + oz) * ly + (cy + oy)) * lx + (cx + ox)  # (B, D, H, W)
                g = flat.index_select(0, index.reshape(-1)).view(n, d, h, w, 3)
                # dot product of the corner's gradient with the voxel's offset from that corner
                corners[oz, oy, ox] = g[..., 0] * (tz - oz) + g[..., 1] * (ty - oy) + g[..., 2] * (tx - ox)
    fz, fy, fx = _fade(tz), _fade(ty), _fade(tx)
    pairs = [(0, 0), (0, 1), (1, 0), (1, 1)]
    along_x = {k: corners[k + (0,)] + fx * (corners[k + (1,)] - corners[k + (0,)]) for k in pairs}
    along_y = {k: along_x[(k, 0)] + fy * (along_x[(k, 1)] - along_x[(k, 0)]) for k in (0, 1)}
    noise = (along_y[0] + fz * (along_y[1] - along_y[0])) * PERLIN_SCALE_3D
    # |noise| <= sqrt(3) / 2 before scaling; the clamp only guards the last ulp of the scaling
    return noise.clamp_(-1.0, 1.0).unsqueeze(1).to(gradients.dtype)


def fractal_volume(
    gradients: Sequence[Tensor], resolution: Tensor, size: Sequence[int], persistence: float = 0.5
) -> Tensor:
    """Sum octaves of :func:`perlin_volume` (each twice as fine and ``persistence`` times as strong as the one
    before), divided by the sum of the amplitudes so the result stays in [-1, 1].

    Args:
        gradients: one tensor of unit gradients per octave; octave ``k`` uses ``resolution * 2**k`` cells.
        resolution: integer lattice cells ``(r_z, r_y, r_x)`` of the coarsest octave, per sample.
        size: output ``(D, H, W)``.
        persistence: amplitude ratio between consecutive octaves, in (0, 1].

    Returns:
        The noise, in the dtype and on the device of the gradients.

    Shape:
        - gradients: a sequence of :math:`(B, L^{(k)}_z, L^{(k)}_y, L^{(k)}_x, 3)`
        - resolution: :math:`(B, 3)`
        - output: :math:`(B, 1, D, H, W)`

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> grads = [torch.randn(2, 2**k * 2 + 1, 2**k * 2 + 1, 2**k * 2 + 1, 3, generator=g) for k in range(2)]
        >>> unit = [v / v.norm(dim=-1, keepdim=True) for v in grads]
        >>> noise = fractal_volume(unit, torch.full((2, 3), 2), (8, 16, 16))
        >>> noise.shape, bool(noise.abs().max() <= 1)
        (torch.Size([2, 1, 8, 16, 16]), True)
    """
    if not isinstance(gradients, (list, tuple)) or len(gradients) == 0:
        raise ValueError(f"gradients must be a non-empty list of (B, Lz, Ly, Lx, 3) tensors, one per octave, got "
                         f"{type(gradients).__name__}")
    if isinstance(persistence, bool) or not isinstance(persistence, (int, float)) or not 0 < persistence <= 1:
        raise ValueError(f"persistence must be in (0, 1], got {persistence!r}")
    total, amplitude, amplitudes = None, 1.0, 0.0
    for k, grads in enumerate(gradients):
        octave = perlin_volume(grads, resolution * 2**k, size)
        total = octave if total is None else total + amplitude * octave
        amplitudes += amplitude
        amplitude *= persistence
    return total / amplitudes


def random_unit_vectors(shape: Sequence[int], generator: torch.Generator | None, device) -> Tensor:
    """Vectors ``(*shape, 3)`` uniform on the unit sphere (normalized Gaussian draws), for Perlin gradients.

    Args:
        shape: the leading dimensions.
        generator: random source on ``device``.
        device: where to draw.

    Returns:
        Unit vectors, float32.

    Shape:
        - output: :math:`(*shape, 3)`

    Example:
        >>> v = random_unit_vectors((4, 2), torch.Generator().manual_seed(0), "cpu")
        >>> v.shape, bool(torch.allclose(v.norm(dim=-1), torch.ones(4, 2)))
        (torch.Size([4, 2, 3]), True)
    """
    v = torch.randn((*shape, 3), generator=generator, device=device)
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)
