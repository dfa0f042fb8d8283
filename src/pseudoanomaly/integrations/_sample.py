"""One channel-first sample through a batched synthesis: what the MONAI and TorchIO adapters share.

MONAI and TorchIO transforms see one sample at a time, channel first, ``(C, H, W)`` or ``(C, D, H, W)``, and keep
their own random state; the library's syntheses are batched and draw from a ``torch.Generator``. So a sample gets
a batch dimension of 1 and a generator seeded with an integer that the adapter draws from its library's random
state, and its foreground and grid are checked here, with messages that name the dictionary key.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from .._checks import check_foreground, check_value_range
from ..synthesis import PseudoAnomaly

SEED_BOUND = 2**63 - 1  # seeds are drawn in [0, 2^63 - 1): any int64 a torch.Generator accepts
# Largest difference (in the affine's units, mm for medical images) between two affines of one grid. NIfTI stores
# the affine in float32: two files written on one grid differ by rounding, ~1e-5 mm at CT coordinates of
# hundreds of mm; a real mismatch (another spacing, origin or orientation) is far larger than a thousandth of a mm.
AFFINE_TOLERANCE = 1e-3

Synthesis = Callable[..., tuple[Tensor, Tensor]]


def check_synthesis(synthesis: object, owner: str) -> Synthesis:
    """The synthesis callable, refusing a :class:`PseudoAnomaly` with its own gate (two gates would compound)."""
    if not callable(synthesis):
        raise TypeError(f"{owner}: synthesis must be callable as synthesis(images, foreground, generator=g) -> "
                        f"(augmented, masks), got {type(synthesis).__name__}")
    if isinstance(synthesis, PseudoAnomaly) and synthesis.p != 1.0:
        raise ValueError(f"{owner}: synthesis.p must be 1.0 (the transform's own probability is the gate; two would "
                         f"compound), got {synthesis.p!r}: set the transform's probability instead")
    return synthesis


def check_sample(image: object, name: str) -> Tensor:
    """A float channel-first 2-D or 3-D sample ``(C, H, W)`` or ``(C, D, H, W)``."""
    if not isinstance(image, Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(image).__name__}")
    if image.ndim not in (3, 4) or 0 in image.shape:
        raise ValueError(f"{name} must be a non-empty channel-first image (C, H, W) or (C, D, H, W), got shape "
                         f"{tuple(image.shape)}")
    if not image.is_floating_point():
        raise TypeError(f"{name} must be floating point (scale it to the synthesis's value range first), got dtype "
                        f"{image.dtype}")
    return image


def check_sample_value_range(image: Tensor, synthesis: Synthesis, name: str) -> None:
    """Refuse values outside the overlay's value range, when the synthesis says what it is.

    Checked on every call, not only when the gate picks the sample, so that a pipeline fed HU values fails on its
    first sample rather than at a random one.
    """
    value_range = getattr(getattr(synthesis, "overlay", None), "value_range", None)
    if value_range is not None:
        check_value_range(image, value_range, name=name)


def check_sample_foreground(foreground: object, image: Tensor, name: str, image_name: str) -> Tensor:
    """A foreground ``(1, *spatial)`` of bools or 0/1 values on the image's grid, returned as bool."""
    spatial = tuple(image.shape[1:])
    if not isinstance(foreground, Tensor):
        raise TypeError(f"{name} must be a tensor of shape (1, {', '.join(map(str, spatial))}), got "
                        f"{type(foreground).__name__}")
    if tuple(foreground.shape) != (1, *spatial):
        raise ValueError(f"{name} must have shape {(1, *spatial)} (one channel, the spatial shape of {image_name}), "
                         f"got {tuple(foreground.shape)}")
    # the values (bool or 0/1), data and device: as for a batch, with no refusal of an empty foreground (a slice
    # without liver is left normal by synthesize_sample)
    return check_foreground(foreground[None], image[None], name, allow_empty=True)[0]


def check_same_grid(affines: dict[str, np.ndarray], owner: str) -> None:
    """Raise unless every affine (by its name) equals the first one, up to :data:`AFFINE_TOLERANCE`."""
    (first, reference), *others = affines.items()
    for name, affine in others:
        if affine.shape != reference.shape or not np.allclose(affine, reference, rtol=0.0, atol=AFFINE_TOLERANCE):
            difference = np.abs(affine - reference).max() if affine.shape == reference.shape else float("inf")
            with np.printoptions(precision=4, suppress=True):
                raise ValueError(
                    f"{owner}: the affine of {name} differs from the affine of {first} (largest difference "
                    f"{difference:.4g}); they must lie on one grid: resample one onto the other first.\n"
                    f"{first}:\n{reference}\n{name}:\n{affine}"
                )


def synthesize_sample(
    synthesis: Synthesis, image: Tensor, foreground: Tensor | None, seed: int, owner: str,
    empty_foreground: str = "skip",
) -> tuple[Tensor, Tensor]:
    """Paint an anomaly into one sample; return ``(augmented (C, *spatial), mask (1, *spatial))``.

    An empty foreground (a slice without liver, typically) leaves the sample normal with a warning, or raises,
    as ``empty_foreground`` says (:data:`~pseudoanomaly._checks.EMPTY_FOREGROUND`, the library's one behaviour).
    """
    if foreground is not None and not bool(foreground.any()):
        if empty_foreground == "raise":
            raise ValueError(f"{owner}: the foreground is empty: there is nowhere to put an anomaly; use "
                             "empty_foreground='skip' to leave such samples normal")
        warnings.warn(f"{owner}: the foreground is empty, the sample is left without an anomaly", RuntimeWarning,
                      stacklevel=3)
        return image, torch.zeros_like(image[:1])
    generator = torch.Generator(device=image.device).manual_seed(seed)
    batch_fg = None if foreground is None else foreground[None]  # (1, 1, *spatial)
    augmented, masks = synthesis(image[None], batch_fg, generator=generator)  # (1, C, *spatial), (1, 1, *spatial)
    return augmented[0], masks[0].to(image.dtype)
