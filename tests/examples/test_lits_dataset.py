"""Prepared slices as tensors and datasets: shapes, dtypes, subsetting, resizing, collation."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

pytest.importorskip("nibabel", reason="the lits example needs the 'lits' extra (nibabel)")

from examples.lits.dataset import load_prepared  # noqa: E402
from examples.lits.dataset import read_manifest  # noqa: E402
from examples.lits.volumes import load_prepared_volume  # noqa: E402


def test_all_slices_as_tensors_in_manifest_order(lits_prepared):
    out = lits_prepared["lits"]
    data = load_prepared(out)
    manifest = read_manifest(out)
    n = sum(e["slices"] for e in manifest["cases"].values())
    assert len(data) == n and data.cases == list(manifest["cases"])
    assert data.images.shape == (n, 1, 256, 256) and data.images.dtype == torch.float32
    assert data.foreground.dtype == torch.bool and data.tumor.dtype == torch.bool
    assert data.foreground.shape == data.tumor.shape == data.images.shape
    first = load_prepared_volume(out / manifest["cases"]["volume-0"]["file"])
    idx = data.indices_of("volume-0")
    torch.testing.assert_close(data.images[idx, 0], torch.from_numpy(first.images))
    assert data.slice_index[idx].tolist() == first.geometry.slices.tolist()
    assert data.case_ids[: len(idx)] == ["volume-0"] * len(idx)
    assert bool(data.tumor.any()) and not bool((data.tumor & ~data.foreground).any())
    assert not bool(load_prepared(lits_prepared["btcv"]).tumor.any())


def test_stride_max_slices_and_cases_subsets(lits_prepared):
    out = lits_prepared["btcv"]
    full = load_prepared(out)
    strided = load_prepared(out, stride=2)
    for case in full.cases:
        assert strided.slice_index[strided.indices_of(case)].tolist() == \
            full.slice_index[full.indices_of(case)][::2].tolist()
    few = load_prepared(out, max_slices=5)
    assert len(few) == 5 and set(few.case_ids) == set(full.cases), "every volume stays represented"
    only = load_prepared(out, cases=["img0002"])
    assert only.cases == ["img0002"] and len(only) == len(full.indices_of("img0002"))
    with pytest.raises(KeyError, match="img0009"):
        load_prepared(out, cases=["img0009"])
    with pytest.raises(ValueError, match="stride must be >= 1, got 0"):
        load_prepared(out, stride=0)


def test_resizing_keeps_the_background_exactly_zero(lits_prepared):
    data = load_prepared(lits_prepared["lits"], size=128)
    assert data.images.shape[-2:] == (128, 128) and data.foreground.shape[-2:] == (128, 128)
    assert bool((data.images[~data.foreground] == 0).all())
    assert 0 <= float(data.images.min()) and float(data.images.max()) <= 1
    assert not bool((data.tumor & ~data.foreground).any()) and bool(data.tumor.any())
    full = load_prepared(lits_prepared["lits"])
    ratio = data.foreground.sum() / full.foreground.sum()
    assert abs(float(ratio) - 0.25) < 0.02


def test_dataset_items_collate_into_trainer_batches(lits_prepared):
    train = load_prepared(lits_prepared["btcv"], size=64).train_dataset()
    item = train[0]
    assert set(item) == {"image", "foreground"}
    assert item["image"].shape == (1, 64, 64) and item["image"].dtype == torch.float32
    assert item["foreground"].dtype == torch.bool
    batch = next(iter(DataLoader(train, batch_size=3)))
    assert batch["image"].shape == (3, 1, 64, 64) and batch["foreground"].shape == (3, 1, 64, 64)

    val = load_prepared(lits_prepared["lits"], size=64).eval_dataset()
    batch = next(iter(DataLoader(val, batch_size=4)))
    assert set(batch) == {"image", "foreground", "label", "index"}
    assert batch["label"].shape == (4, 1, 64, 64) and batch["label"].dtype == torch.bool
    assert batch["index"].tolist() == [0, 1, 2, 3]


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load_prepared(tmp_path)
