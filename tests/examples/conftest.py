"""Fixtures of the ``examples.lits`` tests: a small phantom cohort, its prepared slices, the CHAOS scan.

Session-scoped, so the cohort is drawn and prepared once for all the example tests. The example's modules are
imported inside the fixtures, so that a machine without nibabel (the ``lits`` extra) skips instead of erroring.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# ../shared/data/chaos-ct3 relative to the repository root: one real healthy CT with its liver mask.
CHAOS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "chaos-ct3"
PHANTOM_SHAPE = (96, 96, 16)


@pytest.fixture(scope="session")
def lits_phantom(tmp_path_factory):
    """Two healthy volumes (BTCV layout) and two tumor volumes (LiTS layout) of 96 x 96 x 16 voxels."""
    pytest.importorskip("nibabel", reason="the lits example needs the 'lits' extra (nibabel)")
    from examples.lits.phantom import make_cohort

    return make_cohort(tmp_path_factory.mktemp("phantom"), n_healthy=2, n_tumor=2, shape=PHANTOM_SHAPE, seed=0)


@pytest.fixture(scope="session")
def lits_prepared(lits_phantom, tmp_path_factory) -> dict[str, Path]:
    """``{"btcv": folder, "lits": folder}``: the phantom cohort prepared with the default config."""
    from examples.lits.prepare import prepare

    out = tmp_path_factory.mktemp("prepared")
    prepare("btcv", lits_phantom.btcv_root, out / "btcv", progress=False)
    prepare("lits", lits_phantom.lits_root, out / "lits", progress=False)
    return {"btcv": out / "btcv", "lits": out / "lits"}


@pytest.fixture(scope="session")
def chaos_dir() -> Path:
    """The CHAOS CT set 3 folder (``ct.nii.gz``, ``liver.nii.gz``); the test is skipped when it is absent."""
    if not (CHAOS_DIR / "ct.nii.gz").is_file() or not (CHAOS_DIR / "liver.nii.gz").is_file():
        pytest.skip(f"real-data test: CHAOS CT set 3 not found at {CHAOS_DIR} (see its README for the source)")
    return CHAOS_DIR


# A tiny training run for the commands that apply one: 32 px slices, 4-channel nets, a few steps (plumbing, not
# quality). The same flags as tests/examples/test_lits_cli.py's TINY.
TINY_TRAIN = ["--preset", "demo", "--size", "32", "--width", "4", "--steps-restoration", "4",
              "--steps-segmentation", "3", "--batch-size", "2", "--eval-every", "1", "--checkpoint-every", "1",
              "--no-progress"]


@pytest.fixture(scope="session")
def lits_tiny_run(tmp_path_factory) -> dict[str, Path]:
    """``{"run": run folder, "tumor": [(volume, segmentation), ...]}``: a run trained on a phantom cohort of
    48 x 48 x 8 volumes (2 healthy), and that cohort's 2 tumor volumes (LiTS layout) to apply it to."""
    pytest.importorskip("nibabel", reason="the lits example needs the 'lits' extra (nibabel)")
    from examples.lits.__main__ import main
    from examples.lits.phantom import make_cohort

    root = tmp_path_factory.mktemp("tiny-run")
    cohort = make_cohort(root / "cohort", n_healthy=2, n_tumor=2, shape=(48, 48, 8), seed=0)
    prepared, run = root / "prepared", root / "run"
    assert main(["--threads", "1", "prepare", "--layout", "btcv", "--root", str(cohort.btcv_root), "--out",
                 str(prepared), "--size", "32", "--crop", "volume", "--no-progress"]) == 0
    assert main(["--threads", "1", "train", "--data", str(prepared), "--out", str(run), *TINY_TRAIN]) == 0
    return {"run": run, "tumor": cohort.tumor}
