"""``evaluate``: score a trained run on prepared tumor slices, as the paper does, and write the report.

    python -m examples.lits evaluate --run runs/cpu --data prepared/test --out reports/cpu

Metrics (maps binarized at 0.5, the segmentation net's decision boundary; nothing is tuned on the test data):

- ``dice_global``: Dice pooled over every pixel of every slice, the paper's metric (Zhang, Deng & Li, SASHIMI
  2023, Table 1: 53.03 on LiTS);
- ``dice_per_volume``: Dice of each volume, averaged over volumes (``per_volume`` lists them);
- ``pixel_auroc`` / ``pixel_ap``: pixel-level ranking quality inside the liver;
- ``image_auroc``: slice-level detection (does the slice hold tumor?) over liver slices, the slice score being
  the map's maximum (the paper's image-level score);
- ``baselines``: the same metrics for rules that need no training and no labels, for scale: all-zero,
  all-liver, and ``darkest-10%`` (the darkest :data:`DARK_RULE_FRACTION` of each slice's liver pixels, the
  simplest rule for hypodense tumors; its score ranks each slice's liver pixels from bright to dark). A model
  that does not beat these has learned nothing a reader could not get for free;
- ``dice_best_threshold``: the best pooled Dice over thresholds chosen *with* the labels: a diagnostic of the
  calibration, never a result.

The slices are scored at the run's training size (labels resized with nearest neighbour by ``load_prepared``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pseudoanomaly.metrics import auroc, average_precision, best_dice_oracle, dice, dice_per_volume, image_scores

from . import report
from .arguments import device as device_arg
from .arguments import positive_int
from .locking import writes_folder
from .train import HISTORY_FILE, load_run, load_slices, resolve_device

__all__ = ["THRESHOLD", "DARK_RULE_FRACTION", "evaluate", "score_maps", "predict", "darkness_scores",
           "baseline_metrics", "add_arguments", "main"]

# Zhang et al.'s evaluation binarizes the anomaly map at 0.5 (reference evaluation.py).
THRESHOLD = 0.5
# The intensity rule flags this fraction of each slice's liver, the darkest pixels. Fixed by us before any
# measurement (about the tumor share of the liver on LiTS's tumor slices), never tuned on test labels.
DARK_RULE_FRACTION = 0.10
# Images per forward pass at inference.
INFER_BATCH = 32
FIG_EXAMPLES = "fig2_examples.png"
FIG_HISTORY = "fig3_phase2_history.png"


@torch.no_grad()
def predict(segmenter: torch.nn.Module, images: Tensor, foreground: Tensor, device: str = "cpu",
            batch_size: int = INFER_BATCH) -> Tensor:
    """Tumor probability maps ``(N, 1, S, S)`` on the CPU, 0 outside ``foreground``, computed in batches."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    maps = torch.empty(images.shape, dtype=torch.float32)
    for s in range(0, len(images), batch_size):
        chunk = slice(s, s + batch_size)
        maps[chunk] = segmenter(images[chunk].to(device), foreground[chunk].to(device)).float().cpu()
    return maps


def darkness_scores(images: Tensor, foreground: Tensor) -> Tensor:
    """Per-slice darkness rank of every liver pixel: the fraction of the slice's liver pixels at least as bright.

    The darkest pixels of a slice score 1, the brightest ``1 / n``; 0 outside the liver. Thresholding at
    ``1 - q`` flags the darkest fraction ``q`` of each slice's liver (ties at the cut all go in).

    Shape:
        - images, foreground: :math:`(N, 1, S, S)`; output :math:`(N, 1, S, S)` float32.
    """
    scores = torch.zeros(images.shape, dtype=torch.float32)
    for i in range(len(images)):
        inside = foreground[i, 0]
        values = images[i, 0][inside].float()
        if values.numel() == 0:
            continue
        ordered = values.sort().values
        # pixels at least as bright as v: n - (number strictly darker than v)
        darker = torch.searchsorted(ordered, values, side="left")
        scores[i, 0][inside] = (values.numel() - darker).float() / values.numel()
    return scores


