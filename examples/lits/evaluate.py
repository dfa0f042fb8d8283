"""``evaluate``: score a trained run on prepared tumor slices, as the paper does, and write the report.

    python -m examples.lits evaluate --run runs/cpu --data prepared/test --out reports/cpu

Metrics and label-free baselines: :mod:`examples.lits.scoring`. The slices are scored at the run's training size
(labels resized with nearest neighbour by ``load_prepared``).

Next to the paper's voxel-wise figures at 0.5, the report scores the lesion output that ``segment`` writes
(:mod:`examples.lits.lesion_output`: the map smoothed across slices, the run's calibrated threshold, lesions of at
least ``--min-lesion-mm3``), lesion by lesion: each volume's slices are stacked in their order into a 3-D grid at
the prepared resolution, and lesions are found, missed or false as ``score`` counts them; the label-free rules get
the same minimum volume.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pseudoanomaly.metrics import best_dice_oracle, dice_per_volume

from . import report
from .arguments import add_inference_arguments
from .dataset import load_slices
from .lesion_output import LesionOutput, add_lesion_arguments, lesion_settings
from .locking import writes_folder
from .runs import HISTORY_FILE, INFER_BATCH, load_run, pick_device, write_json
from .scoring import (
    DARK_RULE_FRACTION,
    THRESHOLD,
    baseline_metrics,
    darkness_scores,
    headline,
    lesion_metrics,
    score_maps,
)

__all__ = ["evaluate", "add_arguments", "main"]

FIG_EXAMPLES = "fig2_examples.png"
FIG_HISTORY = "fig3_phase2_history.png"


@writes_folder("out", "evaluate")  # one writer per report folder; a full disk names it
def evaluate(
    run: str | os.PathLike,
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    device: str = "auto",
    batch_size: int = INFER_BATCH,
    precision: str = "fp32",
    threshold: float | str = "auto",
    min_lesion_mm3: float | None = None,
    grow_threshold: float | str | None = None,
    slice_smoothing_mm: float | None = None,
) -> dict[str, Any]:
    """Score the run's segmenter on the prepared tumor slices in ``data``; write ``out/metrics.json``, the
    figures and ``out/report.md``.

    Args:
        run: a run folder written by ``train``.
        data: a ``prepare`` output with tumor labels (e.g. LiTS).
        out: report folder (created).
        device: where inference runs (``"auto"``: CUDA when available).
        batch_size: slices per forward pass.
        precision: ``"fp32"``, or ``"bf16"`` (bfloat16 autocast, channels-last nets; see ``--precision``).
        threshold, min_lesion_mm3, grow_threshold, slice_smoothing_mm: the lesion output's settings
            (:meth:`~examples.lits.lesion_output.LesionOutput.resolve`).

    Returns:
        The metrics written to ``metrics.json``.
    """
    start = time.perf_counter()
    device = pick_device(device)
    segmenter, meta = load_run(run, device, batch_size, precision)
    output = LesionOutput.resolve(meta, threshold, min_lesion_mm3, grow_threshold, slice_smoothing_mm)
    test = load_slices(data, meta["size"])
    if not bool(test.tumor.any()):
        raise ValueError(f"{data}: no tumor pixels in these slices; evaluate needs a tumor data set (prepare "
                         "--layout lits)")
    liver_ml = (test.foreground.flatten(1).sum(1) * test.voxel_mm.prod(dim=1)).sum().item() / 1000
    output.check_liver(liver_ml, f"{data} (all its volumes together)")
    maps = segmenter(test.images, test.foreground)  # (N, 1, S, S) on the CPU, in batches on the device
    ids = test.case_ids
    ours = score_maps(maps, test.tumor, test.foreground, ids)
    oracle = best_dice_oracle(maps[test.foreground], test.tumor[test.foreground])

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    has_tumor = test.tumor.flatten(1).any(1)
    metrics: dict[str, Any] = {
        "run": str(run),
        "data": str(data),
        "size": int(meta["size"]),
        "threshold": THRESHOLD,
        "n_slices": len(test),
        "n_volumes": len(test.cases),
        "n_tumor_slices": int(has_tumor.sum()),
        "tumor_fraction": float(test.tumor.sum() / test.foreground.sum()),
        **{k: v for k, v in ours.items() if k != "per_volume"},
        "per_volume": ours["per_volume"],
        "baselines": baseline_metrics(test.images, test.tumor, test.foreground, ids),
        "dice_best_threshold": {"dice": oracle.dice, "threshold": oracle.threshold},
        "lesions": _lesion_figures(maps, test, output),
        "warnings": _preprocessing_warnings(meta, test.manifest),
    }
    figures = _figures(out, run, segmenter, test, maps, has_tumor, device)
    metrics["figures"] = figures
    metrics["seconds"] = time.perf_counter() - start
    write_json(out / "metrics.json", metrics)
    report.write_markdown(out / "report.md", metrics, figures)
    return metrics


def _lesion_figures(maps: Tensor, test, output: LesionOutput) -> dict[str, Any]:
    """The lesion output's lesion-wise figures, and the label-free rules' with the same minimum volume."""
    def figures(scores: Tensor, lesions: LesionOutput) -> dict[str, Any]:
        return lesion_metrics(scores, test.tumor, test.foreground, test.case_ids, test.slice_index, test.voxel_mm,
                              lambda volume, spacing: lesions.apply(volume, spacing, axis=0))

    dark = darkness_scores(test.images, test.foreground)
    rules = {"all-liver": (test.foreground.float(), THRESHOLD),
             f"darkest-{round(100 * DARK_RULE_FRACTION)}%": (dark, 1 - DARK_RULE_FRACTION)}
    return {"settings": {**output.to_dict(), "described": output.describe()},
            "ours": figures(maps, output),
            "baselines": {name: figures(scores, LesionOutput(cut, "rule", output.min_volume_mm3, smoothing_mm=0))
                          for name, (scores, cut) in rules.items()}}


def _preprocessing_warnings(meta: dict[str, Any], manifest: dict[str, Any]) -> list[str]:
    """Differences between the training and test preprocessing (other than the slice size)."""
    trained, tested = dict(meta.get("prepare_config") or {}), dict(manifest.get("config") or {})
    trained.pop("size", None)
    tested.pop("size", None)
    if not trained or trained == tested:
        return []
    diff = sorted(k for k in set(trained) | set(tested) if trained.get(k) != tested.get(k))
    return ["test data prepared with different settings than the training data: " +
            ", ".join(f"{k} {trained.get(k)!r} (train) vs {tested.get(k)!r} (test)" for k in diff)]


def _figures(out: Path, run, segmenter, test, maps: Tensor, has_tumor: Tensor, device: str) -> list[str]:
    figures = []
    slice_dice = dice_per_volume(maps, test.tumor, list(range(len(maps))), THRESHOLD).per_volume
    ranking = np.array([slice_dice[i] for i in range(len(maps))])
    rows = report.pick_examples(ranking, has_tumor.numpy())
    if rows:
        with torch.no_grad():
            restored = segmenter.eval().restoration(test.images[rows].to(device)).float().cpu().clamp(0, 1)
        restored = restored * test.foreground[rows]  # as the net sees it: the liver ROI
        ids = test.case_ids
        titles = [f"{ids[i]} z{int(test.slice_index[i])}\nDice {100 * ranking[i]:.0f}" for i in rows]
        box = report.liver_box(test.foreground[rows, 0].numpy())  # whole slices: zoom on the livers shown
        panels = [a[:, box[0]:box[1], box[2]:box[3]] for a in (
            test.images[rows, 0].numpy(), restored[:, 0].numpy(), maps[rows, 0].numpy(), test.tumor[rows, 0].numpy())]
        report.plot_examples(out / FIG_EXAMPLES, *panels, titles, THRESHOLD)
        figures.append(FIG_EXAMPLES)
    run_dir = Path(run) if Path(run).is_dir() else Path(run).parent  # --run may name the segmenter.pt file
    history_file = run_dir / HISTORY_FILE
    history = json.loads(history_file.read_text()) if history_file.is_file() else []
    if report.plot_history(out / FIG_HISTORY, history) is not None:
        figures.append(FIG_HISTORY)
    return figures


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the ``evaluate`` command."""
    parser.add_argument("--run", type=Path, required=True, help="run folder written by train")
    parser.add_argument("--data", type=Path, required=True, help="prepared tumor slices (prepare --layout lits)")
    parser.add_argument("--out", type=Path, required=True, help="report folder to write")
    add_lesion_arguments(parser, "the lesion output's threshold in (0, 1) (default: auto, the run's threshold "
                                 "calibrated on healthy livers); the paper's voxel-wise figures stay at 0.5")
    add_inference_arguments(parser, INFER_BATCH)


def main(args: argparse.Namespace) -> int:
    """Run ``evaluate`` from parsed arguments."""
    metrics = evaluate(args.run, args.data, args.out, device=args.device, batch_size=args.batch_size,
                       precision=args.precision, **lesion_settings(args))
    print(headline(metrics))
    for warning in metrics["warnings"]:
        print(f"warning: {warning}")
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0
