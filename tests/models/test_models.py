"""Models: forward/backward at small sizes, released parameter counts, WS conv, size checks, AnomalySegmenter."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pseudoanomaly.models import AnomalySegmenter, ReconstructiveAE, RestorationUNet, SegmentationNet, WSConv2d
from pseudoanomaly.models.layers import MedianDivisorGroupNorm, group_count, standardize_weight

# (name, factory, input shape, output shape): small widths so the whole file runs in seconds on a CPU.
SMALL_MODELS = [
    ("restoration", lambda: RestorationUNet(base_width=8), (2, 1, 32, 32), (2, 1, 32, 32)),
    ("restoration-rgb-depth2", lambda: RestorationUNet(3, 2, base_width=4, depth=2), (2, 3, 16, 24), (2, 2, 16, 24)),
    ("autoencoder", lambda: ReconstructiveAE(base_width=4), (2, 1, 32, 32), (2, 1, 32, 32)),
    ("autoencoder-3pools", lambda: ReconstructiveAE(3, 3, 4, (1, 2, 2, 4)), (2, 3, 16, 32), (2, 3, 16, 32)),
    ("segmentation", lambda: SegmentationNet(base_width=4), (2, 2, 32, 32), (2, 2, 32, 32)),
    ("segmentation-rgb", lambda: SegmentationNet(3, 4, (1, 2, 4)), (2, 6, 16, 8), (2, 2, 16, 8)),
]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize(
    "factory, in_shape, out_shape", [m[1:] for m in SMALL_MODELS], ids=[m[0] for m in SMALL_MODELS]
)
def test_forward_backward_reaches_every_parameter(factory, in_shape, out_shape):
    model = factory()
    x = torch.rand(in_shape)
    x_before = x.clone()
    out = model(x)
    assert out.shape == out_shape
    assert out.dtype == x.dtype
    assert torch.isfinite(out).all()
    assert torch.equal(x, x_before), "the input was modified in place"
    out.square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} received no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
    assert sum(p.grad.abs().sum() for p in model.parameters()) > 0


@pytest.mark.parametrize(
    "factory, expected",
    [
        # Counted from the reference constructors' layer lists (see each model file's docstring).
        (RestorationUNet, 7_701_825),
        (SegmentationNet, 28_371_842),
        (ReconstructiveAE, 69_043_969),
    ],
    ids=["restoration", "segmentation", "autoencoder"],
)
def test_default_configuration_has_released_parameter_count(factory, expected):
    model = factory()
    assert sum(p.numel() for p in model.parameters()) == expected


def test_restoration_defaults_are_released_design():
    net = RestorationUNet()
    norms = [m for m in net.encoder.modules() if isinstance(m, nn.GroupNorm)]
    assert [n.num_groups for n in norms] == [8, 8, 16, 16, 16, 16, 32, 32]
    assert [n.num_channels for n in norms] == [64, 64, 128, 128, 256, 256, 512, 512]
    three_by_three = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(three_by_three) == 14 and all(isinstance(m, WSConv2d) for m in three_by_three)
    assert sum(isinstance(m, nn.ReflectionPad2d) for m in net.modules()) == 14
    assert sum(isinstance(m, nn.SiLU) for m in net.modules()) == 14
    assert len(net.upsamplers) == 3 and all(isinstance(m, nn.ConvTranspose2d) for m in net.upsamplers)
    assert net.head.kernel_size == (1, 1)
    # Step order of the released net: pad -> WS conv -> Swish -> GroupNorm.
    assert list(dict(net.encoder[0][0].named_children())) == ["pad", "conv", "act", "norm"]


def test_layers_are_arguments():
    net = RestorationUNet(base_width=4, conv_layer=nn.Conv2d, norm_layer=nn.BatchNorm2d, act_layer=nn.ReLU,
                          pad_layer=None)
    kinds = {type(m) for m in net.modules()}
    assert nn.BatchNorm2d in kinds and nn.ReLU in kinds
    assert not kinds & {WSConv2d, MedianDivisorGroupNorm, nn.SiLU, nn.ReflectionPad2d}
    assert net(torch.rand(2, 1, 16, 16)).shape == (2, 1, 16, 16)
    seg = SegmentationNet(base_width=4, channel_multipliers=(1, 2), norm_layer=nn.Identity, act_layer=nn.GELU)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in seg.modules())
    assert seg(torch.rand(1, 2, 8, 8)).shape == (1, 2, 8, 8)


def test_group_count_is_median_divisor():
    assert [group_count(c) for c in (1, 4, 8, 12, 64, 128, 256, 512)] == [1, 2, 4, 4, 8, 16, 16, 32]
    with pytest.raises(ValueError, match="num_channels.*0"):
        group_count(0)


class TestWSConv2d:
    def test_effective_weight_is_standardized_per_filter(self):
        conv = WSConv2d(5, 7, 3)
        with torch.no_grad():
            conv.weight.mul_(3.0).add_(torch.randn(7, 1, 1, 1))  # arbitrary scale and per-filter offset
        w = standardize_weight(conv.weight).flatten(1)
        torch.testing.assert_close(w.mean(1), torch.zeros(7), atol=1e-6, rtol=0)
        torch.testing.assert_close(w.std(1), torch.ones(7), atol=1e-4, rtol=0)

    def test_forward_convolves_with_standardized_weight(self):
        conv = WSConv2d(3, 4, 3, padding=1, padding_mode="reflect")
        x = torch.randn(2, 3, 9, 9)
        expected = F.conv2d(F.pad(x, [1] * 4, mode="reflect"), standardize_weight(conv.weight), conv.bias)
        torch.testing.assert_close(conv(x), expected)
        assert isinstance(conv, nn.Conv2d)

    def test_output_invariant_to_filter_scale_and_shift(self):
        conv = WSConv2d(2, 3, 3, bias=False)
        x = torch.randn(1, 2, 6, 6)
        before = conv(x)
        with torch.no_grad():
            conv.weight.mul_(5.0).add_(2.0)
        torch.testing.assert_close(conv(x), before, atol=1e-5, rtol=1e-4)

    def test_gradient_flows_to_raw_weight(self):
        conv = WSConv2d(2, 3, 3)
        conv(torch.randn(1, 2, 5, 5)).sum().backward()
        assert conv.weight.grad is not None and torch.isfinite(conv.weight.grad).all()


@pytest.mark.parametrize(
    "model, shape",
    [
        (RestorationUNet(base_width=4), (1, 1, 36, 36)),  # not divisible by 2**3
        (RestorationUNet(base_width=4), (1, 1, 8, 8)),  # coarsest level 1x1: too small to reflection-pad
        (RestorationUNet(base_width=4), (1, 2, 32, 32)),  # wrong channel count
        (RestorationUNet(base_width=4), (1, 32, 32)),  # no channel dim
        (ReconstructiveAE(base_width=4), (1, 1, 40, 32)),  # not divisible by 2**4
        (SegmentationNet(base_width=4), (1, 1, 32, 32)),  # image only, restoration missing
        (SegmentationNet(base_width=4), (1, 2, 48, 48)),  # not divisible by 2**5
    ],
)
def test_bad_input_shape_raises_naming_the_shape(model, shape):
    with pytest.raises(ValueError, match=str(shape).replace("(", r"\(").replace(")", r"\)")):
        model(torch.rand(shape))


@pytest.mark.parametrize(
    "factory, message",
    [
        (lambda: RestorationUNet(depth=-1), "depth.*-1"),
        (lambda: RestorationUNet(base_width=0), "base_width.*0"),
        (lambda: ReconstructiveAE(channel_multipliers=(1,)), r"channel_multipliers.*\(1,\)"),
        (lambda: SegmentationNet(in_channels=0), "in_channels.*0"),
        (lambda: AnomalySegmenter(nn.Identity(), nn.Identity(), batch_size=0), "batch_size.*0"),
        (lambda: ReconstructiveAE(in_channels=0), "in_channels.*0"),
        (lambda: ReconstructiveAE(out_channels=-1), "out_channels.*-1"),
        (lambda: ReconstructiveAE(in_channels=True), "in_channels.*True"),
        (lambda: ReconstructiveAE(base_width=2.5), r"base_width.*2\.5"),
        (lambda: ReconstructiveAE(channel_multipliers=(1, 0)), r"channel_multipliers.*\(1, 0\)"),
        (lambda: ReconstructiveAE(channel_multipliers=3), "channel_multipliers.*3"),
        (lambda: AnomalySegmenter(nn.Identity(), nn.Identity(), batch_size=1.5), r"batch_size.*None.*1\.5"),
        (lambda: AnomalySegmenter(nn.Identity(), nn.Identity(), precision="fp16"), "precision.*fp16"),
        (lambda: AnomalySegmenter(nn.Identity(), nn.Identity(), channels_last=1), "channels_last.*1"),
    ],
)
def test_bad_constructor_argument_raises_naming_the_value(factory, message):
    with pytest.raises(ValueError, match=message):
        factory()


def test_autoencoder_refuses_bad_input_naming_what_it_got():
    net = ReconstructiveAE(in_channels=2, base_width=4, channel_multipliers=(1, 2))
    with pytest.raises(ValueError, match=r"ReconstructiveAE.*\(B, 2, H, W\).*\(1, 1, 16, 16\)"):
        net(torch.rand(1, 1, 16, 16))
    with pytest.raises(ValueError, match=r"ReconstructiveAE.*divisible by 2.*\(1, 2, 15, 16\)"):
        net(torch.rand(1, 2, 15, 16))
    with pytest.raises(TypeError, match="ReconstructiveAE.*ndarray"):
        net(torch.rand(1, 2, 16, 16).numpy())
    assert net(torch.rand(1, 2, 16, 16)).shape == (1, 1, 16, 16)


class TestAnomalySegmenter:
    @pytest.fixture
    def segmenter(self):
        torch.manual_seed(0)
        return AnomalySegmenter(RestorationUNet(base_width=4), SegmentationNet(base_width=4))

    def test_output_is_probability_map(self, segmenter):
        maps = segmenter(torch.rand(3, 1, 32, 32))
        assert maps.shape == (3, 1, 32, 32)
        assert maps.min() >= 0 and maps.max() <= 1

    def test_equals_softmax_channel_one_of_segmentation(self, segmenter):
        images = torch.rand(2, 1, 32, 32)
        segmenter.eval()
        with torch.no_grad():
            logits = segmenter.segmentation(torch.cat([segmenter.restoration(images), images], dim=1))
        torch.testing.assert_close(segmenter(images), logits.softmax(1)[:, 1:])

    @pytest.mark.parametrize("dtype", [torch.bool, torch.float32, torch.uint8])
    def test_exactly_zero_outside_foreground(self, segmenter, dtype):
        images = torch.rand(2, 1, 32, 32)
        foreground = torch.rand(2, 1, 32, 32) > 0.5
        foreground[1] = False  # a slice without foreground is valid: its map is all zero
        maps = segmenter(images, foreground.to(dtype))
        assert (maps[~foreground] == 0).all()
        torch.testing.assert_close(maps[foreground], segmenter(images)[foreground])

    def test_runs_in_eval_mode_without_grad_and_restores_modes(self, segmenter):
        segmenter.train()
        bn = next(m for m in segmenter.modules() if isinstance(m, nn.BatchNorm2d))
        running_mean = bn.running_mean.clone()
        images = torch.rand(2, 1, 32, 32, requires_grad=True)
        maps = segmenter(images)
        assert not maps.requires_grad
        assert torch.equal(bn.running_mean, running_mean), "BatchNorm statistics changed: not in eval mode"
        assert all(m.training for m in segmenter.modules()), "train/eval modes were not restored"
        segmenter.eval()
        torch.testing.assert_close(segmenter(images), maps)

    def test_chunked_equals_whole_batch(self, segmenter):
        images = torch.rand(5, 1, 32, 32)
        chunked = AnomalySegmenter(segmenter.restoration, segmenter.segmentation, batch_size=2)
        torch.testing.assert_close(chunked(images), segmenter(images), atol=1e-5, rtol=1e-4)

    def test_channels_last_gives_the_same_maps_in_the_default_layout(self, segmenter):
        images = torch.rand(3, 1, 32, 32)
        expected = segmenter(images)
        fast = AnomalySegmenter(segmenter.restoration, segmenter.segmentation, channels_last=True)
        assert any(
            p.ndim == 4 and p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
            for p in fast.parameters()
        ), "the convolution kernels were not converted"
        maps = fast(images)
        assert maps.is_contiguous() and maps.dtype == torch.float32
        torch.testing.assert_close(maps, expected, atol=1e-5, rtol=1e-4)

    def test_bf16_runs_in_bfloat16_and_returns_float32_maps_close_to_fp32(self, segmenter):
        images = torch.rand(3, 1, 32, 32)
        expected = segmenter(images)
        seen = []
        hook = segmenter.segmentation.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
        maps = AnomalySegmenter(segmenter.restoration, segmenter.segmentation, precision="bf16")(images)
        hook.remove()
        assert seen == [torch.bfloat16], "the networks did not run under bfloat16 autocast"
        assert maps.dtype == torch.float32 and maps.shape == expected.shape
        assert float((maps - expected).abs().max()) < 0.02  # bfloat16 keeps 8 bits of mantissa
        assert not torch.equal(maps, expected)

    def test_bad_foreground_raises_naming_it(self, segmenter):
        images = torch.rand(2, 1, 32, 32)
        with pytest.raises(ValueError, match=r"foreground.*\(2, 1, 16, 16\)"):
            segmenter(images, torch.ones(2, 1, 16, 16, dtype=torch.bool))
        with pytest.raises(ValueError, match="foreground.*0 and 1.*0.5"):
            segmenter(images, torch.full((2, 1, 32, 32), 0.5))
