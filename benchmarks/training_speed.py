"""Training and inference speed of the paper's method with the released architectures.

Measures, at 256 x 256 with the default (released) nets and the paper's batch of 8:
- phase-1 steps/s (restoration U-Net, L1) and phase-2 steps/s (frozen restoration, segmentation net, focal),
  through the real TwoPhaseTrainer;
- the share of a training step spent in synthesis (presets.zhang2023(), timed inside the trainer);
- inference ms/slice of the exported AnomalySegmenter at batch 64 (bf16 autocast on CUDA with --bf16).

    python benchmarks/training_speed.py                    # CPU, 2 threads, a few steps
    python benchmarks/training_speed.py --device cuda --steps 50 --bf16
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import time

import torch

from pseudoanomaly import presets
from pseudoanomaly.models import RestorationUNet, SegmentationNet
from pseudoanomaly.training import TwoPhaseConfig, TwoPhaseTrainer


class TimedSynthesis(torch.nn.Module):
    """Wraps a synthesis and adds up the wall time it takes (synchronizing the device around it)."""

    def __init__(self, synthesis: torch.nn.Module, sync) -> None:
        super().__init__()
        self.synthesis, self.sync, self.seconds, self.calls = synthesis, sync, 0.0, 0

    def forward(self, images, foreground=None, generator=None):
        self.sync()
        t0 = time.perf_counter()
        out = self.synthesis(images, foreground, generator=generator)
        self.sync()
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        return out


def liver_slices(n: int, size: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Liver-ROI-like slices: a textured disc on a zero background, with the disc as foreground."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    fg = (x / 0.7) ** 2 + (y / 0.5) ** 2 <= 1
    items = []
    for _ in range(n):
        image = (0.4 + 0.2 * torch.rand(size, size, generator=g)) * fg
        items.append({"image": image[None], "foreground": fg[None].clone()})
    return items


def time_phase(phase: int, steps: int, data, args, sync) -> tuple[float, float]:
    """Seconds per step of one phase (after one warm-up step) and the synthesis share of it."""
    timed = TimedSynthesis(presets.zhang2023(), sync)
    limits = {"restoration_max_steps": 0, "segmentation_max_steps": 0}
    key = "restoration_max_steps" if phase == 1 else "segmentation_max_steps"

    def run(n: int) -> float:
        limits[key] = n
        config = TwoPhaseConfig(batch_size=8, progress=False, device=args.device, eval_every=0,
                                precision="bf16" if args.bf16 else "fp32", **limits)
        trainer = TwoPhaseTrainer(RestorationUNet(), SegmentationNet(), synthesis=timed, config=config)
        sync()
        t0 = time.perf_counter()
        trainer.fit(data)
        sync()
        return time.perf_counter() - t0

    if args.device != "cpu":
        run(1)  # warm-up: allocator, kernels, autotuning
    setup = run(0)  # what does not scale with steps: model moves, loaders, the trainer's bookkeeping
    timed.seconds, timed.calls = 0.0, 0
    total = run(steps) - setup
    synthesis = timed.seconds  # run(0) makes no synthesis call
    return total / steps, synthesis / total


def time_inference(args, sync) -> float:
    trainer = TwoPhaseTrainer(RestorationUNet(), SegmentationNet(),
                              config=TwoPhaseConfig(progress=False, device=args.device))
    segmenter = trainer.export().to(args.device)
    batch = torch.stack([d["image"] for d in liver_slices(args.infer_batch, 256)]).to(args.device)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if args.bf16 and args.device.startswith("cuda")
                else contextlib.nullcontext())
    times = []
    with autocast:
        for i in range(args.repeats + 1):
            sync()
            t0 = time.perf_counter()
            segmenter(batch)
            sync()
            if i:  # the first call warms up
                times.append(time.perf_counter() - t0)
    return statistics.median(times) / args.infer_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--infer-batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA only)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    data = liver_slices(64, 256)

    print(f"machine: {platform.node()} | {platform.processor() or platform.machine()} | torch {torch.__version__}"
          f" | device {args.device} | threads {args.threads} | {'bf16' if args.bf16 else 'fp32'}")
    print(f"released nets: RestorationUNet {sum(p.numel() for p in RestorationUNet().parameters()):,} params, "
          f"SegmentationNet {sum(p.numel() for p in SegmentationNet().parameters()):,} params; 256x256, batch 8")
    for phase in (1, 2):
        per_step, share = time_phase(phase, args.steps, data, args, sync)
        print(f"phase {phase}: {1 / per_step:8.3f} steps/s ({per_step:7.3f} s/step), synthesis {share:6.1%} of a step")
    ms = time_inference(args, sync) * 1e3
    print(f"inference (AnomalySegmenter, batch {args.infer_batch}): {ms:8.2f} ms/slice")


if __name__ == "__main__":
    main()
