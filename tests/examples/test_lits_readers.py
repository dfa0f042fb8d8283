"""The data set layouts of ``examples.lits.cases``: MSD Task03_Liver, 3D-IRCADb, CHAOS CT, and DICOM series.

Each layout is built in ``tmp_path`` from a known volume: a DICOM series must read as the NIfTI file of the same
scan does (array, affine, labels), ``prepare`` must give the same slices from either, and each kind of bad input
must be refused naming its file or folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

nib = pytest.importorskip("nibabel", reason="the lits example needs the 'lits' extra (nibabel)")

from examples.lits.cases import (PrepareError, case_checksum, find_cases, load_labelled_case, load_nifti,  # noqa: E402
                                 load_volume)
from examples.lits.phantom import make_case  # noqa: E402
from examples.lits.prepare import prepare  # noqa: E402
from examples.lits.preprocess import PrepareConfig  # noqa: E402
from examples.lits.volumes import load_prepared_volume  # noqa: E402

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
ROW_SPACING, COLUMN_SPACING, STEP = 0.8, 0.7, 2.5
ORIGIN = (-12.0, 30.0, 100.0)  # first slice's ImagePositionPatient (L, P, S)


@pytest.fixture
def pydicom():
    return pytest.importorskip("pydicom", reason="DICOM layouts need the 'dicom' extra (pip install pydicom)")


def _write_series(folder, volume, *, orientation=AXIAL, slope=1.0, intercept=-1024.0, uid="1.2.3.4",
                  names=lambda n: f"image_{n}", spacing=(ROW_SPACING, COLUMN_SPACING), step=STEP, origin=ORIGIN,
                  skip=(), overrides=None):
    """Write ``volume`` (columns, rows, slices: the HU) as a DICOM series, slice ``k`` at ``origin + k * step``
    along the normal, the files named in the opposite order and numbered out of order (so that neither tells the
    slice order). Returns the files in slice order."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    folder.mkdir(parents=True, exist_ok=True)
    x, y = np.array(orientation[:3]), np.array(orientation[3:])
    normal = np.cross(x, y)
    n = volume.shape[2]
    files = []
    for k in range(n):
        if k in skip:
            continue
        stored = np.rint((volume[:, :, k].T - intercept) / slope).astype(np.uint16)  # rows x columns
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = f"{uid}.{k + 1}"
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID, ds.SeriesInstanceUID = CTImageStorage, f"{uid}.{k + 1}", uid
        ds.Modality = "CT"
        ds.InstanceNumber = (7 * k) % n + 1
        ds.Rows, ds.Columns = stored.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelSpacing = [f"{s:g}" for s in spacing]
        ds.ImageOrientationPatient = [f"{v:g}" for v in orientation]
        ds.ImagePositionPatient = [f"{v:.4f}" for v in np.array(origin) + k * step * normal]
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:g}", f"{intercept:g}"
        for key, value in (overrides or {}).get(k, {}).items():
            setattr(ds, key, value)
        ds.PixelData = stored.tobytes()
        path = folder / names(n - 1 - k)
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def _expected_affine(orientation=AXIAL):
    """The RAS affine of :func:`_write_series`'s geometry, by DICOM's Image Plane equation with L, P negated."""
    x, y = np.array(orientation[:3]), np.array(orientation[3:])
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = x * COLUMN_SPACING, y * ROW_SPACING, np.cross(x, y) * STEP, ORIGIN
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def _save_nifti(path, data, affine):
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def _scan(shape=(16, 12, 6), seed=0):
    """A small CT in HU (columns, rows, slices): air, water and bone, every voxel different."""
    rng = np.random.default_rng(seed)
    return rng.integers(-1000, 1500, shape).astype(np.int16)


