import math
import re

import cv2
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transform_contract import check_mask_contract

from pseudoanomaly.masks.blob import BlobMask

# the device fixture is read-only, so reusing it across Hypothesis examples is safe
fixture_ok = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
seeds = st.integers(0, 2**31 - 1)


def _masks(gen, b, h, w, device, seed, fg=None):
    images = torch.zeros(b, 1, h, w, device=device)
    return gen(images, fg, generator=torch.Generator(device=device).manual_seed(seed))


@pytest.mark.parametrize(
    "gen",
    [BlobMask(), BlobMask(count=(2, 4), irregularity=0.5, union=2), BlobMask(same_on_batch=True, rejection=True)],
    ids=["default", "union", "same_on_batch"],
)
def test_keeps_the_contract(gen, device):
    check_mask_contract(gen, device)


def test_defaults_and_repr():
    gen = BlobMask()
    assert (gen.count, gen.radius, gen.irregularity, gen.harmonics) == ((1, 3), (0.03, 0.12), 0.15, 5)
    assert "count=(1, 3)" in repr(gen) and "irregularity=0.15" in repr(gen)


@fixture_ok
@given(seed=seeds, box=st.tuples(st.integers(0, 20), st.integers(8, 28), st.integers(0, 30), st.integers(8, 30)))
def test_inside_a_foreground_and_never_empty(device, seed, box):
    y0, dy, x0, dx = box
    fg = torch.zeros(3, 1, 48, 64, dtype=torch.bool, device=device)
    fg[:, :, y0 : y0 + dy, x0 : x0 + dx] = True
    gen = BlobMask(count=(1, 4))
    masks = _masks(gen, 3, 48, 64, device, seed, fg)
    assert not masks[~fg].any()
    assert masks.flatten(1).sum(dim=1).min() > 0  # each centre is a foreground pixel and inside its blob
    centers = gen.last_params["center"].long()  # (B, union, slots, 2)
    assert fg[0, 0][centers[..., 0], centers[..., 1]].all()


def test_single_pixel_foreground_gives_that_pixel(device):
    fg = torch.zeros(4, 1, 16, 16, dtype=torch.bool, device=device)
    fg[torch.arange(4), 0, torch.tensor([0, 3, 9, 15]), torch.tensor([15, 7, 0, 2])] = True
    masks = _masks(BlobMask(), 4, 16, 16, device, 0, fg)
    assert torch.equal(masks.bool(), fg)


@fixture_ok
@given(seed=seeds)
def test_exact_ellipse_area_without_irregularity(device, seed):
    gen = BlobMask(count=1, radius=(0.08, 0.16), irregularity=0.0)
    images = torch.zeros(8, 1, 160, 160, device=device)
    gen(images, generator=torch.Generator(device=device).manual_seed(seed))
    params = gen.last_params
    params["center"].fill_(80.0)  # replayed at the image centre, so no ellipse is cut by the border
    masks = gen(images, params=params)
    a, b = params["axes"][:, 0, 0].unbind(-1)  # one blob per mask
    expected = math.pi * a * b
    assert ((masks.flatten(1).sum(dim=1) - expected).abs() / expected).max() < 0.03


@fixture_ok
@given(seed=seeds, count=st.tuples(st.integers(1, 3), st.integers(0, 2)))
def test_at_most_count_connected_pieces(device, seed, count):
    lo, extra = count
    gen = BlobMask(count=(lo, lo + extra))
    masks = _masks(gen, 4, 96, 96, device, seed).cpu().to(torch.uint8).numpy()
    drawn = gen.last_params["valid"].sum(dim=(1, 2)).tolist()
    for mask, n_blobs in zip(masks, drawn):
        pieces = cv2.connectedComponents(np.ascontiguousarray(mask[0]), connectivity=8)[0] - 1
        assert 1 <= pieces <= n_blobs <= lo + extra


@fixture_ok
@given(seed=seeds, irregularity=st.sampled_from([0.0, 0.15, 0.4]))
def test_a_larger_radius_grows_the_same_blobs(device, seed, irregularity):
    # with a fixed radius the draws are identical, so the larger blobs are the smaller ones scaled up
    small = _masks(BlobMask(radius=0.05, irregularity=irregularity), 4, 64, 64, device, seed)
    large = _masks(BlobMask(radius=0.1, irregularity=irregularity), 4, 64, 64, device, seed)
    assert not (small > large).any()
    assert (large.flatten(1).sum(1) > small.flatten(1).sum(1)).all()


def test_irregularity_only_changes_the_outline(device):
    ellipse, blob = BlobMask(irregularity=0.0), BlobMask(irregularity=0.3)
    m0 = _masks(ellipse, 6, 64, 64, device, 3)
    m1 = _masks(blob, 6, 64, 64, device, 3)
    for name in ("center", "axes", "angle", "valid"):
        assert torch.equal(ellipse.last_params[name], blob.last_params[name])
    assert not torch.equal(m0, m1)
    assert not ellipse.last_params["outline"].any()


def test_same_on_batch_gives_one_mask(device):
    masks = _masks(BlobMask(same_on_batch=True), 5, 32, 32, device, 1)
    assert (masks == masks[:1]).all()


@pytest.mark.parametrize(
    ("kwargs", "value"),
    [
        ({"count": 0}, "0"),
        ({"count": (3, 1)}, "(3, 1)"),
        ({"count": (1, 2.5)}, "2.5"),
        ({"count": "3"}, "'3'"),
        ({"radius": (0.2, 0.1)}, "(0.2, 0.1)"),
        ({"radius": (0.0, 0.1)}, "(0.0, 0.1)"),
        ({"radius": (0.1, 1.5)}, "(0.1, 1.5)"),
        ({"irregularity": -0.1}, "-0.1"),
        ({"irregularity": 2.0}, "2.0"),
        ({"irregularity": float("nan")}, "nan"),
        ({"harmonics": 1}, "1"),
        ({"union": 0}, "0"),
    ],
)
def test_bad_arguments_are_named(kwargs, value):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=f"{name}.*{re.escape(value)}"):
        BlobMask(**kwargs)


def test_bad_inputs_raise(device):
    gen = BlobMask()
    with pytest.raises(TypeError, match="foreground"):
        gen(torch.zeros(2, 1, 8, 8, device=device), foreground=np.ones((2, 1, 8, 8)))
    with pytest.raises(ValueError, match=re.escape("(2, 1, 4, 8)")):
        gen(torch.zeros(2, 1, 8, 8, device=device), foreground=torch.ones(2, 1, 4, 8, device=device))


@fixture_ok
@given(seed=seeds, irregularity=st.sampled_from([0.0, 0.15, 0.6]), shape=st.sampled_from([(40, 72), (96, 96)]),
       shift=st.floats(-30, 30))
def test_windowed_rendering_equals_the_whole_grid(device, seed, irregularity, shape, shift):
    # Rendering evaluates each blob on a window around its centre; it must give exactly the whole-grid masks,
    # also for blobs cut by the border and replayed centres off the pixel grid or off the frame.
    from pseudoanomaly.masks.blob import _render

    gen = BlobMask(count=(1, 4), radius=(0.05, 0.2), irregularity=irregularity)
    h, w = shape
    _masks(gen, 6, h, w, device, seed)
    params = {name: p.flatten(0, 1) for name, p in gen.last_params.items() if name != "accepted"}
    params["center"] = params["center"] + shift * torch.tensor([1.0, -0.7], device=device)
    windowed, whole = _render(params, h, w, windowed=True), _render(params, h, w, windowed=False)
    assert whole.any()
    assert torch.equal(windowed, whole)
