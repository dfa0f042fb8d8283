"""Losses against hand-computed values and direct numpy formulas."""

from __future__ import annotations

import math

import kornia
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.signal import correlate2d

from pseudoanomaly.losses import FocalLoss, SSIMLoss, draem_reconstruction_loss, focal_loss, ssim_loss


def numpy_focal(logits: np.ndarray, target: np.ndarray, alpha: float, gamma: float) -> np.ndarray:
    """Per-pixel focal loss, straight from Lin et al. 2017, for (B, 2, H, W) logits and (B, H, W) targets."""
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    pt = np.where(target == 1, p[:, 1], p[:, 0])
    return -alpha * (1 - pt) ** gamma * np.log(pt)


def numpy_draem_ssim_map(x: np.ndarray, y: np.ndarray, window_size: int = 11, data_range: float = 1.0):
    """DRAEM's SSIM map: Gaussian window (sigma 1.5), zero-padded 'same' filtering, per image and channel."""
    g = np.exp(-((np.arange(window_size) - window_size // 2) ** 2) / (2 * 1.5**2))
    window = np.outer(g, g) / g.sum() ** 2
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    out = np.empty_like(x)
    for idx in np.ndindex(*x.shape[:2]):
        a, b = x[idx], y[idx]
        blur = lambda z: correlate2d(z, window, mode="same", boundary="fill")  # noqa: E731
        mu_a, mu_b = blur(a), blur(b)
        var_a, var_b = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2
        cov = blur(a * b) - mu_a * mu_b
        out[idx] = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return out


class TestFocalLoss:
    def test_hand_computed_values(self):
        # Equal logits: p_t = 1/2, FL = -(1/2)**2 * log(1/2) = log(2) / 4.
        loss = focal_loss(torch.zeros(1, 2, 1, 1), torch.ones(1, 1, 1, 1))
        assert loss.item() == pytest.approx(math.log(2) / 4, rel=1e-6)
        # Logits (0, log 3): p(anomalous) = 3/4. Target 1: (1/4)**2 * -log(3/4); target 0: (3/4)**2 * -log(1/4).
        logits = torch.tensor([0.0, math.log(3.0)]).view(1, 2, 1, 1).expand(1, 2, 1, 2).contiguous()
        target = torch.tensor([[[[1, 0]]]])
        per_pixel = focal_loss(logits, target, reduction="none")
        expected = [-(1 / 16) * math.log(3 / 4), -(9 / 16) * math.log(1 / 4)]
        torch.testing.assert_close(per_pixel.flatten(), torch.tensor(expected))

    @settings(deadline=None, derandomize=True, max_examples=30)
    @given(
        seed=st.integers(0, 2**31 - 1),
        alpha=st.floats(0.0, 2.0),
        gamma=st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.5]),
        scale=st.sampled_from([0.1, 1.0, 10.0]),
    )
    def test_equals_direct_formula(self, seed, alpha, gamma, scale):
        g = torch.Generator().manual_seed(seed)
        logits = torch.randn(2, 2, 5, 4, generator=g, dtype=torch.float64) * scale
        target = torch.rand(2, 5, 4, generator=g) > 0.5
        expected = numpy_focal(logits.numpy(), target.numpy(), alpha, gamma)
        got = focal_loss(logits, target, alpha=alpha, gamma=gamma, reduction="none")
        np.testing.assert_allclose(got.squeeze(1).numpy(), expected, rtol=1e-9, atol=1e-12)
        assert focal_loss(logits, target, alpha, gamma).item() == pytest.approx(expected.mean(), rel=1e-9, abs=1e-12)
        assert focal_loss(logits, target, alpha, gamma, "sum").item() == pytest.approx(expected.sum(), rel=1e-9,
                                                                                      abs=1e-12)

    def test_gamma_zero_is_cross_entropy(self):
        logits, target = torch.randn(2, 2, 6, 6), torch.rand(2, 6, 6) > 0.7
        torch.testing.assert_close(focal_loss(logits, target, gamma=0.0), F.cross_entropy(logits, target.long()))

    def test_target_layouts_and_dtypes_agree(self):
        logits, target = torch.randn(2, 2, 4, 4), torch.rand(2, 1, 4, 4) > 0.5
        reference = focal_loss(logits, target)
        for t in (target.squeeze(1), target.float(), target.long(), target.to(torch.uint8)):
            torch.testing.assert_close(focal_loss(logits, t), reference)

    def test_module_equals_functional(self):
        logits, target = torch.randn(2, 2, 4, 4), torch.rand(2, 1, 4, 4) > 0.5
        expected = focal_loss(logits, target, 0.5, 1.0, "sum")
        torch.testing.assert_close(FocalLoss(0.5, 1.0, "sum")(logits, target), expected)

    def test_confident_logits_give_finite_loss_and_gradient(self):
        logits = torch.tensor([[100.0, -100.0], [-100.0, 100.0]]).T.reshape(1, 2, 1, 2).requires_grad_()
        loss = focal_loss(logits, torch.tensor([[[[1, 1]]]]))  # one confidently wrong, one confidently right
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()

    @pytest.mark.parametrize(
        "kwargs, message",
        [
            (dict(reduction="avg"), "reduction.*'avg'"),
            (dict(gamma=-1.0), "gamma.*-1.0"),
            (dict(alpha=-0.5), "alpha.*-0.5"),
            (dict(target=torch.ones(2, 1, 4, 5)), r"target.*\(2, 1, 4, 5\)"),
            (dict(target=torch.full((2, 1, 4, 4), 0.5)), "binary.*0.5"),
            (dict(logits=torch.zeros(2, 3, 4, 4)), r"logits.*\(2, 3, 4, 4\)"),
        ],
    )
    def test_bad_arguments_raise_naming_the_value(self, kwargs, message):
        args = dict(logits=torch.zeros(2, 2, 4, 4), target=torch.ones(2, 1, 4, 4)) | kwargs
        with pytest.raises(ValueError, match=message):
            focal_loss(**args)

    def test_module_checks_reduction_at_construction(self):
        with pytest.raises(ValueError, match="reduction.*'avg'"):
            FocalLoss(reduction="avg")


class TestSSIMLoss:
    @pytest.mark.parametrize("shape, window_size", [((2, 1, 16, 16), 11), ((1, 2, 12, 20), 11), ((1, 1, 9, 9), 5)])
    def test_equals_draem_formula(self, shape, window_size):
        g = torch.Generator().manual_seed(0)
        x = torch.rand(shape, generator=g, dtype=torch.float64)
        y = (x + 0.3 * torch.rand(shape, generator=g, dtype=torch.float64)).clamp(0, 1)
        expected = 1 - numpy_draem_ssim_map(x.numpy(), y.numpy(), window_size)
        got = ssim_loss(x, y, window_size=window_size, reduction="none")
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-9, atol=1e-9)
        assert ssim_loss(x, y, window_size).item() == pytest.approx(expected.mean(), rel=1e-9)
        assert ssim_loss(x, y, window_size, "sum").item() == pytest.approx(expected.sum(), rel=1e-9)

    def test_hand_computed_single_tap(self):
        # window_size 1: mu = pixel, no variance, so SSIM = (2xy + c1) / (x^2 + y^2 + c1) with c1 = 1e-4.
        loss = ssim_loss(torch.full((1, 1, 2, 2), 0.5), torch.full((1, 1, 2, 2), 0.25), window_size=1)
        assert loss.item() == pytest.approx(1 - (0.25 + 1e-4) / (0.3125 + 1e-4), rel=1e-5)

    def test_identical_images_give_zero(self):
        x = torch.rand(2, 3, 16, 16)
        assert ssim_loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
        assert SSIMLoss()(x, x).item() == pytest.approx(0.0, abs=1e-6)

    def test_twice_kornia_loss_away_from_borders(self):
        x, y = torch.rand(1, 1, 24, 24, dtype=torch.float64), torch.rand(1, 1, 24, 24, dtype=torch.float64)
        ours = ssim_loss(x, y, reduction="none")[..., 5:-5, 5:-5]
        kornias = kornia.losses.ssim_loss(x, y, 11, reduction="none")[..., 5:-5, 5:-5]  # (1 - SSIM) / 2, reflect
        torch.testing.assert_close(ours, 2 * kornias)

    def test_gradient_is_finite(self):
        x = torch.rand(1, 1, 16, 16, requires_grad=True)
        ssim_loss(x, torch.rand(1, 1, 16, 16)).backward()
        assert torch.isfinite(x.grad).all()

    @pytest.mark.parametrize(
        "kwargs, message",
        [
            (dict(reduction="mean_all"), "reduction.*'mean_all'"),
            (dict(window_size=4), "window_size.*4"),
            (dict(target=torch.zeros(1, 1, 8, 9)), r"\(1, 1, 8, 8\).*\(1, 1, 8, 9\)"),
        ],
    )
    def test_bad_arguments_raise_naming_the_value(self, kwargs, message):
        args = dict(pred=torch.zeros(1, 1, 8, 8), target=torch.zeros(1, 1, 8, 8)) | kwargs
        with pytest.raises(ValueError, match=message):
            ssim_loss(**args)


def test_draem_reconstruction_loss_is_mse_plus_ssim():
    x, y = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    torch.testing.assert_close(draem_reconstruction_loss(x, y), F.mse_loss(x, y) + ssim_loss(x, y))
    assert draem_reconstruction_loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match=r"\(2, 1, 16, 16\).*\(2, 1, 8, 8\)"):
        draem_reconstruction_loss(x, torch.rand(2, 1, 8, 8))
