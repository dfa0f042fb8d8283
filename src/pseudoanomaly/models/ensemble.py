"""An ensemble of anomaly segmenters: the mean of their probability maps.

Independently trained nets (other seeds: other synthetic anomalies, other initial weights) agree on what they
learned and disagree on their luck; the mean of their maps keeps the first and averages out the second (deep
ensembles, Lakshminarayanan, Pritzel & Blundell, NeurIPS 2017). For self-supervised anomaly segmentation the
luck is large: one training recipe gave pooled Dice 0.67 and 0.49 on real liver tumours with two seeds
(``examples/lits``). Measured on the out-of-sample instrument: ``benchmarks/lits_crossover.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .anomaly_segmenter import AnomalySegmenter

__all__ = ["EnsembleSegmenter"]


class _MeanOf(nn.Module):
    """The mean of the outputs of several modules that take the same input."""

    def __init__(self, modules: Sequence[nn.Module]) -> None:
        super().__init__()
        self.parts = nn.ModuleList(modules)

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([part(x) for part in self.parts]).mean(dim=0)


class EnsembleSegmenter(nn.Module):
    """The mean anomaly map of several :class:`AnomalySegmenter` members.

    Args:
        members: one or more segmenters; each keeps its own ``batch_size``, precision and device.

    Attributes:
        restoration: the mean restoration of the members (for figures: a member's own restoration is what its
            segmentation net compares with).

    Returns:
        Calling it, ``ensemble(images, foreground=None)``, returns the mean of the members' anomaly probability
        maps, exactly 0 outside the foreground, on the images' device.

    Shape:
        As :class:`AnomalySegmenter`: images :math:`(B, C, H, W)`, foreground :math:`(B, 1, H, W)` optional,
        output :math:`(B, 1, H, W)` in :math:`[0, 1]`, exactly 0 outside the foreground.

    Example:
        >>> from pseudoanomaly.models import RestorationUNet, SegmentationNet
        >>> _ = torch.manual_seed(0)
        >>> members = [AnomalySegmenter(RestorationUNet(base_width=4, depth=1),
        ...                             SegmentationNet(base_width=2, channel_multipliers=(1, 2)))
        ...            for _ in range(2)]
        >>> images = torch.rand(2, 1, 16, 16)
        >>> mean = EnsembleSegmenter(members)(images)
        >>> torch.allclose(mean, (members[0](images) + members[1](images)) / 2)
        True
    """

    def __init__(self, members: Sequence[AnomalySegmenter]) -> None:
        super().__init__()
        members = list(members)
        if not members:
            raise ValueError("members must hold at least one segmenter, got none")
        for i, member in enumerate(members):
            if not isinstance(member, AnomalySegmenter):
                raise TypeError(f"members[{i}] must be an AnomalySegmenter, got {type(member).__name__}")
        self.members = nn.ModuleList(members)

    @property
    def restoration(self) -> nn.Module:
        return _MeanOf([m.restoration for m in self.members])

    def forward(self, images: Tensor, foreground: Tensor | None = None) -> Tensor:
        maps = self.members[0](images, foreground)
        for member in self.members[1:]:
            maps = maps + member(images, foreground)
        return maps / len(self.members)
