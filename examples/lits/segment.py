"""``segment``: tumor maps of new CT scans, one scan or a folder of them, each in the scan's own voxel grid.

    python -m examples.lits segment --run runs/cpu --image ct.nii.gz --liver liver.nii.gz --out tumor.nii.gz
    pseudoanomaly-lits segment --run runs/cpu -i scans/ --livers livers/ -o predictions/ --png

Each scan goes through exactly the preprocessing the run was trained with (``preprocess_volume`` with the
training data's prepare settings, then the run's slice size as ``load_prepared`` resizes), the segmenter maps
each liver slice, and ``restore_volume`` puts the maps back: the probability map has the input's shape and
affine, holds values in [0, 1], and is 0 outside the liver mask (and in slices too small to have been kept).

The output is lesions (``--output labels``, the default): a label map as LiTS labels it (uint8: 0 background, 1
liver, 2 tumor), the tumor being the lesions of :mod:`examples.lits.lesion_output`: the run's threshold calibrated
on healthy livers (``--threshold`` to set one), 3-D lesions of at least ``--min-lesion-mm3``, grown to the net's
decision boundary. ``--probabilities`` writes the probability map itself, unprocessed (the lesion flags do
not apply to it and are refused). Files are written to a temporary name and renamed, so each output is either
complete or untouched (temporaries of a killed run are removed by the next).

A folder (``-i DIR -o OUT``), as nnU-Net predicts: every ``*.nii`` / ``*.nii.gz`` in ``DIR`` is a scan, and its
liver mask is the file of the same name in ``--livers LIVERS`` or, without ``--livers``, ``<case>_liver.nii.gz``
(or ``.nii``) beside it in ``DIR`` (files named ``*_liver.nii[.gz]`` are masks, not scans). ``-i`` may also name
one scan. A scan named as nnU-Net names its inputs, ``<case>_0000.nii.gz``, is the case ``<case>``, and its mask
may be ``LIVERS/<case>.nii.gz``, as nnU-Net names its predictions. For each case ``OUT/<case>.nii[.gz]`` holds the
label map (or, with ``--probabilities``, the probability map); ``--save-probabilities`` adds
``OUT/<case>_probabilities.nii.gz`` beside a label map, and ``--png`` a picture ``OUT/<case>.png`` (axial slices
through the largest predicted tumors, CT in a liver window, liver and tumor outlined). One line per case is
printed, and ``OUT/summary.json`` lists them all (with the lesion settings used). Every
scan's liver mask is found, its grid compared with the scan's, and every output checked not to replace an input,
before anything is written.

Refused with a one-line error naming the file: NaN voxels, a CT not in Hounsfield units (e.g. scaled to [0, 1]), a
liver mask that is not a label map (a CT, or image and mask swapped), a liver too small for any slice to reach the
run's ``min_liver_pixels``, a folder without scans, a scan without its liver mask, an output that would replace an
input, a threshold outside (0, 1), a minimum lesion volume that is negative, not finite or larger than a scan's
liver, a lesion flag with ``--probabilities``.
"""

from __future__ import annotations

import argparse
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F

from pseudoanomaly.io import atomic_path
from pseudoanomaly.postprocess import lesion_volumes

from .arguments import add_inference_arguments
from .cases import check_hounsfield, check_label_map, load_volume, nifti_stem
from .dataset import resize_slices
from .lesion_output import LesionOutput, add_lesion_arguments, lesion_settings
from .preprocess import PrepareConfig, preprocess_volume, restore_volume
from .report import write_scan_figure
from .runs import INFER_BATCH, load_run, pick_device, write_json

__all__ = ["segment", "segment_folder", "find_scans", "SegmentResult", "add_arguments", "main"]

