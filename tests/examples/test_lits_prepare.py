"""``prepare``: outputs, equalization, orientation, round trip, re-runs, bad files, atomic writes, CHAOS."""

from __future__ import annotations

import argparse
import hashlib
import shutil

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

nib = pytest.importorskip("nibabel", reason="the lits example needs the 'lits' extra (nibabel)")

from examples.lits import preprocess, volumes  # noqa: E402
from examples.lits.phantom import make_case, reorient  # noqa: E402
from examples.lits.cases import PrepareError, load_nifti  # noqa: E402
from examples.lits.dataset import read_manifest  # noqa: E402
from examples.lits.prepare import add_arguments, main, prepare  # noqa: E402
from examples.lits.preprocess import PrepareConfig, equalize_masked, preprocess_volume, restore_volume  # noqa: E402
from examples.lits.volumes import load_prepared_volume  # noqa: E402
from pseudoanomaly.io import atomic_write  # noqa: E402


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * (a & b).sum() / max(a.sum() + b.sum(), 1)


def _copy_tree(src, dst):
    shutil.copytree(src, dst)
    return dst


def _volumes(out):
    manifest = read_manifest(out)
    return manifest, {cid: load_prepared_volume(out / e["file"]) for cid, e in manifest["cases"].items()}


# ------------------------------------------------------------------------------------------- outputs


