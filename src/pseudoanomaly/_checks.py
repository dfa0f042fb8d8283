"""Argument and tensor checks shared by every public entry point.

Every message names the argument and the value received, so a user sees what went wrong without a debugger.
Checks that need the tensor's values (NaN/Inf, emptiness) cost one reduction each; they are still cheap
next to the synthesis itself.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

# Relative tolerance of the value-range check: values computed as x / 255 or by resampling may overshoot by an ulp.
ROUNDING_SLACK = 1e-4

__all__ = [
    "check_images",
    "check_network_images",
    "check_model_input",
    "check_has_data",
    "check_foreground",
    "check_masks",
    "check_probability",
    "check_open_unit",
    "check_positive",
    "check_non_negative",
    "check_odd_size",
    "check_int_at_least",
    "check_int_sequence",
    "check_range_pair",
    "check_choice",
    "check_value_range",
    "check_replay",
    "check_same_ndim",
    "check_volume_support",
    "check_spacing",
    "spatial_layout",
]


def _describe(x: object) -> str:
    if isinstance(x, Tensor):
        return f"Tensor(shape={tuple(x.shape)}, dtype={x.dtype}, device={x.device})"
    return repr(x)


def check_images(images: object, name: str = "images") -> Tensor:
    """Check a float image batch ``(B, C, H, W)`` or volume batch ``(B, C, D, H, W)`` with finite values; return it."""
    if not isinstance(images, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, C, H, W) or (B, C, D, H, W), got "
                        f"{type(images).__name__}")
    if images.ndim not in (4, 5):
        raise ValueError(f"{name} must have shape (B, C, H, W), got shape {tuple(images.shape)} (volumes: "
                         "(B, C, D, H, W))")
    if not images.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {images.dtype}")
    if 0 in images.shape:
        sides = "H and W" if images.ndim == 4 else "D, H and W"
        raise ValueError(f"{name} must be non-empty (B, C, {sides} all >= 1), got shape {tuple(images.shape)}")
    check_has_data(images, name)
    # One reduction instead of an elementwise isfinite: a NaN or Inf anywhere makes the sum non-finite. Only
    # when it is (which huge finite values can also cause) is the exact, slower test run.
    if not bool(torch.isfinite(images.sum())) and not bool(torch.isfinite(images).all()):
        raise ValueError(f"{name} contains NaN or Inf values ({_describe(images)})")
    return images


def spatial_layout(images: Tensor) -> str:
    """``"(B, 1, H, W)"`` for an image batch, ``"(B, 1, D, H, W)"`` for a volume batch (for messages)."""
    return "(B, 1, H, W)" if images.ndim == 4 else "(B, 1, D, H, W)"


def check_same_ndim(x: Tensor, images: Tensor, name: str) -> None:
    """Raise unless ``x`` has as many dimensions as ``images`` (a 4-D mask for 5-D volumes, or the reverse)."""
    if x.ndim != images.ndim:
        kinds = {4: "a 4-D image batch (B, C, H, W)", 5: "a 5-D volume batch (B, C, D, H, W)"}
        raise ValueError(
            f"{name} has shape {tuple(x.shape)} ({x.ndim}-D) but images are {kinds[images.ndim]} of shape "
            f"{tuple(images.shape)}; {name} must be {spatial_layout(images)} to match"
        )


def check_network_images(images: object, name: str = "images") -> Tensor:
    """Check images a network can map: a float ``(B, C, H, W)`` tensor with data and finite values; return it.

    One NaN pixel would spread through the convolutions into a NaN map far around it, so the bad values are
    counted and reported. Unlike :func:`check_images`, only the batch must be non-empty (the network checks
    channels and sides against its own architecture).
    """
    if not isinstance(images, Tensor) or images.ndim != 4 or len(images) == 0:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a non-empty tensor of shape (B, C, H, W), got {shape}")
    if not images.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (e.g. uint8 images as images.float() / 255), got "
                        f"dtype {images.dtype}")
    check_has_data(images, name)
    bad = int((~torch.isfinite(images)).sum())
    if bad:
        raise ValueError(f"{name} contain {bad} NaN or Inf value(s) (shape {tuple(images.shape)}); each would "
                         "spread into a NaN region of the map")
    return images


def check_model_input(x: Tensor, channels: int, multiple: int, min_side: int, model: str) -> None:
    """Raise a ValueError naming the shape unless ``x`` is ``(B, channels, H, W)`` with sides fit for ``model``.

    Sides must be multiples of ``multiple`` (so every downsampling is undone exactly by the decoder) and at
    least ``min_side``. Only shapes are checked: no value is read, so no device sync.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{model} expects a torch.Tensor of shape (B, {channels}, H, W), got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(f"{model} expects input of shape (B, {channels}, H, W), got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if h % multiple or w % multiple or h < min_side or w < min_side:
        raise ValueError(
            f"{model} needs height and width divisible by {multiple} and at least {min_side}, "
            f"got shape {tuple(x.shape)}"
        )


def check_has_data(x: Tensor, name: str) -> None:
    """Raise on a ``meta`` tensor: it has a shape but no values, so no value check (or result) can be computed."""
    if x.device.type == "meta":
        raise ValueError(f"{name} is a meta tensor (shape {tuple(x.shape)}, no data); pass a tensor with values")


def check_value_range(images: Tensor, value_range: tuple[float, float], name: str = "images") -> None:
    """Raise unless every value of ``images`` lies in ``value_range`` (up to float rounding).

    An overlay clips its output to its value range: an image outside it (HU values, or [0, 1] data scaled by 255)
    would be painted and clipped without a sign that the anomaly means nothing there.
    """
    low, high = value_range
    observed_low, observed_high = torch.stack(torch.aminmax(images.detach())).tolist()  # one device sync
    slack = ROUNDING_SLACK * (high - low)
    if observed_low < low - slack or observed_high > high + slack:
        raise ValueError(
            f"{name} values lie in [{observed_low:.6g}, {observed_high:.6g}], outside value_range=({low:g}, "
            f"{high:g}); scale the images to the value range or set value_range to theirs"
        )


def check_replay(owner: str, params: dict, batch: int, size: tuple[int, ...]) -> None:
    """Check that replayed ``params`` were drawn for ``batch`` images of ``size``: ``(H, W)`` or ``(D, H, W)``.

    Every parameter tensor holds one row per sample, and ``params["image_size"]`` (when recorded) the spatial
    size each row was drawn for. Replaying them on another batch would leave samples without parameters (or
    index past them), and on another image size would put anomalies drawn for one grid onto another.
    """
    if not isinstance(params, dict):
        raise TypeError(f"{owner}: params must be the dict of an earlier call (its .last_params), got "
                        f"{type(params).__name__}")
    rows = {name: p.shape[0] for name, p in params.items() if isinstance(p, Tensor) and p.ndim > 0}
    drawn = next(iter(rows.values()), batch)
    recorded = params.get("image_size")
    recorded_ok = isinstance(recorded, Tensor) and len(recorded) > 0
    drawn_size = tuple(int(v) for v in recorded[0].tolist()) if recorded_ok else tuple(size)
    if any(n != batch for n in rows.values()) or drawn_size != tuple(size):
        raise ValueError(
            f"{owner}: replayed params were drawn for a batch of {drawn} image(s) of "
            f"{' x '.join(map(str, drawn_size))}, got {batch} image(s) of {' x '.join(map(str, size))}; replay "
            "needs the batch and image size of the call that drew them"
        )


def check_foreground(
    foreground: object, images: Tensor, name: str = "foreground", *, allow_empty: bool = False
) -> Tensor | None:
    """Check a foreground ``(B, 1, H, W)`` (``(B, 1, D, H, W)`` for volumes) of bools or 0/1 values.

    Returns it as bool on ``images.device``.

    Raises if any sample's foreground is empty, unless ``allow_empty``: a mask generator cannot place an anomaly
    there, and silently returning an empty mask would hand a "normal" sample to a user who asked for an
    anomalous one. (An anomaly map restricted to an empty foreground is simply all 0: segmenters allow it.)
    """
    if foreground is None:
        return None
    if not isinstance(foreground, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {spatial_layout(images)} or None, got "
                        f"{type(foreground).__name__}")
    check_same_ndim(foreground, images, name)
    expected = (images.shape[0], 1, *images.shape[2:])
    if tuple(foreground.shape) != expected:
        raise ValueError(
            f"{name} must have shape {spatial_layout(images)} = {expected} to match images, got "
            f"{tuple(foreground.shape)}"
        )
    check_has_data(foreground, name)
    if foreground.dtype != torch.bool:
        if foreground.is_complex():
            raise ValueError(f"{name} must be bool or contain only 0 and 1 ({_describe(foreground)})")
        binary = (foreground == 0) | (foreground == 1)
        if not bool(binary.all()):
            values = foreground[~binary].unique()[:8].tolist()
            raise ValueError(f"{name} must be bool or contain only 0 and 1, got values {values} "
                             f"({_describe(foreground)}); threshold a label map first, e.g. liver > 0")
        foreground = foreground != 0
    foreground = foreground.to(images.device)
    if allow_empty:
        return foreground
    empty = ~any_per_sample(foreground)
    if bool(empty.any()):
        raise ValueError(
            f"{name} is empty for sample(s) {empty.nonzero().flatten().tolist()}: there is nowhere to put an "
            "anomaly; drop those samples or pass foreground=None"
        )
    return foreground


def any_per_sample(mask: Tensor) -> Tensor:
    """``(B,)`` bool, True where sample ``b`` of a bool ``mask`` has a True element.

    As bytes and their maximum: ``any(dim=1)`` of a bool tensor takes a slow path on a CPU (3.9 against 0.08 ms
    for 64 x 256 x 256, torch 2.13, 2 threads).
    """
    if mask.dtype != torch.bool:
        mask = mask != 0
    if mask.numel() == 0:
        return torch.zeros(len(mask), dtype=torch.bool, device=mask.device)
    return mask.reshape(len(mask), -1).view(torch.uint8).amax(dim=1) > 0


#: What a synthesis does with a sample whose foreground is empty (nowhere to put an anomaly): ``"skip"`` leaves
#: it normal (empty mask) with a ``RuntimeWarning``; ``"raise"`` refuses the batch with a ``ValueError``.
EMPTY_FOREGROUND = ("skip", "raise")


def usable_foreground(foreground: Tensor | None, mode: str, owner: str, name: str = "foreground") -> Tensor | None:
    """``(B,)`` bool, True where a sample's foreground is not empty (``None``: every sample, no foreground);
    warns about the others (``mode="skip"``) or raises (``mode="raise"``), naming them.

    The one behaviour for empty foregrounds of :class:`~pseudoanomaly.PseudoAnomaly`, :class:`~pseudoanomaly.OneOf`,
    the adapters and so the trainers: a slice without liver in a training batch is common, and stopping a run on
    it helps nobody, but it is never silent.
    """
    if foreground is None:
        return None
    usable = any_per_sample(foreground)
    if bool(usable.all()):
        return None
    empty = (~usable).nonzero().flatten().tolist()
    if mode == "raise":
        raise ValueError(f"{owner}: {name} is empty for sample(s) {empty}: there is nowhere to put an anomaly; drop "
                         "those samples, pass foreground=None, or use empty_foreground='skip' to leave them normal")
    # stacklevel: past the caller's forward and nn.Module's two call frames, to the line that called the module
    warnings.warn(f"{owner}: {name} is empty for sample(s) {empty}; they are left without an anomaly",
                  RuntimeWarning, stacklevel=5)
    return usable


def check_masks(masks: object, images: Tensor, name: str = "masks") -> Tensor:
    """Check binary masks ``(B, 1, *S)`` (or ``(B, C, *S)``) that match ``images``; return them as bool.

    ``S`` is ``(H, W)`` for images and ``(D, H, W)`` for volumes.
    """
    if not isinstance(masks, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {spatial_layout(images)}, got {type(masks).__name__}")
    check_same_ndim(masks, images, name)
    b, c = images.shape[:2]
    expected = (b, 1, *images.shape[2:])
    if masks.shape[0] != b or masks.shape[1] not in (1, c) or masks.shape[2:] != images.shape[2:]:
        raise ValueError(
            f"{name} must have shape {spatial_layout(images)} = {expected} to match images, got {tuple(masks.shape)}"
        )
    if masks.device != images.device:
        raise ValueError(f"{name} is on {masks.device} but images are on {images.device}")
    if masks.dtype == torch.bool:
        return masks
    if not bool(((masks == 0) | (masks == 1)).all()):
        raise ValueError(f"{name} must contain only 0 and 1 ({_describe(masks)})")
    return masks != 0


def _check_real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def check_probability(name: str, value: object) -> float:
    """Check ``0 <= value <= 1``."""
    v = _check_real(name, value)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return v


def check_open_unit(name: str, value: object) -> float:
    """Check ``0 < value < 1``."""
    v = _check_real(name, value)
    if not 0.0 < v < 1.0:
        raise ValueError(f"{name} must be in the open interval (0, 1), got {value!r}")
    return v


def check_positive(name: str, value: object) -> float:
    """Check ``value > 0``."""
    v = _check_real(name, value)
    if v <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return v


def check_non_negative(name: str, value: object) -> float:
    """Check ``value >= 0``."""
    v = _check_real(name, value)
    if v < 0:
        raise ValueError(f"{name} must be non-negative, got {value!r}")
    return v


def check_int_at_least(name: str, value: object, minimum: int, *, allow_none: bool = False) -> int | None:
    """Check an integer ``>= minimum`` (or ``None`` with ``allow_none``)."""
    if allow_none and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}{' or None' if allow_none else ''}, got {value!r}")
    return value


def check_int_sequence(name: str, value: object, minimum: int, min_length: int = 1) -> tuple[int, ...]:
    """Check an iterable of at least ``min_length`` integers, each ``>= minimum``; return them as a tuple."""
    try:
        items = None if isinstance(value, str) else tuple(value)  # type: ignore[arg-type]
    except TypeError:  # not iterable
        items = None
    if (
        items is None
        or len(items) < min_length
        or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in items)
    ):
        raise ValueError(f"{name} must hold at least {min_length} integer(s) >= {minimum}, got {value!r}")
    return items