# How close the liver mask's affine must be to the image's (world units, mm).
AFFINE_TOLERANCE = 1e-3
SCANNER_CODE = 1  # NIfTI's sform/qform code of scanner coordinates, which a DICOM series' affine is in
# Probability above which a voxel counts as tumor in the printed volumes of a probability output.
REPORT_THRESHOLD = 0.5
OUTPUTS = ("labels", "probabilities")
# LiTS's labels, which the label maps of --threshold follow.
LIVER_LABEL, TUMOR_LABEL = 1, 2
NIFTI_SUFFIXES = (".nii.gz", ".nii")
# Without --livers, the liver mask of DIR/<case>.nii.gz is DIR/<case>_liver.nii.gz (or .nii).
LIVER_SUFFIX = "_liver"
# nnU-Net names its inputs <case>_<channel>.nii.gz; a CT is channel 0000, and the case is <case>.
NNUNET_CHANNEL = "_0000"
PROBABILITIES_SUFFIX = "_probabilities"
SUMMARY = "summary.json"


@dataclass(frozen=True)
class SegmentResult:
    """What was written for one scan: the map (labels, or probabilities), how many slices were segmented, the
    tumor volume (mL: of the lesions written, or above 0.5 in a probability output), the largest probability, the
    number of lesions (``None`` for a probability output), and the probability map and picture when they were
    asked for."""

    out: Path
    slices: int
    tumor_ml: float
    max_probability: float
    probabilities: Path | None = None
    png: Path | None = None
    lesions: int | None = None


@dataclass(frozen=True)
class _Prediction:
    hu: np.ndarray
    liver: np.ndarray  # bool
    affine: np.ndarray
    probability: np.ndarray  # float32, the scan's shape
    slices: int


class _Predictor:
    """A trained run, loaded once, that maps scans to tumor probabilities in their own grid."""

    def __init__(self, run: str | os.PathLike, device: str, batch_size: int, precision: str = "fp32") -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.segmenter, meta = load_run(run, pick_device(device), batch_size, precision)
        self.meta = meta
        if not meta.get("prepare_config"):
            raise ValueError(f"{run}: the run does not record its preprocessing; retrain it with this version")
        self.config = PrepareConfig(**meta["prepare_config"])
        self.size = int(meta["size"])

    def __call__(self, image: str | os.PathLike, liver: str | os.PathLike) -> _Prediction:
        hu, affine = load_volume(image, "image")  # NIfTI or a DICOM series; NaN voxels are refused there
        check_hounsfield(hu, image)
        mask, mask_affine = load_volume(liver, "liver mask")
        check_label_map(mask, liver, "liver mask")  # a CT passed as the mask, or image and mask swapped
        if mask.shape != hu.shape:
            raise ValueError(f"{liver}: liver mask shape {mask.shape} differs from the image's {hu.shape} ({image})")
        if not np.allclose(mask_affine, affine, rtol=0, atol=AFFINE_TOLERANCE):
            raise ValueError(f"{liver}: liver mask affine differs from the image's ({image})")
        mask = mask != 0
        if not mask.any():
            raise ValueError(f"{liver}: the liver mask is empty")
        config = self.config
        prepared = preprocess_volume(hu, mask, affine, config)
        if not len(prepared.images):  # an all-zero map would read as "no tumor" for a liver never looked at
            axial = int(np.flatnonzero(nib.orientations.io_orientation(affine)[:, 0] == 2)[0])  # source axis -> S
            largest = int(mask.sum(axis=tuple(a for a in range(3) if a != axial)).max())
            raise ValueError(f"{liver}: no axial slice has enough liver for the run's preprocessing "
                             f"(min_liver_pixels={config.min_liver_pixels}, min_liver_fraction="
                             f"{config.min_liver_fraction}; the largest liver slice holds {largest} pixels); "
                             "nothing to segment")
        images = torch.from_numpy(prepared.images)[:, None]  # (N, 1, S, S)
        foreground = torch.from_numpy(prepared.liver)[:, None]
        prepared_size = prepared.geometry.size
        if self.size != prepared_size:
            images, small, _ = resize_slices(images, foreground, self.size)
            maps = self.segmenter(images, small)
            maps = F.interpolate(maps, size=(prepared_size, prepared_size), mode="bilinear", align_corners=False)
        else:
            maps = self.segmenter(images, foreground)
        maps = (maps.clamp(0, 1) * foreground)[:, 0].numpy()  # (N, S, S)
        volume = restore_volume(maps, prepared.geometry, hu.shape, affine, interpolation="linear")
        # Interpolation back to the source grid blurs the map past the liver's rim: cut it at the true mask.
        volume = np.where(mask, np.clip(volume, 0, 1), 0).astype(np.float32)
        return _Prediction(hu, mask, affine, volume, len(prepared.images))


