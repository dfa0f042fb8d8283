"""One behaviour for samples whose foreground is empty (a slice without liver), wherever a synthesis runs.

``empty_foreground="skip"`` (the default everywhere): the sample is left normal, with an all-zero mask and a
``RuntimeWarning`` naming it; ``"raise"``: the call refuses, naming the sample. The same option with the same
default on ``PseudoAnomaly``, ``OneOf`` and the Kornia, MONAI and TorchIO adapters; the trainers follow their
synthesis, so a training run does not stop on such a slice.
"""

from __future__ import annotations

import pytest
import torch

from pseudoanomaly import OneOf, PseudoAnomaly
from pseudoanomaly.masks import BlobMask, BlurredNoiseMask
from pseudoanomaly.overlays import IntensityShift


def _batch(size=(32, 32)):
    images = torch.rand(3, 1, *size, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.25
    foreground = torch.ones(3, 1, *size, dtype=torch.bool)
    foreground[1] = False  # sample 1: no liver
    return images, foreground


def _syntheses(**option):
    return {
        "PseudoAnomaly": PseudoAnomaly(BlobMask(rejection=True), IntensityShift(), **option),
        "OneOf": OneOf([PseudoAnomaly(BlobMask(rejection=True), IntensityShift()),
                        PseudoAnomaly(BlurredNoiseMask(sigma=4.0, rejection=True), IntensityShift())], **option),
    }


@pytest.mark.parametrize("name", ["PseudoAnomaly", "OneOf"])
@pytest.mark.parametrize("size", [(32, 32), (6, 24, 24)])
def test_an_empty_foreground_leaves_the_sample_normal_with_a_warning(name, size):
    synth = _syntheses()[name]
    images, foreground = _batch(size)
    with pytest.warns(RuntimeWarning, match=rf"{name}: foreground is empty for sample\(s\) \[1\]; they are left "
                                            "without an anomaly"):
        augmented, masks = synth(images, foreground, generator=torch.Generator().manual_seed(1))
    assert torch.equal(augmented[1], images[1]) and not bool(masks[1].any())
    assert bool(masks[0].any()) and bool(masks[2].any())  # the others are made anomalous as usual
    with pytest.warns(RuntimeWarning, match="foreground is empty"):
        again, _ = synth(images, foreground, params=synth.last_params)  # and replay
    assert torch.equal(again, augmented)


@pytest.mark.parametrize("name", ["PseudoAnomaly", "OneOf"])
def test_raise_refuses_an_empty_foreground_naming_the_sample(name):
    synth = _syntheses(empty_foreground="raise")[name]
    images, foreground = _batch()
    with pytest.raises(ValueError, match=rf"{name}: foreground is empty for sample\(s\) \[1\]: there is nowhere to "
                                         "put an anomaly"):
        synth(images, foreground, generator=torch.Generator().manual_seed(1))


def test_a_full_foreground_gives_the_same_result_under_both_options():
    images, foreground = _batch()
    foreground[1] = True
    outputs = [PseudoAnomaly(BlobMask(), IntensityShift(), empty_foreground=mode)(
        images, foreground, generator=torch.Generator().manual_seed(3)) for mode in ("skip", "raise")]
    assert torch.equal(outputs[0][0], outputs[1][0]) and torch.equal(outputs[0][1], outputs[1][1])


@pytest.mark.parametrize("make", [
    lambda: PseudoAnomaly(empty_foreground="ignore"),
    lambda: OneOf([PseudoAnomaly(), PseudoAnomaly()], empty_foreground="ignore"),
])
def test_an_unknown_option_is_refused_by_name(make):
    with pytest.raises(ValueError, match=r"empty_foreground must be one of .*'skip', 'raise'.*got 'ignore'"):
        make()


def test_kornia_adapter_has_the_same_option():
    from pseudoanomaly.integrations.kornia import RandomPseudoAnomaly

    images, _ = _batch()
    images[1] = 0.0  # nothing above the threshold: the foreground is empty
    with pytest.warns(RuntimeWarning, match=r"sample\(s\) \[1\] have no pixel above foreground_threshold"):
        out = RandomPseudoAnomaly(foreground_threshold=0.0)(images)
    assert torch.equal(out[1], images[1])
    with pytest.raises(ValueError, match=r"sample\(s\) \[1\] have no pixel above foreground_threshold=0\.0: there is "
                                         "nowhere to put an anomaly"):
        RandomPseudoAnomaly(foreground_threshold=0.0, empty_foreground="raise")(images)


def test_monai_and_torchio_adapters_have_the_same_option():
    monai = pytest.importorskip("pseudoanomaly.integrations.monai", reason="MONAI is not installed (the monai extra)")
    image = torch.rand(1, 16, 16)
    sample = {"image": image, "liver": torch.zeros(1, 16, 16)}
    with pytest.warns(RuntimeWarning, match="foreground is empty"):
        out = monai.RandPseudoAnomalyd(keys="image", foreground_key="liver")(sample)
    assert torch.equal(torch.as_tensor(out["image"]), image)
    with pytest.raises(ValueError, match="RandPseudoAnomalyd: the foreground is empty: there is nowhere"):
        monai.RandPseudoAnomalyd(keys="image", foreground_key="liver", empty_foreground="raise")(sample)
    tio_module = pytest.importorskip("pseudoanomaly.integrations.torchio", reason="TorchIO is not installed")
    import torchio as tio

    subject = tio.Subject(ct=tio.ScalarImage(tensor=torch.rand(1, 8, 8, 4)), liver=tio.LabelMap(
        tensor=torch.zeros(1, 8, 8, 4, dtype=torch.uint8)))
    with pytest.raises(ValueError, match="RandomPseudoAnomaly: the foreground is empty"):
        tio_module.RandomPseudoAnomaly("ct", foreground_key="liver", empty_foreground="raise")(subject)


def test_training_goes_on_past_a_slice_without_foreground():
    from pseudoanomaly.models import RestorationUNet, SegmentationNet
    from pseudoanomaly.training import TwoPhaseConfig, TwoPhaseTrainer

    images, foreground = _batch()
    data = [{"image": i, "foreground": f} for i, f in zip(images, foreground)] * 2
    def nets():
        torch.manual_seed(0)
        return RestorationUNet(base_width=4, depth=2), SegmentationNet(base_width=4, channel_multipliers=(1, 2, 2))

    config = TwoPhaseConfig(restoration_max_steps=2, segmentation_max_steps=1, batch_size=6, progress=False,
                            eval_every=0)
    with pytest.warns(RuntimeWarning, match="foreground is empty"):
        TwoPhaseTrainer(*nets(), PseudoAnomaly(BlobMask(), IntensityShift()), config).fit(data)
    strict = TwoPhaseTrainer(*nets(), PseudoAnomaly(BlobMask(), IntensityShift(), empty_foreground="raise"), config)
    with pytest.raises(ValueError, match="foreground is empty for sample"):
        strict.fit(data)
