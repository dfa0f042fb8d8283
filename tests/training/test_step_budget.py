"""fit(max_steps=...): the step budget that sets phase lengths without knowing a trainer's config fields."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from pseudoanomaly.training import JointTrainer, TwoPhaseTrainer, ablation_row, load_checkpoint
from crashing_data import CrashingData, Interrupted


def _train_steps(out_dir) -> dict[str, int]:
    """Steps per phase, from the JSON-lines log (log_every=1: one "train" record per step)."""
    records = [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines()]
    steps: dict[str, int] = {}
    for r in records:
        if r["event"] == "train":
            steps[r["phase"]] = steps.get(r["phase"], 0) + 1
    return steps


def _log_without_time(out_dir) -> list[dict]:
    records = [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "time"} for r in records]


def _assert_same_weights(a, b):
    for net_a, net_b in ((a.restoration, b.restoration), (a.segmentation, b.segmentation)):
        sa, sb = net_a.state_dict(), net_b.state_dict()
        assert sa.keys() == sb.keys()
        for key in sa:
            assert torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("budget, expected", [
    (3, {"restoration": 3, "segmentation": 3}),
    (6, {"restoration": 6, "segmentation": 6}),  # longer than the configured epoch: crosses an epoch boundary
    ({"segmentation": 2}, {"restoration": 4, "segmentation": 2}),  # the other phase keeps its 1 epoch = 4 steps
    ({"restoration": 0, "segmentation": 1}, {"segmentation": 1}),  # 0 skips a phase
])
def test_budget_sets_the_length_of_each_phase(toy, tmp_path, budget, expected):
    config = toy.two_phase(out_dir=str(tmp_path))  # 1 epoch per phase = 4 steps of 8 images in batches of 2
    TwoPhaseTrainer(*toy.nets(), toy.Synthesis(), config).fit(toy.images(8), max_steps=budget)
    assert _train_steps(tmp_path) == expected


def test_budget_replaces_the_configured_steps_too(toy, tmp_path):
    config = toy.joint(max_steps=7, out_dir=str(tmp_path))
    JointTrainer(*toy.nets(), toy.Synthesis(), config).fit(toy.images(8), max_steps=2)
    assert _train_steps(tmp_path) == {"joint": 2}


@pytest.mark.parametrize("trainer_class, budget, fields", [
    (TwoPhaseTrainer, {"restoration": 5, "segmentation": 3}, dict(restoration_max_steps=5, segmentation_max_steps=3)),
    (TwoPhaseTrainer, 6, dict(restoration_max_steps=6, segmentation_max_steps=6)),
    (JointTrainer, 6, dict(max_steps=6)),  # DRAEM's lr steps at 80% and 90% of the budget
])
def test_a_budget_trains_the_weights_of_the_equivalent_config(toy, tmp_path, trainer_class, budget, fields):
    make_config = toy.two_phase if trainer_class is TwoPhaseTrainer else toy.joint
    common = dict(scheduler="cosine") if trainer_class is TwoPhaseTrainer else {}
    images, val = toy.images(8), toy.validation(2)
    hooked = trainer_class(*toy.nets(), toy.Synthesis(), make_config(out_dir=str(tmp_path / "hook"), **common))
    hooked_history = hooked.fit(images, val, max_steps=budget)
    configured = trainer_class(*toy.nets(), toy.Synthesis(),
                               make_config(out_dir=str(tmp_path / "config"), **common, **fields))
    configured_history = configured.fit(images, val)
    _assert_same_weights(hooked, configured)
    assert hooked_history == configured_history
    assert _log_without_time(tmp_path / "hook") == _log_without_time(tmp_path / "config")


def test_the_trainer_carries_a_default_budget_that_fit_overrides(toy, tmp_path):
    config = toy.two_phase(out_dir=str(tmp_path / "default"))
    TwoPhaseTrainer(*toy.nets(), toy.Synthesis(), config, max_steps=2).fit(toy.images(8))
    assert _train_steps(tmp_path / "default") == {"restoration": 2, "segmentation": 2}
    config = toy.two_phase(out_dir=str(tmp_path / "override"))
    TwoPhaseTrainer(*toy.nets(), toy.Synthesis(), config, max_steps=2).fit(toy.images(8), max_steps=1)
    assert _train_steps(tmp_path / "override") == {"restoration": 1, "segmentation": 1}


@pytest.mark.parametrize("row_name, fields", [
    ("draem+two_phase", dict(restoration_max_steps=2, segmentation_max_steps=2)),
    ("draem", dict(max_steps=2)),
])
def test_row_build_max_steps_trains_like_the_config_fields_it_used_to_set(toy, row_name, fields):
    row = ablation_row(row_name)
    nets = dict(restoration_kwargs=dict(base_width=4, channel_multipliers=(1, 2)),
                segmentation_kwargs=dict(base_width=2, channel_multipliers=(1, 2)))
    budgeted = row.build(**nets, max_steps=2, batch_size=2, progress=False)
    configured = row.build(**nets, batch_size=2, progress=False, **fields)
    images = toy.images(4)
    budgeted.fit(images)
    configured.fit(images)
    _assert_same_weights(budgeted, configured)


def test_resume_under_a_budget_is_bit_identical_and_needs_the_same_budget(toy, tmp_path):
    budget = {"restoration": 6, "segmentation": 3}

    def trainer(name):
        config = toy.two_phase(out_dir=str(tmp_path / name), checkpoint_every=1, scheduler="cosine")
        return TwoPhaseTrainer(*toy.nets(), toy.Synthesis(), config)

    images = toy.images(8)
    uninterrupted = trainer("full")
    uninterrupted.fit(images, max_steps=budget)
    with pytest.raises(Interrupted):
        trainer("crashed").fit(CrashingData(images, fetches=2 * 5), max_steps=budget)
    checkpoint = tmp_path / "crashed" / "checkpoint.pt"
    progress = load_checkpoint(checkpoint)["progress"]
    assert (progress["phase_name"], progress["step"], progress["max_steps"]) == ("restoration", 5, budget)

    for other in (None, 6, {"restoration": 6}):
        with pytest.raises(ValueError, match="max_steps"):
            trainer("crashed").fit(images, resume=checkpoint, max_steps=other)
    resumed = trainer("crashed")
    resumed.fit(images, resume=checkpoint, max_steps=dict(reversed(list(budget.items()))))  # order does not matter
    _assert_same_weights(resumed, uninterrupted)


def test_checkpoints_of_runs_without_a_budget_do_not_record_one(toy, tmp_path):
    TwoPhaseTrainer(*toy.nets(), toy.Synthesis(), toy.two_phase(out_dir=str(tmp_path))).fit(toy.images(8))
    assert "max_steps" not in load_checkpoint(tmp_path / "checkpoint.pt")["progress"]


@pytest.mark.parametrize("budget, message", [
    ({"joint": 2}, r"max_steps names \['joint'\], not phases of this trainer"),
    (-1, "max_steps must be an integer >= 0"),
    (True, "max_steps must be an integer >= 0"),
    ({"segmentation": 1.5}, r"max_steps\['segmentation'\] must be an integer >= 0"),
])
def test_bad_budgets_are_refused_naming_the_value(toy, budget, message):
    with pytest.raises(ValueError, match=message):
        TwoPhaseTrainer(*toy.nets(), toy.Synthesis(), toy.two_phase()).fit(toy.images(8), max_steps=budget)
    with pytest.raises(ValueError, match=message):
        TwoPhaseTrainer(*toy.nets(), toy.Synthesis(), toy.two_phase(), max_steps=budget)


# -- default_synthesis ------------------------------------------------------------------------------------------


def test_a_subclass_sets_its_default_synthesis_as_a_function(toy):
    made = []

    def square():
        made.append(toy.Synthesis())
        return made[-1]

    class WithStaticmethod(TwoPhaseTrainer):
        default_synthesis = staticmethod(square)

    class WithPlainFunction(JointTrainer):  # read off the class, so a plain function is not bound to the trainer
        default_synthesis = square

    for cls, config in ((WithStaticmethod, toy.two_phase()), (WithPlainFunction, toy.joint())):
        trainer = cls(*toy.nets(), config=config)
        assert trainer.synthesis is made[-1]
        trainer.fit(toy.images(4), max_steps=1)
    assert len(made) == 2


def test_a_given_synthesis_does_not_call_the_default(toy):
    class Failing(TwoPhaseTrainer):
        @staticmethod
        def default_synthesis():
            raise AssertionError("not to be called")

    synthesis = toy.Synthesis()
    assert Failing(*toy.nets(), synthesis, toy.two_phase()).synthesis is synthesis


def test_a_preset_name_as_default_synthesis_is_refused(toy):
    class OldStyle(TwoPhaseTrainer):
        default_synthesis = "draem"

    with pytest.raises(TypeError, match=r"OldStyle.default_synthesis must be a function .* got 'draem'"):
        OldStyle(*toy.nets(), config=toy.two_phase())


# -- the old module name ----------------------------------------------------------------------------------------


def test_the_engine_module_still_gives_its_names_with_a_deprecation_warning():
    import pseudoanomaly.training as training
    from pseudoanomaly.training import engine

    for name in ("Trainer", "Phase", "NonFiniteLossError"):
        with pytest.warns(DeprecationWarning, match=f"import {name} from pseudoanomaly.training"):
            assert getattr(engine, name) is getattr(training, name)
    with pytest.warns(DeprecationWarning):
        assert engine.CHECKPOINT_NAME == "checkpoint.pt" and engine.LOG_NAME == "log.jsonl"
    with pytest.raises(AttributeError):
        engine.NotAName  # noqa: B018
    assert isinstance(training.Phase("p", nn.Identity(), ()), training.Phase)


@pytest.mark.parametrize("stop_after", [3, 4, 6])  # inside phase 1, at its end (4 steps), inside phase 2
def test_stop_after_checkpoints_that_step_and_resume_ends_bit_identical(toy, tmp_path, stop_after):
    def trainer(name):
        # checkpoint_every=0: the only mid-epoch checkpoint is the one the stop writes
        config = toy.two_phase(out_dir=str(tmp_path / name), checkpoint_every=0, scheduler="cosine")
        return TwoPhaseTrainer(*toy.nets(), toy.Synthesis(), config)

    images, val = toy.images(8), toy.validation(2)
    uninterrupted = trainer("full")
    full_history = uninterrupted.fit(images, val)
    assert not uninterrupted.stopped_early

    stopped = trainer("stopped")
    stopped.fit(images, val, stop_after=stop_after)
    assert stopped.stopped_early
    assert sum(_train_steps(tmp_path / "stopped").values()) == stop_after
    progress = load_checkpoint(tmp_path / "stopped" / "checkpoint.pt")["progress"]
    assert progress["phase"] * 4 + progress["step"] == stop_after  # 4 steps per phase

    resumed = trainer("stopped")
    assert resumed.fit(images, val, resume=tmp_path / "stopped" / "checkpoint.pt") == full_history
    assert not resumed.stopped_early
    _assert_same_weights(resumed, uninterrupted)


def test_stop_after_at_the_last_step_is_a_finished_run(toy):
    trainer = TwoPhaseTrainer(*toy.nets(), toy.Synthesis(), toy.two_phase())
    trainer.fit(toy.images(8), stop_after=8)
    assert not trainer.stopped_early


@pytest.mark.parametrize("value", [0, -1, 2.5, True])
def test_stop_after_must_be_a_positive_integer(toy, value):
    trainer = TwoPhaseTrainer(*toy.nets(), toy.Synthesis(), toy.two_phase())
    with pytest.raises(ValueError, match=f"stop_after must be a positive integer or None, got {value!r}"):
        trainer.fit(toy.images(8), stop_after=value)
