"""The liver a lesion goes into: input checks, depth below the liver's surface, vessels, where a lesion may sit."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

__all__ = ["LiverMap", "Stats", "check_volumes", "check_spacing", "map_liver", "split_noise", "tissue_stats",
           "draw_centre"]

# The liver's median HU must lie here. Ours, wide on purpose: unenhanced liver is ~40-70 HU, portal-venous
# ~100-150 HU (CHAOS measures ~143); fatty liver goes below 0. Outside it, the data is not HU or not aligned.
LIVER_MEDIAN_HU = (-100.0, 300.0)
# Ours: portal-venous vessels are +40..+80 HU above the parenchyma (CHAOS: 2 % of the liver above +40)
VESSEL_MARGIN_HU = 40.0
SPHERE_SAMPLES = 20000  # ours: voxels sampled to measure a lesion's vessel fraction
STATS_SAMPLES = 100000  # ours: voxels sampled for a median or a spread (plenty for a number in HU)
MAD_TO_STD = 1.4826  # median absolute deviation -> standard deviation of a Gaussian
# Ours: the scanner's noise is what a Gaussian smoothing of one voxel removes (CT noise is correlated over ~1 voxel)
NOISE_SIGMA_VOXELS = 1.0
# Ours: the depth map (where a centre may go) is computed on every k-th voxel along axes finer than 1.5 mm: a
# 0.7 mm in-plane CT gets a 1.4 mm grid, 4 x fewer voxels for the distance transform, ample for placing lesions.
DEPTH_GRID_MM = 1.5


def check_spacing(spacing: object) -> tuple[float, float, float]:
    """Check a voxel size ``(D, H, W)`` in mm: three positive finite numbers."""
    ok = isinstance(spacing, Sequence) and not isinstance(spacing, str) and len(spacing) == 3
    if ok:
        ok = all(isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) and s > 0
                 for s in spacing)
    if not ok:
        raise ValueError(f"spacing must be three positive voxel sizes in mm (D, H, W), got {spacing!r}")
    return tuple(float(s) for s in spacing)  # type: ignore[return-value]


def check_volumes(ct_hu: object, liver: object) -> tuple[np.ndarray, np.ndarray]:
    """Check a CT batch ``(B, 1, D, H, W)`` in HU and its liver masks; return both as NumPy ``(B, D, H, W)``.

    The CT array is a view of ``ct_hu`` where it can be (CPU, a dtype NumPy has): read it, never write it.
    Refused, each with the value in the message: a shape or type mismatch, non-finite values, values that are
    all in [0, 1] (a windowed or normalized image, not HU), an empty liver, a liver touching a face of the
    volume, a liver whose median HU is outside :data:`LIVER_MEDIAN_HU`.
    """
    if not isinstance(ct_hu, Tensor) or ct_hu.ndim != 5 or ct_hu.shape[1] != 1 or not ct_hu.is_floating_point():
        what = f"shape {tuple(ct_hu.shape)}, dtype {ct_hu.dtype}" if isinstance(ct_hu, Tensor) else type(ct_hu)
        raise ValueError(f"ct_hu must be a float tensor of shape (B, 1, D, H, W), got {what}")
    if not isinstance(liver, Tensor) or liver.shape != ct_hu.shape:
        what = tuple(liver.shape) if isinstance(liver, Tensor) else type(liver).__name__
        raise ValueError(f"liver must be a tensor of ct_hu's shape {tuple(ct_hu.shape)}, got {what}")
    # NumPy from here: on the CPU its reductions and boolean indexing are several times faster than torch's
    ct = ct_hu.detach().cpu()
    ct = (ct.float() if ct.dtype == torch.bfloat16 else ct).numpy()[:, 0]  # NumPy has no bfloat16
    mask = liver.detach().cpu().numpy()[:, 0]
    if mask.dtype != np.bool_:
        if not np.isin(mask, (0, 1)).all():
            raise ValueError(f"liver must be bool or 0/1, got dtype {liver.dtype} with other values")
        mask = mask != 0
    # one reduction first: a NaN or Inf makes the sum non-finite (huge finite values too: then the exact test)
    if ct.size == 0 or (not np.isfinite(ct.sum(dtype=np.float64)) and not np.isfinite(ct).all()):
        raise ValueError(f"ct_hu must be non-empty and finite, got shape {tuple(ct_hu.shape)}")
    low, high = float(ct.min()), float(ct.max())
    if low >= 0.0 and high <= 1.0:
        raise ValueError(f"ct_hu must be in Hounsfield units, but all its values lie in [{low:g}, {high:g}]: it "
                         "looks windowed or normalized; pass the CT before any windowing")
    for b, m in enumerate(mask):
        if not m.any():
            raise ValueError(f"liver is empty in sample {b}: there is nowhere to put a lesion")
        faces = {f"{axis}={index}": int(m[(slice(None),) * a + (index,)].sum())
                 for a, axis in enumerate("DHW") for index in (0, m.shape[a] - 1)}
        touching = {face: n for face, n in faces.items() if n}
        if touching:
            raise ValueError(f"liver touches the volume's border in sample {b} (liver voxels on faces {touching}): a "
                             "lesion there would leave the volume; crop the scan with a margin around the liver, "
                             "or clear the mask on the border faces to treat the scan's edge as the liver's")
        median = float(np.median(ct[b][m]))
        if not LIVER_MEDIAN_HU[0] <= median <= LIVER_MEDIAN_HU[1]:
            raise ValueError(f"the liver's median in sample {b} is {median:.1f} HU, outside the plausible range "
                             f"{list(LIVER_MEDIAN_HU)} HU of liver parenchyma: is ct_hu in HU, and liver its mask?")
    return ct, mask


@dataclass(frozen=True)
class Stats:
    """Median HU of a tissue and the standard deviations (HU) of its texture and of the scanner's noise."""

    median_hu: float
    texture_hu: float
    noise_hu: float