def _voxel_ml(affine: np.ndarray) -> float:
    return float(np.prod(nib.affines.voxel_sizes(affine))) / 1000


def _spacing(affine: np.ndarray) -> tuple[float, ...]:
    return tuple(float(v) for v in nib.affines.voxel_sizes(affine))


def _lesion_output(output: str, meta: dict[str, Any], threshold: float | str | None,
                   min_lesion_mm3: float | None, grow_threshold: float | str | None,
                   slice_smoothing_mm: float | None = None) -> LesionOutput | None:
    """The lesion settings of a label output; ``None`` for probabilities (a lesion flag then is refused)."""
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    if output == "probabilities":
        given = [name for name, value, default in (
            ("threshold", threshold, "auto"), ("min_lesion_mm3", min_lesion_mm3, None),
            ("grow_threshold", grow_threshold, None), ("slice_smoothing_mm", slice_smoothing_mm, None),
        ) if value != default]
        if given:
            raise ValueError(f"{given[0]} applies to lesion (label) output; --probabilities writes the map "
                             "unprocessed")
        return None
    return LesionOutput.resolve(meta, threshold, min_lesion_mm3, grow_threshold, slice_smoothing_mm)


def _axial_axis(affine: np.ndarray) -> int:
    """The array axis along the patient's S-I axis: the scan's slice axis."""
    return int(np.flatnonzero(nib.orientations.io_orientation(affine)[:, 0] == 2)[0])


def _labels(prediction: _Prediction, lesions: np.ndarray) -> np.ndarray:
    return np.where(lesions, TUMOR_LABEL, np.where(prediction.liver, LIVER_LABEL, 0)).astype(np.uint8)


def _count(lesions: np.ndarray, affine: np.ndarray, connectivity: int) -> int:
    return len(lesion_volumes(lesions, _spacing(affine), connectivity))


def segment(
    run: str | os.PathLike,
    image: str | os.PathLike,
    liver: str | os.PathLike,
    out: str | os.PathLike,
    *,
    device: str = "auto",
    batch_size: int = INFER_BATCH,
    precision: str = "fp32",
    output: str = "labels",
    threshold: float | str = "auto",
    min_lesion_mm3: float | None = None,
    grow_threshold: float | str | None = None,
    slice_smoothing_mm: float | None = None,
) -> SegmentResult:
    """Write the tumor lesions (or probability map) of ``image`` (a CT in HU) inside ``liver`` to ``out`` (NIfTI).

    Args:
        run: a run folder written by ``train``.
        image: the CT volume in Hounsfield units: ``.nii`` / ``.nii.gz``, or a DICOM series folder (the ``dicom``
            extra).
        liver: its liver mask (nonzero = liver), same grid as ``image``: NIfTI, or a DICOM mask series folder.
        out: the ``.nii`` / ``.nii.gz`` file to write: a uint8 LiTS label map, or float32 probabilities.
        device: where inference runs.
        batch_size: slices per forward pass.
        precision: ``"fp32"``, or ``"bf16"`` (bfloat16 autocast, channels-last nets; see ``--precision``).
        output: ``"labels"`` (lesions) or ``"probabilities"`` (the map, unprocessed).
        threshold, min_lesion_mm3, grow_threshold, slice_smoothing_mm: the lesion settings of
            :meth:`~examples.lits.lesion_output.LesionOutput.resolve` (labels only).

    Returns:
        A :class:`SegmentResult`.
    """
    out = Path(out)
    if not out.name.endswith(NIFTI_SUFFIXES):
        raise ValueError(f"{out}: the output must end in .nii or .nii.gz")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"{out.parent}: no such folder for --out")
    predictor = _Predictor(run, device, batch_size, precision)
    lesions = _lesion_output(output, predictor.meta, threshold, min_lesion_mm3, grow_threshold, slice_smoothing_mm)
    prediction = predictor(image, liver)
    voxel_ml = _voxel_ml(prediction.affine)
    if lesions is None:
        _save_nifti(prediction.probability, prediction.affine, out, reference=Path(image))
        tumor, count = prediction.probability > REPORT_THRESHOLD, None
    else:
        lesions.check_liver(float(prediction.liver.sum()) * voxel_ml, str(liver))
        tumor = lesions.apply(prediction.probability, _spacing(prediction.affine), _axial_axis(prediction.affine))
        count = _count(tumor, prediction.affine, lesions.connectivity)
        _save_nifti(_labels(prediction, tumor), prediction.affine, out, reference=Path(image))
    return SegmentResult(out, prediction.slices, float(tumor.sum()) * voxel_ml, float(prediction.probability.max()),
                         lesions=count)


