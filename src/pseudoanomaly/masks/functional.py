"""Pure, batched operations that mask generators are made of.

Every function takes and returns ``(B, 1, H, W)`` tensors (or builds one) on the caller's device and has no
hidden state; randomness comes in through an explicit ``torch.Generator``.

Binary morphology follows OpenCV's definitions exactly (``cv2.erode``/``cv2.dilate`` with their default
borders: outside the image counts as foreground for erosion and as background for dilation), so a recipe
written with ``cv2.morphologyEx`` gives the same masks here, bit for bit, on any device.
"""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import kornia
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_choice, check_odd_size, check_positive

__all__ = [
    "elliptical_kernel",
    "binary_dilation",
    "binary_erosion",
    "binary_opening",
    "binary_closing",
    "noise_grid_shape",
    "smooth_field",
    "smooth_noise",
    "minmax_stretch",
]

MORPHOLOGY_BACKENDS = ("auto", "torch", "opencv")


@lru_cache(maxsize=64)
def _elliptical_rows(size: int) -> tuple[tuple[int, int], ...]:
    # For each row: the [start, stop) columns of the ellipse inscribed in a size x size box, computed the way
    # OpenCV's getStructuringElement(MORPH_ELLIPSE) does (integer radius, round-half-even of the half-width).
    r = c = size // 2
    inv_r2 = 1.0 / (r * r) if r else 0.0
    rows = []
    for i in range(size):
        dy = i - r
        dx = round(c * math.sqrt((r * r - dy * dy) * inv_r2)) if abs(dy) <= r else 0
        rows.append((max(c - dx, 0), min(c + dx + 1, size)))
    return tuple(rows)


def elliptical_kernel(size: int, device: torch.device | str | None = None) -> Tensor:
    """Elliptical structuring element, identical to ``cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))``.

    Args:
        size: odd side length in pixels.
        device: where to put the kernel.

    Returns:
        A ``(size, size)`` bool tensor.

    Example:
        >>> elliptical_kernel(5).int()
        tensor([[0, 0, 1, 0, 0],
                [1, 1, 1, 1, 1],
                [1, 1, 1, 1, 1],
                [1, 1, 1, 1, 1],
                [0, 0, 1, 0, 0]], dtype=torch.int32)
    """
    check_odd_size("size", size)
    kernel = torch.zeros(size, size, dtype=torch.bool, device=device)
    for i, (start, stop) in enumerate(_elliptical_rows(size)):
        kernel[i, start:stop] = True
    return kernel


def _row_runs(kernel: Tensor) -> list[tuple[int, int, int]]:
    # Decompose a binary kernel into horizontal runs (row, first column, length): a dilation by the kernel is
    # then the maximum of shifted 1-D sliding maxima, one per distinct (first column, length).
    k = kernel.detach().to("cpu", torch.bool).numpy()
    runs = []
    for row in range(k.shape[0]):
        col = 0
        while col < k.shape[1]:
            if k[row, col]:
                start = col
                while col < k.shape[1] and k[row, col]:
                    col += 1
                runs.append((row, start, col - start))
            else:
                col += 1
    return runs


def _dilate_torch(x: Tensor, kernel: Tensor, border: float) -> Tensor:
    # x: (B, 1, H, W) float 0/1. Output(y, x) = max over kernel offsets of the padded input, as OpenCV.
    kh, kw = kernel.shape
    ry, rx = kh // 2, kw // 2
    _, _, h, w = x.shape
    padded = F.pad(x, (rx, rx, ry, ry), value=border)  # (B, 1, H + 2ry, W + 2rx)
    out = None
    pooled: dict[int, Tensor] = {}
    for row, start, length in _row_runs(kernel):
        if length not in pooled:
            # sliding max of `length` columns; column j covers padded columns j .. j + length - 1
            pooled[length] = F.max_pool2d(padded, kernel_size=(1, length), stride=1) if length > 1 else padded
        piece = pooled[length][:, :, row : row + h, start : start + w]
        out = piece if out is None else torch.maximum(out, piece)
    if out is None:  # an all-zero kernel: dilation of anything is empty, as in OpenCV
        return torch.zeros_like(x)
    return out