def _phantom(n_tumors=1, seed=0):
    """A phantom case in the voxel order a DICOM series reads into (columns, rows, slices) with its LiTS labels."""
    case = make_case(shape=(48, 48, 8), seed=seed, n_tumors=n_tumors)
    labels = np.where(case.tumor, 2, np.where(case.liver, 1, 0)).astype(np.uint8)
    return case.hu, labels


# ------------------------------------------------------------------------------------------- DICOM series


@pytest.mark.parametrize("orientation", [AXIAL, CORONAL], ids=["axial", "coronal"])
@pytest.mark.parametrize("slope, intercept", [(1.0, -1024.0), (0.5, -1000.0)])
def test_a_dicom_series_reads_as_its_nifti_conversion(pydicom, tmp_path, orientation, slope, intercept):
    hu = _scan()
    if slope != 1:
        hu = hu // 2 * 2  # representable with slope 0.5 from an integer offset
    files = _write_series(tmp_path / "series", hu, orientation=orientation, slope=slope, intercept=intercept)
    nifti = _save_nifti(tmp_path / "scan.nii.gz", hu, _expected_affine(orientation))
    data, affine = load_volume(tmp_path / "series")
    expected, expected_affine = load_nifti(nifti)
    np.testing.assert_array_equal(data, expected)
    np.testing.assert_allclose(affine, expected_affine, atol=1e-4)
    # And voxel by voxel against DICOM's own equation: pixel (r, c) of a file lies at IPP + c dc X + r dr Y (LPS).
    x, y = np.array(orientation[:3]), np.array(orientation[3:])
    for path in files[::2]:
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array * slope + intercept
        for r, c in ((0, 0), (3, 5), (11, 15)):
            lps = np.array(ds.ImagePositionPatient, float) + c * COLUMN_SPACING * x + r * ROW_SPACING * y
            voxel = np.linalg.solve(affine, np.r_[-lps[0], -lps[1], lps[2], 1])[:3]
            assert np.allclose(voxel, np.rint(voxel), atol=1e-3)
            assert data[tuple(np.rint(voxel).astype(int))] == pixels[r, c]


def test_integer_ct_values_stay_int16_and_float_rescaling_stays_exact(pydicom, tmp_path):
    hu = _scan()
    _write_series(tmp_path / "int", hu)
    assert load_volume(tmp_path / "int")[0].dtype == np.int16
    _write_series(tmp_path / "float", hu.astype(np.float64) + 0.25, slope=0.25, intercept=-1023.75)
    np.testing.assert_allclose(load_volume(tmp_path / "float")[0], hu + 0.25)


def test_without_pydicom_a_dicom_folder_says_which_extra_to_install(tmp_path, monkeypatch):
    (tmp_path / "series").mkdir()
    (tmp_path / "series" / "image_0").write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "pydicom", None)  # import pydicom -> ImportError
    with pytest.raises(ImportError, match=r"pip install pseudoanomaly\[dicom\]"):
        load_volume(tmp_path / "series")


