"""``RandomPseudoAnomaly``: a synthesis as a TorchIO transform, writing the anomaly mask as a ``LabelMap``.

TorchIO draws every random parameter from torch's global generator, so this transform does too: its gate and the
synthesis's seed come from ``torch.rand`` and ``torch.randint``, and ``torch.manual_seed`` reproduces a pipeline
bit for bit (PyTorch seeds each ``DataLoader`` worker differently, so workers draw different anomalies).

NOTE: TorchIO keeps every image 4-D, ``(C, W, H, D)``, and a 2-D image as ``(C, W, H, 1)``. Such an image goes
through the synthesis as the 2-D image it is, ``(1, C, W, H)``, not as a volume one voxel deep; any other goes
through it as a volume ``(1, C, W, H, D)``: a synthesis that takes a voxel ``spacing`` (``BlobMask``,
``BlurredNoiseMask``) wants it in that axis order, ``subject[image_key].spacing`` as TorchIO reports it.
"""

from __future__ import annotations

try:
    import torchio  # noqa: F401  (an optional extra: say which, rather than a bare "No module named")
except ModuleNotFoundError as error:
    raise ModuleNotFoundError("pseudoanomaly.integrations.torchio needs TorchIO, an optional extra: "
                              'pip install "pseudoanomaly[torchio]"', name="torchio") from error
import torch
import torchio as tio
from torch import Tensor

from .._checks import EMPTY_FOREGROUND, check_choice
from ..presets import zhang2023
from ._sample import (
    SEED_BOUND,
    Synthesis,
    check_same_grid,
    check_sample,
    check_sample_foreground,
    check_sample_value_range,
    check_synthesis,
    synthesize_sample,
)

__all__ = ["RandomPseudoAnomaly"]


