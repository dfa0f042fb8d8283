"""``score``: tumor segmentations in NIfTI against ground-truth label maps, in the scans' own voxel grid.

    python -m examples.lits score --predictions preds/ --truth lits/ --out scores/ [--threshold 0.5]

``evaluate`` scores prepared 2-D slices; this command scores what ``segment`` (or any other method) writes: one
NIfTI file per scan, on the scan's voxels. Nothing is resampled: a prediction must have its truth's shape, and
affines that agree within ``--affine-tol`` (mm).

Predictions (``--prediction-kind``, default ``auto``, decided per file from its values):

- ``probability``: floats in [0, 1] (``segment``'s output); tumor is ``p > --threshold`` (default 0.5, strict,
  as :func:`pseudoanomaly.metrics.dice`). A file with a value that is not an integer is one;
- ``labels``: a LiTS label map, 0 background, 1 liver, 2 tumor (tumor is 2). An integer-valued file holding a 2
  is one;
- ``mask``: a binary tumor mask, 0 and 1 (tumor is 1). An integer-valued file holding only 0 and 1 is ambiguous
  (a mask, or a label map of a scan without predicted tumor?): ``auto`` reads it as a probability map when it is
  stored as floats (a thresholded one: the same tumor as a mask), as a mask when it is all 0, and otherwise
  refuses it, asking for ``--prediction-kind`` (which then holds for every file of the folder). A folder that
  ``segment`` wrote has its ``summary.json``: ``auto`` then takes the kind it records for every file (label maps
  by default, probabilities with ``--probabilities``).

Ground truth: label maps (LiTS/MSD: liver 1, tumor 2; ``--liver-label`` / ``--tumor-label`` as for ``prepare``),
read by :mod:`examples.lits.cases`; a value that is neither background, liver nor tumor is an error.

Matching by case name: a file's case is its name without ``.nii`` / ``.nii.gz`` and without a leading ``volume-``
or ``segmentation-``. So ``segmentation-3.nii`` (truth) matches ``volume-3.nii.gz``, ``segmentation-3.nii.gz``
or ``3.nii.gz`` (prediction), and identical names always match. Predictions are the NIfTI files directly in
``--predictions``; truth is every NIfTI file in ``--truth`` and its subfolders except ``volume-*`` (so a LiTS
data folder, volumes beside segmentations, can be given as is) and except those inside ``--predictions``. Hidden
files (a killed ``segment``'s temporaries) are ignored. Two files of one folder with the same case, a prediction
without truth or truth without prediction are errors naming the files; with ``--allow-missing`` the unmatched
files are skipped and listed in ``scores.json``.

Metrics, per case and pooled over all cases (tumor only):

- ``dice``: :math:`2|P \\cap T| / (|P| + |T|)`; a case with no tumor in truth and prediction scores 1 (LiTS's
  per-case convention), one with tumor in only one of them 0. ``dice_global`` pools the voxels of every case
  (LiTS's "Dice global"; large tumors dominate it), ``dice_per_case`` is the mean of the cases' Dice;
- volumes in mL (voxel volume = ``|det|`` of the affine's 3x3 part): predicted, true, error = predicted - true,
  relative error = error / true (``null`` without true tumor);
- lesions: 3-D connected components (``scipy.ndimage.label``) of truth and prediction, 26-connected by default
  (voxels that share a face, an edge or a corner: a lesion that steps diagonally from one thick slice to the
  next stays one lesion, and a ragged prediction is not split into many "false lesions"; ``--connectivity 6``
  for faces only). A true lesion is *found* when the predicted tumor covers more than 0 of its voxels and at
  least ``--min-overlap`` of them (default 0: any overlap, the most lenient form of the overlap-based detection
  of the LiTS benchmark, Bilic et al., Medical Image Analysis 84, 2023); else *missed*. A predicted component is
  a *false* lesion when it touches no found lesion. Precision = found / (found + false), recall = found /
  (found + missed), F1 = 2 found / (2 found + missed + false); ``null`` when the denominator is 0. ``by_size``
  splits the true lesions (and false ones) by equivalent-sphere diameter :math:`(6V/\\pi)^{1/3}`: < 10 mm,
  10-20 mm, > 20 mm.

Output in ``--out``: ``scores.json`` (settings, per case, pooled, unmatched files) and ``scores.md`` (a table,
one row per case and a pooled row), each written atomically, while holding the folder's lock. Every input is
read and checked before anything is written: a bad file leaves ``--out`` as it was.
"""

