"""``segment``: the tumor probability map of a new CT scan, in the scan's own voxel grid.

    python -m examples.lits segment --run runs/cpu --image ct.nii.gz --liver liver.nii.gz --out tumor.nii.gz

The scan goes through exactly the preprocessing the run was trained with (``preprocess_volume`` with the
training data's prepare settings, then the run's slice size as ``load_prepared`` resizes), the segmenter maps
each liver slice, and ``restore_volume`` puts the maps back: the output has the input's shape and affine, holds
probabilities in [0, 1], and is 0 outside the liver mask (and in slices too small to have been kept). The file
is written to a temporary name and renamed, so ``--out`` is either complete or untouched (temporaries of a killed
run are removed by the next).

Refused with a one-line error naming the file: NaN voxels, a CT not in Hounsfield units (e.g. scaled to [0, 1]), a
liver mask that is not a label map (a CT, or image and mask swapped), a liver too small for any slice to reach the
run's ``min_liver_pixels``.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F

from pseudoanomaly.io import atomic_path

from .arguments import add_inference_arguments
from .cases import check_hounsfield, check_label_map, load_volume
from .dataset import resize_slices
from .preprocess import PrepareConfig, preprocess_volume, restore_volume
from .runs import INFER_BATCH, load_run, pick_device

__all__ = ["segment", "SegmentResult", "add_arguments", "main"]

# How close the liver mask's affine must be to the image's (world units, mm).
AFFINE_TOLERANCE = 1e-3
SCANNER_CODE = 1  # NIfTI's sform/qform code of scanner coordinates, which a DICOM series' affine is in


@dataclass(frozen=True)
class SegmentResult:
    """What :func:`segment` wrote: the file, how many slices were segmented, the tumor volume at 0.5 (mL)."""

    out: Path
    slices: int
    tumor_ml: float
    max_probability: float


def segment(
    run: str | os.PathLike,
    image: str | os.PathLike,
    liver: str | os.PathLike,
    out: str | os.PathLike,
    *,
    device: str = "auto",
    batch_size: int = INFER_BATCH,
) -> SegmentResult:
    """Write the tumor probability map of ``image`` (a CT in HU) inside ``liver`` to ``out`` (NIfTI).

    Args:
        run: a run folder written by ``train``.
        image: the CT volume in Hounsfield units: ``.nii`` / ``.nii.gz``, or a DICOM series folder (the ``dicom``
            extra).
        liver: its liver mask (nonzero = liver), same grid as ``image``: NIfTI, or a DICOM mask series folder.
        out: the ``.nii`` / ``.nii.gz`` file to write (float32 probabilities).
        device: where inference runs.
        batch_size: slices per forward pass.

    Returns:
        A :class:`SegmentResult`.
    """
    out = Path(out)
    if not out.name.endswith((".nii", ".nii.gz")):
        raise ValueError(f"{out}: the output must end in .nii or .nii.gz")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"{out.parent}: no such folder for --out")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    device = pick_device(device)
    segmenter, meta = load_run(run, device, batch_size)
    hu, affine = load_volume(image, "image")  # NaN voxels are refused there
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
    if not meta.get("prepare_config"):
        raise ValueError(f"{run}: the run does not record its preprocessing; retrain it with this version")
    config = PrepareConfig(**meta["prepare_config"])
    prepared = preprocess_volume(hu, mask, affine, config)
    if not len(prepared.images):  # an all-zero map would read as "no tumor" for a liver that was never looked at
        axial = int(np.flatnonzero(nib.orientations.io_orientation(affine)[:, 0] == 2)[0])  # source axis -> S
        largest = int(mask.sum(axis=tuple(a for a in range(3) if a != axial)).max())
        raise ValueError(f"{liver}: no axial slice has enough liver for the run's preprocessing (min_liver_pixels="
                         f"{config.min_liver_pixels}, min_liver_fraction={config.min_liver_fraction}; the largest "
                         f"liver slice holds {largest} pixels); nothing to segment")

    volume = np.zeros(hu.shape, np.float32)
    if len(prepared.images):
        images = torch.from_numpy(prepared.images)[:, None]  # (N, 1, S, S)
        foreground = torch.from_numpy(prepared.liver)[:, None]
        size, prepared_size = int(meta["size"]), prepared.geometry.size
        if size != prepared_size:
            images, small, _ = resize_slices(images, foreground, size)
            maps = segmenter(images, small)
            maps = F.interpolate(maps, size=(prepared_size, prepared_size), mode="bilinear", align_corners=False)
        else:
            maps = segmenter(images, foreground)
        maps = (maps.clamp(0, 1) * foreground)[:, 0].numpy()  # (N, S, S)
        volume = restore_volume(maps, prepared.geometry, hu.shape, affine, interpolation="linear")
        # Interpolation back to the source grid blurs the map past the liver's rim: cut it at the true mask.
        volume = np.where(mask, np.clip(volume, 0, 1), 0).astype(np.float32)

    _save_nifti(volume, affine, out, reference=Path(image))
    voxel_ml = float(np.prod(nib.affines.voxel_sizes(affine))) / 1000
    return SegmentResult(out, len(prepared.images), float((volume > 0.5).sum()) * voxel_ml, float(volume.max()))


def _save_nifti(volume: np.ndarray, affine: np.ndarray, out: Path, reference: Path) -> None:
    """Write ``volume`` with the reference's affine and spatial header codes (scanner's for a DICOM series),
    atomically."""
    if reference.is_dir():
        image = nib.Nifti1Image(volume.astype(np.float32), affine)
        image.set_sform(affine, code=SCANNER_CODE)
        image.set_qform(affine, code=SCANNER_CODE)
        image.header.set_xyzt_units("mm")
    else:
        header = nib.load(reference).header.copy()
        header.set_data_dtype(np.float32)
        image = nib.Nifti1Image(volume, affine, header=header)
    image.header.set_slope_inter(1.0, 0.0)  # probabilities are stored as is, not rescaled
    suffix = ".nii.gz" if out.name.endswith(".gz") else ".nii"
    with atomic_path(out, suffix=suffix) as tmp:
        nib.save(image, tmp)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the ``segment`` command."""
    parser.add_argument("--run", type=Path, required=True, help="run folder written by train")
    parser.add_argument("--image", type=Path, required=True,
                        help="CT volume in HU (.nii or .nii.gz, or a DICOM series folder)")
    parser.add_argument("--liver", type=Path, required=True,
                        help="its liver mask (.nii or .nii.gz, or a DICOM mask series folder)")
    parser.add_argument("--out", type=Path, required=True, help="probability map to write (.nii or .nii.gz)")
    add_inference_arguments(parser, INFER_BATCH)


def main(args: argparse.Namespace) -> int:
    """Run ``segment`` from parsed arguments."""
    result = segment(args.run, args.image, args.liver, args.out, device=args.device, batch_size=args.batch_size)
    print(f"segmented {result.slices} liver slices; tumor at p > 0.5: {result.tumor_ml:.1f} mL "
          f"(max probability {result.max_probability:.2f}); wrote {result.out}")
    return 0