def check_count_range(name: str, value: object, minimum: int = 1) -> tuple[int, int]:
    """An integer ``n`` (meaning ``(n, n)``) or a ``(min, max)`` pair of integers >= ``minimum``; ``(lo, hi)``."""
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise ValueError(f"{name} must be an integer or a (min, max) pair of integers, got {value!r}")
    lo, hi = (check_int_at_least(name, v, minimum) for v in pair)
    if lo > hi:
        raise ValueError(f"{name} must satisfy min <= max, got {value!r}")
    return lo, hi


def check_odd_size(name: str, value: object) -> int:
    """Check a positive odd integer (a kernel size)."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or value % 2 == 0:
        raise ValueError(f"{name} must be a positive odd integer, got {value!r}")
    return value


def check_range_pair(
    name: str,
    value: object,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> tuple[float, float]:
    """Check a ``(min, max)`` pair with ``min <= max`` inside the given bounds; a scalar ``v`` means ``(v, v)``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (value, value)
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        raise ValueError(f"{name} must be a (min, max) pair, got {value!r}")
    lo, hi = (_check_real(name, v) for v in value)
    if lo > hi:
        raise ValueError(f"{name} must satisfy min <= max, got {value!r}")
    lo_ok = lo >= low if low_inclusive else lo > low
    hi_ok = hi <= high if high_inclusive else hi < high
    if not (lo_ok and hi_ok):
        lb, hb = ("[" if low_inclusive else "("), ("]" if high_inclusive else ")")
        raise ValueError(f"{name} must lie in {lb}{low}, {high}{hb}, got {value!r}")
    return lo, hi


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    """Check that ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value  # type: ignore[return-value]


def check_spacing(name: str, value: object, ndim: int) -> tuple[float, ...] | None:
    """Check a voxel spacing: ``None`` or ``ndim`` positive finite numbers (mm per voxel, ``(z, y, x)`` order)."""
    if value is None:
        return None
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != ndim:
        raise ValueError(f"{name} must hold {ndim} positive numbers (mm per voxel along "
                         f"{'(z, y, x)' if ndim == 3 else '(y, x)'}), got {value!r}")
    spacing = tuple(_check_real(name, v) for v in value)
    if any(v <= 0 for v in spacing):
        raise ValueError(f"{name} must hold positive numbers (mm per voxel), got {value!r}")
    return spacing


def check_volume_support(owner: str, supported: bool, images: Tensor) -> None:
    """Raise a ValueError naming ``owner`` when ``images`` is a 5-D volume batch that ``owner`` cannot handle yet."""
    if images.ndim == 5 and not supported:
        raise ValueError(
            f"{owner} does not support 3-D volumes (B, C, D, H, W) yet, got images of shape {tuple(images.shape)}; "
            "pass 2-D slices (B, C, H, W) or use a transform that supports volumes"
        )
