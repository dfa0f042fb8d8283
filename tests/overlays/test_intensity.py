"""IntensityShift: the paper's overlay."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from transform_contract import check_overlay_contract

from pseudoanomaly.overlays import IntensityShift


def test_contract(device):
    check_overlay_contract(IntensityShift(), device)
    check_overlay_contract(IntensityShift(distribution="gaussian", value_range=(-1.0, 2.0)), device)


def box_masks(b: int, h: int = 16, w: int = 16) -> torch.Tensor:
    m = torch.zeros(b, 1, h, w)
    m[:, :, 4:12, 4:12] = 1
    return m


@given(seed=st.integers(0, 2**31 - 1), direction=st.sampled_from(["random", "darken", "brighten"]))
def test_shift_is_one_in_range_constant_per_image(seed, direction):
    images = torch.full((8, 1, 16, 16), 0.5)  # mid-grey: no clipping for shifts up to 0.5
    shift = IntensityShift(direction=direction)
    out = shift(images, box_masks(8), generator=torch.Generator().manual_seed(seed))
    delta = (out - images)[:, 0, 4:12, 4:12].flatten(1)
    assert torch.allclose(delta, delta[:, :1].expand_as(delta)), "one constant per image"
    size = delta[:, 0].abs()
    assert bool(((size >= 60 / 255 - 1e-6) & (size <= 100 / 255 + 1e-6)).all())
    if direction == "darken":
        assert bool((delta < 0).all())
    if direction == "brighten":
        assert bool((delta > 0).all())


def test_random_direction_uses_both_signs_about_equally():
    shift = IntensityShift()
    out = shift(torch.full((2000, 1, 2, 2), 0.5), torch.ones(2000, 1, 2, 2), generator=torch.Generator().manual_seed(0))
    darker = float((out[:, 0, 0, 0] < 0.5).float().mean())
    assert 0.45 < darker < 0.55


def test_gaussian_distribution_stays_in_range_and_peaks_in_the_middle():
    shift = IntensityShift(distribution="gaussian", direction="brighten")
    n = 4000
    out = shift(torch.zeros(n, 1, 1, 1), torch.ones(n, 1, 1, 1), generator=torch.Generator().manual_seed(0))
    c = out.flatten() * 255
    assert bool(((c >= 60 - 1e-3) & (c <= 100 + 1e-3)).all())
    middle = float(((c > 70) & (c < 90)).float().mean())
    assert middle > 0.6  # a uniform draw would put 50% there


def test_output_is_clipped_to_the_value_range():
    shift = IntensityShift(direction="brighten")
    out = shift(torch.full((4, 1, 8, 8), 0.95), box_masks(4, 8, 8), generator=torch.Generator().manual_seed(0))
    assert float(out.max()) == 1.0
    hu = IntensityShift(direction="darken", value_range=(-200.0, 250.0))
    out = hu(torch.full((4, 1, 8, 8), -150.0), box_masks(4, 8, 8), generator=torch.Generator().manual_seed(0))
    assert float(out.min()) == -200.0  # |C| >= 60/255 * 450 HU = 106 HU


def test_magnitude_is_relative_to_the_value_range():
    shift = IntensityShift(magnitude=(0.1, 0.1), direction="brighten", value_range=(0.0, 10.0))
    out = shift(torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2))
    assert torch.allclose(out, torch.ones(1, 1, 2, 2))


def test_masks_must_be_binary_and_match():
    shift = IntensityShift()
    images = torch.rand(2, 1, 8, 8)
    with pytest.raises(ValueError, match="only 0 and 1"):
        shift(images, torch.full((2, 1, 8, 8), 0.5))
    with pytest.raises(ValueError, match=r"masks must have shape .*got \(2, 1, 4, 4\)"):
        shift(images, torch.ones(2, 1, 4, 4))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"magnitude": (0.5, 0.1)}, "magnitude"),
        ({"magnitude": (-0.1, 0.2)}, "magnitude"),
        ({"direction": "up"}, "direction"),
        ({"distribution": "poisson"}, "distribution"),
        ({"value_range": (1.0, 1.0)}, "value_range"),
    ],
)
def test_bad_settings_fail_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        IntensityShift(**kwargs)


@given(
    st.integers(0, 2**31),
    st.sampled_from([(0.0, 1.0), (-1.0, 1.0)]),
    st.sampled_from([torch.float32, torch.float64]),
)
def test_painting_with_float_masks_gives_the_same_bits_as_with_bool_masks(seed, value_range, dtype):
    # PseudoAnomaly hands its float masks to paint, which then adds masks * shift and clips; that must be
    # exactly the fill inside and the image outside, including pixels at the ends of the value range.
    g = torch.Generator().manual_seed(seed)
    lo, hi = value_range
    images = (lo + (hi - lo) * torch.rand(6, 2, 9, 11, generator=g, dtype=dtype))
    images[:, :, 0] = lo
    images[:, :, 1] = hi
    inside = torch.rand(6, 1, 9, 11, generator=g) > 0.5
    overlay = IntensityShift(magnitude=(0.1, 0.9), value_range=value_range)
    plain = overlay.paint(images, inside, torch.Generator().manual_seed(seed))
    fast = overlay.paint(images, inside, torch.Generator().manual_seed(seed), masks=inside.to(dtype))
    assert torch.equal(plain, fast)
    shift = overlay.last_params["shift"].view(-1, 1, 1, 1).to(dtype)
    assert torch.equal(fast, torch.where(inside, (images + shift).clamp(lo, hi), images))
