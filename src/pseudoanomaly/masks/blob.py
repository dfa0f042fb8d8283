"""Tumor-like blobs: ellipses with a smoothly perturbed outline, centred inside the foreground.

The shape family of synthetic-tumor methods. Hu et al., "Label-Free Liver Tumor Segmentation" (CVPR 2023;
released code: github.com/MrGiovanni/SyntheticTumors, ``TumorGenerated/utils.py``) place ellipsoids whose
semi-axes are drawn independently in ``[0.75 r, 1.25 r]`` voxels (r = 4, 8, 16 or 32 for tiny to large
tumors; 1-3 large or 2-5 medium tumors per volume), deform them with a random elastic grid, and centre them
on voxels of the (eroded) liver mask. Random ellipses are also the classic synthetic anomaly of medical
anomaly-detection benchmarks.

Each blob here is the region ``rho <= r(theta)`` in the blob's own normalized polar coordinates
(``rho = 1`` is the ellipse with semi-axes ``a``, ``b``), with the outline

    r(theta) = 1 + sum_{k=2..K} (a_k cos k theta + b_k sin k theta).

NOTE: departures from the reference, and choices of ours:

- The elastic deformation is replaced by the low-order Fourier perturbation above: it is smooth by
  construction, costs a handful of elementwise operations, and keeps each blob star-shaped around its centre
  (so one blob is one piece and always covers its centre pixel). Harmonics start at k = 2 because k = 0
  only rescales the blob and k = 1 mostly shifts it. Coefficients are uniform with amplitude decaying as
  1/k, normalized so that ``irregularity`` is the expected root-mean-square relative deviation of the outline
  from the ellipse (0 gives exact ellipses). The perturbation coefficients are drawn whatever
  ``irregularity`` is, so one seed gives the same centres and axes at every irregularity.
- Centres are drawn uniformly over the foreground's pixels (the reference erodes the liver mask by 5 x 5
  first; pass an eroded foreground for that). The blob itself is cut to the foreground by the base class.
- Rendering evaluates every blob slot of every sample at once, with a validity mask for the unused slots: no
  per-sample Python loop, same code on CPU and GPU. Each blob is evaluated only in a square window around its
  centre, ``(n, max_blobs, S, S)``, and the windows are scattered into the frame. The window is the smallest
  that holds every blob of the call: no pixel farther than ``max(a, b) * max_theta r(theta)`` from a centre
  can be inside, and ``max r <= 1 + sum_k |a_k| + |b_k|``. The pixel coordinates are the same numbers as on
  the whole grid, so the masks are bit-identical to a whole-grid evaluation (a test checks this); at the
  defaults the window covers about a quarter of a frame, and rendering is several times faster.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor

from .._checks import check_count_range, check_int_at_least, check_non_negative, check_range_pair, check_spacing
from .._random import randint, uniform
from .base import MaskGenerator, Params
from .blob3d import draw_blobs3d, render_blobs3d

__all__ = ["BlobMask"]

COUNT = (1, 3)  # blobs per mask; the reference puts 1-3 large tumors in a volume (random.randint(1, 3))
# Semi-axes as a fraction of min(H, W). Ours; of the order of the reference's small-to-large tumors
# (semi-axes 6 to 40 voxels) on a liver crop of about 256 pixels.
RADIUS = (0.03, 0.12)
IRREGULARITY = 0.15  # ours: rms relative deviation of the outline from the ellipse
HARMONICS = 5  # ours: highest harmonic K of the outline; higher makes it wavier


@lru_cache(maxsize=8)
def _chebyshev_to_monomial(degree: int) -> tuple[Tensor, Tensor]:
    # Rows k: monomial coefficients of the Chebyshev polynomials T_k and U_k (k = 0..degree), so that
    # cos k theta = T_k(cos theta) and sin k theta = sin theta * U_{k-1}(cos theta).
    t = torch.zeros(degree + 1, degree + 1, dtype=torch.float64)
    w = torch.zeros_like(t)
    t[0, 0] = w[0, 0] = 1
    t[1, 1], w[1, 1] = 1, 2
    for k in range(1, degree):  # P_{k+1} = 2x P_k - P_{k-1} for both kinds
        t[k + 1] = 2 * torch.roll(t[k], 1) - t[k - 1]
        w[k + 1] = 2 * torch.roll(w[k], 1) - w[k - 1]
    return t, w


def _horner(coefficients: Tensor, x: Tensor, out: Tensor) -> Tensor:
    # sum_i coefficients[..., i] * x^i for coefficients (..., D + 1, 1, 1), written into ``out``.
    torch.addcmul(coefficients[..., -2, :, :], coefficients[..., -1, :, :], x, out=out)
    for i in range(coefficients.shape[-3] - 3, -1, -1):
        torch.addcmul(coefficients[..., i, :, :], out, x, out=out)
    return out


def _within_outline(u: Tensor, v: Tensor, rho2: Tensor, outline: Tensor) -> Tensor:
    """Whether each point ``(u, v)`` of the normalized frame lies inside ``rho <= r(theta)``.

    r(theta) = 1 + sum_k a_k cos k theta + b_k sin k theta is rewritten as P(c) + s Q(c) with c = cos theta,
    s = sin theta and polynomials P, Q of degree K and K - 1, evaluated by Horner's scheme: one pass over the
    grid per degree instead of ten per harmonic for the angle-addition recurrence. ``u``, ``v`` and ``rho2``
    are overwritten: on the CPU, fresh grid-sized tensors cost more (page faults) than the arithmetic.
    """
    k_max = outline.shape[-2] + 1
    t, w = (m.to(outline.device, outline.dtype) for m in _chebyshev_to_monomial(k_max))
    p = outline[..., 0] @ t[2:]  # (n, slots, K + 1): coefficients of c^0 .. c^K
    p[..., 0] += 1
    q = outline[..., 1] @ w[1:k_max, :k_max]  # (n, slots, K): coefficients of c^0 .. c^(K - 1)
    inv_rho = rho2.clamp_min(torch.finfo(rho2.dtype).tiny).rsqrt_()
    # at the centre c = s = 0 and r = P(0) there; rho = 0 is inside whatever r is, thanks to the clamp below
    c, s = u.mul_(inv_rho), v.mul_(inv_rho)
    rho = rho2.mul_(inv_rho)
    bound = _horner(p[..., None, None], c, out=inv_rho)  # inv_rho is no longer needed: reuse its memory
    bound.addcmul_(s, _horner(q[..., None, None], c, out=torch.empty_like(c)))
    return rho <= bound.clamp_min_(0)  # r(theta) >= 0 keeps the blob star-shaped around its centre


def _window_half(axes: Tensor, outline: Tensor, valid: Tensor) -> int:
    """Half-side (pixels) of a square window around its centre that holds every valid blob of the call."""
    reach = 1 + outline.abs().sum(dim=(-2, -1))  # (n, slots): bound on r(theta)
    extent = (axes.amax(dim=-1) * reach).masked_fill(~valid, 0).max()  # one device sync, read just below
    # +1: a pixel centre beyond the window is > 1/2 pixel past the blob's reach even from a non-integer centre
    return int(math.ceil(float(extent))) + 1


def _render(params: Params, height: int, width: int, windowed: bool) -> Tensor:
    """Blob masks ``(n, 1, H, W)`` from ``params``: on a window around each centre, or on the whole grid."""
    center, axes, angle, outline = params["center"], params["axes"], params["angle"], params["outline"]
    valid = params["valid"]
    n, slots = valid.shape
    device, dtype = center.device, center.dtype
    half = _window_half(axes, outline, valid)
    side = 2 * half + 1
    windowed = windowed and side * side < height * width
    if windowed:
        # Window pixel (i, j) of a blob is frame pixel (origin + i, origin + j); its coordinates are the same
        # integers as on the whole grid, so u, v and the outline test below are the same numbers.
        origin = center.round() - half  # (n, slots, 2) as (y, x)
        offsets = torch.arange(side, device=device, dtype=dtype)
        ys = origin[..., 0:1] + offsets  # (n, slots, S)
        xs = origin[..., 1:2] + offsets
    else:
        ys = torch.arange(height, device=device, dtype=dtype).expand(n, slots, height)
        xs = torch.arange(width, device=device, dtype=dtype).expand(n, slots, width)
    cos, sin = torch.cos(angle)[..., None], torch.sin(angle)[..., None]  # (n, slots, 1)
    a, b = axes[..., 0:1], axes[..., 1:2]
    dx, dy = xs - center[..., 1:2], ys - center[..., 0:1]  # (n, slots, W) and (n, slots, H)
    # The pixel in the blob's normalized frame (rotated by -angle, divided by the semi-axes); x and y terms are
    # separable, so each is one broadcast add: (n, slots, H, W).
    u = (dx * (cos / a)).unsqueeze(-2) + (dy * (sin / a)).unsqueeze(-1)
    v = (dy * (cos / b)).unsqueeze(-1) - (dx * (sin / b)).unsqueeze(-2)
    rho2 = (u * u).addcmul_(v, v)
    if bool(outline.any()):
        inside = _within_outline(u, v, rho2, outline)
    else:
        inside = rho2 <= 1  # exact ellipses
    inside &= valid[..., None, None]
    if not windowed:
        return inside.any(dim=1, keepdim=True)  # (n, 1, H, W) bool
    # Scatter the windows into the frame (OR over blobs): set the pixels inside a blob, those of the frame only.
    # Every write is True, so overlapping windows give the same frame in any order (deterministic on GPU too).
    rows, cols = ys.long(), xs.long()
    inside &= ((rows >= 0) & (rows < height)).unsqueeze(-1) & ((cols >= 0) & (cols < width)).unsqueeze(-2)
    first = torch.arange(n, device=device).view(n, 1, 1, 1) * (height * width)
    flat = first + rows.unsqueeze(-1) * width + cols.unsqueeze(-2)  # (n, slots, S, S) frame indices
    frame = torch.zeros(n * height * width, device=device, dtype=torch.bool)
    frame.index_fill_(0, flat[inside], True)
    return frame.view(n, 1, height, width)


class BlobMask(MaskGenerator):
    """Masks of a few tumor-like blobs: ellipses with a smooth random outline, centred in the foreground.

    Each mask holds a random number of blobs. Each blob has semi-axes drawn independently in ``radius``, a
    random orientation, and an outline perturbed by harmonics 2 to ``harmonics`` whose size is set by
    ``irregularity``. Blob centres are foreground pixels (any pixel without a foreground), so with the
    default ``union=1`` every mask covers at least one foreground pixel. ``gen.last_params`` holds, per mask
    and blob slot: ``center`` (y, x) and ``axes`` in pixels, ``angle`` in radians, the ``outline``
    coefficients (a_k, b_k) and whether the slot is ``valid`` (used).

    Volumes ``(B, C, D, H, W)`` get ellipsoids with a perturbed surface (see :mod:`pseudoanomaly.masks.blob3d`);
    their ``last_params`` hold ``center`` (z, y, x) in voxels, ``axes`` (in mm with a ``spacing``, else in
    voxels), a ``rotation`` quaternion, the surface harmonics' ``directions`` and ``outline`` amplitudes, and
    ``valid``.

    Args:
        count: ``(min, max)`` number of blobs per mask (an integer means exactly that many).
        radius: ``(min, max)`` of each semi-axis as a fraction of the smallest side (``min(H, W)``, or
            ``min(D, H, W)`` for volumes), in (0, 1]; with a ``spacing``, in millimetres (any positive values).
        irregularity: root-mean-square relative deviation of the outline from the ellipse (in expectation),
            in [0, 1]; 0 gives exact ellipses.
        harmonics: highest harmonic K of the outline perturbation (at least 2).
        spacing: voxel size ``(z, y, x)`` in mm of the volumes this generator is called on, or ``None``. With it
            ``radius`` is in mm and distances are physical, so anisotropic voxels (e.g. 0.7 x 0.7 x 2.5 mm)
            still give round blobs; volumes only (2-D images with a spacing are refused).
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
        >>> gen = BlobMask(count=2)
        >>> images = torch.rand(3, 1, 64, 64)
        >>> fg = torch.zeros(3, 1, 64, 64, dtype=torch.bool); fg[:, :, 16:48, 8:40] = True
        >>> masks = gen(images, fg, generator=torch.Generator().manual_seed(0))
        >>> masks.shape, bool(masks[~fg].any()), bool(masks.flatten(1).any(dim=1).all())
        (torch.Size([3, 1, 64, 64]), False, True)

        Volumes of 0.7 x 0.7 x 2.5 mm voxels, blobs of semi-axes 4 to 8 mm:

        >>> gen = BlobMask(count=2, radius=(4.0, 8.0), spacing=(2.5, 0.7, 0.7))
        >>> volumes = torch.rand(2, 1, 16, 64, 64)
        >>> fg = torch.zeros(2, 1, 16, 64, 64, dtype=torch.bool); fg[..., 4:12, 16:48, 16:48] = True
        >>> masks = gen(volumes, fg, generator=torch.Generator().manual_seed(0))
        >>> masks.shape, bool(masks[~fg].any()), bool(masks.flatten(1).any(dim=1).all())
        (torch.Size([2, 1, 16, 64, 64]), False, True)
    """

    supports_volumes = True

    def __init__(
        self,
        count: int | tuple[int, int] = COUNT,
        radius: tuple[float, float] = RADIUS,
        irregularity: float = IRREGULARITY,
        harmonics: int = HARMONICS,
        spacing: tuple[float, float, float] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.count = check_count_range("count", count)
        self.spacing = check_spacing("spacing", spacing, 3)
        high = 1.0 if self.spacing is None else float("inf")  # a fraction of the side, or millimetres
        self.radius = check_range_pair("radius", radius, 0.0, high, low_inclusive=False)
        self.irregularity = check_non_negative("irregularity", irregularity)
        if self.irregularity > 1:
            raise ValueError(f"irregularity must be in [0, 1], got {irregularity!r}")
        self.harmonics = check_int_at_least("harmonics", harmonics, 2)
        # Uniform coefficients on [-c_k, c_k] have variance c_k^2 / 3 each, and the outline's mean square
        # deviation over theta is sum_k (a_k^2 + b_k^2) / 2; with c_k proportional to 1 / k this makes its
        # expectation irregularity^2.
        k = torch.arange(2, self.harmonics + 1, dtype=torch.float64)
        amplitude = self.irregularity * math.sqrt(3) / k / (1 / k**2).sum().sqrt()
        self.register_buffer("amplitude", amplitude.float(), persistent=False)  # (K - 1,)

    def draw(self, n, height, width, foreground, generator, device) -> Params:
        if self.spacing is not None:
            raise ValueError(f"BlobMask: spacing={self.spacing} is a voxel size (z, y, x) for volumes (B, C, D, H, W), "
                             f"got 2-D images of {height} x {width}; leave spacing=None for images")
        slots = self.count[1]
        counts = randint((n,), self.count[0], self.count[1], generator=generator, device=device)
        valid = torch.arange(slots, device=device) < counts[:, None]  # (n, slots)
        if foreground is None:
            index = randint((n, slots), 0, height * width - 1, generator=generator, device=device)
        else:
            weights = foreground.flatten(1).float()  # (n, H * W), uniform over foreground pixels
            index = torch.multinomial(weights, slots, replacement=True, generator=generator)
        center = torch.stack([index // width, index % width], dim=-1).float()  # (n, slots, 2) as (y, x)
        lo, hi = (r * min(height, width) for r in self.radius)
        axes = uniform((n, slots, 2), lo, hi, generator=generator, device=device)  # semi-axes in pixels
        angle = uniform((n, slots), 0.0, math.pi, generator=generator, device=device)
        unit = uniform((n, slots, self.harmonics - 1, 2), -1.0, 1.0, generator=generator, device=device)
        outline = unit * self.amplitude.to(device).view(-1, 1)  # (n, slots, K - 1, 2): (a_k, b_k)
        return {"center": center, "axes": axes, "angle": angle, "outline": outline, "valid": valid}

    def render(self, params: Params, height: int, width: int) -> Tensor:
        return _render(params, height, width, windowed=True)

    def draw_volume(self, n, size, foreground, generator, device) -> Params:
        axes = self.radius if self.spacing is not None else tuple(r * min(size) for r in self.radius)
        return draw_blobs3d(n, size, foreground, generator, device, self.count, axes, self.amplitude)

    def render_volume(self, params: Params, size) -> Tensor:
        return render_blobs3d(params, size, self.spacing or (1.0, 1.0, 1.0))

    def extra_repr(self) -> str:
        own = f"count={self.count}, radius={self.radius}, irregularity={self.irregularity}"
        if self.spacing is not None:
            own += f", spacing={self.spacing}"
        if self.harmonics != HARMONICS:
            own += f", harmonics={self.harmonics}"
        return f"{own}, {super().extra_repr()}"
