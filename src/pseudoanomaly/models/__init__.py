"""Networks: restoration (image with anomalies -> normal image), segmentation (image + restoration -> anomaly
logits) and the inference pipeline that chains them into anomaly probability maps.

- :class:`RestorationUNet`: restoration net of Zhang, Deng & Li (SASHIMI 2023).
- :class:`ReconstructiveAE`: DRAEM's reconstructive sub-network (no skips), for ablations.
- :class:`SegmentationNet`: DRAEM's discriminative sub-network.
- :class:`AnomalySegmenter`: ``images -> restoration -> segmentation -> anomaly map`` in eval mode, no grad.
- :class:`EnsembleSegmenter`: the mean map of several segmenters (other seeds).
- :class:`WSConv2d`: weight-standardized convolution.
"""

from __future__ import annotations

from .autoencoder import ReconstructiveAE
from .layers import WSConv2d
from .restoration import RestorationUNet
from .segmentation import SegmentationNet
from .anomaly_segmenter import AnomalySegmenter
from .ensemble import EnsembleSegmenter

__all__ = [
    "RestorationUNet", "ReconstructiveAE", "SegmentationNet", "AnomalySegmenter", "EnsembleSegmenter", "WSConv2d",
]
