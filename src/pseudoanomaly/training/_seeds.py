"""A training run's seeds and RNG states: seeds derived from ``config.seed``, and capture/restore of torch's
global RNG states that a checkpoint must hold.

Every random stream of a run (the data order of each epoch, the synthesis of each process, torch's global RNG)
gets its own seed derived from ``config.seed`` and a few keys, so streams never overlap and a resumed run can
recreate each one exactly. (Not to be confused with ``pseudoanomaly._random``, the batched random draws of
the synthesis.)
"""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor

__all__ = ["derive_seed", "capture_global_rng", "restore_global_rng"]


def derive_seed(seed: int, *keys: object) -> int:
    """A 63-bit seed that depends on ``seed`` and ``keys`` (hash-based, so nearby seeds give unrelated streams).

    Example:
        >>> derive_seed(0, "data", 1) == derive_seed(0, "data", 1) != derive_seed(0, "data", 2)
        True
    """
    digest = hashlib.blake2b(repr((seed, *keys)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def capture_global_rng(device: torch.device) -> dict[str, Tensor | None]:
    """torch's global CPU RNG state and, on CUDA, the device's RNG state."""
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return {"cpu": torch.get_rng_state(), "cuda": cuda}


def restore_global_rng(state: dict[str, Tensor | None], device: torch.device) -> None:
    """Inverse of :func:`capture_global_rng`."""
    torch.set_rng_state(state["cpu"])
    if state.get("cuda") is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
