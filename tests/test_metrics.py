"""Metrics against scikit-learn (oracle only, never imported by the library) and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from pseudoanomaly.metrics import (
    DRAEM_SMOOTHING_KERNEL,
    auroc,
    average_precision,
    best_dice_oracle,
    dice,
    dice_per_volume,
    image_scores,
)

# Scores drawn from a few integers (many ties) or from any float; labels 0/1.
tied_scores = st.lists(st.integers(0, 4), min_size=2, max_size=60)
float_scores = st.lists(st.floats(-10, 10, allow_nan=False, width=32), min_size=2, max_size=60)


@st.composite
def scored_labels(draw, scores=st.one_of(tied_scores, float_scores)):
    s = draw(scores)
    labels = draw(st.lists(st.booleans(), min_size=len(s), max_size=len(s)))
    return torch.tensor(s, dtype=torch.float32), torch.tensor(labels)


class TestRankingMetrics:
    @settings(deadline=None, derandomize=True, max_examples=150)
    @given(scored_labels())
    def test_match_scikit_learn_with_ties(self, data):
        scores, labels = data
        assume(labels.any() and not labels.all())
        assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels.numpy(), scores.numpy()), abs=1e-6)
        expected_ap = average_precision_score(labels.numpy(), scores.numpy())
        assert average_precision(scores, labels) == pytest.approx(expected_ap, abs=1e-6)

    def test_match_scikit_learn_at_pixel_scale(self):
        g = torch.Generator().manual_seed(0)
        labels = torch.rand(4, 1, 128, 128, generator=g) < 0.05
        scores = (labels * 0.2 + torch.rand(4, 1, 128, 128, generator=g)).mul(50).round() / 50  # ties galore
        y, s = labels.flatten().numpy(), scores.flatten().numpy()
        assert auroc(scores, labels) == pytest.approx(roc_auc_score(y, s), abs=1e-9)
        assert average_precision(scores, labels.float()) == pytest.approx(average_precision_score(y, s), abs=1e-9)

    def test_hand_computed(self):
        scores, labels = torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1])
        assert auroc(scores, labels) == 0.75  # 3 of 4 (positive, negative) pairs ranked right
        assert average_precision(scores, labels) == pytest.approx((1 + 2 / 3) / 2)
        # One tie across classes counts half.
        assert auroc(torch.tensor([0.5, 0.5]), torch.tensor([0, 1])) == 0.5

    def test_integer_and_double_scores(self):
        labels = torch.tensor([0, 1, 0, 1, 1])
        for scores in (torch.tensor([1, 3, 2, 3, 0]), torch.tensor([1, 3, 2, 3, 0], dtype=torch.float64)):
            assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels.numpy(), scores.numpy()))

    @pytest.mark.parametrize("metric", [auroc, average_precision])
    @pytest.mark.parametrize("labels", [torch.zeros(6), torch.ones(6, dtype=torch.bool)])
    def test_one_class_raises(self, metric, labels):
        with pytest.raises(ValueError, match="both classes"):
            metric(torch.rand(6), labels)

    @pytest.mark.parametrize("metric", [auroc, average_precision])
    def test_bad_inputs_raise_naming_the_value(self, metric):
        with pytest.raises(ValueError, match=r"\(4,\).*\(5,\)"):
            metric(torch.rand(4), torch.ones(5))
        with pytest.raises(ValueError, match="labels.*binary.*2"):
            metric(torch.rand(4), torch.tensor([0, 1, 2, 1]))
        with pytest.raises(ValueError, match="scores.*NaN"):
            metric(torch.tensor([0.1, float("nan")]), torch.tensor([0, 1]))


class TestDice:
    def test_hand_computed(self):
        pred, target = torch.tensor([0.9, 0.8, 0.1, 0.5]), torch.tensor([1, 0, 0, 1])
        assert dice(pred, target) == pytest.approx(2 * 1 / (2 + 2))  # 0.5 is not > 0.5
        assert dice(pred, target, threshold=0.4) == pytest.approx(2 * 2 / (3 + 2))

    def test_empty_cases(self):
        zeros = torch.zeros(2, 1, 4, 4)
        assert dice(zeros, zeros) == 1.0  # both empty: defined as perfect agreement
        assert dice(zeros, torch.ones(2, 1, 4, 4)) == 0.0
        assert dice(torch.ones(2, 1, 4, 4), zeros) == 0.0

    @settings(deadline=None, derandomize=True, max_examples=100)
    @given(scored_labels(st.lists(st.floats(0, 1, width=32), min_size=1, max_size=60)), st.floats(0, 1))
    def test_matches_f1_score(self, data, threshold):
        pred, target = data
        predicted = (pred > threshold).numpy()
        assume(predicted.any() or target.any())
        assert dice(pred, target, threshold) == pytest.approx(f1_score(target.numpy(), predicted), abs=1e-12)

    def test_is_pooled_over_the_batch(self):
        pred = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
        target = torch.tensor([[1, 0], [0, 0]])
        assert dice(pred, target) == pytest.approx(2 * 1 / (3 + 1))  # not the mean of per-slice Dice

    def test_bad_inputs_raise_naming_the_value(self):
        with pytest.raises(ValueError, match=r"\(2, 2\).*\(4,\)"):
            dice(torch.rand(2, 2), torch.ones(4))
        with pytest.raises(ValueError, match="target.*binary.*0.3"):
            dice(torch.rand(3), torch.tensor([0.0, 0.3, 1.0]))


class TestDicePerVolume:
    def test_each_volume_equals_global_dice_on_its_slices(self):
        g = torch.Generator().manual_seed(0)
        pred, target = torch.rand(7, 1, 8, 8, generator=g), torch.rand(7, 1, 8, 8, generator=g) > 0.6
        ids = ["v3", "v1", "v3", "v2", "v1", "v3", "v2"]
        result = dice_per_volume(pred, target, ids)
        assert list(result.per_volume) == ["v3", "v1", "v2"]  # order of first appearance
        for v in ("v1", "v2", "v3"):
            rows = [i for i, x in enumerate(ids) if x == v]
            assert result.per_volume[v] == pytest.approx(dice(pred[rows], target[rows]))
        assert result.mean == pytest.approx(np.mean(list(result.per_volume.values())))

    def test_tensor_ids_and_empty_volume(self):
        pred = torch.tensor([[0.9, 0.1], [0.2, 0.1], [0.7, 0.8]])
        target = torch.tensor([[1, 0], [0, 0], [0, 1]])
        result = dice_per_volume(pred, target, torch.tensor([5, 5, 9]))
        assert result.per_volume == {5: 1.0, 9: pytest.approx(2 / 3)}
        empty = dice_per_volume(torch.zeros(2, 3), torch.zeros(2, 3), [0, 1])
        assert empty.per_volume == {0: 1.0, 1: 1.0}  # empty vs empty counts as perfect, as in dice()

    def test_wrong_number_of_ids_raises(self):
        with pytest.raises(ValueError, match="volume_ids.*3.*2"):
            dice_per_volume(torch.rand(3, 4), torch.ones(3, 4), [0, 1])


class TestImageScores:
    def test_maximum_per_image(self):
        maps = torch.rand(3, 1, 16, 16)
        torch.testing.assert_close(image_scores(maps), maps.amax(dim=(1, 2, 3)))
        torch.testing.assert_close(image_scores(maps[:, 0]), maps.amax(dim=(1, 2, 3)))

    def test_draem_smoothing(self):
        maps = torch.rand(2, 1, 32, 32)
        expected = F.avg_pool2d(maps, 21, stride=1, padding=10).amax(dim=(1, 2, 3))  # DRAEM test_DRAEM.py
        torch.testing.assert_close(image_scores(maps, smoothing_kernel=DRAEM_SMOOTHING_KERNEL), expected)
        # A single hot pixel is diluted by the 21 x 21 mean.
        spike = torch.zeros(1, 1, 32, 32)
        spike[0, 0, 16, 16] = 1.0
        assert image_scores(spike, DRAEM_SMOOTHING_KERNEL).item() == pytest.approx(1 / 441)

    @pytest.mark.parametrize("kernel", [4, 0, -3])
    def test_bad_kernel_raises_naming_it(self, kernel):
        with pytest.raises(ValueError, match=f"smoothing_kernel.*{kernel}"):
            image_scores(torch.rand(1, 1, 8, 8), kernel)

    def test_bad_shape_raises_naming_it(self):
        with pytest.raises(ValueError, match=r"\(8, 8\)"):
            image_scores(torch.rand(8, 8))


class TestBestDiceOracle:
    @settings(deadline=None, derandomize=True, max_examples=100)
    @given(scored_labels(st.one_of(tied_scores, st.lists(st.floats(0, 1, width=32), min_size=2, max_size=60))))
    def test_is_the_maximum_and_reproducible(self, data):
        pred, target = data
        best = best_dice_oracle(pred, target)
        assert dice(pred, target, best.threshold) == pytest.approx(best.dice, abs=1e-12)
        candidates = [-math.inf] + pred.unique().tolist()
        assert best.dice == pytest.approx(max(dice(pred, target, t) for t in candidates), abs=1e-12)

    def test_hand_computed(self):
        pred, target = torch.tensor([0.9, 0.8, 0.3, 0.2]), torch.tensor([1, 1, 0, 0])
        assert best_dice_oracle(pred, target).dice == 1.0
        everything = best_dice_oracle(torch.tensor([0.2, 0.1]), torch.tensor([1, 1]))
        assert everything == (1.0, -math.inf)
        nothing = best_dice_oracle(torch.tensor([0.2, 0.1]), torch.tensor([0, 0]))
        assert nothing.dice == 1.0 and dice(torch.tensor([0.2, 0.1]), torch.tensor([0, 0]), nothing.threshold) == 1.0

    def test_at_least_fixed_threshold_dice(self):
        g = torch.Generator().manual_seed(1)
        target = torch.rand(2, 1, 32, 32, generator=g) > 0.8
        pred = (0.4 * target + 0.7 * torch.rand(2, 1, 32, 32, generator=g)).clamp(0, 1)
        assert best_dice_oracle(pred, target).dice >= dice(pred, target)
