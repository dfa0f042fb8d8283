"""One prepared volume: its slices, where they came from, and its file.

File of one prepared volume (:func:`save_prepared_volume`, ``.npz``): ``images`` uint8 (N, S, S), the image
times 255 (lossless: equalized values are multiples of 1/255; without equalization the error is <= 1/510),
``liver`` and ``tumor`` bool (N, S, S), ``slices`` int32 (N,) canonical axial indices, ``boxes`` int32 (N, 4)
crop boxes ``(row0, row1, col0, col1)`` in the radiological slice frame, ``source_shape`` (3,),
``source_affine`` (4, 4), ``size`` and ``version``.
"""

from __future__ import annotations

import io
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from pseudoanomaly.io import atomic_write

__all__ = ["SliceGeometry", "PreparedVolume", "save_prepared_volume", "load_prepared_volume"]

VOLUME_FORMAT_VERSION = 1


@dataclass(frozen=True)
class SliceGeometry:
    """Where the prepared slices came from: enough to put a per-slice prediction back into the source grid.

    Attributes:
        slices: (N,) canonical axial indices of the kept slices (0 = most inferior).
        boxes: (N, 4) crop boxes ``(row0, row1, col0, col1)``, half-open, in the radiological slice frame of the
            canonical volume (may extend past the slice: padded).
        source_shape: the input's voxel grid shape.
        source_affine: the input's (4, 4) voxel-to-world matrix.
        size: side of the prepared slices.
    """

    slices: np.ndarray
    boxes: np.ndarray
    source_shape: tuple[int, int, int]
    source_affine: np.ndarray
    size: int

    @property
    def orientation(self) -> np.ndarray:
        """(3, 2) nibabel orientation of the source axes: source -> canonical RAS."""
        return nib.orientations.io_orientation(self.source_affine)

    @property
    def canonical_shape(self) -> tuple[int, int, int]:
        """Shape of the volume in RAS orientation."""
        order = self.orientation[:, 0].astype(int)
        shape = [0, 0, 0]
        for src, dst in enumerate(order):
            shape[dst] = self.source_shape[src]
        return tuple(shape)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the canonical (x, y, z) axes: slice columns, slice rows, slices."""
        zooms = nib.affines.voxel_sizes(self.source_affine)
        out = [0.0, 0.0, 0.0]
        for src, dst in enumerate(self.orientation[:, 0].astype(int)):
            out[dst] = float(zooms[src])
        return tuple(out)

    @property
    def axcodes(self) -> str:
        """Axis codes of the source, e.g. ``"LPS"``."""
        return "".join(nib.orientations.aff2axcodes(self.source_affine))


@dataclass(frozen=True)
class PreparedVolume:
    """The prepared slices of one volume.

    Attributes:
        images: (N, S, S) float32 in [0, 1], 0 outside the liver.
        liver: (N, S, S) bool liver masks.
        tumor: (N, S, S) bool tumor masks (inside the liver; all False without a tumor label).
        geometry: how to map the slices back (see :func:`restore_volume`).
    """

    images: np.ndarray
    liver: np.ndarray
    tumor: np.ndarray
    geometry: SliceGeometry


def save_prepared_volume(path: str | os.PathLike, volume: PreparedVolume) -> None:
    """Write ``volume`` to ``path`` (``.npz``, format in the module docstring), atomically.

    Args:
        path: target file.
        volume: the prepared slices and geometry.
    """
    g = volume.geometry
    arrays = {
        "images": np.rint(volume.images * 255).astype(np.uint8),
        "liver": volume.liver.astype(bool),
        "tumor": volume.tumor.astype(bool),
        "slices": g.slices.astype(np.int32),
        "boxes": g.boxes.astype(np.int32),
        "source_shape": np.asarray(g.source_shape, np.int64),
        "source_affine": np.asarray(g.source_affine, np.float64),
        "size": np.int64(g.size),
        "version": np.int64(VOLUME_FORMAT_VERSION),
    }
    atomic_write(Path(path), lambda f: _write_npz(f, arrays))


def load_prepared_volume(path: str | os.PathLike, content: bytes | None = None) -> PreparedVolume:
    """Read a file written by :func:`save_prepared_volume`.

    Args:
        path: the ``.npz`` file.
        content: its bytes, when the caller has read them already (they are decoded instead of the file).

    Returns:
        The prepared volume (images back in float32 [0, 1]).
    """
    try:
        # allow_pickle=False: an object array would run code from the file when loaded
        with np.load(path if content is None else io.BytesIO(content), allow_pickle=False) as f:
            version = int(f["version"])
            if version != VOLUME_FORMAT_VERSION:
                raise ValueError(f"{path}: prepared-volume format version {version}, this code reads "
                                 f"{VOLUME_FORMAT_VERSION}; run prepare again")
            geometry = SliceGeometry(
                slices=f["slices"].astype(np.int64),
                boxes=f["boxes"].astype(np.int64),
                source_shape=tuple(int(s) for s in f["source_shape"]),
                source_affine=f["source_affine"],
                size=int(f["size"]),
            )
            volume = PreparedVolume(f["images"].astype(np.float32) / 255, f["liver"], f["tumor"], geometry)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        if str(exc).startswith(f"{path}:"):
            raise
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"{path}: not a readable prepared volume ({type(exc).__name__}: {reason}); run prepare "
                         "again") from exc
    n = len(volume.images)
    if volume.liver.shape != volume.images.shape or volume.tumor.shape != volume.images.shape or \
            geometry.slices.shape != (n,) or geometry.boxes.shape != (n, 4):
        raise ValueError(f"{path}: inconsistent prepared volume (images {volume.images.shape}, liver "
                         f"{volume.liver.shape}, tumor {volume.tumor.shape}, slices {geometry.slices.shape}); run "
                         "prepare again")
    return volume


def _write_npz(fileobj, arrays: dict) -> None:
    np.savez_compressed(fileobj, **arrays)

