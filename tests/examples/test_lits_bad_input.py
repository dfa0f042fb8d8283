"""Bad input, faults and interruptions against the liver-tumor example (issue 10): each gives a one-line error
naming the argument, file or value, or the right behaviour, never a silently wrong result or lost data.

A tiny phantom cohort (48 x 48 x 8 voxels, 32 px slices) and a tiny run, as in ``test_lits_cli.py``. The library's
own cases are in ``tests/test_bad_input.py``.
"""

from __future__ import annotations

import builtins
import errno
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

nib = pytest.importorskip("nibabel")
pytest.importorskip("matplotlib")

from examples.lits import phantom  # noqa: E402
from examples.lits import prepare as prepare_module  # noqa: E402
from examples.lits.__main__ import main  # noqa: E402
from examples.lits.dataset import load_prepared  # noqa: E402
from examples.lits.locking import LOCK_FILE, FolderBusyError, hold_folder  # noqa: E402
from examples.lits.cases import PrepareError  # noqa: E402
from examples.lits.dataset import read_manifest  # noqa: E402
from examples.lits.prepare import prepare  # noqa: E402
from examples.lits.preprocess import PrepareConfig  # noqa: E402
from examples.lits.runs import load_run  # noqa: E402
from examples.lits.volumes import load_prepared_volume  # noqa: E402
from examples.lits.segment import segment  # noqa: E402
from pseudoanomaly import io as io_module  # noqa: E402
from pseudoanomaly.training import atomic_save, load_checkpoint  # noqa: E402
from pseudoanomaly.training import checkpoint as checkpoint_module  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TINY = ["--preset", "demo", "--size", "32", "--width", "4", "--steps-restoration", "2", "--steps-segmentation", "2",
        "--batch-size", "2", "--checkpoint-every", "1", "--no-progress"]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """``main()`` in-process; an argparse error (SystemExit 2) counts as its exit status."""
    try:
        code = main(["--threads", "1", *(str(a) for a in argv)])
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line(err: str, *named) -> None:
    lines = err.strip().splitlines()
    assert "Traceback" not in err and lines, err
    # argparse prints its usage (wrapped, indented) above its one-line error
    assert len([line for line in lines if not line.startswith(("usage:", " "))]) == 1, err
    for thing in named:
        assert str(thing) in err, (thing, err)


def save_like(reference: Path, data: np.ndarray, path: Path) -> Path:
    """``data`` as NIfTI with ``reference``'s affine."""
    nib.save(nib.Nifti1Image(data, nib.load(reference).affine), path)
    return path


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> dict[str, Path]:
    """Cohort (2 healthy, 1 tumor volumes), its prepared slices at 32 px, a trained tiny run."""
    root = tmp_path_factory.mktemp("bad-input")
    cohort = phantom.make_cohort(root / "cohort", n_healthy=2, n_tumor=1, shape=(48, 48, 8), seed=0)
    paths = {"root": root, "cohort": root / "cohort", "train": root / "train", "test": root / "test",
             "run": root / "run", "ct": cohort.tumor[0][0], "seg": cohort.tumor[0][1],
             "healthy_ct": cohort.healthy[0][0], "healthy_label": cohort.healthy[0][1]}
    config = PrepareConfig(size=32, crop="volume")
    prepare("btcv", cohort.btcv_root, paths["train"], config, progress=False)
    prepare("lits", cohort.lits_root, paths["test"], config, progress=False)
    assert main(["--threads", "1", "train", "--data", str(paths["train"]), "--out", str(paths["run"]), *TINY]) == 0
    return paths


# ------------------------------------------------------------------------------------------- arguments


def _inference_or_training_argv(ws, tmp_path, command):
    """A valid command line of ``evaluate``, ``segment`` or ``train`` writing under ``tmp_path``."""
    return {
        "evaluate": ["evaluate", "--run", ws["run"], "--data", ws["test"], "--out", tmp_path / "r"],
        "segment": ["segment", "--run", ws["run"], "--image", ws["ct"], "--liver", ws["seg"], "--out",
                    tmp_path / "p.nii.gz"],
        "train": ["train", "--data", ws["train"], "--out", tmp_path / "r", *TINY],
    }[command]


