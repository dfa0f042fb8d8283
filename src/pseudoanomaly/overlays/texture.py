"""Texture blending: the overlay of DRAEM (Zavrtanik, Kristan & Skočaj, "DRAEM - A discriminatively trained
reconstruction embedding for surface anomaly detection", ICCV 2021).

Reference code (github.com/VitjanZ/DRAEM, ``data_loader.py``), per image: a random photograph from the
Describable Textures Dataset, resized to the image size and passed through three random ``imgaug``
augmentations, is blended into the masked region as ``I_s = (1 - M) I + M ((1 - b) T + b I)`` with
``b = rand() * 0.8``. Here ``b`` is the weight of the *image*: ``b = 0`` pastes the texture as it is.

NOTE: anomalib's ``PerlinAnomalyGenerator`` writes the same blend the other way round: its ``blend_factor``
(``beta`` inside) is the weight of the *texture*, so its default ``(0.2, 1.0)`` is this module's
``beta = (0.0, 0.8)``.

NOTE: departures from the reference:

- textures come from a tensor bank the user supplies; a bank image larger than the image is cropped at a
  random place instead of being resized to the image size (pass a bank already resized to the image size to
  get DRAEM's geometry); a smaller one is upscaled, keeping its aspect ratio, until it covers the image;
- DRAEM's random augmentation of the texture is left to an optional ``texture_transform``;
- without a bank, textures are fractal Perlin noise (our choice, not DRAEM's), so the overlay works with no
  data at all;
- volumes ``(B, C, D, H, W)`` (DRAEM is 2-D) take a bank of volumes ``(N, C, d, h, w)``, cropped (and upscaled
  trilinearly when smaller) the same way, or 3-D fractal Perlin noise (:func:`~pseudoanomaly.noise3d.fractal_volume`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_range_pair
from .._random import randint, uniform
from ..noise import fractal_noise, minmax_stretch
from ..noise3d import fractal_volume, random_unit_vectors
from .base import Overlay, Params, returns_new_tensor

__all__ = ["TextureBlend"]

BETA = (0.0, 0.8)  # DRAEM data_loader.py: beta = torch.rand(1) * 0.8, the weight of the image in the mask
# Noise textures when no bank is given (our choices; DRAEM always uses DTD photographs):
NOISE_BASE_EXPONENTS = (0, 3)  # the coarsest octave has 2**0 to 2**3 lattice cells per side
NOISE_OCTAVES = 4  # then 2, 4 and 8 times finer
NOISE_PERSISTENCE = 0.5  # each octave half as strong as the one before (the usual fractal-noise choice)


def _check_bank(textures: object) -> Tensor:
    if not isinstance(textures, Tensor):
        raise TypeError(f"textures must be a torch.Tensor of shape (N, C, h, w) or None, got {type(textures).__name__}")
    if textures.ndim not in (4, 5) or 0 in textures.shape:
        raise ValueError(f"textures must have a non-empty shape (N, C, h, w) (or (N, C, d, h, w) for volumes), got "
                         f"{tuple(textures.shape)}")
    if not textures.is_floating_point():
        raise TypeError(f"textures must be a floating-point tensor, got dtype {textures.dtype}")
    if not bool(torch.isfinite(textures).all()):
        raise ValueError("textures contains NaN or Inf values")
    return textures


def _crop(bank: Tensor, index: Tensor, top: Tensor, left: Tensor, height: int, width: int) -> Tensor:
    # Crop i is bank[index[i], :, top[i]:top[i] + height, left[i]:left[i] + width], for the whole batch at
    # once: take the crops' rows from the bank seen as a table of (N * C * h) rows, then their columns with
    # one gather. Only the rows needed are copied, not whole textures (3x faster on a CPU than selecting the
    # textures first).
    n, c, th, tw = bank.shape
    b, device = index.shape[0], bank.device
    channel = torch.arange(c, device=device).view(1, c, 1)
    row = torch.arange(height, device=device).view(1, 1, height)
    col = torch.arange(width, device=device).view(1, 1, width)
    rows = (index.view(b, 1, 1) * c + channel) * th + top.view(b, 1, 1) + row  # (B, C, height)
    picked = bank.reshape(n * c * th, tw).index_select(0, rows.view(-1)).view(b, c * height, tw)
    cols = (left.view(b, 1, 1) + col).expand(b, c * height, width)
    return picked.gather(2, cols).view(b, c, height, width)


def _crop_volumes(bank: Tensor, index: Tensor, corner: Tensor, size: tuple[int, int, int]) -> Tensor:
    # crop i is bank[index[i], :, z:z + D, y:y + H, x:x + W] with (z, y, x) = corner[i], by broadcast indexing
    b, c = index.shape[0], bank.shape[1]
    z, y, x = (corner[:, i].view(b, 1, 1, 1, 1) + torch.arange(n, device=bank.device).view(
        [1, 1] + [-1 if j == i else 1 for j in range(3)]) for i, n in enumerate(size))
    channel = torch.arange(c, device=bank.device).view(1, c, 1, 1, 1)
    return bank[index.view(b, 1, 1, 1, 1), channel, z, y, x]  # (B, C, D, H, W)


def _covering_volume(bank_size: tuple[int, ...], size: tuple[int, ...]) -> tuple[int, ...]:
    # size a bank of volumes is upscaled to, keeping its aspect ratio, so that it covers the volumes
    if all(t >= n for t, n in zip(bank_size, size)):
        return tuple(bank_size)
    scale = max(n / t for t, n in zip(bank_size, size))
    return tuple(max(n, round(t * scale)) for t, n in zip(bank_size, size))


def _covering_size(th: int, tw: int, h: int, w: int) -> tuple[int, int]:
    # Size a bank of (th, tw) textures is upscaled to, keeping its aspect ratio, so that it covers (h, w).
    if th >= h and tw >= w:
        return th, tw
    scale = max(h / th, w / tw)
    return max(h, round(th * scale)), max(w, round(tw * scale))


class TextureBlend(Overlay):
    """Blend a random texture into the masked pixels: ``(1 - b) * texture + b * image``, ``b`` drawn per image.

    Textures come from ``textures``, a bank of images: each sample takes a random one and a random crop of the
    image's size (a bank smaller than the image is first upscaled bilinearly, keeping its aspect ratio, until
    it covers the image; only upscaling happens, so there is nothing to antialias). A one-channel bank serves
    images of any channel count; otherwise the channel counts must match. Without a bank, each sample gets
    fractal Perlin noise (:func:`~pseudoanomaly.noise.fractal_noise`, independent per channel, a
    random coarsest scale), stretched to the value range.

    Args:
        textures: bank of textures, values in ``value_range``, or ``None`` for noise textures. Stored as a
            non-persistent buffer: ``.to(device)`` moves it, ``state_dict()`` leaves it out.
        beta: ``(min, max)`` of ``b``, the weight kept by the *image* inside the mask, in [0, 1]; the default
            is DRAEM's ``rand() * 0.8``. ``(0, 0)`` pastes the texture unchanged.
        texture_transform: optional callable applied to the batch of chosen textures, ``(B, C, H, W)`` to the
            same shape, e.g. a Kornia augmentation (DRAEM augments its textures). It is not seeded by
            ``generator`` (a Kornia augmentation draws from torch's global generator) unless it is written to
            take it; its output is kept in the parameters, so replaying them reproduces it exactly.
        value_range: ``(low, high)`` of valid image values; the output is clipped to it.
        same_on_batch: one texture, crop and ``b`` for the whole batch.

    Returns:
        Calling it, ``overlay(images, masks, generator=None, params=None)``, returns a new tensor of the
        images' shape, dtype and device: masked pixels painted, every other pixel bit-identical (see
        :meth:`Overlay.forward <pseudoanomaly.overlays.Overlay.forward>`).

    Volumes ``(B, C, D, H, W)`` take a bank of volumes (a 5-D ``textures``) or, without a bank, 3-D fractal
    Perlin noise (:func:`~pseudoanomaly.noise3d.fractal_volume`); a bank of one kind refuses the other kind of
    input.

    Shape:
        - textures: :math:`(N, C \\text{ or } 1, h, w)`, or :math:`(N, C \\text{ or } 1, d, h, w)` for volumes
        - images: :math:`(B, C, H, W)` or :math:`(B, C, D, H, W)`
        - masks: :math:`(B, 1, H, W)` or :math:`(B, 1, D, H, W)`
        - output: the shape of images

    Example:
        >>> blend = TextureBlend(textures=torch.ones(3, 1, 40, 40), beta=(0.5, 0.5))
        >>> images = torch.zeros(2, 3, 32, 32)
        >>> masks = torch.zeros(2, 1, 32, 32); masks[:, :, 8:16, 8:16] = 1
        >>> out = blend(images, masks, generator=torch.Generator().manual_seed(0))
        >>> out[0, :, 8, 8].tolist(), out[0, :, 0, 0].tolist()
        ([0.5, 0.5, 0.5], [0.0, 0.0, 0.0])
    """

    textures: Tensor | None
    supports_volumes = True

    def __init__(
        self,
        textures: Tensor | None = None,
        beta: tuple[float, float] = BETA,
        texture_transform: Callable[[Tensor], Tensor] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if textures is not None:
            textures = _check_bank(textures).contiguous()  # crops read it as a table of rows
            lo, hi = self.value_range
            t_lo, t_hi = float(textures.min()), float(textures.max())
            if t_lo < lo or t_hi > hi:
                raise ValueError(
                    f"textures must lie in value_range {self.value_range}, got values in [{t_lo}, {t_hi}]"
                )
        self.register_buffer("textures", textures, persistent=False)
        self.beta = check_range_pair("beta", beta, 0.0, 1.0)
        if texture_transform is not None and not callable(texture_transform):
            raise TypeError(f"texture_transform must be callable or None, got {type(texture_transform).__name__}")
        self.texture_transform = texture_transform

    def draw(self, images: Tensor, generator: torch.Generator | None) -> Params:
        b, c = images.shape[:2]
        device = images.device
        self._check_bank_kind(images)
        if images.ndim == 5:
            params = self._draw_volume(images, generator)
        elif self.textures is None:
            params = self._draw_noise(b, c, generator, device)
        else:
            params = self._draw_crops(b, c, images.shape[2], images.shape[3], generator, device)
        params["beta"] = uniform((b,), *self.beta, generator=generator, device=device)
        if self.texture_transform is not None:
            texture = self._texture(images, params)
            transformed = self.texture_transform(texture)
            if not isinstance(transformed, Tensor) or transformed.shape != texture.shape:
                got = tuple(transformed.shape) if isinstance(transformed, Tensor) else type(transformed).__name__
                raise ValueError(f"texture_transform must return a tensor of shape {tuple(texture.shape)}, got {got}")
            params["texture"] = transformed
        return params

    @returns_new_tensor
    def fill(self, images: Tensor, params: Params) -> Tensor:
        texture = params["texture"] if "texture" in params else self._texture(images, params)
        beta = params["beta"].to(images.dtype).view(-1, *[1] * (images.ndim - 1))  # (B, 1, 1, 1[, 1])
        blended = texture.to(images.dtype) * (1 - beta)  # a new tensor: the texture may be a parameter
        return blended.add_(beta * images).clamp_(*self.value_range)

    # -- textures -----------------------------------------------------------------------------------------
    def _texture(self, images: Tensor, params: Params) -> Tensor:
        """The ``(B, C, H, W)`` (or ``(B, C, D, H, W)``) textures that ``params`` choose, before ``texture_transform``."""
        self._check_bank_kind(images)
        if images.ndim == 5:
            return self._volume_texture(images, params)
        if "noise_resolution" in params:
            return self._noise_texture(images, params)
        return self._crop_texture(images, params)

    def _draw_noise(self, b: int, c: int, generator, device) -> Params:
        low, high = NOISE_BASE_EXPONENTS
        params = {"noise_resolution": 2 ** randint((b,), low, high, generator=generator, device=device)}
        for k in range(NOISE_OCTAVES):
            side = 2 ** (high + k) + 1  # the finest lattice octave k can need; coarser samples use a corner
            angles = uniform((b, c, side, side), 0.0, 2 * math.pi, generator=generator, device=device)
            params[f"noise_angles_{k}"] = angles
        return params

    def _noise_texture(self, images: Tensor, params: Params) -> Tensor:
        b, c, h, w = images.shape
        angles = [params[f"noise_angles_{k}"].flatten(0, 1) for k in range(NOISE_OCTAVES)]  # (B * C, L, L) each
        resolution = params["noise_resolution"].repeat_interleave(c).view(-1, 1).expand(-1, 2)  # (B * C, 2)
        field = fractal_noise(angles, resolution, h, w, NOISE_PERSISTENCE).view(b, c, h, w).to(images.dtype)
        lo, hi = self.value_range
        return lo + (hi - lo) * minmax_stretch(field)  # each sample spans the value range

    def _check_channels(self, c: int) -> None:
        bank_c = self.textures.shape[1]
        if bank_c not in (1, c):
            raise ValueError(
                f"textures have {bank_c} channels but the images have {c}: a bank must have 1 channel or as "
                f"many as the images (textures shape {tuple(self.textures.shape)})"
            )

    def _draw_crops(self, b: int, c: int, h: int, w: int, generator, device) -> Params:
        self._check_channels(c)
        n, _, th, tw = self.textures.shape
        sh, sw = _covering_size(th, tw, h, w)
        return {
            "index": randint((b,), 0, n - 1, generator=generator, device=device),
            "top": randint((b,), 0, sh - h, generator=generator, device=device),
            "left": randint((b,), 0, sw - w, generator=generator, device=device),
        }

    def _crop_texture(self, images: Tensor, params: Params) -> Tensor:
        b, c, h, w = images.shape
        self._check_channels(c)
        bank = self.textures
        index = params["index"].to(bank.device)
        sh, sw = _covering_size(bank.shape[2], bank.shape[3], h, w)
        if (sh, sw) != tuple(bank.shape[2:]):
            # upscale only the chosen textures; they then form the bank the crops are taken from
            bank = F.interpolate(bank[index], size=(sh, sw), mode="bilinear", align_corners=False)
            index = torch.arange(b, device=bank.device)
        crops = _crop(bank, index, params["top"].to(bank.device), params["left"].to(bank.device), h, w)
        return crops.to(device=images.device, dtype=images.dtype).expand(b, c, h, w)  # 1 channel serves all

    # -- volumes ------------------------------------------------------------------------------------------------
    def _check_bank_kind(self, images: Tensor) -> None:
        if self.textures is not None and self.textures.ndim != images.ndim:
            kinds = {4: "2-D textures (N, C, h, w)", 5: "volumes (N, C, d, h, w)"}
            raise ValueError(f"TextureBlend: textures is a bank of {kinds[self.textures.ndim]} (shape "
                             f"{tuple(self.textures.shape)}) but the images have shape {tuple(images.shape)}; "
                             f"pass a bank of {kinds[images.ndim]} or textures=None for noise textures")

    def _draw_volume(self, images: Tensor, generator) -> Params:
        b, c, *size = images.shape
        device = images.device
        if self.textures is None:
            low, high = NOISE_BASE_EXPONENTS
            params = {"noise_resolution": 2 ** randint((b,), low, high, generator=generator, device=device)}
            for k in range(NOISE_OCTAVES):
                side = 2 ** (high + k) + 1
                params[f"noise_gradients_{k}"] = random_unit_vectors((b, c, side, side, side), generator, device)
            return params
        self._check_channels(c)
        covering = _covering_volume(tuple(self.textures.shape[2:]), tuple(size))
        params = {"index": randint((b,), 0, self.textures.shape[0] - 1, generator=generator, device=device)}
        corner = [randint((b,), 0, full - n, generator=generator, device=device) for full, n in zip(covering, size)]
        params["corner"] = torch.stack(corner, dim=-1)  # (B, 3): z, y, x of the crop in the (upscaled) bank
        return params

    def _volume_texture(self, images: Tensor, params: Params) -> Tensor:
        b, c, *size = images.shape
        size = tuple(size)
        if self.textures is None:
            gradients = [params[f"noise_gradients_{k}"].flatten(0, 1) for k in range(NOISE_OCTAVES)]
            resolution = params["noise_resolution"].repeat_interleave(c).view(-1, 1).expand(-1, 3)  # (B * C, 3)
            field = fractal_volume(gradients, resolution, size, NOISE_PERSISTENCE).view(b, c, *size)
            lo, hi = self.value_range
            return lo + (hi - lo) * minmax_stretch(field.to(images.dtype))
        self._check_channels(c)
        bank, index = self.textures, params["index"].to(self.textures.device)
        covering = _covering_volume(tuple(bank.shape[2:]), size)
        if covering != tuple(bank.shape[2:]):
            bank = F.interpolate(bank[index], size=covering, mode="trilinear", align_corners=False)
            index = torch.arange(b, device=bank.device)
        crops = _crop_volumes(bank, index, params["corner"].to(bank.device), size)
        return crops.to(device=images.device, dtype=images.dtype).expand(b, c, *size)

    def extra_repr(self) -> str:
        source = "noise" if self.textures is None else f"textures={tuple(self.textures.shape)}"
        own = f"{source}, beta={self.beta}"
        if self.texture_transform is not None:
            own += f", texture_transform={self.texture_transform!r}"
        rest = super().extra_repr()
        return f"{own}, {rest}" if rest else own
