"""Ready-made syntheses of published methods: configurations only, no new code."""

from __future__ import annotations

from .masks import BlurredNoiseMask
from .overlays import IntensityShift
from .synthesis import PseudoAnomaly

__all__ = ["zhang2023"]


def zhang2023(p: float = 1.0, cutout: bool = False) -> PseudoAnomaly:
    """The synthesis of Zhang, Deng & Li, "Unsupervised Liver Tumor Segmentation with Pseudo Anomaly
    Synthesis" (SASHIMI 2023), as in the paper's released code.

    Blurred-noise blobs (sigma 15, stretched, ``> 200`` of 255, 9 x 9 elliptical opening and closing, inside
    the foreground) filled by an intensity shift of 60-100 grey levels of 255 with a random sign.

    Args:
        p: per-sample probability of an anomaly (the released code makes every training sample anomalous).
        cutout: force darkening, as the released code's ``cutout`` option.

    Returns:
        A :class:`~pseudoanomaly.PseudoAnomaly`.

    Example:
        >>> synth = zhang2023()
        >>> images = torch.rand(2, 1, 256, 256)
        >>> augmented, masks = synth(images, generator=torch.Generator().manual_seed(0))
        >>> augmented.shape
        torch.Size([2, 1, 256, 256])
    """
    return PseudoAnomaly(
        mask=BlurredNoiseMask(),
        overlay=IntensityShift(direction="darken" if cutout else "random"),
        p=p,
    )