@pytest.mark.parametrize("layout", ["btcv", "lits"])
def test_outputs_have_the_documented_shapes_ranges_and_manifest(lits_prepared, lits_phantom, layout):
    out = lits_prepared[layout]
    manifest, volumes = _volumes(out)
    assert manifest["version"] == 1 and manifest["layout"] == layout
    assert manifest["config"] == PrepareConfig().to_dict() and manifest["skipped"] == []
    assert manifest["labels"] == ({"liver": [6], "tumor": []} if layout == "btcv" else {"liver": [1], "tumor": [2]})
    pairs = lits_phantom.healthy if layout == "btcv" else lits_phantom.tumor
    assert list(manifest["cases"]) == [p.name.removesuffix(".nii.gz") for p, _ in pairs]
    for (image, label), (case_id, entry) in zip(pairs, manifest["cases"].items()):
        assert entry["image_sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()
        assert entry["label_sha256"] == hashlib.sha256(label.read_bytes()).hexdigest()
        v = volumes[case_id]
        n = entry["slices"]
        assert n > 0 and entry["prepared_shape"] == [n, 256, 256] == list(v.images.shape)
        with np.load(out / entry["file"]) as f:
            assert f["images"].dtype == np.uint8 and f["liver"].dtype == bool and f["slices"].dtype == np.int32
        assert v.images.dtype == np.float32 and v.liver.dtype == bool and v.tumor.dtype == bool
        assert 0 <= v.images.min() and v.images.max() <= 1
        assert np.all(v.images[~v.liver] == 0), "the background must be exactly 0"
        assert v.liver.any(axis=(1, 2)).all(), "every kept slice has liver"
        assert not (v.tumor & ~v.liver).any()
        assert np.all(np.diff(v.geometry.slices) > 0)
        if layout == "btcv":
            assert not v.tumor.any()
        else:
            assert v.tumor.any() and entry["tumor_pixels"] == v.tumor.sum()
        # Equalized liver: spread over the whole range.
        assert v.images[v.liver].max() == 1.0 and 0.35 < v.images[v.liver].mean() < 0.65


def test_kept_slices_are_those_whose_liver_passes_the_minimum(lits_phantom, tmp_path):
    image, label = lits_phantom.tumor[0]
    seg = nib.as_closest_canonical(nib.load(label))
    area = (np.asarray(seg.dataobj) >= 1).sum(axis=(0, 1))  # per canonical axial slice
    for minimum in (1, 300):
        out = tmp_path / str(minimum)
        prepare("lits", lits_phantom.lits_root, out, PrepareConfig(min_liver_pixels=minimum), progress=False)
        v = load_prepared_volume(out / "volumes" / "volume-0.npz")
        np.testing.assert_array_equal(v.geometry.slices, np.flatnonzero(area >= minimum))
    assert (area >= 300).sum() < (area >= 1).sum(), "the test must exercise the minimum"


# --------------------------------------------------------------------------------------- equalization


@settings(max_examples=30)
@given(seed=st.integers(0, 2**31 - 1), low=st.integers(0, 255), width=st.integers(0, 255),
       shape=st.tuples(st.integers(1, 40), st.integers(1, 40)))
def test_equalization_matches_opencv_on_a_full_mask_and_on_masked_pixels_alone(seed, low, width, shape):
    rng = np.random.default_rng(seed)
    image = np.clip(rng.normal(low, width / 4 + 0.1, shape), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(equalize_masked(image, np.ones(shape, bool)), cv2.equalizeHist(image))
    mask = rng.random(shape) < 0.5
    out = equalize_masked(image, mask)
    np.testing.assert_array_equal(out[~mask], image[~mask])  # only liver pixels change
    if mask.any():
        np.testing.assert_array_equal(out[mask], cv2.equalizeHist(image[mask][None, :]).ravel())


def test_preprocess_equals_cv2_equalize_hist_when_the_liver_covers_the_slice():
    rng = np.random.default_rng(0)
    hu = rng.normal(60, 60, (40, 40, 5)).astype(np.int16)
    affine = np.diag([0.8, 0.8, 2.5, 1])
    config = PrepareConfig(size=64)
    v = preprocess_volume(hu, np.ones(hu.shape, bool), affine, config)
    assert len(v.images) == 5 and v.liver.all()
    for k in range(5):
        radiological = hu[::-1, ::-1, k].T  # RAS affine: rows anterior first, columns patient right first
        resized = cv2.resize(np.ascontiguousarray(preprocess.window(radiological)), (64, 64),
                             interpolation=cv2.INTER_LINEAR)
        expected = cv2.equalizeHist(np.rint(resized * 255).astype(np.uint8))
        np.testing.assert_array_equal(np.rint(v.images[k] * 255).astype(np.uint8), expected)


# --------------------------------------------------------------------------------------- orientation


def test_reoriented_copies_prepare_to_identical_slices():
    case = make_case((64, 72, 12), seed=5, n_tumors=2)
    config = PrepareConfig(size=64, crop="volume")
    reference = preprocess_volume(case.hu, case.liver, case.affine, config, case.tumor)
    assert len(reference.images) > 0
    for axcodes in [("R", "A", "S"), ("L", "A", "S"), ("L", "P", "I"), ("A", "R", "S"),
                    ("I", "L", "P")]:
        hu, affine = reorient(case.hu, case.affine, axcodes)
        liver, _ = reorient(case.liver, case.affine, axcodes)
        tumor, _ = reorient(case.tumor, case.affine, axcodes)
        v = preprocess_volume(hu, liver, affine, config, tumor)
        for field in ("images", "liver", "tumor"):
            np.testing.assert_array_equal(getattr(v, field), getattr(reference, field), err_msg=str(axcodes))
        np.testing.assert_array_equal(v.geometry.slices, reference.geometry.slices)


def test_radiological_convention_liver_on_the_image_left_anterior_up():
    case = make_case((96, 96, 16), seed=2)
    v = preprocess_volume(case.hu, case.liver, case.affine, PrepareConfig(size=96))
    rows, cols = np.nonzero(v.liver.any(axis=0))
    assert cols.mean() < 48, "the patient's right (the liver) is on the image's left"
    spine = preprocess_volume(case.hu, case.hu > 500, case.affine, PrepareConfig(size=96, equalize=False))
    assert np.nonzero(spine.liver.any(axis=0))[0].mean() > 48, "posterior (the spine) is at the bottom"
    assert np.all(np.diff(v.geometry.slices) > 0)


# ---------------------------------------------------------------------------------------- round trip


def test_restore_is_exact_without_resizing():
    case = make_case((64, 64, 12), seed=1, n_tumors=1)
    for axcodes in [("L", "P", "S"), ("P", "I", "R")]:
        liver, affine = reorient(case.liver, case.affine, axcodes)
        hu, _ = reorient(case.hu, case.affine, axcodes)
        v = preprocess_volume(hu, liver, affine, PrepareConfig(size=64, min_liver_pixels=1))
        restored = restore_volume(v.liver, v.geometry, liver.shape, affine, interpolation="nearest")
        assert restored.shape == liver.shape and restored.dtype == np.float32
        np.testing.assert_array_equal(restored > 0.5, liver)


@pytest.mark.parametrize("crop", ["none", "volume", "slice"])
def test_restore_round_trip_on_both_phantom_layouts(lits_phantom, tmp_path, crop):
    config = PrepareConfig(crop=crop, min_liver_pixels=1)
    for layout, root, liver_of in [("btcv", lits_phantom.btcv_root, lambda lab: lab == 6),
                                   ("lits", lits_phantom.lits_root, lambda lab: lab >= 1)]:
        manifest, volumes = _volumes(prepare(layout, root, tmp_path / layout, config, progress=False).out)
        for case_id, entry in manifest["cases"].items():
            label, affine = load_nifti(entry["label"])
            v = volumes[case_id]
            restored = restore_volume(v.liver.astype(np.float32), v.geometry, label.shape, affine) > 0.5
            assert restored.shape == label.shape
            assert _dice(restored, liver_of(label)) > 0.97
            if layout == "lits":
                tumor = restore_volume(v.tumor.astype(np.float32), v.geometry) > 0.5
                assert _dice(tumor, label == 2) > 0.9


def test_restore_checks_its_arguments(lits_prepared):
    manifest, volumes = _volumes(lits_prepared["btcv"])
    v = next(iter(volumes.values()))
    with pytest.raises(ValueError, match="pred must have shape"):
        restore_volume(v.liver[1:], v.geometry)
    with pytest.raises(ValueError, match="original_shape"):
        restore_volume(v.liver, v.geometry, (1, 2, 3))
    with pytest.raises(ValueError, match="original_affine"):
        restore_volume(v.liver, v.geometry, None, np.eye(4))
    with pytest.raises(ValueError, match="interpolation"):
        restore_volume(v.liver, v.geometry, interpolation="cubic")


# ------------------------------------------------------------------------------------------- re-runs


def test_rerun_skips_changed_config_redoes_changed_source_redoes_one(lits_phantom, tmp_path):
    root = _copy_tree(lits_phantom.btcv_root, tmp_path / "btcv")
    out = tmp_path / "out"
    first = prepare("btcv", root, out, progress=False)
    assert first.prepared == ["img0001", "img0002"] and first.up_to_date == []
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "volumes").iterdir()}

    again = prepare("btcv", root, out, progress=False)
    assert again.prepared == [] and again.up_to_date == ["img0001", "img0002"]
    assert {p.name: p.stat().st_mtime_ns for p in (out / "volumes").iterdir()} == stamps

    changed = prepare("btcv", root, out, PrepareConfig(size=128), progress=False)
    assert changed.prepared == ["img0001", "img0002"]
    assert load_prepared_volume(out / "volumes" / "img0001.npz").images.shape[1:] == (128, 128)
    assert read_manifest(out)["config"]["size"] == 128

    label = root / "label" / "label0002.nii.gz"
    seg = nib.load(label)
    data = np.asarray(seg.dataobj).copy()
    data[data == 1] = 0  # drop the spleen: a different file, same liver
    nib.save(nib.Nifti1Image(data, seg.affine), label)
    source = prepare("btcv", root, out, PrepareConfig(size=128), progress=False)
    assert source.prepared == ["img0002"] and source.up_to_date == ["img0001"]

    relabelled = prepare("btcv", root, out, PrepareConfig(size=128), liver_labels=[6, 3], progress=False)
    assert relabelled.prepared == ["img0001", "img0002"]