@pytest.mark.parametrize("value", ["-1", "0", "two"])
@pytest.mark.parametrize("command", ["evaluate", "segment", "train"])
def test_batch_size_must_be_positive_at_parsing(ws, capsys, tmp_path, command, value):
    argv = _inference_or_training_argv(ws, tmp_path, command)
    code, _, err = run_cli(capsys, *argv, "--batch-size", value)
    assert code == 2
    assert_one_line(err, "--batch-size", repr(value))
    assert not (tmp_path / "r").exists() and not (tmp_path / "p.nii.gz").exists()


@pytest.mark.parametrize("batch_size", [0, -1, 2.5])
def test_load_run_and_segment_functions_refuse_a_bad_batch_size(ws, tmp_path, batch_size):
    with pytest.raises(ValueError, match=f"batch_size must be an integer >= 1 or None, got {batch_size!r}"):
        load_run(ws["run"], "cpu", batch_size=batch_size)
    with pytest.raises(ValueError, match=f"batch_size must be a positive integer, got {batch_size!r}"):
        segment(ws["run"], ws["ct"], ws["seg"], tmp_path / "p.nii.gz", device="cpu", batch_size=batch_size)


@pytest.mark.parametrize("device", ["gpu", "meta"] + ([] if torch.cuda.is_available() else ["cuda", "cuda:0"]))
@pytest.mark.parametrize("command", ["evaluate", "segment", "train"])
def test_an_unknown_or_missing_device_is_refused_before_any_file_is_written(ws, capsys, tmp_path, command, device):
    argv = _inference_or_training_argv(ws, tmp_path, command)
    code, _, err = run_cli(capsys, *argv, "--device", device)
    assert code == 2
    assert_one_line(err, "--device", repr(device))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_affine_tolerance_must_be_a_finite_non_negative_number(ws, capsys, tmp_path, value):
    code, _, err = run_cli(capsys, "prepare", "--layout", "pair", "--image", ws["ct"], "--mask", ws["seg"], "--out",
                           tmp_path / "p", "--affine-tol", value)
    assert code == 2
    assert_one_line(err, "--affine-tol", repr(value))
    with pytest.raises(ValueError, match=f"affine_tolerance must be a finite number >= 0, got {float(value)!r}"):
        prepare("pair", None, tmp_path / "p", image=ws["ct"], mask=ws["seg"], affine_tolerance=float(value),
                progress=False)


# ---------------------------------------------------------------------------------------- source files


def test_nan_voxels_are_refused_by_prepare_and_segment_naming_file_and_count(ws, capsys, tmp_path):
    hu = np.asarray(nib.load(ws["ct"]).dataobj).astype(np.float32)
    hu[10:12, 20, 3] = np.nan
    nan_ct = save_like(ws["ct"], hu, tmp_path / "nan-ct.nii.gz")
    code, _, err = run_cli(capsys, "prepare", "--layout", "pair", "--image", nan_ct, "--mask", ws["seg"], "--out",
                           tmp_path / "p", "--no-progress")
    assert code == 1
    assert_one_line(err, nan_ct, "2 NaN or Inf voxel(s)")
    code, _, err = run_cli(capsys, "segment", "--run", ws["run"], "--image", nan_ct, "--liver", ws["seg"], "--out",
                           tmp_path / "p.nii.gz")
    assert code == 1
    assert_one_line(err, nan_ct, "2 NaN or Inf voxel(s)")
    assert not (tmp_path / "p.nii.gz").exists()


