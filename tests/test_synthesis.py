"""PseudoAnomaly and the presets: gating, replay, determinism, composition."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from pseudoanomaly import OneOf, PseudoAnomaly, presets
from pseudoanomaly.masks import BlurredNoiseMask
from pseudoanomaly.overlays import IntensityShift


def small_synth(p: float = 1.0, **kwargs) -> PseudoAnomaly:
    return PseudoAnomaly(BlurredNoiseMask(sigma=4.0, threshold=0.6, rejection=True), IntensityShift(), p=p, **kwargs)


def test_constructs_with_no_arguments_as_the_paper():
    synth = PseudoAnomaly()
    assert isinstance(synth.mask, BlurredNoiseMask) and isinstance(synth.overlay, IntensityShift)
    assert synth.p == 1.0


def test_p_zero_is_the_identity(device):
    images = torch.rand(4, 1, 32, 32, device=device)
    augmented, masks = small_synth(p=0.0)(images, generator=torch.Generator(device=device).manual_seed(0))
    assert torch.equal(augmented, images)
    assert not bool(masks.any()) and masks.shape == (4, 1, 32, 32) and masks.device == images.device


@given(seed=st.integers(0, 2**31 - 1), p=st.floats(0.0, 1.0))
def test_normal_samples_are_unchanged_and_anomalous_ones_change_only_inside_the_mask(seed, p):
    images = 0.25 + 0.5 * torch.rand(6, 1, 32, 32, generator=torch.Generator().manual_seed(seed))
    synth = small_synth(p=p)
    augmented, masks = synth(images, generator=torch.Generator().manual_seed(seed))
    gate = synth.last_params["applied"]
    for i in range(6):
        if not gate[i]:
            assert torch.equal(augmented[i], images[i]) and not bool(masks[i].any())
        else:
            changed = augmented[i] != images[i]
            assert bool(masks[i].any())
            assert torch.equal(changed, masks[i].bool()), "exactly the masked pixels change"


def test_p_is_the_per_sample_probability():
    synth = PseudoAnomaly(BlurredNoiseMask(sigma=2.0, kernel_size=1), IntensityShift(), p=0.3)
    synth(torch.rand(2000, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    rate = float(synth.last_params["applied"].float().mean())
    assert 0.27 < rate < 0.33


def test_seeded_runs_are_bit_identical_and_replay_reproduces(device):
    images = torch.rand(5, 1, 48, 48, device=device)
    fg = torch.zeros(5, 1, 48, 48, dtype=torch.bool, device=device)
    fg[:, :, 8:40, 8:40] = True
    synth = small_synth(p=0.6)
    a = synth(images, fg, generator=torch.Generator(device=device).manual_seed(11))
    params = synth.last_params
    b = synth(images, fg, generator=torch.Generator(device=device).manual_seed(11))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c = synth(images, fg, params=params)
    assert torch.equal(a[0], c[0]) and torch.equal(a[1], c[1])
    assert not bool(a[1][~fg].any())


def test_same_on_batch_gates_everything_together():
    synth = small_synth(p=0.5, same_on_batch=True)
    for seed in range(6):
        synth(torch.rand(4, 1, 16, 16), generator=torch.Generator().manual_seed(seed))
        gate = synth.last_params["applied"]
        assert bool(gate.all()) or not bool(gate.any())


def test_the_input_is_never_modified():
    images = torch.rand(3, 2, 32, 32)
    before = images.clone()
    small_synth()(images)
    assert torch.equal(images, before)


def test_zhang2023_preset_is_the_released_configuration():
    synth = presets.zhang2023()
    assert synth.mask.sigma == 15.0 and synth.mask.kernel_size == 9
    assert synth.mask.threshold == pytest.approx(200 / 255)
    assert synth.overlay.magnitude == pytest.approx((60 / 255, 100 / 255))
    assert synth.overlay.direction == "random"
    assert presets.zhang2023(cutout=True).overlay.direction == "darken"


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="p must be in"):
        PseudoAnomaly(p=1.5)
    with pytest.raises(TypeError, match="mask must be"):
        PseudoAnomaly(mask=IntensityShift())
    with pytest.raises(TypeError, match="overlay must be"):
        PseudoAnomaly(overlay=BlurredNoiseMask())
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        small_synth()(torch.rand(1, 1, 8, 8), generator=0)
    with pytest.raises(ValueError, match=r"foreground must have shape"):
        small_synth()(torch.rand(2, 1, 8, 8), torch.ones(1, 1, 8, 8))


def test_draem_preset_is_the_released_configuration():
    from pseudoanomaly.masks import PerlinMask
    from pseudoanomaly.overlays import TextureBlend

    synth = presets.draem()
    assert isinstance(synth.mask, PerlinMask) and isinstance(synth.overlay, TextureBlend)
    assert synth.p == 0.5  # DRAEM leaves half of the training samples normal
    assert synth.mask.threshold == 0.5 and synth.mask.scale_exponents == (0, 5)
    assert synth.overlay.beta == pytest.approx((0.0, 0.8))
    bank = torch.rand(3, 1, 40, 40)
    images = torch.rand(4, 1, 32, 32)
    augmented, masks = presets.draem(p=1.0, textures=bank)(images, generator=torch.Generator().manual_seed(0))
    assert augmented.shape == images.shape and bool(masks.any())


def test_every_public_transform_constructs_with_no_arguments():
    from pseudoanomaly import masks, overlays
    from pseudoanomaly.integrations.kornia import RandomPseudoAnomaly

    images = torch.rand(2, 1, 32, 32)
    for cls in (masks.BlurredNoiseMask, masks.PerlinMask, masks.BlobMask):
        assert cls()(images).shape == (2, 1, 32, 32)
    full = torch.ones(2, 1, 32, 32)
    for cls in (overlays.IntensityShift, overlays.TextureBlend, overlays.PatchBlend):
        assert cls()(images, full).shape == images.shape
    assert PseudoAnomaly()(images)[0].shape == images.shape
    assert RandomPseudoAnomaly()(images).shape == images.shape


# ------------------------------------------------------------------------------------------------ OneOf


def two_families() -> OneOf:
    from pseudoanomaly.masks import BlobMask

    return OneOf([small_synth(), PseudoAnomaly(BlobMask(rejection=True), IntensityShift(direction="darken"))])


@given(seed=st.integers(0, 2**31 - 1))
def test_one_of_anomalies_stay_in_the_foreground_and_pixels_outside_them_are_untouched(seed):
    g = torch.Generator().manual_seed(seed)
    images = 0.25 + 0.5 * torch.rand(6, 1, 48, 48, generator=g)
    foreground = torch.zeros(6, 1, 48, 48, dtype=torch.bool)
    foreground[..., 8:40, 10:44] = True
    synth = two_families()
    augmented, masks = synth(images, foreground, generator=torch.Generator().manual_seed(seed))
    assert masks.shape == (6, 1, 48, 48) and set(masks.unique().tolist()) <= {0.0, 1.0}
    assert not bool(masks[~foreground].any())
    outside = (masks == 0).expand_as(images)
    assert torch.equal(augmented[outside], images[outside])
    assert bool(masks.flatten(1).any(1).all())  # both options reject empty masks: every sample anomalous


def test_one_of_is_seeded_and_replays_bit_identically():
    images = torch.rand(8, 1, 32, 32)
    synth = two_families()
    a, m = synth(images, generator=torch.Generator().manual_seed(3))
    b, n = synth(images, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and torch.equal(m, n)
    c, o = synth(images, params=synth.last_params)
    assert torch.equal(a, c) and torch.equal(m, o)
    d, _ = synth(images, generator=torch.Generator().manual_seed(4))
    assert not torch.equal(a, d)


def test_one_of_uses_each_option_on_the_samples_that_chose_it():
    images = torch.rand(16, 1, 32, 32)
    synth = two_families()
    augmented, _ = synth(images, generator=torch.Generator().manual_seed(0))
    choice = synth.last_params["choice"]
    assert set(choice.tolist()) == {0, 1}  # 16 draws at equal weights: both options occur for this seed
    darkened = (augmented <= images).flatten(1).all(1)
    assert bool(darkened[choice == 1].all())  # option 1 only darkens


def test_one_of_with_a_zero_weight_is_the_other_option_alone():
    images = torch.rand(4, 1, 32, 32)
    only_first = OneOf([small_synth(), small_synth(p=0.0)], weights=[1.0, 0.0])
    out, masks = only_first(images, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    torch.rand(4, generator=g)  # the choice draw
    expected, expected_masks = small_synth()(images, generator=g)
    assert torch.equal(out, expected) and torch.equal(masks, expected_masks)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"syntheses": [PseudoAnomaly()]}, "at least 2"),
        ({"syntheses": [PseudoAnomaly(), 3]}, r"syntheses\[1\]"),
        ({"syntheses": [PseudoAnomaly(), PseudoAnomaly()], "weights": [1.0]}, "one value per synthesis"),
        ({"syntheses": [PseudoAnomaly(), PseudoAnomaly()], "weights": [1.0, -1.0]}, r"\[1.0, -1.0\]"),
        ({"syntheses": [PseudoAnomaly(), PseudoAnomaly()], "weights": [0.0, 0.0]}, "positive sum"),
    ],
)
def test_one_of_refuses_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        OneOf(**kwargs)


def test_one_of_replay_on_another_batch_size_is_refused():
    synth = two_families()
    synth(torch.rand(4, 1, 32, 32), generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="replay"):
        synth(torch.rand(3, 1, 32, 32), params=synth.last_params)


def test_one_of_refuses_to_replay_an_option_that_keeps_no_parameters():
    def darken(images, foreground=None, generator=None, params=None):  # a plain function: nothing to replay
        masks = torch.ones_like(images[:, :1])
        return images * 0.5, masks

    synth = OneOf([darken, darken])
    synth(torch.rand(4, 1, 16, 16), generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="cannot replay option"):
        synth(torch.rand(4, 1, 16, 16), params=synth.last_params)


def test_every_submodule_is_reachable_after_import_pseudoanomaly():
    import subprocess
    import sys

    code = ("import pseudoanomaly, sys; assert 'pseudoanomaly.lesions' not in sys.modules; "
            "assert not [m for m in sys.modules if m.startswith('pseudoanomaly.integrations')]; "
            "print(pseudoanomaly.integrations.kornia.RandomPseudoAnomaly.__name__, "
            "pseudoanomaly.lesions.LesionSynthesis.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["RandomPseudoAnomaly", "LesionSynthesis"]
    import pseudoanomaly

    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        pseudoanomaly.nothing  # noqa: B018