from __future__ import annotations

import argparse
import json
import math
import numbers
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from pseudoanomaly.io import atomic_write

from .arguments import non_negative_float, open_unit_interval, unit_interval
from .cases import DEFAULT_LABELS, NIFTI_NAME, check_label_map, decode_labels, load_nifti, natural_key
from .locking import writes_folder
from .runs import write_json
from .scoring import CONNECTIVITY, SIZE_BINS, Lesions, match_lesions

__all__ = [
    "FORMAT", "PREDICTION_KINDS", "SIZE_BINS", "score_folder", "score_case", "case_name", "add_arguments", "main",
]

FORMAT = "examples.lits.score"
FORMAT_VERSION = 1
SCORES_JSON, SCORES_MD = "scores.json", "scores.md"
PREDICTION_KINDS = ("auto", "probability", "labels", "mask")
LITS_TUMOR = 2  # the tumor value of a predicted LiTS label map (0 background, 1 liver, 2 tumor)
THRESHOLD = 0.5  # segment's and evaluate's decision boundary
AFFINE_TOLERANCE = 1e-3  # mm, as prepare's --affine-tol
_PREFIX = re.compile(r"^(volume|segmentation)-")


def case_name(path: str | os.PathLike) -> str:
    """The case a file belongs to: its name without ``.nii[.gz]`` and a leading ``volume-`` / ``segmentation-``."""
    return _PREFIX.sub("", NIFTI_NAME.sub("", Path(path).name))


def _index(folder: Path, what: str, recursive: bool, skip: Path | None = None) -> dict[str, Path]:
    """``{case: file}`` of the NIfTI files in ``folder`` (none under ``skip``); a case named twice is an error
    naming both files."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder for --{what}")
    files = folder.rglob("*.nii*") if recursive else folder.glob("*.nii*")
    found: dict[str, Path] = {}
    for path in sorted(files):
        if not NIFTI_NAME.search(path.name) or path.name.startswith(".") or not path.is_file():
            continue  # hidden: among them the temporaries of an interrupted segment (.NAME.<pid>.<hex>.tmp.nii.gz)
        if skip is not None and path.resolve().is_relative_to(skip.resolve()):  # predictions kept in the data
            continue
        if what == "truth" and path.name.startswith("volume-"):  # a LiTS folder's CT volumes, beside the labels
            continue
        name = case_name(path)
        if name in found:
            raise ValueError(f"{path}: case {name!r} also given by {found[name]} (--{what}); keep one of them")
        found[name] = path
    return found


def match_cases(predictions: Path, truth: Path, allow_missing: bool = False
                ) -> tuple[list[tuple[str, Path, Path]], dict[str, list[str]]]:
    """Pair the files of the two folders by :func:`case_name`: ``([(case, prediction, truth)], unmatched)``."""
    preds, truths = _index(predictions, "predictions", False), _index(truth, "truth", True, skip=predictions)
    if not preds:
        raise FileNotFoundError(f"{predictions}: no prediction (.nii or .nii.gz file) in this folder")
    if not truths:
        raise FileNotFoundError(f"{truth}: no ground-truth label map (.nii or .nii.gz file) in this folder")
    unmatched = {"predictions": [str(preds[c]) for c in sorted(set(preds) - set(truths))],
                 "truth": [str(truths[c]) for c in sorted(set(truths) - set(preds))]}
    if not allow_missing:
        for side, other, folder in (("predictions", "ground truth", truth), ("truth", "prediction", predictions)):
            if unmatched[side]:
                more = len(unmatched[side]) - 1
                raise ValueError(f"{unmatched[side][0]}: no {other} for this case in {folder}"
                                 f"{f' (and {more} more file(s))' if more else ''}; names match as "
                                 "segmentation-N <-> volume-N / N / segmentation-N, or use --allow-missing")
    pairs = [(c, preds[c], truths[c]) for c in sorted(set(preds) & set(truths), key=natural_key)]
    if not pairs:
        raise ValueError(f"{predictions}: no prediction matches a ground-truth file of {truth} (names match as "
                         "segmentation-N <-> volume-N / N / segmentation-N)")
    return pairs, unmatched


# ------------------------------------------------------------------------------------------- reading


def read_prediction(path: Path, kind: str, threshold: float) -> tuple[np.ndarray, np.ndarray, str]:
    """``(tumor mask, affine, kind)`` of a prediction file; a value its kind does not allow names the file."""
    values, affine = load_nifti(path, "prediction")  # NaN / Inf refused there
    stored_float = np.issubdtype(nib.load(path).get_data_dtype(), np.floating)
    low, high = float(values.min()), float(values.max())
    integer = not np.issubdtype(values.dtype, np.floating) or bool(np.all(values == np.round(values)))
    if kind == "auto":
        if not integer or (stored_float and low >= 0 and high <= 1):
            kind = "probability"
        elif high == 0 and low == 0:
            kind = "mask"
        elif (values == LITS_TUMOR).any():
            kind = "labels"
        elif low >= 0 and high <= 1:
            raise ValueError(f"{path}: holds only 0 and 1: a binary tumor mask or a label map (1 = liver) with no "
                             "tumor? Say --prediction-kind mask or --prediction-kind labels")
        else:
            kind = "labels"  # refused below with the unexpected value
    if kind == "probability":
        if low < 0 or high > 1:
            raise ValueError(f"{path}: probability map values span [{low:g}, {high:g}], outside [0, 1] (a label "
                             "map? see --prediction-kind)")
        return values > threshold, affine, kind
    allowed = (0, 1, LITS_TUMOR) if kind == "labels" else (0, 1)
    if not integer:
        raise ValueError(f"{path}: a {kind} prediction holds non-integer values (range [{low:g}, {high:g}]); "
                         "a probability map? see --prediction-kind")
    _check_values(values, allowed, path, f"{kind} prediction (allowed {list(allowed)})")
    return values == (LITS_TUMOR if kind == "labels" else 1), affine, kind


def read_truth(path: Path, liver_labels: Sequence[int], tumor_labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """``(tumor mask, affine)`` of a ground-truth label map, with :mod:`~examples.lits.cases`'s checks."""
    label, affine = load_nifti(path, "label")
    check_label_map(label, path)
    _check_values(label, (0, *liver_labels, *tumor_labels), path,
                  f"label map (background 0, liver {list(liver_labels)}, tumor {list(tumor_labels)}; see "
                  "--liver-label / --tumor-label)")
    _, tumor = decode_labels(label, liver_labels, tumor_labels)
    return tumor, affine


