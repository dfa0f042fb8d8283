"""How a training step of the ``cpu`` preset's nets grows with image size, batch and cohort (issue 14).

One axis at a time around a base of 256 x 256 slices, batch 8 and a cohort of 700 slices:

- image size 128 / 256 / 512 and batch 8 / 32 / 128 / 256: seconds per step (median of ``--steps`` steps after
  one warm-up step) and peak memory of a real step of each phase of ``TwoPhaseTrainer`` with the ``cpu``
  preset's nets and synthesis (``examples.lits.settings.PRESETS["cpu"]``: restoration U-Net of 8 base channels,
  segmentation net of 16, the ``mixed`` synthesis). Phase 1: synthesis, restoration forward and backward, Adam;
  phase 2: synthesis, frozen restoration forward, segmentation forward and backward, Adam.
  Each step is split with public hooks only (a wrapper around the synthesis, torch's global optimizer-step
  hooks) into: data (from the end of the previous optimizer step to the
  synthesis: the scheduler, the trainer's bookkeeping, the DataLoader's fetch and collation, the copy to the
  device), synthesis, forward + backward (loss, ``zero_grad`` and the trainer's one host sync included) and
  the optimizer step. "outside" is the share of the step that is not forward + backward.
- cohort 70 / 700 / 7,000 slices: what grows is the data held in memory and the epoch. A synthetic prepared
  data set (``prepare``'s output format: ``manifest.json`` + ``volumes/*.npz``, 70 slices per volume) is
  written to a temporary folder and loaded as ``train`` loads it (``examples.lits.dataset.load_slices``), all of
  it and with the ``cpu`` preset's ``max_slices`` (150); the epoch time is projected as steps/epoch x the base's
  s/step of each phase.

Memory: every configuration runs in a fresh subprocess. On a CPU the figure is the increase of the process's
peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) over its peak before the measured work (imports, nets
and in-memory data already there); on CUDA ``torch.cuda.max_memory_allocated``. A configuration whose step is
projected (from the base's, proportional to pixels x batch) to take longer than ``--max-step-seconds`` is
skipped and listed as such, and so is one projected (likewise) to need more than ``--max-memory-gib``.

    python benchmarks/scaling.py                              # all three axes, CPU, 2 threads
    python benchmarks/scaling.py --axis size --axis batch --steps 5
    python benchmarks/scaling.py --axis cohort
    python benchmarks/scaling.py --device cuda --max-step-seconds 600
    python benchmarks/scaling.py --quick                      # tiny sizes: checks that it runs (tests)

"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

BASE = {"size": 256, "batch": 8, "slices": 700}
AXES = {"size": (128, 256, 512), "batch": (8, 32, 128, 256), "cohort": (70, 700, 7000)}
QUICK_BASE = {"size": 32, "batch": 2, "slices": 16}
QUICK_AXES = {"size": (32,), "batch": (2,), "cohort": (16,)}
SLICES_PER_VOLUME = 70
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from anywhere: examples/ is not installed

from _timing import liver_roi_slices  # noqa: E402  (benchmarks/, on the path of a script run from there)


def _peak_rss_mib() -> float:
    # ru_maxrss is in KiB on Linux (bytes on macOS)
    scale = 1 if sys.platform != "darwin" else 1 / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1024


# -------------------------------------------------------------------------------------- worker: one step


class _Clock:
    """Timestamps of each step's pieces, from public hooks; synchronizes the device at each one."""

    def __init__(self, device: str) -> None:
        self.sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        self.events: list[tuple[str, float]] = []

    def mark(self, name: str) -> None:
        self.sync()
        self.events.append((name, time.perf_counter()))

    def steps(self) -> list[dict[str, float]]:
        """Per step after the first: total, data, synthesis, forward + backward, optimizer (seconds)."""
        out, last_end, current = [], None, {}
        for name, t in self.events:
            if name == "step_end":
                if last_end is not None and {"synthesis_start", "synthesis_end", "optimizer_start"} <= set(current):
                    out.append({
                        "step": t - last_end,
                        "data": current["synthesis_start"] - last_end,
                        "synthesis": current["synthesis_end"] - current["synthesis_start"],
                        "compute": current["optimizer_start"] - current["synthesis_end"],
                        "optimizer": t - current["optimizer_start"],
                    })
                last_end, current = t, {}
            elif name not in current:  # the first forward of a step (phase 2 runs two nets)
                current[name] = t
        return out


