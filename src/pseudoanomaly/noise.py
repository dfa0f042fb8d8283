"""Random fields the library draws shapes and textures from: blurred white noise and Perlin noise.

Every function is pure and batched: it takes the random draws (white noise on a grid, gradient angles on a
lattice) as tensors and returns ``(B, 1, H, W)`` fields on their device, so the caller decides how, and from
which ``torch.Generator``, the draws are made. Mask generators (:mod:`pseudoanomaly.masks`) threshold these
fields; overlays (:mod:`pseudoanomaly.overlays`) paint them as textures. This module sits below both and knows
neither.

- :func:`noise_grid_shape` and :func:`smooth_field`: Gaussian-blurred white noise, made on a coarse grid.
- :func:`minmax_stretch`: per-sample min-max stretch, optionally emulating OpenCV's 8-bit arithmetic.
- :func:`perlin_noise` and :func:`fractal_noise`: 2-D Perlin gradient noise (DRAEM's ``rand_perlin_2d_np``)
  and its octave sum.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from ._checks import check_positive
from ._filters import _blur_matrix

__all__ = [
    "noise_grid_shape",
    "smooth_field",
    "minmax_stretch",
    "perlin_noise",
    "fractal_noise",
    "PERLIN_SCALE",
]


# -- Gaussian-blurred white noise (the paper's masks) -----------------------------------------------------

@lru_cache(maxsize=64)
def _field_matrix(n: int, grid: int, factor: int, sigma: float) -> np.ndarray:
    """``(n, grid)`` matrix taking ``grid`` coarse samples to the first ``n`` of ``grid * factor``: the Gaussian
    blur of :func:`_blur_matrix`, then linear interpolation at the centres of the fine samples (as
    ``F.interpolate(..., mode="bilinear", align_corners=False)`` along one axis: edge samples held)."""
    blur = _blur_matrix(grid, sigma)
    if factor == 1:
        return blur[:n]
    source = np.maximum((np.arange(grid * factor) + 0.5) / factor - 0.5, 0.0)  # fine centres in coarse units
    below = np.floor(source).astype(np.int64)
    above = np.minimum(below + 1, grid - 1)
    weight = source - below
    upsample = np.zeros((grid * factor, grid))
    rows = np.arange(grid * factor)
    np.add.at(upsample, (rows, below), 1.0 - weight)
    np.add.at(upsample, (rows, above), weight)
    matrix = (upsample @ blur)[:n]
    matrix.setflags(write=False)
    return matrix


def _resolve_downsample(sigma: float, downsample: int | None) -> int:
    check_positive("sigma", sigma)
    if downsample is None:
        return max(1, round(sigma / 4.0))
    if isinstance(downsample, bool) or not isinstance(downsample, int) or downsample < 1:
        raise ValueError(f"downsample must be a positive integer or None, got {downsample!r}")
    return downsample


def noise_grid_shape(height: int, width: int, sigma: float, downsample: int | None = None) -> tuple[int, int]:
    """Shape ``(h, w)`` of the white-noise grid that :func:`smooth_field` turns into an ``height x width`` field.

    Args:
        height: field height H in pixels.
        width: field width W in pixels.
        sigma: blur standard deviation in pixels.
        downsample: grid coarsening factor; ``None`` picks ``max(1, round(sigma / 4))``.

    Returns:
        ``(ceil(H / f), ceil(W / f))`` with ``f`` the coarsening factor.

    Example:
        >>> noise_grid_shape(256, 256, sigma=15.0)  # the paper's sigma: a grid 4 times coarser
        (64, 64)
        >>> noise_grid_shape(100, 30, sigma=15.0, downsample=1)
        (100, 30)
    """
    f = _resolve_downsample(sigma, downsample)
    return math.ceil(height / f), math.ceil(width / f)


def smooth_field(
    noise: Tensor,
    height: int,
    width: int,
    sigma: float,
    downsample: int | None = None,
    *,
    scale: float = 1.0,
    offset: float = 0.0,
    out: Tensor | None = None,
) -> Tensor:
    """Blur standard-normal noise drawn on the grid of :func:`noise_grid_shape` into a smooth random field.

    The field is statistically equivalent to blurring unit-variance white noise at full resolution with a
    Gaussian of standard deviation ``sigma`` (reflect-101 borders, as ``cv2.GaussianBlur``): mean 0, variance
    about :math:`1 / (4 \\pi \\sigma^2)`, correlation length about :math:`\\sigma`. Such a field has no detail
    finer than ``sigma``, so it is made on a grid ``downsample`` times coarser and upsampled bilinearly: a
    91 x 91 blur at full resolution becomes a 23-tap separable blur on a 16x smaller grid, and blur and
    upsampling together are one matrix per axis (``(H, h)`` and ``(W, w)``), applied as two matrix products.

    Args:
        noise: standard-normal draws on the coarse grid.
        height: output height H.
        width: output width W.
        sigma: blur standard deviation in output pixels.
        downsample: grid coarsening factor; ``None`` picks ``max(1, round(sigma / 4))``; ``1`` blurs at full
            resolution.
        scale: multiplies the field (applied on the coarse grid, where it is cheaper).
        offset: added to the field (likewise).
        out: a tensor of the output's shape, dtype and device to write the field into, e.g. one buffer reused
            by a loop over blocks of a batch (on a CPU a fresh output costs as much as the product: its pages
            are faulted in anew each time).

    Returns:
        ``offset + scale * field``, same dtype and device as ``noise`` (``out`` when given).

    Shape:
        - noise: :math:`(B, 1, h, w)` with ``(h, w) = noise_grid_shape(H, W, sigma, downsample)``
        - output: :math:`(B, 1, H, W)`

    Example:
        >>> noise = torch.randn(2, 1, *noise_grid_shape(96, 64, 8.0), generator=torch.Generator().manual_seed(0))
        >>> field = smooth_field(noise, 96, 64, 8.0, scale=2.0, offset=1.0)
        >>> field.shape, abs(float(field.mean()) - 1.0) < 0.1
        (torch.Size([2, 1, 96, 64]), True)
    """
    f = _resolve_downsample(sigma, downsample)
    gh, gw = noise_grid_shape(height, width, sigma, f)
    if noise.ndim != 4 or tuple(noise.shape[1:]) != (1, gh, gw):
        raise ValueError(f"noise must have shape (B, 1, {gh}, {gw}), got {tuple(noise.shape)}")
    s = sigma / f
    # A coarse cell stands for the mean of f x f unit-variance pixels, so its noise has variance 1 / f^2. The
    # blur and the bilinear upsampling are linear and preserve constants, so scale and offset go in here.
    noise = noise * (scale / f) + offset
    # Blur and upsampling along an axis are one (H x h) matrix, so the field is rows @ noise @ columns.T: two
    # small matrix products, several times faster on a CPU than a padded separable convolution followed by an
    # interpolation (and exact to float rounding, in float64 when building the matrices).
    rows, columns = (_field_tensor(n, g, f, s, noise.device, noise.dtype) for n, g in ((height, gh), (width, gw)))
    if out is None:
        return rows @ noise @ columns.T
    _check_out(out, (noise.shape[0], 1, height, width), noise.dtype, noise.device)
    return torch.matmul(rows @ noise, columns.T, out=out)  # the same product as above, bit for bit (tested)


def _check_out(out: Tensor, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device,
               contiguous: bool = False) -> None:
    """Refuse an ``out=`` buffer of another shape, dtype or device (or a non-contiguous one where that matters),
    naming what was expected and what came."""
    if (tuple(out.shape) != shape or out.dtype != dtype or out.device != device
            or (contiguous and not out.is_contiguous())):
        kind = "a contiguous" if contiguous else "a"
        raise ValueError(f"out must be {kind} {dtype} tensor of shape {shape} on {device}, got {out.dtype} "
                         f"{tuple(out.shape)} on {out.device}")


@lru_cache(maxsize=64)
def _field_tensor(n: int, grid: int, factor: int, sigma: float, device: torch.device, dtype: torch.dtype) -> Tensor:
    # _field_matrix on the field's device and in its dtype, made once: a mask generator calls smooth_field for
    # every block of every batch with the same sizes
    return torch.tensor(_field_matrix(n, grid, factor, sigma), device=device, dtype=dtype)


def _sample_extremes(x: Tensor) -> tuple[Tensor, Tensor]:
    """Minimum and maximum of each sample of ``x`` (over every dimension after the first), two ``(B,)`` tensors.

    ``amin`` and ``amax`` rather than ``torch.aminmax(x.flatten(1), dim=1)``, which on a CPU is several times
    slower than both together (5.3 against 0.8 ms on 64 x 256 x 256 floats, torch 2.13, 2 threads).
    """
    flat = x.flatten(1)
    return flat.amin(dim=1), flat.amax(dim=1)


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
    lo, hi = _sample_extremes(x)
    lo, hi = (v.view(-1, *([1] * (x.ndim - 1))) for v in (lo, hi))
    span = hi - lo
    top = 1.0 if levels is None else float(levels - 1)
    scale = torch.where(span > 0, top / span.clamp_min(torch.finfo(x.dtype).tiny), torch.zeros_like(span))
    y = (x - lo) * scale
    if levels is not None:
        y = torch.round(y) / top
    return y


# -- Perlin gradient noise (DRAEM's masks, noise textures) -------------------------------------------------

#: Factor on Perlin noise, from DRAEM's ``rand_perlin_2d_np``: plain 2-D Perlin noise with unit gradients spans
#: :math:`[-\sqrt{2}/2, \sqrt{2}/2]`, so the scaled noise lies in [-1, 1].
PERLIN_SCALE = math.sqrt(2.0)
# Rotated sample points this close (in pixels) outside the frame still count as inside: a 90-degree turn of a
# square must not lose its border row to the rounding of cos(pi / 2).
_FRAME_TOLERANCE = 1e-3
# On a CPU the full-size temporaries of the evaluation are bound by memory traffic; blocks of about this many
# pixels keep them in cache and run about twice as fast (measured at 64 x 256 x 256). A GPU takes the whole
# batch at once.
_CPU_BLOCK_PIXELS = 2**18


def _block_size(n: int, pixels: int, device: torch.device) -> int:
    """Samples per block of a batch of ``n`` with ``pixels`` each: the whole batch on a GPU, blocks of about
    ``_CPU_BLOCK_PIXELS`` on a CPU (see there)."""
    return n if device.type != "cpu" else max(1, _CPU_BLOCK_PIXELS // max(1, pixels))


def _fade(t: Tensor) -> Tensor:
    # Perlin's quintic 6t^5 - 15t^4 + 10t^3 (flat first and second derivatives at lattice points). Separate
    # multiplies and adds, no fused op, so a value never depends on where it sits in the batch; in place on a
    # fresh temporary, because at full resolution these steps are bound by memory traffic.
    return (t * 6.0).sub_(15.0).mul_(t).add_(10.0).mul_(t).mul_(t).mul_(t)


def _lerp_(start: Tensor, end: Tensor, weight: Tensor) -> Tensor:
    # start + weight * (end - start), written into `end` (a temporary of the caller's)
    return end.sub_(start).mul_(weight).add_(start)


def _check_lattice(gradient_angles: Tensor, resolution: Tensor, name: str = "gradient_angles") -> None:
    if not isinstance(gradient_angles, Tensor) or gradient_angles.ndim != 3 or not gradient_angles.is_floating_point():
        got = (
            f"shape {tuple(gradient_angles.shape)}, dtype {gradient_angles.dtype}"
            if isinstance(gradient_angles, Tensor)
            else type(gradient_angles).__name__
        )
        raise ValueError(f"{name} must be a floating-point tensor of shape (B, Ly, Lx), got {got}")
    n, ly, lx = gradient_angles.shape
    if not isinstance(resolution, Tensor) or tuple(resolution.shape) != (n, 2) or resolution.is_floating_point():
        got = f"shape {tuple(resolution.shape)}" if isinstance(resolution, Tensor) else type(resolution).__name__
        raise ValueError(f"resolution must be an integer tensor of shape (B, 2) = ({n}, 2), got {got}")
    if n == 0:
        return
    # one host sync: an out-of-range lattice would index past the gradients (a device assert on a GPU)
    low, ry, rx = int(resolution.min()), int(resolution[:, 0].max()), int(resolution[:, 1].max())
    if low < 1 or ry >= ly or rx >= lx:
        raise ValueError(
            f"resolution must be >= 1 and below the lattice size of {name} ({ly}, {lx}) along each axis, got "
            f"values in [{low}, {max(ry, rx)}]"
        )


def perlin_noise(
    gradient_angles: Tensor, resolution: Tensor, height: int, width: int, rotation: Tensor | None = None,
    *, out: Tensor | None = None,
) -> Tensor:
    """Evaluate 2-D Perlin gradient noise, one lattice per sample, at every pixel of an ``height x width`` frame.

    Sample ``i`` has ``resolution[i] = (ry, rx)`` lattice cells along the height and the width, so pixel
    ``(y, x)`` sits at lattice coordinates ``(y * ry / H, x * rx / W)`` (the grid of DRAEM's
    ``rand_perlin_2d_np``; any size works, no divisibility needed). Lattice point ``(j, k)`` carries the unit
    gradient ``(cos a, sin a)`` along (height, width) with ``a = gradient_angles[i, j, k]``; the four corner
    ramps of a cell are blended with the quintic fade :math:`6t^5 - 15t^4 + 10t^3` and the result is scaled by
    :math:`\\sqrt{2}`, as DRAEM does, so it lies in [-1, 1]. Only the top-left ``(ry + 1, rx + 1)`` gradients
    of a sample are used, which lets a batch of mixed resolutions share one tensor.

    With ``rotation``, the pattern is turned about the frame's centre ``((H - 1) / 2, (W - 1) / 2)`` by that
    many degrees (clockwise as displayed, rows downward), evaluating the noise exactly at the turned
    coordinates rather than resampling an image; where a turned point falls outside the original frame the
    noise is 0, the zero fill of DRAEM's ``imgaug`` rotation.

    Note:
        Without ``rotation`` (and for samples turned by exactly 0 degrees) the noise is evaluated in its
        separable form: blended along the width on one row of ``W`` values per lattice row, then along the
        height at full size, several times faster on a CPU than evaluating every pixel on its own, which
        turned noise still does. The sums are the same in another order, so values may differ from the
        per-pixel evaluation by float rounding: at most 1e-5 in float32 (tested; 4e-7 measured at
        64 x 256 x 256) and 1e-12 in float64. Either way a sample's noise does not depend on its position in
        the batch.

    Args:
        gradient_angles: gradient angles in radians at the lattice points.
        resolution: integer lattice cells ``(ry, rx)`` per sample, each in ``[1, L - 1]`` for its axis.
        height: output height H.
        width: output width W.
        rotation: per-sample angle in degrees, or ``None`` for no rotation.
        out: a contiguous tensor of the output's shape, dtype and device to write the noise into, e.g. one
            buffer reused by a loop over blocks of a batch (a fresh full-size output costs page faults on a CPU).

    Returns:
        The noise, in the dtype and on the device of ``gradient_angles`` (``out`` when given).

    Shape:
        - gradient_angles: :math:`(B, L_y, L_x)`
        - resolution: :math:`(B, 2)`
        - rotation: :math:`(B,)`
        - output: :math:`(B, 1, H, W)`

    Example:
        >>> angles = 2 * math.pi * torch.rand(2, 33, 33, generator=torch.Generator().manual_seed(0))
        >>> noise = perlin_noise(angles, torch.tensor([[4, 4], [1, 32]]), 37, 53)
        >>> noise.shape, bool(noise.abs().max() <= 1), float(noise[0, 0, 0, 0])  # 0 on every lattice point
        (torch.Size([2, 1, 37, 53]), True, 0.0)
    """
    _check_lattice(gradient_angles, resolution)
    n = gradient_angles.shape[0]
    if rotation is not None and (not isinstance(rotation, Tensor) or tuple(rotation.shape) != (n,)):
        got = tuple(rotation.shape) if isinstance(rotation, Tensor) else type(rotation).__name__
        raise ValueError(f"rotation must be a tensor of shape (B,) = ({n},) or None, got {got}")
    device = gradient_angles.device
    if out is not None:
        _check_out(out, (n, 1, height, width), gradient_angles.dtype, device, contiguous=True)
    if rotation is not None and n > 0:
        # A turn by 0 degrees is no turn: those samples take the separable evaluation, chosen sample by sample
        # (one host sync) so that a sample's noise never depends on the turns of the others in its batch.
        still = rotation == 0
        if bool(still.all()):
            rotation = None
        elif bool(still.any()):
            noise = torch.empty(n, 1, height, width, dtype=gradient_angles.dtype, device=device) if out is None else out
            for chosen, turn in ((still, None), (~still, rotation)):
                index = chosen.nonzero().view(-1)
                noise[index] = perlin_noise(gradient_angles[index], resolution[index], height, width,
                                            None if turn is None else turn[index])
            return noise
    step = _block_size(n, height * width, device)
    if rotation is None:
        # The separable evaluation writes each block straight into the output (no full-size copy).
        noise = torch.empty(n, height, width, dtype=gradient_angles.dtype, device=device) if out is None else out[:, 0]
        for start in range(0, n, step):  # blocks of samples, not one sample at a time
            block = slice(start, start + step)
            _perlin_separable(gradient_angles[block], resolution[block], height, width, noise[block])
        return noise.unsqueeze(1)
    if step >= n and out is None:
        return _perlin_block(gradient_angles, resolution, height, width, rotation)
    noise = torch.empty(n, 1, height, width, dtype=gradient_angles.dtype, device=device) if out is None else out
    for start in range(0, n, step):  # blocks of samples, not one sample at a time
        block = slice(start, start + step)
        noise[block] = _perlin_block(gradient_angles[block], resolution[block], height, width, rotation[block])
    return noise


def _turn_bilinear(images: Tensor, rotation: Tensor, grid: Tensor | None = None) -> Tensor:
    """Turn each image about its centre by ``rotation`` degrees (clockwise as displayed) by bilinear resampling
    with a zero border: DRAEM's way of rotating its noise (``imgaug``'s ``Affine``, ``order=1``, ``cval=0``).

    Output pixel ``p`` shows the input at ``c + R(theta) (p - c)``, the convention of :func:`perlin_noise`'s
    exact turn, so the two differ only by the interpolation. ``(B, C, H, W)`` in, the same out; H and W >= 2.
    ``grid``: an optional ``(B, H, W, 2)`` buffer of the images' dtype for the sample points (a loop over blocks
    reuses one rather than faulting a fresh one in each time).
    """
    n, _, h, w = images.shape
    theta = torch.deg2rad(rotation.to(device=images.device, dtype=torch.float64))
    cos, sin = (f(theta).to(images.dtype).view(n, 1, 1) for f in (torch.cos, torch.sin))
    cy, cx = (h - 1) / 2, (w - 1) / 2
    dy = torch.arange(h, device=images.device, dtype=images.dtype).view(1, h, 1) - cy
    dx = torch.arange(w, device=images.device, dtype=images.dtype).view(1, 1, w) - cx
    if grid is None:
        grid = torch.empty((n, h, w, 2), dtype=images.dtype, device=images.device)
    # source points normalized to [-1, 1] at the corner pixels' centres (align_corners=True), x first: each a
    # sum of a column and a row, written straight into the grid
    torch.add((sin / cx) * dy, (cos / cx) * dx, out=grid[..., 0])
    torch.sub((cos / cy) * dy, (sin / cy) * dx, out=grid[..., 1])
    return torch.nn.functional.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def _unit_gradients(gradient_angles: Tensor) -> tuple[Tensor, Tensor, torch.dtype]:
    # at least float32: the lattice indices are computed in floating point and must be exact
    dtype = torch.float64 if gradient_angles.dtype == torch.float64 else torch.float32
    # cos/sin in float64, rounded once to dtype: the vectorized and scalar kernels may differ in the last bit,
    # and which one a value meets depends on its position in the batch.
    wide = gradient_angles.double()
    return torch.cos(wide).to(dtype), torch.sin(wide).to(dtype), dtype  # (B, Ly, Lx) each


def _axis_cells(size: int, cells: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    # Lattice cell and position inside it of each of `size` pixels along an axis with `cells` (B,) cells per
    # sample: (B, size) integer cells and (B, size) positions in [0, 1), computed as the per-pixel evaluation
    # does (the pixel index times cells / size, then frac), so both put a pixel in the same cell.
    pixels = torch.arange(size, device=cells.device, dtype=dtype).view(1, size)
    coordinate = pixels * (cells.to(dtype).view(-1, 1) / size)
    inside = torch.frac(coordinate)
    return coordinate.sub_(inside).long(), inside


def _perlin_separable(gradient_angles: Tensor, resolution: Tensor, height: int, width: int, out: Tensor) -> None:
    """Unrotated Perlin noise of a block of samples through its separable form (same noise as
    :func:`_perlin_block` without rotation, up to float rounding).

    Blending along the width first, a pixel in lattice row ``j`` at height offset ``fy`` reads
    ``top = fy * U[j] + V[j]`` and ``bottom = (fy - 1) * U[j + 1] + V[j + 1]``, blended with the height's fade,
    where ``U[J] = lerp(gy[J, k], gy[J, k + 1], tx)`` and ``V[J] = lerp(fx * gx[J, k], (fx - 1) * gx[J, k + 1],
    tx)`` are rows of ``W`` values per lattice row ``J`` (``k``, ``fx``, ``tx`` the cell, offset and fade of
    each column). ``U`` and ``V`` cost ``Ly x W`` values per sample; the full-size work is 4 row copies and
    7 elementwise steps instead of the ~50 of the per-pixel evaluation, and no per-pixel gather. The noise
    goes into ``out``, ``(B, H, W)`` in the dtype of the angles.
    """
    n, ly, lx = gradient_angles.shape
    grad_y, grad_x, dtype = _unit_gradients(gradient_angles)
    row, fy = _axis_cells(height, resolution[:, 0], dtype)  # (B, H)
    col, fx = _axis_cells(width, resolution[:, 1], dtype)  # (B, W)
    ty, tx = _fade(fy), _fade(fx)
    # columns k and k + 1 of every lattice row, for each pixel column: (B, Ly, W)
    left = col.view(n, 1, width).expand(n, ly, width)
    gy0, gy1 = grad_y.gather(2, left), grad_y.gather(2, left + 1)
    gx0, gx1 = grad_x.gather(2, left), grad_x.gather(2, left + 1)
    fx, tx = fx.view(n, 1, width), tx.view(n, 1, width)
    # PERLIN_SCALE goes in here, on Ly x W values rather than on the full-size result
    u = _lerp_(gy0, gy1, tx).mul_(PERLIN_SCALE)  # (B, Ly, W)
    v = _lerp_(gx0.mul_(fx), gx1.mul_(fx - 1.0), tx).mul_(PERLIN_SCALE)
    # rows j and j + 1 of U and V for every pixel row: row copies from the (B * Ly, W) tables
    first = torch.arange(n, device=row.device).view(n, 1) * ly
    top_rows = row.add_(first).view(-1)  # (B * H,)
    bottom_rows = top_rows + 1
    u, v = u.view(n * ly, width), v.view(n * ly, width)
    fy, ty = fy.view(n, height, 1), ty.view(n, height, 1)
    top = u.index_select(0, top_rows).view(n, height, width).mul_(fy)
    top.add_(v.index_select(0, top_rows).view(n, height, width))
    bottom = u.index_select(0, bottom_rows).view(n, height, width).mul_(fy - 1.0)
    bottom.add_(v.index_select(0, bottom_rows).view(n, height, width))
    bottom.sub_(top).mul_(ty)
    if out.dtype == top.dtype:
        torch.add(top, bottom, out=out)  # top + ty * (bottom - top), written straight into the output
    else:  # half-precision angles: evaluated in float32, rounded once into the output
        out.copy_(top.add_(bottom))


def _perlin_block(
    gradient_angles: Tensor, resolution: Tensor, height: int, width: int, rotation: Tensor | None
) -> Tensor:
    n, ly, lx = gradient_angles.shape
    device = gradient_angles.device
    grad_y, grad_x, dtype = _unit_gradients(gradient_angles)  # (B, Ly, Lx)
    ys = torch.arange(height, device=device, dtype=dtype).view(1, height, 1)
    xs = torch.arange(width, device=device, dtype=dtype).view(1, 1, width)
    inside = None
    if rotation is None:
        y, x = ys.expand(n, height, width), xs.expand(n, height, width)
    else:
        theta = torch.deg2rad(rotation.to(device=device, dtype=torch.float64))
        cos, sin = torch.cos(theta).to(dtype).view(n, 1, 1), torch.sin(theta).to(dtype).view(n, 1, 1)
        # Output pixel p shows the unrotated pattern at c + R(theta) (p - c), c the frame's centre.
        cy, cx = (height - 1) / 2, (width - 1) / 2
        dy, dx = ys - cy, xs - cx
        y = cos * dy - sin * dx  # (B, H, W), from the centre
        x = sin * dy + cos * dx
        inside = (y.abs() <= cy + _FRAME_TOLERANCE) & (x.abs() <= cx + _FRAME_TOLERANCE)
        y, x = y.clamp_(-cy, cy).add_(cy), x.clamp_(-cx, cx).add_(cx)
    ry = resolution[:, 0].to(device=device, dtype=dtype).view(n, 1, 1)
    rx = resolution[:, 1].to(device=device, dtype=dtype).view(n, 1, 1)
    fy, fx = y * (ry / height), x * (rx / width)  # lattice coordinates, in [0, ry) x [0, rx)
    # Split into cell and position inside it; frac is exact and far cheaper than floor on a CPU.
    frac_y, frac_x = torch.frac(fy), torch.frac(fx)
    corner = fy.sub_(frac_y).mul_(lx).add_(fx.sub_(frac_x))  # top-left corner's index in its lattice, exact
    fy, fx = frac_y, frac_x  # (B, H, W) in [0, 1)
    # One flat index into all B lattices: index_select on it is about twice as fast as gather on a CPU.
    index_dtype = torch.int32 if n * ly * lx < 2**31 else torch.int64
    first = torch.arange(n, device=device, dtype=index_dtype).view(n, 1, 1) * (ly * lx)
    corner = corner.to(index_dtype).add_(first).view(-1)  # (B * H * W,)
    flat_y, flat_x = grad_y.reshape(-1), grad_x.reshape(-1)

    def ramp(offset: int, oy: Tensor, ox: Tensor) -> Tensor:
        # dot product of a corner's gradient with the pixel's offset from that corner; the corner `offset`
        # places after the top-left one is read through a shifted view, sparing an index tensor per corner
        gy = flat_y[offset:].index_select(0, corner).view(n, height, width)
        gx = flat_x[offset:].index_select(0, corner).view(n, height, width)
        return gy.mul_(oy).add_(gx.mul_(ox))

    fy1, fx1 = fy - 1.0, fx - 1.0
    n00, n10 = ramp(0, fy, fx), ramp(lx, fy1, fx)
    n01, n11 = ramp(1, fy, fx1), ramp(lx + 1, fy1, fx1)
    del fy1, fx1
    corner = None  # frees the (B * H * W,) index before the blends (ramp, its only reader, is done)
    ty, tx = _fade(fy), _fade(fx)
    left = _lerp_(n00, n10, ty)  # blend along the height first, then along the width, as DRAEM
    right = _lerp_(n01, n11, ty)
    noise = _lerp_(left, right, tx).mul_(PERLIN_SCALE)
    if inside is not None:
        noise.masked_fill_(~inside, 0.0)
    return noise.unsqueeze(1).to(gradient_angles.dtype)


def fractal_noise(
    gradient_angles: list[Tensor] | tuple[Tensor, ...],
    resolution: Tensor,
    height: int,
    width: int,
    persistence: float = 0.5,
) -> Tensor:
    """Sum octaves of :func:`perlin_noise`, each with twice the lattice resolution and ``persistence`` times the
    amplitude of the one before, divided by the sum of the amplitudes so the result stays in [-1, 1].

    The octaves are unrotated, so each takes the separable evaluation of :func:`perlin_noise` (equal to the
    per-pixel one up to float rounding, see there).

    Args:
        gradient_angles: one tensor of gradient angles per octave; octave ``k`` uses ``resolution * 2**k``
            cells, so its lattice must be larger than that.
        resolution: integer lattice cells ``(ry, rx)`` of the first (coarsest) octave, per sample.
        height: output height H.
        width: output width W.
        persistence: amplitude ratio between consecutive octaves, in (0, 1].

    Returns:
        The noise, in the dtype and on the device of the angles.

    Shape:
        - gradient_angles: a sequence of :math:`(B, L^{(k)}_y, L^{(k)}_x)`
        - resolution: :math:`(B, 2)`
        - output: :math:`(B, 1, H, W)`

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> angles = [2 * math.pi * torch.rand(3, 2**k * 4 + 1, 2**k * 4 + 1, generator=g) for k in range(3)]
        >>> noise = fractal_noise(angles, torch.full((3, 2), 4), 48, 40)
        >>> noise.shape, bool(noise.abs().max() <= 1)
        (torch.Size([3, 1, 48, 40]), True)
    """
    if not isinstance(gradient_angles, (list, tuple)) or len(gradient_angles) == 0:
        got = f"shape {tuple(gradient_angles.shape)}" if isinstance(gradient_angles, Tensor) else repr(gradient_angles)
        raise ValueError(f"gradient_angles must be a non-empty list of (B, Ly, Lx) tensors, one per octave, got {got}")
    if isinstance(persistence, bool) or not isinstance(persistence, (int, float)) or not 0 < persistence <= 1:
        raise ValueError(f"persistence must be in (0, 1], got {persistence!r}")
    for k, angles in enumerate(gradient_angles):
        _check_lattice(angles, resolution * 2**k, f"gradient_angles[{k}]")
    n, device = gradient_angles[0].shape[0], gradient_angles[0].device
    dtype = gradient_angles[0].dtype
    for angles in gradient_angles[1:]:
        dtype = torch.promote_types(dtype, angles.dtype)
    # Octave by octave within each block of samples, so the sum stays in cache: the same operations, in the
    # same order, as summing whole octaves of perlin_noise, hence the same values.
    noise = torch.empty(n, height, width, dtype=dtype, device=device)
    step = _block_size(n, height * width, device)
    octave = None
    for start in range(0, n, step):
        block = slice(start, start + step)
        total = noise[block]
        if octave is None or octave.shape != total.shape:
            octave = torch.empty_like(total)
        amplitude, amplitudes = 1.0, 0.0
        for k, angles in enumerate(gradient_angles):
            _perlin_separable(angles[block], resolution[block] * 2**k, height, width, octave if k else total)
            if k:
                total.add_(octave.mul_(amplitude))
            amplitudes += amplitude
            amplitude *= persistence
        total.div_(amplitudes)
    return noise.unsqueeze(1)
