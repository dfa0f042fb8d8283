"""The label-free baselines every evaluation report carries (all-zero, all-liver, the darkest-pixels rule)."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

from examples.lits.scoring import DARK_RULE_FRACTION, baseline_metrics, darkness_scores


def _slices(seed: int, n: int = 3, size: int = 24):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, size, size, generator=g)
    liver = torch.zeros(n, 1, size, size, dtype=torch.bool)
    liver[..., 4:20, 3:21] = True
    return images * liver, liver


@given(seed=st.integers(0, 2**31 - 1), q=st.floats(0.01, 0.99))
def test_the_rule_flags_the_darkest_fraction_of_each_slice_and_nothing_outside_the_liver(seed, q):
    images, liver = _slices(seed)
    scores = darkness_scores(images, liver)
    assert bool((scores[~liver] == 0).all()) and bool((scores[liver] > 0).all()) and float(scores.max()) == 1.0
    flagged = scores > 1 - q
    for i in range(len(images)):
        inside = liver[i, 0]
        values, picked = images[i, 0][inside], flagged[i, 0][inside]
        n = values.numel()
        # distinct random values: exactly the floor(q n) (or so, at the float cut) darkest pixels of the slice
        assert abs(int(picked.sum()) - q * n) <= 1
        if picked.any() and (~picked).any():
            assert float(values[picked].max()) < float(values[~picked].min())


def test_ties_at_the_cut_are_flagged_together():
    images = torch.tensor([0.0, 0.0, 0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.0]).view(1, 1, 1, 10)
    liver = torch.ones_like(images, dtype=torch.bool)
    scores = darkness_scores(images, liver)
    assert torch.equal(scores[0, 0, 0, :3], torch.ones(3))  # all three darkest pixels score 1
    assert abs(float(scores[0, 0, 0, -1]) - 0.2) < 1e-6  # the two brightest: 2 of 10 pixels at least as bright


def test_baselines_score_the_rules_and_the_dark_rule_finds_dark_tumors():
    images, liver = _slices(0, n=4, size=32)
    tumor = torch.zeros_like(liver)
    tumor[:2, :, 8:12, 8:12] = True
    images = torch.where(tumor, torch.full_like(images, 0.01), 0.2 + 0.8 * images) * liver
    out = baseline_metrics(images, tumor, liver, ["a", "a", "b", "b"])
    name = f"darkest-{round(100 * DARK_RULE_FRACTION)}%"
    assert set(out) == {"all-zero", "all-liver", name}
    assert out["all-zero"]["dice_global"] == 0.0 and out["all-liver"]["predicted_fraction"] == 1.0
    # tumor pixels are the darkest of their slices (the tumor-free slices have darkest pixels too: not quite 1)
    assert out[name]["pixel_auroc"] > 0.99
    assert out[name]["dice_global"] > out["all-liver"]["dice_global"]
    assert abs(out[name]["predicted_fraction"] - DARK_RULE_FRACTION) < 0.02
