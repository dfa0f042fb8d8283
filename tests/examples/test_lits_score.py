"""``score``: NIfTI tumor segmentations against label maps in the scans' own voxel grid.

The cohort is three tiny synthetic cases whose lesions are placed by hand, so every figure asserted below is
counted by hand from the comments (voxels of 2 x 2 x 2.5 mm = 10 mm3 = 0.01 mL).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

nib = pytest.importorskip("nibabel")

from examples.lits.__main__ import main  # noqa: E402
from examples.lits.score import match_lesions, score_folder  # noqa: E402

AFFINE = np.diag([2.0, 2.0, 2.5, 1.0])
AFFINE[:3, 3] = (-10.0, 5.0, 30.0)
SHAPE = (12, 12, 6)
VOXEL_ML = 0.01


def save(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def liver_map() -> np.ndarray:
    label = np.zeros(SHAPE, np.uint8)
    label[:, :, :] = 1  # the whole box is liver: background plays no part in the tumor metrics
    label[:, :, 5] = 0
    return label


def case_one() -> tuple[np.ndarray, np.ndarray]:
    """Truth: lesions L1 (8 voxels), L2 (8), L3 (2). Prediction (probabilities): L1 and 4 voxels beside it (one
    component of 12), one voxel of L2, L3 at exactly 0.5 (not > 0.5: missed), a false component of 8 voxels and a
    false pair of voxels that touch only at a corner (one 26-connected component, two 6-connected ones)."""
    truth = liver_map()
    truth[1:3, 1:3, 1:3] = 2  # L1
    truth[7:9, 7:9, 1:3] = 2  # L2
    truth[1, 8:10, 4] = 2  # L3
    prob = np.zeros(SHAPE, np.float32)
    prob[1:4, 1:3, 1:3] = 0.9  # L1 + 4 voxels
    prob[7, 7, 1] = 0.6  # 1 of L2's 8 voxels
    prob[1, 8:10, 4] = 0.5  # at the threshold: not tumor
    prob[10:12, 0:2, 3:5] = 0.7  # false, 8 voxels
    prob[4, 10, 0] = prob[5, 11, 1] = 0.8  # false, corner-touching pair
    prob[0, 11, 0] = 0.25  # below the threshold
    return prob, truth


def case_two() -> tuple[np.ndarray, np.ndarray]:
    """Truth: one lesion of 5 x 5 x 3 = 75 voxels (750 mm3, equivalent diameter 11.3 mm). Prediction (a LiTS
    label map): the same box shifted by one voxel: 60 voxels overlap."""
    truth = liver_map()
    truth[2:7, 2:7, 1:4] = 2
    pred = liver_map()
    pred[3:8, 2:7, 1:4] = 2
    return pred, truth


@pytest.fixture()
def cohort(tmp_path) -> dict[str, Path]:
    """LiTS names in the truth folder (with a CT volume that must be skipped), three naming styles for the
    predictions; case 3 has no tumor in truth or prediction."""
    truth, preds = tmp_path / "truth", tmp_path / "preds"
    prob, label = case_one()
    save(truth / "segmentation-1.nii", label)
    save(truth / "volume-1.nii.gz", np.full(SHAPE, -500, np.int16))  # a CT: read as truth, it would be refused
    save(preds / "volume-1.nii.gz", prob)
    pred, label = case_two()
    save(truth / "segmentation-2.nii.gz", label)
    save(preds / "2.nii.gz", pred)
    save(truth / "segmentation-3.nii.gz", liver_map())
    save(preds / "segmentation-3.nii.gz", np.zeros(SHAPE, np.uint8))
    save(preds / ".volume-4.nii.gz.123.abcd.tmp.nii.gz", np.zeros(SHAPE, np.uint8))  # a killed segment's temporary
    return {"truth": truth, "preds": preds, "out": tmp_path / "scores"}


def test_scores_of_hand_counted_cases(cohort):
    result = score_folder(cohort["preds"], cohort["truth"], cohort["out"])
    one, two, three = result["cases"]
    assert [c["case"] for c in result["cases"]] == ["1", "2", "3"]
    assert [c["prediction_kind"] for c in result["cases"]] == ["probability", "labels", "mask"]

    # case 1: predicted 12 + 1 + 8 + 2 = 23 voxels, true 8 + 8 + 2 = 18, overlap 8 + 1 = 9
    assert one["voxels"] == {"predicted": 23, "true": 18, "overlap": 9}
    assert one["dice"] == pytest.approx(2 * 9 / (23 + 18))
    assert one["predicted_ml"] == pytest.approx(0.23) and one["true_ml"] == pytest.approx(0.18)
    assert one["volume_error_ml"] == pytest.approx(0.05)
    assert one["volume_error_relative"] == pytest.approx(0.05 / 0.18)
    assert (one["lesions"], one["found"], one["missed"], one["false"]) == (3, 2, 1, 2)
    assert one["precision"] == pytest.approx(2 / 4) and one["recall"] == pytest.approx(2 / 3)
    assert one["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 2))

    # case 2: 75 predicted, 75 true, 60 overlap; no volume error; one 10-20 mm lesion, found
    assert two["dice"] == pytest.approx(2 * 60 / 150)
    assert two["volume_error_ml"] == pytest.approx(0.0) and two["volume_error_relative"] == pytest.approx(0.0)
    assert (two["lesions"], two["found"], two["missed"], two["false"]) == (1, 1, 0, 0)
    assert two["by_size"]["10-20 mm"] == {"lesions": 1, "found": 1, "missed": 0, "false": 0, "recall": 1.0}

    # case 3, no tumor in truth or prediction: Dice 1 by convention, no lesions, no relative volume error
    assert three["dice"] == 1.0
    assert (three["lesions"], three["found"], three["false"]) == (0, 0, 0)
    assert three["precision"] is None and three["recall"] is None and three["volume_error_relative"] is None

    pooled = result["pooled"]
    assert pooled["cases"] == 3
    assert pooled["dice_global"] == pytest.approx(2 * 69 / (98 + 93))  # voxels pooled over the cases
    assert pooled["dice_per_case"] == pytest.approx((18 / 41 + 0.8 + 1.0) / 3)
    assert pooled["dice_global"] != pytest.approx(pooled["dice_per_case"], abs=0.01)
    assert (pooled["lesions"], pooled["found"], pooled["missed"], pooled["false"]) == (4, 3, 1, 2)
    assert pooled["precision"] == pytest.approx(3 / 5) and pooled["recall"] == pytest.approx(3 / 4)
    assert pooled["volume_error_ml"] == pytest.approx(0.05)
    assert pooled["by_size"]["<10 mm"] == {"lesions": 3, "found": 2, "missed": 1, "false": 2,
                                           "recall": pytest.approx(2 / 3)}
    assert pooled["by_size"][">20 mm"]["lesions"] == 0

    written = json.loads((cohort["out"] / "scores.json").read_text())
    assert written["cases"][0]["dice"] == pytest.approx(one["dice"])
    assert written["settings"]["threshold"] == 0.5 and written["settings"]["connectivity"] == 26
    table = (cohort["out"] / "scores.md").read_text()
    assert "| 1 | 0.439 |" in table and "| **pooled (3 cases)** | 0.723 |" in table
    assert not [p for p in cohort["out"].iterdir() if p.name.startswith(".")]  # no temporary or lock left


def test_detection_settings_change_the_counts(cohort):
    six = score_folder(cohort["preds"], cohort["truth"], cohort["out"], connectivity=6)["cases"][0]
    assert six["false"] == 3  # the corner-touching pair is two components under 6-connectivity
    strict = score_folder(cohort["preds"], cohort["truth"], cohort["out"], min_overlap=0.5)["cases"][0]
    assert (strict["found"], strict["missed"]) == (1, 2)  # 1 voxel of L2's 8 is not half of it
    assert strict["false"] == 3  # the voxel on L2 now touches no found lesion
    low = score_folder(cohort["preds"], cohort["truth"], cohort["out"], threshold=0.2)["cases"][0]
    assert low["voxels"]["predicted"] == 23 + 2 + 1  # L3 at 0.5 and the voxel at 0.25 join
    assert (low["found"], low["missed"], low["false"]) == (3, 0, 3)


@pytest.mark.parametrize("truth_tumor, pred_tumor, dice, found, false", [
    (False, True, 0.0, 0, 1),  # tumor predicted in a tumor-free case
    (True, False, 0.0, 0, 0),  # a tumor missed entirely
])
def test_one_sided_empty_cases_score_zero(tmp_path, truth_tumor, pred_tumor, dice, found, false):
    truth, pred = liver_map(), np.zeros(SHAPE, np.uint8)
    if truth_tumor:
        truth[2:4, 2:4, 2] = 2
    if pred_tumor:
        pred[2:4, 2:4, 2] = 1
    save(tmp_path / "t" / "a.nii.gz", truth)
    save(tmp_path / "p" / "a.nii.gz", pred)
    case = score_folder(tmp_path / "p", tmp_path / "t", tmp_path / "o", prediction_kind="mask")["cases"][0]
    assert case["dice"] == dice and (case["found"], case["false"]) == (found, false)
    assert case["lesions"] == int(truth_tumor) and case["missed"] == int(truth_tumor)


def test_size_bins_by_equivalent_diameter():
    # 1 mm voxels: a lesion of n voxels has diameter (6 n / pi)^(1/3) mm
    n_10mm = math.ceil(math.pi / 6 * 10 ** 3)  # 524 voxels: just over 10 mm
    truth = np.zeros((30, 30, 30), bool)
    truth[0:2, 0:2, 0:2] = True  # 8 voxels, 2.5 mm
    truth[5:15, 0:10, 0:5] = True  # 500 voxels, 9.8 mm
    flat = truth[20:30, :, 20:].reshape(-1)
    flat[:n_10mm] = True  # a slab of 524 voxels
    truth[20:30, :, 20:] = flat.reshape(10, 30, 10)
    lesions = match_lesions(np.zeros_like(truth), truth, voxel_mm3=1.0)
    assert lesions.by_size == {"<10 mm": [2, 0, 0], "10-20 mm": [1, 0, 0], ">20 mm": [0, 0, 0]}


def test_command_line(cohort, capsys):
    code = main(["score", "--predictions", str(cohort["preds"]), "--truth", str(cohort["truth"]),
                 "--out", str(cohort["out"]), "--connectivity", "6", "--tumor-labels", "2"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "3 case(s): Dice global 0.723" in out and "found 3/4, false 3" in out
    settings = json.loads((cohort["out"] / "scores.json").read_text())["settings"]
    assert settings["connectivity"] == 6 and settings["tumor_labels"] == [2]


def test_custom_truth_labels(tmp_path):
    truth = np.zeros(SHAPE, np.uint8)
    truth[:, :, :4] = 5  # liver 5, tumor 9
    truth[2:4, 2:4, 1] = 9
    pred = np.zeros(SHAPE, np.uint8)
    pred[2:4, 2:4, 1] = 1
    save(tmp_path / "t" / "x.nii", truth)
    save(tmp_path / "p" / "x.nii", pred)
    code = main(["score", "--predictions", str(tmp_path / "p"), "--truth", str(tmp_path / "t"), "--out",
                 str(tmp_path / "o"), "--liver-label", "5", "--tumor-label", "9", "--prediction-kind", "mask"])
    assert code == 0
    assert json.loads((tmp_path / "o" / "scores.json").read_text())["cases"][0]["dice"] == 1.0


def test_allow_missing_lists_the_unmatched(cohort):
    save(cohort["preds"] / "volume-9.nii.gz", np.zeros(SHAPE, np.float32))
    (cohort["truth"] / "segmentation-3.nii.gz").unlink()
    with pytest.raises(ValueError, match=r"segmentation-3\.nii\.gz: no ground truth .*and 1 more"):
        score_folder(cohort["preds"], cohort["truth"], cohort["out"])
    assert not cohort["out"].exists()
    result = score_folder(cohort["preds"], cohort["truth"], cohort["out"], allow_missing=True)
    assert [c["case"] for c in result["cases"]] == ["1", "2"]
    assert [Path(p).name for p in result["unmatched"]["predictions"]] == ["segmentation-3.nii.gz",
                                                                          "volume-9.nii.gz"]


def test_truth_without_prediction_names_the_file(cohort):
    (cohort["preds"] / "2.nii.gz").unlink()
    with pytest.raises(ValueError, match=r"segmentation-2\.nii\.gz: no prediction"):
        score_folder(cohort["preds"], cohort["truth"], cohort["out"])


# ------------------------------------------------------------------------------------------- bad input


def run(capsys, cohort, *extra) -> tuple[int, str]:
    code = main(["score", "--predictions", str(cohort["preds"]), "--truth", str(cohort["truth"]), "--out",
                 str(cohort["out"]), *extra])
    return code, capsys.readouterr().err


def one_line_error(capsys, cohort, *needles, extra=()) -> None:
    """The command fails with one line naming every needle, and writes nothing."""
    code, err = run(capsys, cohort, *extra)
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("score: error: "), err
    for needle in needles:
        assert needle in err, err
    assert not cohort["out"].exists()


def test_empty_prediction_folder(cohort, capsys):
    for path in cohort["preds"].iterdir():
        path.unlink()
    one_line_error(capsys, cohort, str(cohort["preds"]), "no prediction")


@pytest.mark.parametrize("value", [3, 7])
def test_unexpected_truth_label(cohort, capsys, value):
    _, label = case_two()
    label[0, 0, 0] = value
    path = save(cohort["truth"] / "segmentation-2.nii.gz", label)
    one_line_error(capsys, cohort, str(path), f"unexpected value(s) [{value}]")


def test_negative_truth_label(cohort, capsys):
    _, label = case_two()
    label = label.astype(np.int16)
    label[0, 0, 0] = -1
    path = save(cohort["truth"] / "segmentation-2.nii.gz", label)
    one_line_error(capsys, cohort, str(path), "[-1, 2]")


@pytest.mark.parametrize("value, needle", [(3, "[3]"), (-2, "[-2]")])
def test_unexpected_prediction_label(cohort, capsys, value, needle):
    pred, _ = case_two()
    pred = pred.astype(np.int16)
    pred[0, 0, 0] = value
    path = save(cohort["preds"] / "2.nii.gz", pred)
    one_line_error(capsys, cohort, str(path), needle)


@pytest.mark.parametrize("value, needle", [(1.5, "[0, 1.5]"), (-0.25, "[-0.25, 0.9]"), (np.nan, "NaN")])
def test_bad_probability_map(cohort, capsys, value, needle):
    prob, _ = case_one()
    prob[0, 0, 0] = value
    path = save(cohort["preds"] / "volume-1.nii.gz", prob)
    one_line_error(capsys, cohort, str(path), needle)


def test_ambiguous_binary_map_asks_for_its_kind(cohort, capsys):
    pred = liver_map()  # 0 and 1 only: a liver-only label map, or a tumor mask?
    path = save(cohort["preds"] / "2.nii.gz", pred)
    one_line_error(capsys, cohort, str(path), "--prediction-kind")
    # --prediction-kind holds for every file of the folder: score case 2 alone
    (cohort["preds"] / "volume-1.nii.gz").unlink()
    (cohort["preds"] / "segmentation-3.nii.gz").unlink()
    as_labels = score_folder(cohort["preds"], cohort["truth"], cohort["out"], prediction_kind="labels",
                             allow_missing=True)["cases"]
    as_mask = score_folder(cohort["preds"], cohort["truth"], cohort["out"], prediction_kind="mask",
                           allow_missing=True)["cases"]
    assert [c["case"] for c in as_labels] == ["2"]
    assert as_labels[0]["voxels"]["predicted"] == 0  # labels: 1 is liver, no tumor
    assert as_mask[0]["voxels"]["predicted"] == int(pred.sum())  # mask: 1 is tumor


def test_a_probability_map_is_refused_as_a_mask(cohort, capsys):
    path = cohort["preds"] / "volume-1.nii.gz"
    one_line_error(capsys, cohort, str(path), "a mask prediction holds non-integer values", extra=("--prediction-kind",
                                                                                                  "mask"))


def test_shape_mismatch_names_both_files(cohort, capsys):
    pred, _ = case_two()
    path = save(cohort["preds"] / "2.nii.gz", pred[:, :, :5])
    one_line_error(capsys, cohort, str(path), str(cohort["truth"] / "segmentation-2.nii.gz"), "(12, 12, 5)")


def test_affine_mismatch_names_both_files(cohort, capsys):
    pred, _ = case_two()
    shifted = AFFINE.copy()
    shifted[0, 3] += 0.5
    path = save(cohort["preds"] / "2.nii.gz", pred, shifted)
    one_line_error(capsys, cohort, str(path), str(cohort["truth"] / "segmentation-2.nii.gz"), "0.5 mm")
    code, _ = run(capsys, cohort, "--affine-tol", "0.6")
    assert code == 0


def test_duplicate_case_names_both_files(cohort, capsys):
    save(cohort["preds"] / "1.nii.gz", np.zeros(SHAPE, np.float32))
    one_line_error(capsys, cohort, "1.nii.gz", "volume-1.nii.gz", "case '1'")


@pytest.mark.parametrize("value", ["0", "1", "1.5", "-0.1", "nan", "high"])
def test_threshold_outside_the_open_unit_interval(cohort, capsys, value):
    with pytest.raises(SystemExit) as exc:
        run(capsys, cohort, "--threshold", value)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --threshold: must be" in err and repr(value) in err, err
    with pytest.raises(ValueError, match="threshold must be in"):
        score_folder(cohort["preds"], cohort["truth"], cohort["out"], threshold=float(value) if value != "high"
                     else 2.0)
    assert not cohort["out"].exists()


def test_a_failed_run_leaves_earlier_scores_as_they_were(cohort):
    score_folder(cohort["preds"], cohort["truth"], cohort["out"])
    before = {p.name: p.read_bytes() for p in cohort["out"].iterdir()}
    prob, _ = case_one()
    prob[0, 0, 0] = 2.5
    save(cohort["preds"] / "volume-1.nii.gz", prob)
    with pytest.raises(ValueError, match="outside"):
        score_folder(cohort["preds"], cohort["truth"], cohort["out"])
    assert {p.name: p.read_bytes() for p in cohort["out"].iterdir()} == before


def test_predictions_kept_inside_the_truth_folder_are_not_truth(cohort):
    inside = cohort["truth"] / "preds"
    cohort["preds"].rename(inside)
    result = score_folder(inside, cohort["truth"], cohort["out"])
    assert [Path(c["truth"]).name for c in result["cases"]] == ["segmentation-1.nii", "segmentation-2.nii.gz",
                                                                "segmentation-3.nii.gz"]