def test_the_commands_import_without_pydicom():
    code = ("import sys; sys.modules['pydicom'] = None; from examples.lits import cases, prepare, lesions, segment; "
            "print('examples.lits.dicom' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------------------------------- MSD


def _msd(root, n=2):
    for folder in ("imagesTr", "labelsTr", "imagesTs"):
        (root / folder).mkdir(parents=True)
    pairs = []
    for i in range(n):
        hu, labels = _phantom(seed=i)
        affine = np.diag([0.8, 0.8, 2.5, 1.0])
        image = _save_nifti(root / "imagesTr" / f"liver_{i}.nii.gz", hu, affine)
        label = _save_nifti(root / "labelsTr" / f"liver_{i}.nii.gz", labels, affine)
        (root / "imagesTr" / f"._liver_{i}.nii.gz").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
        pairs.append((image, label))
    _save_nifti(root / "imagesTs" / "liver_100.nii.gz", _scan(), np.eye(4))
    return pairs


def test_msd_reads_training_pairs_only_and_decodes_as_lits(tmp_path):
    pairs = _msd(tmp_path / "Task03_Liver")
    cases = find_cases("msd", tmp_path / "Task03_Liver")
    assert [c.case_id for c in cases] == ["liver_0", "liver_1"]  # no imagesTs, no ._ files
    assert [(c.image, c.label) for c in cases] == pairs
    hu, affine, liver, tumor = load_labelled_case(cases[0], (1,), (2,))
    labels = np.asarray(nib.load(pairs[0][1]).dataobj)
    np.testing.assert_array_equal(liver, labels >= 1)
    np.testing.assert_array_equal(tumor, labels == 2)
    assert tumor.any()


def test_msd_refuses_a_label_value_it_does_not_use_and_a_missing_label(tmp_path):
    pairs = _msd(tmp_path / "msd")
    labels = np.asarray(nib.load(pairs[0][1]).dataobj).copy()
    labels[0, 0, 0] = 3
    _save_nifti(pairs[0][1], labels, np.diag([0.8, 0.8, 2.5, 1.0]))
    pairs[1][1].unlink()
    cases = find_cases("msd", tmp_path / "msd")
    with pytest.raises(PrepareError, match=r"values \[3\]; this layout uses only \[0, 1, 2\]") as info:
        load_labelled_case(cases[0], (1,), (2,))
    assert info.value.path == str(pairs[0][1])
    with pytest.raises(PrepareError, match="label .*file not found"):
        load_labelled_case(cases[1], (1,), (2,))


# ------------------------------------------------------------------------------------------- 3D-IRCADb


def _ircadb(root, patient, hu, labels, tumors=2, tumor_folder="livertumor{:02d}"):
    """A 3D-IRCADb patient folder: the scan, the liver mask, one mask per tumour (0 / 255), a cyst and a bone mask."""
    folder = root / f"3Dircadb1.{patient}"
    uid = f"1.2.{patient}"
    _write_series(folder / "PATIENT_DICOM", hu, uid=uid)
    masks = folder / "MASKS_DICOM"
    _write_series(masks / "liver", np.where(labels >= 1, 255, 0), intercept=0, uid=uid + ".1")
    tumor_parts = np.array_split(np.flatnonzero(labels == 2), tumors) if tumors else []
    for t, part in enumerate(tumor_parts):
        mask = np.zeros(labels.size, np.uint8)
        mask[part] = 255
        _write_series(masks / tumor_folder.format(t + 1), mask.reshape(labels.shape), intercept=0, uid=f"{uid}.{t + 2}")
    _write_series(masks / "liverkyst01", np.where(labels == 1, 255, 0), intercept=0, uid=uid + ".8")  # not tumour
    _write_series(masks / "bone", np.where(hu > 1000, 255, 0), intercept=0, uid=uid + ".9")
    return folder


def test_ircadb_patients_read_as_their_lits_nifti_pair(pydicom, tmp_path):
    root = tmp_path / "3Dircadb1"
    expected = {}
    for patient, (n_tumors, folders) in enumerate([(1, 2), (0, 0), (1, 1)], start=1):
        hu, labels = _phantom(n_tumors=n_tumors, seed=patient)
        _ircadb(root, patient, hu, labels, tumors=folders,
                tumor_folder="livertumors" if folders == 1 else "livertumor{:02d}")
        affine = _expected_affine()
        expected[f"3Dircadb1.{patient}"] = (_save_nifti(tmp_path / f"volume-{patient}.nii", hu, affine),
                                            _save_nifti(tmp_path / f"segmentation-{patient}.nii", labels, affine))
    cases = find_cases("ircadb", root)
    assert [c.case_id for c in cases] == ["3Dircadb1.1", "3Dircadb1.2", "3Dircadb1.3"]
    for case in cases:
        image, label = expected[case.case_id]
        from_dicom = load_labelled_case(case, (1,), (2,))
        from_nifti = load_labelled_case(type(case)(case.case_id, image, label), (1,), (2,))
        np.testing.assert_allclose(from_dicom[1], from_nifti[1], atol=1e-4)  # affine
        for a, b in zip(from_dicom[::2] + from_dicom[3:], from_nifti[::2] + from_nifti[3:]):  # hu, liver, tumor
            np.testing.assert_array_equal(a, b)
    assert load_labelled_case(cases[1], (1,), (2,))[3].sum() == 0  # no tumour folder: a healthy liver


def test_ircadb_refuses_a_missing_liver_mask_a_non_binary_mask_and_zipped_folders(pydicom, tmp_path):
    hu, labels = _phantom()
    folder = _ircadb(tmp_path, 1, hu, labels, tumors=1)
    case = find_cases("ircadb", tmp_path)[0]
    bad = folder / "MASKS_DICOM" / "livertumor01"
    _write_series(bad, np.where(labels == 2, 128, 0), intercept=0, uid="1.2.1.2")
    with pytest.raises(PrepareError, match=r"tumour mask holds values \[128\]") as info:
        load_labelled_case(case, (1,), (2,))
    assert info.value.path == str(bad)
    shutil.rmtree(folder / "MASKS_DICOM" / "liver")
    with pytest.raises(PrepareError, match="liver mask folder not found"):
        load_labelled_case(case, (1,), (2,))
    zipped = tmp_path / "zipped" / "3Dircadb1.4"
    zipped.mkdir(parents=True)
    (zipped / "PATIENT_DICOM.zip").write_bytes(b"PK")
    with pytest.raises(PrepareError, match="unzip"):
        find_cases("ircadb", tmp_path / "zipped")


# ------------------------------------------------------------------------------------------- CHAOS


def _chaos(root, case, hu, liver):
    """A CHAOS CT case: ``i0000,0000b.dcm`` ... named from the top slice down (as CHAOS's are), a liver PNG per
    file with the same number."""
    folder = root / "Train_Sets" / "CT" / str(case)
    files = _write_series(folder / "DICOM_anon", hu, uid=f"1.3.{case}", names=lambda n: f"i{n:04d},0000b.dcm")
    (folder / "Ground").mkdir()
    for k, path in enumerate(files):
        number = int(path.name[1:5])
        cv2.imwrite(str(folder / "Ground" / f"liver_GT_{number:03d}.png"), np.where(liver[:, :, k].T, 255, 0)
                    .astype(np.uint8))
    return folder


def test_chaos_pairs_each_png_with_the_dicom_file_of_its_number(pydicom, tmp_path):
    hu, labels = _phantom(n_tumors=0)
    liver = labels >= 1
    folder = _chaos(tmp_path / "CHAOS", 2, hu, liver)
    _chaos(tmp_path / "CHAOS", 10, hu, liver)
    (tmp_path / "CHAOS" / "Train_Sets" / "MR" / "1" / "T2SPIR" / "DICOM_anon").mkdir(parents=True)  # not CT
    (tmp_path / "CHAOS" / "Test_Sets" / "CT" / "11" / "DICOM_anon").mkdir(parents=True)  # no ground truth
    cases = find_cases("chaos", tmp_path / "CHAOS")
    assert [c.case_id for c in cases] == ["chaos-ct-2", "chaos-ct-10"]
    assert cases[0].image == folder / "DICOM_anon" and cases[0].label == folder / "Ground"
    hu_read, affine, liver_read, tumor = load_labelled_case(cases[0], (1,), ())
    np.testing.assert_array_equal(hu_read, hu)
    np.testing.assert_array_equal(liver_read, liver)
    np.testing.assert_allclose(affine, _expected_affine(), atol=1e-4)
    assert tumor is None
    assert case_checksum(cases[0], "label") == case_checksum(cases[1], "label")  # same names and bytes
    (folder / "Ground" / "liver_GT_003.png").unlink()
    with pytest.raises(PrepareError, match="holds 7 PNG masks for the 8 DICOM slices"):
        load_labelled_case(cases[0], (1,), ())


def test_chaos_refuses_a_mask_value_that_is_not_0_or_255(pydicom, tmp_path):
    hu, labels = _phantom(n_tumors=0)
    folder = _chaos(tmp_path, 1, hu, labels >= 1)
    png = folder / "Ground" / "liver_GT_004.png"
    cv2.imwrite(str(png), np.full((48, 48), 7, np.uint8))
    with pytest.raises(PrepareError, match=r"liver mask holds values \[7\] besides \[0, 1, 255\]") as info:
        load_labelled_case(find_cases("chaos", tmp_path)[0], (1,), ())
    assert info.value.path == str(png)


# ------------------------------------------------------------------------------------------- prepare


def test_prepare_gives_the_same_slices_from_dicom_as_from_nifti_and_reruns_up_to_date(pydicom, tmp_path):
    hu, labels = _phantom(n_tumors=1)
    _ircadb(tmp_path / "ircadb", 1, hu, labels, tumors=1)
    (tmp_path / "lits").mkdir()
    _save_nifti(tmp_path / "lits" / "volume-1.nii.gz", hu, _expected_affine())
    _save_nifti(tmp_path / "lits" / "segmentation-1.nii.gz", labels, _expected_affine())
    config = PrepareConfig(size=64, min_liver_pixels=20)
    summary = prepare("ircadb", tmp_path / "ircadb", tmp_path / "out-dicom", config, progress=False)
    prepare("lits", tmp_path / "lits", tmp_path / "out-nifti", config, progress=False)
    assert summary.prepared == ["3Dircadb1.1"] and summary.slices > 0
    a = load_prepared_volume(tmp_path / "out-dicom" / "volumes" / "3Dircadb1.1.npz")
    b = load_prepared_volume(tmp_path / "out-nifti" / "volumes" / "volume-1.npz")
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.liver, b.liver)
    np.testing.assert_array_equal(a.tumor, b.tumor)
    assert a.tumor.any() and a.geometry.axcodes == b.geometry.axcodes
    again = prepare("ircadb", tmp_path / "ircadb", tmp_path / "out-dicom", config, progress=False)
    assert again.up_to_date == ["3Dircadb1.1"] and again.prepared == []


