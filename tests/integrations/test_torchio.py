"""RandomPseudoAnomaly inside TorchIO (seeded by torch.manual_seed, mask as a LabelMap, 2-D as (C, W, H, 1), 3-D
with a synthesis of the test's own, bad input), and the MONAI transform through tio.MonaiAdapter."""

from __future__ import annotations

import pytest

tio = pytest.importorskip("torchio", reason='TorchIO is not installed: pip install -c constraints.txt -e ".[torchio]"')

import numpy as np  # noqa: E402
import torch  # noqa: E402
from box_synthesis import box_synthesis  # noqa: E402

from pseudoanomaly import PseudoAnomaly  # noqa: E402
from pseudoanomaly.integrations.torchio import RandomPseudoAnomaly  # noqa: E402
from pseudoanomaly.masks import BlurredNoiseMask  # noqa: E402

SIZE = 48
AFFINE = np.array([[0.7, 0, 0, -100], [0, 0.7, 0, -50], [0, 0, 2.0, 30], [0, 0, 0, 1]])


def _subject(seed: int = 0, spatial=(SIZE, SIZE, 1)) -> tio.Subject:
    g = torch.Generator().manual_seed(seed)
    # inside [0.25, 0.75]: a shift of at least 60/255 changes every masked pixel, even after clipping
    image = 0.25 + 0.5 * torch.rand(1, *spatial, generator=g)
    liver = torch.zeros(1, *spatial)
    liver[(0, *(slice(s // 4, max(3 * s // 4, 1)) for s in spatial))] = 1
    return tio.Subject(ct=tio.ScalarImage(tensor=image, affine=AFFINE), liver=tio.LabelMap(tensor=liver, affine=AFFINE))


def _transform(**kwargs) -> RandomPseudoAnomaly:
    kwargs = {"image_key": "ct", "foreground_key": "liver", "mask_key": "anomaly",
              "synthesis": PseudoAnomaly(mask=BlurredNoiseMask(rejection=True)), **kwargs}
    return RandomPseudoAnomaly(**kwargs)


def _equal(a: tio.Subject, b: tio.Subject) -> bool:
    return all(torch.equal(a[k].data, b[k].data) for k in ("ct", "anomaly"))


def test_2d_mask_is_a_label_map_marking_exactly_the_changed_pixels():
    subject = _subject()
    torch.manual_seed(0)
    out = _transform()(subject)
    mask = out["anomaly"]
    assert isinstance(mask, tio.LabelMap) and mask.shape == (1, SIZE, SIZE, 1)
    assert np.array_equal(mask.affine, AFFINE) and np.array_equal(out["ct"].affine, AFFINE)
    assert torch.equal(mask.data.bool(), out["ct"].data != subject["ct"].data)
    assert bool(mask.data.any()) and not bool((mask.data.bool() & ~subject["liver"].data.bool()).any())
    assert "anomaly" not in subject, "the input subject is not modified"


def test_manual_seed_reproduces_a_pipeline_bit_for_bit():
    pipeline = tio.Compose([tio.RandomNoise(std=0.01), _transform(p=0.6), tio.RandomFlip(axes=(0,))])

    def run(seed):
        torch.manual_seed(seed)
        return [pipeline(_subject(i)) for i in range(5)]

    first = run(1)
    assert all(_equal(a, b) for a, b in zip(first, run(1)))
    assert not all(_equal(a, b) for a, b in zip(first, run(2)))
    applied = [bool(s["anomaly"].data.any()) for s in first]
    assert True in applied and False in applied, "p=0.6 over 5 subjects: some of each (fixed seed)"


def test_p_zero_adds_a_zero_mask_so_subjects_collate():
    subject = _subject()
    out = _transform(p=0.0)(subject)
    assert torch.equal(out["ct"].data, subject["ct"].data) and not bool(out["anomaly"].data.any())
    loader_class = getattr(tio, "SubjectsLoader", torch.utils.data.DataLoader)  # older TorchIO has no SubjectsLoader
    loader = loader_class(tio.SubjectsDataset([_subject(i) for i in range(4)], transform=_transform(p=0.5)),
                                batch_size=4)
    assert next(iter(loader))["anomaly"]["data"].shape == (4, 1, SIZE, SIZE, 1)


def test_3d_volumes():
    subject = _subject(spatial=(16, 16, 8))
    t = _transform(synthesis=box_synthesis)
    torch.manual_seed(0)
    out = t(subject)
    mask = out["anomaly"].data.bool()
    assert out["anomaly"].shape == (1, 16, 16, 8) and bool(mask.any())
    assert torch.equal(mask, out["ct"].data != subject["ct"].data)
    torch.manual_seed(0)
    assert _equal(out, t(subject))


def test_bad_input_names_the_key_and_the_value():
    subject = _subject()
    with pytest.raises(KeyError, match="foreground_key='lung' is not an image of the subject"):
        _transform(foreground_key="lung")(subject)
    moved = AFFINE.copy()
    moved[1, 3] += 3.0
    subject["liver"] = tio.LabelMap(tensor=subject["liver"].data, affine=moved)
    with pytest.raises(ValueError, match=r"affine of subject\['liver'\] differs from the affine of subject\['ct'\] "
                                         r"\(largest difference 3\)(.|\n)*-47"):
        _transform()(subject)
    hu = _subject()
    hu["ct"].set_data(hu["ct"].data * 400 - 100)
    with pytest.raises(ValueError, match=r"subject\['ct'\] values lie in .* outside value_range"):
        _transform(p=0.0)(hu)
    with pytest.raises(ValueError, match="must differ"):
        RandomPseudoAnomaly("ct", foreground_key="ct")
    with pytest.raises(ValueError, match=r"p must be a number in \[0, 1\], got -1"):
        RandomPseudoAnomaly("ct", p=-1)


def test_the_monai_transform_through_monai_adapter():
    pytest.importorskip("monai", reason='MONAI is not installed: pip install -c constraints.txt -e ".[monai]"')
    if not hasattr(tio, "MonaiAdapter"):
        pytest.skip(f"this TorchIO ({tio.__version__}) has no MonaiAdapter")
    from pseudoanomaly.integrations.monai import RandPseudoAnomalyd

    subject = _subject(spatial=(16, 16, 8))
    # TorchIO hands MONAI its (C, W, H, D) volumes: a 3-D synthesis. A zero LabelMap under the mask's key keeps
    # the mask a label map (the adapter adds a new key as a ScalarImage).
    subject["anomaly"] = tio.LabelMap(tensor=torch.zeros(1, 16, 16, 8), affine=AFFINE)
    t = RandPseudoAnomalyd(keys="ct", foreground_key="liver", mask_key="anomaly", synthesis=box_synthesis)
    adapter = tio.MonaiAdapter(t)
    out = adapter(subject)
    assert isinstance(out["anomaly"], tio.LabelMap) and bool(out["anomaly"].data.any())
    assert torch.equal(out["anomaly"].data.bool(), out["ct"].data != subject["ct"].data)
    assert np.array_equal(out["anomaly"].affine, AFFINE)
    t.set_random_state(5)
    first = adapter(subject)
    t.set_random_state(5)
    assert _equal(first, adapter(subject))


def test_the_librarys_blobs_in_mm_paint_a_volume():
    from pseudoanomaly import PseudoAnomaly
    from pseudoanomaly.masks import BlobMask
    from pseudoanomaly.overlays import IntensityShift

    subject = _subject(spatial=(32, 32, 12))
    t = _transform(synthesis=PseudoAnomaly(BlobMask(radius=(3.0, 6.0), spacing=(1.0, 1.0, 2.5)), IntensityShift()))
    torch.manual_seed(0)
    out = t(subject)
    mask = out["anomaly"].data.bool()
    assert bool(mask.any()) and torch.equal(mask, out["ct"].data != subject["ct"].data)
    torch.manual_seed(0)
    assert _equal(out, t(subject))
