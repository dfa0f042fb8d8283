"""Binary morphology that follows OpenCV exactly, batched and on any device.

``cv2.erode``/``cv2.dilate`` with their default borders: outside the image counts as foreground for erosion
and as background for dilation, so a recipe written with ``cv2.morphologyEx`` gives the same masks here, bit
for bit. Every function takes and returns ``(B, 1, H, W)`` masks, or volume masks ``(B, 1, D, H, W)`` with a 3-D
element (see :mod:`pseudoanomaly.masks.morphology3d`: same borders, exact against ``scipy.ndimage``); the public
names are re-exported by :mod:`pseudoanomaly.masks.functional`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_choice, check_odd_size
from .morphology3d import morphology3d

__all__ = [
    "elliptical_kernel",
    "binary_dilation",
    "binary_erosion",
    "binary_opening",
    "binary_closing",
    "binary_morphology",
    "MORPHOLOGY_BACKENDS",
    "MORPHOLOGY_OPS",
]

MORPHOLOGY_BACKENDS = ("auto", "torch", "opencv", "packed")
# Operation names and the one-letter codes of earlier versions (still accepted): "oc" is ("open", "close").
MORPHOLOGY_OPS = {"dilate": "d", "erode": "e", "open": "o", "close": "c"}


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
        The structuring element, ``True`` inside the ellipse.

    Shape:
        - output: :math:`(\text{size}, \text{size})`, bool

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


def _morph_opencv(masks: Tensor, kernel: Tensor, ops: str) -> Tensor:
    # One conversion to host uint8 for the whole sequence of operations, and one OpenCV call per erosion or
    # dilation for the whole batch: the images are stacked into one tall image with a band of `ry` rows (the
    # element's reach) after each, which an erosion sees as 1 and a dilation as 0. A min with 1 or a max with
    # 0 changes no 0/1 pixel, as OpenCV's default border, so each image comes out as from its own calls; one
    # large call replaces 2-4 small ones per image and lets OpenCV split the rows over its threads.
    k = kernel.to("cpu", torch.uint8).numpy()
    b, _, h, w = masks.shape
    ry = k.shape[0] // 2
    pitch = h + ry
    buffers = [np.zeros((b, pitch, w), np.uint8) for _ in range(2)]
    source = masks.detach().cpu()
    # a bool tensor's bytes are already 0/1: read them as uint8 without a converted copy
    source = source.view(torch.uint8) if source.dtype == torch.bool else source.to(torch.uint8)
    buffers[0][:, :h] = source.numpy()[:, 0]
    rows = b * pitch - ry  # no band after the last image: OpenCV's own border is there
    src, dst = buffers
    for op in ops:
        for step in {"d": "d", "e": "e", "o": "ed", "c": "de"}[op]:
            src[:, h:] = 1 if step == "e" else 0
            morph = cv2.erode if step == "e" else cv2.dilate
            morph(src.reshape(b * pitch, w)[:rows], k, dst=dst.reshape(b * pitch, w)[:rows])
            src, dst = dst, src
    out = torch.from_numpy(src[:, None, :h])  # a view of the buffer: (B, 1, H, W) with rows of pitch h + ry
    return (out.view(torch.bool) if masks.dtype == torch.bool else out).to(masks.device)


def _packed_step(packed: Tensor, runs: list[tuple[int, int, int]], ry: int, rx: int, erode: bool) -> Tensor:
    # One erosion (AND over the element) or dilation (OR) of bit-packed masks (G, H, W), 8 masks per byte. An
    # element row's run of `length` columns is the AND/OR of `length` neighbouring columns, built by doubling
    # (runs of 1, 2, 4, ... then two overlapping powers of two); the element is the AND/OR of its rows' runs.
    g, h, w = packed.shape
    op = torch.bitwise_and if erode else torch.bitwise_or
    if not runs:  # an empty element: dilation of anything is empty, erosion full (as the pooling backend)
        return torch.full_like(packed, 255 if erode else 0)
    # OpenCV's borders: outside the image counts as foreground for an erosion, background for a dilation
    padded = torch.full((g, h + 2 * ry, w + 2 * rx), 255 if erode else 0, dtype=torch.uint8, device=packed.device)
    padded[:, ry : ry + h, rx : rx + w] = packed
    width = w + 2 * rx
    lengths = sorted({length for _, _, length in runs})
    powers = {1: padded}  # powers[n][..., j]: columns j .. j + n - 1 combined
    n = 1
    while 2 * n <= lengths[-1]:
        powers[2 * n] = op(powers[n][..., :-n], powers[n][..., n:])
        n *= 2
    spans = {}
    for length in lengths:
        n = 1 << (length.bit_length() - 1)  # the largest power of two within the run
        if n == length:
            spans[length] = powers[n]
        else:
            cols = width - length + 1
            spans[length] = op(powers[n][..., :cols], powers[n][..., length - n : length - n + cols])
    out = None
    for row, start, length in runs:
        piece = spans[length][:, row : row + h, start : start + w]
        out = piece.clone() if out is None else op(out, piece, out=out)
    return out


def _morph_packed(masks: Tensor, kernel: Tensor, ops: str) -> Tensor:
    # Bit-parallel over the batch: bit j of byte (g, y, x) is pixel (y, x) of mask 8g + j, so one byte-wise
    # AND/OR treats 8 masks at once and every shift of the element is a slice, with no carry between bytes.
    # Exact (only AND, OR and OpenCV's borders), and 5x faster than OpenCV on 64 masks of 256 x 256 (2 threads).
    b, _, h, w = masks.shape
    groups = -(-b // 8)
    source = masks.detach()
    # a bool tensor's bytes are already 0/1: read them as uint8 without a converted copy
    source = source.view(torch.uint8) if source.dtype == torch.bool else source.to(torch.uint8)
    source = source[:, 0]
    if b % 8:
        source = torch.cat([source, source.new_zeros(groups * 8 - b, h, w)])
    source = source.view(groups, 8, h, w)
    packed = source[:, 0].clone()
    for j in range(1, 8):
        packed.add_(source[:, j], alpha=1 << j)  # distinct bits: the sum is the OR, and add is the fast kernel
    runs = _row_runs(kernel)
    ry, rx = kernel.shape[0] // 2, kernel.shape[1] // 2
    for op in ops:
        for step in {"d": "d", "e": "e", "o": "ed", "c": "de"}[op]:
            packed = _packed_step(packed, runs, ry, rx, step == "e")
    out = torch.empty((groups, 8, h, w), dtype=torch.uint8, device=masks.device)
    for j in range(8):
        torch.bitwise_and(packed >> j, 1, out=out[:, j])
    out = out.view(groups * 8, 1, h, w)[:b]
    return out.view(torch.bool) if masks.dtype == torch.bool else out


def _resolve_backend(backend: str, device: torch.device) -> str:
    check_choice("backend", backend, MORPHOLOGY_BACKENDS)
    if backend == "auto":
        # On a CPU, bit-packed masks (8 per byte) beat OpenCV's SIMD morphology (2.2 against 10.9 ms for the
        # paper's opening and closing of 64 masks of 256 x 256, 2 threads), which beats pooling by far; on a
        # GPU pooling runs on the device with no round trip to host memory. All give identical results (tested).
        return "packed" if device.type == "cpu" else "torch"
    return backend


def _check_mask_tensor(masks: Tensor) -> None:
    if not isinstance(masks, Tensor) or masks.ndim not in (4, 5) or masks.shape[1] != 1:
        got = tuple(masks.shape) if isinstance(masks, Tensor) else type(masks).__name__
        raise ValueError(f"masks must be a tensor of shape (B, 1, H, W) or (B, 1, D, H, W), got {got}")


def _op_codes(ops: object) -> str:
    """The one-letter codes of ``ops``: an operation name, a sequence of names, or a string of codes."""
    if isinstance(ops, str):
        if ops in MORPHOLOGY_OPS:
            return MORPHOLOGY_OPS[ops]
        if all(op in MORPHOLOGY_OPS.values() for op in ops):
            return ops
    elif isinstance(ops, Sequence) and all(isinstance(op, str) and op in MORPHOLOGY_OPS for op in ops):
        return "".join(MORPHOLOGY_OPS[op] for op in ops)
    raise ValueError(
        f"ops must be an operation name or a sequence of them ({', '.join(map(repr, MORPHOLOGY_OPS))}), or a "
        f"string of the letters d, e, o, c, got {ops!r}"
    )


def binary_morphology(masks: Tensor, kernel: Tensor, ops: str | Sequence[str], backend: str = "auto") -> Tensor:
    """Apply a sequence of binary morphological operations, exactly as the same ``cv2.morphologyEx`` calls.

    Cheaper than chaining the single operations: masks are converted once for the whole sequence.

    Args:
        masks: binary masks, bool or 0/1 floats.
        kernel: 2-D structuring element with odd sides (bool or 0/1), e.g. :func:`elliptical_kernel`; for
            volume masks a 3-D one, e.g. :func:`~pseudoanomaly.masks.morphology3d.ellipsoidal_kernel`.
        ops: operations in order, by name: ``"dilate"``, ``"erode"``, ``"open"``, ``"close"`` (one name, or a
            sequence such as ``("open", "close")``). A string of one-letter codes (``"oc"``: ``d`` dilate,
            ``e`` erode, ``o`` open, ``c`` close) is also accepted.
        backend: ``"packed"`` (bitwise operations on masks packed 8 per byte, on the masks' device),
            ``"opencv"`` (OpenCV calls on host memory), ``"torch"`` (max-pooling on the masks' device) or
            ``"auto"`` (packed on CPU, torch elsewhere). All give the same result. Volume
            masks take ``"scipy"`` (``scipy.ndimage``), ``"torch"`` or ``"auto"`` (scipy on CPU).

    Returns:
        Masks of the same shape, dtype and device.

    Shape:
        - masks: :math:`(B, 1, H, W)` or :math:`(B, 1, D, H, W)`
        - output: the shape of masks

    Example:
        >>> m = torch.zeros(1, 1, 9, 9); m[0, 0, 2:7, 2:7] = 1; m[0, 0, 4, 4] = 0
        >>> binary_morphology(m, elliptical_kernel(3), ("close", "open")).sum().item()  # hole closed, corners opened
        21.0
    """
    _check_mask_tensor(masks)
    ops = _op_codes(ops)
    if masks.ndim == 5:
        return morphology3d(masks, kernel, ops, backend)
    if kernel.ndim != 2 or kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
        raise ValueError(f"kernel must be a 2-D tensor with odd sides, got shape {tuple(kernel.shape)}")
    dtype = masks.dtype
    resolved = _resolve_backend(backend, masks.device)
    if resolved == "opencv":
        x = _morph_opencv(masks, kernel, ops)
    elif resolved == "packed":
        x = _morph_packed(masks, kernel, ops)
    else:
        kernel = kernel.bool()
        x = masks.float() if dtype == torch.bool else masks
        for op in ops:
            for step in {"d": "d", "e": "e", "o": "ed", "c": "de"}[op]:
                # erosion = complement of the dilation of the complement; OpenCV's erosion border counts as
                # foreground, which becomes a background border for the complemented dilation.
                x = _dilate_torch(x, kernel, 0.0) if step == "d" else 1.0 - _dilate_torch(1.0 - x, kernel, 0.0)
    return x.bool() if dtype == torch.bool else x.to(dtype)


def binary_dilation(masks: Tensor, kernel: Tensor, backend: str = "auto") -> Tensor:
    """Dilate binary masks by ``kernel`` exactly as ``cv2.dilate`` (pixels outside the image are background).

    Args:
        masks: binary masks, bool or 0/1 floats.
        kernel: 2-D structuring element with odd sides (bool or 0/1), e.g. :func:`elliptical_kernel`.
        backend: ``"packed"`` (bitwise operations on masks packed 8 per byte, on the masks' device),
            ``"opencv"`` (OpenCV calls on host memory), ``"torch"`` (max-pooling on the masks' device) or
            ``"auto"`` (packed on CPU, torch elsewhere). All give the same result.

    Returns:
        Masks of the same shape, dtype and device.

    Shape:
        - masks: :math:`(B, 1, H, W)`, or :math:`(B, 1, D, H, W)` with a 3-D kernel (see :func:`binary_morphology`)
        - output: the shape of masks

    Example:
        >>> m = torch.zeros(1, 1, 5, 5); m[0, 0, 2, 2] = 1
        >>> binary_dilation(m, elliptical_kernel(3))[0, 0].int()
        tensor([[0, 0, 0, 0, 0],
                [0, 0, 1, 0, 0],
                [0, 1, 1, 1, 0],
                [0, 0, 1, 0, 0],
                [0, 0, 0, 0, 0]], dtype=torch.int32)
    """
    return binary_morphology(masks, kernel, ("dilate",), backend)


def binary_erosion(masks: Tensor, kernel: Tensor, backend: str = "auto") -> Tensor:
    """Erode binary masks by ``kernel`` exactly as ``cv2.erode`` (pixels outside the image are foreground).

    Args:
        masks: binary masks, bool or 0/1 floats.
        kernel: 2-D structuring element with odd sides (bool or 0/1), e.g. :func:`elliptical_kernel`.
        backend: ``"packed"`` (bitwise operations on masks packed 8 per byte, on the masks' device),
            ``"opencv"`` (OpenCV calls on host memory), ``"torch"`` (max-pooling on the masks' device) or
            ``"auto"`` (packed on CPU, torch elsewhere). All give the same result.

    Returns:
        Masks of the same shape, dtype and device.

    Shape:
        - masks: :math:`(B, 1, H, W)`, or :math:`(B, 1, D, H, W)` with a 3-D kernel (see :func:`binary_morphology`)
        - output: the shape of masks

    Example:
        >>> m = torch.ones(1, 1, 4, 4); m[0, 0, 0, 0] = 0
        >>> binary_erosion(m, elliptical_kernel(3))[0, 0].int()
        tensor([[0, 0, 1, 1],
                [0, 1, 1, 1],
                [1, 1, 1, 1],
                [1, 1, 1, 1]], dtype=torch.int32)
    """
    return binary_morphology(masks, kernel, ("erode",), backend)


def binary_opening(masks: Tensor, kernel: Tensor, backend: str = "auto") -> Tensor:
    """Erosion then dilation (``cv2.MORPH_OPEN``): removes specks and thin bridges smaller than the kernel.

    Args:
        masks: binary masks, bool or 0/1 floats.
        kernel: 2-D structuring element with odd sides (bool or 0/1), e.g. :func:`elliptical_kernel`.
        backend: ``"packed"`` (bitwise operations on masks packed 8 per byte, on the masks' device),
            ``"opencv"`` (OpenCV calls on host memory), ``"torch"`` (max-pooling on the masks' device) or
            ``"auto"`` (packed on CPU, torch elsewhere). All give the same result.

    Returns:
        Masks of the same shape, dtype and device.

    Shape:
        - masks: :math:`(B, 1, H, W)`, or :math:`(B, 1, D, H, W)` with a 3-D kernel (see :func:`binary_morphology`)
        - output: the shape of masks

    Example:
        >>> m = torch.zeros(1, 1, 6, 6); m[0, 0, 1:4, 1:4] = 1; m[0, 0, 5, 5] = 1
        >>> int(binary_opening(m, elliptical_kernel(3)).sum())  # the lone pixel goes, the square's corners too
        5
    """
    return binary_morphology(masks, kernel, ("open",), backend)


def binary_closing(masks: Tensor, kernel: Tensor, backend: str = "auto") -> Tensor:
    """Dilation then erosion (``cv2.MORPH_CLOSE``): fills holes and gaps smaller than the kernel.

    Args:
        masks: binary masks, bool or 0/1 floats.
        kernel: 2-D structuring element with odd sides (bool or 0/1), e.g. :func:`elliptical_kernel`.
        backend: ``"packed"`` (bitwise operations on masks packed 8 per byte, on the masks' device),
            ``"opencv"`` (OpenCV calls on host memory), ``"torch"`` (max-pooling on the masks' device) or
            ``"auto"`` (packed on CPU, torch elsewhere). All give the same result.

    Returns:
        Masks of the same shape, dtype and device.

    Shape:
        - masks: :math:`(B, 1, H, W)`, or :math:`(B, 1, D, H, W)` with a 3-D kernel (see :func:`binary_morphology`)
        - output: the shape of masks

    Example:
        >>> m = torch.ones(1, 1, 5, 5); m[0, 0, 2, 2] = 0
        >>> int(binary_closing(m, elliptical_kernel(3)).sum())  # the one-pixel hole is filled
        25
    """
    return binary_morphology(masks, kernel, ("close",), backend)