def _morph_opencv(masks: Tensor, kernel: Tensor, op: int) -> Tensor:
    k = kernel.to("cpu", torch.uint8).numpy()
    src = masks.detach().to("cpu", torch.uint8).numpy()  # (B, 1, H, W)
    out = np.empty_like(src)
    for i in range(src.shape[0]):
        out[i, 0] = cv2.morphologyEx(src[i, 0], op, k)
    return torch.from_numpy(out).to(device=masks.device, dtype=masks.dtype)


def _resolve_backend(backend: str, device: torch.device) -> str:
    check_choice("backend", backend, MORPHOLOGY_BACKENDS)
    if backend == "auto":
        # OpenCV's SIMD morphology is far faster than unfold/pooling on a CPU; on a GPU pooling wins and
        # avoids a round trip to host memory. Both give identical results (tested).
        return "opencv" if device.type == "cpu" else "torch"
    return backend


def _check_mask_tensor(masks: Tensor) -> None:
    if not isinstance(masks, Tensor) or masks.ndim != 4 or masks.shape[1] != 1:
        got = tuple(masks.shape) if isinstance(masks, Tensor) else type(masks).__name__
        raise ValueError(f"masks must be a tensor of shape (B, 1, H, W), got {got}")


def _morphology(masks: Tensor, kernel: Tensor, ops: str, backend: str) -> Tensor:
    _check_mask_tensor(masks)
    if kernel.ndim != 2 or kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
        raise ValueError(f"kernel must be a 2-D tensor with odd sides, got shape {tuple(kernel.shape)}")
    dtype = masks.dtype
    x = masks.float() if dtype == torch.bool else masks
    if _resolve_backend(backend, masks.device) == "opencv":
        codes = {"d": cv2.MORPH_DILATE, "e": cv2.MORPH_ERODE, "o": cv2.MORPH_OPEN, "c": cv2.MORPH_CLOSE}
        for op in ops:
            x = _morph_opencv(x, kernel, codes[op])
    else:
        kernel = kernel.bool()
        for op in ops:
            for step in {"d": "d", "e": "e", "o": "ed", "c": "de"}[op]:
                # erosion = complement of the dilation of the complement; OpenCV's erosion border counts as
                # foreground, which becomes a background border for the complemented dilation.
                x = _dilate_torch(x, kernel, 0.0) if step == "d" else 1.0 - _dilate_torch(1.0 - x, kernel, 0.0)
    return x.bool() if dtype == torch.bool else x


def binary_dilation(masks: Tensor, kernel: Tensor, backend: str = "auto") -> Tensor:
    """Dilate binary masks by ``kernel`` exactly as ``cv2.dilate`` (pixels outside the image are background).

    Args:
        masks: binary masks, bool or 0/1 floats.
        kernel: 2-D structuring element with odd sides (bool or 0/1), e.g. :func:`elliptical_kernel`.
        backend: ``"opencv"`` (per-image OpenCV calls on host memory), ``"torch"`` (max-pooling on the
            masks' device) or ``"auto"`` (OpenCV on CPU, torch elsewhere). All give the same result.

    Returns:
        Masks of the same shape, dtype and device.

    Shape:
        - masks: :math:`(B, 1, H, W)`
        - output: :math:`(B, 1, H, W)`

    Example:
        >>> m = torch.zeros(1, 1, 5, 5); m[0, 0, 2, 2] = 1
        >>> binary_dilation(m, elliptical_kernel(3))[0, 0].int()
        tensor([[0, 0, 0, 0, 0],
                [0, 0, 1, 0, 0],
                [0, 1, 1, 1, 0],
                [0, 0, 1, 0, 0],
                [0, 0, 0, 0, 0]], dtype=torch.int32)
    """
    return _morphology(masks, kernel, "d", backend)


