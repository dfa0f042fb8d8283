"""Properties of the pure batched mask operations, with OpenCV as the oracle."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from pseudoanomaly.masks.functional import (
    binary_closing,
    binary_dilation,
    binary_erosion,
    binary_opening,
    elliptical_kernel,
    minmax_stretch,
    noise_grid_shape,
    smooth_field,
    smooth_noise,
)

OPS = {
    "dilate": (binary_dilation, cv2.MORPH_DILATE),
    "erode": (binary_erosion, cv2.MORPH_ERODE),
    "open": (binary_opening, cv2.MORPH_OPEN),
    "close": (binary_closing, cv2.MORPH_CLOSE),
}


def random_masks(seed: int, b: int, h: int, w: int, density: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, 1, h, w, generator=g) < density).float()


@pytest.mark.parametrize("size", range(1, 62, 2))
def test_elliptical_kernel_equals_opencv_for_every_odd_size(size):
    ours = elliptical_kernel(size).numpy().astype(np.uint8)
    assert np.array_equal(ours, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))


@pytest.mark.parametrize("size", [0, -3, 4, 2.0, True])
def test_elliptical_kernel_rejects_bad_sizes(size):
    with pytest.raises(ValueError, match="size"):
        elliptical_kernel(size)


@given(
    seed=st.integers(0, 2**31 - 1),
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    size=st.sampled_from([1, 3, 5, 7, 9, 11]),
    density=st.floats(0.05, 0.95),
    op=st.sampled_from(sorted(OPS)),
    backend=st.sampled_from(["torch", "opencv"]),
)
def test_morphology_equals_cv2_morphologyex(seed, h, w, size, density, op, backend):
    masks = random_masks(seed, 2, h, w, density)
    kernel = elliptical_kernel(size)
    fn, code = OPS[op]
    ours = fn(masks, kernel, backend=backend)
    k = kernel.numpy().astype(np.uint8)
    for i in range(2):
        ref = cv2.morphologyEx(masks[i, 0].numpy().astype(np.uint8), code, k)
        assert np.array_equal(ours[i, 0].numpy().astype(np.uint8), ref)


@given(seed=st.integers(0, 2**31 - 1), size=st.sampled_from([3, 5, 9]), density=st.floats(0.1, 0.9))
def test_opening_is_anti_extensive_closing_extensive_both_idempotent(seed, size, density):
    masks = random_masks(seed, 3, 32, 29, density)
    kernel = elliptical_kernel(size)
    for backend in ("torch", "opencv"):
        opened = binary_opening(masks, kernel, backend)
        closed = binary_closing(masks, kernel, backend)
        assert bool((opened <= masks).all()), "opening must only remove pixels"
        assert bool((closed >= masks).all()), "closing must only add pixels"
        assert torch.equal(binary_opening(opened, kernel, backend), opened)
        assert torch.equal(binary_closing(closed, kernel, backend), closed)


def test_morphology_keeps_dtype_and_accepts_bool():
    masks = random_masks(0, 2, 16, 16, 0.5)
    k = elliptical_kernel(3)
    assert binary_opening(masks.bool(), k).dtype == torch.bool
    assert binary_opening(masks.double(), k).dtype == torch.float64
    assert torch.equal(binary_opening(masks.bool(), k, "torch"), binary_opening(masks, k, "torch").bool())


def test_morphology_rejects_bad_arguments():
    masks = random_masks(0, 2, 16, 16, 0.5)
    with pytest.raises(ValueError, match="backend"):
        binary_opening(masks, elliptical_kernel(3), backend="scipy")
    with pytest.raises(ValueError, match="kernel"):
        binary_opening(masks, torch.ones(4, 4))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        binary_opening(masks[:, 0], elliptical_kernel(3))


@pytest.mark.parametrize("downsample", [1, 2, 4, None])
def test_smooth_noise_has_the_variance_of_blurred_white_noise(downsample):
    field = smooth_noise(32, 128, 128, 8.0, downsample=downsample, generator=torch.Generator().manual_seed(0))
    expected = 1 / (2 * math.sqrt(math.pi) * 8.0)  # std of unit white noise after a Gaussian blur
    interior = field[:, :, 24:-24, 24:-24]  # reflected borders raise the variance near the edges
    assert abs(float(interior.std()) - expected) < 0.1 * expected
    assert abs(float(interior.mean())) < 0.25 * expected  # ~4 standard errors for 32 correlated fields


def test_smooth_noise_correlation_length_does_not_depend_on_the_grid():
    # neighbours 8 px apart correlate as exp(-d^2 / (4 sigma^2)) for a Gaussian-blurred white noise
    def corr(downsample):
        f = smooth_noise(64, 96, 96, 8.0, downsample=downsample, generator=torch.Generator().manual_seed(1))
        a, b = f[..., 20:76, 20:68].flatten(), f[..., 20:76, 28:76].flatten()
        return float(torch.corrcoef(torch.stack([a, b]))[0, 1])

    expected = math.exp(-(8.0**2) / (4 * 8.0**2))
    assert abs(corr(1) - expected) < 0.06
    assert abs(corr(4) - expected) < 0.06


def test_smooth_field_checks_the_noise_shape():
    with pytest.raises(ValueError, match="noise must have shape"):
        smooth_field(torch.randn(1, 1, 5, 5), 64, 64, 15.0)
    assert noise_grid_shape(256, 250, 15.0) == (64, 63)
    with pytest.raises(ValueError, match="downsample"):
        noise_grid_shape(64, 64, 15.0, downsample=0)
    with pytest.raises(ValueError, match="sigma"):
        noise_grid_shape(64, 64, -1.0)


@given(seed=st.integers(0, 2**31 - 1))
def test_minmax_stretch_spans_zero_to_one_and_matches_cv2_normalize(seed):
    g = torch.Generator().manual_seed(seed)
    x = 120 + 15 * torch.rand(3, 1, 9, 11, generator=g, dtype=torch.float64)
    s = minmax_stretch(x)
    assert torch.allclose(s.flatten(1).amin(1), torch.zeros(3, dtype=torch.float64))
    assert torch.allclose(s.flatten(1).amax(1), torch.ones(3, dtype=torch.float64))
    q = minmax_stretch(x, levels=256) * 255
    for i in range(3):
        u8 = np.round(x[i, 0].numpy()).astype(np.uint8)
        ref = cv2.normalize(u8, None, 0, 255, cv2.NORM_MINMAX)
        assert np.abs(q[i, 0].numpy() - ref).max() <= 1  # OpenCV may round a .5 the other way


def test_minmax_stretch_of_a_constant_is_zero():
    assert torch.equal(minmax_stretch(torch.full((2, 1, 3, 3), 7.0)), torch.zeros(2, 1, 3, 3))
