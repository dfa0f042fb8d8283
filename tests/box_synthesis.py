"""A tiny synthesis that takes 2-D and 3-D batches, so that the adapters' 3-D plumbing is tested on its own.

It has the library's synthesis signature and draws everything from the generator: one box per sample (half the
size of the image along every spatial axis, at a random corner), cut to the foreground, brightened by a random
0.1-0.2.
"""

from __future__ import annotations

import torch
from torch import Tensor


def box_synthesis(
    images: Tensor, foreground: Tensor | None = None, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    b, _, *spatial = images.shape  # (B, C, H, W) or (B, C, D, H, W)
    masks = torch.zeros(b, 1, *spatial, dtype=images.dtype, device=images.device)
    for i in range(b):
        corner = [int(torch.randint(0, s - s // 2 + 1, (1,), generator=generator)) for s in spatial]
        masks[(i, 0, *(slice(c, c + s // 2) for c, s in zip(corner, spatial)))] = 1
    if foreground is not None:
        masks = masks * foreground.to(masks.dtype)
    shift = 0.1 + 0.1 * torch.rand(b, generator=generator, device=images.device)
    augmented = images + masks * shift.view(b, *[1] * (images.ndim - 1))  # broadcast over channels
    return augmented, masks