def test_workers_give_the_same_output(lits_phantom, tmp_path, lits_prepared):
    summary = prepare("lits", lits_phantom.lits_root, tmp_path, workers=2, progress=False)
    assert sorted(summary.prepared) == ["volume-0", "volume-1"]
    assert list(read_manifest(tmp_path)["cases"]) == ["volume-0", "volume-1"]
    for name in ("volume-0.npz", "volume-1.npz"):
        with np.load(tmp_path / "volumes" / name) as a, np.load(lits_prepared["lits"] / "volumes" / name) as b:
            for key in a.files:
                np.testing.assert_array_equal(a[key], b[key])


def test_an_output_folder_holds_one_data_set(lits_phantom, lits_prepared):
    with pytest.raises(PrepareError, match="holds a 'btcv' data set"):
        prepare("lits", lits_phantom.lits_root, lits_prepared["btcv"], progress=False)


# ----------------------------------------------------------------------------------------- bad files


def _bad_cohort(tmp_path, lits_phantom, kind: str):
    """The phantom LiTS set with volume-1's segmentation spoiled in one way; returns (root, bad file)."""
    root = _copy_tree(lits_phantom.lits_root, tmp_path / kind)
    label = root / "segmentation-1.nii.gz"
    seg = nib.load(label)
    data = np.asarray(seg.dataobj)
    if kind == "missing":
        label.unlink()
    elif kind == "shape":
        nib.save(nib.Nifti1Image(data[:, :, :-1], seg.affine), label)
    elif kind == "affine":
        affine = seg.affine.copy()
        affine[0, 3] += 5.0
        nib.save(nib.Nifti1Image(data, affine), label)
    elif kind == "4d":
        nib.save(nib.Nifti1Image(np.stack([data, data], -1), seg.affine), label)
    elif kind == "unreadable":
        label.write_bytes(b"\x1f\x8b not a gzip stream" * 10)
    return root, label


