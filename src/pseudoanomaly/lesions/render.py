"""Drawing one lesion in a box around its centre: smooth noise, shape, mass effect, appearance, blending.

Every function works on NumPy arrays in place of, or returning, a box of the volume; the random fields are drawn
from the caller's ``torch.Generator`` (on its device) and brought to the CPU.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from .anatomy import split_noise

__all__ = ["Box", "smooth_noise", "random_rotation", "lesion_shape", "push_outward", "blend"]

EDGE_TRUNCATE = 3.0  # Gaussian kernels are cut at 3 sigma: alpha is exactly 0 farther out


class Box:
    """A box of the volume around a voxel ``centre``, at most ``half_mm`` away along each axis, cut to the volume.

    Attributes:
        slices: index of the box in the volume; shape: its shape.
        offsets: three arrays broadcastable to ``shape``: each voxel's offset (mm) from the centre along D, H, W.
        start: ``(3,)`` first voxel of the box.
    """

    def __init__(self, centre: np.ndarray, half_mm: float, spacing, volume_shape) -> None:
        half = [math.ceil(half_mm / s) + 1 for s in spacing]
        self.slices = tuple(slice(max(c - h, 0), min(c + h + 1, n)) for c, h, n in zip(centre, half, volume_shape))
        self.start = np.array([s.start for s in self.slices])
        self.shape = tuple(s.stop - s.start for s in self.slices)
        self.offsets = []
        for axis, (s, c, sp) in enumerate(zip(self.slices, centre, spacing)):
            shape = [1, 1, 1]
            shape[axis] = -1  # (n, 1, 1), (1, n, 1) or (1, 1, n)
            self.offsets.append(((np.arange(s.start, s.stop) - c) * sp).astype(np.float32).reshape(shape))

    @property
    def radius_mm(self) -> float:
        """Largest distance (mm) from the centre to a voxel of the box: nothing changes beyond it."""
        return math.sqrt(sum(float(np.abs(o).max()) ** 2 for o in self.offsets))


def smooth_noise(
    channels: int, shape, spacing, cell_mm: float, *, generator, device, smooth_cells: float = 1.0
) -> np.ndarray:
    """Gaussian noise on a grid of ``cell_mm`` cells, smoothed over ``smooth_cells`` cells, normalized to zero
    mean and unit variance, and trilinearly upsampled to the box's voxels: ``(channels, *shape)`` float32."""
    coarse = [max(2, math.ceil((n - 1) * s / cell_mm) + 1) for n, s in zip(shape, spacing)]
    noise = torch.randn((channels, *coarse), generator=generator, device=device).cpu().numpy()
    if smooth_cells > 0:
        noise = ndimage.gaussian_filter(noise, (0, *(3 * [smooth_cells])), mode="wrap")
    noise -= noise.mean(axis=(1, 2, 3), keepdims=True)
    noise /= noise.std(axis=(1, 2, 3), keepdims=True) + 1e-6
    up = F.interpolate(torch.from_numpy(noise)[None], size=tuple(shape), mode="trilinear", align_corners=True)
    return up[0].numpy()


def random_rotation(generator, device) -> np.ndarray:
    """A uniformly random 3-D rotation matrix ``(3, 3)``, from a normalized Gaussian quaternion."""
    w, x, y, z = torch.randn(4, generator=generator, device=device, dtype=torch.float64).cpu().numpy()
    n = math.sqrt(w * w + x * x + y * y + z * z) or 1.0
    w, x, y, z = w / n, x / n, y / n, z / n
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def lesion_shape(box: Box, axes: np.ndarray, rotation: np.ndarray, displacement: np.ndarray) -> np.ndarray:
    """``rho`` of each voxel of the box: its normalized distance from the centre in the lesion's frame, after the
    elastic ``displacement`` (mm, ``(3, *box.shape)``); the lesion is ``rho <= 1``.

    ``rho = |A^-1 R^T (p + u(p))|`` for a voxel at offset ``p``, semi-axes ``A = diag(axes)`` and rotation ``R``
    (columns: the lesion's axes in D, H, W coordinates).
    """
    moved = [o + u for o, u in zip(box.offsets, displacement)]
    rho2 = np.zeros(box.shape, np.float32)
    for k in range(3):
        q = rotation[0, k] * moved[0] + rotation[1, k] * moved[1] + rotation[2, k] * moved[2]
        rho2 += (q / np.float32(axes[k])) ** 2
    return np.sqrt(rho2)


def push_outward(
    out: np.ndarray, label: np.ndarray, liver: np.ndarray, centre: np.ndarray, radius: float, amplitude: float,
    reach: float, spacing,
) -> float:
    """Mass effect: move the liver around ``centre`` radially outward, in place in ``out`` and ``label``.

    A voxel at distance ``s`` (mm) takes the value found ``m(s)`` closer to the centre, with ``m(s) = a s``
    inside ``radius`` (``a = amplitude``) and ``m(s) = a radius (1 - (s - radius) / (reach radius))^2`` beyond,
    zero from ``(1 + reach) radius`` on. ``m`` is continuous and ``|m'| <= max(a, 2 a / reach) < 1``, so the
    warp never folds. Only liver voxels move, and they read from the smoothed CT (the residual stays put).

    Returns:
        The radius (mm) beyond which nothing changed.
    """
    if amplitude <= 0:
        return 0.0
    box = Box(centre, radius * (1 + reach), spacing, out.shape)
    oz, oy, ox = box.offsets
    s = np.sqrt(oz * oz + oy * oy + ox * ox)
    m = np.where(s < radius, amplitude * s, amplitude * radius * np.clip(1 - (s - radius) / (reach * radius), 0,
                                                                           None) ** 2)
    index = np.nonzero(liver[box.slices] & (m > 0))
    if index[0].size == 0:
        return 0.0
    scale = 1 - m[index] / np.maximum(s[index], 1e-6)  # (M,): source = centre + offset * scale
    source = np.stack([(c - b) + o.reshape(-1)[i] * scale / sp
                       for c, b, o, i, sp in zip(centre, box.start, box.offsets, index, spacing)])
    smooth, residual = split_noise(out[box.slices])
    moved = ndimage.map_coordinates(smooth, source, order=1, mode="nearest") + residual[index]
    out[box.slices][index] = moved.astype(out.dtype)
    labels = label[box.slices]
    if labels.any():  # earlier lesions move with their tissue
        labels[index] = labels[tuple(np.rint(source).astype(np.int64))]
    return box.radius_mm


def blend(out: np.ndarray, box: Box, mask: np.ndarray, lesion_hu: np.ndarray, liver: np.ndarray,
          edge_sigma_mm: float, spacing) -> None:
    """Paint a lesion into ``out`` (in place): ``(1 - alpha) out + alpha lesion_hu`` where alpha > 0, with alpha
    the lesion ``mask`` blurred by a Gaussian of ``edge_sigma_mm`` and cut to the ``liver``."""
    alpha = ndimage.gaussian_filter(mask.astype(np.float32), [edge_sigma_mm / s for s in spacing], mode="constant",
                                    truncate=EDGE_TRUNCATE)
    alpha[~liver] = 0
    view = out[box.slices]
    index = np.nonzero(alpha > 0)
    a = alpha[index]
    view[index] = ((1 - a) * view[index].astype(np.float32) + a * lesion_hu[index]).astype(out.dtype)
