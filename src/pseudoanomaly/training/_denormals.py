"""Run CPU training with subnormal floats flushed to zero on every intra-op thread.

Why: the released restoration net's gradients hold subnormal float32 values (below 1.2e-38, e.g. where the
SiLU's slope far left of zero meets a small upstream gradient: up to 4% of a layer's gradient at
initialisation), and x86 cores compute with subnormals 10-100 times slower than with normal numbers. On the
dev VM a phase-1 step of the released nets at 256 x 256 takes 81 s with them and 20 s flushed
(``benchmarks/training_speed.py``, ``benchmarks/RESULTS.md``). Flushing replaces them by 0: each is far
below the float32 resolution of any normal value it is added to, so the training is the same up to that
rounding. TensorFlow and XLA flush subnormals on their CPU threads for the same reason.

How: ``torch.set_flush_denormal`` sets the flag of the calling thread only, and an OpenMP worker takes the
flag of the thread that starts it, once: once a thread has run a parallel torch operation, its workers keep
the flag they had (measured: flushing set late reached the main thread and sped a step up by 1.7x, not
7x). So the work runs on a dedicated thread that sets the flag before its first parallel operation, and thus
starts its own workers with it. The caller's flag and workers are left as they were.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from typing import TypeVar

import torch

__all__ = ["call_flushing_denormals", "flushes_denormals"]

T = TypeVar("T")

_executor: concurrent.futures.ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()
_state = threading.local()  # .on_worker: True on the dedicated thread
# How often the waiting caller wakes to notice a Ctrl-C (a blocked wait may not see the signal otherwise).
_POLL_SECONDS = 0.25


def _start_worker() -> None:
    torch.set_flush_denormal(True)  # False where the CPU has no such flag: the work then runs unflushed
    _state.on_worker = True


def flushes_denormals() -> bool:
    """Whether a parallel float32 operation on this thread flushes subnormal results to zero on every worker.

    Multiplies a tensor large enough for torch to split it over its intra-op threads; a subnormal product
    survives on any thread that does not flush.
    """
    tiny = torch.full((1 << 18,), 2.0**-70)
    return not bool(tiny.mul_(2.0**-70).count_nonzero())  # 2^-140: subnormal in float32


def call_flushing_denormals(fn: Callable[[threading.Event], T]) -> T:
    """Call ``fn(stop)`` on a thread whose torch workers flush subnormals to zero; return what it returns.

    ``fn`` runs with the caller's intra-op thread count. Calls from several threads run one after the other.
    A ``KeyboardInterrupt`` in the caller sets ``stop`` and waits for ``fn`` to return or raise (``fn`` should
    check ``stop`` between steps), then propagates, so no work continues in the background.

    Args:
        fn: work to run, given a ``threading.Event`` set when the caller is interrupted.

    Returns:
        ``fn``'s return value; its exception, if any, is raised here.
    """
    stop = threading.Event()
    if getattr(_state, "on_worker", False):  # already there (e.g. a fit inside a fit): no second thread
        return fn(stop)
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="pseudoanomaly-flush-denormals", initializer=_start_worker
            )
    threads = torch.get_num_threads()  # per thread in OpenMP: the new thread would start with the default

    def job() -> T:
        torch.set_num_threads(threads)
        return fn(stop)

    future = _executor.submit(job)
    try:
        while True:
            try:
                return future.result(timeout=_POLL_SECONDS)
            except concurrent.futures.TimeoutError:
                continue
    except KeyboardInterrupt:
        stop.set()
        concurrent.futures.wait([future])
        raise