def _case_id(path: Path) -> str:
    """The case a scan is: its name without ``.nii[.gz]`` and without nnU-Net's channel suffix ``_0000``."""
    name = nifti_stem(path)
    return name[: -len(NNUNET_CHANNEL)] if name.endswith(NNUNET_CHANNEL) and name != NNUNET_CHANNEL else name


def find_scans(inputs: str | os.PathLike, livers: str | os.PathLike | None = None) -> list[tuple[Path, Path]]:
    """``(scan, liver mask)`` of every scan in ``inputs`` (a folder, or one scan), sorted by file name.

    The liver mask of ``case.nii.gz`` is ``livers/case.nii.gz`` (``.nii`` or ``.nii.gz``) or, without
    ``livers``, ``case_liver.nii.gz`` beside the scan; files named ``*_liver.nii[.gz]`` are then masks, not scans.
    A scan named as nnU-Net names its inputs, ``case_0000.nii.gz``, is the case ``case``: its mask may also be
    ``livers/case.nii.gz`` (as nnU-Net names its predictions), or ``case_liver.nii.gz`` beside it.

    Raises:
        FileNotFoundError: ``inputs`` or ``livers`` does not exist.
        ValueError: no scan in the folder, or a scan without its liver mask (the message names both).
    """
    inputs = Path(inputs)
    if inputs.is_file():
        if nifti_stem(inputs) is None:
            raise ValueError(f"{inputs}: not a .nii or .nii.gz scan (-i)")
        scans = [inputs]
    elif inputs.is_dir():
        scans = sorted(p for p in inputs.iterdir() if p.is_file() and nifti_stem(p) is not None
                       and (livers is not None or not nifti_stem(p).endswith(LIVER_SUFFIX)))
        if not scans:
            raise ValueError(f"{inputs}: no .nii or .nii.gz scans in the folder (-i)")
    else:
        raise FileNotFoundError(f"{inputs}: no such file or folder (-i)")
    if livers is not None and not Path(livers).is_dir():
        raise FileNotFoundError(f"{livers}: no such folder (--livers)")
    pairs, missing = [], []
    for scan in scans:
        if livers is not None:
            names = dict.fromkeys([nifti_stem(scan), _case_id(scan)])  # the scan's own name first
            candidates = [Path(livers) / f"{name}{suffix}" for name in names for suffix in NIFTI_SUFFIXES]
        else:
            candidates = [scan.parent / f"{_case_id(scan)}{LIVER_SUFFIX}{suffix}" for suffix in NIFTI_SUFFIXES]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            missing.append((scan, candidates[0]))
        else:
            pairs.append((scan, found))
    if missing:
        scan, expected = missing[0]
        more = f" (and {len(missing) - 1} more scans without one)" if len(missing) > 1 else ""
        raise ValueError(f"{scan}: no liver mask, looked for {expected} (or .nii){more}")
    cases = [_case_id(scan) for scan, _ in pairs]
    twice = sorted({c for c in cases if cases.count(c) > 1})
    if twice:
        files = [scan.name for scan, _ in pairs if _case_id(scan) == twice[0]]
        raise ValueError(f"{inputs}: case {twice[0]!r} is there more than once ({', '.join(files)}); keep one")
    return pairs


