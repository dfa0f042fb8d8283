"""Shared by the benchmark scripts (not a benchmark itself): the median wall time of repeated calls."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


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
