"""Data-parallel helpers: join the process group ``torchrun`` describes, and query it.

Trainers use an already initialised default process group when there is one and wrap what they train in
``DistributedDataParallel``; otherwise they run in one process. A script is launched as usual::

    torchrun --nproc_per_node=4 train.py      # train.py calls init_distributed() before fit()
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ["init_distributed", "rank_and_world_size", "process_device", "resolve_device", "gather", "average_over_processes",
           "data_parallel"]


def init_distributed(backend: str | None = None) -> bool:
    """Join the process group from torchrun's environment; return whether training is distributed.

    Does nothing and returns ``False`` outside torchrun (no ``WORLD_SIZE`` or a world of 1), so the same script
    runs with and without a launcher.

    Args:
        backend: ``"nccl"`` or ``"gloo"``; default nccl when CUDA is available, else gloo.

    Returns:
        ``True`` when this process joined (or had already joined) a group of more than one process.

    Example:
        >>> init_distributed()  # a plain process, not started by torchrun
        False
    """
    if not dist.is_available() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if backend == "nccl":
            # NCCL needs each process bound to its own GPU before the first collective.
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return True


def rank_and_world_size() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group, ``(0, 1)`` when there is none."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def process_device(device: str) -> torch.device:
    """The ``torch.device`` this process trains on for ``config.device``: a bare ``"cuda"`` means this process's
    GPU (``cuda:LOCAL_RANK``) under torchrun.

    An unknown device, or one this machine does not have (a CUDA index past its GPUs, ``mps`` without Apple
    silicon), raises ``ValueError`` naming it here rather than deep inside the first ``.to(device)``.
    """
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a torch device (e.g. 'cpu', 'cuda', 'cuda:1')") from exc
    if resolved.type == "meta":
        raise ValueError(f"device={device!r}: meta tensors hold no data; training needs a real device")
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (resolved.index is not None and resolved.index >= count):
            raise ValueError(f"device={device!r} but this machine has {count} usable CUDA device(s) "
                             f"(torch {torch.__version__}); use device='cpu'")
    elif resolved.type != "cpu":  # mps, xpu, ...: torch names them whether or not this build and machine have one
        backend = getattr(torch, resolved.type, None) or getattr(torch.backends, resolved.type, None)
        available = getattr(backend, "is_available", None)
        if available is None or not available():
            raise ValueError(f"device={device!r} is not available on this machine; use device='cpu'")
    if resolved.type == "cuda" and resolved.index is None and dist.is_available() and dist.is_initialized():
        resolved = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return resolved


# The name before process_device; kept for code that imports it.
resolve_device = process_device


def gather(obj: object, world_size: int) -> list[object]:
    """``obj`` of every process, in rank order (collective: every process must call it); ``[obj]`` alone."""
    if world_size == 1:
        return [obj]
    gathered: list[object] = [None] * world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def average_over_processes(tensor: torch.Tensor, world_size: int) -> torch.Tensor:
    """The mean of ``tensor`` over the processes, in place (collective); ``tensor`` itself alone."""
    if world_size > 1:
        dist.all_reduce(tensor)
        tensor /= world_size
    return tensor


def data_parallel(module: nn.Module, device: torch.device, world_size: int) -> nn.Module:
    """``module`` wrapped in ``DistributedDataParallel`` when there are several processes, else ``module``."""
    if world_size == 1:
        return module
    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