def segment_folder(
    run: str | os.PathLike,
    inputs: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    livers: str | os.PathLike | None = None,
    threshold: float | str | None = "auto",
    save_probabilities: bool = False,
    png: bool = False,
    device: str = "auto",
    batch_size: int = INFER_BATCH,
    precision: str = "fp32",
    print_fn: Callable[[str], Any] = print,
    output: str = "labels",
    min_lesion_mm3: float | None = None,
    grow_threshold: float | str | None = None,
    slice_smoothing_mm: float | None = None,
) -> list[SegmentResult]:
    """Segment every scan of ``inputs`` (see :func:`find_scans`) into ``out_dir``, as the module describes.

    Args:
        run: a run folder written by ``train``.
        inputs: a folder of CT scans in HU, or one scan.
        out_dir: the folder to write (created if needed).
        livers: the folder of the liver masks, same file names as the scans (default: ``<case>_liver`` beside
            each scan).
        threshold: ``"auto"`` (the run's calibrated threshold) or a value in (0, 1): the lesions' threshold.
            ``None`` is the earlier spelling of ``output="probabilities"`` (deprecated).
        save_probabilities: with label output, also write ``<case>_probabilities.nii.gz``.
        png: also write ``<case>.png``, axial slices through the largest predicted tumors.
        device: where inference runs.
        batch_size: slices per forward pass.
        precision: ``"fp32"``, or ``"bf16"`` (bfloat16 autocast, channels-last nets; see ``--precision``).
        print_fn: receives one line per case.
        output: ``"labels"`` (lesions, LiTS labels) or ``"probabilities"`` (the map, unprocessed).
        min_lesion_mm3, grow_threshold, slice_smoothing_mm: the lesion settings of
            :meth:`~examples.lits.lesion_output.LesionOutput.resolve` (labels only).

    Returns:
        One :class:`SegmentResult` per scan; ``out_dir/summary.json`` lists them.
    """
    if threshold is None:
        warnings.warn("segment_folder(threshold=None) is now output='probabilities'; the default output is lesions "
                      "at the run's calibrated threshold", DeprecationWarning, stacklevel=2)
        output, threshold = "probabilities", "auto"
    if output == "probabilities" and save_probabilities:
        raise ValueError("--save-probabilities adds the map beside a label map; with --probabilities the output "
                         "is the probability map already")
    out_dir = Path(out_dir)
    pairs = find_scans(inputs, livers)
    planned = {scan: _outputs(scan, out_dir, output == "labels" and save_probabilities, png) for scan, _ in pairs}
    sources = {p.resolve() for pair in pairs for p in pair}
    for scan, paths in planned.items():
        clash = next((p for p in paths if p is not None and p.resolve() in sources), None)
        if clash is not None:
            raise ValueError(f"{clash}: the output for {scan.name} would replace an input; choose another -o")
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir}: not a folder (-o)")
    for scan, liver in pairs:  # from the headers alone: a mismatch late in a long folder stops the run at once
        if _header_shape(liver) != _header_shape(scan):
            raise ValueError(f"{liver}: liver mask shape {_header_shape(liver)} differs from the image's "
                             f"{_header_shape(scan)} ({scan})")
    predictor = _Predictor(run, device, batch_size, precision)
    lesions = _lesion_output(output, predictor.meta, threshold, min_lesion_mm3, grow_threshold, slice_smoothing_mm)
    if lesions is not None and lesions.min_volume_mm3 > 0:  # every liver checked before anything is written
        for _, liver in pairs:
            lesions.check_liver(_liver_ml(liver), str(liver))
    out_dir.mkdir(parents=True, exist_ok=True)
    results, rows = [], []
    for scan, liver in pairs:
        prediction = predictor(scan, liver)
        out, probabilities, picture = planned[scan]
        if lesions is None:
            tumor, count, what = prediction.probability > REPORT_THRESHOLD, None, f"p > {REPORT_THRESHOLD:g}"
            _save_nifti(prediction.probability, prediction.affine, out, reference=scan)
        else:
            tumor = lesions.apply(prediction.probability, _spacing(prediction.affine), _axial_axis(prediction.affine))
            count = _count(tumor, prediction.affine, lesions.connectivity)
            what = f"{count} lesion{'s' if count != 1 else ''}"
            _save_nifti(_labels(prediction, tumor), prediction.affine, out, reference=scan)
            if probabilities is not None:
                _save_nifti(prediction.probability, prediction.affine, probabilities, reference=scan)
        if picture is not None:
            title = f"{scan.name}: tumor at p > {REPORT_THRESHOLD:g}" if lesions is None else \
                f"{scan.name}: {what}, p > {lesions.threshold:.2f}"
            _save_figure(picture, prediction, tumor, title=title)
        voxel_ml = _voxel_ml(prediction.affine)
        result = SegmentResult(out, prediction.slices, float(tumor.sum()) * voxel_ml,
                               float(prediction.probability.max()), probabilities, picture, count)
        results.append(result)
        rows.append({"case": _case_id(scan), "image": str(scan), "liver": str(liver), "out": str(out),
                     "probabilities": None if probabilities is None else str(probabilities),
                     "png": None if picture is None else str(picture), "slices": result.slices,
                     "liver_ml": float(prediction.liver.sum()) * voxel_ml, "tumor_ml": result.tumor_ml,
                     "lesions": count, "max_probability": result.max_probability,
                     "shape": list(prediction.hu.shape)})
        print_fn(f"{_case_id(scan)}: {result.slices} liver slices, {what}: {result.tumor_ml:.1f} mL "
                 f"(max probability {result.max_probability:.2f}) -> {out}")
    write_json(out_dir / SUMMARY, {"run": str(run), "inputs": str(inputs),
                                   "livers": None if livers is None else str(livers),
                                   "threshold": None if lesions is None else lesions.threshold,
                                   "tumor_threshold": REPORT_THRESHOLD if lesions is None else lesions.threshold,
                                   "output": output,
                                   "lesion_output": None if lesions is None else lesions.to_dict(),
                                   "labels": {"background": 0, "liver": LIVER_LABEL, "tumor": TUMOR_LABEL},
                                   "cases": rows})
    return results


