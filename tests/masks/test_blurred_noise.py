"""BlurredNoiseMask: the paper's mask, checked against an OpenCV re-implementation of the released recipe."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from transform_contract import check_mask_contract

from pseudoanomaly.masks import BlurredNoiseMask


def released_recipe_mask(rng: np.random.Generator, foreground: np.ndarray) -> np.ndarray:
    """The paper's released mask recipe, step by step in OpenCV on uint8 (the oracle)."""
    noise = rng.integers(0, 256, foreground.shape, dtype=np.uint8)
    blurred = cv2.GaussianBlur(noise, (91, 91), 15)
    stretched = cv2.normalize(blurred, None, 0, 255, cv2.NORM_MINMAX)
    mask = (stretched > 200).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
    return mask & foreground


def mask_statistics(masks: np.ndarray) -> tuple[float, float, float]:
    """Mean coverage, mean number of 8-connected blobs, fraction of empty masks."""
    coverage = masks.reshape(len(masks), -1).mean(axis=1)
    blobs = [cv2.connectedComponents(m.astype(np.uint8))[0] - 1 for m in masks]
    return float(coverage.mean()), float(np.mean(blobs)), float(np.mean(coverage == 0))


def liver_like_roi(h: int = 256, w: int = 256) -> np.ndarray:
    roi = np.zeros((h, w), np.uint8)
    cv2.ellipse(roi, (w // 2, h // 2), (70, 50), 20, 0, 360, 1, -1)  # about 17% of the frame
    return roi


@pytest.fixture(scope="module")
def statistics():
    """Statistics of 1,000 masks from each pipeline, on a full frame and inside a liver-sized ROI.

    Coverage varies as much as its mean from mask to mask, so 1,000 masks are needed for a standard error
    of about 3% on each mean.
    """
    n = 1000
    rng = np.random.default_rng(2023)
    gen = BlurredNoiseMask()
    out = {}
    for name, roi in (("frame", np.ones((256, 256), np.uint8)), ("liver", liver_like_roi())):
        ref = np.stack([released_recipe_mask(rng, roi) for _ in range(n)])
        fg = torch.from_numpy(roi).bool().expand(250, 1, 256, 256)
        g = torch.Generator().manual_seed(2023)
        ours = torch.cat([gen(torch.zeros(250, 1, 256, 256), fg, generator=g) for _ in range(n // 250)])
        out[name] = (mask_statistics(ref), mask_statistics(ours[:, 0].numpy()))
    return out


def test_preset_mask_matches_the_released_recipe_on_a_full_frame(statistics):
    (ref_cov, ref_blobs, _), (cov, blobs, _) = statistics["frame"]
    assert 0.02 < ref_cov < 0.04 and 2.5 < ref_blobs < 4  # the recipe itself: ~3% in ~3 blobs
    assert abs(cov / ref_cov - 1) < 0.2, (cov, ref_cov)
    assert abs(blobs / ref_blobs - 1) < 0.2, (blobs, ref_blobs)


def test_preset_mask_matches_the_released_recipe_inside_a_liver_roi(statistics):
    (ref_cov, ref_blobs, ref_empty), (cov, blobs, empty) = statistics["liver"]
    assert ref_empty > 0.4  # inside a liver-sized ROI the recipe's mask is often empty
    assert abs(empty - ref_empty) < 0.08, (empty, ref_empty)
    assert abs(cov / ref_cov - 1) < 0.3, (cov, ref_cov)
    assert abs(blobs / ref_blobs - 1) < 0.3, (blobs, ref_blobs)


def test_float_pipeline_differs_from_the_recipe(statistics):
    # why quantize=True is the default: without the 8-bit emulation the statistics drift (documented)
    n = 200
    masks = BlurredNoiseMask(quantize=False)(torch.zeros(n, 1, 256, 256), generator=torch.Generator().manual_seed(0))
    (ref_cov, _, _), _ = statistics["frame"]
    assert float(masks.mean()) > 1.3 * ref_cov


def test_contract(device):
    check_mask_contract(BlurredNoiseMask(sigma=4.0), device)
    check_mask_contract(BlurredNoiseMask(sigma=4.0, quantize=False, kernel_size=3, union=2), device)


def test_torch_and_opencv_backends_give_identical_masks():
    images = torch.zeros(6, 1, 96, 80)
    a = BlurredNoiseMask(sigma=6.0, backend="torch")(images, generator=torch.Generator().manual_seed(1))
    b = BlurredNoiseMask(sigma=6.0, backend="opencv")(images, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


@given(seed=st.integers(0, 2**31 - 1), threshold=st.floats(0.5, 0.95))
def test_higher_threshold_never_covers_more(seed, threshold):
    images = torch.zeros(2, 1, 64, 64)
    low = BlurredNoiseMask(sigma=5.0, threshold=threshold * 0.9, kernel_size=1)
    high = BlurredNoiseMask(sigma=5.0, threshold=threshold, kernel_size=1)
    a = low(images, generator=torch.Generator().manual_seed(seed))
    b = high(images, generator=torch.Generator().manual_seed(seed))
    assert bool((b <= a).all())


def test_union_covers_at_least_each_member():
    images = torch.zeros(8, 1, 64, 64)
    one = BlurredNoiseMask(sigma=5.0)(images, generator=torch.Generator().manual_seed(3)).mean()
    three = BlurredNoiseMask(sigma=5.0, union=3)(images, generator=torch.Generator().manual_seed(3)).mean()
    assert three > one


def test_rejection_redraws_empty_masks_inside_a_small_foreground():
    fg = torch.from_numpy(liver_like_roi()).bool().expand(32, 1, 256, 256)
    images = torch.zeros(32, 1, 256, 256)
    plain = BlurredNoiseMask()(images, fg, generator=torch.Generator().manual_seed(0))
    assert bool((plain.flatten(1).sum(1) == 0).any()), "without rejection some masks are empty"
    gen = BlurredNoiseMask(rejection=True, max_tries=30)
    masks = gen(images, fg, generator=torch.Generator().manual_seed(0))
    assert bool((masks.flatten(1).sum(1) > 0).all())
    assert bool(gen.last_params["accepted"].all())
    assert torch.equal(gen(images, fg, params=gen.last_params), masks), "replay after redraws"


def test_area_limits_are_enforced():
    gen = BlurredNoiseMask(sigma=6.0, area=(0.02, 0.06), max_tries=50)
    masks = gen(torch.zeros(16, 1, 96, 96), generator=torch.Generator().manual_seed(0))
    fraction = masks.flatten(1).mean(1)
    ok = gen.last_params["accepted"]
    assert bool(ok.all())
    assert bool(((fraction >= 0.02) & (fraction <= 0.06)).all())


def test_a_foreground_too_small_gives_a_documented_outcome():
    fg = torch.zeros(3, 1, 64, 64, dtype=torch.bool)
    fg[:, :, 30:33, 30:33] = True  # 3 x 3: no blob survives a 9 x 9 opening
    images = torch.zeros(3, 1, 64, 64)
    gen = BlurredNoiseMask(rejection=True, max_tries=3)
    with pytest.warns(RuntimeWarning, match="no acceptable mask"):
        masks = gen(images, fg, generator=torch.Generator().manual_seed(0))
    accepted = gen.last_params["accepted"]
    assert not bool(accepted.all())
    assert not bool(masks[~accepted].any()), "a sample that kept failing is left normal (empty mask)"
    assert bool(masks[accepted].flatten(1).any(1).all())
    with pytest.raises(RuntimeError, match="max_tries=3"):
        BlurredNoiseMask(rejection=True, max_tries=3, on_failure="raise")(images, fg)


def test_same_on_batch_gives_one_mask_for_all():
    masks = BlurredNoiseMask(sigma=5.0, same_on_batch=True)(torch.zeros(4, 1, 48, 48))
    assert all(torch.equal(masks[0], m) for m in masks)


def test_different_seeds_give_different_masks():
    images = torch.zeros(4, 1, 64, 64)
    gen = BlurredNoiseMask(sigma=5.0)
    a = gen(images, generator=torch.Generator().manual_seed(0))
    b = gen(images, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(a, b)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": 0.0}, "threshold"),
        ({"threshold": 1.0}, "threshold"),
        ({"threshold": float("nan")}, "threshold"),
        ({"kernel_size": 4}, "kernel_size"),
        ({"kernel_size": 0}, "kernel_size"),
        ({"kernel_size": -3}, "kernel_size"),
        ({"sigma": -1.0}, "sigma"),
        ({"sigma": 0}, "sigma"),
        ({"dither": -0.1}, "dither"),
        ({"downsample": 0}, "downsample"),
        ({"backend": "cuda"}, "backend"),
        ({"union": 0}, "union"),
        ({"area": (0.5, 0.1)}, "area"),
        ({"area": (0.0, 2.0)}, "area"),
        ({"max_tries": 0}, "max_tries"),
        ({"on_failure": "ignore"}, "on_failure"),
    ],
)
def test_bad_settings_fail_at_construction_naming_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        BlurredNoiseMask(**kwargs)
    assert repr(next(iter(kwargs.values())))[:4] in str(info.value)


def test_bad_inputs_name_the_argument():
    gen = BlurredNoiseMask(sigma=4.0)
    with pytest.raises(ValueError, match=r"images must have shape \(B, C, H, W\), got shape \(1, 32, 32\)"):
        gen(torch.zeros(1, 32, 32))
    with pytest.raises(TypeError, match="floating-point.*torch.uint8"):
        gen(torch.zeros(1, 1, 32, 32, dtype=torch.uint8))
    bad = torch.zeros(1, 1, 32, 32)
    bad[0, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        gen(bad)
    with pytest.raises(ValueError, match=r"foreground must have shape .*got \(1, 1, 16, 16\)"):
        gen(torch.zeros(1, 1, 32, 32), torch.ones(1, 1, 16, 16, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"foreground is empty for sample\(s\) \[1\]"):
        fg = torch.ones(2, 1, 32, 32, dtype=torch.bool)
        fg[1] = False
        gen(torch.zeros(2, 1, 32, 32), fg)
    with pytest.raises(ValueError, match="only 0 and 1"):
        gen(torch.zeros(1, 1, 32, 32), torch.full((1, 1, 32, 32), 0.5))
    with pytest.raises(TypeError, match="generator"):
        gen(torch.zeros(1, 1, 32, 32), generator=42)


@example(halves=[0, 205, 510], threshold=0.4, shift=0)  # 102.5 rounds to 102 (even), below the cut 103
@example(halves=[0, 255, 510], threshold=0.5, shift=0)  # 127.5 rounds to 128 (even), the cut
@given(
    st.lists(st.integers(0, 2 * 252), min_size=2, max_size=40),  # with the shift, at most 255
    st.floats(0.05, 0.95),
    st.integers(0, 3),
)
def test_the_8bit_threshold_equals_rounding_stretching_and_comparing(halves, threshold, shift):
    # Grey levels in steps of 0.5, so that rounding meets its ties: the mask must be what cv2 gives after
    # rounding the blur (half to even), stretching to [0, 255] with rounding (cv2.normalize) and `> threshold`.
    levels = torch.tensor(halves, dtype=torch.float32).div(2).add(shift).view(1, 1, 1, -1)
    gen = BlurredNoiseMask(threshold=threshold)
    got = torch.ge(levels, gen._cut_8bit(levels))
    rounded = np.round(levels.numpy()).astype(np.uint8).reshape(1, -1)  # numpy rounds half to even, as cv2
    stretched = cv2.normalize(rounded, None, 0, 255, cv2.NORM_MINMAX)
    expected = stretched > round(threshold * 255, 6) if rounded.max() > rounded.min() else np.zeros_like(rounded, bool)
    assert got.view(-1).tolist() == expected.reshape(-1).tolist()
