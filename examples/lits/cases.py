"""The input data: CT volumes and their label maps in NIfTI, found by layout and read with every check.

Every command that reads a user's NIfTI files (``prepare``, ``segment``, ``lesions``) reads them here, so a file
that is missing, unreadable, not 3-D, holds NaNs, is not in Hounsfield units or is not a label map fails the same
way everywhere: a :class:`PrepareError` naming the file.

Layouts (:func:`find_cases`): BTCV ``ROOT/img/img*.nii.gz`` + ``ROOT/label/label*.nii.gz`` (liver = 6); LiTS
``ROOT/volume-N.nii[.gz]`` + ``ROOT/segmentation-N.nii[.gz]`` (liver = 1, tumor = 2; subfolders searched); pair:
one image and its mask.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from .preprocess import count_non_finite

__all__ = [
    "LAYOUTS", "DEFAULT_LABELS", "PrepareError", "CaseFiles", "find_cases", "load_nifti", "load_labelled_case",
    "check_hounsfield", "check_label_map", "decode_labels", "file_checksum",
]

LAYOUTS = ("btcv", "lits", "pair")
# (liver labels, tumor labels) per layout: BTCV's liver is organ 6; LiTS marks liver 1 and tumor 2.
DEFAULT_LABELS = {"btcv": ((6,), ()), "lits": ((1,), (2,)), "pair": ((1,), (2,))}
# A CT in Hounsfield units goes below this (fat is about -100 HU, air -1000): one that does not was normalised,
# windowed or saved without its rescale intercept, and windowing it as HU would give a blank or saturated image.
HU_BELOW = -100.0
# Label maps hold small non-negative integers (organ atlases use a few hundred values at most); a CT does not.
MAX_LABEL_VALUE = 1000


class PrepareError(ValueError):
    """A source file that cannot be prepared; ``path`` names it."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason

    def __reduce__(self):  # picklable across worker processes
        return type(self), (self.path, self.reason)


@dataclass(frozen=True)
class CaseFiles:
    """One volume to prepare: its id (the image's name without ``.nii[.gz]``), image and label paths."""

    case_id: str
    image: Path
    label: Path


def load_nifti(path: str | os.PathLike, what: str = "image") -> tuple[np.ndarray, np.ndarray]:
    """Read a 3-D NIfTI volume; every failure is a :class:`PrepareError` naming the file.

    Trailing axes of length 1 (``(X, Y, Z, 1)``) are dropped; anything else that is not 3-D is an error.

    Args:
        path: ``.nii`` or ``.nii.gz`` file.
        what: what the file is, for messages (``"image"``, ``"label"``).

    Returns:
        ``(array, affine)``: the voxel values (scaled by the header's slope/intercept) and the (4, 4) affine.
    """
    path = Path(path)
    if not path.is_file():
        raise PrepareError(path, f"{what} file not found")
    try:
        image = nib.load(path)
        data = np.asanyarray(image.dataobj)
        affine = np.asarray(image.affine, np.float64)
    except Exception as exc:  # nibabel raises many types for truncated or foreign files
        raise PrepareError(path, f"cannot read the {what} as NIfTI ({type(exc).__name__}: {exc})") from exc
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise PrepareError(path, f"{what} must be a 3-D volume, got shape {data.shape}")
    if not np.isfinite(affine).all():
        raise PrepareError(path, f"{what} has a non-finite affine")
    bad = count_non_finite(data)
    if bad:  # windowing would cast a NaN to 0, i.e. tumour-dark tissue, with only a numpy warning
        raise PrepareError(path, f"{what} has {bad} NaN or Inf voxel(s) of {data.size}; fix or fill them first")
    return data, affine


def check_hounsfield(hu: np.ndarray, path: str | os.PathLike, what: str = "image") -> None:
    """Raise a :class:`PrepareError` naming ``path`` unless ``hu`` looks like a CT in Hounsfield units.

    Args:
        hu: the volume's values.
        path: its file, for the message.
        what: what the file is, for the message.
    """
    low, high = float(np.min(hu)), float(np.max(hu))
    if low > HU_BELOW:
        raise PrepareError(path, f"{what} values span [{low:g}, {high:g}]: not a CT in Hounsfield units, which goes "
                                 f"below {HU_BELOW:g} (fat -100, air -1000); was it normalised, or is it a label map?")


def check_label_map(label: np.ndarray, path: str | os.PathLike, what: str = "label") -> None:
    """Raise a :class:`PrepareError` naming ``path`` unless ``label`` holds small non-negative integers.

    A CT passed as the label (or image and label swapped) is refused here instead of being read as a label map.

    Args:
        label: the volume's values.
        path: its file, for the message.
        what: what the file is, for the message.
    """
    low, high = float(np.min(label)), float(np.max(label))
    if np.issubdtype(label.dtype, np.floating):
        fractional = label[label != np.round(label)]
        if fractional.size:
            examples = np.round(fractional[:3], 4).tolist()
            raise PrepareError(path, f"{what} holds non-integer values such as {examples} (range [{low:g}, "
                                     f"{high:g}]): a label map holds small non-negative integers; is it the image?")
    if low < 0 or high > MAX_LABEL_VALUE:
        raise PrepareError(path, f"{what} values span [{low:g}, {high:g}]: a label map holds small non-negative "
                                 f"integers (0 to {MAX_LABEL_VALUE}); is it the image?")


def file_checksum(path: str | os.PathLike, what: str = "file") -> str:
    """The sha256 of a file's bytes, as hex.

    Args:
        path: the file.
        what: what the file is, for the message when it is missing.

    Returns:
        64 hex digits.

    Raises:
        PrepareError: the file does not exist.
    """
    if not Path(path).is_file():
        raise PrepareError(path, f"{what} file not found")
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------- discovery


