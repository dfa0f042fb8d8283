"""Training and inference speed of the paper's method with the released architectures, against the machine's peak.

Measures, at 256 x 256 with the default (released) nets and the paper's batch of 8:
- the machine's measured peak: GFLOP/s of a large matmul and of a 3 x 3 convolution (128 channels, 64 x 64,
  batch 8), in float32 and bfloat16, on the same device and threads;
- phase-1 steps/s (restoration U-Net, L1) and phase-2 steps/s (frozen restoration, segmentation net, focal),
  through the real TwoPhaseTrainer, with the FLOPs of a step (torch.utils.flop_counter) and so the GFLOP/s
  achieved; `--no-flush-denormal` repeats the steps with subnormal floats kept (the trainer's behaviour before
  TrainerConfig.flush_denormal), `--bf16` and `--channels-last` with the trainer's opt-in fast paths;
- the share of a training step spent in synthesis (presets.zhang2023(), timed inside the trainer) and outside
  forward/backward/optimizer (the same step's compute timed alone on a fixed batch);
- inference ms/slice of the exported AnomalySegmenter: fp32, fp32 channels-last, and bf16 autocast with
  channels-last (AnomalySegmenter(precision="bf16", channels_last=True)).

    python benchmarks/training_speed.py                    # CPU, 2 threads, 1 step per phase, batch 8 inference
    python benchmarks/training_speed.py --no-flush-denormal
    python benchmarks/training_speed.py --bf16 --channels-last --skip peak inference
    python benchmarks/training_speed.py --device cuda --steps 50 --bf16 --infer-batch 64
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from _timing import cpu_model, median_seconds, peak_gflops  # benchmarks/, on the path of a script run from there

from pseudoanomaly import presets
from pseudoanomaly.models import AnomalySegmenter, RestorationUNet, SegmentationNet
from pseudoanomaly.training import TwoPhaseConfig, TwoPhaseTrainer
from pseudoanomaly.training._denormals import call_flushing_denormals  # where the trainer computes on a CPU


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
                                precision="bf16" if args.bf16 else "fp32", channels_last=args.channels_last,
                                flush_denormal=args.flush_denormal, **limits)
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


def compute_step(phase: int, device: str, bf16: bool, channels_last: bool = False):
    """One phase's forward + backward + Adam step on a fixed batch, nothing else: what a step costs at least."""
    restoration, segmentation = RestorationUNet().to(device), SegmentationNet().to(device)
    if channels_last:
        restoration, segmentation = (net.to(memory_format=torch.channels_last) for net in (restoration, segmentation))
    images = torch.stack([d["image"] for d in liver_slices(8, 256)]).to(device)
    synthesized = (images + 0.3 * (torch.rand_like(images) > 0.95)).clamp(0, 1)
    masks = (synthesized != images).long()[:, 0]
    trained = restoration if phase == 1 else segmentation
    optimizer = torch.optim.Adam(trained.parameters(), lr=1e-4)
    restoration.train(phase == 1)
    autocast = torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            if phase == 1:
                loss = (restoration(synthesized) - images).abs().mean()
            else:
                with torch.no_grad():
                    restored = restoration(synthesized)
                loss = F.cross_entropy(segmentation(torch.cat([restored, synthesized], 1)).float(), masks)
        loss.backward()
        optimizer.step()

    return step


def step_flops(step) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return counter.get_total_flops()


def time_inference(args, sync, precision: str, channels_last: bool) -> tuple[float, int]:
    """ms/slice of the exported segmenter, and the FLOPs of one slice."""
    trainer = TwoPhaseTrainer(RestorationUNet(), SegmentationNet(),
                              config=TwoPhaseConfig(progress=False, device=args.device))
    exported = trainer.export().to(args.device)
    segmenter = AnomalySegmenter(exported.restoration, exported.segmentation, precision=precision,
                                 channels_last=channels_last)
    batch = torch.stack([d["image"] for d in liver_slices(args.infer_batch, 256)]).to(args.device)
    counter = FlopCounterMode(display=False)
    with counter:
        segmenter(batch[:1])
    seconds = median_seconds(lambda: segmenter(batch), args.repeats, sync)
    return seconds / args.infer_batch, counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=1, help="timed steps per phase (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--infer-batch", type=int, default=8, help="slices per inference call (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of the peak and inference calls")
    parser.add_argument("--bf16", action="store_true", help="train under bf16 autocast (TrainerConfig(precision='bf16'))")
    parser.add_argument("--channels-last", action="store_true",
                        help="train channels-last nets (TrainerConfig(channels_last=True))")
    parser.add_argument("--no-flush-denormal", dest="flush_denormal", action="store_false",
                        help="train with subnormal floats kept (TrainerConfig(flush_denormal=False))")
    parser.add_argument("--skip", nargs="*", default=[], choices=["peak", "train", "inference"],
                        help="parts not to run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    data = liver_slices(64, 256)

    print(f"machine: {platform.node()} | {cpu_model()} | torch {torch.__version__}"
          f" | device {args.device} | threads {args.threads} | {'bf16' if args.bf16 else 'fp32'}"
          f" | flush_denormal {args.flush_denormal} | channels_last {args.channels_last}")
    print(f"released nets: RestorationUNet {sum(p.numel() for p in RestorationUNet().parameters()):,} params, "
          f"SegmentationNet {sum(p.numel() for p in SegmentationNet().parameters()):,} params; 256x256, batch 8")
    if "peak" not in args.skip:
        for dtype in (torch.float32, torch.bfloat16):
            matmul, conv = peak_gflops(args.device, dtype, sync, args.repeats)
            print(f"peak {str(dtype)[6:]:8s}: matmul 2048^3 {matmul:8.0f} GFLOP/s, conv 3x3 128ch 8x64x64 "
                  f"(channels-last) {conv:8.0f} GFLOP/s")
    if "train" not in args.skip:
        for phase in (1, 2):
            per_step, share = time_phase(phase, args.steps, data, args, sync)
            step = compute_step(phase, args.device, args.bf16, args.channels_last)
            flops = step_flops(step)
            flush = args.flush_denormal and args.device == "cpu"
            compute = (call_flushing_denormals(lambda stop: median_seconds(step, max(1, args.steps), sync)) if flush
                       else median_seconds(step, max(1, args.steps), sync))
            outside = max(0.0, 1 - compute / per_step)
            print(f"phase {phase}: {1 / per_step:8.3f} steps/s ({per_step:7.3f} s/step, {flops / 1e9:6.0f} GFLOP, "
                  f"{flops / per_step / 1e9:6.0f} GFLOP/s); synthesis {share:6.1%} of a step; outside "
                  f"forward/backward/optimizer {outside:6.1%} (compute alone {compute:7.3f} s)")
    if "inference" not in args.skip:
        for precision, channels_last in (("fp32", False), ("fp32", True), ("bf16", True)):
            seconds, flops = time_inference(args, sync, precision, channels_last)
            layout = "channels-last" if channels_last else "default layout"
            print(f"inference (AnomalySegmenter, batch {args.infer_batch}, {precision}, {layout}): "
                  f"{seconds * 1e3:8.2f} ms/slice, {flops / seconds / 1e9:6.0f} GFLOP/s "
                  f"({flops / 1e9:.1f} GFLOP/slice)")


if __name__ == "__main__":
    main()