@pytest.mark.parametrize("case", ["swapped", "ct-as-mask", "scaled-ct-as-mask"])
def test_prepare_refuses_a_label_that_is_not_a_label_map(ws, capsys, tmp_path, case):
    hu = np.asarray(nib.load(ws["ct"]).dataobj)
    image, mask, bad, shown = {
        "swapped": (ws["seg"], ws["ct"], ws["seg"], "not a CT in Hounsfield units"),
        "ct-as-mask": (ws["ct"], ws["ct"], ws["ct"], "a label map holds small non-negative integers"),
        "scaled-ct-as-mask": (ws["ct"], save_like(ws["ct"], (hu - hu.min()) / np.ptp(hu), tmp_path / "s.nii.gz"),
                              tmp_path / "s.nii.gz", "non-integer values"),
    }[case]
    code, _, err = run_cli(capsys, "prepare", "--layout", "pair", "--image", image, "--mask", mask, "--out",
                           tmp_path / "p", "--no-progress")
    assert code == 1
    assert_one_line(err, bad, shown)


@pytest.mark.parametrize("case", ["unit-range-ct", "ct-as-liver", "liver-too-small"])
def test_segment_refuses_what_it_cannot_segment_meaningfully(ws, capsys, tmp_path, case):
    hu = np.asarray(nib.load(ws["ct"]).dataobj).astype(np.float32)
    seg = np.asarray(nib.load(ws["seg"]).dataobj)
    if case == "unit-range-ct":  # a CT already normalised to [0, 1]: windowing it as HU gives a blank image
        image, liver = save_like(ws["ct"], (hu - hu.min()) / np.ptp(hu), tmp_path / "unit.nii.gz"), ws["seg"]
        named, shown = image, "not a CT in Hounsfield units"
    elif case == "ct-as-liver":
        image, liver, named, shown = ws["ct"], ws["ct"], ws["ct"], "liver mask values span"
    else:  # a few liver voxels per slice, below the run's min_liver_pixels (100)
        small = np.zeros_like(seg)
        small[20:23, 20:23, :] = 1
        image, liver = ws["ct"], save_like(ws["seg"], small, tmp_path / "small.nii.gz")
        named, shown = liver, "min_liver_pixels=100"
    code, _, err = run_cli(capsys, "segment", "--run", ws["run"], "--image", image, "--liver", liver, "--out",
                           tmp_path / "p.nii.gz")
    assert code == 1
    assert_one_line(err, named, shown)
    assert not (tmp_path / "p.nii.gz").exists()


# ------------------------------------------------------------------------------------- prepared files


def _prepared_copy(ws, tmp_path) -> Path:
    out = tmp_path / "train"
    shutil.copytree(ws["train"], out)
    return out


@pytest.mark.parametrize("damage", ["truncated", "swapped"])
def test_prepare_rebuilds_a_damaged_volume_and_loading_refuses_it_by_name(ws, tmp_path, damage):
    out = _prepared_copy(ws, tmp_path)
    first, second = out / "volumes" / "img0001.npz", out / "volumes" / "img0002.npz"
    if damage == "truncated":
        first.write_bytes(first.read_bytes()[:500])
    else:
        a, b = first.read_bytes(), second.read_bytes()
        first.write_bytes(b)
        second.write_bytes(a)
    with pytest.raises(ValueError, match="checksum differs") as info:
        load_prepared(out)
    assert str(first) in str(info.value) or str(second) in str(info.value)

    redone = prepare("btcv", ws["cohort"] / "btcv", out, PrepareConfig(size=32, crop="volume"), progress=False)
    assert "img0001" in redone.prepared
    fresh = load_prepared(out)
    reference = load_prepared(ws["train"])
    assert torch.equal(fresh.images, reference.images)


def test_train_on_a_truncated_volume_names_the_file(ws, capsys, tmp_path):
    out = _prepared_copy(ws, tmp_path)
    volume = out / "volumes" / "img0002.npz"
    volume.write_bytes(volume.read_bytes()[:300])
    code, _, err = run_cli(capsys, "train", "--data", out, "--out", tmp_path / "run", *TINY)
    assert code == 1
    assert_one_line(err, volume)


def test_a_volume_with_object_arrays_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "v.npz"
    np.savez(path, images=np.array([{"code": 1}], dtype=object), version=np.int64(1))
    with pytest.raises(ValueError, match="not a readable prepared volume") as info:
        load_prepared_volume(path)
    assert str(path) in str(info.value)


