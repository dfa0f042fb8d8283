"""RandomPseudoAnomaly inside Kornia: gate, mask key, replay, seeding, foreground, direct calls, bad arguments."""

from __future__ import annotations

import math

import kornia.augmentation as K
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pseudoanomaly import PseudoAnomaly
from pseudoanomaly.integrations.kornia import RandomPseudoAnomaly
from pseudoanomaly.masks import BlurredNoiseMask

SIZE = 32


def _synthesis() -> PseudoAnomaly:
    # rejection: no chosen sample may come back with an empty anomaly
    return PseudoAnomaly(mask=BlurredNoiseMask(rejection=True))


def _images(b: int, c: int = 1, seed: int = 0, device="cpu") -> torch.Tensor:
    # inside [0.25, 0.75]: a shift of at least 60/255 changes every masked pixel, even after clipping
    g = torch.Generator().manual_seed(seed)
    return (0.25 + 0.5 * torch.rand(b, c, SIZE, SIZE, generator=g)).to(device)


def _pipeline(**kwargs) -> K.AugmentationSequential:
    aug = RandomPseudoAnomaly(_synthesis(), **kwargs)
    return K.AugmentationSequential(aug, K.RandomHorizontalFlip(p=1.0), data_keys=["input", "mask"])


def _changed(out: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    return (out != reference).any(dim=1, keepdim=True)  # (B, 1, H, W)


def test_mask_marks_exactly_the_changed_pixels_and_follows_the_flip(device):
    images, zeros = _images(4, device=device), torch.zeros(4, 1, SIZE, SIZE, device=device)
    torch.manual_seed(0)
    out, masks = _pipeline()(images, zeros)
    assert out.shape == images.shape and masks.shape == zeros.shape and out.device == images.device
    assert bool(((masks == 0) | (masks == 1)).all())
    assert torch.equal(masks.bool(), _changed(out, images.flip(-1)))
    assert bool(masks.flatten(1).any(dim=1).all()), "p=1 with rejection: every sample gets an anomaly"


@settings(max_examples=12)
@given(
    p=st.sampled_from([0.0, 0.4, 1.0]),
    same_on_batch=st.booleans(),
    batch=st.integers(1, 4),
    seed=st.integers(0, 2**31 - 1),
)
def test_gate_and_mask_union(p, same_on_batch, batch, seed):
    images = _images(batch, seed=seed)
    incoming = (torch.rand(batch, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)) > 0.9).float()
    seq = _pipeline(p=p, same_on_batch=same_on_batch)
    torch.manual_seed(seed)
    out, masks = seq(images, incoming)
    chosen = seq[0]._params["batch_prob"] > 0.5
    if same_on_batch:
        assert bool((chosen == chosen[0]).all()), "same_on_batch gates the whole batch together"
    changed = _changed(out, images.flip(-1))
    assert torch.equal(changed.flatten(1).any(dim=1), chosen), "exactly the chosen samples change"
    assert torch.equal(masks, torch.maximum(incoming.flip(-1), changed.float())), "mask = incoming OR anomaly"


def test_p0_is_the_identity_and_keeps_the_incoming_mask():
    images = _images(3)
    incoming = torch.rand(3, 1, SIZE, SIZE) > 0.5
    out, masks = K.AugmentationSequential(RandomPseudoAnomaly(_synthesis(), p=0.0), data_keys=["input", "mask"])(
        images, incoming
    )
    assert torch.equal(out, images)
    assert masks.dtype == torch.bool and torch.equal(masks, incoming)


def test_same_on_batch_gives_one_anomaly_for_identical_images():
    images = _images(1).expand(4, -1, -1, -1).clone()
    out, masks = _pipeline(same_on_batch=True)(images, torch.zeros(4, 1, SIZE, SIZE))
    assert masks[0].any()
    assert all(torch.equal(masks[0], masks[i]) and torch.equal(out[0], out[i]) for i in range(1, 4))
    out, masks = _pipeline()(images, torch.zeros(4, 1, SIZE, SIZE))
    assert not all(torch.equal(masks[0], masks[i]) for i in range(1, 4)), "without it, one draw per sample"