def _check_values(values: np.ndarray, allowed: Sequence[int], path: Path, what: str) -> None:
    bad = ~np.isin(values, allowed)  # a table lookup for integers: no sort of the whole volume as np.unique does
    if bad.any():
        unexpected = np.unique(values[bad])
        shown = [int(v) if float(v).is_integer() else float(v) for v in unexpected[:5]]
        raise ValueError(f"{path}: unexpected value(s) {shown} in a {what}")


def _check_same_grid(pred_path: Path, pred: np.ndarray, pred_affine: np.ndarray, truth_path: Path,
                     truth: np.ndarray, truth_affine: np.ndarray, tolerance: float) -> None:
    if pred.shape != truth.shape:
        raise ValueError(f"{pred_path}: shape {pred.shape} differs from the ground truth's {truth.shape} "
                         f"({truth_path}); score compares voxel by voxel, nothing is resampled")
    difference = float(np.abs(pred_affine - truth_affine).max())
    if difference > tolerance:
        raise ValueError(f"{pred_path}: affine differs from the ground truth's ({truth_path}) by up to "
                         f"{difference:.4g} mm > tolerance {tolerance:g} (--affine-tol)")


# ------------------------------------------------------------------------------------------- metrics


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def _dice(intersection: int, predicted: int, true: int) -> float:
    return 1.0 if predicted + true == 0 else 2 * intersection / (predicted + true)  # both empty: 1 (LiTS)


def _detection(lesions: int, found: int, false: int) -> dict[str, Any]:
    missed = lesions - found
    return {"lesions": lesions, "found": found, "missed": missed, "false": false,
            "precision": _ratio(found, found + false), "recall": _ratio(found, lesions),
            "f1": _ratio(2 * found, 2 * found + missed + false)}


def _metrics(intersection: int, predicted: int, true: int, voxel_ml: float | None, predicted_ml: float,
             true_ml: float, lesions: Lesions) -> dict[str, Any]:
    error = predicted_ml - true_ml
    return {
        "dice": _dice(intersection, predicted, true),
        "voxels": {"predicted": predicted, "true": true, "overlap": intersection},
        **({"voxel_ml": voxel_ml} if voxel_ml is not None else {}),
        "predicted_ml": predicted_ml, "true_ml": true_ml, "volume_error_ml": error,
        "volume_error_relative": _ratio(error, true_ml),
        **_detection(lesions.lesions, lesions.found, lesions.false),
        "by_size": {name: {"lesions": n, "found": f, "missed": n - f, "false": k, "recall": _ratio(f, n)}
                    for name, (n, f, k) in lesions.by_size.items()},
    }