def test_a_kill_between_a_volume_and_the_manifest_never_trusts_the_volume(ws, tmp_path, monkeypatch):
    out = tmp_path / "out"
    source = ws["cohort"] / "btcv"
    config_a, config_b = PrepareConfig(size=32, crop="volume"), PrepareConfig(size=64, crop="volume")
    prepare("btcv", source, out, config_a, progress=False)

    writes = []
    real_write = prepare_module.write_manifest

    def killed_after_the_first_volume(folder, manifest):
        # The process dies (SIGKILL: no finally) once a volume of the new settings is on disk: the manifest is not
        # written again, and what the next run sees is whatever was written before that volume.
        if (folder / "volumes" / "img0001.npz").stat().st_mtime_ns != stamp:
            raise KeyboardInterrupt
        writes.append(manifest["config"]["size"])
        real_write(folder, manifest)

    stamp = (out / "volumes" / "img0001.npz").stat().st_mtime_ns
    monkeypatch.setattr(prepare_module, "write_manifest", killed_after_the_first_volume)
    with pytest.raises(KeyboardInterrupt):
        prepare("btcv", source, out, config_b, progress=False)
    monkeypatch.undo()
    assert writes == [64]  # the record of the new settings came before any of their data

    again = prepare("btcv", source, out, config_a, progress=False)
    assert again.prepared == ["img0001", "img0002"]
    assert load_prepared_volume(out / "volumes" / "img0001.npz").images.shape[1:] == (32, 32)