# ------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("layout", ["msd", "ircadb", "chaos"])
def test_a_folder_with_no_scans_is_named(tmp_path, layout):
    with pytest.raises(PrepareError, match=f"no {layout} volumes found|no such folder") as info:
        find_cases(layout, tmp_path)
    assert str(tmp_path) in str(info.value)


def test_a_folder_mixing_layouts_is_refused(tmp_path):
    _msd(tmp_path, n=1)
    _save_nifti(tmp_path / "volume-0.nii.gz", _scan(), np.eye(4))
    for layout, other in (("msd", "lits"), ("lits", "msd")):
        with pytest.raises(PrepareError, match=f"another layout than {layout}: {other}"):
            find_cases(layout, tmp_path)


def test_scans_without_a_liver_mask_are_named(pydicom, tmp_path):
    hu, labels = _phantom(n_tumors=0)
    folder = _chaos(tmp_path, 1, hu, labels >= 1)
    shutil.rmtree(folder / "Ground")
    case = find_cases("chaos", tmp_path)[0]
    with pytest.raises(PrepareError, match="liver mask folder not found") as info:
        load_labelled_case(case, (1,), ())
    assert info.value.path == str(folder / "Ground")
    summary = prepare("chaos", tmp_path, tmp_path / "out", skip_bad=True, progress=False)
    assert [s["case_id"] for s in summary.skipped] == ["chaos-ct-1"]


