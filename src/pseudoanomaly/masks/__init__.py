"""Batched random-shape mask generators.

Every generator is called as ``gen(images, foreground=None, generator=None)`` and returns ``(B, 1, H, W)``
masks of exactly 0 and 1 on the images' device (``(B, 1, D, H, W)`` for volumes ``(B, C, D, H, W)``). They threshold random fields from :mod:`pseudoanomaly.noise`
and smooth them with the binary morphology of :mod:`pseudoanomaly.masks.functional` (pure batched operations).
"""

from . import functional
from .base import MaskGenerator
from .blob import BlobMask
from .blurred_noise import BlurredNoiseMask
from .perlin import PerlinMask

__all__ = ["functional", "MaskGenerator", "BlurredNoiseMask", "BlobMask", "PerlinMask"]
