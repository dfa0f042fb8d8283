"""The channels-last GroupNorm path of ``MedianDivisorGroupNorm``: same values and gradients as PyTorch's
GroupNorm (judged against a float64 reference), the input's layout and dtype kept, and used only where it is
meant to be."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pseudoanomaly.models import RestorationUNet
from pseudoanomaly.models._group_norm import channels_last_group_norm, use_channels_last_group_norm
from pseudoanomaly.models.layers import MedianDivisorGroupNorm

CL = torch.channels_last


def _reference(x, groups, weight, bias, dy, eps=1e-5):
    """Output and gradients of PyTorch's GroupNorm in float64."""
    x64 = x.detach().double().requires_grad_()
    w64 = None if weight is None else weight.detach().double().requires_grad_()
    b64 = None if bias is None else bias.detach().double().requires_grad_()
    y = F.group_norm(x64, groups, w64, b64, eps)
    y.backward(dy.double())
    return y.detach(), x64.grad, None if w64 is None else w64.grad, None if b64 is None else b64.grad


def _ours(x, groups, weight, bias, dy, eps=1e-5, norm=channels_last_group_norm):
    x = x.detach().clone().requires_grad_()
    w = None if weight is None else weight.detach().clone().requires_grad_()
    b = None if bias is None else bias.detach().clone().requires_grad_()
    y = norm(x, groups, w, b, eps)
    y.backward(dy)
    return y, x.grad, None if w is None else w.grad, None if b is None else b.grad


def _close(got, want, tol):
    scale = want.abs().max().item() + 1e-12
    assert (got.double() - want).abs().max().item() <= tol * scale


@settings(max_examples=50, deadline=None)
@given(
    batch=st.integers(1, 3),
    groups=st.sampled_from([1, 2, 4]),
    per_group=st.integers(1, 3),
    height=st.integers(1, 9),
    width=st.integers(1, 9),
    offset=st.floats(-50, 50),
    spread=st.floats(0.01, 20),
    affine=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_matches_group_norm_in_values_and_gradients(batch, groups, per_group, height, width, offset, spread,
                                                     affine, seed):
    assume(per_group * height * width > 1)  # PyTorch refuses a group of one value
    g = torch.Generator().manual_seed(seed)
    c = groups * per_group
    x = (torch.randn(batch, c, height, width, generator=g) * spread + offset).contiguous(memory_format=CL)
    dy = torch.randn(batch, c, height, width, generator=g).contiguous(memory_format=CL)
    weight = torch.rand(c, generator=g) + 0.5 if affine else None
    bias = torch.randn(c, generator=g) if affine else None
    want = _reference(x, groups, weight, bias, dy)
    got = _ours(x, groups, weight, bias, dy)
    torch_f32 = _ours(x, groups, weight, bias, dy, norm=F.group_norm)  # PyTorch's own float32 kernel
    for a, b, t in zip(got, want, torch_f32):
        if b is None:
            assert a is None
            continue
        # No further from the float64 truth than PyTorch's float32 kernel (with slack for another summation
        # order), or within a millionth of the values' scale.
        ours, theirs = (a.double() - b).abs().max().item(), (t.double() - b).abs().max().item()
        assert ours <= max(4 * theirs, 1e-6 * (b.abs().max().item() + 1))


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_keeps_layout_and_dtype_at_the_size_it_is_used_for(dtype, tol):
    # A large mean next to a small spread: a one-pass sum of squares would lose the variance.
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(2, 8, 128, 128, generator=g) * 0.5 + 30).to(dtype).contiguous(memory_format=CL)
    dy = torch.randn(2, 8, 128, 128, generator=g).to(dtype).contiguous(memory_format=CL)
    weight, bias = torch.rand(8, generator=g) + 0.5, torch.randn(8, generator=g)
    y, dx, dw, db = _ours(x, 4, weight, bias, dy)
    assert y.dtype == dx.dtype == dtype and dw.dtype == db.dtype == torch.float32
    assert y.is_contiguous(memory_format=CL) and dx.is_contiguous(memory_format=CL)
    want = _reference(x, 4, weight, bias, dy)
    for a, b in zip((y, dx, dw, db), want):
        _close(a, b, tol)


def test_module_takes_the_path_only_for_large_channels_last_cpu_tensors_of_few_channels(monkeypatch):
    calls = []
    import pseudoanomaly.models.layers as layers

    real = layers.channels_last_group_norm
    monkeypatch.setattr(layers, "channels_last_group_norm", lambda *a: calls.append(a[0].shape) or real(*a))
    norm = MedianDivisorGroupNorm(8)
    x = torch.randn(2, 8, 128, 128)
    torch.testing.assert_close(norm(x.contiguous(memory_format=CL)), norm(x), rtol=1e-5, atol=1e-5)
    assert calls == [x.shape]
    norm(x)  # NCHW: PyTorch's kernel
    norm(torch.randn(2, 8, 16, 16).contiguous(memory_format=CL))  # small: PyTorch's kernel
    assert calls == [x.shape]
    assert not use_channels_last_group_norm(torch.randn(2, 1, 128, 128).contiguous(memory_format=CL))
    assert not use_channels_last_group_norm(torch.randn(1, 16, 128, 128).contiguous(memory_format=CL))  # many channels
    assert not use_channels_last_group_norm(torch.randn(2, 8, 128, 128, dtype=torch.float64).to(memory_format=CL))


def test_restoration_net_trains_alike_in_either_layout():
    # One optimizer step of the released restoration design at 128 x 128 (where the path is taken): the
    # channels-last net's loss and updated weights match the NCHW net's up to float rounding.
    def step(memory_format):
        torch.manual_seed(0)
        net = RestorationUNet(base_width=4, depth=2).to(memory_format=memory_format)
        x = torch.rand(2, 1, 128, 128, generator=torch.Generator().manual_seed(1)).contiguous(
            memory_format=memory_format)
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        loss = (net(x) - x).abs().mean()
        loss.backward()
        opt.step()
        return loss.item(), [p.detach().clone() for p in net.parameters()]

    loss_a, params_a = step(torch.contiguous_format)
    loss_b, params_b = step(CL)
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
    for a, b in zip(params_a, params_b):
        torch.testing.assert_close(a, b.contiguous(), rtol=1e-4, atol=1e-5)


def test_gradient_of_the_gradient_is_refused():
    x = torch.randn(1, 4, 128, 128).contiguous(memory_format=CL).requires_grad_()
    y = channels_last_group_norm(x, 2, None, None, 1e-5)
    (gx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError):
        gx.sum().backward()