@pytest.mark.parametrize("p", [0.5, 1.0])
def test_replay_reproduces_bit_identically(device, p):
    images, incoming = _images(4, device=device), torch.zeros(4, 1, SIZE, SIZE, device=device)
    seq = _pipeline(p=p)
    out, masks = seq(images, incoming)
    params = seq._params
    seq(images, incoming)  # another draw in between
    again, masks_again = seq(images, incoming, params=params)
    assert torch.equal(again, out) and torch.equal(masks_again, masks)
    # the masks alone, right after their images
    assert torch.equal(seq(incoming, data_keys=["mask"], params=params), masks)
    # a direct call replays too
    aug = RandomPseudoAnomaly(_synthesis(), p=p)
    out = aug(images)
    assert torch.equal(aug(images, params=aug._params), out)


def test_manual_seed_reproduces():
    images, zeros = _images(3), torch.zeros(3, 1, SIZE, SIZE)
    seq = _pipeline(p=0.7)
    runs = []
    for seed in (5, 5, 6):
        torch.manual_seed(seed)
        runs.append(seq(images, zeros))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    assert not torch.equal(runs[0][0], runs[2][0])


def test_foreground_threshold_keeps_anomalies_inside():
    images = _images(4, c=2)
    images[:, :, :, : SIZE // 2] = 0  # left half background in both channels
    images[:, 0, SIZE // 2 :, :] = 0  # bottom rows: foreground in channel 1 only (channel maximum counts)
    out, masks = K.AugmentationSequential(
        RandomPseudoAnomaly(_synthesis(), foreground_threshold=0.0), data_keys=["input", "mask"]
    )(images, torch.zeros(4, 1, SIZE, SIZE))
    foreground = images.amax(dim=1, keepdim=True) > 0
    assert bool(masks.flatten(1).any(dim=1).all())
    assert not masks.bool()[~foreground].any()
    assert torch.equal(masks.bool(), _changed(out, images))


def test_empty_foreground_sample_is_left_normal_with_a_warning():
    images = _images(2)
    images[1] = 0
    aug = RandomPseudoAnomaly(_synthesis(), foreground_threshold=0.0)
    with pytest.warns(RuntimeWarning, match=r"sample\(s\) \[1\]"):
        out = aug(images)
    assert torch.equal(out[1], images[1]) and not torch.equal(out[0], images[0])


def test_direct_call_keepdim_and_mask_target():
    images = _images(2)
    before = images.clone()
    aug = RandomPseudoAnomaly(_synthesis())
    out = aug(images)
    assert out.shape == images.shape and torch.equal(images, before), "the input is not modified"
    target = aug.transform_masks(torch.zeros(2, 1, SIZE, SIZE), params=aug._params, flags=aug.flags)
    assert torch.equal(target.bool(), _changed(out, images))
    assert RandomPseudoAnomaly(_synthesis())(images[0]).shape == (1, 1, SIZE, SIZE)
    assert RandomPseudoAnomaly(_synthesis(), keepdim=True)(images[0]).shape == (1, SIZE, SIZE)
    out64 = aug(images.double())
    assert out64.dtype == torch.float64


def test_mask_pass_without_its_image_pass_raises():
    seq = _pipeline()
    images, zeros = _images(2), torch.zeros(2, 1, SIZE, SIZE)
    seq(images, zeros)
    old = seq._params
    seq(images, zeros)
    with pytest.raises(RuntimeError, match="no image pass"):
        seq(zeros, data_keys=["mask"], params=old)


@pytest.mark.parametrize(
    ("kwargs", "error", "named"),
    [
        ({"synthesis": BlurredNoiseMask()}, TypeError, "BlurredNoiseMask"),
        ({"synthesis": PseudoAnomaly(p=0.5)}, ValueError, "0.5"),
        ({"p": 1.5}, ValueError, "1.5"),
        ({"p": "half"}, ValueError, "'half'"),
        ({"foreground_threshold": math.nan}, ValueError, "nan"),
        ({"foreground_threshold": "0"}, ValueError, "'0'"),
    ],
)
def test_bad_arguments_raise_naming_the_value(kwargs, error, named):
    with pytest.raises(error, match=named):
        RandomPseudoAnomaly(**kwargs)


def test_params_without_a_seed_raise():
    with pytest.raises(ValueError, match="seed"):
        RandomPseudoAnomaly()(_images(1), params={"batch_prob": torch.ones(1)})


def test_a_volume_batch_is_refused_with_the_reason_and_the_alternatives():
    with pytest.raises(ValueError, match=r"got a volume batch \(2, 1, 8, 16, 16\).*cannot carry 3-D masks.*monai"):
        RandomPseudoAnomaly()(torch.rand(2, 1, 8, 16, 16))
