"""The per-volume transform of ``prepare`` and its inverse, identical for training and test data.

Zhang, Deng & Li (SASHIMI 2023) train on healthy livers and test on tumor livers; any difference between the two
that came from preprocessing would be an anomaly the model could learn, so both go through
:func:`preprocess_volume`:

1. reorient to RAS, as ``nib.as_closest_canonical`` does (axes permuted and flipped, no resampling);
2. view every axial slice radiologically, the way CT is read: rows run anterior -> posterior, columns run from
   the patient's right to the patient's left (so the liver lies on the image's left), slices inferior ->
   superior; a slice index is always an index along this canonical superior axis;
3. keep the slices whose liver area is at least ``min_liver_pixels`` (counted at the source resolution) and at
   least ``min_liver_fraction`` of the slice;
4. window HU to [-200, 250] (the paper's abdominal window) and scale to [0, 1];
5. crop a square box: the whole slice (``crop="none"``, the default: the released code feeds whole slices),
   the liver's bounding box over all kept slices plus a margin (``"volume"``: one box per volume keeps the
   scale constant along the volume) or per slice (``"slice"``); a box beyond the slice is padded with 0;
6. resize to ``size`` x ``size`` (256 in the paper; cv2.resize, linear for the image, centre-aligned nearest
   for masks);
7. liver ROI: image x liver mask, so the background is exactly 0;
8. equalize the histogram of the liver pixels: exactly what ``cv2.equalizeHist`` would do to those pixels'
   uint8 values alone (:func:`equalize_masked`; Kornia's ``equalize`` follows PIL and differs); the
   background stays 0. By OpenCV's rule the darkest liver grey level becomes 0 too, so the liver mask, not the
   image, tells the liver from the background.

:func:`restore_volume` undoes 2-6 for a per-slice prediction, giving a volume in the input's exact voxel grid.
The prepared slices are kept in the format of :mod:`examples.lits.volumes`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import cv2
import nibabel as nib
import numpy as np

from .volumes import PreparedVolume, SliceGeometry

__all__ = [
    "PREPARE_PRESETS", "LIVER_WINDOW", "PrepareConfig", "preprocess_volume", "restore_volume", "window",
    "equalize_masked", "count_non_finite",
]

CROP_MODES = ("none", "volume", "slice")
HU_WINDOW = (-200.0, 250.0)  # the paper's abdominal window
SIZE = 256  # the paper's slice size
# Ours: width (HU) of the liver-centred window. Enhanced parenchyma sits near the centre, hypodense tumors
# (typically 20-100 HU below it) and bright vessels (50-100 HU above) stay inside the band, and the paper's
# intensity shift of 60-100 grey levels of 255 becomes 47-78 HU: the contrast of real lesions. Unlike the
# per-slice equalization, a tumor does not move the mapping of the parenchyma around it (the median of a
# liver moves little unless tumors fill half of it), and CT noise is not stretched to the full range.
LIVER_WINDOW = 200.0
RESIZE_MODES = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA}


@dataclass(frozen=True)
class PrepareConfig:
    """Settings of :func:`preprocess_volume`; part of the manifest, so changing one re-prepares every volume.

    Args:
        hu_window: (low, high) HU mapped to 0 and 1.
        size: output slice side in pixels.
        min_liver_pixels: a slice is kept when its liver has at least this many pixels at source resolution...
        min_liver_fraction: ... and covers at least this fraction of the slice.
        crop: ``"none"`` (whole slice), ``"volume"`` (one liver box per volume) or ``"slice"`` (a box per slice).
        crop_margin: pixels (at source resolution) added around the liver box.
        equalize: histogram-equalize the liver pixels (the paper).
        liver_window: instead of ``hu_window`` and equalization, window a band of this many HU centred on the
            volume's median liver HU (ours, see :data:`LIVER_WINDOW`); ``None`` keeps the paper's window.
        resize: ``"linear"`` (the released code's ``cv2.resize``) or ``"area"`` (averages the source pixels each
            output pixel covers when shrinking: anti-aliased, and it lowers the CT noise instead of aliasing it).
    """

    hu_window: tuple[float, float] = HU_WINDOW
    size: int = SIZE
    # Ours, not the paper's: slivers at the dome and the tip (< ~0.5 cm^2 at 0.75 mm pixels) hold too few
    # liver pixels for a meaningful histogram; every CHAOS liver slice passes.
    min_liver_pixels: int = 100
    min_liver_fraction: float = 0.0
    crop: str = "none"
    crop_margin: int = 16
    equalize: bool = True
    liver_window: float | None = None
    resize: str = "linear"

    def __post_init__(self):
        low, high = (float(v) for v in self.hu_window)
        if not low < high:
            raise ValueError(f"hu_window must be (low, high) with low < high, got {tuple(self.hu_window)}")
        object.__setattr__(self, "hu_window", (low, high))
        if not 8 <= self.size <= 4096:
            raise ValueError(f"size must be in [8, 4096], got {self.size}")
        if self.min_liver_pixels < 1:
            raise ValueError(f"min_liver_pixels must be >= 1, got {self.min_liver_pixels}")
        if not 0 <= self.min_liver_fraction < 1:
            raise ValueError(f"min_liver_fraction must be in [0, 1), got {self.min_liver_fraction}")
        if self.crop not in CROP_MODES:
            raise ValueError(f"crop must be one of {CROP_MODES}, got {self.crop!r}")
        if self.liver_window is not None:
            if not (isinstance(self.liver_window, (int, float)) and 0 < self.liver_window < 4000):
                raise ValueError(f"liver_window must be a width in HU in (0, 4000) or None, got {self.liver_window!r}")
            if self.equalize:
                raise ValueError("liver_window replaces the histogram equalization: set equalize=False with it "
                                 f"(got equalize=True, liver_window={self.liver_window})")
            object.__setattr__(self, "liver_window", float(self.liver_window))
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {tuple(RESIZE_MODES)}, got {self.resize!r}")
        if self.crop_margin < 0:
            raise ValueError(f"crop_margin must be >= 0, got {self.crop_margin}")

    def to_dict(self) -> dict:
        """The config as JSON-ready values."""
        d = asdict(self)
        d["hu_window"] = list(self.hu_window)
        return d


# Settings that go with train's presets of the same name. ``paper``: the released code's preprocessing.
# ``cpu``: what the slim CPU nets see best (measured in benchmarks/RESULTS.md): the liver's bounding box at 128
# px (whole 512 px slices at 128 would leave the liver a quarter of the frame), area resizing, and the
# liver-centred window instead of the per-slice equalization.
PREPARE_PRESETS = {
    "paper": PrepareConfig(),
    "cpu": PrepareConfig(size=128, crop="volume", equalize=False, liver_window=LIVER_WINDOW, resize="area"),
}


# --------------------------------------------------------------------------------------------- orientation


def _canonical(array: np.ndarray, orientation: np.ndarray) -> np.ndarray:
    """Source array -> RAS array (a view), as ``nib.as_closest_canonical``."""
    return nib.orientations.apply_orientation(array, orientation)


def _from_canonical(array: np.ndarray, orientation: np.ndarray) -> np.ndarray:
    """RAS array -> source array: the inverse permutation and flips of ``orientation``."""
    inverse = np.empty_like(orientation)
    for src, (dst, flip) in enumerate(orientation):
        inverse[int(dst)] = (src, flip)
    return nib.orientations.apply_orientation(array, inverse)


def _radiological(canonical: np.ndarray) -> np.ndarray:
    """(X, Y, Z) RAS -> (Z, rows, cols) view: rows anterior -> posterior, columns patient right -> left."""
    return canonical[::-1, ::-1, :].transpose(2, 1, 0)


def _from_radiological(slices: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_radiological`."""
    return slices.transpose(2, 1, 0)[::-1, ::-1, :]