def binary_erosion(masks: Tensor, kernel: Tensor, backend: str = "auto") -> Tensor:
    """Erode binary masks by ``kernel`` exactly as ``cv2.erode`` (pixels outside the image are foreground).

    Args, Returns and Shape as :func:`binary_dilation`.

    Example:
        >>> m = torch.ones(1, 1, 4, 4); m[0, 0, 0, 0] = 0
        >>> binary_erosion(m, elliptical_kernel(3))[0, 0].int()
        tensor([[0, 0, 1, 1],
                [0, 1, 1, 1],
                [1, 1, 1, 1],
                [1, 1, 1, 1]], dtype=torch.int32)
    """
    return _morphology(masks, kernel, "e", backend)


def binary_opening(masks: Tensor, kernel: Tensor, backend: str = "auto") -> Tensor:
    """Erosion then dilation (``cv2.MORPH_OPEN``): removes specks and thin bridges smaller than the kernel.

    Args, Returns and Shape as :func:`binary_dilation`.

    Example:
        >>> m = torch.zeros(1, 1, 6, 6); m[0, 0, 1:4, 1:4] = 1; m[0, 0, 5, 5] = 1
        >>> int(binary_opening(m, elliptical_kernel(3)).sum())  # the lone pixel goes, the square's corners too
        5
    """
    return _morphology(masks, kernel, "o", backend)


def binary_closing(masks: Tensor, kernel: Tensor, backend: str = "auto") -> Tensor:
    """Dilation then erosion (``cv2.MORPH_CLOSE``): fills holes and gaps smaller than the kernel.

    Args, Returns and Shape as :func:`binary_dilation`.

    Example:
        >>> m = torch.ones(1, 1, 5, 5); m[0, 0, 2, 2] = 0
        >>> int(binary_closing(m, elliptical_kernel(3)).sum())  # the one-pixel hole is filled
        25
    """
    return _morphology(masks, kernel, "c", backend)


def _gaussian_kernel_size(sigma: float) -> int:
    # OpenCV's rule for a float kernel when ksize is left to it: 2 * round(4 sigma) + 1 would be its size for
    # float images; 3 sigma either side keeps >99.7% of the mass and is what 91 px for sigma 15 amounts to.
    return 2 * math.ceil(3.0 * sigma) + 1


def _resolve_downsample(sigma: float, downsample: int | None) -> int:
    check_positive("sigma", sigma)
    if downsample is None:
        return max(1, round(sigma / 4.0))
    if isinstance(downsample, bool) or not isinstance(downsample, int) or downsample < 1:
        raise ValueError(f"downsample must be a positive integer or None, got {downsample!r}")
    return downsample


def noise_grid_shape(height: int, width: int, sigma: float, downsample: int | None = None) -> tuple[int, int]:
    """Shape ``(h, w)`` of the white-noise grid that :func:`smooth_field` turns into an ``height x width`` field."""
    f = _resolve_downsample(sigma, downsample)
    return math.ceil(height / f), math.ceil(width / f)


