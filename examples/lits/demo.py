"""``demo``: the whole pipeline on a generated phantom cohort, in a few minutes on a laptop CPU.

    python -m examples.lits demo [--out runs/lits_demo]

1. ``phantom.make_cohort``: healthy volumes in BTCV layout (training) and tumor volumes in LiTS layout (test);
2. ``prepare`` both with the same settings (one liver box per volume, straight to the training size);
3. ``train`` with the ``demo`` preset, tracking phase-2 Dice/AUROC on the tumor set for the Fig. 3 plot;
4. ``evaluate`` on the tumor set: metrics next to the all-zero and all-liver baselines, report and figures.

No data is needed and nothing is downloaded. The phantom is a drawing, not real CT: its numbers show that the
pipeline works end to end, not how the method fares on LiTS (the paper: Dice 53.03).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

# The demo composes the commands (the one module besides __main__ that imports them): see examples/lits/__init__.
from . import phantom
from .evaluate import evaluate
from .prepare import prepare
from .preprocess import PrepareConfig
from .runs import RunFiles
from .scoring import headline
from .settings import PRESETS
from .train import train

__all__ = ["DEMO_COHORT", "demo_prepare_config", "demo", "add_arguments", "main"]

# The demo's phantom cohort: volumes of each kind and their (X, Y, Z) shape (the phantom's default shape).
DEMO_COHORT = {"n_healthy": 8, "n_tumor": 4, "shape": (160, 160, 24)}
# Liver window (level 100, width 200 HU): the phantom's parenchyma is drawn at 85-115 HU.
DEMO_HU_WINDOW = (0.0, 200.0)


def demo_prepare_config() -> PrepareConfig:
    """Prepare settings of the demo: a liver window, one liver box per volume, the demo preset's slice size."""
    # NOTE: two departures from the paper's preprocessing (whole 256 x 256 slices, window [-200, 250] HU,
    # histogram equalization of the liver), both for the phantom at a CPU's budget:
    # - cropping to the liver keeps the liver's resolution at a slice size a CPU trains on in minutes;
    # - the phantom's liver texture is independent noise, which equalization stretches over the whole grey range
    #   until its tumors are barely darker than healthy liver (we measured pixel AUROC 0.36 with equalization
    #   vs 0.71 without, same budget); a liver window of 200 HU instead gives tumors (30-70 HU from the
    #   parenchyma) a contrast of the order of the synthesized shifts (60-100 grey levels of 255).
    # Training and test data go through the same settings, and `segment` applies them to new scans.
    return PrepareConfig(size=PRESETS["demo"].size, crop="volume", hu_window=DEMO_HU_WINDOW, equalize=False)


def _clear_previous_run(run: Path) -> None:
    """Remove a run folder left by an earlier demo (and only that: it must hold a run's config.json)."""
    config = RunFiles(run).config
    if not run.exists():
        return
    if not config.is_file() or json.loads(config.read_text()).get("preset") != "demo":
        raise FileExistsError(f"{run} exists and is not a demo run; choose another --out")
    shutil.rmtree(run)


def demo(out: str | Path = "runs/lits_demo", *, seed: int = 0, progress: bool = True, print_fn=print) -> dict:
    """Run the demo into ``out``; return the evaluation metrics (plus ``seconds_total``).

    Args:
        out: folder for the cohort, prepared data, run and report.
        seed: seed of the cohort and of training.
        progress: progress bars.
        print_fn: where the narration goes.
    """
    out = Path(out)
    start = time.perf_counter()

    def step(text: str) -> None:
        print_fn(f"[{time.perf_counter() - start:4.0f} s] {text}")

    run, report = out / "run", out / "report"
    _clear_previous_run(run)
    settings = PRESETS["demo"].replace(seed=seed)
    n_healthy, n_tumor = DEMO_COHORT["n_healthy"], DEMO_COHORT["n_tumor"]
    step(f"1/4 drawing a phantom cohort: {n_healthy} healthy and {n_tumor} tumor CT volumes -> {out / 'cohort'}")
    cohort = phantom.make_cohort(out / "cohort", seed=seed, **DEMO_COHORT)

    step("2/4 preparing liver slices (one preprocessing for both sets)")
    config = demo_prepare_config()
    train_data, test_data = out / "prepared" / "train", out / "prepared" / "test"
    healthy = prepare("btcv", cohort.btcv_root, train_data, config, progress=False)
    tumors = prepare("lits", cohort.lits_root, test_data, config, progress=False)
    print_fn(f"         {healthy.slices} healthy training slices, {tumors.slices} test slices "
             f"({config.size} x {config.size})")

    step(f"3/4 training: the restoration net for {settings.restoration_max_steps} steps, then the segmentation net "
         f"for {settings.segmentation_max_steps} (the paper's short second phase)")
    result = train(train_data, run, settings, preset="demo", val=test_data, progress=progress)
    print_fn(f"         trained in {result.seconds:.0f} s")

    step("4/4 evaluating on the tumor volumes (threshold 0.5, nothing tuned on them)")
    metrics = evaluate(run, test_data, report)
    metrics["seconds_total"] = time.perf_counter() - start
    print_fn("")
    print_fn(headline(metrics))
    print_fn("")
    print_fn(f"Done in {metrics['seconds_total']:.0f} s. Report and figures: {report / 'report.md'}")
    image, label = cohort.tumor[0]
    print_fn("Segment a scan (any nonzero voxel of --liver counts as liver, so a LiTS label file works):")
    print_fn(f"  python -m examples.lits segment --run {run} --image {image} --liver {label} --out tumor.nii.gz")
    return metrics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the ``demo`` command."""
    parser.add_argument("--out", type=Path, default=Path("runs/lits_demo"),
                        help="output folder (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the cohort and of training (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def main(args: argparse.Namespace) -> int:
    """Run ``demo`` from parsed arguments."""
    demo(args.out, seed=args.seed, progress=not args.no_progress)
    return 0
