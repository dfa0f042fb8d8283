"""Config validation: bad values raise ValueError naming the field and the value; configs are plain data."""

from __future__ import annotations

import pytest
import torch

from pseudoanomaly.training import JointConfig, JointTrainer, TrainerConfig, TwoPhaseConfig, TwoPhaseTrainer


@pytest.mark.parametrize(
    ("cls", "field", "value"),
    [
        (TwoPhaseConfig, "restoration_epochs", -1),
        (TwoPhaseConfig, "segmentation_epochs", -2),
        (TwoPhaseConfig, "segmentation_max_steps", -5),
        (TwoPhaseConfig, "restoration_loss", "l3"),
        (JointConfig, "epochs", -1),
        (JointConfig, "max_steps", 1.5),
        (TrainerConfig, "lr", 0.0),
        (TrainerConfig, "lr", -1e-4),
        (TrainerConfig, "lr", float("nan")),
        (TrainerConfig, "optimizer", "adamax"),
        (TrainerConfig, "scheduler", "linear"),
        (TrainerConfig, "milestones", (0.9, 0.8)),
        (TrainerConfig, "milestones", (1.5,)),
        (TrainerConfig, "batch_size", 0),
        (TrainerConfig, "seed", -1),
        (TrainerConfig, "eval_every", -1),
        (TrainerConfig, "eval_unit", "hour"),
        (TrainerConfig, "checkpoint_every", -1),
        (TrainerConfig, "precision", "fp16"),
        (TrainerConfig, "num_workers", -1),
        (TrainerConfig, "weight_decay", -0.1),
    ],
)
def test_bad_field_raises_naming_field_and_value(cls, field, value):
    with pytest.raises(ValueError, match=field) as info:
        cls(**{field: value})
    assert repr(value) in str(info.value) or str(value) in str(info.value)


def test_bf16_is_taken_on_cuda_and_cpu_and_refused_elsewhere():
    for device in ("cpu", "cuda", "cuda:1", "auto"):
        assert TrainerConfig(precision="bf16", device=device).precision == "bf16"
    with pytest.raises(ValueError, match="precision='bf16' needs a CUDA device or a CPU, got device='mps'"):
        TrainerConfig(precision="bf16", device="mps")


@pytest.mark.parametrize("value", [1, "yes", None])
def test_channels_last_must_be_a_bool(value):
    with pytest.raises(ValueError, match=f"channels_last must be True or False, got {value!r}"):
        TrainerConfig(channels_last=value)


def test_defaults_are_the_papers():
    two, joint = TwoPhaseConfig(), JointConfig()
    assert (two.restoration_epochs, two.segmentation_epochs, two.lr, two.batch_size, two.optimizer) == (
        200, 1, 1e-4, 8, "adam")
    assert two.restoration_loss == "l1" and joint.restoration_loss == "l2+ssim"
    assert (joint.epochs, joint.scheduler, joint.milestones, joint.gamma) == (700, "multistep", (0.8, 0.9), 0.2)


@pytest.mark.parametrize("cls", [TwoPhaseConfig, JointConfig])
def test_dict_round_trip_is_plain_data(cls, tmp_path):
    config = cls(seed=3, milestones=(0.5,), out_dir=str(tmp_path))
    data = config.to_dict()
    torch.save(data, tmp_path / "c.pt")
    assert torch.load(tmp_path / "c.pt", weights_only=True) == data
    assert cls.from_dict(data) == config


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ValueError, match=r"unknown TwoPhaseConfig field\(s\) \['epochs'\]"):
        TwoPhaseConfig.from_dict({"epochs": 3})


def test_trainer_rejects_the_other_trainers_config(toy):
    rest, seg = toy.nets()
    with pytest.raises(TypeError, match="config must be a TwoPhaseConfig, got JointConfig"):
        TwoPhaseTrainer(rest, seg, toy.Synthesis(), JointConfig())
    with pytest.raises(TypeError, match="synthesis must be callable"):
        JointTrainer(rest, seg, object(), JointConfig())


@pytest.mark.parametrize("cls", [TwoPhaseConfig, JointConfig])
def test_out_dir_takes_a_path_and_keeps_it_as_text(cls, tmp_path):
    config = cls(out_dir=tmp_path / "run")
    assert config.out_dir == str(tmp_path / "run") and isinstance(config.out_dir, str)
    assert cls.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="out_dir must be a path"):
        cls(out_dir=3)
