"""RandPseudoAnomalyd inside MONAI: seeding (set_random_state, Compose, worker_init_fn), metadata, gate, missing
keys, 2-D with the library's synthesis, 3-D with a synthesis of the test's own, bad input."""

from __future__ import annotations

import pytest

pytest.importorskip("monai", reason='MONAI is not installed: pip install -c constraints.txt -e ".[monai]"')

import numpy as np  # noqa: E402
import torch  # noqa: E402
from box_synthesis import box_synthesis  # noqa: E402
from monai.data import DataLoader, Dataset, MetaTensor  # noqa: E402
from monai.data.meta_obj import set_track_meta  # noqa: E402
from monai.transforms import Compose, RandFlipd, RandGaussianNoised  # noqa: E402

from pseudoanomaly import PseudoAnomaly  # noqa: E402
from pseudoanomaly.integrations.monai import RandPseudoAnomalyd  # noqa: E402
from pseudoanomaly.masks import BlurredNoiseMask  # noqa: E402

SIZE = 48
AFFINE = torch.tensor([[0.7, 0, 0, -100], [0, 0.7, 0, -50], [0, 0, 2.0, 30], [0, 0, 0, 1]], dtype=torch.float64)


def _sample(seed: int = 0, spatial=(SIZE, SIZE), channels: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    # inside [0.25, 0.75]: a shift of at least 60/255 changes every masked pixel, even after clipping
    image = 0.25 + 0.5 * torch.rand(channels, *spatial, generator=g)
    liver = torch.zeros(1, *spatial)
    liver[(0, *(slice(s // 4, 3 * s // 4) for s in spatial))] = 1
    meta = {"filename_or_obj": "ct.nii.gz"}
    return {"image": MetaTensor(image, affine=AFFINE, meta=meta), "liver": MetaTensor(liver, affine=AFFINE)}


def _transform(**kwargs) -> RandPseudoAnomalyd:
    kwargs = {"keys": "image", "foreground_key": "liver", "mask_key": "anomaly",
              "synthesis": PseudoAnomaly(mask=BlurredNoiseMask(rejection=True)), **kwargs}
    return RandPseudoAnomalyd(**kwargs)


def _equal(a: dict, b: dict) -> bool:
    return all(torch.equal(torch.as_tensor(a[k]), torch.as_tensor(b[k])) for k in ("image", "anomaly"))


def test_mask_marks_exactly_the_changed_pixels_inside_the_foreground_and_metadata_is_kept():
    sample = _sample()
    out = _transform().set_random_state(0)(sample)
    image, mask = out["image"], out["anomaly"]
    assert isinstance(image, MetaTensor) and isinstance(mask, MetaTensor)
    assert mask.shape == (1, SIZE, SIZE) and mask.dtype == image.dtype
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(mask.as_tensor().bool(), (image != sample["image"]).as_tensor())
    assert not bool((mask.as_tensor().bool() & ~sample["liver"].as_tensor().bool()).any())
    for t in (image, mask):
        assert torch.equal(t.affine, AFFINE) and t.meta["filename_or_obj"] == "ct.nii.gz"
    assert torch.equal(out["liver"], sample["liver"]), "the foreground passes through"


def test_set_random_state_reproduces_bit_for_bit_and_other_seeds_differ():
    t = _transform(prob=0.7)

    def run(seed):
        t.set_random_state(seed)
        return [t(_sample(i)) for i in range(6)]

    first = run(3)
    assert all(_equal(a, b) for a, b in zip(first, run(3)))
    assert not all(_equal(a, b) for a, b in zip(first, run(4)))
    applied = [bool(out["anomaly"].any()) for out in first]
    assert True in applied and False in applied, "prob=0.7 over 6 samples: some of each (fixed seed)"


def test_compose_set_random_state_reproduces_a_pipeline():
    def pipeline():
        return Compose([
            RandGaussianNoised(keys="image", prob=1.0, std=0.01),
            _transform(prob=0.5),
            RandFlipd(keys=["image", "liver", "anomaly"], prob=0.5, spatial_axis=1),
        ])

    first, second = pipeline().set_random_state(seed=7), pipeline().set_random_state(seed=7)
    for i in range(4):
        a, b = first(_sample(i)), second(_sample(i))
        assert _equal(a, b)
        assert a["anomaly"].shape == (1, SIZE, SIZE)


def test_worker_init_fn_reproduces_across_runs_and_workers_draw_differently():
    data = [_sample(i) for i in range(4)]
    # the same sample everywhere: only the transforms' random states can make two outputs differ
    data = [data[0]] * 4

    def run():
        ds = Dataset(data, transform=Compose([_transform(synthesis=box_synthesis, prob=1.0)]))
        loader = DataLoader(ds, batch_size=1, num_workers=2, generator=torch.Generator().manual_seed(0))
        return [batch["anomaly"].as_tensor() for batch in loader]

    first, second = run(), run()
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert not all(torch.equal(first[0], m) for m in first[1:]), "every worker drew the same anomaly"


def test_prob_zero_leaves_the_image_and_writes_a_zero_mask_that_collates():
    sample = _sample()
    out = _transform(prob=0.0).set_random_state(0)(sample)
    assert torch.equal(out["image"], sample["image"]) and isinstance(out["anomaly"], MetaTensor)
    assert out["anomaly"].shape == (1, SIZE, SIZE) and not bool(out["anomaly"].any())
    ds = Dataset([_sample(i) for i in range(4)], transform=_transform(prob=0.5).set_random_state(1))
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["anomaly"].shape == (4, 1, SIZE, SIZE)


def test_missing_keys():
    sample = _sample()
    with pytest.raises(KeyError, match="foreground_key='liver' is not in the data"):
        _transform()({"image": sample["image"]})
    with pytest.raises(KeyError, match="image"):
        _transform()({"liver": sample["liver"]})
    t = _transform(allow_missing_keys=True).set_random_state(0)
    out = t({"image": sample["image"]})  # no foreground: left normal, zero mask
    assert torch.equal(out["image"], sample["image"]) and not bool(out["anomaly"].any())
    assert t({"liver": sample["liver"]}).keys() == {"liver"}  # no image: nothing to do


def test_mismatched_affines_name_both_keys_and_values():
    sample = _sample()
    shifted = AFFINE.clone()
    shifted[0, 3] += 5.0
    sample["liver"] = MetaTensor(sample["liver"].as_tensor(), affine=shifted)
    with pytest.raises(ValueError, match=r"affine of data\['liver'\] differs from the affine of data\['image'\]"
                                         r" \(largest difference 5\)(.|\n)*-95"):
        _transform()(sample)
    # float32 rounding of a NIfTI header is not a mismatch
    sample["liver"] = MetaTensor(sample["liver"].as_tensor(), affine=AFFINE.float().double())
    _transform()(sample)


@pytest.mark.parametrize(
    "change, error, match",
    [
        (lambda s: s.update(image=s["image"] * 1000), ValueError, r"data\['image'\] values lie in .* outside "
                                                                  r"value_range=\(0, 1\)"),
        (lambda s: s.update(liver=s["liver"] * 2), ValueError, r"data\['liver'\] must be bool or contain only 0 "
                                                               r"and 1, got values \[2.0\]"),
        (lambda s: s.update(liver=s["liver"][:, :10]), ValueError, r"data\['liver'\] has spatial shape \(10, 48\)"),
        (lambda s: s.update(image=s["image"][0]), ValueError, r"data\['image'\] must be a non-empty channel-first"),
        (lambda s: s.update(image=(s["image"] * 100).to(torch.uint8)), TypeError, "must be floating point"),
    ],
)
def test_bad_input_names_the_key_and_the_value(change, error, match):
    sample = _sample()
    change(sample)
    with pytest.raises(error, match=match):
        _transform(prob=0.0)(sample)  # refused whether or not the gate picks the sample


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"prob": 1.5}, r"prob must be a number in \[0, 1\], got 1.5"),
        ({"mask_key": "image"}, "mask_key='image' is also one of keys"),
        ({"mask_key": "liver"}, "mask_key and foreground_key must differ"),
        ({"synthesis": PseudoAnomaly(p=0.5)}, r"synthesis.p must be 1.0 .* got 0.5"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _transform(**kwargs)


def test_empty_foreground_leaves_the_sample_normal_with_a_warning():
    sample = _sample()
    sample["liver"] = sample["liver"] * 0
    with pytest.warns(RuntimeWarning, match="foreground is empty"):
        out = _transform().set_random_state(0)(sample)
    assert torch.equal(out["image"], sample["image"]) and not bool(out["anomaly"].any())


def test_several_keys_get_one_anomaly_in_one_place():
    sample = _sample()
    sample["t2"] = MetaTensor(1.0 - sample["image"].as_tensor(), affine=AFFINE)
    t = RandPseudoAnomalyd(keys=("image", "t2"), foreground_key="liver", synthesis=box_synthesis).set_random_state(0)
    out = t(sample)
    mask = out["anomaly"].as_tensor().bool()
    assert bool(mask.any())
    for key in ("image", "t2"):
        assert torch.equal((out[key] != sample[key]).as_tensor(), mask)


def test_3d_volumes_and_plain_tensors():
    sample = _sample(spatial=(8, 16, 16), channels=2)
    t = _transform(synthesis=box_synthesis, prob=1.0)
    out = t.set_random_state(0)(sample)
    assert out["image"].shape == (2, 8, 16, 16) and out["anomaly"].shape == (1, 8, 16, 16)
    mask = out["anomaly"].as_tensor().bool()
    assert bool(mask.any()) and torch.equal((out["image"] != sample["image"]).as_tensor(), mask.expand(2, -1, -1, -1))
    assert torch.equal(out["anomaly"].affine, AFFINE)
    assert _equal(out, t.set_random_state(0)(sample))
    # numpy input and MONAI's metadata tracking off: plain tensors come back
    plain = {"image": sample["image"].as_tensor().numpy(), "liver": sample["liver"].as_tensor()}
    set_track_meta(False)
    try:
        bare = t.set_random_state(0)(plain)
    finally:
        set_track_meta(True)
    assert type(bare["image"]) is torch.Tensor and type(bare["anomaly"]) is torch.Tensor
    assert np.array_equal(bare["image"].numpy(), out["image"].as_tensor().numpy())


@pytest.mark.parametrize("synthesis", ["zhang2023", "blobs in mm"])
def test_the_librarys_own_syntheses_paint_volumes_inside_the_foreground(synthesis):
    from pseudoanomaly import PseudoAnomaly, presets
    from pseudoanomaly.masks import BlobMask
    from pseudoanomaly.overlays import IntensityShift

    synth = presets.zhang2023() if synthesis == "zhang2023" else PseudoAnomaly(
        BlobMask(radius=(3.0, 6.0), spacing=(2.5, 1.0, 1.0)), IntensityShift())
    sample = _sample(spatial=(12, 32, 32), channels=1)
    t = _transform(synthesis=synth, prob=1.0)
    out = t.set_random_state(0)(sample)
    mask = out["anomaly"].as_tensor().bool()
    assert out["anomaly"].shape == (1, 12, 32, 32)
    assert not mask[~sample["liver"].as_tensor().bool()].any()
    assert torch.equal((out["image"] != sample["image"]).as_tensor(), mask)
    assert _equal(out, t.set_random_state(0)(sample))
