"""JointTrainer (DRAEM) and the paper's Table 2 rows."""

from __future__ import annotations

import json

import pytest
import torch

from pseudoanomaly import presets
from pseudoanomaly.models import ReconstructiveAE, RestorationUNet
from pseudoanomaly.training import (
    TABLE2_ROWS,
    JointTrainer,
    TwoPhaseTrainer,
    ablation_row,
    table2_rows,
)


def test_joint_step_trains_both_nets_on_the_summed_loss(toy, tmp_path):
    rest, seg = toy.nets()
    before = [p.clone() for p in (*rest.parameters(), *seg.parameters())]
    config = toy.joint(out_dir=str(tmp_path))
    JointTrainer(rest, seg, toy.Synthesis(), config).fit(toy.images(8))
    after = list((*rest.parameters(), *seg.parameters()))
    assert all(not torch.equal(a, b) for a, b in zip(after, before))
    assert rest.training and all(p.requires_grad for p in rest.parameters())  # nothing is frozen
    record = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[0])
    assert record["loss"] == pytest.approx(record["reconstruction"] + record["focal"], rel=1e-5)


def test_draem_multistep_lr_drops_at_80_and_90_percent(toy, tmp_path):
    rest, seg = toy.nets()
    config = toy.joint(max_steps=10, out_dir=str(tmp_path), lr=1e-3)
    JointTrainer(rest, seg, toy.Synthesis(), config).fit(toy.images(8))
    lrs = [json.loads(line)["lr"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    # Milestones at steps int(0.8 * 10) = 8 and int(0.9 * 10) = 9 (0-based), factor 0.2 each.
    assert lrs == pytest.approx([1e-3] * 8 + [2e-4, 4e-5])


def test_table2_has_every_row_of_the_paper():
    rows = table2_rows()
    assert tuple(rows) == TABLE2_ROWS
    summary = {name: (row.trainer, row.restoration, row.synthesis) for name, row in rows.items()}
    assert summary == {
        "draem": (JointTrainer, "ae", "draem"),
        "draem+two_phase": (TwoPhaseTrainer, "ae", "draem"),
        "draem+two_phase+synthesis": (TwoPhaseTrainer, "ae", "zhang2023"),
        "draem+synthesis+unet": (JointTrainer, "unet", "zhang2023"),
        "full": (TwoPhaseTrainer, "unet", "zhang2023"),
    }
    with pytest.raises(ValueError, match=r"name must be one of .*, got 'draem\+unet'"):
        ablation_row("draem+unet")


TINY_NETS = {
    "ae": dict(base_width=4, channel_multipliers=(1, 2, 2)),
    "unet": dict(base_width=4, depth=2),
}


@pytest.mark.parametrize("name", TABLE2_ROWS)
def test_every_table2_row_trains_for_a_few_steps(name, toy):
    row = ablation_row(name)
    trainer = row.build(
        restoration_kwargs=TINY_NETS[row.restoration],
        segmentation_kwargs=dict(base_width=4, channel_multipliers=(1, 2, 2)),
        max_steps=2,
        batch_size=2,
        progress=False,
    )
    assert isinstance(trainer, row.trainer)
    assert isinstance(trainer.restoration, {"ae": ReconstructiveAE, "unet": RestorationUNet}[row.restoration])
    before = {k: v.clone() for k, v in trainer.segmentation.state_dict().items()}
    foreground = torch.zeros(4, 1, 32, 32, dtype=torch.bool)
    foreground[..., 4:28, 4:28] = True
    history = trainer.fit(list(zip(toy.images(4), foreground)), toy.validation(2))
    assert len(history) == 1 and set(history[0]) >= {"dice", "auroc"}
    assert any(not torch.equal(v, before[k]) for k, v in trainer.segmentation.state_dict().items())


def test_row_build_is_seeded_and_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    a = ablation_row("full").build(restoration_kwargs=dict(base_width=4, depth=2),
                                   segmentation_kwargs=dict(base_width=4, channel_multipliers=(1, 2)))
    b = ablation_row("full").build(restoration_kwargs=dict(base_width=4, depth=2),
                                   segmentation_kwargs=dict(base_width=4, channel_multipliers=(1, 2)))
    assert torch.equal(torch.get_rng_state(), state)
    for x, y in zip(a.restoration.state_dict().values(), b.restoration.state_dict().values()):
        assert torch.equal(x, y)


def test_default_synthesis_is_draems(toy):
    trainer = JointTrainer(*toy.nets(), config=toy.joint())
    assert repr(trainer.synthesis) == repr(presets.draem())
