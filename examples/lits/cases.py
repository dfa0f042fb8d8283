"""The input data: CT volumes and their label maps, found by layout and read with every check.

Every command that reads a user's scans (``prepare``, ``segment``, ``lesions``) reads them here, so a file that is
missing, unreadable, not 3-D, holds NaNs, is not in Hounsfield units or is not a label map fails the same way
everywhere: a :class:`PrepareError` naming the file.

Layouts (:func:`find_cases`), every label map decoded to LiTS's values (liver 1, tumour 2) unless noted:

- ``btcv``: ``ROOT/img/img*.nii.gz`` + ``ROOT/label/label*.nii.gz`` (liver = 6);
- ``lits``: ``ROOT/volume-N.nii[.gz]`` + ``ROOT/segmentation-N.nii[.gz]`` (subfolders searched);
- ``msd``: the Medical Segmentation Decathlon's Task03_Liver, ``ROOT/imagesTr/liver_N.nii.gz`` +
  ``ROOT/labelsTr/liver_N.nii.gz`` (values 0, 1, 2 only; ``imagesTs`` has no labels and macOS ``._*`` files are
  not scans: both are left out);
- ``ircadb``: 3D-IRCADb-01, ``ROOT/3Dircadb1.N/PATIENT_DICOM/`` (a DICOM series) +
  ``ROOT/3Dircadb1.N/MASKS_DICOM/liver/`` (a DICOM mask series, 0 / 255) and the union of
  ``MASKS_DICOM/livertumor*/`` as tumour (patients without such a folder are tumour-free; cysts, ``liverkyst*``,
  count as liver);
- ``chaos``: CHAOS CT, ``ROOT/**/CT/N/DICOM_anon/*.dcm`` + ``ROOT/**/CT/N/Ground/*.png`` (liver 255, no tumours:
  healthy livers; ``Test_Sets`` has no ground truth and is left out). As the organisers' evaluation code does,
  PNG ``i`` (by name) is the mask of DICOM file ``i`` (by name), pixel for pixel;
- ``pair``: one image and its mask (each a NIfTI file or a DICOM series folder).

DICOM series are read by :mod:`examples.lits.dicom` into the array and RAS affine a NIfTI conversion gives, with
pydicom (the ``dicom`` extra), imported only when a DICOM layout is read.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np

from .preprocess import count_non_finite

__all__ = [
    "LAYOUTS", "DEFAULT_LABELS", "PrepareError", "CaseFiles", "find_cases", "load_nifti", "load_labelled_case",
    "check_hounsfield", "check_label_map", "decode_labels", "file_checksum", "load_volume", "case_checksum",
    "source_files", "NIFTI_NAME", "nifti_stem", "natural_key",
]

LAYOUTS = ("btcv", "lits", "msd", "ircadb", "chaos", "pair")
# (liver labels, tumor labels) per layout: BTCV's liver is organ 6; LiTS and MSD mark liver 1 and tumor 2; the
# IRCADb and CHAOS masks are decoded into LiTS's values here, CHAOS without tumours.
DEFAULT_LABELS = {"btcv": ((6,), ()), "lits": ((1,), (2,)), "msd": ((1,), (2,)), "ircadb": ((1,), (2,)),
                  "chaos": ((1,), ()), "pair": ((1,), (2,))}
# Where each layout's files are, for messages.
LAYOUT_HINTS = {
    "btcv": "ROOT/img/img*.nii.gz, ROOT/label/label*.nii.gz",
    "lits": "ROOT/volume-N.nii, ROOT/segmentation-N.nii",
    "msd": "ROOT/imagesTr/liver_N.nii.gz, ROOT/labelsTr/liver_N.nii.gz",
    "ircadb": "ROOT/3Dircadb1.N/PATIENT_DICOM/, ROOT/3Dircadb1.N/MASKS_DICOM/liver/",
    "chaos": "ROOT/Train_Sets/CT/N/DICOM_anon/*.dcm, ROOT/Train_Sets/CT/N/Ground/*.png",
}
# MSD Task03_Liver's label values (dataset.json: 0 background, 1 liver, 2 cancer).
MSD_LABEL_VALUES = (0, 1, 2)
# Mask values of 3D-IRCADb's DICOM masks and CHAOS's PNGs: 0 outside, 255 inside (1 accepted as well).
MASK_VALUES = (0, 1, 255)
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
    """One volume to prepare: its id, its image and its label.

    Attributes:
        case_id: the image's name without ``.nii[.gz]`` (NIfTI), the patient folder's name (``3Dircadb1.N``) or
            ``chaos-ct-N``.
        image: a NIfTI file or a DICOM series folder.
        label: a NIfTI file; IRCADb's ``MASKS_DICOM`` folder; CHAOS's ``Ground`` folder.
        reader: how the label is read: ``"nifti"`` (a label map file, or a DICOM mask series folder),
            ``"ircadb"`` or ``"chaos"`` (see the module docstring).
        label_values: the only values the label map may hold (``None``: any label map).
    """

    case_id: str
    image: Path
    label: Path
    reader: str = "nifti"
    label_values: tuple[int, ...] | None = None


def load_nifti(path: str | os.PathLike, what: str = "image") -> tuple[np.ndarray, np.ndarray]:
    """Read a 3-D NIfTI volume; every failure is a :class:`PrepareError` naming the file.

    Trailing axes of length 1 (``(X, Y, Z, 1)``) are dropped; anything else that is not 3-D is an error.

    Args:
        path: ``.nii`` or ``.nii.gz`` file.
        what: what the file is, for messages (``"image"``, ``"label"``).

    Returns:
        ``(array, affine)``: the voxel values (scaled by the header's slope/intercept) and the (4, 4) affine.
        Integers stored with an integer slope and intercept stay integers (int16 or int32, whichever holds
        them) instead of nibabel's float64: the same values in a quarter to half the memory.
    """
    path = Path(path)
    if not path.is_file():
        raise PrepareError(path, f"{what} file not found")
    try:
        image = nib.load(path)
        data = _exact_integers(image.dataobj)
        if data is None:
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


def _exact_integers(proxy) -> np.ndarray | None:
    """The scaled voxels of an integer NIfTI with integer slope and intercept, as the smallest of int16 / int32
    that holds them; ``None`` for any other file (read as nibabel reads it).

    nibabel applies a slope or intercept (``scl_inter = -1024`` is common in converted CT) in float64: 8 bytes a
    voxel, 4x an int16 file (1.2 GiB for 512 x 512 x 600). The same values as integers take 2-4 bytes, and the
    steps that follow (HU checks, windowing in float32, the median liver HU) give the same results on them.
    """
    if not nib.is_proxy(proxy) or not hasattr(proxy, "get_unscaled"):
        return None
    slope, inter = float(proxy.slope), float(proxy.inter)
    if (slope, inter) == (1.0, 0.0) or not (slope.is_integer() and inter.is_integer()):
        return None  # unscaled: nibabel returns the stored integers already (memory-mapped when it can)
    raw = np.asanyarray(proxy.get_unscaled())
    if not np.issubdtype(raw.dtype, np.integer) or raw.size == 0:
        return None
    low, high = int(raw.min()), int(raw.max())
    # every value the in-place steps pass through: the stored ones, times the slope, plus the intercept
    values = (low, high, low * int(slope), high * int(slope), low * int(slope) + int(inter),
              high * int(slope) + int(inter))
    for dtype in (np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= min(values) and max(values) <= info.max:
            data = raw.astype(dtype)  # one copy; scaled in place
            if slope != 1:
                data *= dtype(slope)
            data += dtype(inter)
            return data
    return None


def load_volume(path: str | os.PathLike, what: str = "image") -> tuple[np.ndarray, np.ndarray]:
    """Read a NIfTI file or a DICOM series folder: ``(array, affine)`` as :func:`load_nifti` gives.

    Args:
        path: ``.nii`` / ``.nii.gz`` file, or a folder holding one DICOM series (one file per slice).
        what: what it is, for messages.
    """
    path = Path(path)
    if not path.is_dir():
        return load_nifti(path, what)
    from .dicom import read_series  # pydicom only when a series is read

    data, affine, _ = read_series(path, what)
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


def source_files(case: CaseFiles, what: str) -> list[Path]:
    """The files read for a case's ``"image"`` or ``"label"``: the file itself, or the DICOM / PNG slices."""
    path = case.image if what == "image" else case.label
    if what == "label" and case.reader == "ircadb":
        return [p for folder in _ircadb_mask_folders(case.label) for p in _dicom_files(folder)]
    if what == "label" and case.reader == "chaos":
        return _png_files(case.label)
    return _dicom_files(path) if path.is_dir() else [path]


def case_checksum(case: CaseFiles, what: str) -> str:
    """The sha256 of a case's ``"image"`` or ``"label"``: :func:`file_checksum` of a file; of a folder, the sha256
    of each file read, with its name relative to the folder.

    Raises:
        PrepareError: the file or folder does not exist.
    """
    path = case.image if what == "image" else case.label
    label = what if what == "image" else f"label (for {case.image.name})"
    if not path.is_dir():
        return file_checksum(path, label)
    h = hashlib.sha256()
    for file in source_files(case, what):
        h.update(f"{file.relative_to(path).as_posix()}\0{file_checksum(file)}\n".encode())
    return h.hexdigest()


# ------------------------------------------------------------------------------------------- discovery


# The end of a NIfTI file's name.
NIFTI_NAME = re.compile(r"\.nii(\.gz)?$")


def nifti_stem(path: str | os.PathLike) -> str | None:
    """A NIfTI file's name without ``.nii`` / ``.nii.gz``; ``None`` for any other name (or the bare suffix)."""
    name = Path(path).name
    match = NIFTI_NAME.search(name)
    return name[: match.start()] if match and match.start() > 0 else None


def natural_key(name: str) -> list[tuple[int, int, str]]:
    """Sort key of a name with its numbers compared as numbers (``case-2`` before ``case-10``)."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name)]


def _case_id(path: Path) -> str:
    return NIFTI_NAME.sub("", path.name)


def _natural(path: Path) -> list[tuple[int, int, str]]:
    return natural_key(path.name)


def _nifti_files(folder: Path, prefix: str, recursive: bool = False) -> list[Path]:
    pattern = f"{prefix}*.nii*"
    files = folder.rglob(pattern) if recursive else folder.glob(pattern)
    # names starting with a dot are macOS resource forks (``._liver_0.nii.gz``) and other hidden files
    return sorted((p for p in files if NIFTI_NAME.search(p.name) and not p.name.startswith(".")),
                  key=_natural)


def _dicom_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    from .dicom import dicom_files

    return dicom_files(folder)


def _png_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.glob("*.png") if not p.name.startswith(".")), key=_natural)


def _ircadb_patients(root: Path) -> list[Path]:
    """``ROOT/3Dircadb1.N`` folders (any folder with a ``PATIENT_DICOM`` folder or zip), or ROOT itself."""
    def is_patient(folder: Path) -> bool:
        return (folder / "PATIENT_DICOM").is_dir() or (folder / "PATIENT_DICOM.zip").is_file()

    if is_patient(root):
        return [root]
    return sorted((p for p in root.iterdir() if p.is_dir() and is_patient(p)), key=_natural)


def _ircadb_masks(patient: Path) -> Path:
    """``MASKS_DICOM``; some copies nest it once more (``MASKS_DICOM/MASKS_DICOM/liver``)."""
    masks = patient / "MASKS_DICOM"
    return masks / "MASKS_DICOM" if (masks / "MASKS_DICOM" / "liver").is_dir() else masks


def _ircadb_mask_folders(masks: Path) -> list[Path]:
    """The liver mask folder, then the tumour ones (``livertumor01``, ``livertumor1``, ``livertumors``, ...)."""
    if not masks.is_dir():
        return []
    tumors = sorted((p for p in masks.iterdir() if p.is_dir() and p.name.lower().startswith("livertumor")),
                    key=_natural)
    return [masks / "liver", *tumors]


def _chaos_scans(root: Path) -> list[Path]:
    """CHAOS CT ``DICOM_anon`` folders under ``root``: those of a ``CT/N`` folder, not under ``Test_Sets``."""
    found = [Path(top) / "DICOM_anon" for top, dirs, _ in os.walk(root, followlinks=True) if "DICOM_anon" in dirs]
    found = [p for p in found if p.parent.parent.name.lower() == "ct"
             and not any(part.lower().startswith("test_set") for part in p.relative_to(root).parts)]
    return sorted(found, key=lambda p: _natural(p.parent))


def _layouts_in(root: Path) -> dict[str, Path]:
    """Which layouts' files ``root`` holds, each with an example path (to refuse a folder that mixes them)."""
    found: dict[str, Path] = {}
    markers = {"btcv": root / "img", "msd": root / "imagesTr"}
    for layout, folder in markers.items():
        if folder.is_dir():
            found[layout] = folder
    lits = _nifti_files(root, "volume-", recursive=True)
    if lits:
        found["lits"] = lits[0]
    patients = _ircadb_patients(root)
    if patients:
        found["ircadb"] = patients[0]
    chaos = _chaos_scans(root)
    if chaos:
        found["chaos"] = chaos[0]
    return found


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
        layout: one of :data:`LAYOUTS` (module docstring): ``"btcv"``, ``"lits"``, ``"msd"``, ``"ircadb"`` and
            ``"chaos"`` read a folder, ``"pair"`` one ``image`` and its ``mask``.
        root: data set folder (all but pair).
        image, mask: the two files (pair); each a NIfTI file or a DICOM series folder.

    Returns:
        The cases, in natural order of their file names.

    Raises:
        PrepareError: naming the folder that is missing, holds no scan of the layout, or holds scans of another
            layout too.
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
    if not root.is_dir():
        raise PrepareError(root, f"no such folder ({layout} layout: {LAYOUT_HINTS[layout]})")
    others = {k: v for k, v in _layouts_in(root).items() if k != layout}
    if others:
        found = ", ".join(f"{k} ({v})" for k, v in others.items())
        raise PrepareError(root, f"holds scans of another layout than {layout}: {found}; point --root at a folder "
                                 "of one data set")
    if layout == "btcv":
        folder = root / "img"
        if not folder.is_dir():
            raise PrepareError(folder, f"no such folder (BTCV layout: {LAYOUT_HINTS['btcv']})")
        images = _nifti_files(folder, "img")
        cases = [CaseFiles(_case_id(p), p, _partner(root / "label", "label" + _case_id(p)[3:], p)) for p in images]
    elif layout == "lits":
        images = _nifti_files(root, "volume-", recursive=True)
        cases = [CaseFiles(_case_id(p), p, _partner(p.parent, "segmentation-" + _case_id(p)[7:], p))
                 for p in images]
    elif layout == "msd":
        folder = root / "imagesTr"
        if not folder.is_dir():
            raise PrepareError(folder, f"no such folder (MSD layout: {LAYOUT_HINTS['msd']})")
        cases = [CaseFiles(_case_id(p), p, _partner(root / "labelsTr", _case_id(p), p),
                           label_values=MSD_LABEL_VALUES) for p in _nifti_files(folder, "")]
    elif layout == "ircadb":
        cases = []
        for patient in _ircadb_patients(root):
            scan = patient / "PATIENT_DICOM"
            if not scan.is_dir():
                raise PrepareError(patient / "PATIENT_DICOM.zip", "is still zipped: unzip PATIENT_DICOM.zip and "
                                                                  "MASKS_DICOM.zip in each patient folder first")
            cases.append(CaseFiles(patient.name, scan, _ircadb_masks(patient), reader="ircadb"))
    else:
        cases = [CaseFiles(f"chaos-ct-{p.parent.name}", p, p.parent / "Ground", reader="chaos")
                 for p in _chaos_scans(root)]
    if not cases:
        raise PrepareError(root, f"no {layout} volumes found ({layout} layout: {LAYOUT_HINTS[layout]})")
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
    tumor = _equal_to_any(label, tumor_labels) if tumor_labels else None
    liver = _equal_to_any(label, liver_labels)
    if tumor is not None:
        liver |= tumor  # the liver includes its tumors
    return liver, tumor


def _equal_to_any(label: np.ndarray, values: Sequence[int]) -> np.ndarray:
    """``np.isin(label, values)`` with one volume-sized temporary at a time: ``np.isin`` of a few values took
    750 MiB more than this at 512 x 512 x 600 (measured with ``benchmarks/prepare_memory.py``)."""
    out = np.zeros(label.shape, bool)
    for value in values:
        out |= label == value
    return out


def _mask(values: np.ndarray, path: Path, what: str) -> np.ndarray:
    """A 0 / 255 (or 0 / 1) mask as booleans; any other value is refused, naming it."""
    unexpected = np.setdiff1d(np.unique(values), MASK_VALUES)
    if unexpected.size:
        raise PrepareError(path, f"{what} holds values {unexpected[:6].tolist()} besides {list(MASK_VALUES)}: not a "
                                 "binary mask")
    return values > 0


def _ircadb_label(case: CaseFiles) -> tuple[np.ndarray, np.ndarray]:
    """3D-IRCADb's masks as one LiTS-coded label map: 1 liver, 2 the union of the ``livertumor*`` masks."""
    from .dicom import read_series

    folders = _ircadb_mask_folders(case.label)
    if not folders or not folders[0].is_dir():
        raise PrepareError(case.label / "liver", f"liver mask folder not found (for {case.image})")
    label, affine = None, None
    for value, folder in zip((1,) + (2,) * (len(folders) - 1), folders):
        data, folder_affine, _ = read_series(folder, "liver mask" if value == 1 else "tumour mask")
        mask = _mask(data, folder, "liver mask" if value == 1 else "tumour mask")
        if label is None:
            label, affine = np.zeros(mask.shape, np.uint8), folder_affine
        elif mask.shape != label.shape or not np.allclose(folder_affine, affine, rtol=0, atol=1e-3):
            raise PrepareError(folder, f"tumour mask of shape {mask.shape} does not lie on the liver mask's grid "
                                       f"{label.shape} ({folders[0]})")
        label[mask] = value
    return label, affine


def _chaos_label(case: CaseFiles, slice_files: list[Path], shape: tuple[int, ...], affine: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """CHAOS's ``Ground`` PNGs as a label map on the image's grid (liver 1): PNG ``i`` by name is the mask of
    DICOM file ``i`` by name (the organisers' pairing), placed where that file's slice is in the volume."""
    if not case.label.is_dir():
        raise PrepareError(case.label, f"liver mask folder not found (for {case.image})")
    pngs = _png_files(case.label)
    by_name = sorted(slice_files, key=lambda p: p.name)
    if len(pngs) != len(by_name):
        raise PrepareError(case.label, f"holds {len(pngs)} PNG masks for the {len(by_name)} DICOM slices of "
                                       f"{case.image}: one mask per slice expected")
    png_of = {dicom: png for dicom, png in zip(by_name, pngs)}
    label = np.zeros(shape, np.uint8)
    for k, dicom in enumerate(slice_files):
        png = png_of[dicom]
        pixels = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
        if pixels is None:
            raise PrepareError(png, "cannot read the liver mask as PNG")
        if pixels.ndim == 3:  # a colour PNG: its channels are equal in a grey mask; take the first
            pixels = pixels[..., 0]
        if pixels.shape != (shape[1], shape[0]):
            raise PrepareError(png, f"liver mask of {pixels.shape[0]} x {pixels.shape[1]} pixels for the "
                                    f"{shape[1]} x {shape[0]} slice {dicom}")
        label[:, :, k] = _mask(pixels, png, "liver mask").T  # rows x columns -> the volume's columns x rows
    return label, affine


def load_labelled_case(case: CaseFiles, liver_labels: Sequence[int], tumor_labels: Sequence[int],
                       affine_tolerance: float = 1e-3, check_hu: bool = True):
    """Read a case's image and label with every check: ``(hu, affine, liver, tumor)``.

    Args:
        case: the two files (or folders, see :class:`CaseFiles`).
        liver_labels, tumor_labels: label values (tumors count as liver).
        affine_tolerance: largest difference allowed between the image's and the label's affine entries.
        check_hu: refuse an image that is not in Hounsfield units (:func:`check_hounsfield`).

    Raises:
        PrepareError: naming the file at fault (unreadable, not HU, not a label map, a value the layout does not
            use, shape or affine that differ from the image's, no liver voxel).
    """
    slice_files = None
    if case.image.is_dir():
        from .dicom import read_series

        hu, affine, slice_files = read_series(case.image, "image")
    else:
        hu, affine = load_nifti(case.image, "image")
    if check_hu:
        check_hounsfield(hu, case.image)
    if case.reader == "ircadb":
        label, label_affine = _ircadb_label(case)
    elif case.reader == "chaos":
        if slice_files is None:
            raise PrepareError(case.image, "CHAOS masks go with a DICOM series folder, not a file")
        label, label_affine = _chaos_label(case, slice_files, hu.shape, affine)
    else:
        label, label_affine = load_volume(case.label, "label")
        check_label_map(label, case.label)
    if case.label_values is not None:
        unexpected = np.setdiff1d(np.unique(label), case.label_values)
        if unexpected.size:
            raise PrepareError(case.label, f"label holds values {unexpected[:6].tolist()}; this layout uses only "
                                           f"{list(case.label_values)}")
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