@pytest.mark.parametrize("kind, match", [
    ("two series", r"holds 2 DICOM series \(SeriesInstanceUID 1\.2\.3\.4 \(6 files\), 9\.9 \(1 files\)\)"),
    ("gap", r"slices missing between image_3 and image_1: a step of 5 mm where the median step is 2\.5 mm"),
    ("spacing", r"PixelSpacing \[0\.9, 0\.7\] differs"),
    ("orientation", r"ImageOrientationPatient \[1\.0, 0\.0, 0\.0, 0\.0, 0\.0, -1\.0\] differs"),
    ("pixels", r"slice is 10 x 16 pixels, image_0 is 12 x 16"),
    ("same position", r"lie at the same position"),
])
def test_a_dicom_folder_that_is_not_one_clean_series_is_refused(pydicom, tmp_path, kind, match):
    hu, folder = _scan(), tmp_path / "series"
    if kind == "two series":
        _write_series(folder, hu)
        _write_series(tmp_path / "other", hu[:, :, :1], uid="9.9", names=lambda n: "other_0", origin=(0, 0, 0))
        (tmp_path / "other" / "other_0").rename(folder / "other_0")
    elif kind == "gap":
        _write_series(folder, hu, skip=(3,))
    elif kind == "same position":
        _write_series(folder, hu, overrides={4: {"ImagePositionPatient": ["-12", "30", "107.5"]}})
    else:
        override = {"spacing": {"PixelSpacing": ["0.9", "0.7"]},
                    "orientation": {"ImageOrientationPatient": ["1", "0", "0", "0", "0", "-1"]}}.get(kind)
        if kind == "pixels":
            _write_series(folder, hu)
            _write_series(tmp_path / "small", hu[:, :10], names=lambda n: f"image_{n}")
            (tmp_path / "small" / "image_2").replace(folder / "image_2")
        else:
            _write_series(folder, hu, overrides={2: override})
    with pytest.raises(PrepareError, match=match) as info:
        load_volume(folder)
    assert str(folder) in str(info.value)


