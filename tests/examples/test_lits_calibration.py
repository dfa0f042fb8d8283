"""The default real-data path's answer: an ensemble of runs, a threshold calibrated on healthy livers, lesions.

What a user relies on: ``train --ensemble K`` is K plain runs of consecutive seeds (the same weights, bit for
bit) averaged; every run records a threshold set on its healthy training livers and ``calibrate`` sets it again on
held-out healthy livers, refusing tumour labels or an empty set; ``evaluate`` reports lesions found, missed and
false next to Dice, for the rules too.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("nibabel")

from examples.lits.__main__ import main  # noqa: E402
from examples.lits.calibration import DEFAULT_FALSE_POSITIVE_FRACTION  # noqa: E402
from examples.lits.runs import load_run  # noqa: E402
from examples.lits.settings import PRESETS  # noqa: E402
from examples.lits.train import member_seed  # noqa: E402
from pseudoanomaly.models import EnsembleSegmenter  # noqa: E402
from pseudoanomaly.training import load_checkpoint  # noqa: E402


# The flags of tests/examples/conftest.py's tiny run: 32 px slices, 4-channel nets, 4 + 3 steps.
TINY_TRAIN = ["--preset", "demo", "--size", "32", "--width", "4", "--steps-restoration", "4",
              "--steps-segmentation", "3", "--batch-size", "2", "--eval-every", "1", "--checkpoint-every", "1",
              "--no-progress"]


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(["--threads", "1", *(str(a) for a in argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> dict[str, Path]:
    from examples.lits.phantom import make_cohort

    root = tmp_path_factory.mktemp("calibration")
    made = make_cohort(root / "cohort", n_healthy=3, n_tumor=2, shape=(48, 48, 8), seed=3)
    paths = {"root": root, "train": root / "train", "test": root / "test"}
    assert main(["--threads", "1", "prepare", "--layout", "btcv", "--root", str(made.btcv_root), "--out",
                 str(paths["train"]), "--size", "32", "--crop", "volume", "--no-progress"]) == 0
    assert main(["--threads", "1", "prepare", "--layout", "lits", "--root", str(made.lits_root), "--out",
                 str(paths["test"]), "--size", "32", "--crop", "volume", "--no-progress"]) == 0
    return paths


def test_the_cpu_preset_is_an_ensemble_of_two():
    assert PRESETS["cpu"].ensemble == 2 and PRESETS["paper"].ensemble == 1
    assert [member_seed(0, k, 2) for k in range(2)] == [0, 1] and [member_seed(1, k, 2) for k in range(2)] == [2, 3]
    assert member_seed(5, 0, 1) == 5  # an ensemble of one is the plain run


def test_an_ensemble_is_its_members_plain_runs_averaged(cohort, capsys):
    ensemble, plain = cohort["root"] / "ensemble", cohort["root"] / "plain"
    code, stdout, _ = cli(capsys, "train", "--data", cohort["train"], "--out", ensemble, *TINY_TRAIN, "--ensemble",
                          "2", "--seed", "1")
    assert code == 0 and "lesion threshold" in stdout
    for k, seed in enumerate((2, 3)):  # members of ensemble seed 1: seeds 2 and 3
        code, _, _ = cli(capsys, "train", "--data", cohort["train"], "--out", plain / str(k), *TINY_TRAIN, "--seed",
                         str(seed))
        assert code == 0
        member, alone = load_run(ensemble / "members" / str(k))[0], load_run(plain / str(k))[0]
        for (name, a), (_, b) in zip(member.state_dict().items(), alone.state_dict().items()):
            assert torch.equal(a, b), name
    segmenter, meta = load_run(ensemble)
    assert isinstance(segmenter, EnsembleSegmenter) and meta["members"] == 2 and meta["member_seeds"] == [2, 3]
    images = torch.rand(3, 1, 32, 32)
    members = [load_run(plain / str(k))[0] for k in range(2)]
    torch.testing.assert_close(segmenter(images), (members[0](images) + members[1](images)) / 2)
    calibration = meta["calibration"]
    assert calibration["source"] == "training" and calibration["false_positive_fraction"] == \
        DEFAULT_FALSE_POSITIVE_FRACTION and 0 < calibration["threshold"] < 1
    assert calibration["achieved"] <= DEFAULT_FALSE_POSITIVE_FRACTION


def test_an_interrupted_ensemble_resumes_to_the_same_weights(cohort, capsys):
    whole, cut = cohort["root"] / "whole", cohort["root"] / "cut"
    assert cli(capsys, "train", "--data", cohort["train"], "--out", whole, *TINY_TRAIN, "--ensemble", "2")[0] == 0
    code, stdout, _ = cli(capsys, "train", "--data", cohort["train"], "--out", cut, *TINY_TRAIN, "--ensemble", "2",
                          "--stop-after", "9")  # the first member (7 steps) and 2 steps of the second
    assert code == 0 and "stopped after" in stdout and not (cut / "segmenter.pt").exists()
    assert (cut / "members" / "0" / "segmenter.pt").is_file()
    code, _, err = cli(capsys, "train", "--data", cohort["train"], "--out", cut, *TINY_TRAIN, "--ensemble", "2")
    assert code == 1 and "--resume" in err  # not silently restarted
    assert cli(capsys, "train", "--data", cohort["train"], "--out", cut, "--resume", *TINY_TRAIN,
               "--ensemble", "2")[0] == 0
    a, b = load_run(whole)[0].state_dict(), load_run(cut)[0].state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_calibrate_sets_the_threshold_on_held_out_healthy_livers(cohort, capsys, tmp_path):
    run = tmp_path / "run"
    assert cli(capsys, "train", "--data", cohort["train"], "--out", run, *TINY_TRAIN)[0] == 0
    before = load_checkpoint(run / "segmenter.pt")["config"]["calibration"]
    weights = load_run(run)[0].state_dict()
    code, stdout, _ = cli(capsys, "calibrate", "--run", run, "--data", cohort["train"],
                          "--false-positive-fraction", "0.05")
    assert code == 0 and "stored in" in stdout
    after = load_checkpoint(run / "segmenter.pt")["config"]["calibration"]
    assert after["source"] == "held-out" and after["false_positive_fraction"] == 0.05
    assert after["threshold"] <= before["threshold"]  # a larger share above it: a lower threshold
    assert after["achieved"] <= 0.05
    after_weights = load_run(run)[0].state_dict()  # the weights are untouched
    assert all(torch.equal(weights[k], after_weights[k]) for k in weights)


@pytest.mark.parametrize("case", ["tumour-labels", "empty", "fraction"])
def test_calibrate_refuses_a_set_that_is_not_healthy_or_a_bad_fraction(cohort, capsys, tmp_path, case):
    run = tmp_path / "run"
    assert cli(capsys, "train", "--data", cohort["train"], "--out", run, *TINY_TRAIN)[0] == 0
    before = (run / "segmenter.pt").read_bytes()
    if case == "tumour-labels":
        code, _, err = cli(capsys, "calibrate", "--run", run, "--data", cohort["test"])
        assert code == 1 and "tumour labels" in err and str(cohort["test"]) in err
    elif case == "empty":
        empty = tmp_path / "empty"
        empty.mkdir()
        code, _, err = cli(capsys, "calibrate", "--run", run, "--data", empty)
        assert code == 1 and str(empty) in err
    else:
        with pytest.raises(SystemExit):
            cli(capsys, "calibrate", "--run", run, "--data", cohort["train"], "--false-positive-fraction", "1.5")
        err = capsys.readouterr().err
        assert "--false-positive-fraction" in err and "1.5" in err
    assert len(err.strip().splitlines()) == 1 or case == "fraction"
    assert (run / "segmenter.pt").read_bytes() == before  # nothing rewritten


def test_evaluate_reports_lesions_found_missed_and_false(cohort, capsys, tmp_path):
    run, out = tmp_path / "run", tmp_path / "report"
    assert cli(capsys, "train", "--data", cohort["train"], "--out", run, *TINY_TRAIN)[0] == 0
    code, stdout, _ = cli(capsys, "evaluate", "--run", run, "--data", cohort["test"], "--out", out,
                          "--min-lesion-mm3", "0", "--grow-threshold", "none", "--threshold", "0.5",
                          "--slice-smoothing-mm", "0")
    assert code == 0 and "lesions found / missed / false" in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    lesions = metrics["lesions"]
    assert lesions["settings"]["threshold"] == 0.5 and lesions["settings"]["min_volume_mm3"] == 0
    ours, liver = lesions["ours"], lesions["baselines"]["all-liver"]
    assert ours["lesions"] == liver["lesions"] > 0 and ours["found"] + ours["missed"] == ours["lesions"]
    assert liver["found"] == liver["lesions"]  # the whole liver covers every lesion
    # switched off, the lesion output's Dice is the paper's voxel-wise Dice at 0.5 (the same pixels)
    assert ours["dice_global"] == pytest.approx(metrics["dice_global"], abs=1e-6)
    assert "## Lesions" in (out / "report.md").read_text()
    # a larger minimum volume never adds a false lesion
    code, _, _ = cli(capsys, "evaluate", "--run", run, "--data", cohort["test"], "--out", tmp_path / "r2",
                     "--min-lesion-mm3", "50", "--grow-threshold", "none", "--threshold", "0.5",
                     "--slice-smoothing-mm", "0")
    larger = json.loads((tmp_path / "r2" / "metrics.json").read_text())["lesions"]["ours"]
    assert code == 0 and larger["false"] <= ours["false"] and larger["found"] <= ours["found"]
    assert np.isfinite(larger["dice_global"])


def test_evaluate_refuses_a_minimum_lesion_larger_than_the_livers_before_writing(cohort, capsys, tmp_path):
    run, out = tmp_path / "run", tmp_path / "report"
    assert cli(capsys, "train", "--data", cohort["train"], "--out", run, *TINY_TRAIN)[0] == 0
    code, _, err = cli(capsys, "evaluate", "--run", run, "--data", cohort["test"], "--out", out,
                       "--min-lesion-mm3", "1e12")
    assert code == 1 and "min_lesion_mm3=1e+12" in err and len(err.strip().splitlines()) == 1
    assert not (out / "metrics.json").exists()
