"""Seeded, shardable batch order: the data order of an epoch is a pure function of (seed, epoch).

Like ``torch.utils.data.DistributedSampler`` every process draws the same permutation from the same seed and
keeps its own slice, so the processes need not communicate; unlike it, the slicing is per *batch* (process r
takes samples ``r, r + W, ...`` of each global batch), so W processes together see exactly the global batches a
single process would. A ``start`` batch lets a resumed run skip what it already trained on without loading it.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Sampler

from .._checks import check_int_at_least
from ._seeds import derive_seed

__all__ = ["SeededBatchSampler", "epoch_loader", "steps_in_an_epoch"]


class SeededBatchSampler(Sampler[list[int]]):
    """Yields this process's share of each full batch of a seeded random permutation of ``range(size)``.

    The last incomplete batch is dropped: every step then has the same batch size on every process, which
    keeps averaged gradients equal to the single-process ones.

    Args:
        size: dataset length.
        batch_size: global batch size (divisible by ``world_size``).
        seed: seed of the permutation.
        epoch: epoch number, mixed into the seed so each epoch has its own order.
        start: index of the first batch to yield.
        rank: this process's index in ``[0, world_size)``.
        world_size: number of processes sharing each batch.

    Example:
        >>> list(SeededBatchSampler(4, 2, seed=0, epoch=0)) == list(SeededBatchSampler(4, 2, seed=0, epoch=0))
        True
        >>> [len(b) for b in SeededBatchSampler(10, 4, seed=0, epoch=0, rank=1, world_size=2)]
        [2, 2]
    """

    def __init__(
        self, size: int, batch_size: int, seed: int, epoch: int, start: int = 0, rank: int = 0, world_size: int = 1
    ) -> None:
        self.size = check_int_at_least("size", size, 0)
        self.batch_size = check_int_at_least("batch_size", batch_size, 1)
        self.world_size = check_int_at_least("world_size", world_size, 1)
        if batch_size % world_size:
            raise ValueError(f"batch_size must be divisible by world_size={world_size}, got {batch_size!r}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank!r}")
        self.rank = rank
        self.seed, self.epoch = seed, epoch
        self.start = check_int_at_least("start", start, 0)

    def batches_per_epoch(self) -> int:
        """Number of full batches in an epoch."""
        return self.size // self.batch_size

    def __len__(self) -> int:
        return max(self.batches_per_epoch() - self.start, 0)

    def __iter__(self):
        g = torch.Generator().manual_seed(derive_seed(self.seed, "epoch", self.epoch))
        order = torch.randperm(self.size, generator=g)
        for b in range(self.start, self.batches_per_epoch()):
            batch = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield batch[self.rank :: self.world_size].tolist()


def steps_in_an_epoch(size: int, batch_size: int, world_size: int = 1) -> int:
    """Full global batches in ``size`` samples: the steps of an epoch (the last incomplete batch is dropped).

    Raises:
        ValueError: when ``batch_size`` is not divisible by ``world_size``, or ``size < batch_size``.
    """
    if batch_size % world_size:
        raise ValueError(f"batch_size must be divisible by the world size {world_size}, got {batch_size}")
    if size < batch_size:
        raise ValueError(f"train_data has {size} samples, fewer than batch_size={batch_size}")
    return size // batch_size


def epoch_loader(
    data: object, batch_size: int, seed: int, phase: int, epoch: int, start: int, rank: int, world_size: int,
    num_workers: int = 0, pin_memory: bool = False,
) -> DataLoader:
    """The batches of epoch ``epoch`` of phase number ``phase`` from batch ``start`` on, for process ``rank``.

    The order comes from :class:`SeededBatchSampler` seeded from ``(seed, phase)``; worker processes get a seed
    from ``(seed, phase, epoch, rank)``.
    """
    sampler = SeededBatchSampler(len(data), batch_size, seed=derive_seed(seed, "data", phase), epoch=epoch,
                                 start=start, rank=rank, world_size=world_size)
    # An explicit generator keeps the loader from drawing its worker seed from torch's global RNG.
    workers = torch.Generator().manual_seed(derive_seed(seed, "workers", phase, epoch, rank))
    return DataLoader(data, batch_sampler=sampler, num_workers=num_workers, pin_memory=pin_memory,
                      generator=workers)
