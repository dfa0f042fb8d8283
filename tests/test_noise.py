"""The noise module: blurred white noise (variance, correlation length, shape checks), the min-max stretch
against OpenCV, its place below masks and overlays, and the deprecated ``masks.functional.smooth_noise``."""

from __future__ import annotations

import math
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from pseudoanomaly import noise
from pseudoanomaly.masks import functional
from pseudoanomaly.noise import minmax_stretch, noise_grid_shape, smooth_field


def smooth_noise(batch_size, height, width, sigma, *, downsample=None, generator=None):
    """A batch of blurred white-noise fields: the draw and blur the deprecated ``smooth_noise`` made."""
    gh, gw = noise_grid_shape(height, width, sigma, downsample)
    draws = torch.randn((batch_size, 1, gh, gw), generator=generator)
    return smooth_field(draws, height, width, sigma, downsample)


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


@pytest.mark.parametrize("shape", [(256, 256, 15.0), (97, 130, 6.0), (40, 33, 2.0)])
def test_smooth_field_into_a_reused_buffer_is_the_same_field_bit_for_bit(shape):
    h, w, sigma = shape
    draws = torch.randn(5, 1, *noise_grid_shape(h, w, sigma), generator=torch.Generator().manual_seed(2))
    expected = smooth_field(draws, h, w, sigma, scale=3.0, offset=1.5)
    buffer = torch.full((5, 1, h, w), float("nan"))  # a dirty buffer: nothing of it may survive
    for _ in range(2):
        got = smooth_field(draws, h, w, sigma, scale=3.0, offset=1.5, out=buffer)
        assert got.data_ptr() == buffer.data_ptr() and torch.equal(got, expected)


@pytest.mark.parametrize("out", [torch.empty(5, 1, 64, 63), torch.empty(4, 1, 64, 64),
                                 torch.empty(5, 1, 64, 64, dtype=torch.float64)])
def test_smooth_field_refuses_an_out_of_another_shape_or_dtype(out):
    draws = torch.randn(5, 1, *noise_grid_shape(64, 64, 15.0))
    with pytest.raises(ValueError, match="out must be a torch.float32 tensor of shape \\(5, 1, 64, 64\\)"):
        smooth_field(draws, 64, 64, 15.0, out=out)


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


def test_noise_imports_without_masks_or_overlays():
    # The package's __init__ imports everything, so load the bare package (no __init__) and then the module
    # alone: what comes in with it is what it depends on.
    code = """
import importlib, importlib.machinery, importlib.util, sys
root = importlib.util.find_spec("pseudoanomaly").submodule_search_locations
spec = importlib.machinery.ModuleSpec("pseudoanomaly", None, is_package=True)
spec.submodule_search_locations = list(root)
sys.modules["pseudoanomaly"] = importlib.util.module_from_spec(spec)
importlib.import_module("pseudoanomaly.noise")
print(" ".join(sorted(m for m in sys.modules if m.startswith("pseudoanomaly."))))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["pseudoanomaly._checks", "pseudoanomaly._filters", "pseudoanomaly.noise"]


def test_masks_functional_keeps_the_noise_names():
    for name in noise.__all__:
        assert getattr(functional, name) is getattr(noise, name)


def test_smooth_noise_is_deprecated_and_draws_as_before():
    with pytest.warns(DeprecationWarning, match="smooth_noise is deprecated"):
        old = functional.smooth_noise(3, 40, 50, 6.0, generator=torch.Generator().manual_seed(7))
    assert torch.equal(old, smooth_noise(3, 40, 50, 6.0, generator=torch.Generator().manual_seed(7)))


@pytest.mark.parametrize("shape", [(1,), (3, 5), (2, 1, 17, 33)])
def test_random_bytes_are_uniform_independent_and_reproducible(shape):
    from pseudoanomaly._random import random_bytes

    draw = lambda seed, s=shape: random_bytes(s, generator=torch.Generator().manual_seed(seed), device="cpu")  # noqa: E731
    assert draw(0).shape == shape and draw(0).dtype == torch.uint8
    assert torch.equal(draw(0), draw(0))
    big = random_bytes((200_000,), generator=torch.Generator().manual_seed(1), device="cpu").long()
    counts = torch.bincount(big, minlength=256).double()
    chi2 = float(((counts - len(big) / 256) ** 2 / (len(big) / 256)).sum())
    assert chi2 < 350  # 255 degrees of freedom: p ~ 1e-4; every value of a byte occurs about as often
    # neighbouring bytes (also those of one 64-bit draw) are uncorrelated, each byte position alike
    pairs = big.view(-1, 8).double()
    corr = torch.corrcoef(pairs.T)
    assert float((corr - torch.eye(8, dtype=torch.double)).abs().max()) < 0.03
    assert float((pairs.mean(0) - 127.5).abs().max()) < 1.5