class RandomPseudoAnomaly(tio.transforms.augmentation.RandomTransform):
    """Paint a pseudo-anomaly into ``subject[image_key]`` with probability ``p``; add its mask as a ``LabelMap``.

    The anomaly goes only inside ``subject[foreground_key]`` when that is set (the liver in the paper). The mask
    is added on every call, all zero when the gate leaves the subject normal, so that subjects collate into
    batches. The image must already lie in the synthesis's value range ([0, 1] for the presets), e.g. after
    ``tio.Clamp`` and ``tio.RescaleIntensity`` of a HU window; values outside it raise.

    Args:
        image_key: name of the ``ScalarImage`` to make anomalous.
        foreground_key: name of a one-channel image of 0/1 values (a ``LabelMap``) where anomalies may go;
            ``None`` allows them anywhere (an empty one: see ``empty_foreground``).
        mask_key: name the anomaly mask is added under, a ``LabelMap`` of exactly 0 and 1 in the image's dtype,
            on the image's affine (an existing image of that name is replaced).
        synthesis: any callable ``synthesis(images, foreground, generator=g) -> (augmented, masks)`` on a batch;
            defaults to :func:`~pseudoanomaly.presets.zhang2023`. A :class:`~pseudoanomaly.PseudoAnomaly` must
            have ``p=1``: ``p`` here is the gate.
        p: probability that the subject gets an anomaly (unlike TorchIO's own ``p``, the mask is added even when
            the gate says no).
        empty_foreground: a subject whose foreground is empty is left normal with a warning (``"skip"``), or
            raises (``"raise"``), as :class:`~pseudoanomaly.PseudoAnomaly`.

    Returns:
        Called on a ``tio.Subject`` (or anything TorchIO transforms accept), a new subject with the anomaly
        painted into ``image_key`` when the gate picks it, and the mask under ``mask_key``.

    Shape:
        - ``subject[image_key]``: :math:`(C, W, H, D)`, or :math:`(C, W, H, 1)` for a 2-D image.
        - ``subject[foreground_key]``: :math:`(1, W, H, D)`, on the image's affine.
        - ``subject[mask_key]``: :math:`(1, W, H, D)`.

    Example:
        >>> import torchio as tio
        >>> subject = tio.Subject(
        ...     ct=tio.ScalarImage(tensor=0.25 + 0.5 * torch.rand(1, 64, 64, 1)),  # a 2-D slice
        ...     liver=tio.LabelMap(tensor=torch.ones(1, 64, 64, 1)),
        ... )
        >>> transform = RandomPseudoAnomaly("ct", foreground_key="liver", mask_key="anomaly")
        >>> _ = torch.manual_seed(0)
        >>> out = transform(subject)
        >>> type(out["anomaly"]).__name__, out["anomaly"].shape
        ('LabelMap', (1, 64, 64, 1))
        >>> _ = torch.manual_seed(0)
        >>> torch.equal(transform(subject)["ct"].data, out["ct"].data)
        True
    """

    def __init__(
        self,
        image_key: str = "image",
        foreground_key: str | None = None,
        mask_key: str = "anomaly",
        synthesis: Synthesis | None = None,
        p: float = 1.0,
        empty_foreground: str = "skip",
    ) -> None:
        super().__init__(p=1)  # the gate is ours: TorchIO's would skip the transform, and the mask with it
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomPseudoAnomaly: p must be a number in [0, 1], got {p!r}")
        names = {"image_key": image_key, "foreground_key": foreground_key, "mask_key": mask_key}
        if len({v for v in names.values() if v is not None}) < sum(v is not None for v in names.values()):
            raise ValueError(f"RandomPseudoAnomaly: image_key, foreground_key and mask_key must differ, got {names}")
        self.image_key = image_key
        self.foreground_key = foreground_key
        self.mask_key = mask_key
        self.synthesis = check_synthesis(zhang2023() if synthesis is None else synthesis, "RandomPseudoAnomaly")
        self.anomaly_p = float(p)
        self.empty_foreground = check_choice("empty_foreground", empty_foreground, EMPTY_FOREGROUND)

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        # Both draws on every call, so that torch's random stream does not depend on the gate.
        applied = torch.rand(1).item() < self.anomaly_p
        seed = int(torch.randint(SEED_BOUND, (1,)).item())
        image = self._get(subject, self.image_key, "image_key")
        data = check_sample(image.data, f"RandomPseudoAnomaly: subject[{self.image_key!r}]")
        check_sample_value_range(data, self.synthesis, f"RandomPseudoAnomaly: subject[{self.image_key!r}]")
        foreground = None
        if self.foreground_key is not None:
            fg_image = self._get(subject, self.foreground_key, "foreground_key")
            check_same_grid({f"subject[{self.image_key!r}]": image.affine,
                             f"subject[{self.foreground_key!r}]": fg_image.affine}, "RandomPseudoAnomaly")
            foreground = check_sample_foreground(fg_image.data, data, f"RandomPseudoAnomaly: subject"
                                                 f"[{self.foreground_key!r}]", f"subject[{self.image_key!r}]")
        flat = data.shape[-1] == 1  # a 2-D image, (C, W, H, 1)
        if applied:
            augmented, mask = synthesize_sample(self.synthesis, _squeeze(data, flat),
                                                None if foreground is None else _squeeze(foreground, flat), seed,
                                                "RandomPseudoAnomaly", self.empty_foreground)
            augmented, mask = _unsqueeze(augmented, flat), _unsqueeze(mask, flat)
            image.set_data(augmented)
        else:
            mask = data.new_zeros((1, *data.shape[1:]))
        subject[self.mask_key] = tio.LabelMap(tensor=mask, affine=image.affine)
        subject.update_attributes()
        return subject

    def _get(self, subject: tio.Subject, key: str, argument: str) -> tio.Image:
        if key not in subject or not isinstance(subject[key], tio.Image):
            images = list(subject.get_images_dict(intensity_only=False))
            raise KeyError(f"RandomPseudoAnomaly: {argument}={key!r} is not an image of the subject (its images: "
                           f"{images})")
        return subject[key]


def _squeeze(x: Tensor, flat: bool) -> Tensor:
    return x[..., 0] if flat else x  # (C, W, H, 1) -> (C, W, H)


def _unsqueeze(x: Tensor, flat: bool) -> Tensor:
    return x[..., None] if flat else x
