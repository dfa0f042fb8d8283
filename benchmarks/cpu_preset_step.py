"""Where the ``cpu`` preset's training step stands on this CPU, and what each opt-in speed setting buys (issue 14).

Two parts:

- **steps**: seconds per phase-1 and phase-2 step of ``examples.lits``' ``cpu`` preset (its nets, synthesis,
  optimizer, 128 x 128, batch 8) through the real ``TwoPhaseTrainer``, timed from one optimizer step's end to the
  next, for each setting: the default (float32, NCHW), ``channels_last``, ``channels_last`` + bfloat16
  autocast; each with and without :func:`pseudoanomaly.training.retain_freed_memory` (what
  ``python -m examples.lits`` applies at start-up). Every run is a fresh process (the allocator setting cannot be
  undone), and the runs of a setting with and without it alternate, ``--rounds`` times, so that the
  ratio of each pair meets the same machine: the table gives the median of the runs' medians and of the pairs'
  ratios. GFLOP/s from ``torch.utils.flop_counter`` (convolutions and matmuls, forward and backward) against a
  3 x 3 convolution of 128 channels measured in the same process.
- **group-norm**: forward + backward of GroupNorm on channels-last activations of 8, 16 and 32 channels,
  PyTorch's kernel against the channels-last path that ``MedianDivisorGroupNorm`` takes for 8 channels or
  fewer (in alternation; ``--retain`` first retains freed memory, as the example's command line does).

    python benchmarks/cpu_preset_step.py                       # both parts, 2 threads, 3 rounds
    python benchmarks/cpu_preset_step.py --part steps --rounds 5
    python benchmarks/cpu_preset_step.py --quick               # tiny: checks that it runs (tests)

Run it on a quiet machine; the VM's speed drifts, so compare ratios more than times.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from anywhere: examples/ is not installed
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import cpu_model, liver_roi_slices, paired_median_seconds, peak_gflops  # noqa: E402

SETTINGS = {  # name -> (channels_last, precision)
    "fp32": (False, "fp32"),
    "channels-last": (True, "fp32"),
    "channels-last + bf16": (True, "bf16"),
}


def worker(args) -> dict:
    """One process: time ``args.steps`` steps of each phase at one setting, print JSON."""
    from torch.optim.optimizer import register_optimizer_step_post_hook
    from torch.utils.flop_counter import FlopCounterMode

    from examples.lits.dataset import TrainSlices
    from examples.lits.runs import seeded_nets
    from examples.lits.settings import PRESETS, build_synthesis
    from pseudoanomaly.training import TwoPhaseTrainer

    retained = False
    if args.retain:
        from pseudoanomaly.training import retain_freed_memory

        retained = retain_freed_memory()
    torch.set_num_threads(args.threads)
    channels_last, precision = SETTINGS[args.setting]
    settings = PRESETS["cpu"]
    data = TrainSlices(*liver_roi_slices(4 * args.batch, args.size))
    out: dict = {"setting": args.setting, "retained": retained}
    for phase in (1, 2):
        restoration, segmentation = seeded_nets(settings.nets.architecture(), 0)
        config = dataclasses.replace(
            settings.trainer, out_dir=None, progress=False, device="cpu", batch_size=args.batch, eval_every=0,
            channels_last=channels_last, precision=precision,
            restoration_max_steps=args.steps + 1 if phase == 1 else 0,
            segmentation_max_steps=args.steps + 1 if phase == 2 else 0)
        ends: list[float] = []
        hook = register_optimizer_step_post_hook(lambda *_: ends.append(time.perf_counter()))
        try:
            TwoPhaseTrainer(restoration, segmentation, build_synthesis(settings.synthesis), config).fit(data)
        finally:
            hook.remove()
        out[f"phase{phase}_s"] = statistics.median(b - a for a, b in zip(ends, ends[1:]))
        # FLOPs of the same step's nets (convolutions and matmuls), counted once on a fixed batch
        x = data.images[: args.batch]
        with FlopCounterMode(display=False) as counter:
            if phase == 1:
                restoration(x).abs().mean().backward()
            else:
                with torch.no_grad():
                    restored = restoration(x)
                segmentation(torch.cat([restored, x], 1)).mean().backward()
        out[f"phase{phase}_gflop"] = counter.get_total_flops() / 1e9
    out["conv_peak_gflops"] = peak_gflops("cpu", torch.float32)[1]
    return out


def run_steps(args) -> None:
    runs: dict[tuple[str, bool], list[dict]] = {}
    for r in range(args.rounds):
        for setting in SETTINGS:
            for retain in (False, True):
                cmd = [sys.executable, __file__, "--worker", "--setting", setting, "--threads", str(args.threads),
                       "--steps", str(args.steps), "--batch", str(args.batch), "--size", str(args.size)]
                result = subprocess.run(cmd + (["--retain"] if retain else []), capture_output=True, text=True,
                                        check=True)
                row = json.loads(result.stdout.strip().splitlines()[-1])
                runs.setdefault((setting, retain), []).append(row)
                print(f"round {r + 1}: {setting:22s} retain={retain!s:5s} phase 1 {row['phase1_s'] * 1e3:7.1f} ms, "
                      f"phase 2 {row['phase2_s'] * 1e3:7.1f} ms", file=sys.stderr, flush=True)
    base = {p: statistics.median(r[f"phase{p}_s"] for r in runs[("fp32", False)]) for p in (1, 2)}
    print(f"\n{args.size} x {args.size}, batch {args.batch}, {args.threads} threads, {args.rounds} rounds of "
          f"{args.steps} steps; {cpu_model()}\n")
    print("| setting | malloc | phase-1 step | GFLOP/s | phase-2 step | GFLOP/s | vs default (phase 1 / 2) | "
          "retained vs not, paired (phase 1 / 2) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for setting in SETTINGS:
        for retain in (False, True):
            rows = runs[(setting, retain)]
            med = {p: statistics.median(r[f"phase{p}_s"] for r in rows) for p in (1, 2)}
            gf = {p: rows[0][f"phase{p}_gflop"] / med[p] for p in (1, 2)}
            paired = "" if not retain else " / ".join(
                f"{statistics.median(a[f'phase{p}_s'] / b[f'phase{p}_s'] for a, b in zip(runs[(setting, False)], rows)):.2f}x"
                for p in (1, 2))
            print(f"| {setting} | {'retained' if retain else 'default'} | {med[1] * 1e3:.0f} ms | {gf[1]:.0f} | "
                  f"{med[2] * 1e3:.0f} ms | {gf[2]:.0f} | {base[1] / med[1]:.2f}x / {base[2] / med[2]:.2f}x | "
                  f"{paired} |")
    peaks = [r["conv_peak_gflops"] for rows in runs.values() for r in rows]
    print(f"\nmeasured conv peak (3 x 3, 128 channels, 8 x 64 x 64, channels-last, fp32): "
          f"{min(peaks):.0f}-{max(peaks):.0f} GFLOP/s")


def run_group_norm(args) -> None:
    from pseudoanomaly.models._group_norm import channels_last_group_norm
    from pseudoanomaly.models.layers import MedianDivisorGroupNorm

    retained = False
    if args.retain:
        from pseudoanomaly.training import retain_freed_memory

        retained = retain_freed_memory()
    torch.set_num_threads(args.threads)
    print(f"\nGroupNorm forward + backward, channels-last, {args.threads} threads, median of {args.repeats} "
          f"alternating pairs, freed memory {'retained' if retained else 'returned (malloc default)'}; "
          f"{cpu_model()}\n")
    print("| shape | dtype | PyTorch's kernel | channels-last path | speed-up |")
    print("| --- | --- | --- | --- | --- |")
    # the cpu preset's full-resolution GroupNorms (8 channels), and wider ones where PyTorch's kernel is kept
    shapes = [(args.batch, 8, args.size, args.size), (args.batch, 16, args.size, args.size),
              (args.batch, 32, args.size, args.size)]
    for shape in shapes:
        for dtype in (torch.float32, torch.bfloat16):
            norm = MedianDivisorGroupNorm(shape[1])
            x = torch.randn(shape).to(dtype).contiguous(memory_format=torch.channels_last).requires_grad_()
            dy = torch.randn(shape).to(dtype).contiguous(memory_format=torch.channels_last)

            def ours() -> None:  # what the module calls from 128 x 128 on
                channels_last_group_norm(x, norm.num_groups, norm.weight, norm.bias, norm.eps).backward(dy)

            def theirs() -> None:
                F.group_norm(x, norm.num_groups, norm.weight, norm.bias, norm.eps).backward(dy)

            a, b, ratio = paired_median_seconds(theirs, ours, args.repeats)
            print(f"| {' x '.join(map(str, shape))} | {str(dtype)[6:]} | {a * 1e3:.2f} ms | {b * 1e3:.2f} ms | "
                  f"{1 / ratio:.1f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("steps", "group-norm", "all"), default="all")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of fresh processes")
    parser.add_argument("--steps", type=int, default=15, help="timed steps per phase and run (after one warm-up)")
    parser.add_argument("--repeats", type=int, default=15, help="GroupNorm: timed pairs")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round: checks that it runs")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--setting", choices=sorted(SETTINGS), help=argparse.SUPPRESS)
    parser.add_argument("--retain", action="store_true",
                        help="group-norm part: retain freed memory first, as python -m examples.lits does")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    if args.quick:
        args.rounds, args.steps, args.repeats, args.batch, args.size = 1, 2, 2, 2, 32
    if args.part in ("steps", "all"):
        run_steps(args)
    if args.part in ("group-norm", "all"):
        run_group_norm(args)


if __name__ == "__main__":
    main()
