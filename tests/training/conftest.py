"""Tiny nets, toy data and a stand-in synthesis shared by the training tests (CPU, 32x32 images)."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pseudoanomaly.models import ReconstructiveAE, RestorationUNet, SegmentationNet
from pseudoanomaly.models.layers import MedianDivisorGroupNorm
from pseudoanomaly.training import JointConfig, TwoPhaseConfig

SIZE = 32


@pytest.fixture(autouse=True)
def one_thread():
    """Other test suites share the 2 cores; one thread also keeps float sums in a fixed order."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def healthy_images(n: int, seed: int = 0, size: int = SIZE) -> Tensor:
    """Smooth random images in [0, 1], ``(n, 1, size, size)``: low-resolution noise upsampled."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 1, 4, 4, generator=g)
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)


def validation_set(n: int = 4, seed: int = 1) -> list[tuple[Tensor, Tensor, Tensor]]:
    """``(image, foreground, label)`` items: healthy images with one bright disk (the "tumor") each."""
    images = healthy_images(n, seed)
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    items = []
    for i in range(n):
        cy, cx = 10 + 3 * i, 12 + 2 * i
        label = ((yy - cy) ** 2 + (xx - cx) ** 2 <= 16)[None]  # (1, H, W)
        image = torch.where(label, 1.0, images[i])
        foreground = torch.zeros(1, SIZE, SIZE, dtype=torch.bool)
        foreground[:, 2:-2, 2:-2] = True
        items.append((image, foreground, label))
    return items


class SquareSynthesis:
    """Stand-in for a PseudoAnomaly (fast and easy to learn): one bright square per image at a position drawn from the generator."""

    def __init__(self, size: int = 8, random: bool = True) -> None:
        self.size, self.random = size, random

    def __call__(self, images: Tensor, foreground: Tensor | None = None, generator: torch.Generator | None = None):
        b, _, h, w = images.shape
        if self.random:
            corner = torch.randint(0, h - self.size + 1, (2, b, 1, 1), generator=generator, device=images.device)
        else:  # a position set by the image itself, so it does not depend on which process draws it
            corner = (images.mean(dim=(1, 2, 3)) * (h - self.size)).long().view(1, b, 1, 1).expand(2, b, 1, 1)
        yy = torch.arange(h, device=images.device).view(1, h, 1)
        xx = torch.arange(w, device=images.device).view(1, 1, w)
        top, left = corner
        inside = (yy >= top) & (yy < top + self.size) & (xx >= left) & (xx < left + self.size)  # (B, H, W)
        masks = inside.unsqueeze(1).to(images.dtype)  # (B, 1, H, W)
        return images * (1 - masks) + masks, masks


def tiny_nets(seed: int = 0, restoration: str = "unet", group_norm: bool = False) -> tuple[nn.Module, nn.Module]:
    """A restoration net and a segmentation net of a few thousand parameters for 32x32 images."""
    norm = {"norm_layer": MedianDivisorGroupNorm} if group_norm else {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if restoration == "unet":
            rest = RestorationUNet(base_width=4, depth=2)
        else:
            rest = ReconstructiveAE(base_width=4, channel_multipliers=(1, 2, 2), **norm)
        seg = SegmentationNet(base_width=4, channel_multipliers=(1, 2, 2), **norm)
    return rest, seg


# Short runs: 8 images in batches of 2 give 4 steps per epoch.
TINY = dict(batch_size=2, progress=False, eval_every=0, log_every=1)
tiny_two_phase = functools.partial(TwoPhaseConfig, restoration_epochs=1, segmentation_epochs=1, **TINY)
tiny_joint = functools.partial(JointConfig, epochs=1, **TINY)


@pytest.fixture
def toy():
    """The helpers above, for tests (importlib mode cannot import conftest by name)."""

    class Toy:
        images = staticmethod(healthy_images)
        validation = staticmethod(validation_set)
        Synthesis = SquareSynthesis
        nets = staticmethod(tiny_nets)
        two_phase = staticmethod(tiny_two_phase)
        joint = staticmethod(tiny_joint)

    return Toy
