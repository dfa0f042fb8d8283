"""Tumor-like blobs in volumes: ellipsoids with a smoothly perturbed surface, centred inside the foreground.

The 3-D counterpart of :mod:`pseudoanomaly.masks.blob` (see there for the reference, Hu et al. CVPR 2023, whose
synthetic tumors are ellipsoids in CT volumes). Each blob is the region ``rho <= r(n)`` in the blob's own
normalized frame (``rho = 1`` is the ellipsoid with semi-axes ``(a, b, c)``, ``n`` the unit direction from the
centre), with the surface

    r(n) = 1 + sum_{k=2..K} a_k T_k(n . d_k)

where ``T_k`` is the Chebyshev polynomial (``T_k(cos t) = cos k t``) and ``d_k`` a random unit direction: a
zonal harmonic of order k around its own random axis.

NOTE: choices of ours, where the 2-D blobs use a Fourier series of the outline angle:

- The perturbation above is the 3-D analogue of one harmonic per order (a sum over random axes instead of a
  full spherical-harmonic expansion): smooth, a few elementwise operations, and star-shaped around the centre
  (``r`` is clamped at 0), so one blob is one piece covering its centre voxel. Its amplitudes decay as 1/k with
  the 2-D normalization, so ``irregularity`` is the rms relative deviation of the surface only approximately.
- Orientations are uniform over 3-D rotations (a normalized Gaussian quaternion).
- Sizes are physical when a voxel ``spacing`` (mm) is given: distances are measured in mm, so an anisotropic CT
  voxel (0.7 x 0.7 x 2.5 mm) still gives round tumors.
- Centres are drawn uniformly over foreground voxels by an inverse-CDF search of the foreground's cumulative
  count, row by row (``torch.multinomial`` is limited to 2^24 categories, fewer than a CT volume's voxels).
- Each blob is evaluated in a box around its centre that holds every blob of the call, and the boxes are
  scattered into the volume (as the 2-D windows).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._random import randint, uniform
from .base import Params

__all__ = ["draw_blobs3d", "render_blobs3d"]


def _uniform_in_foreground(foreground: Tensor, slots: int, generator, device) -> Tensor:
    """Flat indices ``(n, slots)`` of voxels drawn uniformly (with replacement) among each sample's foreground.

    The k-th foreground voxel in raster order, k uniform: found in two steps, its row (x-line) from the rows'
    cumulative counts, then its place in that row, so no cumulative count of every voxel is made.
    """
    n, width = foreground.shape[0], foreground.shape[-1]
    rows = foreground.reshape(n, -1, width)  # (n, D * H, W)
    # 32-bit counts where they fit (a CT volume has far fewer than 2^31 voxels)
    dtype = torch.int32 if rows[0].numel() < 2**31 else torch.int64
    per_row = torch.cumsum(rows.sum(dim=-1, dtype=dtype), dim=1, dtype=dtype)  # (n, D * H)
    total = per_row[:, -1:]  # (n, 1), > 0 (checked by the caller)
    u = torch.rand((n, slots), generator=generator, device=device, dtype=torch.float64)
    k = (u * total).to(dtype).clamp_max_(total - 1)  # the k-th foreground voxel, 0-based
    row = torch.searchsorted(per_row, k, right=True)  # (n, slots): the row holding it
    k = k - torch.where(row > 0, per_row.gather(1, (row - 1).clamp_min(0)), 0)  # its rank within the row
    line = rows[torch.arange(n, device=device)[:, None], row]  # (n, slots, W)
    column = torch.searchsorted(torch.cumsum(line, dim=-1, dtype=dtype), k[..., None], right=True)[..., 0]
    return row * width + column


def _rotations(quaternion: Tensor) -> Tensor:
    """Rotation matrices ``(..., 3, 3)`` of (not necessarily unit) quaternions ``(..., 4)`` as (w, x, y, z)."""
    w, x, y, z = (quaternion / quaternion.norm(dim=-1, keepdim=True)).unbind(-1)
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


def draw_blobs3d(
    n: int,
    size: tuple[int, int, int],
    foreground: Tensor | None,
    generator: torch.Generator | None,
    device: torch.device,
    count: tuple[int, int],
    axes_range: tuple[float, float],
    amplitude: Tensor,
) -> Params:
    """Parameters of ``n`` masks of blobs in volumes of ``size = (D, H, W)``; ``axes_range`` in mm (or voxels)."""
    slots = count[1]
    d, h, w = size
    counts = randint((n,), count[0], count[1], generator=generator, device=device)
    valid = torch.arange(slots, device=device) < counts[:, None]  # (n, slots)
    if foreground is None:
        index = randint((n, slots), 0, d * h * w - 1, generator=generator, device=device)
    else:
        index = _uniform_in_foreground(foreground, slots, generator, device)
    center = torch.stack([index // (h * w), index // w % h, index % w], dim=-1).float()  # (n, slots, 3) z, y, x
    axes = uniform((n, slots, 3), axes_range[0], axes_range[1], generator=generator, device=device)
    rotation = torch.randn((n, slots, 4), generator=generator, device=device)  # a quaternion per blob
    harmonics = amplitude.shape[0]
    directions = torch.randn((n, slots, harmonics, 3), generator=generator, device=device)
    directions = directions / directions.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    unit = uniform((n, slots, harmonics), -1.0, 1.0, generator=generator, device=device)
    return {"center": center, "axes": axes, "rotation": rotation, "directions": directions,
            "outline": unit * amplitude.to(device), "valid": valid}


def render_blobs3d(params: Params, size: tuple[int, int, int], spacing: tuple[float, float, float]) -> Tensor:
    """Blob masks ``(n, 1, D, H, W)`` from :func:`draw_blobs3d`'s parameters, distances in units of ``spacing``."""
    center, axes, outline, valid = params["center"], params["axes"], params["outline"], params["valid"]
    n, slots = valid.shape
    device, dtype = center.device, center.dtype
    step = torch.tensor(spacing, device=device, dtype=dtype)  # (3,) mm per voxel along z, y, x
    reach = 1 + outline.abs().sum(dim=-1)  # (n, slots): bound on r(n)
    extent = float((axes.amax(dim=-1) * reach).masked_fill(~valid, 0).max())  # one device sync
    # +1: a voxel centre beyond the box is more than half a voxel past the blob's reach
    half = [math.ceil(extent / s) + 1 for s in spacing]
    sides = [min(2 * r + 1, full) for r, full in zip(half, size)]
    origin = (center.round() - torch.tensor(half, device=device, dtype=dtype)).clamp_min(0)  # (n, slots, 3)
    origin = torch.minimum(origin, torch.tensor(size, device=device, dtype=dtype) - torch.tensor(sides, device=device))
    coords = [origin[..., i : i + 1] + torch.arange(sides[i], device=device, dtype=dtype) for i in range(3)]
    # physical offsets from the centre along z, y, x: (n, slots, S_i)
    delta = [(coords[i] - center[..., i : i + 1]) * step[i] for i in range(3)]
    rot = _rotations(params["rotation"])  # (n, slots, 3, 3); columns: the blob's axes in (z, y, x)
    # normalized frame: u_j = sum_i delta_i R_ij / axes_j, separable in i: (n, slots, Sz, Sy, Sx) each
    shapes = [(-1, 1, 1), (1, -1, 1), (1, 1, -1)]
    u = [
        sum((delta[i] * (rot[..., i, j : j + 1] / axes[..., j : j + 1])).unflatten(-1, shapes[i]) for i in range(3))
        for j in range(3)
    ]
    rho2 = u[0] * u[0] + u[1] * u[1] + u[2] * u[2]
    if bool(outline.any()):
        inv = rho2.clamp_min(torch.finfo(dtype).tiny).rsqrt()
        bound = torch.ones_like(rho2)
        directions = params["directions"]
        for k in range(outline.shape[-1]):
            # cosine between the voxel's direction and the harmonic's axis, then T_{k+2} of it
            cos = sum(u[j] * directions[..., k, j, None, None, None] for j in range(3)) * inv
            bound += outline[..., k, None, None, None] * torch.special.chebyshev_polynomial_t(cos.clamp(-1, 1), k + 2)
        inside = rho2 <= bound.clamp_min(0).square()
    else:
        inside = rho2 <= 1
    inside &= valid[..., None, None, None]
    # scatter the boxes into the volume; every write is True, so the order of overlapping writes is irrelevant
    d, h, w = size
    z, y, x = (c.long() for c in coords)
    flat = (torch.arange(n, device=device).view(n, 1, 1, 1, 1) * (d * h * w) + (z * (h * w))[..., :, None, None]
            + (y * w)[..., None, :, None] + x[..., None, None, :])
    volume = torch.zeros(n * d * h * w, device=device, dtype=torch.bool)
    volume.index_fill_(0, flat[inside], True)
    return volume.view(n, 1, d, h, w)
