"""Binary morphology of volumes ``(B, 1, D, H, W)`` with ellipsoidal structuring elements, on any device.

The border convention is the one of the 2-D functions (OpenCV's defaults): voxels outside the volume count as
foreground for erosion and as background for dilation, so an opening never eats a mask that touches the border
and a closing never grows one from outside. ``scipy.ndimage.binary_erosion(..., border_value=1)`` and
``binary_dilation(..., border_value=0)`` use the same convention; the two backends give identical masks (a
property test checks it against ``scipy.ndimage``). An opening is an erosion then a dilation, a closing the
reverse, each step with its own border (as ``cv2.morphologyEx``; ``scipy.ndimage.binary_closing`` would use
one border value for both steps).

The torch path decomposes the element into runs along x: every (z, y) line of an ellipsoid is one centred
run, so a dilation is the maximum of shifted 1-D sliding maxima (one ``max_pool3d`` per distinct run length),
exact for any element that is a union of such runs. The host path works only in boxes around the mask's
separate groups of voxels (grown by how far the steps can reach), so its cost follows the masks' extent rather
than the volume's: a few blobs in a CT volume take milliseconds, not seconds, and the result is the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor

from .._checks import check_choice, check_odd_size, check_positive, check_spacing

__all__ = ["ellipsoidal_kernel", "morphology3d", "MORPHOLOGY_BACKENDS_3D"]

#: Backends of the volume path: ``"scipy"`` (``scipy.ndimage`` on host memory), ``"torch"`` (max-pooling on the
#: masks' device) or ``"auto"`` (scipy on CPU, torch elsewhere).
MORPHOLOGY_BACKENDS_3D = ("auto", "torch", "scipy")


def _kernel_sides(size: object, spacing: tuple[float, ...] | None, name: str) -> tuple[int, int, int]:
    """Odd sides ``(kd, kh, kw)`` in voxels of an element of ``size`` (voxels, or mm with a ``spacing``)."""
    sizes = tuple(size) if isinstance(size, Sequence) and not isinstance(size, str) else (size,) * 3
    if len(sizes) != 3:
        raise ValueError(f"{name} must be one number or 3 (along z, y, x), got {size!r}")
    if spacing is None:
        return tuple(check_odd_size(name, s) for s in sizes)  # type: ignore[return-value]
    for s in sizes:
        check_positive(name, s)
    # diameter in mm -> an odd number of voxels: 2 * round(radius / spacing) + 1 (half to even, as Python)
    sides = tuple(2 * round(s / 2 / step) + 1 for s, step in zip(sizes, spacing))
    if sides == (1, 1, 1):
        raise ValueError(
            f"{name}={size!r} mm rounds to a single voxel with spacing={spacing!r} (sides {sides}): the element would "
            "change nothing; give a size of at least one voxel's spacing along some axis"
        )
    return sides  # type: ignore[return-value]


def ellipsoidal_kernel(
    size: int | Sequence[int] | float | Sequence[float],
    spacing: Sequence[float] | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Ellipsoidal structuring element: the voxels ``o`` of a ``kd x kh x kw`` box with ``sum (o_i / r_i)^2 <= 1``.

    ``o`` is the offset from the centre voxel and ``r_i = (k_i - 1) / 2`` the semi-axes (an axis of one voxel
    admits only ``o_i = 0``); a side of 3 gives the 6-connected cross, ``5`` a ball of radius 2 (as
    ``skimage.morphology.ball(2)``).

    Args:
        size: odd side(s) in voxels, one for all axes or ``(kd, kh, kw)``; with ``spacing``, the diameter(s)
            in mm, turned into ``2 * round(size / (2 * spacing)) + 1`` voxels along each axis.
        spacing: voxel size ``(z, y, x)`` in mm, or ``None`` for sizes in voxels.
        device: where to put the kernel.

    Returns:
        The structuring element, ``True`` inside the ellipsoid.

    Shape:
        - output: :math:`(k_d, k_h, k_w)`, bool

    Example:
        >>> ellipsoidal_kernel(3).int().sum().item()  # the 6-connected cross
        7
        >>> ellipsoidal_kernel(5.0, spacing=(2.5, 0.7, 0.7)).shape  # 5 mm: 3 slices deep, 9 voxels wide
        torch.Size([3, 9, 9])
    """
    return ellipsoid_element(size, spacing, "size", device)


