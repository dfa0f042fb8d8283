"""Helpers of the evaluation report: which slices Fig. 2 shows, and the box it zooms onto."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("nibabel")

from examples.lits.report import liver_box, pick_examples  # noqa: E402

boxes = st.tuples(st.integers(0, 63), st.integers(1, 64), st.integers(0, 63), st.integers(1, 64))


@given(first=boxes, second=boxes, margin=st.sampled_from([0.0, 0.1, 0.5]))
def test_liver_box_is_a_square_holding_every_liver(first, second, margin):
    livers = np.zeros((2, 64, 64), bool)
    for i, (r, dr, c, dc) in enumerate((first, second)):
        livers[i, r : r + dr, c : c + dc] = True
    r0, r1, c0, c1 = liver_box(livers, margin)
    assert r1 - r0 == c1 - c0 > 0  # square: the panels keep the pixels' aspect
    assert 0 <= r0 and r1 <= 64 and 0 <= c0 and c1 <= 64
    inside = np.zeros((64, 64), bool)
    inside[r0:r1, c0:c1] = True
    assert not (livers.any(axis=0) & ~inside).any()


def test_liver_box_zooms_in_and_falls_back_to_the_slice():
    livers = np.zeros((1, 100, 100), bool)
    livers[0, 40:60, 30:50] = True
    r0, r1, c0, c1 = liver_box(livers, margin=0.1)
    assert 20 < r1 - r0 < 30 and r0 < 40 and r1 > 59 and c0 < 30 and c1 > 49
    assert liver_box(np.zeros((3, 32, 32), bool)) == (0, 32, 0, 32)


def test_pick_examples_spreads_tumor_slices_from_best_to_worst():
    dice = np.array([0.1, 0.9, 0.5, 0.0, 0.7, 0.3, 0.8])
    has_tumor = np.array([True, True, True, False, True, True, True])
    # tumor slices ranked by Dice: 1 (0.9), 6, 4, 2, 5, 0 (0.1); three of them, evenly spread, best first
    assert pick_examples(dice, has_tumor, rows=3) == [1, 4, 0]
    assert pick_examples(dice, np.zeros(7, bool)) == []
    assert sorted(pick_examples(dice, has_tumor, rows=10)) == [0, 1, 2, 4, 5, 6]