@pytest.mark.parametrize("kind, reason", [("missing", "label .*file not found"), ("shape", "label shape"),
                                          ("affine", "label affine differs"), ("4d", "must be a 3-D volume"),
                                          ("unreadable", "cannot read the label")])
def test_bad_files_raise_naming_the_file_or_are_listed_with_skip_bad(lits_phantom, tmp_path, kind, reason):
    root, bad = _bad_cohort(tmp_path, lits_phantom, kind)
    with pytest.raises(PrepareError, match=reason) as info:
        prepare("lits", root, tmp_path / "out", progress=False)
    assert str(bad) in str(info.value) and info.value.path == str(bad)

    summary = prepare("lits", root, tmp_path / "skip", skip_bad=True, progress=False)
    assert summary.prepared == ["volume-0"]
    assert [(s["case_id"], s["file"]) for s in summary.skipped] == [("volume-1", str(bad))]
    assert "volume-1" in str(summary) and str(bad) in str(summary)
    manifest = read_manifest(tmp_path / "skip")
    assert list(manifest["cases"]) == ["volume-0"] and manifest["skipped"] == summary.skipped
    assert not (tmp_path / "skip" / "volumes" / "volume-1.npz").exists()


def test_a_wrong_liver_label_is_an_error_not_an_empty_volume(lits_phantom, tmp_path):
    with pytest.raises(PrepareError, match=r"no voxel has a liver label \(6,\); values present: \[0, 1, 2\]"):
        prepare("lits", lits_phantom.lits_root, tmp_path, liver_labels=[6], tumor_labels=[], progress=False)


def test_a_volume_that_is_not_3d_is_named(tmp_path):
    image = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8), np.int16), np.eye(4)), image)
    with pytest.raises(PrepareError, match="image must be a 3-D volume") as info:
        load_nifti(image)
    assert info.value.path == str(image)


def test_missing_layout_folders_and_empty_sets_are_named(tmp_path):
    with pytest.raises(PrepareError, match="img"):
        prepare("btcv", tmp_path, tmp_path / "out", progress=False)
    with pytest.raises(PrepareError, match="no lits volumes"):
        prepare("lits", tmp_path, tmp_path / "out", progress=False)


# ------------------------------------------------------------------------------------------- atomicity