def score_case(prediction: str | os.PathLike, truth: str | os.PathLike, *, prediction_kind: str = "auto",
               threshold: float = THRESHOLD, liver_labels: Sequence[int] = (1,), tumor_labels: Sequence[int] = (2,),
               connectivity: int = 26, min_overlap: float = 0.0, affine_tolerance: float = AFFINE_TOLERANCE
               ) -> dict[str, Any]:
    """The metrics of one prediction file against its ground-truth file (see the module docstring)."""
    prediction, truth = Path(prediction), Path(truth)
    pred, pred_affine, kind = read_prediction(prediction, prediction_kind, threshold)
    true, true_affine = read_truth(truth, liver_labels, tumor_labels)
    _check_same_grid(prediction, pred, pred_affine, truth, true, true_affine, affine_tolerance)
    voxel_ml = abs(float(np.linalg.det(true_affine[:3, :3]))) / 1000
    if voxel_ml == 0:
        raise ValueError(f"{truth}: the affine is singular (zero voxel volume)")
    intersection, predicted, true_count = int((pred & true).sum()), int(pred.sum()), int(true.sum())
    lesions = match_lesions(pred, true, voxel_ml * 1000, connectivity, min_overlap)
    return {"prediction": str(prediction), "truth": str(truth), "prediction_kind": kind,
            **_metrics(intersection, predicted, true_count, voxel_ml, predicted * voxel_ml, true_count * voxel_ml,
                       lesions)}


def _pooled(cases: list[dict[str, Any]]) -> dict[str, Any]:
    voxels = {k: sum(c["voxels"][k] for c in cases) for k in ("predicted", "true", "overlap")}
    by_size = {name: [sum(c["by_size"][name][k] for c in cases) for k in ("lesions", "found", "false")]
               for name in SIZE_BINS}
    lesions = Lesions(*(sum(c[k] for c in cases) for k in ("lesions", "found", "false")), by_size)
    pooled = _metrics(voxels["overlap"], voxels["predicted"], voxels["true"], None,
                      sum(c["predicted_ml"] for c in cases), sum(c["true_ml"] for c in cases), lesions)
    dice_global = pooled.pop("dice")
    return {"cases": len(cases), "dice_global": dice_global,
            "dice_per_case": float(np.mean([c["dice"] for c in cases])),
            "volume_error_ml_mean_abs": float(np.mean([abs(c["volume_error_ml"]) for c in cases])), **pooled}


# ------------------------------------------------------------------------------------------- the command


def _check_settings(threshold: float, prediction_kind: str, liver_labels: Sequence[int],
                    tumor_labels: Sequence[int], connectivity: int, min_overlap: float, affine_tolerance: float):
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
    if prediction_kind not in PREDICTION_KINDS:
        raise ValueError(f"prediction_kind must be one of {PREDICTION_KINDS}, got {prediction_kind!r}")
    if not tumor_labels:
        raise ValueError("tumor_labels must name at least one label value: score measures tumors")
    if set(liver_labels) & set(tumor_labels):
        raise ValueError(f"liver_labels {tuple(liver_labels)} and tumor_labels {tuple(tumor_labels)} overlap")
    if connectivity not in CONNECTIVITY:
        raise ValueError(f"connectivity must be 6 or 26, got {connectivity!r}")
    if not 0 <= min_overlap <= 1:
        raise ValueError(f"min_overlap must be in [0, 1], got {min_overlap!r}")
    if not math.isfinite(affine_tolerance) or affine_tolerance < 0:
        raise ValueError(f"affine_tolerance must be a finite number >= 0, got {affine_tolerance!r}")