def smooth_field(
    noise: Tensor, height: int, width: int, sigma: float, downsample: int | None = None
) -> Tensor:
    """Blur standard-normal noise drawn on the grid of :func:`noise_grid_shape` into a smooth random field.

    The field is statistically equivalent to blurring unit-variance white noise at full resolution with a
    Gaussian of standard deviation ``sigma`` (reflect-101 borders, as ``cv2.GaussianBlur``): mean 0, variance
    about :math:`1 / (4 \\pi \\sigma^2)`, correlation length about :math:`\\sigma`. Such a field has no detail
    finer than ``sigma``, so it is made on a grid ``downsample`` times coarser and upsampled bilinearly: a
    91 x 91 blur at full resolution becomes a 23-tap separable blur on a 16x smaller grid.

    Args:
        noise: standard-normal draws on the coarse grid.
        height: output height H.
        width: output width W.
        sigma: blur standard deviation in output pixels.
        downsample: grid coarsening factor; ``None`` picks ``max(1, round(sigma / 4))``; ``1`` blurs at full
            resolution.

    Returns:
        The field, same dtype and device as ``noise``.

    Shape:
        - noise: :math:`(B, 1, h, w)` with ``(h, w) = noise_grid_shape(H, W, sigma, downsample)``
        - output: :math:`(B, 1, H, W)`
    """
    f = _resolve_downsample(sigma, downsample)
    gh, gw = noise_grid_shape(height, width, sigma, f)
    if noise.ndim != 4 or tuple(noise.shape[1:]) != (1, gh, gw):
        raise ValueError(f"noise must have shape (B, 1, {gh}, {gw}), got {tuple(noise.shape)}")
    s = sigma / f
    # A coarse cell stands for the mean of f x f unit-variance pixels, so its noise has variance 1 / f^2.
    noise = noise / f
    k = _gaussian_kernel_size(s)
    # reflect-101 padding needs the pad to be smaller than the side; tiny grids fall back to replicate.
    border = "reflect" if k // 2 < min(gh, gw) else "replicate"
    field = kornia.filters.gaussian_blur2d(noise, (k, k), (s, s), border_type=border)
    if f > 1:
        field = F.interpolate(field, size=(gh * f, gw * f), mode="bilinear", align_corners=False)
        field = field[:, :, :height, :width]
    return field


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
    """Draw a batch of Gaussian-blurred white-noise fields (see :func:`smooth_field`).

    Args:
        batch_size: number of fields B.
        height: field height H.
        width: field width W.
        sigma: blur standard deviation in pixels.
        downsample: see :func:`smooth_field`.
        generator: random source (on ``device``).
        device: output device.
        dtype: output dtype.

    Returns:
        A ``(B, 1, H, W)`` field with mean 0 and standard deviation about :math:`1 / (2 \\sqrt{\\pi} \\sigma)`.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> f = smooth_noise(8, 128, 128, sigma=15.0, generator=g)
        >>> f.shape, abs(float(f.std()) - 1 / (2 * math.sqrt(math.pi) * 15)) < 0.005
        (torch.Size([8, 1, 128, 128]), True)
    """
    gh, gw = noise_grid_shape(height, width, sigma, downsample)
    noise = torch.randn((batch_size, 1, gh, gw), generator=generator, device=device, dtype=dtype)
    return smooth_field(noise, height, width, sigma, downsample)


def minmax_stretch(x: Tensor, levels: int | None = None) -> Tensor:
    """Stretch each sample linearly so its minimum maps to 0 and its maximum to 1.

    With ``levels`` set, emulate ``cv2.normalize(..., NORM_MINMAX)`` on an integer image of that many grey
    levels: values are first rounded to integers (the input is taken to be in grey levels), stretched to
    ``[0, levels - 1]`` and rounded again (half to even, as OpenCV), then divided by ``levels - 1``. A
    constant sample maps to 0, as in OpenCV.

    Args:
        x: values to stretch.
        levels: number of integer grey levels to emulate (256 for uint8), or ``None`` for a float stretch.

    Returns:
        Tensor of the same shape with values in [0, 1].

    Shape:
        - x: :math:`(B, *)`
        - output: :math:`(B, *)`

    Example:
        >>> minmax_stretch(torch.tensor([[1.0, 2.0, 3.0]]))
        tensor([[0.0000, 0.5000, 1.0000]])
        >>> minmax_stretch(torch.tensor([[126.2, 127.4, 128.6]]), levels=256) * 255  # rounds to 126, 127, 129 first
        tensor([[  0.,  85., 255.]])
    """
    if levels is not None:
        x = torch.round(x)
    flat = x.flatten(1)
    lo = flat.amin(dim=1).view(-1, *([1] * (x.ndim - 1)))
    hi = flat.amax(dim=1).view(-1, *([1] * (x.ndim - 1)))
    span = hi - lo
    top = 1.0 if levels is None else float(levels - 1)
    scale = torch.where(span > 0, top / span.clamp_min(torch.finfo(x.dtype).tiny), torch.zeros_like(span))
    y = (x - lo) * scale
    if levels is not None:
        y = torch.round(y) / top
    return y
