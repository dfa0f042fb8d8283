"""From an anomaly map to lesions a reader can use: a threshold calibrated on healthy data, then 3-D components
kept by their volume in mm³ and grown by hysteresis.

A segmentation net trained on synthetic anomalies ranks real lesions well (pixel AUROC), but where its map
crosses 0.5 depends on the training run's luck, and a voxel-wise cut leaves dozens of specks per scan. The two
steps here are the field's usual remedies, both free of tumour labels:

- :func:`healthy_threshold`: the score that a chosen fraction of *healthy* liver voxels exceeds (the operating
  point of a one-class detector set on normal data alone, as a fixed false-positive rate; e.g. the normal-data
  quantiles of PatchCore's and PaDiM's deployments, Roth et al., CVPR 2022; Defard et al., ICPR 2021). Each
  model gets its own cut for the same false-positive volume, whatever the scale of its scores.
- :func:`lesion_mask`: connected components in 3-D (26-connected, as :mod:`scipy.ndimage` labels them) of the
  voxels above the threshold; a component is a lesion when its volume, in mm³ from the voxel spacing, reaches
  ``min_volume_mm3`` (the LiTS detection analysis and the radiological convention of measurable lesions both
  count in physical size, not voxels); with ``grow_threshold`` below ``threshold``, each lesion then extends over
  the connected voxels above ``grow_threshold`` (hysteresis, Canny 1986: a lesion is *detected* by the strict cut
  and *delineated* by the lenient one).

Laws (tested): the output is a subset of ``probability > min(threshold, grow_threshold)``; a larger
``min_volume_mm3`` never adds a lesion or a voxel; a higher ``threshold`` never adds a voxel (it may split a
lesion in two); with
``min_volume_mm3=0`` and no growth the output is exactly ``probability > threshold``.

Example:
    >>> import numpy as np
    >>> p = np.zeros((4, 16, 16), np.float32)
    >>> p[1:3, 2:8, 2:8] = 0.9                         # a lesion of 2 x 6 x 6 voxels
    >>> p[1, 12, 12] = 0.9                             # a speck of one voxel
    >>> p[1:3, 8, 2:8] = 0.4                           # the lesion's faint rim
    >>> lesions = lesion_mask(p, 0.5, spacing=(2.0, 1.0, 1.0), min_volume_mm3=10.0, grow_threshold=0.3)
    >>> int(lesions.sum()), bool(lesions[1, 12, 12]), bool(lesions[1, 8, 4])
    (84, False, True)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np
from scipy import ndimage

__all__ = ["lesion_mask", "lesion_volumes", "smooth_across_slices", "healthy_threshold", "HealthyThreshold",
           "CONNECTIVITY"]

# The smoothing kernel reaches 3 standard deviations (99.7% of its weight).
_TRUNCATE = 3.0
# The largest float32 below 1: the highest threshold, which a float32 score of 1 still exceeds.
_BELOW_ONE = float(np.nextafter(np.float32(1), np.float32(0)))
# Neighbours of a voxel -> the rank of scipy's generate_binary_structure (faces; faces, edges and corners).
CONNECTIVITY = {6: 1, 26: 3}


def _array(x: object, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, on any device
        x = x.detach().cpu().numpy()
    array = np.asarray(x)
    if array.dtype == bool:
        return array
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"{name} must hold numbers, got dtype {array.dtype}")
    return array


def _check_threshold(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number in (0, 1), got {value!r}")
    value = float(value)
    if not 0 < value < 1:  # NaN fails this too
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")
    return value


def _check_spacing(spacing: object, ndim: int) -> tuple[float, ...]:
    try:
        values = tuple(float(s) for s in spacing)  # type: ignore[union-attr]
    except TypeError:
        raise TypeError(f"spacing must be {ndim} voxel sizes in mm, got {spacing!r}") from None
    if len(values) != ndim or not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"spacing must be {ndim} finite voxel sizes > 0 in mm (one per axis of the map), "
                         f"got {spacing!r}")
    return values


def _check_connectivity(connectivity: object) -> int:
    if connectivity not in CONNECTIVITY or isinstance(connectivity, bool):
        raise ValueError(f"connectivity must be 6 or 26, got {connectivity!r}")
    return int(connectivity)  # type: ignore[call-overload]


def _structure(ndim: int, connectivity: int) -> np.ndarray:
    return ndimage.generate_binary_structure(ndim, min(CONNECTIVITY[connectivity], ndim))


def lesion_volumes(mask: object, spacing: Sequence[float], connectivity: int = 26) -> np.ndarray:
    """The volumes in mm³ of the connected components of a binary ``mask`` (2-D areas in mm² for an image).

    Args:
        mask: binary array (bool, or 0/1) of 2 or 3 dimensions; a torch tensor is read on the host.
        spacing: voxel size in mm along each axis of ``mask``.
        connectivity: 26 (faces, edges and corners; 8 in 2-D) or 6 (faces; 4 in 2-D).

    Returns:
        ``(n,)`` float64 array, one volume per component in :func:`scipy.ndimage.label`'s order.
    """
    mask = _array(mask, "mask")
    if mask.ndim not in (2, 3):
        raise ValueError(f"mask must be a 2-D image or a 3-D volume, got shape {mask.shape}")
    spacing = _check_spacing(spacing, mask.ndim)
    labels, n = ndimage.label(mask != 0, _structure(mask.ndim, _check_connectivity(connectivity)))
    return np.bincount(labels.ravel(), minlength=n + 1)[1:] * float(np.prod(spacing))


def lesion_mask(
    probability: object,
    threshold: float,
    *,
    spacing: Sequence[float],
    min_volume_mm3: float = 0.0,
    grow_threshold: float | None = None,
    connectivity: int = 26,
) -> np.ndarray:
    """Lesions of an anomaly map: voxels above ``threshold``, in 3-D components of at least ``min_volume_mm3``,
    grown over the connected voxels above ``grow_threshold`` (see the module docstring).

    Args:
        probability: anomaly map in [0, 1], 2-D ``(H, W)`` or 3-D ``(D, H, W)`` (any axis order: ``spacing``
            follows the array's axes); a torch tensor is read on the host. NaN is refused.
        threshold: a voxel with ``probability > threshold`` (strict) is lesion; in (0, 1).
        spacing: voxel size in mm along each axis of ``probability``.
        min_volume_mm3: a component smaller than this (mm³; mm² for an image) is dropped; 0 keeps all. It is
            judged on the voxels above ``threshold``, before growth.
        grow_threshold: ``None`` (no growth), or a value in (0, ``threshold``]: each kept lesion extends over the
            voxels above it connected to the lesion.
        connectivity: 26 (faces, edges and corners; 8 in 2-D) or 6 (faces only; 4 in 2-D).

    Returns:
        Bool array of ``probability``'s shape.

    Raises:
        ValueError: a threshold outside (0, 1), ``grow_threshold`` above ``threshold``, a negative or non-finite
            ``min_volume_mm3``, a spacing that is not one positive size per axis, NaN or values outside [0, 1].
    """
    p = _array(probability, "probability")
    if p.ndim not in (2, 3):
        raise ValueError(f"probability must be a 2-D image or a 3-D volume, got shape {p.shape}")
    threshold = _check_threshold("threshold", threshold)
    spacing = _check_spacing(spacing, p.ndim)
    structure = _structure(p.ndim, _check_connectivity(connectivity))
    if isinstance(min_volume_mm3, bool) or not isinstance(min_volume_mm3, (int, float, np.floating, np.integer)) \
            or not math.isfinite(min_volume_mm3) or min_volume_mm3 < 0:
        raise ValueError(f"min_volume_mm3 must be a finite number >= 0, got {min_volume_mm3!r}")
    if grow_threshold is not None:
        grow_threshold = _check_threshold("grow_threshold", grow_threshold)
        if grow_threshold > threshold:
            raise ValueError(f"grow_threshold must be <= threshold ({threshold:g}): a lesion grows over fainter "
                             f"voxels, got {grow_threshold:g}")
    if p.size and np.issubdtype(p.dtype, np.floating):
        low, high = float(np.min(p)), float(np.max(p))  # NaN propagates through min and max
        if not (0 <= low and high <= 1):
            raise ValueError(f"probability must hold values in [0, 1] (no NaN), got the range [{low:g}, {high:g}]")
    low = threshold if grow_threshold is None else grow_threshold
    out = np.zeros(p.shape, bool)
    box = _bounding_box(p > low)  # lesions of a liver map fill a small part of the scan: work in their box
    if box is None:
        return out
    out[box] = _lesions(p[box], threshold, low, spacing, min_volume_mm3, structure)
    return out


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The smallest box holding every True voxel of ``mask`` (``None`` when there is none)."""
    box = []
    for axis in range(mask.ndim):
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if hits.size == 0:
            return None
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def _lesions(p: np.ndarray, threshold: float, low: float, spacing: tuple[float, ...], min_volume_mm3: float,
             structure: np.ndarray) -> np.ndarray:
    core = p > threshold
    if min_volume_mm3 > 0 and core.any():
        labels, n = ndimage.label(core, structure)
        voxels = np.bincount(labels.ravel(), minlength=n + 1)
        keep = voxels * float(np.prod(spacing)) >= min_volume_mm3
        keep[0] = False
        core = keep[labels]
    if low == threshold or not core.any():
        return core
    grown, n = ndimage.label(p > low, structure)  # every core voxel lies in one of these
    seeded = np.zeros(n + 1, bool)
    seeded[grown[core]] = True
    seeded[0] = False
    return seeded[grown]


def smooth_across_slices(probability: object, axis: int, sigma_mm: float, spacing: Sequence[float]) -> np.ndarray:
    """A probability map averaged over neighbouring slices: a Gaussian of ``sigma_mm`` along the slice axis only.

    A net that maps one slice at a time has no view across slices: a speck it flags in one slice and not in its
    neighbours is seldom a lesion, which spans several slices as it spans several pixels. Smoothing along the slice
    axis in millimetres asks for that 3-D consistency: a lesion that spans a few slices keeps its score, a one-slice
    speck loses most of it; slices far apart (thick slices) share little.

    Args:
        probability: anomaly map in [0, 1], 3-D; a torch tensor is read on the host.
        axis: the slice axis of the array (for a scan in its own grid: the axis along which the scanner moved,
            e.g. ``nibabel.orientations.io_orientation(affine)``'s axis of S).
        sigma_mm: the Gaussian's standard deviation in mm (0: no smoothing).
        spacing: voxel size in mm along each axis.

    Returns:
        float32 array of the same shape, in [0, 1] (reflected at the volume's ends).

    Example:
        >>> import numpy as np
        >>> p = np.zeros((5, 4, 4), np.float32)
        >>> p[2, 1, 1] = 0.9                                 # a one-slice speck
        >>> p[1:4, 2, 2] = 0.9                               # a lesion across three slices
        >>> q = smooth_across_slices(p, axis=0, sigma_mm=2.0, spacing=(1.6, 0.8, 0.8))
        >>> round(float(q[2, 1, 1]), 2), round(float(q[2, 2, 2]), 2)
        (0.29, 0.71)
    """
    p = _array(probability, "probability")
    if p.ndim != 3:
        raise ValueError(f"probability must be a 3-D volume, got shape {p.shape}")
    spacing = _check_spacing(spacing, 3)
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -3 <= axis < 3:
        raise ValueError(f"axis must be 0, 1 or 2 (or negative), got {axis!r}")
    if isinstance(sigma_mm, bool) or not isinstance(sigma_mm, (int, float, np.floating, np.integer)) or \
            not math.isfinite(sigma_mm) or sigma_mm < 0:
        raise ValueError(f"sigma_mm must be a finite number >= 0, got {sigma_mm!r}")
    p = p.astype(np.float32, copy=False)
    sd = sigma_mm / spacing[axis]  # in slices
    if int(_TRUNCATE * sd + 0.5) == 0:  # a kernel of one slice: the identity (and scipy divides by zero on it)
        return p.copy()
    return ndimage.gaussian_filter1d(p, sd, axis=int(axis), mode="reflect", truncate=_TRUNCATE)


class HealthyThreshold(NamedTuple):
    """A threshold calibrated on healthy data: ``threshold``, the ``false_positive_fraction`` asked for, the
    fraction of the healthy volume that it actually leaves above it (``achieved``; ties can keep it below the
    target), and how many healthy voxels it was set on (``voxels``)."""

    threshold: float
    false_positive_fraction: float
    achieved: float
    voxels: int


def _pooled(values: object | Iterable[object], name: str) -> np.ndarray:
    parts = [values] if hasattr(values, "shape") else list(values)  # type: ignore[arg-type]
    if not parts:
        return np.empty(0)
    return np.concatenate([_array(v, name).astype(np.float64, copy=False).ravel() for v in parts])


def healthy_threshold(
    scores: object | Iterable[object],
    false_positive_fraction: float,
    *,
    weights: object | Iterable[object] | None = None,
    floor: float = 1e-3,
) -> HealthyThreshold:
    """The lowest threshold that at most ``false_positive_fraction`` of the healthy volume exceeds.

    A one-class operating point: set from anomaly scores of healthy tissue alone (no lesion labels), it gives
    every model the same false-positive volume on healthy tissue, whatever the scale of its scores.

    Args:
        scores: anomaly scores in [0, 1] of healthy voxels only (e.g. ``probability[liver]`` of healthy scans):
            one array or tensor, or an iterable of them (pooled).
        false_positive_fraction: the fraction of the healthy volume allowed above the threshold, in (0, 1).
        weights: optional volume of each voxel (same layout as ``scores``, > 0), for voxels of unequal size
            (slices resampled from scans of different spacing); default: every voxel counts the same.
        floor: the threshold is at least this (a model that scores every healthy voxel 0 would otherwise get a
            threshold of 0, which marks every voxel of a real scan that scores above 0).

    Returns:
        A :class:`HealthyThreshold`; ``threshold`` is in [``floor``, 1). When more than the share scores 1, no
        threshold keeps it: ``achieved`` then exceeds ``false_positive_fraction`` and a ``RuntimeWarning`` says so.

    Raises:
        ValueError: no scores, scores outside [0, 1] or NaN, weights that do not match or are not > 0, or a
            fraction outside (0, 1).

    Example:
        >>> import numpy as np
        >>> healthy = np.linspace(0, 1, 1001, dtype=np.float32)[:-1]      # 1,000 healthy voxels
        >>> t = healthy_threshold(healthy, 0.01)
        >>> round(t.threshold, 3), t.achieved <= 0.01
        (0.989, True)
    """
    fraction = _check_threshold("false_positive_fraction", false_positive_fraction)
    floor = _check_threshold("floor", floor)
    values = _pooled(scores, "scores")
    if values.size == 0:
        raise ValueError("scores is empty: calibration needs the anomaly scores of healthy voxels")
    low, high = float(values.min()), float(values.max())
    if not (0 <= low and high <= 1):
        raise ValueError(f"scores must lie in [0, 1] (no NaN), got the range [{low:g}, {high:g}]")
    if weights is None:
        w = np.ones_like(values)
    else:
        w = _pooled(weights, "weights")
        if w.shape != values.shape:
            raise ValueError(f"weights must give one weight per score: got {w.size} weights for {values.size} scores")
        if not np.all(np.isfinite(w) & (w > 0)):
            raise ValueError("weights must be finite and > 0 (the volume of each voxel)")
    order = np.argsort(values, kind="stable")
    ordered, cumulative = values[order], np.cumsum(w[order])
    total = float(cumulative[-1])
    # The first score whose cumulative weight reaches (1 - fraction) of the total: everything strictly above it
    # weighs at most `fraction` of the total (ties at it stay below), and no lower score does so.
    i = int(np.searchsorted(cumulative, (1 - fraction) * total * (1 - 1e-12), side="left"))
    threshold = float(ordered[min(i, values.size - 1)])
    # below 1 in float32 too, so that float32 maps compared with it agree with `achieved`
    threshold = min(max(threshold, floor), _BELOW_ONE)
    achieved = float(w[values > threshold].sum() / total)
    if threshold == _BELOW_ONE and achieved > fraction:  # saturated: ties at 1, not the rounding of the sums
        warnings.warn(f"healthy_threshold: {100 * achieved:.3g}% of the healthy volume scores 1, more than "
                      f"false_positive_fraction={fraction:g}: no threshold below 1 keeps the share; the net is "
                      "saturated on healthy tissue", RuntimeWarning, stacklevel=2)
    return HealthyThreshold(threshold, fraction, achieved, int(values.size))
