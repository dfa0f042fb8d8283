"""Thresholded Perlin noise: the mask of DRAEM (Zavrtanik, Kristan & Skočaj, "DRAEM - A discriminatively
trained reconstruction embedding for surface anomaly detection", ICCV 2021).

Reference code (github.com/VitjanZ/DRAEM, ``perlin.py`` and ``data_loader.py``), per image: Perlin noise
(``rand_perlin_2d_np``) with ``2**u x 2**v`` lattice cells, ``u`` and ``v`` drawn independently from
{0, ..., 5}; rotated with ``imgaug.augmenters.Affine(rotate=(-90, 90))``; thresholded ``> 0.5``.

NOTE: departures from the reference:

- with ``rotation=(0, 0)`` the noise takes the separable evaluation of :func:`~pseudoanomaly.noise.perlin_noise`,
  equal to the per-pixel one up to float rounding (at most 1e-5 in float32): against the per-pixel evaluation
  on the same draws, fewer than 0.1% of mask pixels flip (tested) and coverage is unchanged;
- by default the noise is evaluated exactly at the rotated coordinates (:func:`~pseudoanomaly.noise.perlin_noise`)
  instead of rotating a noise image with bilinear interpolation (``rotation_mode="resample"`` does the latter,
  DRAEM's way, about 2.5x faster on a CPU: the unrotated noise has a fast separable form, the turned one not).
  Interpolation flattens the peaks of the finest lattices a little, so the exact masks cover slightly more: at
  256 x 256, against the reference grid rotated with ``cv2.warpAffine`` on the same draws (96 masks), 0.09% of
  pixels differ, coverage is 5.15% against 5.07% overall and 5% more for 32-cell lattices, the same for 8 cells
  or fewer (with ``"resample"``, 0.025% of pixels differ at 128 x 128, against 0.36% for the exact turn);
- points whose rotated coordinate falls outside the original frame get noise 0, hence no mask: this is the
  zero fill of ``imgaug``'s ``Affine`` (``mode="constant"``, ``cval=0``), which leaves the rotated-out
  corners empty;
- any image size works: DRAEM's grid needs the size to be a multiple of the resolution (up to 32);
- the whole batch is drawn at once: every sample gets gradients for the largest lattice
  (``2**max + 1`` points per side) and uses the top-left part its own resolution needs;
- volumes ``(B, C, D, H, W)`` (DRAEM is 2-D): 3-D Perlin noise (:func:`~pseudoanomaly.noise3d.perlin_volume`)
  with exponents drawn per axis, unit gradients uniform on the sphere, and no rotation (the rotation models
  DRAEM's image augmentation; ``rotation`` applies to images only). 3-D noise is less spread than 2-D noise (a
  blend of eight corner ramps instead of four), so DRAEM's threshold 0.5 covers far less of a volume: 0.6-0.9%
  of 32 x 128 x 128 and 8 x 128 x 128 volumes against 4.9% of 128 x 128 images (our measurement, 2026-12-01).
  :data:`VOLUME_THRESHOLD` = 0.35 gives volumes DRAEM's coverage (5.0% and 6.3% on the same volumes); pass it as
  ``threshold`` for masks that cover volumes as DRAEM's cover images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .._checks import check_choice, check_open_unit, check_range_pair
from .._random import randint, uniform
from ..noise import _block_size, _turn_bilinear, perlin_noise
from ..noise3d import perlin_volume, random_unit_vectors
from .base import MaskGenerator, Params

__all__ = ["PerlinMask", "VOLUME_THRESHOLD"]

# DRAEM data_loader.py: 2 ** torch.randint(min_perlin_scale=0, perlin_scale=6), i.e. 1 to 32 cells per side
SCALE_EXPONENTS = (0, 5)
# DRAEM data_loader.py: iaa.Sequential([iaa.Affine(rotate=(-90, 90))]), degrees
ROTATION = (-90.0, 90.0)
# DRAEM data_loader.py: perlin_noise > threshold with threshold = 0.5
THRESHOLD = 0.5
# How a turned mask's noise is made: evaluated at the turned points, or turned as an image (DRAEM's way).
ROTATION_MODES = ("exact", "resample")
#: The threshold at which 3-D Perlin noise covers volumes as DRAEM's threshold covers images (see the module).
VOLUME_THRESHOLD = 0.35
# Our bound, not DRAEM's: 2**8 cells per side already has details of one pixel on a 256 x 256 image.
MAX_EXPONENT = 8


def _check_exponents(value: object) -> tuple[int, int]:
    ok = (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) == 2
        and all(isinstance(e, int) and not isinstance(e, bool) for e in value)
    )
    if not ok or not 0 <= value[0] <= value[1] <= MAX_EXPONENT:  # type: ignore[index]
        raise ValueError(
            f"scale_exponents must be a (min, max) pair of integers with 0 <= min <= max <= {MAX_EXPONENT}, "
            f"got {value!r}"
        )
    return int(value[0]), int(value[1])  # type: ignore[index]


class PerlinMask(MaskGenerator):
    """Blobs where rotated Perlin noise of a random lattice resolution exceeds a threshold (DRAEM's masks).

    Each mask: draw lattice resolutions ``2**u`` (along the height) and ``2**v`` (along the width) with
    ``u, v`` uniform in ``scale_exponents``, a random unit gradient at every lattice point, and an angle
    uniform in ``rotation``; evaluate the Perlin noise (in [-1, 1]) turned by that angle, and keep what lies
    above ``threshold``. Coarse lattices make few large blobs, fine ones many small ones; unequal ``u`` and
    ``v`` make stripes. Defaults are DRAEM's.

    Args:
        scale_exponents: ``(min, max)`` of the exponents ``u`` and ``v``, integers in [0, 8].
        rotation: ``(min, max)`` angle in degrees (clockwise as displayed); ``(0, 0)`` disables rotation.
        threshold: cut on the noise, in (0, 1); higher makes smaller blobs.
        rotation_mode: ``"exact"`` evaluates the noise at the turned coordinates; ``"resample"`` evaluates the
            unturned noise (its fast separable form) and turns the image by bilinear resampling with a zero
            border, as DRAEM does: about 2.5x faster on a CPU, with masks that differ from ``"exact"``'s where
            interpolation flattens the finest lattices' peaks, and match DRAEM's own rotation more closely
            (tested, see the module). Images only; samples turned by 0 degrees are not resampled.
        **kwargs: shared options of :class:`~pseudoanomaly.masks.MaskGenerator` (``union``,
            ``rejection``, ``area``, ``max_tries``, ``on_failure``, ``same_on_batch``).

    Returns:
        Calling it, ``gen(images, foreground=None, generator=None, params=None)``, returns masks that are
        exactly 0 or 1, in the images' dtype and on their device, never outside the foreground (see
        :meth:`MaskGenerator.forward <pseudoanomaly.masks.MaskGenerator.forward>`).

    Volumes get 3-D Perlin noise with ``2**u x 2**v x 2**w`` cells (one exponent per axis, drawn in
    ``scale_exponents``) and no rotation; their ``last_params`` hold ``resolution`` ``(n, 3)`` and unit
    ``gradients`` ``(n, L, L, L, 3)``.

    Shape:
        - images: :math:`(B, C, H, W)` or :math:`(B, C, D, H, W)`
        - foreground: :math:`(B, 1, H, W)` or :math:`(B, 1, D, H, W)`
        - output: :math:`(B, 1, H, W)` or :math:`(B, 1, D, H, W)`

    Example:
        >>> gen = PerlinMask()
        >>> masks = gen(torch.rand(4, 3, 64, 64), generator=torch.Generator().manual_seed(0))
        >>> masks.shape, set(gen.last_params["resolution"].flatten().tolist()) <= {1, 2, 4, 8, 16, 32}
        (torch.Size([4, 1, 64, 64]), True)
    """

    supports_volumes = True

    def __init__(
        self,
        scale_exponents: tuple[int, int] = SCALE_EXPONENTS,
        rotation: tuple[float, float] = ROTATION,
        threshold: float = THRESHOLD,
        rotation_mode: str = "exact",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.scale_exponents = _check_exponents(scale_exponents)
        self.rotation = check_range_pair("rotation", rotation)
        self.threshold = check_open_unit("threshold", threshold)
        self.rotation_mode = check_choice("rotation_mode", rotation_mode, ROTATION_MODES)

    def draw(self, n, height, width, foreground, generator, device) -> Params:
        low, high = self.scale_exponents
        exponents = randint((n, 2), low, high, generator=generator, device=device)  # (n, 2): height, width
        side = 2**high + 1  # gradients for the finest lattice; coarser samples use the top-left corner
        angles = uniform((n, side, side), 0.0, 2 * math.pi, generator=generator, device=device)
        rotation = uniform((n,), *self.rotation, generator=generator, device=device)  # degrees
        return {"resolution": 2**exponents, "gradient_angles": angles, "rotation": rotation}

    def render(self, params: Params, height: int, width: int) -> Tensor:
        angles, resolution, rotation = params["gradient_angles"], params["resolution"], params["rotation"]
        n = len(angles)
        masks = torch.empty((n, 1, height, width), dtype=torch.bool, device=angles.device)
        # A few samples at a time through one reused noise buffer, thresholded straight into the masks: no
        # full-size float noise (and no float masks) whose fresh pages a CPU would fault in (same masks).
        step = _block_size(n, height * width, angles.device)
        buffer = torch.empty((min(step, n), 1, height, width), dtype=angles.dtype, device=angles.device)
        resample = self.rotation_mode == "resample" and min(height, width) >= 2
        if resample:
            grid = torch.empty((len(buffer), height, width, 2), dtype=angles.dtype, device=angles.device)
        for start in range(0, n, step):
            block = slice(start, start + step)
            turn, k = rotation[block], len(angles[block])
            noise = perlin_noise(angles[block], resolution[block], height, width, None if resample else turn,
                                 out=buffer[:k])
            if resample:
                turned = _turn_bilinear(noise, turn, grid[:k])
                still = turn == 0  # no turn: the unturned noise itself, not a resampled copy
                noise = torch.where(still.view(-1, 1, 1, 1), noise, turned) if bool(still.any()) else turned
            torch.gt(noise, self.threshold, out=masks[block])
        return masks  # (n, 1, H, W)

    def draw_volume(self, n, size, foreground, generator, device) -> Params:
        low, high = self.scale_exponents
        exponents = randint((n, 3), low, high, generator=generator, device=device)  # (n, 3): depth, height, width
        side = 2**high + 1  # the finest lattice; coarser samples use its first corner
        gradients = random_unit_vectors((n, side, side, side), generator, device)
        return {"resolution": 2**exponents, "gradients": gradients}

    def render_volume(self, params: Params, size) -> Tensor:
        return perlin_volume(params["gradients"], params["resolution"], size) > self.threshold  # (n, 1, D, H, W)

    def extra_repr(self) -> str:
        own = f"scale_exponents={self.scale_exponents}, rotation={self.rotation}, threshold={self.threshold}"
        if self.rotation_mode != "exact":
            own += f", rotation_mode={self.rotation_mode!r}"
        return f"{own}, {super().extra_repr()}"