def ellipsoid_element(size: object, spacing: object, name: str, device: torch.device | str | None = None) -> Tensor:
    """:func:`ellipsoidal_kernel` whose messages call ``size`` by the caller's argument ``name``."""
    sides = _kernel_sides(size, check_spacing("spacing", spacing, 3), name)
    return torch.from_numpy(_ellipsoid(sides).copy()).to(device)


@lru_cache(maxsize=32)
def _ellipsoid(sides: tuple[int, int, int]) -> np.ndarray:
    grids = np.meshgrid(*(np.arange(k) - k // 2 for k in sides), indexing="ij")
    total = np.zeros(sides)
    for offset, k in zip(grids, sides):
        r = (k - 1) / 2
        total = total + (offset / r) ** 2 if r else total + np.where(offset == 0, 0.0, np.inf)
    inside = total <= 1
    inside.setflags(write=False)
    return inside


def _runs(kernel: Tensor) -> list[tuple[int, int, int, int]]:
    # (z, y, first x, length) of every run of True along x
    k = kernel.detach().to("cpu", torch.bool).numpy()
    runs = []
    for z, y in zip(*np.nonzero(k.any(axis=2))):
        line = np.concatenate([[False], k[z, y], [False]])
        edges = np.flatnonzero(line[1:] != line[:-1])
        runs += [(int(z), int(y), int(a), int(b - a)) for a, b in zip(edges[::2], edges[1::2])]
    return runs


def _dilate(x: Tensor, kernel: Tensor) -> Tensor:
    # x: (B, 1, D, H, W) float 0/1; out(p) = max over kernel offsets o of x(p + o - centre), background outside
    kd, kh, kw = kernel.shape
    d, h, w = x.shape[-3:]
    padded = F.pad(x, (kw // 2, kw // 2, kh // 2, kh // 2, kd // 2, kd // 2), value=0.0)
    out = None
    pooled: dict[int, Tensor] = {}
    for z, y, start, length in _runs(kernel):
        if length not in pooled:
            pooled[length] = F.max_pool3d(padded, (1, 1, length), stride=1) if length > 1 else padded
        piece = pooled[length][:, :, z : z + d, y : y + h, start : start + w]
        out = piece if out is None else torch.maximum(out, piece)
    return torch.zeros_like(x) if out is None else out


def _steps(ops: str) -> str:
    return "".join({"d": "d", "e": "e", "o": "ed", "c": "de"}[op] for op in ops)


def _morph_box(m: np.ndarray, k: np.ndarray, steps: str) -> np.ndarray:
    for step in steps:
        if step == "d":
            m = ndimage.binary_dilation(m, structure=k, border_value=0)
        else:
            m = ndimage.binary_erosion(m, structure=k, border_value=1)
    return m


def _morph_sparse(m: np.ndarray, k: np.ndarray, steps: str) -> np.ndarray:
    """``_morph_box(m, k, steps)`` computed only in boxes around the mask's separate groups of voxels.

    Each step moves the mask by at most the element's radius ``r`` per axis, so with ``s`` steps every output
    voxel lies within ``s * r`` of a mask voxel, and two groups of voxels interact only if they come within
    ``2 * s * r`` of each other along every axis. Groups are found on a grid of blocks of ``s * r + 1`` voxels:
    the occupied blocks grown by one block and labelled, fully connected, so voxels of different groups are at
    least ``3 (s r + 1) + 1 > 2 s r`` apart along some axis. Each group is processed alone in its box grown by
    ``s * r + 1`` voxels (clipped to the volume, where the volume's own borders apply): inside the box every step
    sees what it would see on the whole volume, so the result is exact, voxel for voxel.
    """
    if not k[tuple(np.array(k.shape) // 2)]:
        return _morph_box(m, k, steps)  # an element without its centre: the bounds above do not hold
    out = np.zeros_like(m)
    if not m.any():
        return out
    radius = np.array(k.shape) // 2
    reach = len(steps) * radius  # how far the steps can move anything, per axis
    block = reach + 1
    shape = np.array(m.shape)
    cells = -(-shape // block)
    padded = np.zeros(cells * block, bool)
    padded[: shape[0], : shape[1], : shape[2]] = m
    occupied = padded.reshape(cells[0], block[0], cells[1], block[1], cells[2], block[2]).any(axis=(1, 3, 5))
    full = np.ones((3, 3, 3), bool)
    groups, _ = ndimage.label(ndimage.binary_dilation(occupied, full), full)
    groups[~occupied] = 0
    for label, cell_box in enumerate(ndimage.find_objects(groups), start=1):
        if cell_box is None:
            continue
        lo = np.maximum([s.start * b - b for s, b in zip(cell_box, block)], 0)
        hi = np.minimum([s.stop * b + b for s, b in zip(cell_box, block)], shape)
        box = tuple(slice(a, c) for a, c in zip(lo, hi))
        # this group's voxels only: the box may also hold blocks of other groups
        member = groups[np.ix_(*(np.arange(a, c) // b for a, c, b in zip(lo, hi, block)))] == label
        out[box] |= _morph_box(m[box] & member, k, steps)
    return out


def _morph_scipy(masks: Tensor, kernel: Tensor, ops: str) -> Tensor:
    k = kernel.detach().to("cpu", torch.bool).numpy()
    src = masks.detach().to("cpu", torch.bool).numpy()
    out = np.empty_like(src)
    steps = _steps(ops)
    for i in range(src.shape[0]):
        out[i, 0] = _morph_sparse(src[i, 0], k, steps)
    return torch.from_numpy(out).to(masks.device)


def morphology3d(masks: Tensor, kernel: Tensor, ops: str, backend: str = "auto") -> Tensor:
    """Apply the operations ``ops`` (one-letter codes ``d``, ``e``, ``o``, ``c``) to volume masks.

    The public entry points are :func:`~pseudoanomaly.masks.functional.binary_morphology` and the single
    operations, which call this for 5-D masks; see the module for the border convention.

    Args:
        masks: binary masks, bool or 0/1 floats.
        kernel: 3-D structuring element with odd sides, e.g. :func:`ellipsoidal_kernel`.
        ops: the operations in order, as one-letter codes.
        backend: one of :data:`MORPHOLOGY_BACKENDS_3D`; all give the same masks.

    Returns:
        Masks of the same shape, dtype and device.

    Shape:
        - masks: :math:`(B, 1, D, H, W)`
        - output: :math:`(B, 1, D, H, W)`
    """
    if not isinstance(kernel, Tensor) or kernel.ndim != 3 or any(k % 2 == 0 for k in kernel.shape):
        got = tuple(kernel.shape) if isinstance(kernel, Tensor) else type(kernel).__name__
        raise ValueError(f"kernel must be a 3-D tensor with odd sides for (B, 1, D, H, W) masks, got {got}")
    check_choice("backend", backend, MORPHOLOGY_BACKENDS_3D)
    dtype = masks.dtype
    if backend == "scipy" or (backend == "auto" and masks.device.type == "cpu"):
        x = _morph_scipy(masks, kernel, ops)
        return x if dtype == torch.bool else x.to(dtype)
    kernel = kernel.bool()
    x = masks.float() if dtype == torch.bool else masks
    for op in ops:
        for step in {"d": "d", "e": "e", "o": "ed", "c": "de"}[op]:
            # erosion = complement of the dilation of the complement (a foreground border becomes a background one)
            x = _dilate(x, kernel) if step == "d" else 1.0 - _dilate(1.0 - x, kernel)
    return x.bool() if dtype == torch.bool else x.to(dtype)
