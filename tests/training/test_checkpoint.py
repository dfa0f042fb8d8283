"""Checkpoints: weights_only round trip, bit-identical resume, NaN stop that keeps the last good checkpoint."""

from __future__ import annotations

import pytest
import torch
from crashing_data import CrashingData, Interrupted
from torch import nn

from pseudoanomaly import presets
from pseudoanomaly.models import AnomalySegmenter
from pseudoanomaly.training import (
    JointTrainer,
    NonFiniteLossError,
    TwoPhaseConfig,
    TwoPhaseTrainer,
    atomic_save,
    load_checkpoint,
    load_segmenter,
    save_segmenter,
)


# 8 images in batches of 2: 4 steps per epoch, 8 steps per phase; a cosine lr puts the scheduler state to use.
RESUME = dict(scheduler="cosine", eval_every=1, checkpoint_every=1)
RESUME_CASES = {
    # name: (trainer, preset, phase lengths, steps done before the crash, phase of the crash)
    "two_phase-mid-phase-1": (TwoPhaseTrainer, "zhang2023", dict(restoration_epochs=2, segmentation_epochs=2), 5,
                              "restoration"),
    "two_phase-mid-phase-2": (TwoPhaseTrainer, "zhang2023", dict(restoration_epochs=2, segmentation_epochs=2), 11,
                              "segmentation"),
    "joint": (JointTrainer, "draem", dict(epochs=2), 6, "joint"),
}


