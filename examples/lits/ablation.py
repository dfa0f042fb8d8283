"""``ablation``: the rows of the paper's Table 2 trained and tested over several seeds.

    python -m examples.lits ablation --train prepared/train --test prepared/test --out ablation --preset cpu

Zhang, Deng & Li (SASHIMI 2023, Table 2) go from DRAEM to their method one change at a time: two-phase training,
their synthesis, their restoration U-Net (rows in :func:`pseudoanomaly.training.table2_rows`). Each row is
trained with the preset's nets, slice size, batch, learning rate and step budget, for every seed, and scored on
the test slices as ``evaluate`` does; ``ablation.md`` / ``ablation.json`` give mean +- standard deviation over the
seeds.

Budgets: two-phase rows run the preset's phase lengths; DRAEM's joint rows get the same total number of steps
(phase 1 + phase 2), so every row sees as many synthesized batches. Each row keeps its trainer's own loss
(two-phase: L1; joint: DRAEM's L2 + SSIM with its lr steps). DRAEM's autoencoder is twice as wide as the U-Net,
as in the released nets (128 vs 64 channels).

Each finished (row, seed) is saved under ``OUT/cells/``; re-running the same command skips those, so an
interrupted ablation resumes at the next cell.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from pseudoanomaly.training import TABLE2_ROWS, TrainerConfig, ablation_row

from pseudoanomaly.io import atomic_write

from .arguments import positive_int
from .dataset import load_slices
from .locking import writes_folder
from .runs import INFER_BATCH, pick_device, write_json
from .scoring import THRESHOLD, baseline_metrics, score_maps
from .settings import TrainSettings, add_settings_arguments, settings_from_args

__all__ = ["run_ablation", "METRICS", "add_arguments", "main"]

# Metrics aggregated over seeds, in table order (the paper's Table 2 reports Dice).
METRICS = ("dice_global", "dice_per_volume", "pixel_auroc", "image_auroc")
# Training settings the cells ignore: each cell trains without evaluations or checkpoints, and is scored on --test
# once it is done (a finished cell is kept, and a rerun skips it).
UNUSED_SETTINGS = {
    "eval_every": "a cell is scored once, on --test, when it is trained",
    "eval_unit": "a cell is scored once, on --test, when it is trained",
    "checkpoint_every": "cells write no checkpoints; a finished cell is kept and skipped by a rerun",
    "synthesis": "each Table 2 row has its own synthesis, which is what the rows compare",
    "ensemble": "each cell is one run of one seed; --seeds gives the spread over seeds the rows are compared by",
}
LABELS = {"dice_global": "Dice (pooled)", "dice_per_volume": "Dice (per volume)", "pixel_auroc": "pixel AUROC",
          "image_auroc": "slice AUROC"}


def _row_trainer(name: str, settings: TrainSettings, seed: int, steps_per_epoch: int, progress: bool):
    """The Table 2 row ``name`` built by pseudoanomaly (its trainer, restoration net and synthesis) with the
    preset's nets and optimizer; returns ``(trainer, architecture, steps per phase)``."""
    row = ablation_row(name)
    arch = dataclasses.replace(settings.nets, restoration=row.restoration).architecture()
    restoration_kwargs = {k: v for k, v in arch["restoration"].items() if k != "type"}
    segmentation_kwargs = {**arch["segmentation"],
                           "channel_multipliers": tuple(arch["segmentation"]["channel_multipliers"])}
    shared = dict(seed=seed, batch_size=settings.batch_size, lr=settings.lr, device=pick_device(settings.device),
                  progress=progress, eval_every=0, out_dir=None, optimizer=settings.optimizer,
                  weight_decay=settings.weight_decay, precision=settings.precision, log_every=settings.log_every)
    # The preset's lr schedule, unless the row's trainer has one of its own (DRAEM's lr steps in JointConfig).
    if row.trainer.config_class().scheduler == TrainerConfig().scheduler:
        shared["scheduler"] = settings.scheduler
    trainer = row.build(restoration_kwargs=restoration_kwargs, segmentation_kwargs=segmentation_kwargs, **shared)
    phase1 = settings.restoration_max_steps
    phase1 = phase1 if phase1 is not None else settings.restoration_epochs * steps_per_epoch
    phase2 = settings.segmentation_max_steps
    phase2 = phase2 if phase2 is not None else settings.segmentation_epochs * steps_per_epoch
    # Every row sees as many synthesized batches: the preset's two phases, or their sum for a joint phase.
    budget = {"restoration": phase1, "segmentation": phase2, "joint": phase1 + phase2}
    return trainer, arch, {phase.name: budget[phase.name] for phase in trainer.phases}


