"""Patch overlays: paste image content from elsewhere into the mask, CutPaste- or FPI-style.

- CutPaste (Li, Sohn, Yoon & Pfister, "CutPaste: Self-Supervised Learning for Anomaly Detection and
  Localization", CVPR 2021): a patch of the image itself is cut and pasted at another location.
- Foreign Patch Interpolation (Tan, Hou, Batten, Kainz & Kamnitsas, "Detecting Outliers with Foreign Patch
  Interpolation", MELBA 2022; arXiv 2020): a patch from *another* image, at the same location, is blended in
  with a factor ``alpha ~ U(0, 1)``: ``(1 - alpha) * I + alpha * P``.

Both are one operation here: each masked pixel becomes ``(1 - alpha) * I + alpha * P`` where ``P`` is the
source image's content at that pixel, the source being another sample of the batch (``source="other"``, at
the same location: FPI) or the sample itself shifted by a random offset (``source="self"``: CutPaste with
``alpha = 1``). The mask generator decides the patch's shape, so this overlay only says where content comes
from.

NOTE: choices of ours:

- The shift wraps around the image borders (like ``torch.roll``): every shifted pixel is real content of the
  image, at no cost of padding, and the offset distribution does not depend on where the mask lies. A patch
  that straddles the border therefore joins content from opposite sides; for an anomaly that is harmless.
- The offset has a uniform random direction and a length drawn in ``shift`` as a fraction of the image
  (``dy`` of the height, ``dx`` of the width), rounded to whole pixels.
- The other sample is ``(b + step) % B`` with ``step`` uniform in ``[1, B - 1]``: never the sample itself,
  uniform over the others. With ``B == 1``, or ``same_on_batch`` (parameters are drawn for one sample),
  there is no other sample and ``source="other"`` falls back to ``"self"``. Inside
  :class:`~pseudoanomaly.PseudoAnomaly` the batch is the anomalous subset, so sources come from that subset.
- Volumes ``(B, C, D, H, W)``: the same, in 3-D; the offset has a uniform random direction on the sphere (a
  normalized Gaussian vector) and a length drawn in ``shift`` as a fraction of the volume's sides (``dz`` of
  D, ``dy`` of H, ``dx`` of W).
- CutPaste's color jitter and patch-size/aspect sampling are left out: the size and shape come from the
  mask generator and an intensity change from another overlay.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._checks import check_choice, check_range_pair
from .._random import randint, uniform
from .base import Overlay, Params, returns_new_tensor

__all__ = ["PatchBlend"]

SOURCES = ("other", "self")
ALPHA = (0.0, 1.0)  # FPI: alpha ~ U(0, 1)
SHIFT = (0.1, 0.5)  # ours: offset length as a fraction of the image size, for source="self"


class PatchBlend(Overlay):
    """Blend content from another image of the batch, or from elsewhere in the same image, into the mask.

    Each masked pixel becomes ``(1 - alpha) * I + alpha * P``, with one ``alpha`` per sample and ``P`` the
    source content at that pixel: the same location in another sample (``source="other"``, FPI) or the
    sample itself shifted by a random offset with wrap-around (``source="self"``, CutPaste).

    Args:
        source: ``"other"`` (another sample of the batch; the sample itself, shifted, when the batch has one
            sample) or ``"self"`` (the same sample, shifted).
        alpha: ``(min, max)`` of the per-sample interpolation factor, in [0, 1]; ``(1, 1)`` pastes the
            source content unchanged.
        shift: ``(min, max)`` length of the offset as a fraction of the image size, in [0, 1]; used when the
            source is the sample itself.
        value_range: ``(low, high)`` of valid image values; the output is clipped to it.
        same_on_batch: one ``alpha`` and one offset for the whole batch (``source="other"`` then falls back
            to ``"self"``).

    Returns:
        Calling it, ``overlay(images, masks, generator=None, params=None)``, returns a new tensor of the
        images' shape, dtype and device: masked pixels painted, every other pixel bit-identical (see
        :meth:`Overlay.forward <pseudoanomaly.overlays.Overlay.forward>`).

    Shape:
        - images: :math:`(B, C, H, W)` or :math:`(B, C, D, H, W)`
        - masks: :math:`(B, 1, H, W)` or :math:`(B, 1, D, H, W)`
        - output: the shape of images

    Example:
        >>> blend = PatchBlend(source="other", alpha=(1.0, 1.0))
        >>> images = torch.stack([torch.zeros(1, 4, 4), torch.ones(1, 4, 4)])
        >>> masks = torch.zeros(2, 1, 4, 4); masks[:, :, 1:3, 1:3] = 1
        >>> out = blend(images, masks, generator=torch.Generator().manual_seed(0))
        >>> out[0, 0, 1].tolist(), out[1, 0, 1].tolist()
        ([0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 1.0])
    """

    supports_volumes = True

    def __init__(
        self,
        source: str = "other",
        alpha: tuple[float, float] = ALPHA,
        shift: tuple[float, float] = SHIFT,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.source = check_choice("source", source, SOURCES)
        self.alpha = check_range_pair("alpha", alpha, 0.0, 1.0)
        self.shift = check_range_pair("shift", shift, 0.0, 1.0)

    def draw(self, images: Tensor, generator: torch.Generator | None) -> Params:
        if images.ndim == 5:
            return self._draw_volume(images, generator)
        b, _, h, w = images.shape
        device = images.device
        alpha, step, length = self._draw_source(b, generator, device)
        direction = uniform((b,), 0.0, 2 * math.pi, generator=generator, device=device)
        offset = torch.stack([length * h * torch.sin(direction), length * w * torch.cos(direction)], dim=-1)
        offset = offset.round().long() * (step == 0)[:, None]  # another sample is read at the same location
        # alpha (B,); step (B,): the source is sample (b + step) % B; offset (B, 2): (dy, dx) in pixels
        return {"alpha": alpha, "step": step, "offset": offset}

    def _draw_volume(self, images: Tensor, generator: torch.Generator | None) -> Params:
        b, device = images.shape[0], images.device
        alpha, step, length = self._draw_source(b, generator, device)
        direction = torch.randn((b, 3), generator=generator, device=device)
        direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # uniform on the sphere
        sides = torch.tensor(images.shape[2:], device=device, dtype=direction.dtype)
        offset = (length[:, None] * sides * direction).round().long() * (step == 0)[:, None]
        # offset (B, 3): (dz, dy, dx) in voxels
        return {"alpha": alpha, "step": step, "offset": offset}

    def _draw_source(self, b: int, generator: torch.Generator | None, device: torch.device
                     ) -> tuple[Tensor, Tensor, Tensor]:
        """The blend factor, the source sample (as a step in the batch) and the shift length of ``b`` samples."""
        alpha = uniform((b,), self.alpha[0], self.alpha[1], generator=generator, device=device)
        if self.source == "other" and b > 1:
            step = randint((b,), 1, b - 1, generator=generator, device=device)
        else:
            step = torch.zeros(b, dtype=torch.long, device=device)
        length = uniform((b,), self.shift[0], self.shift[1], generator=generator, device=device)
        return alpha, step, length

    @returns_new_tensor
    def fill(self, images: Tensor, params: Params) -> Tensor:
        if images.ndim == 5:
            return self._fill_volume(images, params)
        b, c, h, w = images.shape
        batch = torch.arange(b, device=images.device)
        sources = images[(batch + params["step"]) % b]  # (B, C, H, W)
        # Pixel (y, x) reads the source at (y - dy, x - dx), wrapped: the content moves by +offset.
        dy, dx = params["offset"][:, 0:1], params["offset"][:, 1:2]
        rows = (torch.arange(h, device=images.device) - dy) % h  # (B, H)
        cols = (torch.arange(w, device=images.device) - dx) % w  # (B, W)
        index = (rows[:, :, None] * w + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
        patch = sources.flatten(2).gather(2, index).view(b, c, h, w)
        alpha = params["alpha"].to(images.dtype).view(b, 1, 1, 1)
        return self._clip((1 - alpha) * images + alpha * patch)

    def _fill_volume(self, images: Tensor, params: Params) -> Tensor:
        b, c, d, h, w = images.shape
        batch = torch.arange(b, device=images.device)
        sources = images[(batch + params["step"]) % b]  # (B, C, D, H, W)
        # voxel (z, y, x) reads the source at (z - dz, y - dy, x - dx), wrapped
        z, y, x = ((torch.arange(n, device=images.device) - params["offset"][:, i : i + 1]) % n
                   for i, n in enumerate((d, h, w)))  # (B, D), (B, H), (B, W)
        index = (z[:, :, None, None] * (h * w) + y[:, None, :, None] * w + x[:, None, None, :])
        index = index.view(b, 1, d * h * w).expand(b, c, d * h * w)
        patch = sources.flatten(2).gather(2, index).view(b, c, d, h, w)
        alpha = params["alpha"].to(images.dtype).view(b, 1, 1, 1, 1)
        return self._clip((1 - alpha) * images + alpha * patch)

    def extra_repr(self) -> str:
        own = f"source={self.source!r}, alpha={self.alpha}"
        if self.source == "self" or self.shift != SHIFT:
            own += f", shift={self.shift}"
        rest = super().extra_repr()
        return f"{own}, {rest}" if rest else own
