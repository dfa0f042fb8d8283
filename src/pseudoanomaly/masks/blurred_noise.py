"""Random blobs from thresholded, blurred noise: the mask of Zhang, Deng & Li (SASHIMI 2023).

Reference recipe (the paper's released code, per 256 x 256 image, OpenCV on uint8):
uniform integer noise in [0, 255] -> ``cv2.GaussianBlur`` with sigma 15 (91 x 91 kernel) -> per-image
min-max stretch to [0, 255] -> threshold ``> 200`` -> 9 x 9 elliptical opening, then closing -> AND with
the foreground (the liver ROI, ``image > 0``).

NOTE: departures from the reference, all with the same statistics (tested against an OpenCV
re-implementation of the recipe):

- the blurred field is made on a coarser grid and upsampled (see :func:`~pseudoanomaly.noise.smooth_field`) instead
  of a 91 x 91 convolution at full resolution, and from Gaussian rather than uniform noise (after a
  91 x 91 blur the two are indistinguishable: the central limit theorem over 8,281 taps);
- the 8-bit arithmetic is emulated (``quantize=True``): after the blur the field spans only about ten grey
  levels, so rounding decides how much survives the ``> 200`` threshold. OpenCV's uint8 blur also uses a
  fixed-point kernel whose error goes beyond rounding (we measured the uint8 result to differ from the exact
  blur by 0.36 grey levels rms, against 0.29 for rounding alone); that excess acts like white noise of
  0.21 grey levels rms (``dither``) and widens each image's min-max range by about one grey level, which
  lowers the coverage by a third. Without it coverage is 5.0% instead of the recipe's 3.0%; with it,
  2.9% and 3.1 blobs per 256 x 256 frame against 3.1 (OpenCV 5.0, 1,000 masks each).
  A float pipeline (``quantize=False``) gives about 5.5% coverage at the same threshold.
- volumes ``(B, C, D, H, W)`` (beyond the reference, which is 2-D): the same recipe with a 3-D field
  (:func:`~pseudoanomaly.noise3d.smooth_volume_field`), the float stretch (the 8-bit emulation models a 2-D
  OpenCV pipeline, so ``quantize`` and ``dither`` apply to images only) and an ellipsoidal opening and closing
  (:func:`~pseudoanomaly.masks.functional.ellipsoidal_kernel`); with a voxel ``spacing``, ``sigma`` and
  ``kernel_size`` are in millimetres.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from .._checks import check_non_negative, check_odd_size, check_open_unit, check_positive, check_spacing
from .._random import random_bytes
from ..noise import _block_size, _sample_extremes, minmax_stretch, noise_grid_shape, smooth_field
from ..noise3d import smooth_volume_field, volume_noise_grid_shape
from .base import MaskGenerator, Params
from .morphology import MORPHOLOGY_BACKENDS, binary_morphology, elliptical_kernel
from .morphology3d import ellipsoid_element

__all__ = ["BlurredNoiseMask"]

# The released code's settings.
SIGMA = 15.0  # cv2.GaussianBlur sigma (kernel 91 x 91 = 6 sigma + 1)
THRESHOLD = 200 / 255  # "> 200" on the stretched uint8 image
KERNEL_SIZE = 9  # cv2.MORPH_ELLIPSE (9, 9) for the opening and the closing
GREY_LEVELS = 256  # uint8
# Uniform integer noise on [0, 255]: mean 127.5, variance (256^2 - 1) / 12, in grey levels.
NOISE_MEAN = 127.5
NOISE_STD = math.sqrt((GREY_LEVELS**2 - 1) / 12)
# rms error of cv2's fixed-point uint8 Gaussian blur beyond rounding, in grey levels (measured, see above)
DITHER = 0.21


class BlurredNoiseMask(MaskGenerator):
    """Blobs where blurred random noise, stretched to [0, 1] per image, exceeds a threshold.

    Each mask: draw white noise, blur it with a Gaussian of ``sigma`` pixels, stretch it to [0, 1] by its own
    minimum and maximum, keep what lies above ``threshold``, then smooth the outline with an elliptical
    opening and closing of ``kernel_size``. Defaults are those of the paper's released code.

    Args:
        sigma: blur standard deviation in pixels (voxels; mm with a ``spacing``); larger makes fewer, rounder
            blobs.
        threshold: cut on the stretched field, in (0, 1); higher makes smaller blobs.
        kernel_size: odd side of the elliptical (ellipsoidal for volumes) structuring element (1 disables the
            smoothing); with a ``spacing``, its diameter in mm (a positive number that must cover a voxel).
        quantize: emulate the released code's uint8 arithmetic (rounding after the blur and the stretch).
        dither: rms of the extra error of OpenCV's fixed-point uint8 blur, in grey levels (only with
            ``quantize``); 0 gives an exactly rounded blur.
        downsample: coarsening of the noise grid, see :func:`~pseudoanomaly.noise.smooth_field`.
        backend: morphology backend, see :func:`~pseudoanomaly.masks.functional.binary_opening`; on volumes
            ``"opencv"`` means the host path (``scipy.ndimage``, the same masks) and ``"packed"`` the default.
        spacing: voxel size ``(z, y, x)`` in mm of the volumes this generator is called on, or ``None``; with it
            ``sigma`` and ``kernel_size`` are in mm. Volumes only (2-D images with a spacing are refused).
        **kwargs: shared options of :class:`~pseudoanomaly.masks.MaskGenerator` (``union``,
            ``rejection``, ``area``, ``max_tries``, ``on_failure``, ``same_on_batch``).

    Returns:
        Calling it, ``gen(images, foreground=None, generator=None, params=None)``, returns masks that are
        exactly 0 or 1, in the images' dtype and on their device, never outside the foreground (see
        :meth:`MaskGenerator.forward <pseudoanomaly.masks.MaskGenerator.forward>`).

    Shape:
        - images: :math:`(B, C, H, W)` or :math:`(B, C, D, H, W)`
        - foreground: :math:`(B, 1, H, W)` or :math:`(B, 1, D, H, W)`
        - output: :math:`(B, 1, H, W)` or :math:`(B, 1, D, H, W)`

    Example:
        >>> gen = BlurredNoiseMask()
        >>> images = torch.rand(4, 1, 256, 256)
        >>> masks = gen(images, generator=torch.Generator().manual_seed(0))
        >>> masks.shape, sorted(masks.unique().tolist()) in ([0.0], [0.0, 1.0])
        (torch.Size([4, 1, 256, 256]), True)

        CT volumes of 2.5 x 0.7 x 0.7 mm voxels, a 6 mm blur and a 5 mm ellipsoidal opening and closing:

        >>> gen = BlurredNoiseMask(sigma=6.0, kernel_size=5.0, spacing=(2.5, 0.7, 0.7), threshold=0.7)
        >>> volumes = torch.rand(2, 1, 12, 64, 64)
        >>> masks = gen(volumes, generator=torch.Generator().manual_seed(0))
        >>> masks.shape, tuple(gen.kernel3d.shape)
        (torch.Size([2, 1, 12, 64, 64]), (3, 9, 9))
    """

    supports_volumes = True

    def __init__(
        self,
        sigma: float = SIGMA,
        threshold: float = THRESHOLD,
        kernel_size: int = KERNEL_SIZE,
        quantize: bool = True,
        dither: float = DITHER,
        downsample: int | None = None,
        backend: str = "auto",
        spacing: tuple[float, float, float] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.sigma = check_positive("sigma", sigma)
        self.threshold = check_open_unit("threshold", threshold)
        self.spacing = check_spacing("spacing", spacing, 3)
        if self.spacing is None:
            self.kernel_size = check_odd_size("kernel_size", kernel_size)
        else:
            self.kernel_size = check_positive("kernel_size", kernel_size)  # mm
        self.quantize = bool(quantize)
        self.dither = check_non_negative("dither", dither)
        noise_grid_shape(1, 1, self.sigma, downsample)  # validates downsample
        self.downsample = downsample
        if backend not in MORPHOLOGY_BACKENDS:
            raise ValueError(f"backend must be one of {list(MORPHOLOGY_BACKENDS)}, got {backend!r}")
        self.backend = backend
        if self.spacing is None:
            self.register_buffer("kernel", elliptical_kernel(kernel_size), persistent=False)
        # the volumes' element; an mm size that rounds to a single voxel is refused here, naming kernel_size
        self.register_buffer("kernel3d", ellipsoid_element(kernel_size, self.spacing, "kernel_size"), persistent=False)

    def draw(self, n, height, width, foreground, generator, device) -> Params:
        if self.spacing is not None:
            raise ValueError(f"BlurredNoiseMask: spacing={self.spacing} is a voxel size (z, y, x) for volumes (B, C, D, "
                             f"H, W), got 2-D images of {height} x {width}; leave spacing=None for images")
        gh, gw = noise_grid_shape(height, width, self.sigma, self.downsample)
        params = {"noise": torch.randn((n, 1, gh, gw), generator=generator, device=device)}
        if self.quantize and self.dither > 0:
            # uniform bytes: a dither of (byte + 0.5) / 128 - 1, uniform on (-1, 1), costs an eighth of torch.rand
            params["dither"] = random_bytes((n, 1, height, width), generator=generator, device=device)
        return params

    def render(self, params: Params, height: int, width: int) -> Tensor:
        if self.quantize:
            # In grey levels, blurred uniform uint8 noise has the noise's mean and NOISE_STD times the standard
            # deviation of blurred unit noise; cv2 rounds the blur to uint8 (plus its fixed-point error).
            noise, dither = params["noise"], params.get("dither")
            # the dither's mean, amplitude * (0.5 / 128 - 1), goes into the field's offset: one pass less
            offset = NOISE_MEAN + (self._dither_amplitude * (0.5 / 128 - 1) if dither is not None else 0.0)
            masks = torch.empty((len(noise), 1, height, width), dtype=torch.bool, device=noise.device)
            # On a CPU, a few images at a time: the field and the dither of a block stay in cache, and the
            # temporaries, reused block after block, spare the fresh pages a whole-batch field would fault in
            # (measured: 16,000 page faults and a third of the time of a batch of 64 at 256 x 256).
            # One field buffer and one dither buffer serve every block (fresh ones would fault their pages in
            # again block after block: half the time of the field's matrix products).
            step = _block_size(len(noise), height * width, noise.device)
            buffers = torch.empty((2, min(step, len(noise)), 1, height, width), dtype=noise.dtype, device=noise.device)
            for start in range(0, len(noise), step):
                block = slice(start, start + step)
                n = len(noise[block])
                levels = smooth_field(noise[block], height, width, self.sigma, self.downsample, scale=NOISE_STD,
                                      offset=offset, out=buffers[0, :n])  # (n, 1, H, W)
                if dither is not None:
                    # as floats first: adding the bytes directly takes a mixed-type path several times slower
                    levels.add_(buffers[1, :n].copy_(dither[block]), alpha=self._dither_amplitude / 128)
                torch.ge(levels, self._cut_8bit(levels), out=masks[block])
        else:
            field = smooth_field(params["noise"], height, width, self.sigma, self.downsample)
            masks = minmax_stretch(field) > self.threshold
        if self.kernel_size > 1:
            masks = binary_morphology(masks, self.kernel, ("open", "close"), self.backend)
        return masks

    def draw_volume(self, n, size, foreground, generator, device) -> Params:
        grid = volume_noise_grid_shape(size, self.sigma, self.spacing, self.downsample)
        return {"noise": torch.randn((n, 1, *grid), generator=generator, device=device)}

    def render_volume(self, params: Params, size) -> Tensor:
        field = smooth_volume_field(params["noise"], size, self.sigma, self.spacing, self.downsample)
        # the stretch's cut-off in the field's own units: one comparison instead of a stretched copy of the volume
        lo, hi = _sample_extremes(field)
        limit = (lo + self.threshold * (hi - lo)).view(-1, 1, 1, 1, 1)
        masks = (field > limit) & (hi > lo).view(-1, 1, 1, 1, 1)  # (n, 1, D, H, W); a constant field stretches to 0
        if self.kernel3d.numel() > 1:
            backend = {"opencv": "scipy", "packed": "auto"}.get(self.backend, self.backend)
            masks = binary_morphology(masks, self.kernel3d, ("open", "close"), backend)
        return masks

    @property
    def _dither_amplitude(self) -> float:
        # dither bytes u -> amplitude * ((u + 0.5) / 128 - 1), uniform on (-amplitude, amplitude) with rms self.dither
        return self.dither * math.sqrt(3)

    def _cut_8bit(self, levels: Tensor) -> Tensor:
        """Per sample, the least value whose pixels pass the released code's ``> threshold`` after its uint8 steps.

        cv2 rounds the blur to integers, then ``cv2.normalize`` stretches them to [0, 255] and rounds half to even.
        Rounding is monotonic, so the extremes of the rounded field are the rounded extremes; a stretched value
        exceeds the cut-off iff it reaches the next integer m above it, i.e. iff the rounded value r has
        (r - lo) * 255 / span past m - 0.5 (at exactly m - 0.5 only when m is even), i.e. iff r >= c, an integer;
        and a float x rounds (half to even) to at least c iff x >= c - 0.5 when c is even, x > c - 0.5 when odd.
        So one comparison with the unrounded field gives the mask: no rounded or stretched copy of it.
        """
        # A handful of numbers per sample: in NumPy, in the field's dtype (the same IEEE operations as in torch),
        # whose small-array calls cost microseconds where torch's cost tens (16 blocks of a 64-image batch).
        lo, hi = torch.stack(_sample_extremes(levels)).cpu().numpy().round()  # half to even, as torch and cv2
        span = hi - lo
        top = GREY_LEVELS - 1
        m = math.floor(round(self.threshold * top, 6)) + 1
        limit = lo + (m - 0.5) * span / top  # in grey levels; the rounded value must be >= it (> when m is odd)
        c = np.ceil(limit) if m % 2 == 0 else np.floor(limit) + 1  # the least integer that passes
        half = c - 0.5  # exact: c is an integer of a few hundred
        cut = np.where(c % 2 == 0, half, np.nextafter(half, np.inf, dtype=half.dtype))
        cut[span <= 0] = np.inf  # a constant image stretches to 0 everywhere: no mask
        cut = torch.from_numpy(cut).to(levels.device)
        return cut.view(-1, *[1] * (levels.ndim - 1))

    def extra_repr(self) -> str:
        own = f"sigma={self.sigma}, threshold={self.threshold:.4f}, kernel_size={self.kernel_size}"
        if self.spacing is not None:
            own += f", spacing={self.spacing}"
        if not self.quantize:
            own += ", quantize=False"
        return f"{own}, {super().extra_repr()}"
