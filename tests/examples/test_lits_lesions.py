"""``lesions``: a LiTS-layout lesion set from healthy volumes — layout, labels, affine, prepare, seeds, bad input."""

from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
import pytest

nib = pytest.importorskip("nibabel", reason="the lits example needs the 'lits' extra (nibabel)")

from examples.lits import lesions  # noqa: E402
from examples.lits.phantom import BTCV_LABELS  # noqa: E402
from examples.lits.cases import PrepareError, load_nifti  # noqa: E402
from examples.lits.dataset import read_manifest  # noqa: E402
from examples.lits.prepare import prepare  # noqa: E402

SMALL = ("small", "medium")  # the phantom's liver (~10 mm deep) has no room for a large lesion


@pytest.fixture(scope="module")
def lesion_set(lits_phantom, tmp_path_factory):
    """The two healthy phantom volumes, two lesion draws each."""
    out = tmp_path_factory.mktemp("lesions") / "set"
    summary = lesions.make_lesion_set("btcv", lits_phantom.btcv_root, out, copies=2, seed=0, sizes=SMALL,
                                      progress=False)
    return out, summary


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_writes_the_lits_layout_with_labels_in_the_liver(lesion_set, lits_phantom):
    out, summary = lesion_set
    assert _files(out) == ["lesions.json"] + [f"segmentation-{i}.nii.gz" for i in range(4)] + [
        f"volume-{i}.nii.gz" for i in range(4)]
    assert summary.volumes == 4 and summary.lesions >= 4
    manifest = json.loads((out / "lesions.json").read_text())
    assert "validation instrument" in manifest["note"] and manifest["seed"] == 0
    for i, entry in enumerate(manifest["volumes"]):
        source_image, source_label = lits_phantom.healthy[i // 2]
        hu, affine = load_nifti(out / f"volume-{i}.nii.gz")
        seg, seg_affine = load_nifti(out / f"segmentation-{i}.nii.gz", "label")
        src, src_affine = load_nifti(source_image)
        organs, _ = load_nifti(source_label, "label")
        liver = organs == BTCV_LABELS["liver"]
        assert nib.load(out / f"volume-{i}.nii.gz").get_data_dtype() == np.int16
        assert nib.load(out / f"segmentation-{i}.nii.gz").get_data_dtype() == np.uint8
        assert np.array_equal(affine, src_affine) and np.array_equal(seg_affine, src_affine)
        assert nib.aff2axcodes(affine) == nib.aff2axcodes(src_affine)
        assert set(np.unique(seg)) == {0, 1, 2}
        assert np.array_equal(seg > 0, liver) and (seg == 2).sum() == entry["lesion_voxels"] > 0
        assert np.array_equal(hu[~liver], src[~liver])  # nothing changes outside the liver
        assert (hu[seg == 2] != src[seg == 2]).mean() > 0.5
        assert entry["case_id"] == source_image.name.removesuffix(".nii.gz") and entry["copy"] == i % 2
        assert entry["lesions"] and all(p["size"] in SMALL for p in entry["lesions"])
    assert manifest["volumes"][0]["lesions"] != manifest["volumes"][1]["lesions"]  # copies differ


def test_prepare_reads_the_set_and_finds_the_tumours(lesion_set, tmp_path):
    out, _ = lesion_set
    prepare("lits", out, tmp_path / "prepared", progress=False)
    cases = read_manifest(tmp_path / "prepared")["cases"]
    assert sorted(cases) == [f"volume-{i}" for i in range(4)]
    assert all(entry["tumor_slices"] > 0 for entry in cases.values())


def test_same_seed_reproduces_the_files(lesion_set, lits_phantom, tmp_path):
    out, _ = lesion_set
    again = tmp_path / "again"
    lesions.make_lesion_set("btcv", lits_phantom.btcv_root, again, copies=2, seed=0, sizes=SMALL, progress=False)
    for name in _files(out):
        if name.endswith(".nii.gz"):
            assert np.array_equal(load_nifti(out / name)[0], load_nifti(again / name)[0]), name
    first, second = (json.loads((d / "lesions.json").read_text()) for d in (out, again))
    assert first["volumes"] == second["volumes"]
    other = tmp_path / "other"
    lesions.make_lesion_set("btcv", lits_phantom.btcv_root, other, copies=1, seed=1, sizes=SMALL, progress=False)
    assert json.loads((other / "lesions.json").read_text())["volumes"][0]["lesions"] != first["volumes"][0]["lesions"]


def test_main_with_the_pair_layout(lits_phantom, tmp_path, capsys):
    image, label = lits_phantom.healthy[0]
    parser = argparse.ArgumentParser()
    lesions.add_arguments(parser)
    args = parser.parse_args(["--layout", "pair", "--image", str(image), "--mask", str(label), "--liver-label", "6",
                              "--tumor-label", "--out", str(tmp_path / "pair"), "--copies", "1", "--seed", "3",
                              "--sizes", "small", "--appearances", "hypodense", "rim", "--no-progress"])
    assert lesions.main(args) == 0
    assert "wrote 1 volume(s)" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "pair" / "lesions.json").read_text())
    assert {p["appearance"] for p in manifest["volumes"][0]["lesions"]} <= {"hypodense", "rim"}


