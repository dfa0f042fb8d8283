"""pseudoanomaly.postprocess: lesions from a probability map, and a threshold from healthy scores.

The laws a reader of the lesion output relies on, on random maps (Hypothesis): nothing outside the lenient cut,
a larger minimum volume never adds a lesion and a higher threshold never a voxel, the switched-off form is the plain voxel cut;
the healthy threshold leaves at most the asked share of the healthy volume above it, and is the lowest that does.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import ndimage

from pseudoanomaly.postprocess import healthy_threshold, lesion_mask, lesion_volumes, smooth_across_slices

FULL = np.ones((3, 3, 3), bool)


@st.composite
def maps(draw) -> np.ndarray:
    """A small random probability volume, smoothed so that it holds blobs of several sizes."""
    shape = draw(st.tuples(st.integers(2, 6), st.integers(4, 12), st.integers(4, 12)))
    seed = draw(st.integers(0, 2**31 - 1))
    noise = np.random.default_rng(seed).random(shape)
    smooth = ndimage.gaussian_filter(noise, draw(st.floats(0.0, 1.5)))
    low, high = smooth.min(), smooth.max()
    return ((smooth - low) / (high - low + 1e-12)).astype(np.float32)


spacings = st.tuples(*[st.floats(0.5, 3.0)] * 3)
thresholds = st.floats(0.05, 0.95)


def _count(mask: np.ndarray) -> int:
    return int(ndimage.label(mask, FULL)[1])


@given(maps(), thresholds, st.floats(0, 0.9), st.floats(0, 200), spacings)
def test_lesions_lie_inside_the_lenient_cut(p, threshold, grow_share, volume, spacing):
    grow = threshold * (1 - grow_share) if grow_share > 0.05 else None
    out = lesion_mask(p, threshold, spacing=spacing, min_volume_mm3=volume, grow_threshold=grow)
    assert out.dtype == bool and out.shape == p.shape
    assert not (out & ~(p > (grow or threshold))).any()
    # every lesion holds a voxel above the strict threshold
    labels, n = ndimage.label(out, FULL)
    assert all((p[labels == i] > threshold).any() for i in range(1, n + 1))


@given(maps(), thresholds, st.floats(0, 100), st.floats(0, 100), spacings)
def test_a_larger_minimum_volume_never_adds_a_lesion_or_a_voxel(p, threshold, small, extra, spacing):
    a = lesion_mask(p, threshold, spacing=spacing, min_volume_mm3=small)
    b = lesion_mask(p, threshold, spacing=spacing, min_volume_mm3=small + extra)
    assert not (b & ~a).any() and _count(b) <= _count(a)


@given(maps(), thresholds, st.floats(0, 0.5), st.floats(0, 100), spacings)
def test_a_higher_threshold_never_adds_a_voxel(p, threshold, rise, volume, spacing):
    # (it may split a lesion in two: a count law would be false)
    higher = min(threshold + rise, 0.99)
    a = lesion_mask(p, threshold, spacing=spacing, min_volume_mm3=volume)
    b = lesion_mask(p, higher, spacing=spacing, min_volume_mm3=volume)
    assert not (b & ~a).any()


@given(maps(), thresholds, spacings)
def test_switched_off_it_is_the_plain_voxel_cut(p, threshold, spacing):
    assert np.array_equal(lesion_mask(p, threshold, spacing=spacing), p > threshold)
    assert np.array_equal(lesion_mask(p, threshold, spacing=spacing, grow_threshold=threshold), p > threshold)


@given(maps(), thresholds, st.floats(1, 50), spacings)
def test_kept_lesions_reach_the_minimum_volume_in_mm3(p, threshold, volume, spacing):
    out = lesion_mask(p, threshold, spacing=spacing, min_volume_mm3=volume)
    sizes = lesion_volumes(out, spacing)
    assert (sizes >= volume - 1e-9).all()
    # and every dropped component of the cut was smaller
    cut_sizes = lesion_volumes(p > threshold, spacing)
    assert int((cut_sizes >= volume - 1e-9).sum()) == len(sizes)


def test_hysteresis_grows_a_detected_lesion_and_leaves_a_faint_one_out():
    p = np.zeros((3, 20, 20), np.float32)
    p[1, 2:6, 2:6] = 0.9     # detected
    p[1, 6:9, 2:6] = 0.4     # its faint rim
    p[1, 12:16, 12:16] = 0.4  # faint alone: never a lesion
    out = lesion_mask(p, 0.5, spacing=(1, 1, 1), grow_threshold=0.3)
    assert out[1, 2:9, 2:6].all() and not out[1, 12:16, 12:16].any() and out.sum() == 28


def test_minimum_volume_counts_millimetres_not_voxels():
    p = np.zeros((4, 10, 10), np.float32)
    p[1:3, 2:4, 2:4] = 0.8  # 8 voxels
    assert lesion_mask(p, 0.5, spacing=(1, 1, 1), min_volume_mm3=10).sum() == 0      # 8 mm3
    assert lesion_mask(p, 0.5, spacing=(2, 1, 1), min_volume_mm3=10).sum() == 8      # 16 mm3


def test_a_tensor_map_and_a_2d_image_are_taken():
    p = torch.zeros(8, 8)
    p[2:5, 2:5] = 0.7
    out = lesion_mask(p, 0.5, spacing=(1.0, 1.0), min_volume_mm3=9)
    assert isinstance(out, np.ndarray) and out.sum() == 9


@pytest.mark.parametrize("kwargs, named", [
    ({"threshold": 0.0}, "threshold"), ({"threshold": 1.0}, "threshold"), ({"threshold": math.nan}, "threshold"),
    ({"min_volume_mm3": -1.0}, "min_volume_mm3"), ({"min_volume_mm3": math.nan}, "min_volume_mm3"),
    ({"min_volume_mm3": math.inf}, "min_volume_mm3"), ({"grow_threshold": 0.6}, "grow_threshold"),
    ({"spacing": (1.0, 1.0)}, "spacing"), ({"spacing": (1.0, 0.0, 1.0)}, "spacing"),
    ({"connectivity": 8}, "connectivity"),
])
def test_bad_settings_are_refused_naming_the_value(kwargs, named):
    settings = {"threshold": 0.5, "spacing": (1.0, 1.0, 1.0), **kwargs}
    with pytest.raises(ValueError, match=named):
        lesion_mask(np.zeros((2, 4, 4), np.float32), **settings)


def test_a_map_with_nan_or_outside_zero_one_is_refused():
    p = np.zeros((2, 4, 4), np.float32)
    p[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        lesion_mask(p, 0.5, spacing=(1, 1, 1))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        lesion_mask(np.full((2, 4, 4), 2.0), 0.5, spacing=(1, 1, 1))


@given(st.lists(st.floats(0, 1, width=32), min_size=1, max_size=300), st.floats(0.001, 0.5),
       st.lists(st.floats(0.1, 10), min_size=300, max_size=300))
def test_healthy_threshold_is_the_lowest_that_keeps_the_share(values, fraction, weights):
    scores = np.array(values, np.float32)
    w = np.array(weights[:len(values)])
    total = w.sum()
    saturated = w[scores >= 1].sum() / total > fraction  # no threshold below 1 can keep the share
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = healthy_threshold(scores, fraction, weights=w, floor=1e-6)
    above = w[scores > result.threshold].sum() / total  # a float32 map against the threshold, as users compare
    assert result.achieved == pytest.approx(above)
    assert bool(caught) == saturated  # a warning exactly when the share cannot be kept
    if saturated:
        return
    assert above <= fraction * (1 + 1e-9)
    # no lower candidate (a score below the threshold, above the floor) keeps the share
    lower = scores[(scores < result.threshold) & (scores >= 1e-6)]
    for candidate in np.unique(lower)[-3:]:
        assert w[scores > candidate].sum() / total > fraction + 1e-12


def test_no_warning_when_the_share_is_kept_up_to_the_rounding_of_the_sums():
    # The real case: train's calibration of a run warned "saturated" when the voxel volumes' sums left the share
    # above the threshold 1e-13 over the fraction. Here the top voxel weighs 1e-10 more than the others: it alone
    # lies above the threshold, 0.1% of the volume up to the rounding of the sums.
    scores = np.linspace(0, 0.9, 1000)
    weights = np.ones(1000)
    weights[-1] += 1e-10
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = healthy_threshold(scores, 0.001, weights=weights)
    assert result.threshold == scores[-2] and result.achieved == pytest.approx(0.001, rel=1e-9)


def test_healthy_threshold_gives_models_of_other_scales_the_same_false_positive_share():
    rng = np.random.default_rng(0)
    healthy = rng.beta(2, 8, 100_000)
    calibrated = [healthy_threshold(scale(healthy), 0.01) for scale in (lambda x: x, np.sqrt, lambda x: x**2)]
    assert [round(c.achieved, 4) for c in calibrated] == [0.01] * 3


@pytest.mark.parametrize("scores, kwargs, named", [
    (np.zeros(0), {}, "empty"), ([], {}, "empty"), (np.array([0.5, np.nan]), {}, "NaN"),
    (np.array([1.5]), {}, r"\[0, 1\]"), (np.array([0.5]), {"false_positive_fraction": 0.0}, "fraction"),
    (np.array([0.5]), {"false_positive_fraction": 1.0}, "fraction"),
    (np.array([0.5, 0.6]), {"weights": np.array([1.0])}, "weights"),
    (np.array([0.5, 0.6]), {"weights": np.array([1.0, -1.0])}, "weights"),
])
def test_healthy_threshold_refuses_bad_input(scores, kwargs, named):
    settings = {"false_positive_fraction": 0.01, **kwargs}
    with pytest.raises(ValueError, match=named):
        healthy_threshold(scores, **settings)


def test_smoothing_across_slices_keeps_a_lesion_across_slices_and_fades_a_one_slice_speck():
    p = np.zeros((4, 12, 12), np.float32)
    p[1, 2, 2] = 0.9                  # one slice
    p[:, 8:10, 8:10] = 0.9            # every slice
    q = smooth_across_slices(p, axis=0, sigma_mm=2.0, spacing=(1.6, 0.8, 0.8))
    assert q[1, 2, 2] < 0.4 and np.allclose(q[:, 8:10, 8:10], 0.9)
    assert np.array_equal(smooth_across_slices(p, 0, 0.0, (1.6, 0.8, 0.8)), p)
    # only along the slice axis: a speck spread in-plane is untouched
    assert q[1, 2, 3] == 0 and q[0, 2, 2] > 0
    # thick slices share little
    thick = smooth_across_slices(p, axis=0, sigma_mm=2.0, spacing=(5.0, 0.8, 0.8))
    assert thick[1, 2, 2] > 0.8


@given(maps(), st.floats(0, 5), spacings, st.integers(0, 2))
def test_smoothing_stays_in_zero_one_and_keeps_the_shape(p, sigma, spacing, axis):
    q = smooth_across_slices(p, axis, sigma, spacing)
    assert q.shape == p.shape and q.dtype == np.float32 and q.min() >= 0 and q.max() <= 1 + 1e-6


@pytest.mark.parametrize("kwargs, named", [
    ({"sigma_mm": -1.0}, "sigma_mm"), ({"sigma_mm": math.nan}, "sigma_mm"), ({"axis": 3}, "axis"),
    ({"spacing": (1.0, 1.0)}, "spacing"),
])
def test_smoothing_refuses_bad_settings(kwargs, named):
    settings = {"axis": 0, "sigma_mm": 2.0, "spacing": (1.0, 1.0, 1.0), **kwargs}
    with pytest.raises(ValueError, match=named):
        smooth_across_slices(np.zeros((2, 4, 4), np.float32), **settings)