@writes_folder("out", "ablation", subfolders=("cells",))
def run_ablation(
    train_dir: str | os.PathLike,
    test_dir: str | os.PathLike,
    out: str | os.PathLike,
    settings: TrainSettings,
    *,
    rows: list[str] | None = None,
    seeds: int = 3,
    progress: bool = True,
    log=print,
) -> dict[str, Any]:
    """Train and score every (row, seed); write ``ablation.json`` and ``ablation.md`` in ``out``.

    Args:
        train_dir: prepared healthy slices.
        test_dir: prepared tumor slices.
        out: output folder.
        settings: nets, size and budget shared by every row (a ``train`` preset).
        rows: Table 2 row names (default: all, in the paper's order).
        seeds: seeds ``settings.seed, settings.seed + 1, ...``.
        progress: progress bars.
        log: called with a line of text after each cell.

    Returns:
        The content of ``ablation.json``.
    """
    rows = list(TABLE2_ROWS) if rows is None else list(rows)
    unknown = [r for r in rows if r not in TABLE2_ROWS]
    if unknown:
        raise ValueError(f"unknown ablation row(s) {unknown}; rows: {list(TABLE2_ROWS)}")
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    if settings.slab is not None:
        raise ValueError(f"slab={settings.slab}: the Table 2 rows train on single slices with each row's own "
                         "synthesis, as the paper; leave --slab out of ablation")
    train_set = load_slices(train_dir, settings.size, settings.max_slices)
    size = int(train_set.images.shape[-1])
    test = load_slices(test_dir, size)
    steps_per_epoch = len(train_set) // settings.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{train_dir}: {len(train_set)} slices, fewer than batch_size={settings.batch_size}")
    out = Path(out)
    cells_dir = out / "cells"
    cells_dir.mkdir(parents=True, exist_ok=True)
    key = {"settings": settings.to_dict(), "train": str(Path(train_dir).resolve()),
           "test": str(Path(test_dir).resolve()), "size": size}

    results: dict[str, list[dict[str, Any]]] = {}
    for name in rows:
        for seed in range(settings.seed, settings.seed + seeds):
            cell_file = cells_dir / f"{name}-seed{seed}.json"
            cell = json.loads(cell_file.read_text()) if cell_file.is_file() else None
            reused = cell is not None and cell.get("key") == key
            if not reused:
                start = time.perf_counter()
                trainer, arch, steps = _row_trainer(name, settings, seed, steps_per_epoch, progress)
                trainer.fit(train_set.train_dataset(), max_steps=steps)
                segmenter = trainer.export()
                segmenter.batch_size = INFER_BATCH
                maps = segmenter(test.images, test.foreground)  # (N, 1, S, S) on the CPU
                scores = score_maps(maps, test.tumor, test.foreground, test.case_ids)
                scores.pop("per_volume")
                cell = {"key": key, "row": name, "seed": seed, "architecture": arch,
                        "trainer": trainer.config.to_dict(), "steps": steps, "seconds": time.perf_counter() - start, **scores}
                write_json(cell_file, cell)
            results.setdefault(name, []).append(cell)
            when = f"done earlier, {cell_file}" if reused else f"{cell['seconds']:.0f} s"
            log(f"{name:28} seed {seed}: Dice {100 * cell['dice_global']:.2f} ({when})")

    summary = {
        "settings": settings.to_dict(),
        "size": size,
        "threshold": THRESHOLD,
        "seeds": list(range(settings.seed, settings.seed + seeds)),
        "train": str(train_dir),
        "test": str(test_dir),
        # rules that need neither training nor labels, on the same test slices, so the table shows at once
        # whether a row beats them
        "baselines": baseline_metrics(test.images, test.tumor, test.foreground, test.case_ids),
        "rows": {name: {"mean": _aggregate(cells, statistics.fmean),
                        "std": _aggregate(cells, _std),
                        "cells": [{k: c[k] for k in ("seed", "seconds", *METRICS)} for c in cells]}
                 for name, cells in results.items()},
    }
    write_json(out / "ablation.json", summary)
    text = markdown(summary)
    atomic_write(out / "ablation.md", lambda f: f.write(text.encode()))
    return summary