# ------------------------------------------------------------------------------------------- segment


def test_segment_maps_a_dicom_series_as_its_nifti_copy(pydicom, tmp_path):
    from examples.lits.__main__ import main
    from examples.lits.phantom import make_cohort
    from examples.lits.segment import segment

    cohort = make_cohort(tmp_path / "cohort", n_healthy=1, n_tumor=0, shape=(48, 48, 8), seed=0)
    prepare("btcv", cohort.btcv_root, tmp_path / "train", PrepareConfig(size=32, crop="volume"), progress=False)
    tiny = ["--preset", "demo", "--size", "32", "--width", "4", "--steps-restoration", "1", "--steps-segmentation",
            "1", "--batch-size", "2", "--no-progress"]
    assert main(["--threads", "1", "train", "--data", str(tmp_path / "train"), "--out", str(tmp_path / "run"),
                 *tiny]) == 0
    hu, labels = _phantom(n_tumors=1)
    patient = _ircadb(tmp_path / "ircadb", 1, hu, labels, tumors=1)
    image = _save_nifti(tmp_path / "ct.nii.gz", hu, _expected_affine())
    liver = _save_nifti(tmp_path / "liver.nii.gz", (labels >= 1).astype(np.uint8), _expected_affine())
    from_dicom = segment(tmp_path / "run", patient / "PATIENT_DICOM", patient / "MASKS_DICOM" / "liver",
                         tmp_path / "dicom.nii.gz", device="cpu")
    from_nifti = segment(tmp_path / "run", image, liver, tmp_path / "nifti.nii.gz", device="cpu")
    assert from_dicom.slices == from_nifti.slices > 0
    a, b = nib.load(from_dicom.out), nib.load(from_nifti.out)
    np.testing.assert_array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-4)
    assert int(a.header["sform_code"]) == 1  # scanner coordinates, as the series' positions are


# ------------------------------------------------------------------------------------------- lesions


