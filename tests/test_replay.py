"""The public replay and composition surface: ``last_params`` (and its alias ``_params``), ``generate`` and
``paint``, the per-sample gate key ``"applied"`` (and the old ``"batch_prob"`` on replay), and the deprecated
module paths."""

from __future__ import annotations

import importlib
import warnings

import pytest
import torch

from pseudoanomaly import OneOf, PseudoAnomaly, presets
from pseudoanomaly.masks import BlobMask, BlurredNoiseMask, PerlinMask
from pseudoanomaly.overlays import IntensityShift, PatchBlend, TextureBlend

SIZE = 32
MASKS = [BlurredNoiseMask(sigma=4.0), PerlinMask(), BlobMask(union=2)]
OVERLAYS = [IntensityShift(), TextureBlend(), PatchBlend()]


def _batch(seed: int = 0, b: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = 0.2 + 0.6 * torch.rand(b, 1, SIZE, SIZE, generator=g)
    foreground = torch.zeros(b, 1, SIZE, SIZE, dtype=torch.bool)
    foreground[..., 4:28, 6:30] = True
    return images, foreground


def _square_masks(b: int) -> torch.Tensor:
    masks = torch.zeros(b, 1, SIZE, SIZE)
    masks[..., 8:20, 10:24] = 1
    return masks


def _same_params(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same_params(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same_params(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("gen", MASKS, ids=lambda g: type(g).__name__)
def test_mask_last_params_is_the_old_params_and_replays(gen):
    images, fg = _batch()
    assert gen.last_params is None or gen.last_params is gen._params
    masks = gen(images, fg, generator=torch.Generator().manual_seed(1))
    assert gen.last_params is gen._params
    assert torch.equal(gen(images, fg, params=gen.last_params), masks)
    # the same draws through the unchecked entry point a composer calls
    again = gen.generate(images, fg, torch.Generator().manual_seed(1))
    assert torch.equal(again, masks)
    # the alias is writable, as users of Kornia's convention may assign it
    saved = gen.last_params
    gen._params = None
    assert gen.last_params is None
    gen._params = saved
    assert gen.last_params is saved


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda o: type(o).__name__)
def test_overlay_last_params_is_the_old_params_and_replays(overlay):
    images, _ = _batch()
    masks = _square_masks(len(images))
    out = overlay(images, masks, generator=torch.Generator().manual_seed(2))
    assert overlay.last_params is overlay._params
    assert torch.equal(overlay(images, masks, params=overlay.last_params), out)
    assert torch.equal(overlay.paint(images, masks.bool(), torch.Generator().manual_seed(2)), out)


@pytest.mark.parametrize("p", [1.0, 0.5])
def test_pseudoanomaly_last_params_replays_bit_identically(p):
    images, fg = _batch(b=8)
    synth = PseudoAnomaly(BlobMask(), IntensityShift(), p=p)
    out, masks = synth(images, fg, generator=torch.Generator().manual_seed(3))
    assert synth.last_params is synth._params
    assert set(synth.last_params) == {"applied", "mask", "overlay"}
    assert synth.last_params["applied"].dtype == torch.bool
    again, masks_again = synth(images, fg, params=synth.last_params)
    assert torch.equal(again, out) and torch.equal(masks_again, masks)


def test_pseudoanomaly_replays_params_saved_under_the_old_gate_key():
    images, fg = _batch(b=8)
    synth = PseudoAnomaly(BlurredNoiseMask(sigma=4.0), IntensityShift(), p=0.5)
    out, masks = synth(images, fg, generator=torch.Generator().manual_seed(4))
    saved = dict(synth.last_params)
    saved["batch_prob"] = saved.pop("applied")  # a dict written before the key was renamed
    again, masks_again = synth(images, fg, params=saved)
    assert torch.equal(again, out) and torch.equal(masks_again, masks)
    assert set(synth.last_params) == {"applied", "mask", "overlay"}  # recorded under the new key
    with pytest.raises(ValueError, match="'applied', 'mask', 'overlay'"):
        synth(images, fg, params={"mask": None, "overlay": None})


def test_oneof_last_params_replays_and_reads_options_last_params():
    images, fg = _batch(b=8)
    synth = OneOf([presets.zhang2023(), PseudoAnomaly(BlobMask(), IntensityShift(direction="darken"))])
    out, masks = synth(images, fg, generator=torch.Generator().manual_seed(5))
    assert synth.last_params is synth._params
    for option, recorded in zip(synth.syntheses, synth.last_params["options"]):
        assert recorded is None or _same_params(recorded, option.last_params)
    again, masks_again = synth(images, fg, params=synth.last_params)
    assert torch.equal(again, out) and torch.equal(masks_again, masks)


def test_oneof_replays_a_plain_callable_that_keeps_only_params():
    class OldStyle:  # a user's synthesis written against the old name: no last_params
        def __init__(self):
            self.inner = PseudoAnomaly(BlobMask(), IntensityShift())
            self._params = None

        def __call__(self, images, foreground=None, generator=None, params=None):
            out = self.inner(images, foreground, generator=generator, params=params)
            self._params = self.inner.last_params
            return out

    images, fg = _batch(b=8)
    synth = OneOf([presets.zhang2023(), OldStyle()])
    out, _ = synth(images, fg, generator=torch.Generator().manual_seed(6))
    wrapped = synth.syntheses[1]
    assert wrapped.last_params is wrapped.fn._params and wrapped._params is wrapped.last_params
    again, _ = synth(images, fg, params=synth.last_params)
    assert torch.equal(again, out)


def test_deprecated_augmentation_module_warns_and_gives_the_same_class():
    from pseudoanomaly.integrations.kornia import RandomPseudoAnomaly

    with pytest.warns(DeprecationWarning, match="pseudoanomaly.integrations.kornia"):
        from pseudoanomaly.augmentation import RandomPseudoAnomaly as old
    assert old is RandomPseudoAnomaly
    import pseudoanomaly

    with pytest.warns(DeprecationWarning):
        assert pseudoanomaly.augmentation.RandomPseudoAnomaly is RandomPseudoAnomaly
    assert pseudoanomaly.integrations.kornia.RandomPseudoAnomaly is RandomPseudoAnomaly


def test_deprecated_segmenter_module_warns_and_gives_the_same_class():
    from pseudoanomaly.models import AnomalySegmenter

    module = importlib.import_module("pseudoanomaly.models.segmenter")
    with pytest.warns(DeprecationWarning, match="pseudoanomaly.models"):
        assert module.AnomalySegmenter is AnomalySegmenter
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new homes do not warn
        from pseudoanomaly.models.anomaly_segmenter import AnomalySegmenter as new
    assert new is AnomalySegmenter
