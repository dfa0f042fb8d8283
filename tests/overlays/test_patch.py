import re

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transform_contract import check_overlay_contract

from pseudoanomaly.overlays.patch import PatchBlend

fixture_ok = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
seeds = st.integers(0, 2**31 - 1)


def _batch(b, c, h, w, device, seed):
    g = torch.Generator(device=device).manual_seed(seed)
    images = torch.rand(b, c, h, w, generator=g, device=device)
    masks = (torch.rand(b, 1, h, w, generator=g, device=device) < 0.4).float()
    return images, masks


def _expected(images, params):
    # independent of the implementation: index the source, then torch.roll it by the offset
    b = images.shape[0]
    source = (torch.arange(b, device=images.device) + params["step"]) % b
    offsets = params["offset"].tolist()
    patch = torch.stack([torch.roll(images[s], tuple(o), dims=(1, 2)) for s, o in zip(source, offsets)])
    alpha = params["alpha"].view(b, 1, 1, 1)
    return ((1 - alpha) * images + alpha * patch).clamp(0, 1), source


@pytest.mark.parametrize(
    "overlay",
    [PatchBlend(), PatchBlend(source="self"), PatchBlend(alpha=(1.0, 1.0), value_range=(-1.0, 1.0))],
    ids=["other", "self", "paste"],
)
def test_keeps_the_contract(overlay, device):
    check_overlay_contract(overlay, device)


def test_defaults_and_repr():
    blend = PatchBlend()
    assert (blend.source, blend.alpha, blend.shift) == ("other", (0.0, 1.0), (0.1, 0.5))
    assert repr(blend) == "PatchBlend(source='other', alpha=(0.0, 1.0))"


@fixture_ok
@given(
    seed=seeds,
    source=st.sampled_from(["other", "self"]),
    shape=st.tuples(st.integers(1, 5), st.integers(1, 3), st.integers(4, 20), st.integers(4, 20)),
)
def test_masked_pixels_follow_the_formula(device, seed, source, shape):
    images, masks = _batch(*shape, device, seed)
    blend = PatchBlend(source=source)
    out = blend(images, masks, generator=torch.Generator(device=device).manual_seed(seed))
    expected, _ = _expected(images, blend.last_params)
    inside = masks.bool().expand_as(images)
    torch.testing.assert_close(out[inside], expected[inside], rtol=0, atol=1e-6)
    assert torch.equal(out[~inside], images[~inside])


@fixture_ok
@given(seed=seeds, b=st.integers(2, 8))
def test_other_copies_another_sample_exactly_with_alpha_one(device, seed, b):
    images, masks = _batch(b, 2, 12, 10, device, seed)
    blend = PatchBlend(alpha=(1.0, 1.0))
    out = blend(images, masks, generator=torch.Generator(device=device).manual_seed(seed))
    _, source = _expected(images, blend.last_params)
    assert (source != torch.arange(b, device=device)).all(), "a sample must never be its own source"
    assert not blend.last_params["offset"].any(), "another sample is read at the same location"
    inside = masks.bool().expand_as(images)
    assert torch.equal(out[inside], images[source][inside])


@fixture_ok
@given(seed=seeds, b=st.integers(1, 4))
def test_self_pastes_shifted_content_of_the_same_image(device, seed, b):
    h, w = 32, 24
    images, masks = _batch(b, 1, h, w, device, seed)
    blend = PatchBlend(source="self", alpha=(1.0, 1.0), shift=(0.2, 0.4))
    out = blend(images, masks, generator=torch.Generator(device=device).manual_seed(seed))
    params = blend.last_params
    assert not params["step"].any()
    offset = params["offset"].float()
    length = torch.hypot(offset[:, 0] / h, offset[:, 1] / w)
    assert (length > 0.2 - 1 / w).all() and (length < 0.4 + 1 / w).all()  # up to the rounding to pixels
    for i in range(b):
        rolled = torch.roll(images[i], tuple(params["offset"][i].tolist()), dims=(1, 2))
        inside = masks[i].bool()
        assert torch.equal(out[i][inside], rolled[inside])


def test_other_falls_back_to_self_for_a_single_image(device):
    images, masks = _batch(1, 1, 32, 32, device, 0)
    blend = PatchBlend(alpha=(1.0, 1.0))
    out = blend(images, masks, generator=torch.Generator(device=device).manual_seed(0))
    assert blend.last_params["step"].item() == 0 and blend.last_params["offset"].abs().sum() > 0
    assert not torch.equal(out, images)


def test_same_on_batch_shares_alpha_and_offset(device):
    images, masks = _batch(4, 1, 16, 16, device, 2)
    blend = PatchBlend(same_on_batch=True)
    blend(images, masks, generator=torch.Generator(device=device).manual_seed(2))
    params = blend.last_params
    assert (params["alpha"] == params["alpha"][0]).all() and (params["offset"] == params["offset"][0]).all()


def test_images_outside_the_value_range_are_refused_not_clipped(device):
    # Painting them used to clip the output to the range silently (0.9 became 0.5): a meaningless anomaly.
    images = torch.full((2, 1, 8, 8), 0.9, device=device)
    masks = torch.ones(2, 1, 8, 8, device=device)
    with pytest.raises(ValueError, match=r"\[0.9, 0.9\], outside value_range=\(0, 0.5\)"):
        PatchBlend(value_range=(0.0, 0.5))(images, masks, generator=torch.Generator(device=device).manual_seed(0))
    out = PatchBlend(value_range=(0.0, 0.5))(images / 2, masks, generator=torch.Generator(device=device).manual_seed(0))
    assert out.max() <= 0.5


@pytest.mark.parametrize(
    ("kwargs", "value"),
    [
        ({"source": "another"}, "'another'"),
        ({"alpha": (0.8, 0.2)}, "(0.8, 0.2)"),
        ({"alpha": (-0.1, 1.0)}, "(-0.1, 1.0)"),
        ({"alpha": (0.0, 2.0)}, "(0.0, 2.0)"),
        ({"shift": (0.5, 0.1)}, "(0.5, 0.1)"),
        ({"shift": (0.1, 1.5)}, "(0.1, 1.5)"),
        ({"value_range": (1.0, 0.0)}, "(1.0, 0.0)"),
    ],
)
def test_bad_arguments_are_named(kwargs, value):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=f"{name}.*{re.escape(value)}"):
        PatchBlend(**kwargs)


def test_bad_inputs_raise(device):
    blend = PatchBlend()
    images, masks = _batch(2, 1, 8, 8, device, 0)
    with pytest.raises(TypeError, match="ndarray"):
        blend(np.zeros((2, 1, 8, 8)), masks)
    with pytest.raises(TypeError, match="int64"):
        blend(images.long(), masks)
    with pytest.raises(ValueError, match=re.escape("(2, 1, 4, 8)")):
        blend(images, masks[:, :, :4])
    with pytest.raises(ValueError, match="masks must contain only 0 and 1"):
        blend(images, masks * 0.5)
