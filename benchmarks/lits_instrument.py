"""Does the default real-data path find realistic lesions in real anatomy? The label-free instrument of issue 9.

Builds the validation instrument from the healthy CHAOS scan (``examples.lits lesions``: lesions after Hu et al.,
CVPR 2023, in HU), prepares the healthy scan for training and the lesion sets for testing with the same
``prepare`` preset, trains with a ``train`` preset, and scores the model on two lesion sets:

- ``all``: the command's defaults (small, medium and large lesions, five appearances), seed 0;
- ``small+medium``: lesions of 5-50 mm only, seed 1: closer to the many small tumours of LiTS.

It prints one JSON line with the training time, and for each set the model's metrics next to the label-free
baselines (the darkest 10% of each slice's liver: ``ratio`` is our pooled Dice over that rule's).

NOTE: the lesions are inserted into the very scan the model trained on (the only healthy real scan we have), so
the anatomy is in-sample: the figures say how well the model tells lesions from this liver's own parenchyma and
vessels, not how it transfers to another patient's liver. The lesion model itself is independent of the
training synthesis, and the model never sees a lesion of it during training.

    python benchmarks/lits_instrument.py --out runs/instrument                    # the defaults: cpu presets
    python benchmarks/lits_instrument.py --out runs/inst_eq --prepare equalize    # the earlier README path
    python benchmarks/lits_instrument.py --out runs/inst_z --synthesis zhang2023   # one setting changed
    python benchmarks/lits_instrument.py --out runs/inst_fast --channels-last --bf16  # the opt-in fast paths

Run it on a quiet machine (2 threads: a busy second core slows training 2-3x).
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

from examples.lits.evaluate import evaluate  # noqa: E402
from examples.lits.lesions import make_lesion_set  # noqa: E402
from examples.lits.prepare import prepare  # noqa: E402
from examples.lits.preprocess import PREPARE_PRESETS, PrepareConfig  # noqa: E402
from examples.lits.scoring import headline  # noqa: E402
from examples.lits.settings import PRESETS, SYNTHESES  # noqa: E402
from examples.lits.train import train  # noqa: E402
from pseudoanomaly.training import retain_freed_memory  # noqa: E402

CHAOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "chaos-ct3"
# name -> (lesion sizes, seed) of the two test sets
LESION_SETS = {"all": (("small", "medium", "large"), 0), "small+medium": (("small", "medium"), 1)}


def prepare_config(name: str, size: int) -> PrepareConfig:
    if name == "equalize":  # the README's real-data path before issue 9: the paper's intensities, liver crop
        return PrepareConfig(size=size, crop="volume")
    return dataclasses.replace(PREPARE_PRESETS[name], size=size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/instrument"), help="work folder (replaced)")
    parser.add_argument("--chaos", type=Path, default=CHAOS, help="folder with ct.nii.gz and liver.nii.gz")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu", help="train preset")
    parser.add_argument("--prepare", choices=[*sorted(PREPARE_PRESETS), "equalize"], default="cpu",
                        help="prepare preset (equalize: the paper's window and equalization at the preset's size)")
    parser.add_argument("--synthesis", choices=sorted(SYNTHESES), help="override the preset's synthesis")
    parser.add_argument("--restoration", choices=("unet", "ae"), help="override the preset's restoration net")
    parser.add_argument("--slab", type=int, help="train on slabs of this many slices (3-D synthesis); default: slices")
    parser.add_argument("--copies", type=int, default=6, help="lesion draws of the healthy scan per test set")
    parser.add_argument("--channels-last", action="store_true", help="train channels-last nets (opt-in fast path)")
    parser.add_argument("--bf16", action="store_true", help="train under bfloat16 autocast (opt-in fast path)")
    parser.add_argument("--retain-freed-memory", action="store_true",
                        help="let glibc's malloc recycle freed blocks, as `python -m examples.lits` does "
                             "(pseudoanomaly.training.retain_freed_memory; same results)")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    retained = retain_freed_memory() if args.retain_freed_memory else False
    torch.set_num_threads(args.threads)
    if not (args.chaos / "ct.nii.gz").is_file():
        sys.exit(f"{args.chaos}: no ct.nii.gz (the CHAOS scan of shared/data/chaos-ct3)")

    settings = PRESETS[args.preset]
    changes = {k: getattr(args, k) for k in ("synthesis", "restoration", "slab") if getattr(args, k) is not None}
    if args.channels_last:
        changes["channels_last"] = True
    if args.bf16:
        changes["precision"] = "bf16"
    settings = settings.replace(seed=args.seed, device="cpu", **changes)
    config = prepare_config(args.prepare, settings.size or 256)
    if args.out.exists():
        shutil.rmtree(args.out)
    pair = {"image": args.chaos / "ct.nii.gz", "mask": args.chaos / "liver.nii.gz"}
    start = time.perf_counter()
    healthy = prepare("pair", None, args.out / "prepared" / "train", config, progress=False, **pair)
    tests = {}
    for name, (sizes, seed) in LESION_SETS.items():
        folder = args.out / "lesions" / name.replace("+", "_")
        made = make_lesion_set("pair", None, folder, copies=args.copies, seed=seed, sizes=sizes, progress=False,
                               **pair)
        prepared = args.out / "prepared" / folder.name
        prepare("lits", folder, prepared, config, progress=False)
        tests[name] = (prepared, made)

    result = train(args.out / "prepared" / "train", args.out / "run", settings, preset=args.preset, progress=False)
    sets = {}
    for name, (prepared, _) in tests.items():
        metrics = evaluate(args.out / "run", prepared, args.out / "report" / prepared.name, device="cpu")
        print(f"{name}:\n{headline(metrics)}", file=sys.stderr)
        rule = next(v for k, v in metrics["baselines"].items() if k.startswith("darkest"))
        sets[name] = {
            "tumor_slices": metrics["n_tumor_slices"], "slices": metrics["n_slices"],
            "tumor_fraction": round(metrics["tumor_fraction"], 4),
            "dice_global": metrics["dice_global"], "dice_per_volume": metrics["dice_per_volume"],
            "pixel_auroc": metrics["pixel_auroc"], "image_auroc": metrics["image_auroc"],
            "rule_dice_global": rule["dice_global"], "all_liver_dice_global":
                metrics["baselines"]["all-liver"]["dice_global"],
            "ratio": metrics["dice_global"] / rule["dice_global"] if rule["dice_global"] else None,
        }
    print(json.dumps({
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "train_preset": args.preset, "prepare": args.prepare, "synthesis": settings.synthesis,
        "restoration": settings.restoration, "seed": args.seed, "slab": settings.slab,
        "channels_last": settings.trainer.channels_last, "precision": settings.trainer.precision,
        "retain_freed_memory": retained,
        "train_slices": result.train_slices, "available_slices": healthy.slices, "steps": result.steps,
        "train_s": round(result.seconds, 1), "total_s": round(time.perf_counter() - start, 1),
        "in_sample_anatomy": True,
        "sets": sets,
    }))


if __name__ == "__main__":
    main()
