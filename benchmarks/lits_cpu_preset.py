"""Does the ``cpu`` preset of ``examples/lits`` train on 70-150 slices within 20 minutes and find tumors?

Draws a phantom cohort (healthy volumes for training, tumor volumes for testing), prepares both with
``prepare``'s ``cpu`` preset (what a user's real data gets; ``--prepare demo`` for the demo's phantom settings), trains with ``--preset cpu`` (tracking phase-2
Dice on the tumor set, as the demo does), evaluates at the fixed threshold 0.5 and prints one JSON line:
training slices, wall time of training and of the whole run, and the metrics next to the trivial baselines.

    python benchmarks/lits_cpu_preset.py --out runs/cpu_preset            # 2 threads, the issue's machine
    python benchmarks/lits_cpu_preset.py --out runs/cpu_preset --seed 1   # another cohort and training seed

Run it on a quiet machine: a second busy core slows a 2-thread torch run 2-3x.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere: examples/ is not installed

from examples.lits import phantom  # noqa: E402
from examples.lits.demo import demo_prepare_config  # noqa: E402
from examples.lits.evaluate import evaluate  # noqa: E402
from examples.lits.prepare import prepare  # noqa: E402
from examples.lits.preprocess import PREPARE_PRESETS, PrepareConfig  # noqa: E402
from examples.lits.scoring import headline  # noqa: E402
from examples.lits.settings import PRESETS, SYNTHESES  # noqa: E402
from examples.lits.train import train  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/cpu_preset"), help="work folder (replaced)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the cohort and of training")
    parser.add_argument("--healthy", type=int, default=6, help="healthy training volumes")
    parser.add_argument("--tumor", type=int, default=6, help="tumor test volumes")
    parser.add_argument("--shape", type=int, nargs=3, default=(192, 192, 32), metavar=("X", "Y", "Z"),
                        help="voxels of every phantom volume")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--no-val", action="store_true", help="no phase-2 evaluation on the tumor set")
    parser.add_argument("--prepare", choices=["cpu", "demo", "equalize"], default="cpu",
                        help="prepare settings: prepare's cpu preset (default), the demo's phantom window, or the "
                             "paper's window and equalization (the real-data path before issue 9)")
    parser.add_argument("--synthesis", choices=sorted(SYNTHESES), help="override the cpu preset's synthesis")
    parser.add_argument("--slab", type=int, help="train on slabs of this many slices (3-D synthesis); default: slices")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.out.exists():
        shutil.rmtree(args.out)
    start = time.perf_counter()
    cohort = phantom.make_cohort(args.out / "cohort", n_healthy=args.healthy, n_tumor=args.tumor,
                                 shape=tuple(args.shape), seed=args.seed)
    settings = PRESETS["cpu"].replace(seed=args.seed, device="cpu")
    if args.synthesis is not None:
        settings = settings.replace(synthesis=args.synthesis)
    if args.slab is not None:
        settings = settings.replace(slab=args.slab)
    base = {"cpu": PREPARE_PRESETS["cpu"], "demo": demo_prepare_config(), "equalize": PrepareConfig(crop="volume")}[
        args.prepare]
    config = dataclasses.replace(base, size=settings.size)
    train_dir, test_dir = args.out / "prepared" / "train", args.out / "prepared" / "test"
    healthy = prepare("btcv", cohort.btcv_root, train_dir, config, progress=False)
    tumors = prepare("lits", cohort.lits_root, test_dir, config, progress=False)
    prepared_s = time.perf_counter() - start

    result = train(train_dir, args.out / "run", settings, preset="cpu", val=None if args.no_val else test_dir,
                   progress=False)
    metrics = evaluate(args.out / "run", test_dir, args.out / "report", device="cpu")
    print(headline(metrics), file=sys.stderr)
    print(json.dumps({
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "prepare": args.prepare, "synthesis": settings.synthesis,
        "cohort": {"healthy": args.healthy, "tumor": args.tumor, "shape": list(args.shape), "seed": args.seed},
        "available_slices": healthy.slices,
        "train_slices": result.train_slices,
        "test_slices": tumors.slices,
        "steps": result.steps,
        "prepare_s": round(prepared_s, 1),
        "train_s": round(result.seconds, 1),
        "total_s": round(time.perf_counter() - start, 1),
        "dice_global": metrics["dice_global"],
        "dice_per_volume": metrics["dice_per_volume"],
        "pixel_auroc": metrics["pixel_auroc"],
        "image_auroc": metrics["image_auroc"],
        "all_liver_dice_global": metrics["baselines"]["all-liver"]["dice_global"],
        "rule_dice_global": next(v["dice_global"] for k, v in metrics["baselines"].items() if k.startswith("dark")),
    }))


if __name__ == "__main__":
    main()
