"""``lesions``: healthy CT volumes -> a LiTS-layout tumour set with exact labels, for validation only.

    python -m examples.lits lesions --layout {btcv,lits,msd,ircadb,chaos,pair} --root DIR | --image CT --mask LIVER
        --out DIR
        [--copies K] [--seed S] [--sizes small medium large] [--appearances hypodense rim ...]

Each healthy volume gets ``K`` independent draws of 1-3 liver lesions by
:class:`pseudoanomaly.lesions.LesionSynthesis` (Hu et al., "Label-Free Liver Tumor Segmentation", CVPR 2023:
shape, texture, contrast to the parenchyma, blurred edge, mass effect; sizes in mm on the scan's own voxels).
Output, in ``OUT``, exactly what ``prepare --layout lits --root OUT`` reads:

- ``volume-{i}.nii.gz``: int16 HU, the source's voxel grid and affine (unchanged away from the lesions);
- ``segmentation-{i}.nii.gz``: uint8, 0 background, 1 liver, 2 lesion (inside the liver);
- ``lesions.json``: the settings, the source files with their sha256, and per volume its source, copy, seed
  and the drawn parameters of each lesion (centre voxel, diameter, semi-axes, appearance, contrast, ...).

Volume ``i`` is copy ``i % K`` of source case ``i // K``; it depends only on ``(seed, case index, copy)``.
This is a validation instrument, independent of the training synthesis: a result on it means something only
for a model that never trained on it. Inputs are checked as ``prepare`` checks them (readable 3-D NIfTI or DICOM series,
label of the image's shape and affine, a non-empty liver) and must be healthy (no tumour label). A liver that
reaches the scan's edge (CHAOS's does, at its first slice) has its border voxels left out of the lesions'
reach: the scan's edge counts as the liver's boundary there.

Every file is written into a staging folder beside ``OUT`` and moved into place once all of them are written,
``lesions.json`` last; on an error nothing reaches ``OUT``. A non-empty ``OUT`` that holds no ``lesions.json``
of this command is refused unless ``overwrite``; when it is replaced, stale ``volume-*``/``segmentation-*``
files of an earlier run are removed, so ``prepare`` never mixes two sets.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from tqdm import tqdm

from pseudoanomaly.lesions import APPEARANCES, SIZES, LesionSynthesis

from .arguments import missing_layout_inputs
from .cases import DEFAULT_LABELS, LAYOUTS, PrepareError, case_checksum, find_cases, load_labelled_case

__all__ = ["LesionSetSummary", "make_lesion_set", "add_arguments", "main"]

FORMAT = "examples.lits.lesions"
FORMAT_VERSION = 1
MANIFEST = "lesions.json"
LITS_LIVER, LITS_LESION = 1, 2  # LiTS segmentation values
SCANNER_CODE = 1  # NIfTI's sform/qform code of scanner coordinates, which a DICOM series' affine is in
NOTE = ("A validation instrument: synthetic liver lesions (pseudoanomaly.lesions, after Hu et al., CVPR 2023) "
        "inserted into healthy scans. Results on it mean something only for models that never trained on it.")
OWN_FILES = re.compile(r"^(volume|segmentation)-\d+\.nii(\.gz)?$")


@dataclass
class LesionSetSummary:
    """What :func:`make_lesion_set` wrote.

    Attributes:
        out: output folder; manifest: its ``lesions.json``.
        volumes: volumes written; lesions: lesions over all of them; seconds: wall time.
        notes: what the user should know about the inputs (a liver reaching the scan's edge).
    """

    out: Path
    manifest: Path
    volumes: int
    lesions: int
    seconds: float
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"wrote {self.volumes} volume(s) with {self.lesions} lesion(s) to {self.out} ({self.seconds:.1f} s); "
                 f"parameters in {self.manifest.name}"]
        return "\n".join(lines + [f"note: {note}" for note in self.notes])


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise PrepareError(out, "exists and is not a folder")
    if not out.is_dir() or not any(out.iterdir()) or overwrite:
        return
    manifest = out / MANIFEST
    try:
        own = json.loads(manifest.read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        own = False
    if not own:
        raise PrepareError(out, "is not empty and holds no lesion set of this command; choose another --out or "
                                "pass --overwrite")


def _copy_seed(seed: int, case_index: int, copy: int) -> int:
    """The generator seed of one output volume: a function of ``(seed, case, copy)`` only."""
    return int(np.random.SeedSequence((seed, case_index, copy)).generate_state(1, dtype=np.uint64)[0] >> 1)


def _load_case(case, liver_labels, tumor_labels, affine_tolerance: float = 1e-3):
    """``(hu, liver, affine, header codes)`` of a healthy case; a :class:`PrepareError` names a bad file."""
    hu, affine, liver, tumor = load_labelled_case(case, liver_labels, tumor_labels, affine_tolerance)
    if tumor is not None and tumor.any():
        raise PrepareError(case.label, f"has {int(tumor.sum())} tumour voxels (label {tuple(tumor_labels)}): lesions "
                                       "go into healthy livers only")
    if case.image.is_dir():  # a DICOM series: its affine is in the scanner's coordinates
        return hu, liver, affine, (SCANNER_CODE, SCANNER_CODE)
    header = nib.load(case.image).header
    return hu, liver, affine, (int(header["sform_code"]), int(header["qform_code"]))


def _save(path: Path, data: np.ndarray, affine: np.ndarray, codes: tuple[int, int]) -> None:
    image = nib.Nifti1Image(data, affine)
    sform, qform = codes
    if sform or qform:  # keep how the source stated its orientation
        image.set_sform(affine, code=sform or 1)
        image.set_qform(affine, code=qform or 1)
    image.header.set_xyzt_units("mm")
    nib.save(image, path)


def make_lesion_set(
    layout: str,
    root: str | os.PathLike | None,
    out: str | os.PathLike,
    *,
    image: str | os.PathLike | None = None,
    mask: str | os.PathLike | None = None,
    copies: int = 3,
    seed: int = 0,
    sizes: Sequence[str] = tuple(SIZES),
    appearances: Sequence[str] = tuple(APPEARANCES),
    count: tuple[int, int] = (1, 3),
    mass_effect: bool = True,
    liver_labels: Sequence[int] | None = None,
    tumor_labels: Sequence[int] | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> LesionSetSummary:
    """Write a LiTS-layout lesion set made from healthy volumes into ``out`` (module docstring).

    Args:
        layout: one of :data:`examples.lits.cases.LAYOUTS` (see :func:`examples.lits.cases.find_cases`).
        root: data set folder (ignored for pair).
        out: output folder.
        image, mask: the two files of the pair layout.
        copies: lesion draws per healthy volume.
        seed: seed of the whole set; volume ``i`` depends on ``(seed, i // copies, i % copies)`` only.
        sizes, appearances, count, mass_effect: settings of :class:`pseudoanomaly.lesions.LesionSynthesis`.
        liver_labels: label values of the liver (default: 6 for btcv, 1 for the others).
        tumor_labels: label values of tumours (default: none for btcv and chaos, 2 for the others); a volume with
            any is refused, lesions go into healthy livers.
        overwrite: replace the files of a non-empty ``out`` that is not a lesion set of this command.
        progress: show a progress bar.

    Returns:
        What was written.

    Example:
        >>> from examples.lits.phantom import make_cohort
        >>> import tempfile
        >>> tmp = Path(tempfile.mkdtemp())
        >>> cohort = make_cohort(tmp / "phantom", n_healthy=1, n_tumor=0, shape=(96, 96, 16))
        >>> summary = make_lesion_set("btcv", cohort.btcv_root, tmp / "lesions", copies=2, sizes=("small",),
        ...                           progress=False)
        >>> sorted(p.name for p in (tmp / "lesions").iterdir())[:3], summary.volumes
        (['lesions.json', 'segmentation-0.nii.gz', 'segmentation-1.nii.gz'], 2)
    """
    start = time.perf_counter()
    if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
        raise ValueError(f"copies must be an integer >= 1, got {copies!r}")
    synth = LesionSynthesis(sizes=sizes, appearances=appearances, count=count, mass_effect=mass_effect)
    cases = find_cases(layout, root, image, mask)
    default_liver, default_tumor = DEFAULT_LABELS[layout]
    liver_labels = tuple(int(v) for v in (default_liver if liver_labels is None else liver_labels))
    tumor_labels = tuple(int(v) for v in (default_tumor if tumor_labels is None else tumor_labels))
    if not liver_labels or set(liver_labels) & set(tumor_labels):
        raise ValueError(f"liver_labels must be given and differ from tumor_labels, got {liver_labels} and "
                         f"{tumor_labels}")
    out = Path(out)
    _check_out(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    notes: list[str] = []
    manifest = {
        "format": FORMAT, "version": FORMAT_VERSION, "note": NOTE, "layout": layout, "seed": seed, "copies": copies,
        "settings": {"sizes": list(synth.sizes), "size_diameters_mm": {s: list(SIZES[s]) for s in synth.sizes},
                     "appearances": list(synth.appearances), "appearance_probs": list(synth.appearance_probs),
                     "count": list(synth.count), "mass_effect": synth.mass_effect},
        "labels": {"liver": list(liver_labels), "tumor": list(tumor_labels)}, "sources": [], "volumes": [],
    }
    lesions = 0
    try:
        bar = tqdm(total=len(cases) * copies, desc="lesions", unit="volume", disable=not progress)
        with bar:
            for c, case in enumerate(cases):
                hu, liver, affine, codes = _load_case(case, liver_labels, tumor_labels)
                spacing = tuple(float(s) for s in nib.affines.voxel_sizes(affine))  # along the array's axes
                axial = int(np.flatnonzero(nib.orientations.io_orientation(affine)[:, 0] == 2)[0])  # the S-I axis
                # The scan's edge is the liver's boundary where the liver reaches it (the library refuses a liver
                # on the volume's faces: a lesion there would leave the scan).
                inner = liver.copy()
                for axis in range(3):
                    inner[(slice(None),) * axis + (0,)] = False
                    inner[(slice(None),) * axis + (-1,)] = False
                on_border = int(liver.sum() - inner.sum())
                if on_border:
                    notes.append(f"{case.label}: the liver reaches the scan's edge ({on_border} voxels on its faces); "
                                 "lesions keep away from that edge, as from the liver's own boundary")
                manifest["sources"].append({
                    "case_id": case.case_id, "image": str(case.image), "label": str(case.label),
                    "image_sha256": case_checksum(case, "image"), "label_sha256": case_checksum(case, "label"),
                    "spacing_mm": list(spacing), "liver_voxels": int(liver.sum()),
                    "liver_voxels_on_border": on_border,
                })
                ct = torch.from_numpy(np.asarray(hu, np.float32))[None, None]
                mask_t = torch.from_numpy(inner)[None, None]
                for k in range(copies):
                    i = c * copies + k
                    volume_seed = _copy_seed(seed, c, k)
                    try:
                        lesioned, label = synth(ct, mask_t, spacing, generator=torch.Generator().manual_seed(
                            volume_seed))
                    except ValueError as exc:
                        raise PrepareError(case.image, str(exc)) from exc
                    label = label[0, 0].numpy()
                    # int16 holds every CT value; an integer source keeps its exact values away from the lesions
                    hu_out = np.clip(np.rint(lesioned[0, 0].numpy()), -32768, 32767).astype(np.int16)
                    seg = np.where(label, LITS_LESION, np.where(liver, LITS_LIVER, 0)).astype(np.uint8)
                    _save(staging / f"volume-{i}.nii.gz", hu_out, affine, codes)
                    _save(staging / f"segmentation-{i}.nii.gz", seg, affine, codes)
                    params = synth.last_params[0]
                    lesions += len(params)
                    manifest["volumes"].append({
                        "volume": f"volume-{i}.nii.gz", "segmentation": f"segmentation-{i}.nii.gz",
                        "case_id": case.case_id, "copy": k, "seed": volume_seed,
                        "lesion_voxels": int(label.sum()), "axial_axis": axial,
                        "lesion_slices": np.flatnonzero(label.any(axis=tuple(a for a in range(3) if a != axial)))
                        .tolist(), "lesions": params,
                    })
                    bar.update()
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1))
        out.mkdir(parents=True, exist_ok=True)
        new = {p.name for p in staging.iterdir()}
        for old in out.iterdir():  # an earlier set's volumes would mix with this one in prepare
            if old.is_file() and OWN_FILES.match(old.name) and old.name not in new:
                old.unlink()
        (out / MANIFEST).unlink(missing_ok=True)  # the set is incomplete until its manifest is back
        for name in sorted(new - {MANIFEST}):
            os.replace(staging / name, out / name)
        os.replace(staging / MANIFEST, out / MANIFEST)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return LesionSetSummary(out=out, manifest=out / MANIFEST, volumes=len(manifest["volumes"]), lesions=lesions,
                            seconds=time.perf_counter() - start, notes=notes)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``lesions`` command's options to ``parser`` (use with :func:`main`).

    Args:
        parser: the (sub)parser of the ``lesions`` command.
    """
    parser.add_argument("--layout", required=True, choices=LAYOUTS,
                        help="as prepare's (btcv, lits, msd, ircadb, chaos: a --root folder; pair: --image + --mask); "
                             "healthy livers only")
    parser.add_argument("--root", type=Path, help="data set folder (all layouts but pair)")
    parser.add_argument("--image", type=Path, help="CT volume: NIfTI file or DICOM folder (pair layout)")
    parser.add_argument("--mask", type=Path, help="its liver mask: NIfTI file or DICOM folder (pair layout)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (LiTS layout + lesions.json)")
    parser.add_argument("--copies", type=int, default=3, help="lesion draws per healthy volume (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the whole set (default: %(default)s)")
    sizes = ", ".join(f"{k} {a:g}-{b:g} mm" for k, (a, b) in SIZES.items())
    parser.add_argument("--sizes", nargs="+", choices=tuple(SIZES), default=tuple(SIZES),
                        help=f"size classes by diameter: {sizes} (default: all, {' '.join(SIZES)})")
    parser.add_argument("--appearances", nargs="+", choices=tuple(APPEARANCES), default=tuple(APPEARANCES),
                        help=f"lesion appearances, hypodense the most frequent (default: all, {' '.join(APPEARANCES)})")
    parser.add_argument("--count", type=int, nargs=2, default=(1, 3), metavar=("MIN", "MAX"),
                        help="lesions per volume (default: 1 3)")
    parser.add_argument("--no-mass-effect", action="store_true", help="do not push the surrounding liver outward")
    parser.add_argument("--liver-label", type=int, nargs="+",
                        help="liver label value(s) (default: btcv 6, the others 1)")
    parser.add_argument("--tumor-label", type=int, nargs="*",
                        help="tumour label value(s); a volume with any is refused (default: btcv and chaos none, the "
                             "others 2)")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty --out of something else")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    """Run ``lesions`` from parsed arguments (see :func:`add_arguments`); print the summary.

    Args:
        args: parsed arguments.

    Returns:
        0 on success, 1 when the set could not be made (the error is printed, naming the file or value).
    """
    missing = missing_layout_inputs(args)
    if missing:
        print(f"lesions: error: {missing}", file=sys.stderr)
        return 1
    try:
        summary = make_lesion_set(args.layout, args.root, args.out, image=args.image, mask=args.mask,
                                  copies=args.copies, seed=args.seed, sizes=args.sizes, appearances=args.appearances,
                                  count=tuple(args.count), mass_effect=not args.no_mass_effect,
                                  liver_labels=args.liver_label, tumor_labels=args.tumor_label,
                                  overwrite=args.overwrite,
                                  progress=not args.no_progress)
    except PrepareError as exc:
        print(f"lesions: error: {exc}", file=sys.stderr)
        return 1
    print(summary)
    return 0
