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

Where PyTorch's threads come from GNU OpenMP (``libgomp``, as in the Linux wheels), the work instead stays on
the calling thread: one OpenMP parallel region, run through the same ``libgomp`` with the caller's thread
count, sets the flag on the caller and on each of its workers (checked with :func:`flushes_denormals`
before the work starts, and set back afterwards). Why not the dedicated thread there: it starts a second pool
of OpenMP workers beside the caller's, and when ``libgomp`` manages more threads than there are CPUs it cuts
its workers' spin-wait short, so each of the hundreds of small parallel regions of a step waits for a sleeping
worker to wake. On the dev VM (2 cores, 2026-12-02) a phase-1 step of the ``cpu`` preset's nets took 0.41 s on
the dedicated thread against 0.25 s on the caller's (the process used 1.3-1.5 of its 2 cores). Elsewhere (macOS,
Windows, another OpenMP runtime) the dedicated thread remains.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch

__all__ = ["call_flushing_denormals", "flushes_denormals"]

T = TypeVar("T")

_executor: concurrent.futures.ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()
_state = threading.local()  # .on_worker: True on the dedicated thread; .in_place: True while flushing in place
_REGION = ctypes.CFUNCTYPE(None, ctypes.c_void_p)  # the body of a GOMP_parallel region
_gomp_lib: ctypes.CDLL | None | bool = False  # False: not looked up yet
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


def _gomp() -> ctypes.CDLL | None:
    """The GNU OpenMP runtime torch's intra-op threads come from, or None where there is none to be found."""
    global _gomp_lib
    if _gomp_lib is False:
        _gomp_lib = None
        if sys.platform.startswith("linux"):
            try:
                with open("/proc/self/maps") as maps:
                    loaded = {line.split()[-1] for line in maps if "libgomp" in line.rsplit("/", 1)[-1]}
                if loaded:
                    torch_lib = Path(torch.__file__).resolve().parent / "lib"
                    # the one shipped with torch first: another library may have loaded a second libgomp
                    path = min(loaded, key=lambda p: not Path(p).resolve().is_relative_to(torch_lib))
                    lib = ctypes.CDLL(path)
                    lib.GOMP_parallel.argtypes = (_REGION, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint)
                    lib.GOMP_parallel.restype = None
                    _gomp_lib = lib
            except (OSError, AttributeError):
                _gomp_lib = None
    return _gomp_lib


def _set_flag_on_team(on: bool) -> bool:
    """Set the calling thread's flag and its OpenMP workers' (all ``torch.get_num_threads()`` of them) to
    ``on``, through ``libgomp``; whether every one of them now does as asked."""
    lib = _gomp()
    if lib is None:
        return False
    body = _REGION(lambda _: torch.set_flush_denormal(on))  # runs on each thread of the team, GIL taken
    lib.GOMP_parallel(body, None, torch.get_num_threads(), 0)
    return flushes_denormals() == on


def call_flushing_denormals(fn: Callable[[threading.Event], T]) -> T:
    """Call ``fn(stop)`` on a thread whose torch workers flush subnormals to zero; return what it returns.

    ``fn`` runs with the caller's intra-op thread count: with ``libgomp``, on the calling thread, whose team
    flushes for the call's duration (see the module docstring); otherwise on the dedicated thread, where calls
    from several threads run one after the other, and a ``KeyboardInterrupt`` in the caller sets ``stop`` and
    waits for ``fn`` to return or raise (``fn`` should check ``stop`` between steps) before it propagates, so no
    work continues in the background.

    Args:
        fn: work to run, given a ``threading.Event`` set when the caller is interrupted.

    Returns:
        ``fn``'s return value; its exception, if any, is raised here.
    """
    stop = threading.Event()
    if getattr(_state, "on_worker", False) or getattr(_state, "in_place", False):  # e.g. a fit inside a fit
        return fn(stop)
    if flushes_denormals():  # the caller's team flushes already
        return fn(stop)
    if _gomp() is not None:
        if _set_flag_on_team(True):
            _state.in_place = True
            try:
                return fn(stop)  # Ctrl-C raises here, in the caller's thread, as anywhere else
            finally:
                _state.in_place = False
                _set_flag_on_team(False)
        _set_flag_on_team(False)  # not every thread took it: leave none flushing, use the dedicated thread
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
