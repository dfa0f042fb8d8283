"""Batched random draws from an optional ``torch.Generator``.

All randomness in the library goes through these few functions so that one generator, seeded once, makes a
whole synthesis reproducible: same seed, same device, bit-identical output. Draws happen on the device the
data lives on; a generator must therefore live on that device too.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["check_generator", "uniform", "randint", "random_sign", "bernoulli", "random_bytes"]


def check_generator(generator: torch.Generator | None, device: torch.device) -> None:
    """Raise if ``generator`` cannot draw on ``device`` (torch would fail later with a less helpful message)."""
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if generator.device.type != torch.device(device).type:
        raise ValueError(
            f"generator is on {generator.device} but the data is on {device}; "
            f"create it with torch.Generator(device={str(device)!r})"
        )


def uniform(
    shape: tuple[int, ...],
    low: float | Tensor,
    high: float | Tensor,
    *,
    generator: torch.Generator | None,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Draw ``U[low, high)`` of ``shape``."""
    u = torch.rand(shape, generator=generator, device=device, dtype=dtype)
    return low + (high - low) * u


def randint(
    shape: tuple[int, ...],
    low: int,
    high: int,
    *,
    generator: torch.Generator | None,
    device: torch.device,
) -> Tensor:
    """Draw integers in ``[low, high]`` (both inclusive) as int64."""
    return torch.randint(low, high + 1, shape, generator=generator, device=device)


def bernoulli(
    shape: tuple[int, ...], p: float, *, generator: torch.Generator | None, device: torch.device
) -> Tensor:
    """Bool tensor, True with probability ``p`` (exactly all-True for ``p = 1`` and all-False for ``p = 0``)."""
    return torch.rand(shape, generator=generator, device=device) < p


def random_sign(
    shape: tuple[int, ...],
    p_negative: float,
    *,
    generator: torch.Generator | None,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """``-1`` with probability ``p_negative``, else ``+1``."""
    neg = bernoulli(shape, p_negative, generator=generator, device=device)
    return torch.where(neg, -1.0, 1.0).to(dtype)


def random_bytes(
    shape: tuple[int, ...], *, generator: torch.Generator | None, device: torch.device
) -> Tensor:
    """Uniform random bytes (uint8) of ``shape``, several times cheaper than one draw per element.

    Each int64 draw of ``random_(-2**63, None)`` is uniform over every 64-bit pattern but the largest: its
    eight bytes are independent uniform bytes (to within 2**-64), read in place with no copy.
    """
    n = math.prod(shape)
    words = torch.empty(-(-n // 8), dtype=torch.int64, device=device).random_(-(2**63), None, generator=generator)
    return words.view(torch.uint8)[:n].view(shape)
