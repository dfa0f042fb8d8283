"""Batched overlays that paint an anomaly into the masked pixels of each image.

Every overlay is called as ``overlay(images, masks, generator=None)`` and returns a new tensor of the same
shape, dtype and device in which pixels outside the mask are bit-identical to the input; images
``(B, C, H, W)`` and volumes ``(B, C, D, H, W)`` alike.
"""

from .base import Overlay
from .intensity import IntensityShift
from .patch import PatchBlend
from .texture import TextureBlend

__all__ = ["Overlay", "IntensityShift", "PatchBlend", "TextureBlend"]