def test_outputs_get_ordinary_permissions(ws, tmp_path):
    previous = os.umask(0o022)
    try:
        out = tmp_path / "out"
        prepare("pair", None, out, PrepareConfig(size=32), image=ws["ct"], mask=ws["seg"], progress=False)
    finally:
        os.umask(previous)
    for path in (out / "manifest.json", out / "volumes" / "volume-0.npz"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_stale_temporaries_of_a_killed_prepare_are_removed_by_the_next(ws, tmp_path):
    out = _prepared_copy(ws, tmp_path)
    stale = [out / ".manifest.json.4242.a1b2c3d4.tmp", out / "volumes" / ".img0001.npz.4242.ffee0011.tmp"]
    for path in stale:
        path.write_bytes(b"half")
    keep = out / "notes.tmp"
    keep.write_text("mine")
    prepare("btcv", ws["cohort"] / "btcv", out, PrepareConfig(size=32, crop="volume"), progress=False)
    assert not any(p.exists() for p in stale) and keep.exists()


# ------------------------------------------------------------------------------------------ pair layout


def test_a_second_pair_adds_its_case_to_the_manifest(ws, capsys, tmp_path):
    out = tmp_path / "pairs"
    other = tmp_path / "other-ct.nii.gz"
    shutil.copy(ws["ct"], other)
    for image in (ws["ct"], other):
        code, _, _ = run_cli(capsys, "prepare", "--layout", "pair", "--image", image, "--mask", ws["seg"], "--out",
                             out, "--size", "32", "--no-progress")
        assert code == 0
    manifest = read_manifest(out)
    assert list(manifest["cases"]) == ["volume-0", "other-ct"]
    data = load_prepared(out)
    assert data.cases == ["volume-0", "other-ct"] and len(data) == 2 * manifest["cases"]["volume-0"]["slices"]


def test_a_pair_with_other_settings_or_a_taken_case_id_is_refused(ws, tmp_path):
    out = tmp_path / "pairs"
    prepare("pair", None, out, PrepareConfig(size=32), image=ws["ct"], mask=ws["seg"], progress=False)
    other = tmp_path / "other-ct.nii.gz"
    shutil.copy(ws["ct"], other)
    with pytest.raises(PrepareError, match=r"holds case\(s\) \['volume-0'\] prepared with other settings \(config"):
        prepare("pair", None, out, PrepareConfig(size=64), image=other, mask=ws["seg"], progress=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    namesake = shutil.copy(ws["ct"], elsewhere / ws["ct"].name)
    with pytest.raises(PrepareError, match="case id 'volume-0' is already used") as info:
        prepare("pair", None, out, PrepareConfig(size=32), image=namesake, mask=ws["seg"], progress=False)
    assert info.value.path == str(Path(namesake).resolve())
    # the same pair again with new settings re-prepares it (no other case to mix with)
    again = prepare("pair", None, out, PrepareConfig(size=64), image=ws["ct"], mask=ws["seg"], progress=False)
    assert again.prepared == ["volume-0"] and read_manifest(out)["config"]["size"] == 64


# ---------------------------------------------------------------------------------------- two writers


@pytest.mark.parametrize("command", ["train", "prepare", "pair"])
def test_a_second_writer_in_one_folder_gets_one_line(ws, capsys, tmp_path, command):
    out = tmp_path / "out"
    argv = {
        "train": ["train", "--data", ws["train"], "--out", out, *TINY],
        "prepare": ["prepare", "--layout", "btcv", "--root", ws["cohort"] / "btcv", "--out", out, "--no-progress"],
        "pair": ["prepare", "--layout", "pair", "--image", ws["ct"], "--mask", ws["seg"], "--out", out,
                 "--no-progress"],
    }[command]
    with hold_folder(out, "train"):  # another process's lock: flock conflicts between open files, even in-process
        code, _, err = run_cli(capsys, *argv)
        assert code == 1
        assert_one_line(err, out, "another process", "is writing there", "--out")
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # nothing written
    assert not (out / LOCK_FILE).exists()
    code, _, _ = run_cli(capsys, *argv)  # once the other writer is done, the folder is free
    assert code == 0 and not (out / LOCK_FILE).exists()


def test_a_folder_held_by_another_process_is_refused_until_that_process_ends(tmp_path):
    out = tmp_path / "run"
    holder = textwrap.dedent(f"""
        import sys
        from examples.lits.locking import hold_folder
        with hold_folder({str(out)!r}, "train"):
            print("holding", flush=True)
            sys.stdin.readline()
    """)
    process = subprocess.Popen([sys.executable, "-c", holder], cwd=REPO, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "holding"
        busy = rf"{re.escape(str(out))}: another process \(train, pid {process.pid}\)"
        with pytest.raises(FolderBusyError, match=busy):
            with hold_folder(out, "train"):
                pass
    finally:
        process.communicate("\n", timeout=60)
    with hold_folder(out, "train"):  # released when the holder ended
        pass


# ----------------------------------------------------------------------------------------- checkpoints


def _interrupted_run(ws, capsys, tmp_path) -> Path:
    run = tmp_path / "run"
    code, _, _ = run_cli(capsys, "train", "--data", ws["train"], "--out", run, *TINY, "--stop-after", "1")
    assert code == 0 and (run / "checkpoint.pt").is_file()
    return run


class _Hostile:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


@pytest.mark.parametrize("damage", ["truncated", "foreign", "hostile", "directory"])
def test_resume_from_a_damaged_checkpoint_is_one_line(ws, capsys, tmp_path, damage):
    run = _interrupted_run(ws, capsys, tmp_path)
    checkpoint, marker = run / "checkpoint.pt", tmp_path / "marker"
    if damage == "truncated":
        checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    elif damage == "foreign":
        checkpoint.write_bytes(b"PK\x03\x04 certainly not a checkpoint")
    elif damage == "hostile":
        torch.save({"format": 1, "models": _Hostile(str(marker))}, checkpoint)
    else:
        checkpoint.unlink()
        checkpoint.mkdir()
    code, _, err = run_cli(capsys, "train", "--data", ws["train"], "--out", run, *TINY, "--resume")
    assert code == 1
    assert_one_line(err, checkpoint)
    assert "weights_only" not in err and not marker.exists()


def test_evaluate_with_a_hostile_segmenter_runs_nothing(ws, capsys, tmp_path):
    run, marker = tmp_path / "run", tmp_path / "marker"
    run.mkdir()
    torch.save({"config": {"format": "examples.lits.segmenter/1"}, "state_dict": _Hostile(str(marker))},
               run / "segmenter.pt")
    code, _, err = run_cli(capsys, "evaluate", "--run", run, "--data", ws["test"], "--out", tmp_path / "r")
    assert code == 1
    assert_one_line(err, run / "segmenter.pt")
    assert "weights_only" not in err and not marker.exists()


def test_resume_from_a_checkpoint_of_another_architecture_names_file_and_key(ws, capsys, tmp_path):
    run = _interrupted_run(ws, capsys, tmp_path)
    checkpoint = run / "checkpoint.pt"
    state = load_checkpoint(checkpoint)
    key = next(iter(state["models"]["segmentation"]))
    state["models"]["segmentation"][key] = torch.zeros(3, 3)
    atomic_save(state, checkpoint)
    code, _, err = run_cli(capsys, "train", "--data", ws["train"], "--out", run, *TINY, "--resume")
    assert code == 1
    assert_one_line(err, checkpoint, repr(key))


def test_resume_on_other_data_of_the_same_length_is_refused(ws, capsys, tmp_path):
    cohort = tmp_path / "cohort"
    shutil.copytree(ws["cohort"] / "btcv", cohort)
    data = tmp_path / "data"
    config = PrepareConfig(size=32, crop="volume")
    prepare("btcv", cohort, data, config, progress=False)
    run = tmp_path / "run"
    code, _, _ = run_cli(capsys, "train", "--data", data, "--out", run, *TINY, "--stop-after", "1")
    assert code == 0
    image = cohort / "img" / "img0001.nii.gz"
    hu = np.asarray(nib.load(image).dataobj).astype(np.float32)
    noise = np.random.default_rng(0).normal(0, 40, hu.shape).astype(np.float32)
    save_like(image, hu + noise, image)  # another scan of the same livers: same slices, other data
    assert prepare("btcv", cohort, data, config, progress=False).prepared == ["img0001"]
    assert len(load_prepared(data, 32)) == json.loads((run / "config.json").read_text())["data"]["slices"]
    code, _, err = run_cli(capsys, "train", "--data", data, "--out", run, *TINY, "--resume")
    assert code == 1
    assert_one_line(err, run / "config.json", "fingerprint")


def test_stale_temporaries_of_a_killed_train_are_removed_by_resume(ws, capsys, tmp_path):
    run = _interrupted_run(ws, capsys, tmp_path)
    stale = [run / ".checkpoint.pt.4242.tmp", run / ".config.json.tmp", run / ".history.json.tmp"]
    for path in stale:
        path.write_bytes(b"half")
    code, _, _ = run_cli(capsys, "train", "--data", ws["train"], "--out", run, *TINY, "--resume")
    assert code == 0
    assert not any(p.exists() for p in stale)
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []


def test_stale_temporaries_of_a_killed_segment_are_removed_by_the_next(ws, capsys, tmp_path):
    out = tmp_path / "p.nii.gz"
    stale = tmp_path / ".p.nii.gz.999999999.tmp.nii.gz"  # its writer (no such process) was killed
    stale.write_bytes(b"half")
    code, _, _ = run_cli(capsys, "segment", "--run", ws["run"], "--image", ws["ct"], "--liver", ws["seg"], "--out", out)
    assert code == 0 and out.is_file() and not stale.exists()


# ------------------------------------------------------------------------------------------- full disk


def _full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_while_checkpointing_names_the_checkpoint(ws, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint_module.torch, "save", _full)  # the disk fills while a checkpoint is written
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--data", ws["train"], "--out", run, *TINY)
    assert code == 1
    assert_one_line(err, run / "checkpoint.pt", "No space left on device")


def test_a_full_disk_while_writing_the_report_names_the_folder(ws, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(io_module.os, "fsync", _full)  # every report file is written through pseudoanomaly.io
    out = tmp_path / "report"
    code, _, err = run_cli(capsys, "evaluate", "--run", ws["run"], "--data", ws["test"], "--out", out)
    assert code == 1
    assert_one_line(err, out, "No space left on device")