def _liver_ml(liver: Path) -> float:
    """The liver volume (mL) of a mask file or DICOM mask series."""
    mask, affine = load_volume(liver, "liver mask")
    return float(np.count_nonzero(mask)) * _voxel_ml(affine)


def _header_shape(path: Path) -> tuple[int, ...]:
    """The volume's shape as :func:`~examples.lits.cases.load_nifti` reads it (trailing axes of length 1 dropped),
    from the header."""
    try:
        shape = tuple(nib.load(path).shape)
    except Exception as exc:  # nibabel raises several types for a file that is not NIfTI
        raise ValueError(f"{path}: not a readable NIfTI file ({exc})") from None
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def _outputs(scan: Path, out_dir: Path, probabilities: bool, png: bool) -> tuple[Path, Path | None, Path | None]:
    """``(map or label map, probability map, picture)`` of ``scan`` in ``out_dir``, named after its case."""
    case = _case_id(scan)
    suffix = scan.name[len(nifti_stem(scan)):]  # the scan's own .nii or .nii.gz
    return (out_dir / f"{case}{suffix}", out_dir / f"{case}{PROBABILITIES_SUFFIX}.nii.gz" if probabilities else None,
            out_dir / f"{case}.png" if png else None)


def _save_figure(path: Path, prediction: _Prediction, tumor: np.ndarray, title: str) -> None:
    """The picture of one case, the volumes turned to RAS (display only: the NIfTI outputs keep the scan's grid)."""
    orientation = nib.orientations.io_orientation(prediction.affine)

    def ras(volume: np.ndarray) -> np.ndarray:
        return nib.orientations.apply_orientation(volume, orientation)

    spacing = np.empty(3)
    spacing[orientation[:, 0].astype(int)] = nib.affines.voxel_sizes(prediction.affine)
    write_scan_figure(path, ras(prediction.hu), ras(prediction.liver), ras(tumor), spacing, title=title)


