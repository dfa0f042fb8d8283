"""``prepare``: a CT data set with liver labels -> liver-ROI axial slices for training (BTCV) or testing (LiTS).

    python -m examples.lits prepare --layout {btcv,lits,msd,ircadb,chaos,pair} --root DIR --out DIR [flags]

Layouts (:mod:`examples.lits.cases`): BTCV ``ROOT/img/img*.nii.gz`` + ``ROOT/label/label*.nii.gz`` (liver = 6);
LiTS ``ROOT/volume-N.nii[.gz]`` + ``ROOT/segmentation-N.nii[.gz]`` (liver = 1, tumor = 2; subfolders searched);
MSD Task03_Liver ``ROOT/imagesTr/liver_N.nii.gz`` + ``ROOT/labelsTr/liver_N.nii.gz`` (liver = 1, tumor = 2);
3D-IRCADb ``ROOT/3Dircadb1.N/PATIENT_DICOM/`` + ``MASKS_DICOM/liver/`` and ``MASKS_DICOM/livertumor*/`` (DICOM
series); CHAOS CT ``ROOT/Train_Sets/CT/N/DICOM_anon/`` + ``Ground/*.png`` (liver only: healthy); pair: one
``--image`` and its ``--mask`` (NIfTI files or DICOM series folders). DICOM needs the ``dicom`` extra (pydicom).
Each volume goes through :func:`~examples.lits.preprocess.preprocess_volume` (the steps are listed there and are
the same for every data set).

Output, in ``OUT``:

- ``volumes/<case_id>.npz``, one per volume (format: :mod:`examples.lits.volumes`), ``case_id`` being the
  image's file name without ``.nii[.gz]`` (``3Dircadb1.N``, ``chaos-ct-N`` for the DICOM layouts);
- ``manifest.json``: format and version, layout, label values, config, per case the source files with their
  sha256, the volume file with its sha256 (``file_sha256``, checked again by ``load_prepared``), slices kept and
  shapes, and the volumes skipped with their error.

Re-running skips the volumes already prepared with the same config, labels and source checksums whose file still
has its recorded checksum; a changed setting re-prepares all of them, a changed or damaged volume file is rebuilt.
Every file is written to a temporary file in its folder and renamed into place, so an interrupted run leaves no
half-written file; the manifest is written first with this run's settings (and only the entries still valid under
them), then after every volume, so a re-run resumes and a volume is never trusted under settings it was not made
with. One process writes a folder at a time (``examples.lits.locking``); ``--layout pair`` adds its case to the
folder's earlier ones. A missing or unreadable file, a volume that is not 3-D, NaN voxels, a CT not in Hounsfield
units, a label that is not a label map (a CT, or image and label swapped), a label whose shape or affine differs
from its image: a :class:`PrepareError` naming the file, or with ``skip_bad`` a listed skip.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import cv2
from tqdm import tqdm

from .arguments import missing_layout_inputs, non_negative_float, positive_int
from .cases import (DEFAULT_LABELS, LAYOUTS, CaseFiles, PrepareError, case_checksum, file_checksum, find_cases,
                    load_labelled_case)
from .dataset import FORMAT, FORMAT_VERSION, MANIFEST, VOLUMES, read_manifest, write_manifest
from .locking import writes_folder
from .preprocess import CROP_MODES, PREPARE_PRESETS, PrepareConfig, preprocess_volume
from .volumes import save_prepared_volume

__all__ = ["PrepareSummary", "prepare", "config_from_args", "add_arguments", "main"]



@dataclass
class PrepareSummary:
    """What :func:`prepare` did.

    Attributes:
        out: output folder; manifest: its manifest path.
        prepared: case ids prepared by this run; up_to_date: case ids kept from an earlier run.
        skipped: ``{"case_id", "file", "error"}`` for each volume skipped as bad (``skip_bad=True``).
        slices: slices in the output over all its cases; seconds: wall time of the run.
    """

    out: Path
    manifest: Path
    prepared: list[str] = field(default_factory=list)
    up_to_date: list[str] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    slices: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        lines = [
            f"prepared {len(self.prepared)} volume(s), {len(self.up_to_date)} already up to date, "
            f"{len(self.skipped)} skipped; {self.slices} slices in {self.out} ({self.seconds:.1f} s)"
        ]
        lines += [f"  skipped {s['case_id']}: {s['error']}" for s in self.skipped]
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ command


@dataclass(frozen=True)
class _Job:
    case: CaseFiles
    volumes: Path
    config: PrepareConfig
    liver_labels: tuple[int, ...]
    tumor_labels: tuple[int, ...]
    previous: dict | None
    affine_tolerance: float
    skip_bad: bool


def _prepare_case(job: _Job) -> dict:
    """Worker: one volume -> ``{"status": "prepared" | "up-to-date" | "failed", ...}``."""
    case = job.case
    try:
        image_sha = case_checksum(case, "image")  # a DICOM or PNG folder: its files' checksums
        label_sha = case_checksum(case, "label")
        target = job.volumes / f"{case.case_id}.npz"
        prev = job.previous
        # The volume itself is checked too: a truncated, swapped or foreign file is rebuilt, not trusted.
        if (prev and prev.get("image_sha256") == image_sha and prev.get("label_sha256") == label_sha
                and target.is_file() and prev.get("file_sha256") == file_checksum(target)):
            return {"status": "up-to-date", "case_id": case.case_id, "entry": prev}
        hu, affine, liver, tumor = load_labelled_case(case, job.liver_labels, job.tumor_labels,
                                                      job.affine_tolerance)
        prepared = preprocess_volume(hu, liver, affine, job.config, tumor)
    except PrepareError as exc:
        if not job.skip_bad:
            raise
        return {"status": "failed", "case_id": case.case_id, "file": exc.path, "error": str(exc)}
    save_prepared_volume(target, prepared)
    g = prepared.geometry
    entry = {
        "image": str(case.image),
        "label": str(case.label),
        "image_sha256": image_sha,
        "label_sha256": label_sha,
        "file": f"{VOLUMES}/{target.name}",
        "file_sha256": file_checksum(target),
        "slices": len(g.slices),
        "source_shape": list(g.source_shape),
        "axcodes": g.axcodes,
        "spacing": list(g.spacing),
        "prepared_shape": list(prepared.images.shape),
        "tumor_slices": int(prepared.tumor.any(axis=(1, 2)).sum()),
        "tumor_pixels": int(prepared.tumor.sum()),
    }
    return {"status": "prepared", "case_id": case.case_id, "entry": entry}


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per volume already uses the cores


@writes_folder("out", "prepare", subfolders=(VOLUMES,))
def prepare(
    layout: str,
    root: str | os.PathLike | None,
    out: str | os.PathLike,
    config: PrepareConfig = PrepareConfig(),
    *,
    liver_labels: Sequence[int] | None = None,
    tumor_labels: Sequence[int] | None = None,
    image: str | os.PathLike | None = None,
    mask: str | os.PathLike | None = None,
    workers: int = 1,
    skip_bad: bool = False,
    progress: bool = True,
    affine_tolerance: float = 1e-3,
) -> PrepareSummary:
    """Prepare every volume of a data set into ``out`` (module docstring).

    Args:
        layout: one of :data:`~examples.lits.cases.LAYOUTS` (see :func:`~examples.lits.cases.find_cases`).
        root: data set folder (ignored for pair).
        out: output folder (created); one data set per folder, written by one process at a time (a second one
            raises :class:`~examples.lits.locking.FolderBusyError`). The pair layout adds its case to the folder's
            earlier ones.
        config: preprocessing settings.
        liver_labels: label values of the liver (default: 6 for btcv, 1 for the others).
        tumor_labels: label values of tumors, counted as liver too (default: none for btcv and chaos, 2 for the
            others).
        image, mask: the files of the pair layout.
        workers: processes; 1 prepares in this process.
        skip_bad: list a bad volume (missing/unreadable/mismatched file) in the summary and manifest and go on,
            instead of raising its :class:`PrepareError`.
        progress: show a progress bar.
        affine_tolerance: largest difference allowed between an image's and its label's affine entries.

    Returns:
        What was prepared, kept and skipped.
    """
    start = time.perf_counter()
    cases = find_cases(layout, root, image, mask)
    default_liver, default_tumor = DEFAULT_LABELS[layout]
    liver_labels = tuple(int(v) for v in (default_liver if liver_labels is None else liver_labels))
    tumor_labels = tuple(int(v) for v in (default_tumor if tumor_labels is None else tumor_labels))
    if not liver_labels:
        raise ValueError("liver_labels must name at least one label value, got none")
    if set(liver_labels) & set(tumor_labels):
        raise ValueError(f"liver_labels {liver_labels} and tumor_labels {tumor_labels} overlap")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if not (isinstance(affine_tolerance, (int, float)) and math.isfinite(affine_tolerance) and affine_tolerance >= 0):
        raise ValueError(f"affine_tolerance must be a finite number >= 0, got {affine_tolerance!r}")

    out = Path(out)
    volumes = out / VOLUMES
    volumes.mkdir(parents=True, exist_ok=True)
    old = read_manifest(out)
    if old is not None and old.get("layout") != layout:
        raise PrepareError(out / MANIFEST, f"holds a {old.get('layout')!r} data set, not {layout!r}; "
                                           "use another --out")
    settings = {"version": FORMAT_VERSION, "labels": {"liver": list(liver_labels), "tumor": list(tumor_labels)},
                "config": config.to_dict()}
    same = old is not None and all(old.get(k) == v for k, v in settings.items())
    previous = old["cases"] if same else {}
    earlier = _earlier_pairs(out, old, settings, same, cases) if layout == "pair" else {}
    manifest = {"format": FORMAT, **settings, "layout": layout,
                "root": str(Path(root).resolve()) if root is not None and layout != "pair" else None,
                "cases": {}, "skipped": []}
    manifest["cases"].update(earlier)
    # The record first, then the data: from here on the manifest names this run's settings and only the entries
    # still valid under them, so a kill right after a volume is written never leaves it trusted under others.
    manifest["cases"].update({c.case_id: previous[c.case_id] for c in cases if c.case_id in previous})
    write_manifest(out, manifest)
    summary = PrepareSummary(out=out, manifest=out / MANIFEST)
    jobs = [_Job(c, volumes, config, liver_labels, tumor_labels, previous.get(c.case_id), affine_tolerance,
                 skip_bad) for c in cases]

    done: set[str] = set()

    def record(result: dict) -> None:
        done.add(result["case_id"])
        if result["status"] == "failed":
            manifest["cases"].pop(result["case_id"], None)
            item = {k: result[k] for k in ("case_id", "file", "error")}
            summary.skipped.append(item)
            manifest["skipped"].append(item)
        else:
            manifest["cases"][result["case_id"]] = result["entry"]
            (summary.prepared if result["status"] == "prepared" else summary.up_to_date).append(result["case_id"])
        write_manifest(out, manifest)

    bar = tqdm(total=len(jobs), desc=f"prepare {layout}", unit="volume", disable=not progress)
    try:
        if workers == 1 or len(jobs) == 1:
            for job in jobs:
                record(_prepare_case(job))
                bar.update()
        else:
            context = multiprocessing.get_context("spawn")  # no fork of a process that may hold threads
            with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context, initializer=_init_worker) as pool:
                futures = [pool.submit(_prepare_case, job) for job in jobs]
                try:
                    for future in as_completed(futures):
                        record(future.result())
                        bar.update()
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
    finally:
        bar.close()
        # Interrupted: volumes not reached keep their still-valid entries, so a re-run skips them.
        for case_id, entry in previous.items():
            if case_id not in done and case_id in {c.case_id for c in cases}:
                manifest["cases"][case_id] = entry
        # Keep the manifest's case order stable whatever order the workers finished in (earlier pairs first).
        order = {case_id: i for i, case_id in enumerate([*earlier, *(c.case_id for c in cases)])}
        manifest["cases"] = dict(sorted(manifest["cases"].items(), key=lambda kv: order[kv[0]]))
        manifest["skipped"].sort(key=lambda s: order[s["case_id"]])
        write_manifest(out, manifest)
    summary.slices = sum(e["slices"] for e in manifest["cases"].values())
    summary.seconds = time.perf_counter() - start
    return summary


def _earlier_pairs(out: Path, old: dict | None, settings: dict, same: bool, cases: list[CaseFiles]) -> dict:
    """The cases of earlier pair-layout runs into ``out`` that this run keeps beside its own.

    One ``prepare --layout pair`` adds one case; it must not drop the folder's other cases, nor mix settings, nor
    reuse another image's case id.
    """
    if old is None:
        return {}
    ids = {c.case_id for c in cases}
    for c in cases:
        entry = old["cases"].get(c.case_id)
        if entry is not None and entry.get("image") != str(c.image):
            raise PrepareError(c.image, f"case id {c.case_id!r} is already used in {out / MANIFEST} by "
                                        f"{entry.get('image')}; rename the file or use another --out")
    earlier = {case_id: entry for case_id, entry in old["cases"].items() if case_id not in ids}
    if earlier and not same:
        differ = sorted(k for k, v in settings.items() if old.get(k) != v)
        raise PrepareError(out / MANIFEST, f"holds case(s) {sorted(earlier)} prepared with other settings "
                                           f"({', '.join(differ)} differ); prepare this pair into another --out")
    return earlier


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``prepare`` command's options to ``parser`` (use with :func:`main`).

    Args:
        parser: the (sub)parser of the ``prepare`` command.
    """
    d = PrepareConfig()
    parser.add_argument("--layout", required=True, choices=LAYOUTS,
                        help="btcv: ROOT/img/img*.nii.gz + ROOT/label/label*.nii.gz; lits: ROOT/volume-N.nii + "
                             "ROOT/segmentation-N.nii; msd: ROOT/imagesTr/liver_N.nii.gz + ROOT/labelsTr/; ircadb: "
                             "ROOT/3Dircadb1.N/PATIENT_DICOM/ + MASKS_DICOM/liver/, livertumor*/; chaos: "
                             "ROOT/Train_Sets/CT/N/DICOM_anon/ + Ground/*.png; pair: --image + --mask (DICOM layouts "
                             "need pip install pseudoanomaly[dicom])")
    parser.add_argument("--root", type=Path, help="data set folder (all layouts but pair)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (one data set per folder)")
    parser.add_argument("--image", type=Path, help="CT volume: NIfTI file or DICOM folder (pair layout)")
    parser.add_argument("--mask", type=Path, help="its liver mask: NIfTI file or DICOM folder (pair layout)")
    parser.add_argument("--liver-label", type=int, nargs="+",
                        help="liver label value(s) (default: btcv 6, the others 1)")
    parser.add_argument("--tumor-label", type=int, nargs="*",
                        help="tumor label value(s) (default: btcv and chaos none, the others 2)")
    parser.add_argument("--preset", choices=sorted(PREPARE_PRESETS), default="cpu",
                        help="settings matching train's preset of the same name: cpu (the default, as train's): "
                             "128 px, liver-box crop, liver-centred 200 HU window, area resize; paper: 256 px whole "
                             "slices, HU window [-200, 250], histogram equalization (default: %(default)s)")
    parser.add_argument("--hu-window", type=float, nargs=2, metavar=("LOW", "HIGH"),
                        help=f"HU mapped to [0, 1] (paper preset; default {list(d.hu_window)})")
    parser.add_argument("--liver-window", type=float, metavar="HU",
                        help="window this many HU around the volume's median liver HU instead (cpu preset: "
                             f"{PREPARE_PRESETS['cpu'].liver_window:g})")
    parser.add_argument("--size", type=int, help="output slice side (cpu preset 128, paper 256)")
    parser.add_argument("--min-liver-pixels", type=int, default=d.min_liver_pixels,
                        help="keep slices with at least this many liver pixels (source resolution; default: "
                             "%(default)s)")
    parser.add_argument("--min-liver-fraction", type=float, default=d.min_liver_fraction,
                        help="... and at least this fraction of the slice (default: %(default)s)")
    parser.add_argument("--crop", choices=CROP_MODES,
                        help="square crop around the liver (cpu preset: volume, paper: none)")
    parser.add_argument("--resize", choices=("linear", "area"), help="downsampling (cpu preset: area, paper: linear)")
    parser.add_argument("--crop-margin", type=int, default=d.crop_margin,
                        help="crop margin in source pixels (default: %(default)s)")
    parser.add_argument("--no-equalize", action="store_true", help="skip the liver histogram equalization (paper)")
    parser.add_argument("--workers", type=positive_int, default=1,
                        help="processes, one volume each (default: %(default)s)")
    parser.add_argument("--skip-bad", action="store_true", help="list bad volumes and go on instead of stopping")
    parser.add_argument("--affine-tol", type=non_negative_float, default=1e-3,
                        help="image/label affine tolerance (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> PrepareConfig:
    """The :class:`PrepareConfig` of ``--preset`` with the flags given on the command line."""
    changes: dict = {"min_liver_pixels": args.min_liver_pixels, "min_liver_fraction": args.min_liver_fraction,
                     "crop_margin": args.crop_margin}
    for name in ("size", "crop", "resize"):
        if getattr(args, name, None) is not None:
            changes[name] = getattr(args, name)
    if args.hu_window is not None:
        changes["hu_window"] = tuple(args.hu_window)
    if args.liver_window is not None:
        changes.update(liver_window=args.liver_window, equalize=False)
    if args.no_equalize:
        changes["equalize"] = False
    elif args.hu_window is not None and args.liver_window is None:
        # an explicit HU window means the paper's pipeline: window, then equalize
        changes.update(liver_window=None, equalize=True)
    return dataclasses.replace(PREPARE_PRESETS[args.preset], **changes)


def main(args: argparse.Namespace) -> int:
    """Run ``prepare`` from parsed arguments (see :func:`add_arguments`); print the summary.

    Args:
        args: parsed arguments.

    Returns:
        0 on success, 1 when a volume could not be prepared (the error is printed, naming the file).
    """
    missing = missing_layout_inputs(args)
    if missing:
        print(f"prepare: error: {missing}", file=sys.stderr)
        return 1
    config = config_from_args(args)
    try:
        summary = prepare(args.layout, args.root, args.out, config, liver_labels=args.liver_label,
                          tumor_labels=args.tumor_label, image=args.image, mask=args.mask, workers=args.workers,
                          skip_bad=args.skip_bad, progress=not args.no_progress, affine_tolerance=args.affine_tol)
    except PrepareError as exc:
        print(f"prepare: error: {exc}", file=sys.stderr)
        return 1
    print(summary)
    return 0
