"""The phantom cohort: deterministic, in the BTCV and LiTS layouts, with plausible HU and tumors in the liver."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

nib = pytest.importorskip("nibabel", reason="the lits example needs the 'lits' extra (nibabel)")
from scipy import ndimage  # noqa: E402

from examples.lits.phantom import BTCV_LABELS, make_case, make_cohort, reorient  # noqa: E402


def _canonical(path):
    image = nib.as_closest_canonical(nib.load(path))
    return np.asarray(image.dataobj), image.affine


def test_same_seed_same_volume_other_seed_other_volume():
    a, b = make_case((64, 64, 10), seed=3, n_tumors=2), make_case((64, 64, 10), seed=3, n_tumors=2)
    for field in ("hu", "organs", "tumor", "affine"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.hu, make_case((64, 64, 10), seed=4, n_tumors=2).hu)


def test_cohort_is_deterministic_and_cases_do_not_depend_on_cohort_size(tmp_path, lits_phantom):
    again = make_cohort(tmp_path, n_healthy=1, n_tumor=2, shape=(96, 96, 16), seed=0)
    for (new, _), (old, _) in zip(again.healthy + again.tumor, lits_phantom.healthy[:1] + lits_phantom.tumor):
        (x, ax), (y, ay) = _canonical(new), _canonical(old)
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(ax, ay)


def test_layouts_file_names_orientation_and_labels(lits_phantom):
    c = lits_phantom
    assert [p.name for p, _ in c.healthy] == ["img0001.nii.gz", "img0002.nii.gz"]
    assert [q.relative_to(c.btcv_root).as_posix() for _, q in c.healthy] == ["label/label0001.nii.gz",
                                                                             "label/label0002.nii.gz"]
    assert [(p.name, q.name) for p, q in c.tumor] == [("volume-0.nii.gz", "segmentation-0.nii.gz"),
                                                      ("volume-1.nii.gz", "segmentation-1.nii.gz")]
    btcv = [(pair, ("L", "P", "S"), set(BTCV_LABELS.values()) | {0}) for pair in c.healthy]
    lits = [(pair, ("L", "A", "I"), {0, 1, 2}) for pair in c.tumor]
    for (image, label), axcodes, allowed in btcv + lits:
        img, lab = nib.load(image), nib.load(label)
        assert img.get_data_dtype() == np.int16 and lab.get_data_dtype() == np.uint8
        assert nib.aff2axcodes(img.affine) == axcodes and np.allclose(img.affine, lab.affine)
        zooms = img.header.get_zooms()
        assert 0.7 <= zooms[0] == zooms[1] <= 0.9 and 2.0 <= zooms[2] <= 3.0
        values = set(np.unique(np.asarray(lab.dataobj)).tolist())
        assert values <= allowed
        assert (6 if axcodes[1] == "P" else 1) in values
    assert all(2 in np.unique(np.asarray(nib.load(q).dataobj)) for _, q in c.tumor), "every LiTS volume has a tumor"


def test_liver_on_the_patients_right_and_slices_without_liver_exist(lits_phantom):
    for image, label in lits_phantom.healthy + lits_phantom.tumor:
        hu, affine = _canonical(image)
        lab, _ = _canonical(label)
        liver = lab == 6 if image.name.startswith("img") else lab >= 1
        # World x (RAS: +x towards the patient's right) of the liver against the body's.
        liver_x = nib.affines.apply_affine(affine, np.argwhere(liver).mean(0))[0]
        body_x = nib.affines.apply_affine(affine, np.argwhere(hu > -500).mean(0))[0]
        assert liver_x > body_x + 10
        per_slice = liver.sum(axis=(0, 1))
        assert (per_slice == 0).any() and (per_slice > 0).sum() >= 6


def test_hu_values_are_plausible():
    case = make_case((96, 96, 16), seed=1, n_tumors=3)
    hu, liver, tumor = case.hu.astype(float), case.liver, case.tumor
    assert case.hu.dtype == np.int16 and hu.min() >= -1024
    assert abs(np.median(hu[:, :, 8][:3, :3]) + 1000) < 30, "air outside the body"
    parenchyma = hu[liver & ~tumor]
    assert 70 <= np.median(parenchyma) <= 130 and np.percentile(parenchyma, 2) > 40
    assert hu.max() >= 600, "bone"
    organs = case.organs
    assert 90 < np.median(hu[organs == BTCV_LABELS["spleen"]]) < 130
    assert 160 < np.median(hu[organs == BTCV_LABELS["aorta"]]) < 200
    labels, n = ndimage.label(tumor)
    assert n >= 2
    deltas = [hu[labels == i].mean() - np.median(parenchyma) for i in range(1, n + 1) if (labels == i).sum() > 20]
    assert all(abs(d) >= 15 for d in deltas) and min(deltas) < -20, deltas


@settings(max_examples=8)
@given(seed=st.integers(0, 2**32 - 1), n_tumors=st.integers(0, 3))
def test_tumors_inside_the_liver_and_spanning_slices(seed, n_tumors):
    case = make_case((64, 64, 12), seed=seed, n_tumors=n_tumors)
    assert case.liver.any()
    assert not (case.tumor & ~case.liver).any(), "tumors must lie inside the liver"
    if n_tumors == 0:
        assert not case.tumor.any()
    else:
        labels, n = ndimage.label(case.tumor)
        assert 1 <= n
        extents = [s[2].stop - s[2].start for s in ndimage.find_objects(labels)]
        assert max(extents) >= 3, "the largest tumor spans several slices"
    assert case.hu.min() >= -1024 and case.hu.max() <= 3071


def test_reorient_round_trip():
    case = make_case((64, 64, 10), seed=0)
    for axcodes in [("L", "P", "S"), ("L", "A", "I"), ("P", "R", "S"), ("S", "L", "A")]:
        moved, affine = reorient(case.hu, case.affine, axcodes)
        assert nib.aff2axcodes(affine) == axcodes
        back, back_affine = reorient(moved, affine, ("R", "A", "S"))
        np.testing.assert_array_equal(back, case.hu)
        np.testing.assert_allclose(back_affine, case.affine)


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="shape"):
        make_case((32, 64, 10))
    with pytest.raises(ValueError, match="n_tumors"):
        make_case((64, 64, 10), n_tumors=-1)