class _TimedSynthesis(torch.nn.Module):
    def __init__(self, synthesis, clock: _Clock) -> None:
        super().__init__()
        self.synthesis, self.clock = synthesis, clock

    def forward(self, images, foreground=None, generator=None):
        self.clock.mark("synthesis_start")
        out = self.synthesis(images, foreground, generator=generator)
        self.clock.mark("synthesis_end")
        return out


def worker_step(args) -> dict:
    from examples.lits.dataset import TrainSlices
    from examples.lits.runs import seeded_nets
    from examples.lits.settings import PRESETS, build_synthesis
    from pseudoanomaly.training import TwoPhaseTrainer

    torch.set_num_threads(args.threads)
    settings = PRESETS["cpu"]
    restoration, segmentation = seeded_nets(settings.nets.architecture(), settings.trainer.seed)
    clock = _Clock(args.device)
    synthesis = _TimedSynthesis(build_synthesis(settings.synthesis), clock)
    images, foreground = liver_roi_slices(args.slices, args.size)
    data = TrainSlices(images, foreground)  # what train passes: PreparedSet.train_dataset()
    steps = 1 + args.steps  # the first step warms up (and has no previous step end to time from)
    config = dataclasses.replace(
        settings.trainer, out_dir=None, progress=False, device=args.device, batch_size=args.batch, eval_every=0,
        restoration_max_steps=steps if args.phase == 1 else 0, segmentation_max_steps=steps if args.phase == 2 else 0)
    # Libraries, kernels and thread pools that load on first use: once at a tiny size, before the baseline.
    tiny = TrainSlices(*liver_roi_slices(2, settings.nets.size_multiple * 2))
    TwoPhaseTrainer(*seeded_nets(settings.nets.architecture(), 0), build_synthesis(settings.synthesis),
                    dataclasses.replace(config, batch_size=2, restoration_max_steps=1, segmentation_max_steps=1)
                    ).fit(tiny)
    trainer = TwoPhaseTrainer(restoration, segmentation, synthesis, config)
    hooks = [register_optimizer_step_pre_hook(lambda *_: clock.mark("optimizer_start")),
             register_optimizer_step_post_hook(lambda *_: clock.mark("step_end"))]
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    before = _peak_rss_mib()
    try:
        trainer.fit(data)
    finally:
        for h in hooks:
            h.remove()
    memory = torch.cuda.max_memory_allocated() / 2**20 if cuda else _peak_rss_mib() - before
    timed = clock.steps()
    return {key: statistics.median(s[key] for s in timed) for key in timed[0]} | {"memory_mib": memory,
                                                                                  "peak_rss_mib": _peak_rss_mib()}


# ------------------------------------------------------------------------------------- worker: a cohort


