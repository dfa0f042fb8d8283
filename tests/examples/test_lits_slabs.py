"""Training on slabs of neighbouring slices: anomalies synthesized in 3-D across slices, nets trained on slices.

The data (which slabs a prepared set yields, the voxel sizes they carry) and the ``train --slab`` command end to
end on a tiny phantom cohort; the quality of slab training is measured by benchmarks, not here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pseudoanomaly.masks import BlobMask

pytest.importorskip("nibabel")

from examples.lits import phantom  # noqa: E402
from examples.lits.__main__ import main  # noqa: E402
from examples.lits.dataset import load_prepared  # noqa: E402
from examples.lits.settings import TrainSettings, training_inputs  # noqa: E402
from examples.lits.volumes import load_prepared_volume  # noqa: E402

TINY = ["--preset", "demo", "--size", "32", "--width", "4", "--steps-restoration", "3", "--steps-segmentation", "2",
        "--batch-size", "8", "--no-progress"]


def cli(*argv) -> int:
    return main(["--threads", "1", *(str(a) for a in argv)])


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("slabs")
    cohort = phantom.make_cohort(root / "cohort", n_healthy=2, n_tumor=1, shape=(48, 48, 10), seed=1)
    paths = {"train": root / "train", "test": root / "test", "root": root}
    for layout, source, out in (("btcv", cohort.btcv_root, paths["train"]), ("lits", cohort.lits_root, paths["test"])):
        assert cli("prepare", "--layout", layout, "--root", source, "--out", out, "--size", "32", "--crop", "volume",
                   "--no-progress") == 0
    return paths


def test_slabs_are_runs_of_neighbouring_slices_of_one_volume(prepared):
    data = load_prepared(prepared["train"])
    slabs = data.slab_dataset(3)
    covered = set()
    for row in slabs.index.tolist():
        assert len(set(data.case_index[row].tolist())) == 1  # one volume
        assert torch.equal(data.slice_index[row], data.slice_index[row[0]] + torch.arange(3))  # neighbours, in order
        covered |= set(row)
    # every slice of a run of at least 3 is in some slab, and slabs overlap only to end on a run's last slice
    assert covered == set(range(len(data)))
    assert len(slabs) == sum(-(-n // 3) for n in torch.bincount(data.case_index).tolist())
    item = slabs[0]
    assert item["image"].shape == (1, 3, 32, 32) and item["foreground"].dtype == torch.bool
    assert torch.equal(item["image"][0, 1], data.images[slabs.index[0, 1], 0])
    assert len(data.slab_dataset(3, max_slabs=2)) == 2


def test_voxel_sizes_follow_the_spacing_and_the_crop(prepared):
    data = load_prepared(prepared["train"])
    manifest = json.loads((prepared["train"] / "manifest.json").read_text())
    for case in data.cases:
        x_mm, y_mm, z_mm = manifest["cases"][case]["spacing"]
        voxel = data.voxel_mm[data.indices_of(case)]
        assert torch.all(voxel[:, 0] == z_mm)
        # each slice's crop box (source pixels, rows along y, columns along x) became 32 px
        boxes = load_prepared_volume(prepared["train"] / manifest["cases"][case]["file"]).geometry.boxes
        expected = torch.tensor([[z_mm, (r1 - r0) * y_mm / 32, (c1 - c0) * x_mm / 32] for r0, r1, c0, c1 in boxes],
                                dtype=torch.float64)
        assert torch.allclose(voxel, expected) and bool((voxel[:, 1] > y_mm).all())  # a box wider than 32 px
    resized = load_prepared(prepared["train"], size=16)
    assert torch.allclose(resized.voxel_mm[:, 1:], data.voxel_mm[:, 1:] * 2)


def test_slab_runs_synthesize_across_slices_with_the_sets_anisotropy(prepared):
    data = load_prepared(prepared["train"])
    settings = TrainSettings().replace(size=32, batch_size=8, slab=4, synthesis="zhang2023")
    dataset, synthesis, batch = training_inputs(data, settings)
    assert batch == 2 and dataset.depth == 4
    ratio = float((data.voxel_mm[:, 0] / data.voxel_mm[:, 1:].mean(dim=1)).median())
    assert synthesis.mask.spacing == (round(ratio, 2), 1.0, 1.0)
    images = torch.stack([dataset[i]["image"] for i in range(2)])
    foreground = torch.stack([dataset[i]["foreground"] for i in range(2)])
    _, masks = synthesis(images, foreground, generator=torch.Generator().manual_seed(0))
    assert masks.shape == (2, 1, 4, 32, 32) and bool((masks.bool() <= foreground).all())
    # the mixed synthesis keeps the 2-D sizes in-plane: blob radii a fraction of the slices' side, as in 2-D
    mixed = training_inputs(data, settings.replace(synthesis="mixed"))[1]
    blobs = mixed.syntheses[1].mask
    assert blobs.spacing == synthesis.mask.spacing
    assert blobs.radius == pytest.approx(tuple(32 * r for r in BlobMask().radius))


def test_train_with_slabs_writes_a_run_that_evaluates(prepared):
    run = prepared["root"] / "run"
    assert cli("train", "--data", prepared["train"], "--out", run, *TINY, "--slab", "4") == 0
    config = json.loads((run / "config.json").read_text())
    assert config["settings"]["slab"] == 4 and config["trainer"]["batch_size"] == 2
    assert "spacing=(" in config["synthesis"]
    assert cli("evaluate", "--run", run, "--data", prepared["test"], "--out", prepared["root"] / "report") == 0
    assert (prepared["root"] / "report" / "metrics.json").is_file()


@pytest.mark.parametrize("argv, shown", [
    (["--slab", "1"], "slab must be an integer >= 2"),
    (["--slab", "16"], "slab=16 needs batch_size >= 16"),
    (["--slab", "12", "--batch-size", "12"], "no run of 12 consecutive slices in one volume"),
])
def test_bad_slab_settings_are_refused_by_name(prepared, tmp_path, capsys, argv, shown):
    code = cli("train", "--data", prepared["train"], "--out", tmp_path / "run", *TINY, *argv)
    assert code == 1 and shown in capsys.readouterr().err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_ablation_refuses_slabs(prepared, tmp_path, capsys):
    code = cli("ablation", "--train", prepared["train"], "--test", prepared["test"], "--out", tmp_path / "abl",
               *TINY, "--slab", "4")
    assert code == 1 and "leave --slab out of ablation" in capsys.readouterr().err
