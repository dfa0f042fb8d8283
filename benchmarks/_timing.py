"""Shared by the benchmark scripts (not a benchmark itself): the median wall time of repeated calls, alone or
of two calls in alternation; the machine's measured peak; the CPU's name; liver-ROI-like test slices."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F


def median_seconds(call: Callable[[], object], repeats: int, sync: Callable[[], None] = lambda: None) -> float:
    """Median seconds of ``repeats`` calls of ``call`` after one warm-up call (allocations, kernel selection);
    ``sync`` waits for the device (``torch.cuda.synchronize``) around each timed call."""
    call()
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        call()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def paired_median_seconds(first: Callable[[], object], second: Callable[[], object], repeats: int,
                          sync: Callable[[], None] = lambda: None) -> tuple[float, float, float]:
    """Median seconds of ``first`` and of ``second``, timed in alternation (one of each per repeat, after a
    warm-up call of each), and the median of the per-repeat ratios ``second / first``. On a shared machine whose
    speed drifts (a VM's stolen time), the two calls of a repeat meet the same conditions, so the ratio is
    steadier than the ratio of two medians taken one after the other."""
    first()
    second()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for call, out in ((first, times[0]), (second, times[1])):
            sync()
            t0 = time.perf_counter()
            call()
            sync()
            out.append(time.perf_counter() - t0)
    ratios = [b / a for a, b in zip(*times)]
    return statistics.median(times[0]), statistics.median(times[1]), statistics.median(ratios)


def cpu_model() -> str:
    """The CPU's model name and the features that decide our kernels' speed, e.g. ``"AMD EPYC (family 25, model
    17; avx512f avx512_bf16)"``: a VM may land on other hardware from one day to the next."""
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor() or platform.machine()
    flags = [f for f in ("avx512f", "avx512_bf16", "amx_tile") if f in info.get("flags", "").split()]
    return (f"{info.get('model name', platform.machine())} (family {info.get('cpu family', '?')}, model "
            f"{info.get('model', '?')}; {' '.join(flags) or 'no avx512'})")


def peak_gflops(device: str, dtype: torch.dtype, sync: Callable[[], None] = lambda: None,
                repeats: int = 5) -> tuple[float, float]:
    """Measured GFLOP/s of a 2048^3 matmul and of a 3 x 3 convolution, 128 -> 128 channels, 8 x 64 x 64."""
    a = torch.randn(2048, 2048, device=device, dtype=dtype)
    matmul = 2 * 2048**3 / median_seconds(lambda: a @ a, repeats, sync) / 1e9
    x = torch.randn(8, 128, 64, 64, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(128, 128, 3, 3, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    conv_flops = 2 * 8 * 128 * 128 * 9 * 64 * 64
    conv = conv_flops / median_seconds(lambda: F.conv2d(x, w, padding=1), repeats, sync) / 1e9
    return matmul, conv


def liver_roi_slices(n: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, foreground)`` of n liver-ROI-like slices, ``(n, 1, size, size)``: a textured ellipse, zero
    outside, the ellipse as foreground."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    fg = ((x / 0.7) ** 2 + (y / 0.5) ** 2 <= 1)[None, None]
    images = torch.empty(n, 1, size, size).uniform_(0.4, 0.6, generator=torch.Generator().manual_seed(seed))
    images.mul_(fg)
    return images, fg.expand(n, 1, size, size).contiguous()