def _case_id(path: Path) -> str:
    return re.sub(r"\.nii(\.gz)?$", "", path.name)


def _natural(path: Path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _nifti_files(folder: Path, prefix: str, recursive: bool = False) -> list[Path]:
    pattern = f"{prefix}*.nii*"
    files = folder.rglob(pattern) if recursive else folder.glob(pattern)
    return sorted((p for p in files if re.search(r"\.nii(\.gz)?$", p.name)), key=_natural)


def _partner(folder: Path, name: str, like: Path) -> Path:
    """``folder/name.nii.gz`` or ``.nii``, whichever exists; else the one with ``like``'s extension."""
    for ext in (".nii.gz", ".nii"):
        if (folder / f"{name}{ext}").is_file():
            return folder / f"{name}{ext}"
    return folder / f"{name}{'.nii.gz' if like.name.endswith('.gz') else '.nii'}"


def find_cases(layout: str, root: str | os.PathLike | None = None, image: str | os.PathLike | None = None,
               mask: str | os.PathLike | None = None) -> list[CaseFiles]:
    """The volumes of a data set and their label files (which may be missing: checked when prepared).

    Args:
        layout: ``"btcv"`` (``ROOT/img/img*.nii.gz``, ``ROOT/label/label*.nii.gz``), ``"lits"``
            (``ROOT/**/volume-N.nii[.gz]``, ``segmentation-N.nii[.gz]`` beside it) or ``"pair"`` (one
            ``image`` and its ``mask``).
        root: data set folder (btcv, lits).
        image, mask: the two files (pair).

    Returns:
        The cases, in natural order of their file names.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if layout == "pair":
        if image is None or mask is None:
            raise ValueError(f"layout 'pair' needs image and mask, got image={image!r}, mask={mask!r}")
        return [CaseFiles(_case_id(Path(image)), Path(image).resolve(), Path(mask).resolve())]
    if root is None:
        raise ValueError(f"layout {layout!r} needs root")
    root = Path(root).resolve()
    if layout == "btcv":
        folder = root / "img"
        if not folder.is_dir():
            raise PrepareError(folder, "no such folder (BTCV layout: ROOT/img/img*.nii.gz, ROOT/label/label*.nii.gz)")
        images = _nifti_files(folder, "img")
        cases = [CaseFiles(_case_id(p), p, _partner(root / "label", "label" + _case_id(p)[3:], p)) for p in images]
    else:
        if not root.is_dir():
            raise PrepareError(root, "no such folder (LiTS layout: ROOT/volume-N.nii, ROOT/segmentation-N.nii)")
        images = _nifti_files(root, "volume-", recursive=True)
        cases = [CaseFiles(_case_id(p), p, _partner(p.parent, "segmentation-" + _case_id(p)[7:], p))
                 for p in images]
    if not cases:
        raise PrepareError(root, f"no {layout} volumes found")
    seen: dict[str, Path] = {}
    for c in cases:
        if c.case_id in seen:
            raise PrepareError(c.image, f"case id {c.case_id!r} also used by {seen[c.case_id]}")
        seen[c.case_id] = c.image
    return cases


def decode_labels(label: np.ndarray, liver_labels: Sequence[int], tumor_labels: Sequence[int]
                  ) -> tuple[np.ndarray, np.ndarray | None]:
    """``(liver, tumor)`` boolean masks of a label map; the liver includes its tumors, ``tumor`` is ``None``
    without tumor labels.

    Args:
        label: the label map.
        liver_labels: values of the liver.
        tumor_labels: values of tumors (may be empty).
    """
    if not np.issubdtype(label.dtype, np.integer):
        label = np.rint(label).astype(np.int32)
    tumor = np.isin(label, tumor_labels) if tumor_labels else None
    liver = np.isin(label, tuple(liver_labels) + tuple(tumor_labels))  # the liver includes its tumors
    return liver, tumor


def load_labelled_case(case: CaseFiles, liver_labels: Sequence[int], tumor_labels: Sequence[int],
                       affine_tolerance: float = 1e-3, check_hu: bool = True):
    """Read a case's image and label with every check: ``(hu, affine, liver, tumor)``.

    Args:
        case: the two files.
        liver_labels, tumor_labels: label values (tumors count as liver).
        affine_tolerance: largest difference allowed between the image's and the label's affine entries.
        check_hu: refuse an image that is not in Hounsfield units (:func:`check_hounsfield`).

    Raises:
        PrepareError: naming the file at fault (unreadable, not HU, not a label map, shape or affine that
            differ from the image's, no liver voxel).
    """
    hu, affine = load_nifti(case.image, "image")
    if check_hu:
        check_hounsfield(hu, case.image)
    label, label_affine = load_nifti(case.label, "label")
    check_label_map(label, case.label)
    if label.shape != hu.shape:
        raise PrepareError(case.label, f"label shape {label.shape} differs from image {case.image} shape {hu.shape}")
    if not np.allclose(label_affine, affine, rtol=0, atol=affine_tolerance):
        diff = float(np.abs(label_affine - affine).max())
        raise PrepareError(case.label, f"label affine differs from image {case.image} affine (max difference "
                                       f"{diff:.4g} > tolerance {affine_tolerance})")
    liver, tumor = decode_labels(label, liver_labels, tumor_labels)
    if not liver.any():  # wrong --liver-label, most likely: say so rather than prepare an empty volume
        values = np.unique(label)
        raise PrepareError(case.label, f"no voxel has a liver label {tuple(liver_labels) + tuple(tumor_labels)}; "
                                       f"values present: {values[:12].tolist()} (see --liver-label)")
    return hu, affine, liver, tumor
