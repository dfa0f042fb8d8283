"""Keep freed memory in the process for reuse instead of handing it back to the kernel (glibc only).

Why: PyTorch's CPU tensors come from ``malloc``. glibc serves a large block (above a threshold that starts at
128 KiB and adapts) with a fresh ``mmap`` and unmaps it when it is freed, and it trims the top of its heap
once 128 KiB there are free. A training step allocates and frees the same activation-sized blocks (MiBs)
every step, so every step the kernel maps those pages again and zero-fills each on its first touch. On the
dev VM (2 threads, 2026-12-02) the ``cpu`` preset's steps took 1.08-1.18x less time with them retained
(fp32 phase-1 steps 185 -> 164 ms, phase-2 steps 410 -> 351 ms; alternating fresh processes,
``benchmarks/cpu_preset_step.py``, ``benchmarks/RESULTS.md``). Raising both thresholds lets ``malloc`` recycle
the blocks; the arithmetic is untouched, so results are bit for bit the same.

This is a process-wide setting of the C library, as ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_``
in the environment are (or preloading jemalloc/tcmalloc, which PyTorch's CPU performance guides suggest): a
library should not change it behind its user's back, so nothing here runs on import or inside ``fit``. The
example application (``python -m examples.lits``) calls it at start-up. The cost: the process keeps up to
``trim_bytes`` of freed memory, and its peak stays resident until it exits.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["retain_freed_memory"]

_M_TRIM_THRESHOLD = -1  # mallopt parameters of glibc's malloc.h
_M_MMAP_THRESHOLD = -3
# glibc's largest mmap threshold on 64-bit systems (DEFAULT_MMAP_THRESHOLD_MAX): blocks larger than this are
# still mapped and unmapped one by one.
_MMAP_MAX = 32 * 2**20
# Where the user tuned malloc through the environment, that choice stands.
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def retain_freed_memory(trim_bytes: int = 2**30) -> bool:
    """Make glibc's ``malloc`` reuse freed blocks of up to 32 MiB and keep up to ``trim_bytes`` of free memory.

    Speeds CPU training steps by 1.08-1.18x on the dev VM, results unchanged (see the module docstring). Call it
    once, early, in the application (not in a library). Safe to call again.

    Args:
        trim_bytes: free memory at the top of the heap that ``malloc`` keeps before returning it to the kernel.

    Returns:
        True when the setting took effect; False where the C library is not glibc (macOS, Windows, musl) or
        where the environment already tunes malloc (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``,
        ``MALLOC_TOP_PAD_``, or ``glibc.malloc`` tunables in ``GLIBC_TUNABLES``), in which case nothing changed.

    In an application's entry point, before the work starts::

        if __name__ == "__main__":
            retain_freed_memory()
            main()

    Example:
        A malloc setting the user made in the environment stands:

        >>> import os
        >>> from pseudoanomaly.training import retain_freed_memory
        >>> os.environ["MALLOC_TRIM_THRESHOLD_"] = "131072"
        >>> retain_freed_memory()
        False
        >>> del os.environ["MALLOC_TRIM_THRESHOLD_"]
    """
    if isinstance(trim_bytes, bool) or not isinstance(trim_bytes, int) or not 0 < trim_bytes < 2**31:
        raise ValueError(f"trim_bytes must be an integer in [1, 2**31 - 1], got {trim_bytes!r}")
    if not sys.platform.startswith("linux") or any(name in os.environ for name in _USER_SETTINGS) or (
            "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", "")):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    if not hasattr(libc, "gnu_get_libc_version"):  # not glibc (musl's mallopt does nothing)
        return False
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_MAX)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_bytes))