def test_empty_liver_leaves_no_file_behind(lits_phantom, tmp_path, capsys):
    image, label = lits_phantom.healthy[0]
    organs, affine = load_nifti(label, "label")
    empty = tmp_path / "empty.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros_like(organs), affine), empty)
    out = tmp_path / "out"
    with pytest.raises(PrepareError, match="no voxel has a liver label"):
        lesions.make_lesion_set("pair", None, out, image=image, mask=empty, liver_labels=[6], progress=False)
    assert not out.exists() and _files(tmp_path) == ["empty.nii.gz"]  # no staging folder left either
    parser = argparse.ArgumentParser()
    lesions.add_arguments(parser)
    args = parser.parse_args(["--layout", "pair", "--image", str(image), "--mask", str(empty), "--out", str(out)])
    assert lesions.main(args) == 1 and "empty.nii.gz" in capsys.readouterr().err


def test_a_failure_after_some_volumes_leaves_out_as_it_was(lits_phantom, tmp_path):
    root = tmp_path / "btcv"
    shutil.copytree(lits_phantom.btcv_root, root)
    (root / "label" / "label0002.nii.gz").write_bytes(b"not a nifti")  # the second case fails
    out = tmp_path / "out"
    with pytest.raises(PrepareError, match="label0002"):
        lesions.make_lesion_set("btcv", root, out, copies=1, sizes=SMALL, progress=False)
    assert not out.exists() and _files(tmp_path) == ["btcv"]


def test_too_large_a_size_class_names_the_file(lits_phantom, tmp_path):
    with pytest.raises(PrepareError, match=r"img0001.*'large' \(50-90 mm\)"):
        lesions.make_lesion_set("btcv", lits_phantom.btcv_root, tmp_path / "out", sizes=("large",), progress=False)
    assert not (tmp_path / "out").exists()


def test_tumour_volumes_are_refused(lits_phantom, tmp_path):
    with pytest.raises(PrepareError, match="tumour voxels"):
        lesions.make_lesion_set("lits", lits_phantom.lits_root, tmp_path / "out", sizes=SMALL, progress=False)


