"""``segment -i DIR -o DIR``: a folder of scans, as nnU-Net predicts, with a tiny trained run.

Checks what a user of the outputs relies on: one file per scan in the scan's own grid, LiTS's labels of the lesions
at the run's calibrated threshold by default (or ``--threshold``), the same probabilities as the one-scan command, the picture and ``summary.json``; and that bad
inputs stop with one line naming the file or value before anything is written.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

nib = pytest.importorskip("nibabel")
pytest.importorskip("matplotlib")

from scipy import ndimage  # noqa: E402

from examples.lits.__main__ import main  # noqa: E402
from examples.lits.lesion_output import DEFAULT_MIN_LESION_MM3, DEFAULT_SMOOTHING_MM  # noqa: E402
from pseudoanomaly.postprocess import lesion_mask, smooth_across_slices  # noqa: E402
from pseudoanomaly.training import load_checkpoint  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(["--threads", "1", *(str(a) for a in argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _copy(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


@pytest.fixture
def scans(lits_tiny_run, tmp_path) -> dict[str, Path]:
    """The tumor volumes as ``scans/case-N.nii`` with their masks in ``livers/`` (same names), and again as a
    folder using the naming rule (``beside/case-N.nii`` + ``beside/case-N_liver.nii``)."""
    folders = {"scans": tmp_path / "scans", "livers": tmp_path / "livers", "beside": tmp_path / "beside"}
    for i, (volume, segmentation) in enumerate(lits_tiny_run["tumor"]):
        suffix = "".join(volume.suffixes)
        _copy(volume, folders["scans"] / f"case-{i}{suffix}")
        _copy(segmentation, folders["livers"] / f"case-{i}{suffix}")
        _copy(volume, folders["beside"] / f"case-{i}{suffix}")
        _copy(segmentation, folders["beside"] / f"case-{i}_liver{suffix}")
    return {**folders, "run": lits_tiny_run["run"], "suffix": suffix}


def test_folder_with_threshold_writes_lits_label_maps_in_each_scans_grid(scans, tmp_path, capsys):
    # lesion post-processing off: the label map is exactly the voxel-wise cut
    out = tmp_path / "predictions"
    code, stdout, _ = cli(capsys, "segment", "--run", scans["run"], "-i", scans["scans"], "--livers",
                          scans["livers"], "-o", out, "--threshold", "0.3", "--min-lesion-mm3", "0",
                          "--grow-threshold", "none", "--slice-smoothing-mm", "0", "--save-probabilities", "--png")
    assert code == 0
    names = sorted(p.name for p in scans["scans"].iterdir())
    assert len(names) == 2
    for name in names:
        case = name.split(".")[0]
        assert f"{case}:" in stdout  # one line per case
        source = nib.load(scans["scans"] / name)
        labels = nib.load(out / name)
        probability = nib.load(out / f"{case}_probabilities.nii.gz")
        for written in (labels, probability):
            assert written.shape == source.shape
            np.testing.assert_allclose(written.affine, source.affine, atol=1e-6)
        values = np.asarray(labels.dataobj)
        p = np.asarray(probability.dataobj)
        liver = np.asarray(nib.load(scans["livers"] / name).dataobj) > 0
        assert values.dtype == np.uint8 and set(np.unique(values)) <= {0, 1, 2}
        assert np.array_equal(values > 0, liver)  # 1 or 2 exactly on the liver
        assert np.array_equal(values == 2, p > 0.3)  # tumor where the probability passes the threshold
        assert p.dtype == np.float32 and p.min() >= 0 and p.max() <= 1 and not p[~liver].any()
        picture = out / f"{case}.png"
        assert picture.read_bytes()[:8] == PNG_MAGIC and picture.stat().st_size > 1000
    summary = json.loads((out / "summary.json").read_text())
    assert summary["threshold"] == 0.3 and summary["output"] == "labels"
    assert summary["labels"] == {"background": 0, "liver": 1, "tumor": 2}
    assert [Path(row["out"]).name for row in summary["cases"]] == names
    for row in summary["cases"]:
        labels = np.asarray(nib.load(row["out"]).dataobj)
        voxel_ml = float(np.prod(nib.load(row["out"]).header.get_zooms()[:3])) / 1000
        assert row["tumor_ml"] == pytest.approx((labels == 2).sum() * voxel_ml)
        assert row["liver_ml"] == pytest.approx((labels > 0).sum() * voxel_ml)
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary left


def test_default_output_is_lesions_at_the_runs_calibrated_threshold(scans, tmp_path, capsys):
    out = tmp_path / "lesions"
    code, stdout, _ = cli(capsys, "segment", "--run", scans["run"], "-i", scans["scans"], "--livers",
                          scans["livers"], "-o", out, "--save-probabilities")
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    meta = load_checkpoint(Path(scans["run"]) / "segmenter.pt")["config"]
    settings = summary["lesion_output"]
    assert summary["output"] == "labels"
    assert settings["threshold"] == meta["calibration"]["threshold"] == summary["threshold"]
    assert settings["min_volume_mm3"] == DEFAULT_MIN_LESION_MM3 and "calibrated on training" in settings["source"]
    assert settings["smoothing_mm"] == DEFAULT_SMOOTHING_MM > 0
    for row in summary["cases"]:
        labels = nib.load(row["out"])
        p = np.asarray(nib.load(row["probabilities"]).dataobj)
        spacing = nib.affines.voxel_sizes(labels.affine)
        axis = int(np.flatnonzero(nib.orientations.io_orientation(labels.affine)[:, 0] == 2)[0])
        smoothed = smooth_across_slices(p, axis, settings["smoothing_mm"], spacing)
        expected = lesion_mask(smoothed, settings["threshold"], spacing=spacing,
                               min_volume_mm3=settings["min_volume_mm3"], grow_threshold=settings["grow_threshold"])
        assert np.array_equal(np.asarray(labels.dataobj) == 2, expected)
        assert row["lesions"] == ndimage.label(expected, np.ones((3, 3, 3)))[1]
        assert f"{row['case']}: " in stdout and f"{row['lesions']} lesion" in stdout


def test_folder_with_probabilities_gives_the_one_scan_probabilities(scans, tmp_path, capsys):
    # The naming rule (<case>_liver beside each scan): the masks are not taken for scans.
    out = tmp_path / "maps"
    code, _, _ = cli(capsys, "segment", "--run", scans["run"], "-i", scans["beside"], "-o", out, "--probabilities")
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [row["case"] for row in summary["cases"]] == ["case-0", "case-1"]
    assert summary["output"] == "probabilities" and summary["threshold"] is None
    name = f"case-0{scans['suffix']}"
    single = tmp_path / "single.nii.gz"
    assert cli(capsys, "segment", "--run", scans["run"], "--image", scans["beside"] / name, "--liver",
               scans["beside"] / f"case-0_liver{scans['suffix']}", "--out", single, "--probabilities")[0] == 0
    folder_map = np.asarray(nib.load(out / name).dataobj)
    assert folder_map.dtype == np.float32
    np.testing.assert_array_equal(folder_map, np.asarray(nib.load(single).dataobj))
    assert sorted(p.name for p in out.iterdir()) == sorted([f"case-0{scans['suffix']}", f"case-1{scans['suffix']}",
                                                             "summary.json"])


def test_one_scan_through_i_writes_into_the_folder(scans, tmp_path, capsys):
    out = tmp_path / "one"
    name = f"case-1{scans['suffix']}"
    code, stdout, _ = cli(capsys, "segment", "--run", scans["run"], "-i", scans["scans"] / name, "--livers",
                          scans["livers"], "-o", out, "--threshold", "0.5")
    assert code == 0 and stdout.count("case-1:") == 1
    assert sorted(p.name for p in out.iterdir()) == sorted([name, "summary.json"])


def _bad(scans, tmp_path, case):
    empty = tmp_path / "no-scans"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a scan")
    lonely = tmp_path / "lonely"
    _copy(scans["scans"] / f"case-0{scans['suffix']}", lonely / f"case-0{scans['suffix']}")
    late = tmp_path / "late"  # the second case's mask is of another grid: found before the first is written
    for i in range(2):
        _copy(scans["scans"] / f"case-{i}{scans['suffix']}", late / "scans" / f"case-{i}{scans['suffix']}")
    _copy(scans["livers"] / f"case-0{scans['suffix']}", late / "livers" / f"case-0{scans['suffix']}")
    mask = nib.load(scans["livers"] / f"case-1{scans['suffix']}")
    nib.save(nib.Nifti1Image(np.asarray(mask.dataobj)[:, :, :-1], mask.affine),
             late / "livers" / f"case-1{scans['suffix']}")
    return {
        "mask-of-another-shape": (["-i", late / "scans", "--livers", late / "livers", "-o", tmp_path / "out"],
                                  str(late / "livers" / f"case-1{scans['suffix']}")),
        "empty-folder": (["-i", empty, "-o", tmp_path / "out"], str(empty)),
        "missing-folder": (["-i", tmp_path / "nothing", "-o", tmp_path / "out"], str(tmp_path / "nothing")),
        "scan-without-liver": (["-i", lonely, "-o", tmp_path / "out"], str(lonely / f"case-0{scans['suffix']}")),
        "scan-without-liver-in-livers": (["-i", scans["scans"], "--livers", tmp_path / "no-scans", "-o",
                                          tmp_path / "out"], "no liver mask"),
        "save-probabilities-of-probabilities": (["-i", scans["scans"], "--livers", scans["livers"], "-o",
                                                 tmp_path / "out", "--save-probabilities", "--probabilities"],
                                                "--probabilities"),
        "lesion-flag-on-probabilities": (["-i", scans["scans"], "--livers", scans["livers"], "-o", tmp_path / "out",
                                          "--probabilities", "--min-lesion-mm3", "50"], "min_lesion_mm3"),
        "min-lesion-larger-than-a-liver": (["-i", scans["scans"], "--livers", scans["livers"], "-o",
                                            tmp_path / "out", "--min-lesion-mm3", "1e9"], "min_lesion_mm3=1e+09"),
        "grow-above-threshold": (["-i", scans["scans"], "--livers", scans["livers"], "-o", tmp_path / "out",
                                  "--threshold", "0.4", "--grow-threshold", "0.6"], "grow_threshold"),
        "smoothing-on-probabilities": (["-i", scans["scans"], "--livers", scans["livers"], "-o", tmp_path / "out",
                                        "--probabilities", "--slice-smoothing-mm", "1"], "slice_smoothing_mm"),
        "output-replaces-input": (["-i", scans["beside"], "-o", scans["beside"]], "replace an input"),
        "folder-and-one-scan": (["-i", scans["scans"], "-o", tmp_path / "out", "--image",
                                 scans["scans"] / f"case-0{scans['suffix']}"], "--image"),
        "folder-without-output": (["-i", scans["scans"], "--livers", scans["livers"]], "-o"),
    }[case]


@pytest.mark.parametrize("case", ["mask-of-another-shape", "empty-folder", "missing-folder", "scan-without-liver",
                                  "scan-without-liver-in-livers", "save-probabilities-of-probabilities",
                                  "lesion-flag-on-probabilities", "min-lesion-larger-than-a-liver",
                                  "grow-above-threshold", "smoothing-on-probabilities",
                                  "output-replaces-input", "folder-and-one-scan", "folder-without-output"])
def test_bad_folder_inputs_stop_with_one_line_before_writing(scans, tmp_path, capsys, case):
    argv, named = _bad(scans, tmp_path, case)
    before = {p: p.read_bytes() for p in scans["beside"].iterdir()}
    code, stdout, err = cli(capsys, "segment", "--run", scans["run"], *argv)
    assert code == 1 and named in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()  # nothing written, not even the folder
    assert {p: p.read_bytes() for p in scans["beside"].iterdir()} == before


@pytest.mark.parametrize("flag, value", [("--min-lesion-mm3", "-1"), ("--min-lesion-mm3", "nan"),
                                         ("--slice-smoothing-mm", "-2"), ("--grow-threshold", "1.5")])
def test_lesion_flags_out_of_range_are_refused_while_parsing(scans, tmp_path, capsys, flag, value):
    with pytest.raises(SystemExit) as stop:
        cli(capsys, "segment", "--run", scans["run"], "-i", scans["scans"], "--livers", scans["livers"], "-o",
            tmp_path / "out", flag, value)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and f"argument {flag}: must be" in err and repr(value) in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", ["0", "1", "1.5", "-0.2", "nan", "half"])
def test_threshold_outside_the_open_unit_interval_is_refused_while_parsing(scans, tmp_path, capsys, value):
    with pytest.raises(SystemExit) as stop:
        cli(capsys, "segment", "--run", scans["run"], "-i", scans["scans"], "--livers", scans["livers"], "-o",
            tmp_path / "out", "--threshold", value)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "argument --threshold: must be" in err and repr(value) in err
    assert not (tmp_path / "out").exists()


def test_nnunet_named_scans_are_cases_without_the_channel_suffix(scans, tmp_path, capsys):
    # nnU-Net's layout: imagesTs/case_0000.nii.gz in, case.nii.gz out (and liver masks predicted as case.nii.gz).
    images, livers, out = tmp_path / "imagesTs", tmp_path / "liversTs", tmp_path / "out"
    suffix = scans["suffix"]
    for i in range(2):
        _copy(scans["scans"] / f"case-{i}{suffix}", images / f"liver_{i:03d}_0000{suffix}")
        _copy(scans["livers"] / f"case-{i}{suffix}", livers / f"liver_{i:03d}{suffix}")
    code, stdout, _ = cli(capsys, "segment", "--run", scans["run"], "-i", images, "--livers", livers, "-o", out,
                          "--threshold", "0.5")
    assert code == 0 and "liver_000:" in stdout and "liver_001:" in stdout
    assert sorted(p.name for p in out.iterdir()) == sorted([f"liver_000{suffix}", f"liver_001{suffix}",
                                                             "summary.json"])
    source, labels = nib.load(images / f"liver_001_0000{suffix}"), nib.load(out / f"liver_001{suffix}")
    assert labels.shape == source.shape and np.allclose(labels.affine, source.affine)


def test_bf16_precision_gives_the_fp32_probabilities_within_bfloat16_rounding(scans, tmp_path, capsys):
    written = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        code, _, _ = cli(capsys, "segment", "--run", scans["run"], "-i", scans["scans"], "--livers",
                         scans["livers"], "-o", out, "--precision", precision, "--probabilities")
        assert code == 0
        written[precision] = {p.name: np.asarray(nib.load(p).dataobj) for p in sorted(out.glob("*.nii*"))}
    assert written["fp32"].keys() == written["bf16"].keys() and written["fp32"]
    for name, fp32 in written["fp32"].items():
        bf16 = written["bf16"][name]
        assert bf16.dtype == np.float32 and bf16.shape == fp32.shape
        assert np.array_equal(bf16 > 0, fp32 > 0)  # zero outside the liver either way
        assert np.abs(bf16 - fp32).max() < 0.05 and not np.array_equal(bf16, fp32)


def test_score_reads_a_segment_folder_whose_cases_hold_no_lesion(scans, tmp_path, capsys):
    # segment's default label maps of lesion-free cases hold only 0 and 1: score takes their kind from summary.json
    out = tmp_path / "lesions"
    assert cli(capsys, "segment", "--run", scans["run"], "-i", scans["scans"], "--livers", scans["livers"], "-o",
               out, "--threshold", "0.999")[0] == 0
    assert all(set(np.unique(np.asarray(nib.load(p).dataobj))) <= {0, 1} for p in out.glob("*.nii*"))
    code, _, err = cli(capsys, "score", "--predictions", out, "--truth", scans["livers"], "--out", tmp_path / "s")
    assert code == 0, err
    scores = json.loads((tmp_path / "s" / "scores.json").read_text())
    assert {c["prediction_kind"] for c in scores["cases"]} == {"labels"}
    assert scores["pooled"]["found"] == 0 and scores["pooled"]["lesions"] > 0  # nothing predicted, lesions missed