def test_lesions_go_into_a_chaos_scan_on_its_own_grid(pydicom, tmp_path):
    from examples.lits.lesions import make_lesion_set

    case = make_case(shape=(96, 96, 16), seed=0)
    _chaos(tmp_path / "chaos", 1, case.hu, case.liver)
    summary = make_lesion_set("chaos", tmp_path / "chaos", tmp_path / "lesions", copies=1, sizes=("small",),
                              progress=False)
    assert summary.volumes == 1 and summary.lesions >= 1
    volume, segmentation = nib.load(tmp_path / "lesions" / "volume-0.nii.gz"), nib.load(
        tmp_path / "lesions" / "segmentation-0.nii.gz")
    np.testing.assert_allclose(volume.affine, _expected_affine(), atol=1e-4)
    assert int(volume.header["sform_code"]) == 1
    seg = np.asarray(segmentation.dataobj)
    np.testing.assert_array_equal(seg >= 1, case.liver)
    hu = np.asarray(volume.dataobj)
    np.testing.assert_array_equal(hu[~case.liver], case.hu[~case.liver])  # the scan is unchanged outside the liver
    assert (hu[seg == 2] != case.hu[seg == 2]).any()


@pytest.mark.parametrize("stored, slope, inter, expected", [
    (np.int16, 1.0, -1024.0, np.int16),  # as DICOM conversions often write CT
    (np.uint16, 2.0, -2048.0, np.int16),
    (np.uint16, 1.0, -32768.0, np.int32),  # beyond int16 on the way: int32
    (np.int16, 1.0, -1024.5, np.float64),  # a fractional intercept: nibabel's float64, as before
    (np.int16, 0.5, 0.0, np.float64),
])
def test_scaled_integer_nifti_reads_as_exact_integers(tmp_path, stored, slope, inter, expected):
    """An integer file with an integer slope and intercept reads as the same values in int16 / int32, not in
    nibabel's float64 (4x the file's memory for int16), and prepares to the same slices bit for bit."""
    rng = np.random.default_rng(0)
    low = 30000 if inter == -32768.0 else (0 if np.dtype(stored).kind == "u" else -1000)
    raw = rng.integers(low, low + 3000, (48, 40, 16)).astype(stored)
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    image = nib.Nifti1Image(raw, affine)
    image.header.set_slope_inter(slope, inter)
    nib.save(image, tmp_path / "ct.nii")
    data, _ = load_nifti(tmp_path / "ct.nii")
    reference = np.asanyarray(nib.load(tmp_path / "ct.nii").dataobj)  # nibabel's own scaling
    assert data.dtype == expected
    assert np.array_equal(data, reference)

    # prepare: the same slices from the scaled file as from the same HU stored as float64 without scaling
    hu = np.full((48, 40, 16), -1000, np.int16)
    hu[8:40, 8:32] = rng.integers(0, 200, (32, 24, 16))
    label = np.zeros(hu.shape, np.uint8)
    label[12:36, 10:30, 2:14] = 1
    scaled = nib.Nifti1Image((hu + 1024).astype(np.int16), affine)
    scaled.header.set_slope_inter(1.0, -1024.0)
    nib.save(scaled, tmp_path / "scaled.nii")
    nib.save(nib.Nifti1Image(hu.astype(np.float64), affine), tmp_path / "plain.nii")
    nib.save(nib.Nifti1Image(label, affine), tmp_path / "label.nii")
    volumes = []
    for name in ("scaled", "plain"):
        for preset in (PrepareConfig(size=16), PrepareConfig(size=16, crop="volume", equalize=False, liver_window=200)):
            out = tmp_path / f"out-{name}-{preset.crop}"
            prepare("pair", None, out, preset, image=tmp_path / f"{name}.nii", mask=tmp_path / "label.nii",
                    progress=False)
            volumes.append(load_prepared_volume(out / "volumes" / f"{name}.npz"))
    for a, b in zip(volumes[:2], volumes[2:]):
        assert a.images.tobytes() == b.images.tobytes() and np.array_equal(a.liver, b.liver)
        assert np.array_equal(a.geometry.boxes, b.geometry.boxes)
