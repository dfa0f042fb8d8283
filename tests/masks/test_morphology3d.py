"""Volume morphology: exact against scipy.ndimage with OpenCV's borders, on both backends and every device."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import ndimage

from pseudoanomaly.masks.functional import (
    binary_closing,
    binary_dilation,
    binary_erosion,
    binary_morphology,
    binary_opening,
    ellipsoidal_kernel,
)

STEPS = {"dilate": "d", "erode": "e", "open": "ed", "close": "de"}


def _oracle(volume: np.ndarray, kernel: np.ndarray, op: str) -> np.ndarray:
    # OpenCV's borders: background for a dilation, foreground for an erosion, each step with its own
    for step in STEPS[op]:
        if step == "d":
            volume = ndimage.binary_dilation(volume, structure=kernel, border_value=0)
        else:
            volume = ndimage.binary_erosion(volume, structure=kernel, border_value=1)
    return volume


@given(
    seed=st.integers(0, 2**31 - 1),
    shape=st.tuples(st.integers(1, 4), st.integers(1, 9), st.integers(1, 11), st.integers(1, 11)),
    sides=st.tuples(st.sampled_from([1, 3, 5]), st.sampled_from([1, 3, 5, 7]), st.sampled_from([1, 3, 5, 7])),
    density=st.floats(0.05, 0.95),
    op=st.sampled_from(sorted(STEPS)),
)
def test_volume_morphology_equals_scipy_ndimage_on_both_backends(seed, shape, sides, density, op):
    b, d, h, w = shape
    g = torch.Generator().manual_seed(seed)
    masks = torch.rand(b, 1, d, h, w, generator=g) < density
    kernel = ellipsoidal_kernel(sides)
    expected = np.stack([_oracle(m[0].numpy(), kernel.numpy(), op) for m in masks])[:, None]
    for backend in ("torch", "scipy"):
        out = binary_morphology(masks, kernel, (op,), backend)
        assert out.dtype == torch.bool and out.shape == masks.shape
        np.testing.assert_array_equal(out.numpy(), expected, err_msg=f"{backend} {op}")


@given(
    seed=st.integers(0, 2**31 - 1),
    shape=st.tuples(st.integers(1, 20), st.integers(1, 40), st.integers(1, 40)),
    spots=st.integers(0, 6),
    sides=st.tuples(st.sampled_from([1, 3, 5]), st.sampled_from([1, 3, 5, 7]), st.sampled_from([1, 3, 5, 7])),
    random_element=st.booleans(),
    ops=st.lists(st.sampled_from(["dilate", "erode", "open", "close"]), min_size=1, max_size=3),
)
def test_sparse_masks_are_processed_exactly_in_boxes(seed, shape, spots, sides, random_element, ops):
    # The host path works in boxes around separate groups of voxels: a few small spots scattered over a larger
    # volume, some close enough to interact, with any element (even one without its centre) and any sequence of
    # steps, give the whole-volume result voxel for voxel.
    rng = np.random.default_rng(seed)
    volume = np.zeros(shape, bool)
    for _ in range(spots):
        centre = [rng.integers(0, n) for n in shape]
        half = [rng.integers(0, 4) for _ in shape]
        volume[tuple(slice(max(0, c - r), c + r + 1) for c, r in zip(centre, half))] = True
    volume &= rng.random(shape) < 0.9  # holes, so erosions and closings have work to do
    kernel = rng.random(sides) < 0.6 if random_element else ellipsoidal_kernel(sides).numpy()
    expected = volume
    for op in ops:
        expected = _oracle(expected, kernel, op)
    out = binary_morphology(torch.from_numpy(volume)[None, None], torch.from_numpy(kernel), tuple(ops), "scipy")
    np.testing.assert_array_equal(out[0, 0].numpy(), expected)


def test_volume_morphology_keeps_dtype_and_device_and_the_backends_agree(device):
    g = torch.Generator(device=device).manual_seed(0)
    masks = (torch.rand(2, 1, 7, 12, 13, generator=g, device=device) < 0.5).double()
    kernel = ellipsoidal_kernel(4.0, spacing=(2.5, 0.7, 0.7))
    outs = [f(masks, kernel, backend) for f in (binary_dilation, binary_erosion, binary_opening, binary_closing)
            for backend in ("torch", "scipy", "auto")]
    for out in outs:
        assert out.dtype == masks.dtype and out.device == masks.device
    for i in range(0, len(outs), 3):
        assert torch.equal(outs[i], outs[i + 1]) and torch.equal(outs[i], outs[i + 2])


def test_ellipsoidal_kernel_is_a_ball_and_follows_the_spacing():
    ball = ellipsoidal_kernel(5).numpy()
    z, y, x = np.mgrid[-2:3, -2:3, -2:3]
    np.testing.assert_array_equal(ball, z**2 + y**2 + x**2 <= 4)
    assert ellipsoidal_kernel(3).sum() == 7  # the 6-connected cross
    assert tuple(ellipsoidal_kernel((1, 3, 5)).shape) == (1, 3, 5)
    # 5 mm on 2.5 x 0.7 x 0.7 mm voxels: 2 * round(2.5 / 2.5) + 1 = 3 slices, 2 * round(2.5 / 0.7) + 1 = 9 voxels
    assert tuple(ellipsoidal_kernel(5.0, spacing=(2.5, 0.7, 0.7)).shape) == (3, 9, 9)


@pytest.mark.parametrize("call, shown", [
    (lambda: ellipsoidal_kernel(0.5, spacing=(2.5, 0.7, 0.7)), r"size=0\.5 mm rounds to a single voxel with spacing"),
    (lambda: ellipsoidal_kernel(4), r"size must be a positive odd integer, got 4"),
    (lambda: ellipsoidal_kernel(3.0, spacing=(1.0, 1.0)), r"spacing must hold 3 positive numbers"),
    (lambda: ellipsoidal_kernel(-3.0, spacing=(1.0, 1.0, 1.0)), r"size must be positive, got -3\.0"),
    (lambda: binary_dilation(torch.zeros(1, 1, 3, 4, 4), torch.ones(3, 3, dtype=torch.bool)),
     r"kernel must be a 3-D tensor with odd sides for \(B, 1, D, H, W\) masks, got \(3, 3\)"),
    (lambda: binary_dilation(torch.zeros(1, 1, 3, 4, 4), ellipsoidal_kernel(3), backend="opencv"),
     r"backend must be one of \['auto', 'torch', 'scipy'\], got 'opencv'"),
])
def test_bad_volume_morphology_arguments_are_refused_by_name(call, shown):
    with pytest.raises(ValueError, match=shown):
        call()