def score_folder(
    predictions: str | os.PathLike,
    truth: str | os.PathLike,
    out: str | os.PathLike,
    *,
    threshold: float = THRESHOLD,
    prediction_kind: str = "auto",
    liver_labels: Sequence[int] | None = None,
    tumor_labels: Sequence[int] | None = None,
    connectivity: int = 26,
    min_overlap: float = 0.0,
    affine_tolerance: float = AFFINE_TOLERANCE,
    allow_missing: bool = False,
) -> dict[str, Any]:
    """Score every prediction of ``predictions`` against its label map in ``truth``; write ``out/scores.json``
    and ``out/scores.md``.

    Args:
        predictions: folder of predicted NIfTI files (probability maps, LiTS label maps or tumor masks).
        truth: folder of ground-truth label maps (subfolders searched; ``volume-*`` files skipped).
        out: folder to write (created).
        threshold: tumor is ``probability > threshold``, in (0, 1).
        prediction_kind: ``"auto"``, ``"probability"``, ``"labels"`` or ``"mask"`` (module docstring).
        liver_labels, tumor_labels: ground-truth values (default LiTS: 1 and 2).
        connectivity: 26 or 6 neighbours for lesions.
        min_overlap: fraction of a true lesion's voxels the prediction must cover for it to be found (default:
            any voxel).
        affine_tolerance: largest difference (mm) allowed between a prediction's and its truth's affine entries.
        allow_missing: skip (and list) predictions without truth and truth without prediction.

    Returns:
        What ``scores.json`` holds: ``settings``, ``cases`` (a list), ``pooled``, ``unmatched``.
    """
    default_liver, default_tumor = DEFAULT_LABELS["lits"]
    liver_labels = tuple(int(v) for v in (default_liver if liver_labels is None else liver_labels))
    tumor_labels = tuple(int(v) for v in (default_tumor if tumor_labels is None else tumor_labels))
    _check_settings(threshold, prediction_kind, liver_labels, tumor_labels, connectivity, min_overlap,
                    affine_tolerance)
    pairs, unmatched = match_cases(Path(predictions), Path(truth), allow_missing)
    if prediction_kind == "auto":  # segment says what it wrote: a lesion-free label map is then no riddle
        prediction_kind = _kind_from_summary(Path(predictions)) or prediction_kind
    cases = []
    for name, pred_path, truth_path in pairs:
        scores = score_case(pred_path, truth_path, prediction_kind=prediction_kind, threshold=threshold,
                            liver_labels=liver_labels, tumor_labels=tumor_labels, connectivity=connectivity,
                            min_overlap=min_overlap, affine_tolerance=affine_tolerance)
        cases.append({"case": name, **scores})
    result = {
        "format": FORMAT, "version": FORMAT_VERSION,
        "settings": {"predictions": str(predictions), "truth": str(truth), "threshold": threshold,
                     "prediction_kind": prediction_kind, "liver_labels": list(liver_labels),
                     "tumor_labels": list(tumor_labels), "connectivity": connectivity, "min_overlap": min_overlap,
                     "affine_tolerance": affine_tolerance, "allow_missing": allow_missing,
                     "size_bins": list(SIZE_BINS)},
        "cases": cases,
        "pooled": _pooled(cases),
        "unmatched": unmatched,
    }
    _write(Path(out), result)
    return result


def _kind_from_summary(predictions: Path) -> str | None:
    """The kind of the predictions ``segment`` wrote into this folder, from its ``summary.json`` (``None``
    without one)."""
    summary = predictions / "summary.json"
    try:
        written = json.loads(summary.read_text()).get("output") if summary.is_file() else None
    except (OSError, ValueError, AttributeError):
        return None
    return {"labels": "labels", "probabilities": "probability"}.get(written)


@writes_folder("out", "score")  # one writer per folder; a full disk names it
def _write(out: Path, result: dict[str, Any]) -> None:
    text = markdown(result)
    atomic_write(out / SCORES_MD, lambda f: f.write(text.encode()))
    write_json(out / SCORES_JSON, result)  # last: a scores.json is always beside its table


