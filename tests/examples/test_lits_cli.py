"""The liver-tumor example's command line, end to end on a tiny phantom cohort.

prepare -> train -> evaluate -> segment -> ablation, resume of an interrupted run, and the one-line errors of bad
inputs. Sizes are tiny (32 px slices, 4-channel nets, a few steps): these tests check the plumbing, not the
quality (the demo's quality is measured by running ``python -m examples.lits demo``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

nib = pytest.importorskip("nibabel")
pytest.importorskip("matplotlib")

from examples.lits import ablation, demo, phantom, settings  # noqa: E402
from examples.lits.__main__ import build_parser, main  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TINY = ["--preset", "demo", "--size", "32", "--width", "4", "--steps-restoration", "4", "--steps-segmentation", "3",
        "--batch-size", "2", "--eval-every", "1", "--checkpoint-every", "1", "--no-progress"]


def cli(*argv) -> int:
    # One thread: these nets are too small to gain from more, and a CPU shared with other jobs loses a lot.
    return main(["--threads", "1", *(str(a) for a in argv)])


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli(*argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict[str, Path]:
    """A phantom cohort (2 healthy, 2 tumor volumes of 48 x 48 x 8), prepared at 32 px, and a trained tiny run."""
    root = tmp_path_factory.mktemp("lits")
    cohort = phantom.make_cohort(root / "cohort", n_healthy=2, n_tumor=2, shape=(48, 48, 8), seed=0)
    paths = {"root": root, "train": root / "prepared" / "train", "test": root / "prepared" / "test",
             "run": root / "run", "volume": cohort.tumor[0][0], "segmentation": cohort.tumor[0][1]}
    for layout, source, out in (("btcv", cohort.btcv_root, paths["train"]), ("lits", cohort.lits_root, paths["test"])):
        code = cli("prepare", "--layout", layout, "--root", source, "--out", out, "--size", "32", "--crop", "volume",
                   "--no-progress")
        assert code == 0
    code = cli("train", "--data", paths["train"], "--out", paths["run"], "--val", paths["test"], *TINY)
    assert code == 0
    return paths


def test_train_writes_a_complete_run(workspace):
    run = workspace["run"]
    config = json.loads((run / "config.json").read_text())
    assert config["preset"] == "demo"
    assert config["settings"]["size"] == 32 and config["settings"]["nets"]["restoration_width"] == 4
    assert config["trainer"]["restoration_max_steps"] == 4 and config["trainer"]["segmentation_max_steps"] == 3
    assert config["data"]["slices"] > 0
    weights = torch.load(run / "segmenter.pt", weights_only=True)
    assert weights["config"]["size"] == 32 and weights["config"]["prepare_config"]["crop"] == "volume"
    history = json.loads((run / "history.json").read_text())
    assert [h["step"] for h in history] == [1, 2, 3]  # phase 2 evaluated every step (Fig. 3)
    assert (run / "checkpoint.pt").is_file() and (run / "log.jsonl").is_file()


def test_evaluate_writes_metrics_report_and_figures(workspace, capsys):
    out = workspace["root"] / "report"
    code, stdout, _ = run_cli(capsys, "evaluate", "--run", workspace["run"], "--data", workspace["test"], "--out", out)
    assert code == 0
    assert "all-zero" in stdout and "report.md" in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("dice_global", "dice_per_volume", "pixel_auroc"):
        assert 0.0 <= metrics[key] <= 1.0, key
    # slice AUROC needs slices with and without tumor; the tiny cohort may have only the former
    assert metrics["image_auroc"] is None or 0.0 <= metrics["image_auroc"] <= 1.0
    assert metrics["threshold"] == 0.5
    zero, liver = metrics["baselines"]["all-zero"], metrics["baselines"]["all-liver"]
    assert zero["dice_global"] == 0.0 and zero["pixel_auroc"] == 0.5
    assert 0.0 < liver["dice_global"] < 1.0
    assert set(metrics["per_volume"]) == {"volume-0", "volume-1"}
    report = (out / "report.md").read_text()
    assert "all-liver" in report and "53.03" in report
    for figure in ("fig2_examples.png", "fig3_phase2_history.png"):
        assert (out / figure).stat().st_size > 1000
        assert figure in report


def test_segment_keeps_the_input_geometry(workspace, capsys):
    out = workspace["root"] / "pred.nii.gz"
    code, stdout, _ = run_cli(capsys, "segment", "--run", workspace["run"], "--image", workspace["volume"],
                              "--liver", workspace["segmentation"], "--out", out, "--probabilities")
    assert code == 0 and "wrote" in stdout
    source, pred = nib.load(workspace["volume"]), nib.load(out)
    assert pred.shape == source.shape
    np.testing.assert_allclose(pred.affine, source.affine, atol=1e-6)
    values = np.asarray(pred.dataobj)
    liver = np.asarray(nib.load(workspace["segmentation"]).dataobj) > 0
    assert values.dtype == np.float32
    assert values.min() >= 0.0 and values.max() <= 1.0
    assert not values[~liver].any()
    assert values[liver].any()  # the map is defined on the liver (softmax probabilities are never exactly 0)
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []  # no temporary file left
    # the default: a LiTS label map of the same grid, tumor only inside the liver
    labels_out = workspace["root"] / "labels.nii.gz"
    code, stdout, _ = run_cli(capsys, "segment", "--run", workspace["run"], "--image", workspace["volume"],
                              "--liver", workspace["segmentation"], "--out", labels_out)
    assert code == 0 and " lesion" in stdout
    labels = np.asarray(nib.load(labels_out).dataobj)
    assert labels.dtype == np.uint8 and labels.shape == source.shape and np.array_equal(labels > 0, liver)


def test_ablation_cells_train_with_the_given_optimizer(workspace, capsys):
    # the settings a row does not define itself reach its trainer (issue 13: ablation ignored --optimizer)
    out = workspace["root"] / "ablation-sgd"
    code, _, _ = run_cli(capsys, "ablation", "--train", workspace["train"], "--test", workspace["test"], "--out", out,
                         "--rows", "full", *TINY, "--optimizer", "sgd", "--weight-decay", "0.01")
    assert code == 0
    cell = json.loads(next((out / "cells").glob("full-seed0.json")).read_text())
    assert cell["trainer"]["optimizer"] == "sgd" and cell["trainer"]["weight_decay"] == 0.01


def test_ablation_tables_mean_and_std(workspace, capsys):
    out = workspace["root"] / "ablation"
    args = ["ablation", "--train", workspace["train"], "--test", workspace["test"], "--out", out, "--rows", "draem",
            "full", "--seeds", "2", *TINY]
    code, stdout, _ = run_cli(capsys, *args)
    assert code == 0
    summary = json.loads((out / "ablation.json").read_text())
    assert list(summary["rows"]) == ["draem", "full"] and summary["seeds"] == [0, 1]
    for row in summary["rows"].values():
        dice = [cell["dice_global"] for cell in row["cells"]]
        assert len(dice) == 2 and row["mean"]["dice_global"] == pytest.approx(sum(dice) / 2)
        assert row["std"]["dice_global"] == pytest.approx(abs(dice[0] - dice[1]) / 2**0.5)  # sample std of two
        assert row["std"]["pixel_auroc"] > 0  # the seeds train different nets
    table = (out / "ablation.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith(("| draem |", "| full |"))]
    assert len(rows) == 2 and all(line.count("±") >= 3 for line in rows)  # slice AUROC may be n/a here
    # the label-free baselines, scored on the same test slices, sit under the rows
    assert set(summary["baselines"]) == {"all-zero", "all-liver", "darkest-10%"}
    assert summary["baselines"]["all-liver"]["pixel_auroc"] == 0.5
    assert "| *baseline: darkest-10%* |" in table and "| *baseline: all-liver* |" in table
    # a second run finds every cell done and only rewrites the tables
    cells = sorted(p.name for p in (out / "cells").iterdir())
    code, again, _ = run_cli(capsys, *args)
    assert code == 0 and "done earlier" not in stdout and again.count("done earlier") == 4
    assert sorted(p.name for p in (out / "cells").iterdir()) == cells


def test_ablation_with_one_seed_reports_no_spread():
    summary = {"seeds": [0], "size": 64, "threshold": 0.5, "rows": {"full": {
        "mean": {"dice_global": 0.5, "dice_per_volume": 0.4, "pixel_auroc": 0.9, "image_auroc": None},
        "std": {"dice_global": None, "dice_per_volume": None, "pixel_auroc": None, "image_auroc": None}}}}
    table = ablation.markdown(summary)
    assert "| full | 50.00 | 40.00 | 90.00 | n/a |" in table and "±" not in table.split("Rows:")[0]


def test_resume_after_interruption_equals_an_uninterrupted_run(workspace, capsys):
    run = workspace["root"] / "interrupted"
    common = ["train", "--data", workspace["train"], "--out", run, "--val", workspace["test"], *TINY]
    code, stdout, _ = run_cli(capsys, *common, "--stop-after", "5")  # inside phase 2 (4 + 3 steps)
    assert code == 0 and "--resume" in stdout
    assert not (run / "segmenter.pt").exists()
    code, _, _ = run_cli(capsys, *common, "--resume")
    assert code == 0
    resumed = torch.load(run / "segmenter.pt", weights_only=True)["state_dict"]
    reference = torch.load(workspace["run"] / "segmenter.pt", weights_only=True)["state_dict"]
    assert resumed.keys() == reference.keys()
    for name in reference:
        assert torch.equal(resumed[name], reference[name]), name
    assert json.loads((run / "history.json").read_text()) == json.loads(
        (workspace["run"] / "history.json").read_text())


def test_train_refuses_to_overwrite_a_run(workspace, capsys):
    code, _, err = run_cli(capsys, "train", "--data", workspace["train"], "--out", workspace["run"], *TINY)
    assert code == 1 and str(workspace["run"]) in err and "--resume" in err


def test_resume_rejects_changed_settings(workspace, capsys):
    code, _, err = run_cli(capsys, "train", "--data", workspace["train"], "--out", workspace["run"], "--resume",
                           *TINY, "--lr", "0.5")
    assert code == 1 and "config.json" in err and "lr" in err


@pytest.mark.parametrize(
    "case",
    ["train-missing-data", "evaluate-empty-run", "evaluate-interrupted-run", "evaluate-corrupt-weights",
     "evaluate-missing-data",
     "segment-missing-image", "segment-bad-suffix", "prepare-missing-root", "resume-without-run"],
)
def test_bad_inputs_give_one_line_errors(workspace, capsys, tmp_path, case):
    missing = tmp_path / "does-not-exist"
    empty = tmp_path / "empty-run"
    empty.mkdir()
    interrupted = tmp_path / "interrupted-run"
    interrupted.mkdir()
    (interrupted / "checkpoint.pt").write_bytes(b"")
    corrupt = tmp_path / "corrupt-run"
    corrupt.mkdir()
    (corrupt / "segmenter.pt").write_bytes(b"not a torch file")
    argv, named = {
        "train-missing-data": (["train", "--data", missing, "--out", tmp_path / "r", *TINY], missing),
        "evaluate-empty-run": (["evaluate", "--run", empty, "--data", workspace["test"], "--out", tmp_path], empty),
        "evaluate-interrupted-run": (["evaluate", "--run", interrupted, "--data", workspace["test"], "--out",
                                      tmp_path], interrupted),
        "evaluate-corrupt-weights": (["evaluate", "--run", corrupt, "--data", workspace["test"], "--out", tmp_path],
                                     corrupt),
        "evaluate-missing-data": (["evaluate", "--run", workspace["run"], "--data", missing, "--out", tmp_path],
                                  missing),
        "segment-missing-image": (["segment", "--run", workspace["run"], "--image", missing / "ct.nii.gz", "--liver",
                                   workspace["segmentation"], "--out", tmp_path / "p.nii.gz"], missing),
        "segment-bad-suffix": (["segment", "--run", workspace["run"], "--image", workspace["volume"], "--liver",
                                workspace["segmentation"], "--out", tmp_path / "p.png"], tmp_path / "p.png"),
        "prepare-missing-root": (["prepare", "--layout", "lits", "--root", missing, "--out", tmp_path / "p",
                                  "--no-progress"], missing),
        "resume-without-run": (["train", "--data", workspace["train"], "--out", missing, "--resume", *TINY], missing),
    }[case]
    code, _, err = run_cli(capsys, *argv)
    assert code != 0
    assert str(named) in err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 2
    if case == "evaluate-interrupted-run":
        assert "--resume" in err


def test_module_entry_point_reports_errors_without_traceback(tmp_path):
    missing = tmp_path / "nothing-here"
    result = subprocess.run(
        [sys.executable, "-m", "examples.lits", "evaluate", "--run", str(missing), "--data", str(missing), "--out",
         str(tmp_path / "r")], cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert str(missing) in result.stderr and "Traceback" not in result.stderr


def test_epochs_flags_replace_a_preset_given_in_steps():
    args = build_parser().parse_args(["train", "--data", "d", "--out", "o", "--preset", "demo",
                                      "--epochs-restoration", "3", "--width", "8", "--seg-width", "4"])
    chosen = settings.settings_from_args(args)
    assert chosen.restoration_epochs == 3 and chosen.restoration_max_steps is None
    assert chosen.segmentation_max_steps == settings.PRESETS["demo"].segmentation_max_steps
    assert (chosen.restoration_width, chosen.segmentation_width) == (8, 4)


def test_demo_runs_end_to_end_at_a_tiny_scale(tmp_path, capsys, monkeypatch):
    # The real demo takes minutes; the same code path with a tiny cohort and preset checks its plumbing.
    tiny = settings.TrainSettings().replace(
        size=32, restoration_width=4, segmentation_width=4, segmentation_multipliers=(1, 2, 4),
        restoration_max_steps=3, segmentation_max_steps=2, batch_size=2, eval_every=1)
    monkeypatch.setitem(settings.PRESETS, "demo", tiny)
    monkeypatch.setitem(demo.DEMO_COHORT, "shape", (48, 48, 8))
    monkeypatch.setitem(demo.DEMO_COHORT, "n_healthy", 2)
    monkeypatch.setitem(demo.DEMO_COHORT, "n_tumor", 2)
    code, stdout, _ = run_cli(capsys, "demo", "--out", tmp_path / "demo", "--no-progress")
    assert code == 0
    assert "all-liver" in stdout and "report.md" in stdout and "segment --run" in stdout
    assert (tmp_path / "demo" / "report" / "metrics.json").is_file()
    # a second demo into the same folder replaces its run instead of refusing to overwrite it
    assert run_cli(capsys, "demo", "--out", tmp_path / "demo", "--no-progress")[0] == 0


def test_real_scan_trains_and_segments_in_its_own_geometry(chaos_dir, tmp_path, capsys):
    # The CHAOS scan (healthy, stored in its own orientation) through the commands a user runs on real data:
    # prepare (default window, equalization, whole slices), a short train, segment back onto the scan's grid.
    prepared, run, out = tmp_path / "prepared", tmp_path / "run", tmp_path / "tumor.nii.gz"
    assert cli("prepare", "--layout", "pair", "--image", chaos_dir / "ct.nii.gz", "--mask",
               chaos_dir / "liver.nii.gz", "--out", prepared, "--size", "64", "--no-progress") == 0
    code, stdout, _ = run_cli(capsys, "train", "--data", prepared, "--out", run, *TINY)
    assert code == 0 and ", 7 steps in" in stdout  # 4 restoration + 3 segmentation steps
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["slices"] >= 69  # 71 liver slices, a couple below the minimum liver area
    losses = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert losses and all(np.isfinite(v) for row in losses for k, v in row.items() if "loss" in k)

    code, stdout, _ = run_cli(capsys, "segment", "--run", run, "--image", chaos_dir / "ct.nii.gz", "--liver",
                              chaos_dir / "liver.nii.gz", "--out", out, "--probabilities")
    assert code == 0 and str(out) in stdout
    source, written = nib.load(chaos_dir / "ct.nii.gz"), nib.load(out)
    assert written.shape == source.shape and np.allclose(written.affine, source.affine)
    probability = np.asarray(written.dataobj)
    liver = np.asarray(nib.load(chaos_dir / "liver.nii.gz").dataobj) > 0
    assert np.isfinite(probability).all() and probability.min() >= 0 and probability.max() <= 1
    assert not probability[~liver].any()  # 0 outside the liver
    assert probability[liver].std() > 0  # an actual map, not a constant


# ------------------------------------------------------------------ the command line itself: help, packaging

PACKAGE = REPO / "examples" / "lits"


def _subparsers(parser) -> dict:
    import argparse

    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_help_of_every_command_loads_no_torch():
    # --help is answered from the recorded flags: no command module (and so no torch) is imported for it.
    from examples.lits.__main__ import COMMANDS

    script = (
        "import contextlib, io, sys\n"
        "from examples.lits.__main__ import main\n"
        f"for argv in [[]] + [[c] for c in {sorted(COMMANDS)!r}]:\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out):\n"
        "        try:\n"
        "            main(argv + ['--help'])\n"
        "        except SystemExit as stop:\n"
        "            assert stop.code == 0, (argv, stop.code)\n"
        "    assert out.getvalue().startswith('usage:'), argv\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'nibabel', 'pseudoanomaly')))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_recorded_help_equals_the_commands_flags(monkeypatch):
    from examples.lits.__main__ import CLI_RECORD, cli_record, help_parser

    assert json.loads(CLI_RECORD.read_text()) == cli_record(), (
        "examples/lits/cli.json is stale: run python -c 'from examples.lits.__main__ import write_cli_record; "
        "write_cli_record()'")
    monkeypatch.setenv("COLUMNS", "100")
    recorded, live = help_parser(), build_parser()
    assert recorded.format_help() == live.format_help()
    for name, command in _subparsers(live).items():
        assert _subparsers(recorded)[name].format_help() == command.format_help(), name


def test_every_flag_has_help_showing_its_default():
    import argparse

    for name, command in _subparsers(build_parser()).items():
        for action in command._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            flag = f"{name} {action.option_strings[0]}"
            assert action.help and action.help.strip(), flag
            if action.default in (None, False, argparse.SUPPRESS):
                continue
            text = action.help % {"default": action.default}
            shown = " ".join(map(str, action.default)) if isinstance(action.default, (list, tuple)) else str(
                action.default)
            assert "default" in text and shown in text, (flag, text)


def test_settings_help_names_the_flags_of_each_command():
    commands = _subparsers(build_parser())

    def help_of(command: str, flag: str) -> str:
        return next(a.help for a in commands[command]._actions if flag in a.option_strings)

    assert "Needs --val" in help_of("train", "--eval-every") and "val_data" not in help_of("train", "--eval-every")
    assert "Needs --out" in help_of("train", "--checkpoint-every")
    for flag in ("--eval-every", "--eval-unit", "--checkpoint-every"):  # ablation has no --val; cells are not
        text = help_of("ablation", flag)  # evaluated while they train
        assert text.startswith("no effect here") and "--val" not in text, (flag, text)


def test_installed_package_maps_the_example_without_an_examples_package():
    tomllib = pytest.importorskip("tomllib")
    setuptools = pytest.importorskip("setuptools")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    tool = project["tool"]["setuptools"]
    assert tool["package-dir"]["pseudoanomaly_lits"] == "examples/lits"
    assert sorted(tool["packages"]) == sorted([*setuptools.find_packages(REPO / "src"), "pseudoanomaly_lits"])
    assert not any(p == "examples" or p.startswith("examples.") for p in tool["packages"])
    assert project["project"]["scripts"]["pseudoanomaly-lits"] == "pseudoanomaly_lits.__main__:main"
    assert "cli.json" in project["tool"]["setuptools"]["package-data"]["pseudoanomaly_lits"]
    # Inside the package every import of a sibling is relative, so that it works under either name.
    for path in PACKAGE.glob("*.py"):
        source = path.read_text()
        assert "from examples" not in source.replace(">>> from examples", "") and "import examples" not in source


def test_the_example_runs_as_pseudoanomaly_lits_from_any_folder(tmp_path):
    # What the wheel installs: examples/lits as the package pseudoanomaly_lits (a copy, so "examples" cannot be
    # found), its console script's function, run from a folder that is not the repository.
    site = tmp_path / "site"
    shutil.copytree(PACKAGE, site / "pseudoanomaly_lits", ignore=shutil.ignore_patterns("__pycache__"))
    missing = tmp_path / "no-run"
    script = ("import sys\n"
              "from pseudoanomaly_lits.__main__ import main\n"
              "sys.argv[0] = 'pseudoanomaly-lits'\n"
              "sys.exit(main())\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO / "src")])}
    help_run = subprocess.run([sys.executable, "-c", script, "segment", "--help"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
    assert help_run.returncode == 0, help_run.stderr
    assert help_run.stdout.startswith("usage: pseudoanomaly-lits segment") and "--threshold" in help_run.stdout
    error_run = subprocess.run([sys.executable, "-c", script, "evaluate", "--run", str(missing), "--data",
                                str(missing), "--out", str(tmp_path / "r")], cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=120)
    assert error_run.returncode == 1 and str(missing) in error_run.stderr and "Traceback" not in error_run.stderr
    check = subprocess.run([sys.executable, "-c", "import importlib.util; print(importlib.util.find_spec('examples'))"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert check.stdout.strip() == "None"


def test_the_wheel_holds_pseudoanomaly_lits_and_its_command_but_no_examples_package(tmp_path):
    # A real, non-editable build (a couple of seconds), of a copy: an in-tree build/ could leave stale files.
    setuptools = pytest.importorskip("setuptools")
    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip(f"building needs setuptools>=77 (pyproject's build-system), found {setuptools.__version__}")
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(REPO / "src", source / "src", ignore=ignore)
    shutil.copytree(PACKAGE, source / "examples" / "lits", ignore=ignore)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                             str(tmp_path / "wheel"), str(source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = (tmp_path / "wheel").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = archive.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"pseudoanomaly", "pseudoanomaly_lits"}  # no "examples"
    expected = {f"pseudoanomaly_lits/{p.name}" for p in PACKAGE.glob("*.py")} | {"pseudoanomaly_lits/cli.json"}
    assert expected <= set(names)
    assert "pseudoanomaly-lits = pseudoanomaly_lits.__main__:main" in entry_points
