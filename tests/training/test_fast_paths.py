"""The trainer's opt-in CPU speed settings: channels-last nets and bfloat16 autocast train the same models as
the default up to rounding, keep float32 weights, checkpoint and resume; bf16 warns on CPUs without native
bfloat16."""

from __future__ import annotations

import warnings

import pytest
import torch

from pseudoanomaly.training import TwoPhaseTrainer, trainer as trainer_module


def _weights(trainer):
    return [p.detach().clone() for net in (trainer.restoration, trainer.segmentation) for p in net.parameters()]


def _maps(toy, trainer):
    with torch.no_grad():
        return trainer.export()(toy.images(4, seed=5))


def _moved(toy, default):
    """How far the default run's 8 steps moved the pair's maps from the untrained nets': the scale differences
    are judged on."""
    untrained = TwoPhaseTrainer(*toy.nets(), synthesis=toy.Synthesis(), config=toy.two_phase())
    return float((_maps(toy, default) - _maps(toy, untrained)).abs().max())


def _fit(toy, **config):
    trainer = TwoPhaseTrainer(*toy.nets(), synthesis=toy.Synthesis(), config=toy.two_phase(**config))
    trainer.fit(toy.images(8))
    return trainer


def test_channels_last_trains_channels_last_nets_to_the_defaults_weights_up_to_rounding(toy):
    default, fast = _fit(toy), _fit(toy, channels_last=True)
    convs = [p for net in (fast.restoration, fast.segmentation) for p in net.parameters() if p.ndim == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    assert all(p.dtype == torch.float32 for p in fast.restoration.parameters())
    # Adam turns the rounding noise of near-zero gradients into whole steps of the learning rate, so single
    # weights may differ by a few steps; what the trained pair computes must not
    assert float((_maps(toy, default) - _maps(toy, fast)).abs().max()) < 0.01 * _moved(toy, default)
    assert torch.equal(torch.cat([w.flatten() for w in _weights(fast)]),
                       torch.cat([w.flatten() for w in _weights(_fit(toy, channels_last=True))]))  # reproducible


def test_bf16_on_cpu_trains_float32_weights_close_to_fp32s(toy, monkeypatch):
    monkeypatch.setattr(trainer_module, "_native_cpu_bf16", lambda: True)  # no warning wanted here
    default = _fit(toy)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fast = _fit(toy, precision="bf16", channels_last=True)
    assert all(p.dtype == torch.float32 for net in (fast.restoration, fast.segmentation) for p in net.parameters())
    assert all(bool(torch.isfinite(p).all()) for p in _weights(fast))
    # bfloat16 keeps 8 bits of mantissa: the trained pair computes about the same maps, not the same bits
    assert 0 < float((_maps(toy, default) - _maps(toy, fast)).abs().max()) < 0.1 * _moved(toy, default)


def test_bf16_on_a_cpu_without_native_bfloat16_warns(toy, monkeypatch):
    monkeypatch.setattr(trainer_module, "_native_cpu_bf16", lambda: False)
    with pytest.warns(RuntimeWarning, match="precision='bf16' on a CPU without AVX-512 BF16 or AMX"):
        _fit(toy, precision="bf16")


def test_a_channels_last_run_resumes_bit_for_bit(toy, tmp_path):
    whole = _fit(toy, channels_last=True)
    config = toy.two_phase(channels_last=True, out_dir=tmp_path)
    first = TwoPhaseTrainer(*toy.nets(), synthesis=toy.Synthesis(), config=config)
    first.fit(toy.images(8), stop_after=3)
    assert first.stopped_early
    again = TwoPhaseTrainer(*toy.nets(), synthesis=toy.Synthesis(), config=config)
    again.fit(toy.images(8), resume=tmp_path / "checkpoint.pt")
    assert all(torch.equal(a, b) for a, b in zip(_weights(whole), _weights(again)))