def _save_nifti(volume: np.ndarray, affine: np.ndarray, out: Path, reference: Path) -> None:
    """Write ``volume`` (float32 or a uint8 label map) with the reference's affine and spatial header codes,
    atomically; a DICOM series as reference: scanner coordinates."""
    if reference.is_dir():
        image = nib.Nifti1Image(volume, affine)
        image.set_sform(affine, code=SCANNER_CODE)
        image.set_qform(affine, code=SCANNER_CODE)
        image.header.set_xyzt_units("mm")
    else:
        header = nib.load(reference).header.copy()
        header.set_data_dtype(volume.dtype)
        image = nib.Nifti1Image(volume, affine, header=header)
    image.header.set_slope_inter(1.0, 0.0)  # stored as is, not rescaled
    suffix = ".nii.gz" if out.name.endswith(".gz") else ".nii"
    with atomic_path(out, suffix=suffix) as tmp:
        nib.save(image, tmp)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the ``segment`` command: one scan (``--image --liver --out``) or a folder (``-i -o``)."""
    parser.add_argument("--run", type=Path, required=True, help="run folder written by train")
    one = parser.add_argument_group("one scan")
    one.add_argument("--image", type=Path, help="CT volume in HU (.nii or .nii.gz, or a DICOM series folder)")
    one.add_argument("--liver", type=Path, help="its liver mask (.nii or .nii.gz, or a DICOM mask series folder)")
    one.add_argument("--out", type=Path, help="label map (or, with --probabilities, probability map) to write "
                                              "(.nii or .nii.gz)")
    many = parser.add_argument_group("a folder of scans, as nnU-Net predicts")
    many.add_argument("-i", "--input", type=Path, metavar="DIR_OR_FILE",
                      help="folder of CT scans in HU (*.nii, *.nii.gz), or one scan")
    many.add_argument("-o", "--output", type=Path, metavar="DIR",
                      help="folder to write: <case>.nii.gz (or .nii, as the scan) per scan, summary.json")
    many.add_argument("--livers", type=Path, metavar="DIR",
                      help="folder of the liver masks, same file names as the scans (default: <case>_liver.nii.gz "
                           "beside each scan)")
    many.add_argument("--save-probabilities", action="store_true",
                      help="also write <case>_probabilities.nii.gz beside each label map")
    many.add_argument("--png", action="store_true",
                      help="also write <case>.png: axial slices through the largest predicted tumors")
    parser.add_argument("--probabilities", action="store_true",
                        help="write the probability map (float32, unprocessed) instead of lesions")
    add_lesion_arguments(parser, "lesion threshold in (0, 1) (default: auto, the run's threshold calibrated on "
                                 "healthy livers; 0.5 for a run without one)")
    add_inference_arguments(parser, INFER_BATCH)


def main(args: argparse.Namespace) -> int:
    """Run ``segment`` from parsed arguments."""
    one = {"--image": args.image, "--liver": args.liver, "--out": args.out}
    many = {"-i": args.input, "-o": args.output, "--livers": args.livers,
            "--save-probabilities": args.save_probabilities or None, "--png": args.png or None}
    output = "probabilities" if args.probabilities else "labels"
    lesions = lesion_settings(args)
    given_one = [flag for flag, value in one.items() if value is not None]
    given_many = [flag for flag, value in many.items() if value is not None]
    if given_one and given_many:
        raise ValueError(f"{given_one[0]} (one scan) and {given_many[0]} (a folder) do not go together")
    if given_many:
        if args.input is None or args.output is None:
            raise ValueError("a folder needs both -i DIR_OR_FILE and -o DIR")
        results = segment_folder(args.run, args.input, args.output, livers=args.livers,
                                 save_probabilities=args.save_probabilities, png=args.png, device=args.device,
                                 batch_size=args.batch_size, precision=args.precision, output=output,
                                 **lesions)
        print(f"segmented {len(results)} scans; wrote {Path(args.output) / SUMMARY}")
        return 0
    if len(given_one) < 3:
        missing = [flag for flag in one if flag not in given_one]
        raise ValueError(f"one scan needs --image, --liver and --out (missing {' '.join(missing)}); "
                         "a folder: -i DIR -o DIR")
    result = segment(args.run, args.image, args.liver, args.out, device=args.device, batch_size=args.batch_size,
                     precision=args.precision, output=output, **lesions)
    found = (f"tumor at p > {REPORT_THRESHOLD}" if result.lesions is None else
             f"{result.lesions} lesion{'s' if result.lesions != 1 else ''}")
    print(f"segmented {result.slices} liver slices; {found}: {result.tumor_ml:.1f} mL "
          f"(max probability {result.max_probability:.2f}); wrote {result.out}")
    return 0