def baseline_metrics(images: Tensor, labels: Tensor, foreground: Tensor,
                     volume_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The metrics of :func:`score_maps` for the label-free rules of the module docstring."""
    dark = darkness_scores(images, foreground)
    rules = {
        "all-zero": (torch.zeros(images.shape), THRESHOLD),
        "all-liver": (foreground.float(), THRESHOLD),
        f"darkest-{round(100 * DARK_RULE_FRACTION)}%": (dark, 1 - DARK_RULE_FRACTION),
    }
    out = {}
    for name, (maps, threshold) in rules.items():
        scores = score_maps(maps, labels, foreground, volume_ids, threshold)
        out[name] = {k: v for k, v in scores.items() if k != "per_volume"}
    return out


def _two_classes(labels: Tensor) -> bool:
    return bool(labels.any()) and not bool(labels.all())


def score_maps(maps: Tensor, labels: Tensor, foreground: Tensor, volume_ids: Sequence[str],
               threshold: float = THRESHOLD) -> dict[str, Any]:
    """The metrics of the module docstring for one set of maps (AUROC/AP ``None`` when undefined).

    Shape:
        - maps: :math:`(N, 1, S, S)` float; labels, foreground: :math:`(N, 1, S, S)` bool; volume_ids: N.
    """
    per_volume = dice_per_volume(maps, labels, list(volume_ids), threshold)
    binary = maps > threshold
    inside_scores, inside_labels = maps[foreground], labels[foreground]
    liver_slices = foreground.flatten(1).any(1)
    slice_scores = image_scores(maps[liver_slices])
    slice_labels = labels[liver_slices].flatten(1).any(1)
    pixel_ok, slice_ok = _two_classes(inside_labels), _two_classes(slice_labels)
    return {
        "dice_global": dice(maps, labels, threshold),
        "predicted_fraction": float(binary[foreground].float().mean()) if bool(foreground.any()) else None,
        "dice_per_volume": per_volume.mean,
        "pixel_auroc": auroc(inside_scores, inside_labels) if pixel_ok else None,
        "pixel_ap": average_precision(inside_scores, inside_labels) if pixel_ok else None,
        "image_auroc": auroc(slice_scores, slice_labels) if slice_ok else None,
        "per_volume": per_volume.per_volume,
    }


@writes_folder("out", "evaluate")  # one writer per report folder; a full disk names it
def evaluate(
    run: str | os.PathLike,
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    device: str = "auto",
    batch_size: int = INFER_BATCH,
) -> dict[str, Any]:
    """Score the run's segmenter on the prepared tumor slices in ``data``; write ``out/metrics.json``, the
    figures and ``out/report.md``.

    Args:
        run: a run folder written by ``train``.
        data: a ``prepare`` output with tumor labels (e.g. LiTS).
        out: report folder (created).
        device: where inference runs (``"auto"``: CUDA when available).
        batch_size: slices per forward pass.

    Returns:
        The metrics written to ``metrics.json``.
    """
    start = time.perf_counter()
    device = resolve_device(device)
    segmenter, meta = load_run(run, device)
    test = load_slices(data, meta["size"])
    if not bool(test.tumor.any()):
        raise ValueError(f"{data}: no tumor pixels in these slices; evaluate needs a tumor data set (prepare "
                         "--layout lits)")
    maps = predict(segmenter, test.images, test.foreground, device, batch_size)
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
        "warnings": _preprocessing_warnings(meta, test.manifest),
    }
    figures = _figures(out, run, segmenter, test, maps, has_tumor, device)
    metrics["figures"] = figures
    metrics["seconds"] = time.perf_counter() - start
    (out / "metrics.json").write_text(json.dumps(_finite(metrics), indent=1, allow_nan=False) + "\n")
    report.write_markdown(out / "report.md", metrics, figures)
    return metrics


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


def _finite(value: Any) -> Any:
    """NaN/Inf -> None, recursively (strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def headline(metrics: dict[str, Any]) -> str:
    """A few lines for the terminal: our Dice and AUROCs next to the label-free baselines."""
    b = metrics["baselines"]
    names = list(b)

    def pct(v):
        return "  n/a" if v is None else f"{100 * v:5.1f}"

    widths = [max(len(n) + 2, 8) for n in names]
    lines = [f"{'':24}{'ours':>7}" + "".join(f"{n:>{w}}" for n, w in zip(names, widths))]
    for key, label in (("dice_global", "Dice (pooled, paper)"), ("dice_per_volume", "Dice (mean per volume)"),
                       ("pixel_auroc", "pixel AUROC (liver)"), ("image_auroc", "slice AUROC")):
        lines.append(f"{label:24}{pct(metrics[key]):>7}" + "".join(f"{pct(b[n][key]):>{w}}"
                                                                    for n, w in zip(names, widths)))
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the ``evaluate`` command."""
    parser.add_argument("--run", type=Path, required=True, help="run folder written by train")
    parser.add_argument("--data", type=Path, required=True, help="prepared tumor slices (prepare --layout lits)")
    parser.add_argument("--out", type=Path, required=True, help="report folder to write")
    parser.add_argument("--device", type=device_arg, default="auto", help="auto (default), cpu, cuda, ...")
    parser.add_argument("--batch-size", type=positive_int, default=INFER_BATCH, help="slices per forward pass")


def main(args: argparse.Namespace) -> int:
    """Run ``evaluate`` from parsed arguments."""
    metrics = evaluate(args.run, args.data, args.out, device=args.device, batch_size=args.batch_size)
    print(headline(metrics))
    for warning in metrics["warnings"]:
        print(f"warning: {warning}")
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0
