"""Pure, batched operations that mask generators are made of: the public functional namespace of the masks.

Every function takes and returns ``(B, 1, H, W)`` tensors, or volumes ``(B, 1, D, H, W)`` where it says so (or builds one) on the caller's device and has no
hidden state; randomness comes in through explicit draws or an explicit ``torch.Generator``.

Binary morphology (defined in :mod:`pseudoanomaly.masks.morphology`) follows OpenCV's definitions exactly
(``cv2.erode``/``cv2.dilate`` with their default borders: outside the image counts as foreground for erosion
and as background for dilation), so a recipe written with ``cv2.morphologyEx`` gives the same masks here, bit
for bit, on any device.

The random fields the masks threshold (:func:`~pseudoanomaly.noise.smooth_field`,
:func:`~pseudoanomaly.noise.perlin_noise`, ...) live in :mod:`pseudoanomaly.noise`, below masks and overlays
alike; importing them from here keeps working.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from ..noise import (  # noqa: F401  (re-exported: the noise fields were defined here before pseudoanomaly.noise)
    PERLIN_SCALE,
    fractal_noise,
    minmax_stretch,
    noise_grid_shape,
    perlin_noise,
    smooth_field,
)
from .morphology import (  # noqa: F401  (MORPHOLOGY_* re-exported for the backend and ops names)
    MORPHOLOGY_BACKENDS,
    MORPHOLOGY_OPS,
    binary_closing,
    binary_dilation,
    binary_erosion,
    binary_morphology,
    binary_opening,
    elliptical_kernel,
)
from .morphology3d import MORPHOLOGY_BACKENDS_3D, ellipsoidal_kernel  # noqa: F401  (backends re-exported)

__all__ = [
    "elliptical_kernel",
    "ellipsoidal_kernel",
    "binary_dilation",
    "binary_erosion",
    "binary_opening",
    "binary_closing",
    "binary_morphology",
]


def smooth_noise(
    batch_size: int,
    height: int,
    width: int,
    sigma: float,
    *,
    downsample: int | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Deprecated: draw the noise with :func:`~pseudoanomaly.noise.noise_grid_shape` and blur it with
    :func:`~pseudoanomaly.noise.smooth_field` (this function does exactly that, with the same draws).

    .. deprecated:: 0.1.0
        Nothing in the library used it; it goes in a later release.
    """
    warnings.warn(
        "pseudoanomaly.masks.functional.smooth_noise is deprecated: draw torch.randn(B, 1, *noise_grid_shape(H, W, "
        "sigma, downsample)) and pass it to pseudoanomaly.noise.smooth_field",
        DeprecationWarning,
        stacklevel=2,
    )
    gh, gw = noise_grid_shape(height, width, sigma, downsample)
    noise = torch.randn((batch_size, 1, gh, gw), generator=generator, device=device, dtype=dtype)
    return smooth_field(noise, height, width, sigma, downsample)
