"""TwoPhaseTrainer: learning, freezing, evaluation hook, logs, accepted batch layouts."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import DataLoader

from pseudoanomaly import presets
from pseudoanomaly.models import AnomalySegmenter
from pseudoanomaly.training import TwoPhaseTrainer


def _losses(log_path, phase):
    records = [json.loads(line) for line in log_path.read_text().splitlines()]
    return [r["loss"] for r in records if r["event"] == "train" and r["phase"] == phase]


def test_both_phases_reduce_their_loss_on_a_toy_task(toy, tmp_path):
    rest, seg = toy.nets()
    config = toy.two_phase(restoration_epochs=12, segmentation_epochs=12, batch_size=4, lr=2e-3, log_every=6,
                           out_dir=str(tmp_path))
    TwoPhaseTrainer(rest, seg, toy.Synthesis(), config).fit(toy.images(8))
    for phase in ("restoration", "segmentation"):
        losses = _losses(tmp_path / "log.jsonl", phase)
        assert len(losses) == 4
        assert losses[-1] < 0.7 * losses[0], (phase, losses)


def test_restoration_is_frozen_and_bit_identical_through_phase_two(toy):
    images = toy.images(8)
    # The same run without phase 2 gives the restoration weights at the end of phase 1.
    rest_only, seg_only = toy.nets()
    TwoPhaseTrainer(rest_only, seg_only, presets.zhang2023(), toy.two_phase(segmentation_epochs=0)).fit(images)
    after_phase_one = {k: v.clone() for k, v in rest_only.state_dict().items()}

    rest, seg = toy.nets()
    seg_before = {k: v.clone() for k, v in seg.state_dict().items()}
    modes = []
    rest.register_forward_pre_hook(lambda m, _: modes.append((m.training, torch.is_grad_enabled())))
    TwoPhaseTrainer(rest, seg, presets.zhang2023(), toy.two_phase(segmentation_epochs=2)).fit(images)

    for key, value in rest.state_dict().items():
        assert torch.equal(value, after_phase_one[key]), key
    assert not any(torch.equal(v, seg_before[k]) for k, v in seg.state_dict().items() if v.is_floating_point())
    assert all(not p.requires_grad and p.grad is None for p in rest.parameters())
    assert not rest.training
    # Phase 1: 4 training forwards; phase 2: 8 forwards in eval mode without autograd.
    assert modes == [(True, True)] * 4 + [(False, False)] * 8


def test_step_budget_overrides_epochs(toy, tmp_path):
    rest, seg = toy.nets()
    config = toy.two_phase(restoration_epochs=50, restoration_max_steps=3, segmentation_max_steps=2,
                           out_dir=str(tmp_path))
    TwoPhaseTrainer(rest, seg, toy.Synthesis(), config).fit(toy.images(8))
    assert len(_losses(tmp_path / "log.jsonl", "restoration")) == 3
    assert len(_losses(tmp_path / "log.jsonl", "segmentation")) == 2


def test_evaluation_hook_records_dice_and_auroc_every_k_epochs(toy, tmp_path):
    rest, seg = toy.nets()
    config = toy.two_phase(segmentation_epochs=4, eval_every=2, out_dir=str(tmp_path))
    history = TwoPhaseTrainer(rest, seg, toy.Synthesis(), config).fit(toy.images(8), toy.validation())
    assert [(h["phase"], h["epoch"], h["step"]) for h in history] == [("segmentation", 2, 8), ("segmentation", 4, 16)]
    for h in history:
        assert 0.0 <= h["dice"] <= 1.0 and 0.0 <= h["auroc"] <= 1.0
    logged = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if r["event"] == "eval"] == [8, 16]


def test_eval_every_step_unit(toy):
    rest, seg = toy.nets()
    config = toy.two_phase(segmentation_max_steps=5, eval_every=2, eval_unit="step")
    history = TwoPhaseTrainer(rest, seg, toy.Synthesis(), config).fit(toy.images(8), toy.validation())
    assert [h["step"] for h in history] == [2, 4, 5]


@pytest.mark.parametrize("layout", ["tensor", "tuple", "dict"])
def test_accepts_tensor_tuple_and_dict_items(toy, layout):
    images = toy.images(4)
    foreground = torch.ones(4, 1, 32, 32, dtype=torch.bool)
    data = {
        "tensor": images,
        "tuple": list(zip(images, foreground)),
        "dict": [{"image": i, "foreground": f} for i, f in zip(images, foreground)],
    }[layout]
    rest, seg = toy.nets()
    TwoPhaseTrainer(rest, seg, toy.Synthesis(), toy.two_phase()).fit(data)
    reference_rest, reference_seg = toy.nets()
    TwoPhaseTrainer(reference_rest, reference_seg, toy.Synthesis(), toy.two_phase()).fit(images)
    for a, b in zip(seg.state_dict().values(), reference_seg.state_dict().values()):
        assert torch.equal(a, b)


def test_rejects_a_dataloader_and_too_little_data(toy):
    rest, seg = toy.nets()
    trainer = TwoPhaseTrainer(rest, seg, toy.Synthesis(), toy.two_phase(batch_size=8))
    with pytest.raises(TypeError, match="not a DataLoader"):
        trainer.fit(DataLoader(toy.images(8), batch_size=8))
    with pytest.raises(ValueError, match="train_data has 4 samples, fewer than batch_size=8"):
        trainer.fit(toy.images(4))
    with pytest.raises(KeyError, match="no 'image' key"):
        trainer.fit([{"img": i} for i in toy.images(8)])


def test_export_gives_a_segmenter_in_eval_mode(toy):
    rest, seg = toy.nets()
    trainer = TwoPhaseTrainer(rest, seg, toy.Synthesis(), toy.two_phase())
    trainer.fit(toy.images(4))
    segmenter = trainer.export()
    assert isinstance(segmenter, AnomalySegmenter) and not segmenter.training
    maps = segmenter(toy.images(3))
    assert maps.shape == (3, 1, 32, 32) and bool(((maps >= 0) & (maps <= 1)).all())


def test_progress_bar_shows_phase_and_running_loss(toy, capsys):
    pytest.importorskip("tqdm")
    rest, seg = toy.nets()
    TwoPhaseTrainer(rest, seg, toy.Synthesis(), toy.two_phase(progress=True)).fit(toy.images(4))
    err = capsys.readouterr().err
    assert "restoration" in err and "segmentation" in err and "loss=" in err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 autocast is a CUDA option")
def test_bf16_autocast_trains_on_cuda(toy):
    rest, seg = toy.nets()
    config = toy.two_phase(device="cuda", precision="bf16")
    history = TwoPhaseTrainer(rest, seg, toy.Synthesis(), config).fit(toy.images(8), toy.validation())
    assert next(seg.parameters()).device.type == "cuda" and next(seg.parameters()).dtype == torch.float32
    assert all(torch.isfinite(p).all() for p in seg.parameters()) and len(history) == 1


def test_default_synthesis_is_the_papers(toy):
    trainer = TwoPhaseTrainer(*toy.nets(), config=toy.two_phase())
    assert repr(trainer.synthesis) == repr(presets.zhang2023())


def test_slabs_are_synthesized_in_3d_and_trained_on_as_slices(toy):
    # items (1, D, H, W): the synthesis gets the (B, 1, D, H, W) batch, so one anomaly spans neighbouring slices;
    # the nets get the B * D slices, slab by slab in slice order
    from pseudoanomaly import PseudoAnomaly
    from pseudoanomaly.masks import BlobMask
    from pseudoanomaly.overlays import IntensityShift

    depth = 4
    slabs = toy.images(4 * depth).view(4, depth, 1, 32, 32).transpose(1, 2).contiguous()  # (4, 1, D, 32, 32)
    foreground = torch.ones(4, 1, depth, 32, 32, dtype=torch.bool)
    data = [{"image": i, "foreground": f} for i, f in zip(slabs, foreground)]
    synthesis = PseudoAnomaly(BlobMask(radius=(4.0, 6.0), spacing=(2.0, 1.0, 1.0)), IntensityShift())
    seen = []
    rest, seg = toy.nets()
    seg.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape))
    trainer = TwoPhaseTrainer(rest, seg, synthesis, toy.two_phase())
    trainer.fit(data)
    assert seen and all(shape == (2 * depth, 2, 32, 32) for shape in seen)  # batch 2 slabs -> 8 slices
    masks = synthesis.last_params  # the last step's draw was made on slabs
    assert tuple(masks["mask"]["image_size"][0].tolist()) == (depth, 32, 32)
    # the same seed gives the same weights
    rest2, seg2 = toy.nets()
    TwoPhaseTrainer(rest2, seg2, PseudoAnomaly(BlobMask(radius=(4.0, 6.0), spacing=(2.0, 1.0, 1.0)),
                                               IntensityShift()), toy.two_phase()).fit(data)
    assert all(torch.equal(a, b) for a, b in zip(seg.state_dict().values(), seg2.state_dict().values()))


def test_slabs_and_slices_are_refused_together_and_folded_in_order(toy):
    from pseudoanomaly.training import fold_slabs
    from pseudoanomaly.training.batches import unpack_train_batch

    with pytest.raises(ValueError, match=r"batch foreground must be a tensor \(B, 1, D, H, W\) like the slabs"):
        unpack_train_batch({"image": torch.zeros(2, 1, 3, 8, 8), "foreground": torch.ones(2, 1, 8, 8)}, "cpu")
    x = torch.arange(2 * 3).float().view(2, 1, 3, 1, 1).expand(2, 1, 3, 4, 4)
    assert fold_slabs(x)[:, 0, 0, 0].tolist() == [0, 1, 2, 3, 4, 5]  # slab 0's slices, then slab 1's