@dataclass
class LiverMap:
    """What lesion placement needs to know about one liver (NumPy, CPU).

    Attributes:
        liver: ``(D, H, W)`` bool liver mask.
        vessels: ``(D, H, W)`` bool, liver voxels taken for vessels.
        grid: the voxels ``depth`` covers, ``volume[grid]``: the liver's bounding box grown by one voxel, every
            ``step``-th voxel along each axis (see ``DEPTH_GRID_MM``).
        depth: distance (mm) from each voxel of the grid to the nearest non-liver voxel of the grid.
        parenchyma: statistics of the whole liver without its vessels.
    """

    liver: np.ndarray
    vessels: np.ndarray
    grid: tuple[slice, slice, slice]
    depth: np.ndarray
    parenchyma: Stats

    @property
    def max_depth(self) -> float:
        """Depth (mm) of the liver's deepest voxel."""
        return float(self.depth.max())


def _robust(values: np.ndarray) -> tuple[float, float]:
    """Median and robust standard deviation (from the median absolute deviation) of HU values."""
    median = float(np.median(values))
    return median, MAD_TO_STD * float(np.median(np.abs(values - median)))


def split_noise(ct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(smooth, residual)`` float32 with ``ct = smooth + residual``: the residual is the scanner's noise grain."""
    smooth = ndimage.gaussian_filter(ct.astype(np.float32), NOISE_SIGMA_VOXELS, mode="nearest")
    return smooth, ct.astype(np.float32) - smooth


def tissue_stats(ct: np.ndarray, smooth: np.ndarray, residual: np.ndarray, where: np.ndarray) -> Stats:
    """HU statistics of the voxels ``where``: the median, and the robust spreads of the smooth part (tissue
    texture) and of the residual (noise); from a regular subsample of at most ``STATS_SAMPLES`` voxels."""
    index = np.flatnonzero(where)
    index = index[:: max(1, index.size // STATS_SAMPLES)]
    ct, smooth, residual = (a.reshape(-1)[index] for a in (ct, smooth, residual))
    return Stats(float(np.median(ct)), _robust(smooth)[1], _robust(residual)[1])


def map_liver(ct: np.ndarray, liver: np.ndarray, spacing: tuple[float, float, float]) -> LiverMap:
    """Depth map, vessels and parenchyma statistics of one liver (checked by :func:`check_volumes`).

    Args:
        ct: ``(D, H, W)`` HU.
        liver: ``(D, H, W)`` bool, not touching a face of the volume.
        spacing: voxel size (mm) along D, H, W.

    Returns:
        The liver's map.
    """
    hits = [np.flatnonzero(liver.any(axis=tuple(a for a in range(3) if a != axis))) for axis in range(3)]
    box = tuple(slice(h[0] - 1, h[-1] + 2) for h in hits)  # one voxel of background around the liver
    sub = liver[box]
    steps = [max(1, int(DEPTH_GRID_MM // s)) for s in spacing]
    grid = tuple(slice(b.start, b.stop, k) for b, k in zip(box, steps))
    # padded with background: a coarse grid may end on a liver voxel, and the EDT measures to background
    coarse = np.pad(liver[grid], 1)
    depth = ndimage.distance_transform_edt(coarse, sampling=[s * k for s, k in zip(spacing, steps)])
    depth = depth[1:-1, 1:-1, 1:-1].astype(np.float32)
    smooth, residual = split_noise(ct[box])
    vessels = np.zeros_like(liver)  # found on the smoothed CT, out of the noise
    vessels[box] = sub & (smooth > tissue_stats(smooth, smooth, residual, sub).median_hu + VESSEL_MARGIN_HU)
    parenchyma = sub & ~vessels[box]
    stats = tissue_stats(ct[box], smooth, residual, parenchyma if parenchyma.any() else sub)
    return LiverMap(liver, vessels, grid, depth, stats)


def _sphere_offsets(radius: float, spacing: tuple[float, float, float]) -> np.ndarray:
    """``(N, 3)`` integer voxel offsets within ``radius`` mm of a voxel centre, at most about
    ``SPHERE_SAMPLES`` of them (a regular subsample of a large sphere: enough to measure a fraction)."""
    half = [int(radius // s) for s in spacing]
    grid = np.stack(np.meshgrid(*(np.arange(-h, h + 1) for h in half), indexing="ij"), axis=-1).reshape(-1, 3)
    inside = grid[((grid * spacing) ** 2).sum(axis=1) <= radius**2]
    return inside[:: max(1, len(inside) // SPHERE_SAMPLES)]


def _vessel_fraction(liver_map: LiverMap, centre: np.ndarray, offsets: np.ndarray) -> float:
    points = centre + offsets
    inside = np.all((points >= 0) & (points < liver_map.liver.shape), axis=1)
    points = tuple(points[inside].T)
    in_liver = liver_map.liver[points]
    return float(liver_map.vessels[points][in_liver].mean()) if in_liver.any() else 1.0


def draw_centre(
    liver_map: LiverMap,
    radius: float,
    min_depth: float,
    others: Sequence[tuple[np.ndarray, float]],
    spacing: tuple[float, float, float],
    *,
    separation: float,
    vessel_tolerance: float,
    max_tries: int,
    generator: torch.Generator | None,
    device: torch.device,
) -> tuple[np.ndarray, float, int, int]:
    """Draw a lesion centre: uniform among liver voxels at least ``min_depth`` mm deep, away from vessels.

    A draw is accepted when at most ``vessel_tolerance`` of the liver voxels within ``radius`` of it are vessels
    and it is at least ``separation * (radius + r)`` mm from each earlier lesion ``(centre, r)`` in ``others``;
    after ``max_tries`` rejected draws the best one is kept (fewest overlaps, then fewest vessels).

    Returns:
        ``(centre voxel (3,), its vessel fraction, draws made, earlier lesions it is too close to)``.
    """
    deep = liver_map.depth >= min(min_depth, liver_map.max_depth)  # min: rounding may put it a hair above
    candidates = np.flatnonzero(deep & ~liver_map.vessels[liver_map.grid])
    if candidates.size == 0:  # vessels everywhere deep enough: take the depth alone
        candidates = np.flatnonzero(deep)
    offsets = _sphere_offsets(radius, spacing)
    best = None
    for tries in range(1, max_tries + 1):
        pick = int(torch.randint(candidates.size, (1,), generator=generator, device=device))
        centre = np.array([g.start + g.step * i for g, i in zip(liver_map.grid,
                                                                np.unravel_index(candidates[pick], deep.shape))])
        fraction = _vessel_fraction(liver_map, centre, offsets)
        overlaps = sum(float(np.linalg.norm((centre - c) * spacing)) < separation * (radius + r) for c, r in others)
        if best is None or (overlaps, fraction) < best[:2]:
            best = (overlaps, fraction, centre)
        if overlaps == 0 and fraction <= vessel_tolerance:
            break
    return best[2], best[1], tries, best[0]
