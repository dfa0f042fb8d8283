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