def markdown(result: dict[str, Any]) -> str:
    """``scores.md``: the settings, one row per case and the pooled row."""
    s, p = result["settings"], result["pooled"]

    def num(v, digits=3):
        return "n/a" if v is None else f"{v:.{digits}f}"

    def row(name, dice, m):
        return (f"| {name} | {num(dice)} | {m['predicted_ml']:.2f} | {m['true_ml']:.2f} | {m['volume_error_ml']:+.2f} "
                f"| {num(m['volume_error_relative'], 2)} | {m['lesions']} | {m['found']} | {m['missed']} | "
                f"{m['false']} | {num(m['precision'])} | {num(m['recall'])} | {num(m['f1'])} |")

    lines = [
        "# Tumor segmentation scores (native voxel grid)", "",
        f"Predictions `{s['predictions']}` ({s['prediction_kind']}, threshold {s['threshold']:g}) against "
        f"`{s['truth']}` (tumor labels {s['tumor_labels']}). Lesions: {s['connectivity']}-connected components; "
        f"a true lesion is found when the prediction covers any of its voxels"
        + (f" and at least {s['min_overlap']:g} of them" if s["min_overlap"] else "")
        + "; a false lesion is a predicted component touching no found lesion. Dice of a case without tumor in "
          "truth and prediction: 1.", "",
        "| case | Dice | predicted mL | true mL | error mL | relative | lesions | found | missed | false | "
        "precision | recall | F1 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(row(c["case"], c["dice"], c) for c in result["cases"]),
        row(f"**pooled ({p['cases']} cases)**", p["dice_global"], p),
        "",
        f"Dice global (pooled voxels) {num(p['dice_global'])}; mean Dice per case {num(p['dice_per_case'])}; "
        f"mean absolute volume error {p['volume_error_ml_mean_abs']:.2f} mL.", "",
        "| lesion diameter | lesions | found | missed | recall | false |",
        "|---|---:|---:|---:|---:|---:|",
        *(f"| {name} | {b['lesions']} | {b['found']} | {b['missed']} | {num(b['recall'])} | {b['false']} |"
          for name, b in p["by_size"].items()),
    ]
    skipped = result["unmatched"]["predictions"] + result["unmatched"]["truth"]
    if skipped:
        lines += ["", f"Skipped without a partner (--allow-missing): {len(skipped)} file(s), listed in scores.json."]
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the ``score`` command."""
    parser.add_argument("--predictions", type=Path, required=True,
                        help="folder of predicted NIfTI files (probability maps, LiTS label maps or tumor masks)")
    parser.add_argument("--truth", type=Path, required=True,
                        help="folder of ground-truth label maps (subfolders searched; volume-* files skipped)")
    parser.add_argument("--out", type=Path, required=True, help="folder to write scores.json and scores.md in")
    parser.add_argument("--threshold", type=open_unit_interval, default=THRESHOLD,
                        help="tumor is probability > threshold (default: %(default)s)")
    parser.add_argument("--prediction-kind", choices=PREDICTION_KINDS, default="auto",
                        help="what the predictions hold (default: auto, decided per file from its values)")
    parser.add_argument("--liver-label", "--liver-labels", dest="liver_label", type=int, nargs="+",
                        help="liver value(s) of the ground truth (default: 1)")
    parser.add_argument("--tumor-label", "--tumor-labels", dest="tumor_label", type=int, nargs="+",
                        help="tumor value(s) of the ground truth (default: 2)")
    parser.add_argument("--connectivity", type=int, choices=sorted(CONNECTIVITY), default=26,
                        help="neighbours joining voxels into one lesion (default: %(default)s)")
    parser.add_argument("--min-overlap", type=unit_interval, default=0.0,
                        help="fraction of a true lesion the prediction must cover to find it (default: any voxel)")
    parser.add_argument("--affine-tol", type=non_negative_float, default=AFFINE_TOLERANCE,
                        help="largest prediction/truth affine difference, mm (default: %(default)s)")
    parser.add_argument("--allow-missing", action="store_true",
                        help="skip predictions without ground truth and truth without prediction (listed)")


def main(args: argparse.Namespace) -> int:
    """Run ``score`` from parsed arguments."""
    result = score_folder(args.predictions, args.truth, args.out, threshold=args.threshold,
                          prediction_kind=args.prediction_kind, liver_labels=args.liver_label,
                          tumor_labels=args.tumor_label, connectivity=args.connectivity,
                          min_overlap=args.min_overlap, affine_tolerance=args.affine_tol,
                          allow_missing=args.allow_missing)
    p = result["pooled"]

    def num(v):
        return "n/a" if v is None else f"{v:.3f}"

    print(f"{p['cases']} case(s): Dice global {num(p['dice_global'])}, mean per case {num(p['dice_per_case'])}; "
          f"lesions found {p['found']}/{p['lesions']}, false {p['false']} (precision {num(p['precision'])}, "
          f"recall {num(p['recall'])}); tumor volume {p['predicted_ml']:.1f} mL predicted, {p['true_ml']:.1f} mL "
          "true")
    for kind, files in result["unmatched"].items():
        if files:
            print(f"skipped {len(files)} {kind} file(s) without a partner (listed in scores.json)")
    print(f"scores: {Path(args.out) / SCORES_MD}")
    return 0