def test_an_exception_mid_write_leaves_no_partial_file(lits_phantom, tmp_path, monkeypatch):
    calls = []

    def write_then_fail(fileobj, arrays):
        calls.append(1)
        if len(calls) == 2:  # the second volume dies half-way through its file
            fileobj.write(b"PK\x03\x04 half a zip")
            raise KeyboardInterrupt
        np.savez_compressed(fileobj, **arrays)

    monkeypatch.setattr(volumes, "_write_npz", write_then_fail)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        prepare("lits", lits_phantom.lits_root, out, progress=False)
    assert sorted(p.name for p in (out / "volumes").iterdir()) == ["volume-0.npz"]
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "volumes"]
    assert list(read_manifest(out)["cases"]) == ["volume-0"]

    monkeypatch.undo()
    resumed = prepare("lits", lits_phantom.lits_root, out, progress=False)
    assert resumed.up_to_date == ["volume-0"] and resumed.prepared == ["volume-1"]


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "manifest.json"
    target.write_text("old")

    def fail(f):
        f.write(b"new but incomplete")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, fail)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


# ------------------------------------------------------------------------------------------------ CLI


def _args(*argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_cli_helpers_run_prepare_and_report_errors(lits_phantom, tmp_path, capsys):
    args = _args("--layout", "btcv", "--root", str(lits_phantom.btcv_root), "--out", str(tmp_path / "out"),
                 "--size", "64", "--crop", "slice", "--no-progress")
    assert main(args) == 0
    assert "prepared 2 volume(s)" in capsys.readouterr().out
    manifest = read_manifest(tmp_path / "out")
    assert manifest["config"]["size"] == 64 and manifest["config"]["crop"] == "slice"

    root, bad = _bad_cohort(tmp_path, lits_phantom, "missing")
    assert main(_args("--layout", "lits", "--root", str(root), "--out", str(tmp_path / "bad"), "--no-progress")) == 1
    assert str(bad) in capsys.readouterr().err
    assert main(_args("--layout", "pair", "--out", str(tmp_path / "pair"))) == 1
    assert "--image and --mask" in capsys.readouterr().err


def test_config_validation_names_the_value():
    with pytest.raises(ValueError, match=r"hu_window .* got \(250, -200\)"):
        PrepareConfig(hu_window=(250, -200))
    with pytest.raises(ValueError, match="crop .* got 'box'"):
        PrepareConfig(crop="box")
    with pytest.raises(ValueError, match="size .* got 4"):
        PrepareConfig(size=4)


# -------------------------------------------------------------------------------------------- real data


def test_chaos_scan(chaos_dir, tmp_path):
    liver_img = nib.load(chaos_dir / "liver.nii.gz")
    ct_img = nib.load(chaos_dir / "ct.nii.gz")
    liver = np.asarray(liver_img.dataobj) > 0
    area = liver.sum(axis=(0, 1))
    config = PrepareConfig()
    summary = prepare("pair", None, tmp_path, image=chaos_dir / "ct.nii.gz", mask=chaos_dir / "liver.nii.gz",
                      progress=False)
    v = load_prepared_volume(tmp_path / "volumes" / "ct.npz")
    expected = int((area >= config.min_liver_pixels).sum())
    assert (area > 0).sum() == 71 and summary.slices == len(v.images) == expected
    assert expected >= 69

    # Orientation, from the affine: the liver's world x (RAS, +x = patient's right) exceeds the body's ...
    hu = np.asarray(ct_img.dataobj)
    liver_x = nib.affines.apply_affine(ct_img.affine, np.argwhere(liver).mean(0))[0]
    body_x = nib.affines.apply_affine(ct_img.affine, np.argwhere(hu[:, :, ::8] > -500).mean(0) * [1, 1, 8])[0]
    assert liver_x > body_x + 30
    # ... so in the prepared (radiological) slices it lies on the image's left.
    assert np.nonzero(v.liver)[2].mean() < 256 / 2 - 30

    # Enhanced liver ~141 HU: windowed without equalization it sits at ~(141 + 200) / 450.
    plain = preprocess_volume(hu, liver, ct_img.affine, PrepareConfig(equalize=False))
    assert 0.68 < plain.images[plain.liver].mean() < 0.84
    assert 0.4 < v.images[v.liver].mean() < 0.6 and np.all(v.images[~v.liver] == 0)

    restored = restore_volume(v.liver.astype(np.float32), v.geometry, liver.shape, ct_img.affine) > 0.5
    assert restored.shape == liver.shape and _dice(restored, liver) > 0.98


# ------------------------------------------------------------------------------- liver window and presets


def _uniform_liver_case(liver_hu: float, noise: float = 0.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    hu = np.full((96, 96, 6), -100.0) + noise * rng.standard_normal((96, 96, 6))
    liver = np.zeros(hu.shape, bool)
    liver[20:76, 16:80, :] = True
    hu[liver] += liver_hu + 100.0
    return hu, liver, np.diag([0.8, 0.8, 2.5, 1.0])


@given(liver_hu=st.floats(-50, 250))
@settings(max_examples=15)
def test_the_liver_window_centres_the_livers_median_whatever_its_enhancement(liver_hu):
    hu, liver, affine = _uniform_liver_case(liver_hu)
    v = preprocess_volume(hu, liver, affine, PrepareConfig(size=48, equalize=False, liver_window=200.0))
    inside = v.images[v.liver]
    assert np.all(np.abs(inside - 0.5) <= 1 / 255)  # the median HU maps to mid-grey, whatever it is
    assert np.all(v.images[~v.liver] == 0)


def test_the_liver_window_maps_contrast_in_hu_and_ignores_the_fixed_window():
    hu, liver, affine = _uniform_liver_case(120.0)
    hu[40:50, 40:50, :] = 60.0  # a lesion 60 HU below the parenchyma
    v = preprocess_volume(hu, liver, affine, PrepareConfig(size=96, equalize=False, liver_window=200.0,
                                                          hu_window=(-1000.0, 1000.0)))
    # whole slices at their own size: no resampling, so the 10 x 10 lesion keeps its 100 pixels per slice
    lesion = np.abs(v.images - (0.5 - 60 / 200)) <= 1 / 255
    assert lesion.sum(axis=(1, 2)).tolist() == [100] * len(v.images)


def test_area_resizing_averages_the_noise_that_linear_resizing_aliases():
    hu, liver, affine = _uniform_liver_case(120.0, noise=20.0)
    common = dict(size=24, equalize=False, liver_window=200.0, crop="volume", crop_margin=0)
    linear = preprocess_volume(hu, liver, affine, PrepareConfig(**common, resize="linear"))
    area = preprocess_volume(hu, liver, affine, PrepareConfig(**common, resize="area"))
    inner = (slice(None), slice(3, -3), slice(3, -3))  # away from the liver's rim
    assert area.images[inner].std() < 0.6 * linear.images[inner].std()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"liver_window": 200.0}, "equalize=False"),
        ({"liver_window": -5.0, "equalize": False}, "-5.0"),
        ({"resize": "cubic"}, "'cubic'"),
    ],
)
def test_bad_intensity_settings_are_refused_by_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PrepareConfig(**kwargs)


def _prepare_args(*flags):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(["--layout", "pair", "--out", "x", *flags])


def test_the_cli_defaults_to_the_cpu_preset_that_train_defaults_to():
    from examples.lits.prepare import config_from_args
    from examples.lits.preprocess import PREPARE_PRESETS
    from examples.lits.settings import PRESETS

    config = config_from_args(_prepare_args())
    assert config == PREPARE_PRESETS["cpu"] and config.size == PRESETS["cpu"].size
    assert config_from_args(_prepare_args("--preset", "paper")) == PrepareConfig()
    # a fixed HU window asked for on the command line means the paper's window-then-equalize pipeline
    fixed = config_from_args(_prepare_args("--hu-window", "-100", "200"))
    assert fixed.hu_window == (-100.0, 200.0) and fixed.equalize and fixed.liver_window is None
    assert config_from_args(_prepare_args("--preset", "paper", "--liver-window", "150")).liver_window == 150.0
    assert config_from_args(_prepare_args("--size", "64")).size == 64