# ------------------------------------------------------------------------------------------ per-slice ops


def count_non_finite(array: np.ndarray) -> int:
    """Number of NaN or Inf values of ``array`` (0 for integer arrays, without a pass over them)."""
    if not np.issubdtype(array.dtype, np.floating):
        return 0
    return int(array.size - np.count_nonzero(np.isfinite(array)))


def window(hu: np.ndarray, hu_window: tuple[float, float] = HU_WINDOW) -> np.ndarray:
    """Clip HU to ``hu_window`` and scale it to [0, 1] (float32).

    Args:
        hu: any-shape HU values.
        hu_window: (low, high) mapped to (0, 1).

    Returns:
        float32 array of ``hu``'s shape.
    """
    low, high = hu_window
    return np.clip((hu.astype(np.float32) - np.float32(low)) / np.float32(high - low), 0.0, 1.0)


def equalize_masked(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Histogram-equalize the pixels under ``mask`` exactly as ``cv2.equalizeHist`` would those pixels alone.

    OpenCV's rule: the lowest occupied grey level ``i0`` maps to 0 and level ``v`` to
    ``round((cdf(v) - hist(i0)) * 255 / (n - hist(i0)))`` in float32, rounding half to even; a constant region
    keeps its value. Pixels outside the mask are returned unchanged.

    Args:
        image: (H, W) uint8.
        mask: (H, W) bool region to equalize.

    Returns:
        (H, W) uint8.

    Example:
        >>> import numpy as np
        >>> equalize_masked(np.array([[0, 10, 20, 20]], np.uint8), np.array([[False, True, True, True]]))
        array([[  0,   0, 255, 255]], dtype=uint8)
    """
    if image.dtype != np.uint8 or image.shape != mask.shape:
        raise ValueError(f"image must be uint8 of mask's shape {mask.shape}, got {image.dtype} {image.shape}")
    out = image.copy()
    values = image[mask]
    if values.size == 0:
        return out
    hist = np.bincount(values, minlength=256)
    low = int(np.flatnonzero(hist)[0])
    if hist[low] == values.size:  # one grey level: cv2 sets the image to it
        return out
    scale = np.float32(255.0) / np.float32(values.size - hist[low])
    cumulative = (np.cumsum(hist) - hist[low]).astype(np.float32)
    lut = np.zeros(256, np.uint8)
    lut[low + 1:] = np.clip(np.rint(cumulative[low + 1:] * scale), 0, 255)
    out[mask] = lut[values]
    return out


def _square_box(rows: tuple[int, int], cols: tuple[int, int], margin: int) -> tuple[int, int, int, int]:
    """The square (row0, row1, col0, col1) box centred on ``rows`` x ``cols`` grown by ``margin``."""
    r0, r1, c0, c1 = rows[0] - margin, rows[1] + margin, cols[0] - margin, cols[1] + margin
    side = max(r1 - r0, c1 - c0)
    r0 = (r0 + r1 - side) // 2
    c0 = (c0 + c1 - side) // 2
    return r0, r0 + side, c0, c0 + side


def _bounds(mask: np.ndarray, axis: int) -> tuple[int, int]:
    hit = np.flatnonzero(mask.any(axis=axis))
    return int(hit[0]), int(hit[-1]) + 1


def _crop(image: np.ndarray, box: Sequence[int]) -> np.ndarray:
    """``image[row0:row1, col0:col1]``, zero-padded where the box leaves the image; always C-contiguous."""
    r0, r1, c0, c1 = box
    h, w = image.shape
    if r0 >= 0 and c0 >= 0 and r1 <= h and c1 <= w:
        return np.ascontiguousarray(image[r0:r1, c0:c1])
    out = np.zeros((r1 - r0, c1 - c0), image.dtype)
    rs, re_, cs, ce = max(r0, 0), min(r1, h), max(c0, 0), min(c1, w)
    if rs < re_ and cs < ce:
        out[rs - r0:re_ - r0, cs - c0:ce - c0] = image[rs:re_, cs:ce]
    return out


def _resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    # Centre-aligned nearest neighbour (as PIL and torch "nearest-exact"): no half-pixel shift against the
    # linearly resized image.
    return cv2.resize(mask.view(np.uint8), size, interpolation=cv2.INTER_NEAREST_EXACT) > 0


# ------------------------------------------------------------------------------------- volume transforms


def preprocess_volume(
    hu: np.ndarray,
    liver: np.ndarray,
    affine: np.ndarray,
    config: PrepareConfig = PrepareConfig(),
    tumor: np.ndarray | None = None,
) -> PreparedVolume:
    """The per-volume transform of ``prepare`` (module docstring, steps 2-8), identical for every data set.

    Args:
        hu: (X, Y, Z) Hounsfield units in the file's voxel order.
        liver: (X, Y, Z) liver mask (nonzero = liver, tumors included).
        affine: (4, 4) voxel-to-world matrix of the file (orientation only is used).
        config: preprocessing settings.
        tumor: optional (X, Y, Z) tumor mask; kept inside the liver.

    Returns:
        The kept slices, in canonical inferior -> superior order, and their geometry.
    """
    hu = np.asanyarray(hu)
    if hu.ndim != 3:
        raise ValueError(f"hu must be a 3-D volume, got shape {hu.shape}")
    bad = count_non_finite(hu)
    if bad:  # a NaN would be cast to 0 (tumour-dark) after windowing, with only a numpy warning
        raise ValueError(f"hu has {bad} NaN or Inf voxel(s) of {hu.size}")
    masks = {"liver": liver, "tumor": tumor}
    for name, m in masks.items():
        if m is not None and np.shape(m) != hu.shape:
            raise ValueError(f"{name} shape {np.shape(m)} differs from hu shape {hu.shape}")
    affine = np.asarray(affine, np.float64)
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise ValueError(f"affine must be a finite (4, 4) matrix, got shape {affine.shape}")
    orientation = nib.orientations.io_orientation(affine)

    def slices_of(a):  # (Z, rows, cols) radiological view of the canonical volume
        return _radiological(_canonical(np.asanyarray(a), orientation))

    def nonzero(mask):  # a bool mask as it is (a view, not a volume-sized copy), any other as mask != 0
        mask = np.asanyarray(mask)
        return mask if mask.dtype == bool else mask != 0

    hu_s = slices_of(hu)
    liver_s = slices_of(nonzero(liver))
    tumor_s = slices_of(nonzero(tumor)) if tumor is not None else None
    _, rows, cols = liver_s.shape

    area = liver_s.sum(axis=(1, 2))
    keep = np.flatnonzero((area >= config.min_liver_pixels) & (area >= config.min_liver_fraction * rows * cols))
    if config.crop == "none":
        boxes = [_square_box((0, rows), (0, cols), 0)] * len(keep)
    elif config.crop == "volume":
        union = liver_s[keep].any(axis=0) if len(keep) else np.ones((rows, cols), bool)
        boxes = [_square_box(_bounds(union, 1), _bounds(union, 0), config.crop_margin)] * len(keep)
    else:
        boxes = [_square_box(_bounds(liver_s[k], 1), _bounds(liver_s[k], 0), config.crop_margin) for k in keep]

    size = (config.size, config.size)
    hu_window = config.hu_window
    if config.liver_window is not None and len(keep):
        centre = float(np.median(hu_s[keep][liver_s[keep]]))
        hu_window = (centre - config.liver_window / 2, centre + config.liver_window / 2)
    interpolation = RESIZE_MODES[config.resize]
    images, livers, tumors, kept, kept_boxes = [], [], [], [], []
    for k, box in zip(keep, boxes):
        mask = _resize_mask(_crop(np.ascontiguousarray(liver_s[k]), box), size)
        if not mask.any():  # a sliver lost in downsampling: drop rather than keep an empty ROI
            continue
        source = _crop(window(hu_s[k], hu_window), box)
        shrink = source.shape[0] > size[0]
        image = cv2.resize(source, size, interpolation=interpolation if shrink else cv2.INTER_LINEAR)
        # Mask after resizing: resizing the masked image would blur the background into the liver's rim.
        image = np.where(mask, image, np.float32(0))
        if config.equalize:
            image = equalize_masked(np.rint(image * 255).astype(np.uint8), mask).astype(np.float32) / 255
        images.append(image)
        livers.append(mask)
        tumor_mask = _resize_mask(_crop(np.ascontiguousarray(tumor_s[k]), box), size) if tumor_s is not None else None
        tumors.append(mask & tumor_mask if tumor_mask is not None else np.zeros_like(mask))
        kept.append(k)
        kept_boxes.append(box)

    n = len(kept)
    geometry = SliceGeometry(
        slices=np.asarray(kept, np.int64),
        boxes=np.asarray(kept_boxes, np.int64).reshape(n, 4),
        source_shape=tuple(int(s) for s in hu.shape),
        source_affine=affine,
        size=config.size,
    )

    def stack(items, dtype):
        return np.stack(items).astype(dtype, copy=False) if items else np.zeros((0, *size), dtype)

    return PreparedVolume(stack(images, np.float32), stack(livers, bool), stack(tumors, bool), geometry)


def restore_volume(
    pred: np.ndarray,
    geometry: SliceGeometry,
    original_shape: Sequence[int] | None = None,
    original_affine: np.ndarray | None = None,
    interpolation: str = "linear",
) -> np.ndarray:
    """Put per-slice predictions back into the input's exact voxel grid (inverse of :func:`preprocess_volume`).

    Each slice is resized to its crop box, pasted into its canonical slice, and the canonical reorientation is
    undone. Voxels of slices that were not kept are 0.

    Args:
        pred: (N, S, S) per-slice values (probabilities, masks), in the order of ``geometry.slices``.
        geometry: the geometry returned with the prepared slices.
        original_shape: the input's shape; checked against the geometry (default: the geometry's).
        original_affine: the input's affine; checked against the geometry (default: the geometry's).
        interpolation: ``"linear"`` (probabilities) or ``"nearest"`` (label maps).

    Returns:
        float32 array of the input's shape, aligned with its affine.
    """
    pred = np.asarray(pred)
    n, size = len(geometry.slices), geometry.size
    if pred.shape != (n, size, size):
        raise ValueError(f"pred must have shape {(n, size, size)} to match the geometry, got {pred.shape}")
    if original_shape is not None and tuple(original_shape) != geometry.source_shape:
        raise ValueError(f"original_shape {tuple(original_shape)} differs from the prepared volume's "
                         f"{geometry.source_shape}")
    if original_affine is not None and not np.allclose(original_affine, geometry.source_affine, atol=1e-3):
        raise ValueError(f"original_affine differs from the prepared volume's:\n{np.asarray(original_affine)}\n"
                         f"vs\n{geometry.source_affine}")
    modes = {"linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST_EXACT}
    if interpolation not in modes:
        raise ValueError(f"interpolation must be one of {sorted(modes)}, got {interpolation!r}")

    x, y, z = geometry.canonical_shape
    out = np.zeros((z, y, x), np.float32)  # radiological (Z, rows, cols)
    for k, (r0, r1, c0, c1), p in zip(geometry.slices, geometry.boxes, pred.astype(np.float32)):
        patch = cv2.resize(p, (int(c1 - c0), int(r1 - r0)), interpolation=modes[interpolation])
        rs, re_, cs, ce = max(r0, 0), min(r1, y), max(c0, 0), min(c1, x)
        out[k, rs:re_, cs:ce] = patch[rs - r0:re_ - r0, cs - c0:ce - c0]
    return np.ascontiguousarray(_from_canonical(_from_radiological(out), geometry.orientation))