def _std(values: list[float]) -> float | None:
    # Sample standard deviation over seeds; a single seed has no spread to report (None, not a 0 that would read
    # as "no variation").
    return statistics.stdev(values) if len(values) > 1 else None


def _aggregate(cells: list[dict[str, Any]], fn) -> dict[str, float | None]:
    out = {}
    for metric in METRICS:
        values = [c[metric] for c in cells if c.get(metric) is not None]
        out[metric] = fn(values) if values else None
    return out


def markdown(summary: dict[str, Any]) -> str:
    """The ablation table, mean +- std over seeds in percent."""
    n = len(summary["seeds"])
    rows = summary["rows"]
    header = "| row (Table 2) | " + " | ".join(LABELS[m] for m in METRICS) + " |"
    lines = [
        "# Ablation: the rows of Table 2 (Zhang, Deng & Li, SASHIMI 2023)",
        "",
        f"{n} seed(s) ({', '.join(map(str, summary['seeds']))}), {summary['size']} x {summary['size']} slices, "
        f"threshold {summary['threshold']}; "
        + ("mean ± standard deviation over seeds, in %." if n > 1 else "in % (one seed: no spread to report)."),
        "",
        header,
        "|---|" + "---|" * len(METRICS),
    ]
    for name, row in rows.items():
        cells = []
        for metric in METRICS:
            mean, std = row["mean"][metric], row["std"][metric]
            if mean is None:
                cells.append("n/a")
            else:
                cells.append(f"{100 * mean:.2f}" + ("" if std is None else f" ± {100 * std:.2f}"))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for name, scores in summary.get("baselines", {}).items():
        cells = ["n/a" if scores.get(m) is None else f"{100 * scores[m]:.2f}" for m in METRICS]
        lines.append(f"| *baseline: {name}* | " + " | ".join(cells) + " |")
    lines += ["", "Baselines need neither training nor labels (all-liver flags the whole liver, darkest-q% the "
              "darkest q% of each slice's liver); a row that does not beat them has learned nothing for free.",
              "", "Rows: `draem` = DRAEM (joint training, autoencoder, Perlin + texture synthesis); `+two_phase` = "
              "the paper's two-phase training; `+synthesis` = the paper's blob synthesis; `unet` = its "
              "restoration U-Net; `full` = the paper's method (reported Dice on LiTS: 53.03, Table 1)."]
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the ``ablation`` command."""
    parser.add_argument("--train", type=Path, required=True, help="prepared healthy slices")
    parser.add_argument("--test", type=Path, required=True, help="prepared tumor slices")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--seeds", type=positive_int, default=3, help="number of seeds per row (default: %(default)s)")
    parser.add_argument("--rows", nargs="+", choices=TABLE2_ROWS, metavar="ROW",
                        help=f"rows to run (default: all of {', '.join(TABLE2_ROWS)})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_settings_arguments(parser, unused=UNUSED_SETTINGS)


def main(args: argparse.Namespace) -> int:
    """Run ``ablation`` from parsed arguments."""
    settings = settings_from_args(args)
    summary = run_ablation(args.train, args.test, args.out, settings, rows=args.rows, seeds=args.seeds,
                           progress=not args.no_progress)
    print(markdown(summary))
    print(f"wrote {Path(args.out) / 'ablation.md'} and ablation.json")
    return 0
