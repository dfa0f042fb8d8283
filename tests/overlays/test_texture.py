"""TextureBlend: the contract, DRAEM's blend formula, crops of a texture bank, noise textures, argument checks."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transform_contract import check_overlay_contract

from pseudoanomaly.overlays.texture import TextureBlend

seeds = st.integers(0, 2**31 - 1)


def _rand(seed: int, *shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _box_masks(b: int, h: int, w: int) -> torch.Tensor:
    masks = torch.zeros(b, 1, h, w)
    masks[:, :, h // 4 : h // 4 + max(1, h // 2), w // 4 : w // 4 + max(1, w // 2)] = 1
    return masks


# -- the shared contract ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make",
    [
        lambda: TextureBlend(),  # noise textures
        lambda: TextureBlend(textures=_rand(0, 5, 1, 48, 60)),  # larger bank: crops
        lambda: TextureBlend(textures=_rand(1, 3, 1, 20, 24)),  # smaller bank: upscaled, then cropped
        lambda: TextureBlend(textures=_rand(2, 4, 1, 40, 40), same_on_batch=True),
        lambda: TextureBlend(value_range=(-1.0, 1.0)),
    ],
)
def test_keeps_the_contract(device, make):
    overlay = make().to(device)
    check_overlay_contract(overlay, device)


def test_defaults_are_draems():
    blend = TextureBlend()
    assert blend.beta == (0.0, 0.8) and blend.textures is None and blend.texture_transform is None


# -- the blend -------------------------------------------------------------------------------------------
@given(seed=seeds, b=st.integers(1, 4), c=st.sampled_from([1, 3]), h=st.integers(1, 24), w=st.integers(1, 24))
def test_masked_pixels_follow_draems_formula(seed, b, c, h, w):
    # Constant textures make T known: inside the mask, (1 - beta) T + beta I with the drawn beta in [0, 0.8].
    values = torch.tensor([0.1, 0.5, 0.9])
    bank = values.view(3, 1, 1, 1).expand(3, 1, 30, 30).clone()
    blend = TextureBlend(textures=bank)
    images, masks = _rand(seed, b, c, h, w), _box_masks(b, h, w)
    out = blend(images, masks, generator=torch.Generator().manual_seed(seed))
    beta = blend.last_params["beta"].view(b, 1, 1, 1)
    assert bool((beta >= 0).all() and (beta <= 0.8).all())
    texture = values[blend.last_params["index"]].view(b, 1, 1, 1)
    expected = ((1 - beta) * texture + beta * images).clamp(0, 1)
    inside = masks.bool().expand_as(images)
    torch.testing.assert_close(out[inside], expected[inside], atol=1e-6, rtol=0)
    assert torch.equal(out[~inside], images[~inside])


def test_beta_spans_draems_range():
    blend = TextureBlend()
    blend(torch.rand(256, 1, 4, 4), torch.ones(256, 1, 4, 4), generator=torch.Generator().manual_seed(0))
    beta = blend.last_params["beta"]
    assert float(beta.min()) < 0.05 and 0.75 < float(beta.max()) <= 0.8


@settings(max_examples=20)
@given(seed=seeds, b=st.integers(1, 3), h=st.integers(1, 12), w=st.integers(1, 12), extra=st.integers(0, 6))
def test_beta_zero_pastes_crops_of_bank_images(seed, b, h, w, extra):
    # With beta = 0 the masked region is the texture itself; searched over every bank image and offset, it
    # must be one exact crop (without trusting the drawn parameters).
    bank = _rand(seed, 3, 2, h + extra, w + extra + 1)
    blend = TextureBlend(textures=bank, beta=(0.0, 0.0))
    images = _rand(seed + 1, b, 2, h, w)
    out = blend(images, torch.ones(b, 1, h, w), generator=torch.Generator().manual_seed(seed))
    windows = bank.unfold(2, h, 1).unfold(3, w, 1)  # (N, C, oy, ox, h, w)
    windows = windows.permute(0, 2, 3, 1, 4, 5).reshape(-1, 2, h, w)
    for i in range(b):
        assert any(torch.equal(out[i], window) for window in windows)
    p = blend.last_params
    for i in range(b):
        top, left = int(p["top"][i]), int(p["left"][i])
        assert torch.equal(out[i], bank[int(p["index"][i]), :, top : top + h, left : left + w])


def test_crops_land_everywhere_in_the_bank():
    blend = TextureBlend(textures=torch.rand(4, 1, 50, 70))
    blend(torch.rand(400, 1, 20, 30), _box_masks(400, 20, 30), generator=torch.Generator().manual_seed(0))
    p = blend.last_params
    assert set(p["index"].tolist()) == {0, 1, 2, 3}
    assert int(p["top"].min()) == 0 and int(p["top"].max()) == 30 and int(p["left"].max()) == 40


def test_a_smaller_bank_is_upscaled_to_cover_the_image():
    # a (8, 16) ramp along the width, upscaled to cover (40, 60), stays a ramp along the width
    ramp = torch.linspace(0, 1, 16).view(1, 1, 1, 16).expand(2, 1, 8, 16).clone()
    blend = TextureBlend(textures=ramp, beta=(0.0, 0.0))
    out = blend(torch.rand(3, 3, 40, 60), torch.ones(3, 1, 40, 60), generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, 3, 40, 60)
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 0], out[:, 2])  # 1 channel serves 3
    assert bool((out[:, :, :, 1:] >= out[:, :, :, :-1] - 1e-6).all())  # still increasing along the width
    torch.testing.assert_close(out, out[:, :, :1].expand_as(out), atol=1e-6, rtol=0)  # constant down the height


def test_beta_zero_pastes_noise_textures_spanning_the_value_range():
    blend = TextureBlend(beta=(0.0, 0.0), value_range=(-1.0, 2.0))
    images = torch.zeros(4, 3, 24, 32)
    out = blend(images, torch.ones(4, 1, 24, 32), generator=torch.Generator().manual_seed(0))
    flat = out.flatten(1)
    torch.testing.assert_close(flat.min(dim=1).values, torch.full((4,), -1.0))
    torch.testing.assert_close(flat.max(dim=1).values, torch.full((4,), 2.0))
    assert not torch.equal(out[0], out[1]) and not torch.equal(out[:, 0], out[:, 1])  # per sample, per channel


def test_noise_textures_are_seeded_and_vary_in_scale():
    blend = TextureBlend()
    images, masks = torch.rand(16, 1, 16, 16), torch.ones(16, 1, 16, 16)
    a = blend(images, masks, generator=torch.Generator().manual_seed(3))
    assert len(blend.last_params["noise_resolution"].unique()) >= 3  # the coarsest scale is drawn per sample
    b = blend(images, masks, generator=torch.Generator().manual_seed(3))
    c = blend(images, masks, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_texture_transform_is_applied_and_replayed():
    bank = torch.rand(3, 1, 20, 20)
    blend = TextureBlend(textures=bank, beta=(0.0, 0.0), texture_transform=lambda t: 1 - t)
    images, masks = torch.rand(2, 1, 16, 16), torch.ones(2, 1, 16, 16)
    out = blend(images, masks, generator=torch.Generator().manual_seed(0))
    p = blend.last_params
    top, left, k = int(p["top"][0]), int(p["left"][0]), int(p["index"][0])
    torch.testing.assert_close(out[0, 0], 1 - bank[k, 0, top : top + 16, left : left + 16], atol=1e-6, rtol=0)
    # a random transform drawing from torch's global RNG is reproduced exactly by replaying the parameters
    noisy = TextureBlend(texture_transform=lambda t: (t + 0.1 * torch.randn_like(t)).clamp(0, 1))
    first = noisy(images, masks, generator=torch.Generator().manual_seed(0))
    assert torch.equal(noisy(images, masks, params=noisy.last_params), first)


def test_bank_is_a_non_persistent_buffer():
    blend = TextureBlend(textures=torch.rand(2, 1, 8, 8))
    assert "textures" in dict(blend.named_buffers()) and "textures" not in blend.state_dict()
    assert blend.to(torch.float64).textures.dtype == torch.float64


# -- argument checks ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        ({"textures": [[0.5]]}, TypeError, r"textures.*list"),
        ({"textures": torch.ones(2, 1, 8, 8, dtype=torch.uint8)}, TypeError, r"textures.*uint8"),
        ({"textures": torch.rand(1, 8, 8)}, ValueError, r"textures.*\(1, 8, 8\)"),
        ({"textures": torch.rand(0, 1, 8, 8)}, ValueError, r"textures.*\(0, 1, 8, 8\)"),
        ({"textures": torch.full((1, 1, 4, 4), 255.0)}, ValueError, r"textures.*255"),
        ({"textures": torch.full((1, 1, 4, 4), float("nan"))}, ValueError, r"textures.*NaN"),
        ({"beta": (0.9, 0.1)}, ValueError, r"beta.*\(0\.9, 0\.1\)"),
        ({"beta": (0.0, 2.0)}, ValueError, r"beta.*\(0\.0, 2\.0\)"),
        ({"texture_transform": 5}, TypeError, r"texture_transform.*int"),
        ({"value_range": (1.0, 1.0)}, ValueError, r"value_range.*\(1\.0, 1\.0\)"),
    ],
)
def test_bad_arguments_raise_naming_the_value(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        TextureBlend(**kwargs)


def test_channel_mismatch_names_both_counts():
    blend = TextureBlend(textures=torch.rand(2, 2, 8, 8))
    with pytest.raises(ValueError, match=r"2 channels.*3"):
        blend(torch.rand(1, 3, 8, 8), torch.ones(1, 1, 8, 8))


def test_a_transform_changing_the_shape_is_rejected():
    blend = TextureBlend(texture_transform=lambda t: t[:, :, :4])
    with pytest.raises(ValueError, match=r"texture_transform.*\(1, 1, 8, 8\).*\(1, 1, 4, 8\)"):
        blend(torch.rand(1, 1, 8, 8), torch.ones(1, 1, 8, 8))
