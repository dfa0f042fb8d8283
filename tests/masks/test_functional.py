"""Properties of the binary morphology masks are made of, with OpenCV as the oracle."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from pseudoanomaly.masks.functional import (
    binary_closing,
    binary_dilation,
    binary_erosion,
    binary_opening,
    binary_morphology,
    elliptical_kernel,
)

OPS = {
    "dilate": (binary_dilation, cv2.MORPH_DILATE),
    "erode": (binary_erosion, cv2.MORPH_ERODE),
    "open": (binary_opening, cv2.MORPH_OPEN),
    "close": (binary_closing, cv2.MORPH_CLOSE),
}


def random_masks(seed: int, b: int, h: int, w: int, density: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, 1, h, w, generator=g) < density).float()


@pytest.mark.parametrize("size", range(1, 62, 2))
def test_elliptical_kernel_equals_opencv_for_every_odd_size(size):
    ours = elliptical_kernel(size).numpy().astype(np.uint8)
    assert np.array_equal(ours, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))


@pytest.mark.parametrize("size", [0, -3, 4, 2.0, True])
def test_elliptical_kernel_rejects_bad_sizes(size):
    with pytest.raises(ValueError, match="size"):
        elliptical_kernel(size)


@given(
    seed=st.integers(0, 2**31 - 1),
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    size=st.sampled_from([1, 3, 5, 7, 9, 11]),
    density=st.floats(0.05, 0.95),
    op=st.sampled_from(sorted(OPS)),
    backend=st.sampled_from(["torch", "opencv", "packed"]),
)
def test_morphology_equals_cv2_morphologyex(seed, h, w, size, density, op, backend):
    masks = random_masks(seed, 2, h, w, density)
    kernel = elliptical_kernel(size)
    fn, code = OPS[op]
    ours = fn(masks, kernel, backend=backend)
    k = kernel.numpy().astype(np.uint8)
    for i in range(2):
        ref = cv2.morphologyEx(masks[i, 0].numpy().astype(np.uint8), code, k)
        assert np.array_equal(ours[i, 0].numpy().astype(np.uint8), ref)


@given(seed=st.integers(0, 2**31 - 1), size=st.sampled_from([3, 5, 9]), density=st.floats(0.1, 0.9))
def test_opening_is_anti_extensive_closing_extensive_both_idempotent(seed, size, density):
    masks = random_masks(seed, 3, 32, 29, density)
    kernel = elliptical_kernel(size)
    for backend in ("torch", "opencv", "packed"):
        opened = binary_opening(masks, kernel, backend)
        closed = binary_closing(masks, kernel, backend)
        assert bool((opened <= masks).all()), "opening must only remove pixels"
        assert bool((closed >= masks).all()), "closing must only add pixels"
        assert torch.equal(binary_opening(opened, kernel, backend), opened)
        assert torch.equal(binary_closing(closed, kernel, backend), closed)


def test_morphology_keeps_dtype_and_accepts_bool():
    masks = random_masks(0, 2, 16, 16, 0.5)
    k = elliptical_kernel(3)
    assert binary_opening(masks.bool(), k).dtype == torch.bool
    assert binary_opening(masks.double(), k).dtype == torch.float64
    for backend in ("torch", "opencv", "packed"):
        assert binary_opening(masks.bool(), k, backend).dtype == torch.bool
        assert binary_opening(masks.half(), k, backend).dtype == torch.float16
        assert torch.equal(binary_opening(masks.bool(), k, backend), binary_opening(masks, k, backend).bool())


def test_morphology_rejects_bad_arguments():
    masks = random_masks(0, 2, 16, 16, 0.5)
    with pytest.raises(ValueError, match="backend"):
        binary_opening(masks, elliptical_kernel(3), backend="scipy")
    with pytest.raises(ValueError, match="kernel"):
        binary_opening(masks, torch.ones(4, 4))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        binary_opening(masks[:, 0], elliptical_kernel(3))


def test_morphology_ops_by_name_equal_the_old_letter_codes():
    masks = random_masks(3, 2, 24, 21, 0.5)
    k = elliptical_kernel(5)
    for backend in ("torch", "opencv", "packed"):
        old = binary_morphology(masks, k, "oc", backend)
        assert torch.equal(binary_morphology(masks, k, ("open", "close"), backend), old)
        assert torch.equal(binary_morphology(masks, k, ["open", "close"], backend), old)
        assert torch.equal(binary_morphology(masks, k, "de", backend), binary_morphology(masks, k, ("dilate", "erode"), backend))
        assert torch.equal(binary_morphology(masks, k, "close", backend), binary_closing(masks, k, backend))


@pytest.mark.parametrize("ops", ["ox", ("open", "shut"), "opening", 3, ("o", "c")])
def test_morphology_refuses_unknown_ops_naming_them(ops):
    with pytest.raises(ValueError, match="ops must be.*" + repr(ops).replace("(", r"\(").replace(")", r"\)")):
        binary_morphology(random_masks(0, 1, 8, 8, 0.5), elliptical_kernel(3), ops)


@given(
    seed=st.integers(0, 2**31 - 1),
    b=st.integers(1, 5),
    h=st.integers(1, 30),
    w=st.integers(1, 30),
    kh=st.sampled_from([1, 3, 5, 9]),
    kw=st.sampled_from([1, 3, 7]),
    ops=st.text(alphabet="deoc", min_size=1, max_size=4),
)
def test_a_batch_and_a_sequence_of_ops_equal_cv2_image_by_image(seed, b, h, w, kh, kw, ops):
    # the OpenCV backend runs the whole batch as one stacked image: no image may see its neighbours
    masks = random_masks(seed, b, h, w, 0.5)
    kernel = torch.rand(kh, kw, generator=torch.Generator().manual_seed(seed)) < 0.7
    kernel[kh // 2, kw // 2] = True
    ours = binary_morphology(masks, kernel, ops, backend="opencv")
    codes = {"d": cv2.MORPH_DILATE, "e": cv2.MORPH_ERODE, "o": cv2.MORPH_OPEN, "c": cv2.MORPH_CLOSE}
    k = kernel.numpy().astype(np.uint8)
    for i in range(b):
        ref = masks[i, 0].numpy().astype(np.uint8)
        for op in ops:
            ref = cv2.morphologyEx(ref, codes[op], k)
        assert np.array_equal(ours[i, 0].numpy().astype(np.uint8), ref), (i, ops)


@given(
    seed=st.integers(0, 2**31 - 1),
    b=st.integers(1, 20),
    h=st.integers(1, 24),
    w=st.integers(1, 24),
    kh=st.sampled_from([1, 3, 5, 9, 15]),
    kw=st.sampled_from([1, 3, 7, 17]),
    centre=st.booleans(),
    ops=st.text(alphabet="deoc", min_size=1, max_size=4),
)
def test_packed_backend_equals_cv2_on_batches_across_bytes_and_any_element(seed, b, h, w, kh, kw, centre, ops):
    # 8 masks share a byte: batches that are not a multiple of 8, elements longer than a power of two, with or
    # without their centre, and images smaller than the element must all come out as OpenCV's, image by image
    g = torch.Generator().manual_seed(seed)
    masks = (torch.rand(b, 1, h, w, generator=g) < 0.5).bool()
    kernel = torch.rand(kh, kw, generator=g) < 0.7
    kernel[kh // 2, kw // 2] = centre
    ours = binary_morphology(masks, kernel, ops, backend="packed")
    assert ours.dtype == torch.bool and ours.shape == masks.shape
    codes = {"d": cv2.MORPH_DILATE, "e": cv2.MORPH_ERODE, "o": cv2.MORPH_OPEN, "c": cv2.MORPH_CLOSE}
    k = kernel.numpy().astype(np.uint8)
    if not k.any():
        return  # OpenCV has its own convention for an empty element; see the test below for ours
    for i in range(b):
        ref = masks[i, 0].numpy().astype(np.uint8)
        for op in ops:
            ref = cv2.morphologyEx(ref, codes[op], k)
        assert np.array_equal(ours[i, 0].numpy().astype(np.uint8), ref), (i, ops)


def test_packed_and_pooling_backends_agree_on_an_empty_element():
    masks = random_masks(5, 3, 9, 11, 0.5)
    empty = torch.zeros(3, 3, dtype=torch.bool)
    for ops in ("d", "e", "oc"):
        assert torch.equal(binary_morphology(masks, empty, ops, "packed"), binary_morphology(masks, empty, ops, "torch"))
    assert not binary_dilation(masks, empty, "packed").any() and binary_erosion(masks, empty, "packed").all()


def test_default_backend_gives_opencvs_masks_on_a_training_sized_batch():
    # the default path (bit-packed on CPU) on the paper's element and sizes: 64 masks of 256 x 256
    masks = random_masks(11, 64, 256, 256, 0.5)
    masks = torch.nn.functional.avg_pool2d(masks, 9, stride=1, padding=4) > 0.55  # blob-like masks
    k = elliptical_kernel(9)
    assert torch.equal(binary_morphology(masks, k, ("open", "close")), binary_morphology(masks, k, "oc", "opencv"))


@pytest.mark.parametrize("b", [3, 8])
def test_packed_backend_takes_non_contiguous_masks(b):
    masks = random_masks(6, b, 20, 17, 0.5).bool().transpose(2, 3)  # (b, 1, 17, 20), not contiguous
    k = elliptical_kernel(5)
    assert torch.equal(binary_morphology(masks, k, "oc", "packed"), binary_morphology(masks, k, "oc", "opencv"))
