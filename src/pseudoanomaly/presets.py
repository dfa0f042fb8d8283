"""Ready-made syntheses of published methods: configurations only, no new code."""

from __future__ import annotations

from torch import Tensor

from .masks import BlurredNoiseMask, PerlinMask
from .masks.blurred_noise import KERNEL_SIZE
from .overlays import IntensityShift, TextureBlend
from .synthesis import PseudoAnomaly

__all__ = ["zhang2023", "draem"]


def zhang2023(p: float = 1.0, cutout: bool = False,
              spacing: tuple[float, float, float] | None = None) -> PseudoAnomaly:
    """The synthesis of Zhang, Deng & Li, "Unsupervised Liver Tumor Segmentation with Pseudo Anomaly
    Synthesis" (SASHIMI 2023), as in the paper's released code.

    Blurred-noise blobs (sigma 15, stretched, ``> 200`` of 255, 9 x 9 elliptical opening and closing, inside
    the foreground) filled by an intensity shift of 60-100 grey levels of 255 with a random sign.

    Args:
        p: per-sample probability of an anomaly (the released code makes every training sample anomalous).
        cutout: force darkening, as the released code's ``cutout`` option.
        spacing: for volumes, the voxel size ``(z, y, x)``: the blur and the element keep the paper's sizes (15
            and 9) in these units, e.g. ``(slice thickness / pixel size, 1, 1)`` keeps the paper's in-plane sizes
            in pixels and makes the blobs as deep in the patient as they are wide. ``None``: images, or sizes in
            voxels.

    Returns:
        A :class:`~pseudoanomaly.PseudoAnomaly`; call it as ``synth(images, foreground, generator=g)``.

    Shape:
        - images: :math:`(B, C, H, W)` or :math:`(B, C, D, H, W)`, values in [0, 1]
        - foreground: :math:`(B, 1, H, W)` or :math:`(B, 1, D, H, W)` (the liver ROI in the paper)
        - output: ``(augmented, masks)``, the images' shape and masks of one channel

    Example:
        >>> synth = zhang2023()
        >>> images = torch.rand(2, 1, 256, 256)
        >>> augmented, masks = synth(images, generator=torch.Generator().manual_seed(0))
        >>> augmented.shape
        torch.Size([2, 1, 256, 256])
    """
    mask = BlurredNoiseMask() if spacing is None else BlurredNoiseMask(spacing=spacing, kernel_size=float(KERNEL_SIZE))
    return PseudoAnomaly(
        mask=mask,
        overlay=IntensityShift(direction="darken" if cutout else "random"),
        p=p,
    )


# DRAEM data_loader.py: a training sample stays normal when rand() > 0.5, so half of them get an anomaly
DRAEM_P = 0.5


def draem(p: float = DRAEM_P, textures: Tensor | None = None) -> PseudoAnomaly:
    """The synthesis of Zavrtanik, Kristan & Skočaj, "DRAEM - A discriminatively trained reconstruction
    embedding for surface anomaly detection" (ICCV 2021), as in the paper's released code.

    Perlin-noise masks (lattices of 2^0 to 2^5 cells per side, rotated by up to 90 degrees, ``> 0.5``) filled
    with a texture blended as ``(1 - b) * texture + b * image``, ``b`` uniform in [0, 0.8].

    Args:
        p: per-sample probability of an anomaly (DRAEM's loader makes half of the samples anomalous).
        textures: bank of texture images ``(N, C or 1, h, w)`` in [0, 1] (DRAEM uses the Describable
            Textures Dataset); ``None`` uses fractal-noise textures.

    Returns:
        A :class:`~pseudoanomaly.PseudoAnomaly`; call it as ``synth(images, foreground, generator=g)``.

    Shape:
        - textures: :math:`(N, C \\text{ or } 1, h, w)`
        - images: :math:`(B, C, H, W)`, values in [0, 1]
        - output: ``(augmented, masks)`` of shapes :math:`(B, C, H, W)` and :math:`(B, 1, H, W)`

    Example:
        >>> synth = draem(p=1.0)
        >>> images = torch.rand(2, 3, 64, 64)
        >>> augmented, masks = synth(images, generator=torch.Generator().manual_seed(0))
        >>> augmented.shape, masks.shape
        (torch.Size([2, 3, 64, 64]), torch.Size([2, 1, 64, 64]))
    """
    return PseudoAnomaly(mask=PerlinMask(), overlay=TextureBlend(textures=textures), p=p)
