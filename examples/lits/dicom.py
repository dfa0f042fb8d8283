"""A DICOM series (one file per slice, one folder) -> ``(array, affine)`` as :func:`~examples.lits.cases.load_nifti`
gives for the same scan.

The geometry is DICOM's (PS3.3 C.7.6.2.1.1, the Image Plane module): pixel ``(row r, column c)`` of a slice lies at
``ImagePositionPatient + c * PixelSpacing[1] * X + r * PixelSpacing[0] * Y`` in the patient's L, P, S
coordinates, ``X`` and ``Y`` being the two halves of ``ImageOrientationPatient``. Slices are ordered by their
position along the slice normal ``X x Y`` (not by file name or InstanceNumber, which exporters number either
way), the array is indexed ``[column, row, slice]`` like a NIfTI converted from the series, and the affine maps
it to nibabel's R, A, S world (x and y of LPS negated). Values are ``pixel * RescaleSlope + RescaleIntercept``.

A folder that is not one clean series is refused with a :class:`~examples.lits.cases.PrepareError` naming the
folder or file and the value: two series (SeriesInstanceUID), slices of different size, pixel spacing or
orientation, two slices at one position, or a gap (a step over :data:`MAX_GAP` times the median step).

pydicom is imported only when a series is read (the ``dicom`` extra: ``pip install pseudoanomaly[dicom]``).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np

from .cases import PrepareError

__all__ = ["dicom_files", "read_series", "series_affine", "MAX_GAP"]

# A step between neighbouring slices this many times the median step means a slice is missing.
MAX_GAP = 1.5
# Orientation cosines and pixel spacings of one series agree to this (they are written with ~6 digits).
GEOMETRY_TOLERANCE = 1e-4
# Slices may sit this far (mm) off the line through the first and last: exporters round positions to ~0.01 mm.
POSITION_TOLERANCE = 0.05


def _pydicom():
    try:
        import pydicom
    except ImportError:
        raise ImportError("reading DICOM needs pydicom: pip install pseudoanomaly[dicom] (or pip install pydicom)"
                          ) from None
    return pydicom


def dicom_files(folder: str | os.PathLike) -> list[Path]:
    """The slice files of a series folder, by name: every file but hidden ones (``.DS_Store``, macOS ``._*``), a
    ``DICOMDIR`` index and obvious non-DICOM ones (``.png``, ``.txt``, ...); 3D-IRCADb's files have no extension,
    CHAOS's end in ``.dcm``.
    """
    skip = {".png", ".jpg", ".jpeg", ".txt", ".json", ".xml", ".csv", ".zip", ".nii", ".gz", ".vtk", ".md"}
    return sorted((p for p in Path(folder).iterdir()
                   if p.is_file() and not p.name.startswith(".") and p.suffix.lower() not in skip
                   and p.name.upper() != "DICOMDIR"),  # a media index, not a slice
                  key=lambda p: p.name)


def _read(path: Path, pydicom):
    try:
        return pydicom.dcmread(path)
    except Exception as exc:  # pydicom raises InvalidDicomError, EOFError, ... for foreign or truncated files
        raise PrepareError(path, f"cannot read as DICOM ({type(exc).__name__}: {exc})") from exc


def _floats(ds, keyword: str, n: int, path: Path) -> np.ndarray:
    value = ds.get(keyword)
    if value is None:
        raise PrepareError(path, f"has no {keyword}: a slice without it has no place in the volume")
    try:
        out = np.array([float(v) for v in value], np.float64)
    except (TypeError, ValueError):
        raise PrepareError(path, f"{keyword} is not {n} numbers: {value!r}") from None
    if out.shape != (n,) or not np.isfinite(out).all():
        raise PrepareError(path, f"{keyword} is not {n} finite numbers: {list(value)}")
    return out


def read_series(folder: str | os.PathLike, what: str = "image",
                files: list[Path] | None = None) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """Read one DICOM series into a volume.

    Args:
        folder: the series folder (named in messages).
        what: what the series is, for messages (``"image"``, ``"liver mask"``).
        files: its slice files (default: :func:`dicom_files` of ``folder``).

    Returns:
        ``(array, affine, files)``: the ``(columns, rows, slices)`` values (int16 when they are integers that fit,
        else float64), the (4, 4) RAS affine, and the files in the order of the array's slices.
    """
    pydicom = _pydicom()
    folder = Path(folder)
    if files is None:
        if not folder.is_dir():
            raise PrepareError(folder, f"{what} DICOM folder not found")
        files = dicom_files(folder)
    if not files:
        raise PrepareError(folder, f"no DICOM files in the {what} folder")
    slices = [_read(p, pydicom) for p in files]
    series = Counter(str(ds.get("SeriesInstanceUID", "")) for ds in slices)
    if len(series) > 1:
        found = ", ".join(f"{uid or '(none)'} ({n} files)" for uid, n in series.most_common())
        raise PrepareError(folder, f"holds {len(series)} DICOM series (SeriesInstanceUID {found}); put each series "
                                   "in its own folder")
    first = files[0]
    orientation = _floats(slices[0], "ImageOrientationPatient", 6, first)
    spacing = _floats(slices[0], "PixelSpacing", 2, first)
    size = (int(slices[0].Rows), int(slices[0].Columns))
    positions = np.empty((len(files), 3))
    for k, (path, ds) in enumerate(zip(files, slices)):
        if (int(ds.Rows), int(ds.Columns)) != size:
            raise PrepareError(path, f"{what} slice is {int(ds.Rows)} x {int(ds.Columns)} pixels, {first.name} is "
                                     f"{size[0]} x {size[1]}: one series has one slice size")
        for keyword, reference, n in (("ImageOrientationPatient", orientation, 6), ("PixelSpacing", spacing, 2)):
            value = _floats(ds, keyword, n, path)
            if not np.allclose(value, reference, rtol=0, atol=GEOMETRY_TOLERANCE):
                raise PrepareError(path, f"{keyword} {value.tolist()} differs from {first.name}'s "
                                         f"{reference.tolist()}: one series has one geometry")
        positions[k] = _floats(ds, "ImagePositionPatient", 3, path)
    normal = np.cross(orientation[:3], orientation[3:])
    order = np.argsort(positions @ normal, kind="stable")
    files = [files[k] for k in order]
    slices = [slices[k] for k in order]
    positions = positions[order]
    affine = series_affine(orientation, spacing, positions, files, folder)
    volume = np.stack([_hounsfield(ds, path) for ds, path in zip(slices, files)], axis=-1)  # (rows, columns, slices)
    if np.issubdtype(volume.dtype, np.integer) and volume.min() >= -32768 and volume.max() <= 32767:
        volume = volume.astype(np.int16)  # what a NIfTI conversion stores, at a quarter of float64's memory
    return volume.transpose(1, 0, 2), affine, files


def series_affine(orientation: np.ndarray, spacing: np.ndarray, positions: np.ndarray, files: list[Path],
                  folder: Path) -> np.ndarray:
    """The RAS affine of slices at ``positions`` (sorted along the normal), after checking their spacing.

    Args:
        orientation: ImageOrientationPatient (6,).
        spacing: PixelSpacing (2,): between rows, between columns.
        positions: ImagePositionPatient of each slice, in slice order (N, 3).
        files, folder: the slices' files and their folder, for messages.
    """
    steps = np.diff(positions, axis=0)  # (N - 1, 3)
    distances = np.linalg.norm(steps, axis=1)
    if len(files) > 1:
        k = int(np.argmin(distances))
        if distances[k] < POSITION_TOLERANCE:
            raise PrepareError(folder, f"{files[k].name} and {files[k + 1].name} lie at the same position "
                                       f"{positions[k].tolist()}: two series in one folder, or a duplicate slice")
        median = float(np.median(distances))
        k = int(np.argmax(distances))
        if distances[k] > MAX_GAP * median:
            raise PrepareError(folder, f"slices missing between {files[k].name} and {files[k + 1].name}: a step of "
                                       f"{distances[k]:.4g} mm where the median step is {median:.4g} mm")
        step = (positions[-1] - positions[0]) / (len(files) - 1)
        off_line = positions - (positions[0] + np.arange(len(files))[:, None] * step)
        worst = int(np.argmax(np.linalg.norm(off_line, axis=1)))
        if np.linalg.norm(off_line[worst]) > max(POSITION_TOLERANCE, 0.1 * median):
            raise PrepareError(files[worst], f"ImagePositionPatient {positions[worst].tolist()} is "
                                             f"{np.linalg.norm(off_line[worst]):.3g} mm off the even spacing of the "
                                             "series' other slices")
    else:  # one slice: its thickness is unknown, 1 mm along the normal keeps the affine invertible
        step = np.cross(orientation[:3], orientation[3:])
    lps = np.eye(4)
    lps[:3, 0] = orientation[:3] * spacing[1]  # along a row: column index, column spacing
    lps[:3, 1] = orientation[3:] * spacing[0]  # down a column: row index, row spacing
    lps[:3, 2] = step
    lps[:3, 3] = positions[0]
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # DICOM's L, P, S -> nibabel's R, A, S


def _hounsfield(ds, path: Path) -> np.ndarray:
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # compressed without a decoder, truncated pixel data, ...
        raise PrepareError(path, f"cannot decode the pixel data ({type(exc).__name__}: {exc})") from exc
    if pixels.ndim != 2:
        raise PrepareError(path, f"pixel data of shape {pixels.shape}: one 2-D grey slice per file expected")
    slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
    if slope.is_integer() and intercept.is_integer():  # CT's usual 1 and -1024: exact in integers
        return pixels.astype(np.int32) * int(slope) + int(intercept)
    return pixels * slope + intercept