def write_cohort(directory: Path, slices: int, size: int) -> None:
    """A synthetic ``prepare`` output of ``slices`` slices (volumes of ``SLICES_PER_VOLUME``) in ``directory``."""
    import numpy as np

    from examples.lits.cases import file_checksum
    from examples.lits.dataset import FORMAT, FORMAT_VERSION, VOLUMES, write_manifest
    from examples.lits.preprocess import PREPARE_PRESETS
    from examples.lits.volumes import PreparedVolume, SliceGeometry, save_prepared_volume

    (directory / VOLUMES).mkdir(parents=True)
    rng = np.random.default_rng(0)
    config = dataclasses.replace(PREPARE_PRESETS["cpu"], size=size)
    cases, written = {}, {}
    left, index = slices, 0
    while left:
        n = min(SLICES_PER_VOLUME, left)
        name, file = f"volume-{index}", f"{VOLUMES}/volume-{index}.npz"
        if n not in written:  # volumes of one length are the same file: write it once, copy it
            yy, xx = np.mgrid[-1:1:size * 1j, -1:1:size * 1j]
            liver = np.broadcast_to((xx / 0.7) ** 2 + (yy / 0.5) ** 2 <= 1, (n, size, size))
            images = rng.uniform(0.4, 0.6, (n, size, size)).astype(np.float32) * liver
            geometry = SliceGeometry(slices=np.arange(n), boxes=np.tile([0, 512, 0, 512], (n, 1)),
                                     source_shape=(512, 512, n), source_affine=np.eye(4), size=size)
            save_prepared_volume(directory / file, PreparedVolume(images, liver.copy(), np.zeros_like(liver), geometry))
            written[n] = (file, file_checksum(directory / file))
        else:
            shutil.copyfile(directory / written[n][0], directory / file)
        cases[name] = {"image": f"{name}.nii", "label": f"{name}-label.nii", "file": file,
                       "file_sha256": written[n][1], "slices": n, "source_shape": [512, 512, n], "axcodes": "RAS",
                       "spacing": [0.75, 0.75, 2.0], "prepared_shape": [n, size, size], "tumor_slices": 0,
                       "tumor_pixels": 0}
        left -= n
        index += 1
    write_manifest(directory, {"format": FORMAT, "version": FORMAT_VERSION, "labels": {"liver": [1], "tumor": []},
                               "config": config.to_dict(), "layout": "btcv", "root": None, "cases": cases,
                               "skipped": []})


def worker_load(args) -> dict:
    from examples.lits.dataset import load_slices

    torch.set_num_threads(args.threads)
    before = _peak_rss_mib()
    t0 = time.perf_counter()
    prepared = load_slices(args.data, None, args.max_slices)
    seconds = time.perf_counter() - t0
    held = sum(t.nbytes for t in (prepared.images, prepared.foreground, prepared.tumor))
    return {"seconds": seconds, "memory_mib": _peak_rss_mib() - before, "held_mib": held / 2**20,
            "slices": len(prepared), "files_mib": sum(f.stat().st_size for f in Path(args.data).rglob("*.npz")) / 2**20}


# ---------------------------------------------------------------------------------------------- driver


def _run_worker(kind: str, args, **options) -> dict:
    if args.in_process:  # --quick: no subprocess start-ups (the memory figures then share one process)
        ns = argparse.Namespace(**{**vars(args), "max_slices": None, **options})
        return worker_step(ns) if kind == "step" else worker_load(ns)
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--device", args.device,
               "--threads", str(args.threads), "--steps", str(args.steps)]
    for key, value in options.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _default_memory_gib(device: str) -> float:
    if device.startswith("cuda"):
        return 0.75 * torch.cuda.get_device_properties(torch.device(device)).total_memory / 2**30
    try:
        return 0.75 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows)
        return 16.0


def _memory_label(args) -> str:
    return "peak CUDA memory" if args.device.startswith("cuda") else "peak RSS increase"