def test_refuses_a_foreign_folder_unless_overwrite_and_replaces_its_own(lits_phantom, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    kwargs = {"sizes": ("small",), "progress": False}
    with pytest.raises(PrepareError, match="not empty"):
        lesions.make_lesion_set("btcv", lits_phantom.btcv_root, out, copies=1, **kwargs)
    assert _files(out) == ["notes.txt"]
    lesions.make_lesion_set("btcv", lits_phantom.btcv_root, out, copies=2, overwrite=True, **kwargs)
    assert "volume-3.nii.gz" in _files(out) and "notes.txt" in _files(out)
    # its own output is replaced without --overwrite, and the volumes of the larger earlier set go
    lesions.make_lesion_set("btcv", lits_phantom.btcv_root, out, copies=1, **kwargs)
    assert _files(out) == ["lesions.json", "notes.txt", "segmentation-0.nii.gz", "segmentation-1.nii.gz",
                           "volume-0.nii.gz", "volume-1.nii.gz"]


def test_a_liver_on_the_scans_edge_is_reported_and_lesions_keep_off_that_edge(tmp_path):
    rng = np.random.default_rng(0)
    shape = (72, 72, 20)
    hu = np.full(shape, -1000.0) + 5 * rng.standard_normal(shape)  # air around the body
    x, y, z = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    body = (x - 36) ** 2 + (y - 36) ** 2 < 34**2
    liver = ((x - 36) / 24) ** 2 + ((y - 36) / 24) ** 2 + ((z - 4) / 14) ** 2 <= 1  # cut by the slice z = 0
    hu[body] = 40 + 10 * rng.standard_normal(body.sum())
    hu[liver] = 120 + 10 * rng.standard_normal(liver.sum())
    affine = np.diag([1.5, 1.5, 2.5, 1.0])
    nib.save(nib.Nifti1Image(hu.astype(np.int16), affine), tmp_path / "ct.nii.gz")
    nib.save(nib.Nifti1Image(liver.astype(np.uint8), affine), tmp_path / "liver.nii.gz")
    summary = lesions.make_lesion_set("pair", None, tmp_path / "set", image=tmp_path / "ct.nii.gz",
                                      mask=tmp_path / "liver.nii.gz", copies=2, seed=0, sizes=("small",),
                                      progress=False)
    on_edge = int(liver[:, :, 0].sum())
    assert any("reaches the scan's edge" in note and str(on_edge) in note for note in summary.notes)
    assert "note: " in str(summary)
    record = json.loads((tmp_path / "set" / "lesions.json").read_text())
    assert record["sources"][0]["liver_voxels_on_border"] == on_edge
    for i in range(2):
        seg = np.asanyarray(nib.load(tmp_path / "set" / f"segmentation-{i}.nii.gz").dataobj)
        assert (seg == 2).any() and not (seg[:, :, 0] == 2).any()  # no lesion voxel on the edge slice


def test_a_labelled_set_from_the_real_chaos_scan(chaos_dir, tmp_path):
    out = tmp_path / "instrument"
    summary = lesions.make_lesion_set("pair", None, out, image=chaos_dir / "ct.nii.gz",
                                      mask=chaos_dir / "liver.nii.gz", copies=1, seed=0, progress=False)
    assert summary.volumes == 1 and summary.lesions >= 1
    assert any("reaches the scan's edge" in note for note in summary.notes)  # CHAOS's liver touches slice 0
    source = nib.load(chaos_dir / "ct.nii.gz")
    volume, segmentation = nib.load(out / "volume-0.nii.gz"), nib.load(out / "segmentation-0.nii.gz")
    np.testing.assert_allclose(volume.affine, source.affine, atol=1e-4)
    seg = np.asanyarray(segmentation.dataobj)
    liver = np.asanyarray(nib.load(chaos_dir / "liver.nii.gz").dataobj) > 0
    assert set(np.unique(seg).tolist()) == {0, 1, 2} and np.array_equal(seg > 0, liver)
    ct, lesioned = np.asanyarray(source.dataobj), np.asanyarray(volume.dataobj)
    assert np.array_equal(ct[~liver], lesioned[~liver])  # nothing changes outside the liver
    parenchyma = np.median(ct[liver])
    record = json.loads((out / "lesions.json").read_text())["volumes"][0]["lesions"]
    for lesion, contrast in ((lesion, lesion["contrast_hu"]) for lesion in record):
        assert abs(lesion["parenchyma_hu"] - parenchyma) < 40  # the contrast is to this liver's parenchyma
        assert -120 <= contrast <= 80
    summary = prepare("lits", out, tmp_path / "prepared", progress=False)
    assert summary.slices >= 69
    from examples.lits.dataset import load_prepared

    prepared = load_prepared(tmp_path / "prepared")
    assert bool(prepared.tumor.any()) and not bool((prepared.tumor & ~prepared.foreground).any())
