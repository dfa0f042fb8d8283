"""Training settings of the liver example: the named syntheses, the restoration choice, and their flags."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from examples.lits import train
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
    augmented, masks = train.mixed_synthesis()(images, liver, generator=torch.Generator().manual_seed(seed))
    assert bool(masks.flatten(1).any(1).all()), "a sample without an anomaly in its liver"
    assert not bool(masks.bool()[~liver].any())
    assert torch.equal(augmented[masks == 0], images[masks == 0])
    assert float(augmented.min()) >= 0 and float(augmented.max()) <= 1


def test_mixed_synthesis_draws_all_three_families():
    synth = train.mixed_synthesis()
    liver = _liver(32)
    synth(0.5 * liver.float(), liver, generator=torch.Generator().manual_seed(0))
    assert set(synth.last_params["choice"].tolist()) == {0, 1, 2}


def test_the_paper_preset_keeps_the_papers_synthesis_and_the_cpu_preset_mixes():
    assert train.PRESETS["paper"].synthesis == "zhang2023" and train.PRESETS["paper"].restoration == "unet"
    assert train.PRESETS["cpu"].synthesis == "mixed"


@pytest.mark.parametrize(("field", "value"), [("synthesis", "perlin"), ("restoration", "vae")])
def test_unknown_synthesis_or_restoration_is_refused_by_name(field, value):
    with pytest.raises(ValueError, match=f"{field}.*'{value}'"):
        dataclasses.replace(train.PRESETS["cpu"], **{field: value})


def test_flags_override_the_synthesis_and_restoration_of_a_preset():
    args = build_parser().parse_args(["train", "--data", "d", "--out", "o", "--synthesis", "zhang2023",
                                      "--restoration", "ae"])
    chosen = train.settings_from_args(args)
    assert (chosen.synthesis, chosen.restoration) == ("zhang2023", "ae")
    assert train.architecture(chosen, chosen.restoration)["restoration"]["type"] == "ae"


def test_train_warns_when_the_data_was_prepared_for_another_preset():
    from examples.lits.preprocess import PREPARE_PRESETS, PrepareConfig

    assert train._prepare_mismatch("cpu", PREPARE_PRESETS["cpu"].to_dict()) == ""
    assert train._prepare_mismatch("cpu", {**PREPARE_PRESETS["cpu"].to_dict(), "size": 64, "crop": "none"}) == ""
    assert "equalize=True" in train._prepare_mismatch("cpu", PrepareConfig().to_dict())
    assert "liver_window=200.0" in train._prepare_mismatch("paper", PREPARE_PRESETS["cpu"].to_dict())
    assert train._prepare_mismatch("demo", PrepareConfig().to_dict()) == ""  # no prepare preset named demo
