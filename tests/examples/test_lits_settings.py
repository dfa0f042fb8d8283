"""Training settings of the liver example: the named syntheses, the restoration choice, and their flags."""

from __future__ import annotations


import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from examples.lits import settings as train_settings
from examples.lits.__main__ import build_parser


def _liver(n: int, size: int = 64) -> torch.Tensor:
    y = torch.linspace(-1, 1, size).view(size, 1)
    x = torch.linspace(-1, 1, size).view(1, size)
    return ((x / 0.45) ** 2 + (y / 0.35) ** 2 <= 1).expand(n, 1, size, size).clone()  # ~12% of the slice


@given(seed=st.integers(0, 2**31 - 1))
@settings(max_examples=10)
def test_mixed_synthesis_puts_an_anomaly_inside_the_liver_of_every_sample(seed):
    liver = _liver(8)
    images = (0.3 + 0.4 * torch.rand(8, 1, 64, 64, generator=torch.Generator().manual_seed(seed))) * liver
    augmented, masks = train_settings.mixed_synthesis()(images, liver, generator=torch.Generator().manual_seed(seed))
    assert bool(masks.flatten(1).any(1).all()), "a sample without an anomaly in its liver"
    assert not bool(masks.bool()[~liver].any())
    assert torch.equal(augmented[masks == 0], images[masks == 0])
    assert float(augmented.min()) >= 0 and float(augmented.max()) <= 1


def test_mixed_synthesis_draws_all_three_families():
    synth = train_settings.mixed_synthesis()
    liver = _liver(32)
    synth(0.5 * liver.float(), liver, generator=torch.Generator().manual_seed(0))
    assert set(synth.last_params["choice"].tolist()) == {0, 1, 2}


def test_the_paper_preset_keeps_the_papers_synthesis_and_the_cpu_preset_mixes():
    assert train_settings.PRESETS["paper"].synthesis == "zhang2023" and train_settings.PRESETS["paper"].restoration == "unet"
    assert train_settings.PRESETS["cpu"].synthesis == "mixed"


@pytest.mark.parametrize(("field", "value"), [("synthesis", "perlin"), ("restoration", "vae")])
def test_unknown_synthesis_or_restoration_is_refused_by_name(field, value):
    with pytest.raises(ValueError, match=f"{field}.*'{value}'"):
        train_settings.PRESETS["cpu"].replace(**{field: value})


def test_flags_override_the_synthesis_and_restoration_of_a_preset():
    args = build_parser().parse_args(["train", "--data", "d", "--out", "o", "--synthesis", "zhang2023",
                                      "--restoration", "ae"])
    chosen = train_settings.settings_from_args(args)
    assert (chosen.synthesis, chosen.restoration) == ("zhang2023", "ae")
    assert chosen.nets.architecture()["restoration"]["type"] == "ae"


def test_train_warns_when_the_data_was_prepared_for_another_preset():
    from examples.lits.preprocess import PREPARE_PRESETS, PrepareConfig

    assert train_settings.prepare_mismatch("cpu", PREPARE_PRESETS["cpu"].to_dict()) == ""
    assert train_settings.prepare_mismatch("cpu", {**PREPARE_PRESETS["cpu"].to_dict(), "size": 64, "crop": "none"}) == ""
    assert "equalize=True" in train_settings.prepare_mismatch("cpu", PrepareConfig().to_dict())
    assert "liver_window=200.0" in train_settings.prepare_mismatch("paper", PREPARE_PRESETS["cpu"].to_dict())
    assert train_settings.prepare_mismatch("demo", PrepareConfig().to_dict()) == ""  # no prepare preset named demo


def test_settings_read_every_trainer_and_net_field_and_change_them_by_name():
    s = train_settings.TrainSettings().replace(lr=3e-4, restoration_width=8, size=64, optimizer="adamw")
    assert (s.lr, s.trainer.lr, s.nets.restoration_width, s.size, s.optimizer) == (3e-4, 3e-4, 8, 64, "adamw")
    assert train_settings.TrainSettings.from_dict(s.to_dict()) == s
    with pytest.raises(ValueError, match="unknown training setting 'learning_rate'"):
        s.replace(learning_rate=1.0)
    with pytest.raises(ValueError, match="lr.*-1"):  # the library's config refuses it, naming the value
        s.replace(lr=-1.0)


def test_settings_recorded_flat_by_earlier_versions_still_load():
    flat = {"size": 64, "restoration_width": 16, "restoration_depth": 3, "segmentation_width": 16,
            "segmentation_multipliers": [1, 2, 4, 8], "restoration_epochs": 200, "segmentation_epochs": 1,
            "restoration_steps": 400, "segmentation_steps": 300, "batch_size": 8, "lr": 1e-3, "seed": 0,
            "scheduler": "cosine", "eval_every": 30, "checkpoint_every": 100, "max_slices": None, "device": "auto",
            "synthesis": "zhang2023", "restoration": "unet"}
    assert train_settings.TrainSettings.from_dict(flat) == train_settings.PRESETS["demo"]


def test_every_trainer_field_has_a_flag_with_help_and_the_presets_values(capsys):
    import dataclasses as dc

    from pseudoanomaly.training import TwoPhaseConfig

    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--help"])
    text = capsys.readouterr().out

    for f in dc.fields(TwoPhaseConfig):
        flag = f"--{f.name.replace('_', '-')}"
        assert (flag in text) != (f.name in train_settings.COMMAND_FIELDS), flag
    assert "--steps-restoration" in text and "--seg-width" in text  # earlier spellings still accepted
    assert "cpu: 0.001; demo: 0.001; paper: 0.0001" in " ".join(text.split())  # each preset's value, by name
    args = parser.parse_args(["train", "--data", "d", "--out", "o", "--optimizer", "sgd", "--milestones", "0.5",
                              "0.8", "--steps-restoration", "7"])
    chosen = train_settings.settings_from_args(args)
    assert (chosen.optimizer, chosen.milestones, chosen.restoration_max_steps) == ("sgd", (0.5, 0.8), 7)
