"""One checker for the contract every mask generator and overlay keeps (used by all their tests).

Each check runs on images ``(B, C, H, W)`` when ``size`` is ``(H, W)`` and on volumes ``(B, C, D, H, W)`` when it
is ``(D, H, W)``; :func:`check_refuses_volumes` checks the clear error of a transform without 3-D support.

- masks: (B, 1, H, W), values exactly 0 or 1, images' dtype and device, inside the foreground, the input
  never modified, seeded determinism, parameter replay, batched equals one-at-a-time under replay;
- overlays: same shape, dtype, device; pixels outside the mask bit-identical; input never modified; seeded
  determinism and replay; an all-zero mask is the identity.
"""

from __future__ import annotations

import pytest
import torch

from pseudoanomaly.masks import MaskGenerator
from pseudoanomaly.overlays import Overlay


def _images(b: int, size: tuple[int, ...], device, dtype=torch.float32, c: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator(device=device).manual_seed(seed)
    return torch.rand(b, c, *size, generator=g, device=device, dtype=dtype)


def _ellipse_foreground(b: int, size: tuple[int, ...], device) -> torch.Tensor:
    # an ellipse (ellipsoid for volumes) of semi-axes 0.8, 0.6 (and 0.7 in depth) of the half-sides
    axes = (0.7, 0.6, 0.8)[-len(size):]
    inside = sum(
        (torch.linspace(-1, 1, n, device=device) / a).square().view([-1 if i == d else 1 for i in range(len(size))])
        for d, (n, a) in enumerate(zip(size, axes))
    ) <= 1
    return inside.expand(b, 1, *size).clone()


def check_mask_contract(gen: MaskGenerator, device, size: tuple[int, ...] = (64, 80), batch: int = 4) -> None:
    """Assert the mask-generator contract for ``gen`` on ``device``, on images (H, W) or volumes (D, H, W)."""
    size = tuple(size)
    for dtype in (torch.float32, torch.float64):
        images = _images(batch, size, device, dtype, c=2)
        before = images.clone()
        fg = _ellipse_foreground(batch, size, device)
        masks = gen(images, fg, generator=torch.Generator(device=device).manual_seed(7))
        assert masks.shape == (batch, 1, *size)
        assert masks.dtype == dtype and masks.device.type == torch.device(device).type
        assert bool(((masks == 0) | (masks == 1)).all()), "mask values must be exactly 0 or 1"
        assert not bool(masks[~fg].any()), "masks must stay inside the foreground"
        assert torch.equal(images, before), "the generator must not modify its input"
        again = gen(images, fg, generator=torch.Generator(device=device).manual_seed(7))
        assert torch.equal(masks, again), "same seed, same device must give bit-identical masks"
        replay = gen(images, fg, params=gen.last_params)
        assert torch.equal(masks, replay), "replaying gen.last_params must give the same masks"
        # replay one sample alone: batching must not change a sample's mask
        one = {k: v[1:2] for k, v in gen.last_params.items()}
        assert torch.equal(gen(images[1:2], fg[1:2], params=one), masks[1:2])
    # without a foreground the masks are still binary and of the right shape
    free = gen(_images(batch, size, device), generator=torch.Generator(device=device).manual_seed(3))
    assert free.shape == (batch, 1, *size) and bool(((free == 0) | (free == 1)).all())


def check_overlay_contract(overlay: Overlay, device, size: tuple[int, ...] = (32, 40), batch: int = 4) -> None:
    """Assert the overlay contract for ``overlay`` on ``device``, on images (H, W) or volumes (D, H, W)."""
    size = tuple(size)
    for dtype, c in ((torch.float32, 1), (torch.float64, 3)):
        images = _images(batch, size, device, dtype, c=c)
        before = images.clone()
        masks = torch.zeros(batch, 1, *size, device=device, dtype=dtype)
        masks[(slice(None), slice(None), *(slice(n // 4, n // 2) for n in size))] = 1
        out = overlay(images, masks, generator=torch.Generator(device=device).manual_seed(5))
        assert out.shape == images.shape and out.dtype == dtype and out.device == images.device
        assert torch.equal(images, before), "the overlay must not modify its input"
        outside = (masks == 0).expand_as(images)
        assert torch.equal(out[outside], images[outside]), "pixels outside the mask must be bit-identical"
        assert bool(torch.isfinite(out).all())
        lo, hi = overlay.value_range
        assert bool((out >= lo).all() and (out <= hi).all()), "output must stay in value_range"
        again = overlay(images, masks, generator=torch.Generator(device=device).manual_seed(5))
        assert torch.equal(out, again), "same seed, same device must give bit-identical output"
        assert torch.equal(overlay(images, masks, params=overlay.last_params), out), "replay must reproduce"
        assert not torch.equal(out, images), "a non-empty mask should change something"
        none = overlay(images, torch.zeros_like(masks), generator=torch.Generator(device=device).manual_seed(5))
        assert torch.equal(none, images), "an all-zero mask must leave the images unchanged"


def check_refuses_volumes(transform, device="cpu") -> None:
    """Assert that a transform without 3-D support refuses volumes with a ValueError naming its class."""
    images = _images(2, (6, 16, 16), device)
    args = (images,) if isinstance(transform, MaskGenerator) else (images, torch.ones_like(images[:, :1]))
    name = type(transform).__name__
    with pytest.raises(ValueError, match=rf"{name} does not support 3-D volumes \(B, C, D, H, W\) yet"):
        transform(*args)