def run_steps(args, base: dict, axes: dict, chosen: list[str]) -> dict:
    """The size and batch axes; returns the base's per-phase seconds per step (for the cohort's epochs)."""
    print(f"| axis | image | batch | phase | s/step | forward + backward | data | synthesis | optimizer | outside "
          f"fwd/bwd | {_memory_label(args)} |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    configs = [("base", base["size"], base["batch"])]
    configs += [("size", s, base["batch"]) for s in axes["size"] if "size" in chosen and s != base["size"]]
    configs += [("batch", base["size"], b) for b in axes["batch"] if "batch" in chosen and b != base["batch"]]
    base_seconds: dict[int, float] = {}
    base_memory: dict[int, float] = {}  # MiB
    for axis, size, batch in configs:
        for phase in (1, 2):
            if phase in base_seconds:
                scale = (size / base["size"]) ** 2 * batch / base["batch"]
                seconds, gib = base_seconds[phase] * scale, base_memory[phase] * scale / 1024
                if seconds > args.max_step_seconds or gib > args.max_memory_gib:
                    print(f"| {axis} | {size} x {size} | {batch} | {phase} | skipped: projected {seconds:.0f} s/step, "
                          f"{gib:.0f} GiB (limits {args.max_step_seconds:g} s, {args.max_memory_gib:.0f} GiB) "
                          "| | | | | | |", flush=True)
                    continue
            r = _run_worker("step", args, size=size, batch=batch, slices=max(base["slices"], batch), phase=phase)
            if axis == "base":
                base_seconds[phase], base_memory[phase] = r["step"], r["memory_mib"]
            ms = {k: f"{1e3 * r[k]:.0f} ms" if r[k] < 10 else f"{r[k]:.1f} s" for k in
                  ("compute", "data", "synthesis", "optimizer")}
            print(f"| {axis} | {size} x {size} | {batch} | {phase} | {r['step']:.3f} | {ms['compute']} | "
                  f"{ms['data']} | "
                  f"{ms['synthesis']} | {ms['optimizer']} | {1 - r['compute'] / r['step']:.1%} | "
                  f"{r['memory_mib']:,.0f} MiB |", flush=True)
    return base_seconds


def run_cohort(args, base: dict, axes: dict, base_seconds: dict) -> None:
    from examples.lits.settings import PRESETS

    cap = PRESETS["cpu"].max_slices
    print()
    print(f"| cohort (slices) | files | loaded | held in memory | load: s | load: {_memory_label(args)} | steps/epoch "
          f"(batch {base['batch']}) | epoch, phase 1 | epoch, phase 2 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for slices in axes["cohort"]:
        with tempfile.TemporaryDirectory(prefix="scaling-cohort-") as tmp:
            write_cohort(Path(tmp), slices, base["size"])
            for max_slices in (None, cap) if slices > cap else (None,):
                options = {"data": tmp} if max_slices is None else {"data": tmp, "max_slices": max_slices}
                r = _run_worker("load", args, **options)
                steps = r["slices"] // base["batch"]
                epochs = [f"{steps * base_seconds[p]:,.0f} s" if p in base_seconds else "n/a" for p in (1, 2)]
                loaded = "all" if max_slices is None else f"max_slices {max_slices} (cpu preset)"
                print(f"| {slices:,} | {r['files_mib']:,.0f} MiB | {loaded}: {r['slices']:,} | "
                      f"{r['held_mib']:,.0f} MiB | {r['seconds']:.2f} | {r['memory_mib']:,.0f} MiB | {steps:,} | "
                      f"{epochs[0]} | {epochs[1]} |",
                      flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per phase after the warm-up step")
    parser.add_argument("--axis", action="append", choices=tuple(AXES),
                        help="axes to vary (repeatable; default: all three)")
    parser.add_argument("--max-step-seconds", type=float, default=60.0,
                        help="skip a configuration projected to take longer per step (default: %(default)s)")
    parser.add_argument("--max-memory-gib", type=float,
                        help="skip a configuration projected to need more memory (default: 3/4 of the RAM, or of "
                             "the GPU's memory with --device cuda)")
    parser.add_argument("--quick", action="store_true",
                        help="the base only, at tiny sizes, 1 timed step, in this process: checks that it runs")
    # one configuration in this process (the driver runs each in a fresh subprocess)
    parser.add_argument("--worker", choices=("step", "load"), help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--slices", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--phase", type=int, choices=(1, 2), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--max-slices", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = worker_step(args) if args.worker == "step" else worker_load(args)
        print(json.dumps(result))
        return
    args.in_process = args.quick
    if args.max_memory_gib is None:
        args.max_memory_gib = _default_memory_gib(args.device)
    if args.quick:
        args.steps = 1
    base, axes = (QUICK_BASE, QUICK_AXES) if args.quick else (BASE, AXES)
    chosen = args.axis or list(AXES)
    print(f"machine: {platform.node()} | {platform.processor() or platform.machine()} | torch {torch.__version__} | "
          f"device {args.device} | threads {args.threads} | load {os.getloadavg()[0]:.2f} | cpu preset nets, "
          f"mixed synthesis | base {base['size']} x {base['size']}, batch {base['batch']}, {base['slices']} slices | "
          f"median of {args.steps} step(s) after 1 warm-up")
    print()
    base_seconds = run_steps(args, base, axes, chosen)
    if "cohort" in chosen:
        run_cohort(args, base, axes, base_seconds)
    print(f"\nload at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