def _assert_same_state(a: nn.Module, b: nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_resume_is_bit_identical_to_an_uninterrupted_run(toy, tmp_path, case):
    trainer_class, preset, lengths, crash_after_steps, phase = RESUME_CASES[case]
    make_config = toy.two_phase if trainer_class is TwoPhaseTrainer else toy.joint

    def trainer(out_dir, seed=0):
        config = make_config(out_dir=str(tmp_path / out_dir), **RESUME, **lengths)
        return trainer_class(*toy.nets(seed), getattr(presets, preset)(), config)

    images, val = toy.images(8), toy.validation()
    uninterrupted = trainer("full")
    expected_history = uninterrupted.fit(images, val)

    with pytest.raises(Interrupted):
        trainer("crashed").fit(CrashingData(images, fetches=2 * crash_after_steps), val)
    checkpoint = tmp_path / "crashed" / "checkpoint.pt"
    progress = load_checkpoint(checkpoint)["progress"]
    assert progress["phase_name"] == phase and progress["step"] == crash_after_steps % 8

    # As in a new process: fresh nets with other initial weights, then resume.
    resumed = trainer("crashed", seed=123)
    history = resumed.fit(images, val, resume=checkpoint)
    _assert_same_state(resumed.restoration, uninterrupted.restoration)
    _assert_same_state(resumed.segmentation, uninterrupted.segmentation)
    assert history == expected_history and len(history) == 2
    assert '"event": "resume"' in (tmp_path / "crashed" / "log.jsonl").read_text()


def test_resume_of_a_finished_run_changes_nothing(toy, tmp_path):
    rest, seg = toy.nets()
    config = toy.two_phase(out_dir=str(tmp_path))
    TwoPhaseTrainer(rest, seg, toy.Synthesis(), config).fit(toy.images(4))
    again = TwoPhaseTrainer(*toy.nets(seed=5), toy.Synthesis(), config)
    again.fit(toy.images(4), resume=tmp_path / "checkpoint.pt")
    _assert_same_state(again.segmentation, seg)
    assert not again.restoration.training and not next(again.restoration.parameters()).requires_grad


def test_resume_refuses_a_different_config_or_dataset(toy, tmp_path):
    rest, seg = toy.nets()
    TwoPhaseTrainer(rest, seg, toy.Synthesis(), toy.two_phase(out_dir=str(tmp_path))).fit(toy.images(4))
    path = tmp_path / "checkpoint.pt"
    other = TwoPhaseTrainer(*toy.nets(), toy.Synthesis(), toy.two_phase(lr=1e-3))
    with pytest.raises(ValueError, match=r"different config \(lr: checkpoint 0.0001 vs config 0.001\)"):
        other.fit(toy.images(4), resume=path)
    same = TwoPhaseTrainer(*toy.nets(), toy.Synthesis(), toy.two_phase(out_dir=str(tmp_path / "elsewhere")))
    with pytest.raises(ValueError, match="2 steps per epoch, this train_data gives 4"):
        same.fit(toy.images(8), resume=path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        same.fit(toy.images(4), resume=tmp_path / "missing.pt")


def test_checkpoint_is_plain_data_under_weights_only(toy, tmp_path):
    rest, seg = toy.nets()
    config = toy.two_phase(segmentation_epochs=2, out_dir=str(tmp_path))
    trainer = TwoPhaseTrainer(rest, seg, toy.Synthesis(), config)
    trainer.fit(toy.images(8), toy.validation())
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert set(state) == {"format", "trainer", "config", "progress", "models", "optimizer", "scheduler", "rng",
                          "history"}
    assert TwoPhaseConfig.from_dict(state["config"]) == config
    assert state["progress"]["phase_name"] == "done" and state["trainer"] == "TwoPhaseTrainer"
    assert isinstance(state["rng"]["synthesis"][0], torch.Tensor) and isinstance(state["rng"]["torch"][0]["cpu"],
                                                                                 torch.Tensor)
    segmenter = load_segmenter(AnomalySegmenter(*toy.nets(seed=9)), tmp_path / "checkpoint.pt")
    _assert_same_state(segmenter, trainer.export())


def test_mid_phase_checkpoint_holds_optimizer_and_scheduler(toy, tmp_path):
    rest, seg = toy.nets()
    config = toy.two_phase(restoration_epochs=2, scheduler="cosine", out_dir=str(tmp_path))
    with pytest.raises(Interrupted):
        # Dies in the second epoch of phase 1, after the epoch-end checkpoint.
        TwoPhaseTrainer(rest, seg, toy.Synthesis(), config).fit(CrashingData(toy.images(8), fetches=10))
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert (state["progress"]["phase_name"], state["progress"]["epoch"], state["progress"]["batch"]) == (
        "restoration", 1, 0)
    assert state["optimizer"]["state"] and state["scheduler"]["last_epoch"] == 4


def test_save_and_load_final_weights(toy, tmp_path):
    rest, seg = toy.nets()
    trainer = TwoPhaseTrainer(rest, seg, toy.Synthesis(), toy.two_phase())
    trainer.fit(toy.images(4))
    path = save_segmenter(trainer.export(), tmp_path / "final.pt", config=trainer.config.to_dict())
    assert torch.load(path, weights_only=True)["config"]["batch_size"] == 2
    loaded = load_segmenter(AnomalySegmenter(*toy.nets(seed=4)), path)
    _assert_same_state(loaded, trainer.export())
    images = toy.images(2)
    assert torch.equal(loaded(images), trainer.export()(images))


class NaNAfter(nn.Module):
    """Wraps a net and returns NaN from its ``calls + 1``-th training forward on; calls ``on_nan`` first."""

    def __init__(self, net, calls, on_nan):
        super().__init__()
        self.net, self.calls, self.count, self.on_nan = net, calls, 0, on_nan

    def forward(self, x):
        out = self.net(x)
        if self.training:
            self.count += 1
            if self.count > self.calls:
                self.on_nan()
                out = out * float("nan")
        return out


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_checkpoint(toy, tmp_path):
    rest, seg = toy.nets()
    config = toy.two_phase(restoration_epochs=3, checkpoint_every=1, out_dir=str(tmp_path))
    path = tmp_path / "checkpoint.pt"
    before_nan = []
    trainer = TwoPhaseTrainer(NaNAfter(rest, 3, lambda: before_nan.append(path.read_bytes())), seg,
                              toy.Synthesis(), config)
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 3 of phase 'restoration'") as info:
        trainer.fit(toy.images(8))
    assert info.value.checkpoint == path and info.value.step == 3
    state = torch.load(path, weights_only=True)
    assert state["progress"]["step"] == 3
    # The weights in the checkpoint are finite: the NaN step was not taken.
    assert all(torch.isfinite(v).all() for v in state["models"]["restoration"].values() if v.is_floating_point())
    assert path.read_bytes() == before_nan[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "log.jsonl"]  # no temporary file


def test_atomic_save_leaves_the_old_file_when_writing_fails(tmp_path):
    path = atomic_save({"a": torch.ones(2)}, tmp_path / "c.pt")

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_save({"a": Unpicklable()}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


# -- the layout of a trainer's checkpoint (training_state / read_training_state) --------------------------------


def _layout_state(toy, **overrides):
    from pseudoanomaly.training.checkpoint import training_state

    rest, seg = toy.nets()
    rng = {"torch": {"cpu": torch.get_rng_state(), "cuda": None}, "synthesis": torch.Generator().get_state()}
    fields = dict(trainer="TwoPhaseTrainer", config=toy.two_phase(), phase=0, phase_name="restoration", step=6,
                  steps_per_epoch=4, world_size=1, models={"restoration": rest, "segmentation": seg},
                  optimizer=None, scheduler=None, rng=[rng], history=[])
    return training_state(**{**fields, **overrides})


def test_training_state_layout(toy):
    state = _layout_state(toy)
    assert list(state) == ["format", "trainer", "config", "progress", "models", "optimizer", "scheduler", "rng",
                           "history"]
    assert state["progress"] == {"phase": 0, "phase_name": "restoration", "step": 6, "epoch": 1, "batch": 2,
                                 "steps_per_epoch": 4, "world_size": 1}
    assert state["rng"]["data_order"] == {"seed": 0, "phase": 0, "epoch": 1, "batch": 2}
    assert list(state["models"]) == ["restoration", "segmentation"]
    assert _layout_state(toy, max_steps={"restoration": 6})["progress"]["max_steps"] == {"restoration": 6}


def test_read_training_state_round_trips_and_names_what_differs(toy, tmp_path):
    from pseudoanomaly.training.checkpoint import read_training_state

    path = atomic_save(_layout_state(toy, max_steps=6), tmp_path / "checkpoint.pt")
    expect = dict(trainer="TwoPhaseTrainer", config=toy.two_phase(), steps_per_epoch=4, world_size=1, max_steps=6)
    saved = read_training_state(path, **expect)
    assert saved["progress"]["step"] == 6 and torch.equal(
        saved["models"]["restoration"]["head.weight"], toy.nets()[0].state_dict()["head.weight"])
    mismatches = {
        "trainer": ("JointTrainer", "checkpoint of 'TwoPhaseTrainer'"),
        "config": (toy.two_phase(lr=1.0), "different config .*lr"),
        "steps_per_epoch": (5, "4 steps per epoch, this train_data gives 5"),
        "world_size": (2, "written by 1 processes, this run has 2"),
        "max_steps": (None, "max_steps=6, this run has max_steps=None"),
    }
    for key, (value, message) in mismatches.items():
        with pytest.raises(ValueError, match=message):
            read_training_state(path, **{**expect, key: value})
    incomplete = {k: v for k, v in _layout_state(toy).items() if k != "rng"}
    with pytest.raises(ValueError, match="incomplete checkpoint: no rng"):
        read_training_state(atomic_save(incomplete, tmp_path / "incomplete.pt"), **{**expect, "max_steps": None})
