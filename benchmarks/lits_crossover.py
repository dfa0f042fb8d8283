"""Does a model trained on one healthy patient find lesions in another? The out-of-sample instrument of issue 22.

Two healthy real CT scans from two hospitals (``shared/data/chaos-ct3`` and ``shared/data/ircadb-07``), crossed both
ways: train with the ``cpu`` presets on one scan (``prepare`` + ``train``), then, on the *other* scan,

- insert realistic lesions (``lesions``: after Hu et al., CVPR 2023, in HU and mm; ``--copies`` draws of 1-3
  lesions of every size and appearance, one fixed lesion seed per scan, the same for every training seed), and
- keep it untouched: every lesion predicted in its liver is a false one;

run ``segment`` on them in the scan's own voxel grid, and score the result lesion by lesion as ``score`` does
(3-D components; a true lesion is found when the prediction covers any of it; a predicted component that touches no
found lesion is false; sizes by equivalent-sphere diameter) and by pooled 3-D Dice. Every configuration is run for
every training seed (``--seeds``, at least 3), and the tables give mean +- std over the seeds.

The probability maps are kept (``OUT/<direction>/seed<k>/maps/``), so the lesion outputs (threshold rule and
post-processing) are compared on the same trained models: ``--outputs`` names them.

    python benchmarks/lits_crossover.py --out runs/crossover                   # both directions, seeds 0 1 2
    python benchmarks/lits_crossover.py --out runs/crossover --directions chaos:ircadb --seeds 0

Run it on a quiet machine (2 threads; about 7 minutes of training per seed and direction on 2 cores). Nothing
derived from ircadb-07 may leave this machine (its licence): the work folder stays local, the tables hold figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere: examples/ is not installed

from examples.lits.calibrate import calibration_record  # noqa: E402
from examples.lits.dataset import load_slices  # noqa: E402
from examples.lits.lesion_output import LesionOutput  # noqa: E402
from examples.lits.lesions import make_lesion_set  # noqa: E402
from examples.lits.prepare import prepare  # noqa: E402
from examples.lits.preprocess import PREPARE_PRESETS  # noqa: E402
from examples.lits.runs import load_run  # noqa: E402
from examples.lits.score import SIZE_BINS, match_lesions  # noqa: E402
from examples.lits.segment import segment_folder  # noqa: E402
from examples.lits.settings import PRESETS  # noqa: E402
from examples.lits.train import member_seed, train  # noqa: E402
from pseudoanomaly.models import EnsembleSegmenter  # noqa: E402
from pseudoanomaly.training import retain_freed_memory  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SCANS = {"chaos": "chaos-ct3", "ircadb": "ircadb-07"}
HEALTHY = "healthy"  # the case name of the untouched test scan
LESION_SEED = 22  # one lesion draw per test scan, the same for every training seed and configuration


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def test_cases(out: Path, test_scan: Path, copies: int) -> dict[str, tuple[Path, Path, Path | None]]:
    """``{case: (scan, liver mask, lesion label map or None)}``: the lesion copies of ``test_scan`` and itself."""
    lesions = out / "lesions"
    if not (lesions / "lesions.json").is_file():
        make_lesion_set("pair", None, lesions, image=test_scan / "ct.nii.gz", mask=test_scan / "liver.nii.gz",
                        copies=copies, seed=LESION_SEED, progress=False)
    livers = out / "livers"
    livers.mkdir(exist_ok=True)
    cases: dict[str, tuple[Path, Path, Path | None]] = {}
    manifest = json.loads((lesions / "lesions.json").read_text())
    for entry in manifest["volumes"]:
        case = entry["volume"].removesuffix(".nii.gz")
        label = lesions / entry["segmentation"]
        liver = livers / f"{case}.nii.gz"
        if not liver.is_file():
            image = nib.load(label)
            nib.save(nib.Nifti1Image((np.asarray(image.dataobj) > 0).astype(np.uint8), image.affine, image.header),
                     liver)
        cases[case] = (lesions / entry["volume"], liver, label)
    cases[HEALTHY] = (test_scan / "ct.nii.gz", test_scan / "liver.nii.gz", None)
    return cases


def segment_cases(run: Path, cases: dict[str, tuple[Path, Path, Path | None]], maps: Path) -> None:
    """Probability maps of every case into ``maps/<case>.nii.gz`` (through ``segment``'s folder mode)."""
    if all((maps / f"{case}.nii.gz").is_file() for case in cases):
        return
    inputs, livers = maps.parent / "inputs", maps.parent / "input_livers"
    for folder in (inputs, livers):
        folder.mkdir(parents=True, exist_ok=True)
    for case, (scan, liver, _) in cases.items():
        for link, target in ((inputs / f"{case}.nii.gz", scan), (livers / f"{case}.nii.gz", liver)):
            if not link.exists():
                os.symlink(target.resolve(), link)
    segment_folder(run, inputs, maps, livers=livers, device="cpu", output="probabilities", print_fn=lambda line: None)


# name -> (members per model, threshold, min lesion volume mm3, grow, smoothing across slices in mm) of the
# configurations compared. Members: one
# run, or the ensemble of K runs of seeds K*s .. K*s + K-1 (train --ensemble K --seed s: its members are these plain
# runs, bit for bit, tests/examples/test_lits_calibration.py). Threshold: a fixed probability, or "F=f": the model's
# threshold calibrated on its training livers for a healthy false-positive share f, as train records it (never below
# 0.5). Grow: "auto" (lesions grow to 0.5 when the threshold is above it) or None.
CONFIGURATIONS: dict[str, tuple[int, float | str, float, str | None, float]] = {
    "one run, p > 0.5 voxel-wise (before)": (1, 0.5, 0.0, None, 0.0),
    "one run, p > 0.5, >= 125 mm3": (1, 0.5, 125.0, None, 0.0),
    "one run, F=0.001, >= 125 mm3, smoothed 2 mm": (1, "F=0.001", 125.0, None, 2.0),
    "ensemble 2, p > 0.5 voxel-wise": (2, 0.5, 0.0, None, 0.0),
    "ensemble 2, p > 0.5, >= 125 mm3": (2, 0.5, 125.0, None, 0.0),
    "ensemble 2, p > 0.5, >= 125 mm3, smoothed 2 mm": (2, 0.5, 125.0, None, 2.0),
    "ensemble 2, F=0.001, >= 125 mm3": (2, "F=0.001", 125.0, None, 0.0),
    "ensemble 2, F=0.01, >= 125 mm3, smoothed 2 mm": (2, "F=0.01", 125.0, None, 2.0),
    "ensemble 2, F=0.003, >= 125 mm3, smoothed 2 mm": (2, "F=0.003", 125.0, None, 2.0),
    "ensemble 2, F=0.001, >= 125 mm3, smoothed 2 mm": (2, "F=0.001", 125.0, None, 2.0),
    "ensemble 2, F=0.001, >= 125 mm3, smoothed 2 mm, grown to 0.5": (2, "F=0.001", 125.0, "auto", 2.0),
    "ensemble 2, F=0.001, >= 250 mm3, smoothed 2 mm": (2, "F=0.001", 250.0, None, 2.0),
    "ensemble 2, F=0.0003, >= 125 mm3, smoothed 2 mm": (2, "F=0.0003", 125.0, None, 2.0),
}
FIGURES = ("dice", "recall", "recall_10mm", "false_per_scan", "false_healthy", "threshold")


def _load(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    image = nib.load(path)
    return np.asarray(image.dataobj), tuple(float(s) for s in nib.affines.voxel_sizes(image.affine))


def _slice_axis(path: Path) -> int:
    return int(np.flatnonzero(nib.orientations.io_orientation(nib.load(path).affine)[:, 0] == 2)[0])


def model_maps(work: Path, members: list[int], cases: dict[str, Any]) -> Path:
    """The probability maps of a model: one run's, or the mean of its members' (the ensemble's map: the maps go
    back to the scan's grid by linear interpolation, so the mean of the members' equals the ensemble's up to float
    rounding)."""
    if len(members) == 1:
        return work / f"seed{members[0]}" / "maps"
    folder = work / ("ensemble_" + "_".join(map(str, members))) / "maps"
    folder.mkdir(parents=True, exist_ok=True)
    for case in cases:
        if not (folder / f"{case}.nii.gz").is_file():
            images = [nib.load(work / f"seed{m}" / "maps" / f"{case}.nii.gz") for m in members]
            mean = sum(np.asarray(i.dataobj, np.float32) for i in images) / len(images)
            nib.save(nib.Nifti1Image(mean.astype(np.float32), images[0].affine, images[0].header),
                     folder / f"{case}.nii.gz")
    return folder


def calibrations(work: Path, members: list[int], prepared: Path, keys: set[tuple[float, float]]
                 ) -> dict[tuple[float, float], float]:
    """The model's threshold for each (false-positive share, smoothing), calibrated on its training slices as
    train does."""
    loaded = [load_run(work / f"seed{m}" / "run", "cpu") for m in members]
    segmenter = loaded[0][0] if len(loaded) == 1 else EnsembleSegmenter([seg for seg, _ in loaded])
    healthy = load_slices(prepared, int(loaded[0][1]["size"]))
    return {(f, sm): calibration_record(segmenter, healthy, f, "training", prepared, sm)["threshold"]
            for f, sm in sorted(keys)}


def score_outputs(maps: Path, cases: dict[str, tuple[Path, Path, Path | None]],
                  outputs: dict[str, LesionOutput]) -> dict[str, dict[str, Any]]:
    """Lesion-wise and Dice figures of each lesion output on every test case (each map read once)."""
    totals = {name: {"found": 0, "missed": 0, "false_lesion_scans": 0, "false_healthy": 0, "overlap": 0,
                     "predicted": 0, "true": 0, "found_10mm": 0, "lesions_10mm": 0, "lesion_scans": 0,
                     "false_by_size": dict.fromkeys(SIZE_BINS, 0)} for name in outputs}
    for case, (_, liver_path, label) in cases.items():
        probability, spacing = _load(maps / f"{case}.nii.gz")
        axis = _slice_axis(maps / f"{case}.nii.gz")
        liver, _ = _load(liver_path)
        box = tuple(slice(max(int(i.min()) - 1, 0), int(i.max()) + 2) for i in np.nonzero(liver))  # the map is 0
        probability = probability[box]                                                          # outside it
        truth = np.zeros(probability.shape, bool) if label is None else np.asarray(nib.load(label).dataobj)[box] == 2
        for name, output in outputs.items():
            pred = output.apply(probability, spacing, axis)
            lesions = match_lesions(pred, truth, float(np.prod(spacing)))
            t = totals[name]
            if label is None:
                t["false_healthy"] += lesions.false
                continue
            t["lesion_scans"] += 1
            t["found"] += lesions.found
            t["missed"] += lesions.lesions - lesions.found
            t["false_lesion_scans"] += lesions.false
            for size, (n, f, fp) in lesions.by_size.items():
                t["false_by_size"][size] += fp
                if size != SIZE_BINS[0]:  # >= 10 mm
                    t["found_10mm"] += f
                    t["lesions_10mm"] += n
            t["overlap"] += int((pred & truth).sum())
            t["predicted"] += int(pred.sum())
            t["true"] += int(truth.sum())
    return {name: {"threshold": outputs[name].threshold, "dice": 2 * t["overlap"] / (t["predicted"] + t["true"]),
                   "found": t["found"], "missed": t["missed"], "recall": t["found"] / (t["found"] + t["missed"]),
                   "recall_10mm": t["found_10mm"] / t["lesions_10mm"] if t["lesions_10mm"] else None,
                   "lesions_10mm": t["lesions_10mm"], "false_per_scan": t["false_lesion_scans"] / t["lesion_scans"],
                   "false_by_size": t["false_by_size"], "false_healthy": t["false_healthy"]}
            for name, t in totals.items()}


def lesion_output(rule: float | str, min_volume: float, grow: str | None, smoothing: float,
                  thresholds: dict[tuple[float, float], float]) -> LesionOutput:
    if isinstance(rule, str):
        fraction = float(rule.split("=")[1])
        meta = {"calibration": {"threshold": thresholds[fraction, smoothing], "source": "training",
                                "false_positive_fraction": fraction}}
        return LesionOutput.resolve(meta, "auto", min_volume, grow, smoothing)
    return LesionOutput.resolve({}, float(rule), min_volume, grow, smoothing)


def score_direction(work: Path, prepared: Path, cases: dict[str, Any], seeds: list[int]) -> list[dict[str, Any]]:
    """Every configuration's figures for every model seed whose member runs are all in ``seeds``."""
    rows = []
    for members_per_model in sorted({c[0] for c in CONFIGURATIONS.values()}):
        chosen = {name: c for name, c in CONFIGURATIONS.items() if c[0] == members_per_model}
        keys = {(float(rule.split("=")[1]), smoothing) for _, rule, _, _, smoothing in chosen.values()
                if isinstance(rule, str)}
        model = 0
        while all(member_seed(model, k, members_per_model) in seeds for k in range(members_per_model)):
            members = [member_seed(model, k, members_per_model) for k in range(members_per_model)]
            thresholds = calibrations(work, members, prepared, keys)
            outputs = score_outputs(model_maps(work, members, cases), cases,
                                    {name: lesion_output(rule, volume, grow, smoothing, thresholds)
                                     for name, (_, rule, volume, grow, smoothing) in chosen.items()})
            rows += [{"configuration": name, "seed": model, "members": members, **figures}
                     for name, figures in outputs.items()]
            model += 1
    return rows


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{configuration: {direction or "both": {figure: (mean, std, n)}}}`` over model seeds; "both" averages each
    seed's two directions first."""
    table: dict[str, dict[str, Any]] = {}
    directions = sorted({r["direction"] for r in rows})
    for name in CONFIGURATIONS:
        mine = [r for r in rows if r["configuration"] == name]
        scopes: dict[str, dict[int, list[dict[str, Any]]]] = {}
        for r in mine:
            scopes.setdefault(r["direction"], {}).setdefault(r["seed"], []).append(r)
            scopes.setdefault("both", {}).setdefault(r["seed"], []).append(r)
        for scope, by_seed in scopes.items():
            if scope == "both":  # only seeds measured in every direction
                by_seed = {s: v for s, v in by_seed.items() if len(v) == len(directions)}
            entry = {}
            for key in FIGURES:
                values = [statistics.fmean(x[key] for x in v if x[key] is not None) for v in by_seed.values()
                          if any(x[key] is not None for x in v)]
                if values:
                    entry[key] = (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0,
                                  len(values))
            table.setdefault(name, {})[scope] = entry
    return table


def markdown(table: dict[str, dict[str, Any]]) -> str:
    head = ("| configuration | scope | seeds | pooled 3-D Dice | recall | recall >= 10 mm | false per lesion scan | "
            "false on the healthy scan | threshold |")
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for name, scopes in table.items():
        for scope, entry in scopes.items():
            if not entry:
                continue
            n = entry["dice"][2]
            cells = []
            for key, scale, digits in (("dice", 100, 1), ("recall", 1, 2), ("recall_10mm", 1, 2),
                                       ("false_per_scan", 1, 1), ("false_healthy", 1, 1), ("threshold", 1, 3)):
                mean, std, _ = entry[key]
                cells.append(f"{scale * mean:.{digits}f} +- {scale * std:.{digits}f}")
            lines.append(f"| {name} | {scope} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/crossover"), help="work folder (kept: reruns reuse "
                        "its lesion sets, runs and maps)")
    parser.add_argument("--data", type=Path, default=DATA, help="folder holding chaos-ct3/ and ircadb-07/")
    parser.add_argument("--directions", nargs="+", default=["chaos:ircadb", "ircadb:chaos"],
                        help="TRAIN:TEST pairs of scan names (chaos, ircadb)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4, 5],
                        help="seeds of the runs to train (ensembles of K are formed from seeds K*s .. K*s + K-1 when "
                             "all are given)")
    parser.add_argument("--copies", type=int, default=6, help="lesion draws of the test scan")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu", help="train preset")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    retain_freed_memory()
    torch.set_num_threads(args.threads)
    config = PREPARE_PRESETS["cpu"]
    record: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "cpu": _cpu(), "threads": args.threads,
                              "torch": torch.__version__, "preset": args.preset, "seeds": args.seeds,
                              "copies": args.copies, "runs": []}
    for direction in args.directions:
        train_name, test_name = direction.split(":")
        train_scan, test_scan = args.data / SCANS[train_name], args.data / SCANS[test_name]
        work = args.out / f"{train_name}_to_{test_name}"
        prepared = work / "prepared"
        if not (prepared / "manifest.json").is_file():
            prepare("pair", None, prepared, config, image=train_scan / "ct.nii.gz", mask=train_scan / "liver.nii.gz",
                    progress=False)
        cases = test_cases(work, test_scan, args.copies)
        for seed in args.seeds:
            run = work / f"seed{seed}" / "run"
            seconds = None
            if not (run / "segmenter.pt").is_file():
                settings = PRESETS[args.preset].replace(seed=seed, device="cpu", ensemble=1)  # one member
                result = train(prepared, run, settings, preset=args.preset, progress=False)
                seconds = round(result.seconds, 1)
            start = time.perf_counter()
            maps = work / f"seed{seed}" / "maps"
            segment_cases(run, cases, maps)
            segment_s = round(time.perf_counter() - start, 1)
            record["runs"].append({"direction": direction, "seed": seed, "train_s": seconds, "segment_s": segment_s})
            print(json.dumps(record["runs"][-1]), flush=True)
        record.setdefault("rows", []).extend({"direction": direction, **row}
                                             for row in score_direction(work, prepared, cases, args.seeds))
    record["summary"] = summarize(record["rows"])
    (args.out / "crossover.md").write_text(markdown(record["summary"]))
    print(markdown(record["summary"]))
    (args.out / "runs.json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
