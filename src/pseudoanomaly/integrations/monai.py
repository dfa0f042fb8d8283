"""``RandPseudoAnomalyd``: a synthesis as a MONAI dictionary transform.

It follows MONAI's conventions for a random dictionary transform (``RandomizableTransform`` + ``MapTransform``):
the gate ``prob`` and the synthesis's seed are drawn from the transform's own ``self.R`` (a
``numpy.random.RandomState``) in :meth:`~RandPseudoAnomalyd.randomize`, so ``set_random_state``,
``Compose.set_random_state`` and MONAI's ``worker_init_fn`` make a pipeline reproduce bit for bit; ``MetaTensor``
metadata is kept; ``allow_missing_keys`` skips what is absent.

NOTE: the synthesis draws from a ``torch.Generator`` (on the image's device) seeded from ``self.R``, not from
``self.R`` itself: the library's syntheses are batched and run on the device, MONAI's random state is a numpy one.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

try:
    import monai  # noqa: F401  (an optional extra: say which, rather than a bare "No module named")
except ModuleNotFoundError as error:
    raise ModuleNotFoundError("pseudoanomaly.integrations.monai needs MONAI, an optional extra: "
                              'pip install "pseudoanomaly[monai]"', name="monai") from error
import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.data.meta_obj import get_track_meta
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import convert_to_dst_type, convert_to_tensor
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

__all__ = ["RandPseudoAnomalyd"]


class RandPseudoAnomalyd(RandomizableTransform, MapTransform):
    """Paint a pseudo-anomaly into a sample with probability ``prob``; write its mask under ``mask_key``.

    The images under ``keys`` are one sample, channel first, 2-D ``(C, H, W)`` or 3-D ``(C, D, H, W)``; several
    keys (say two MR sequences of one grid) are stacked as channels and get one anomaly, in the same place. The
    anomaly goes only inside ``data[foreground_key]`` when that is set (the liver in the paper). The mask is
    written on every call, all zero when the gate leaves the sample normal, so that samples collate into batches.

    Images must already lie in the synthesis's value range ([0, 1] for the presets): put ``ScaleIntensityRanged``
    (a HU window for CT) before this transform; values outside it raise, whether or not the gate picks the sample.

    Args:
        keys: the image keys (see ``monai.transforms.MapTransform``).
        foreground_key: key of a ``(1, *spatial)`` map of 0/1 (or bool) values where anomalies may go; ``None``
            allows them anywhere (an empty one: see ``empty_foreground``).
        mask_key: key the anomaly mask is written under (an existing value is replaced). It is a ``(1, *spatial)``
            map of exactly 0 and 1 in the images' dtype, with the first image's metadata when that is a
            ``MetaTensor``.
        synthesis: any callable ``synthesis(images, foreground, generator=g) -> (augmented, masks)`` on a batch
            ``(B, C, *spatial)``; defaults to :func:`~pseudoanomaly.presets.zhang2023`. A
            :class:`~pseudoanomaly.PseudoAnomaly` must have ``p=1``: ``prob`` here is the gate.
        prob: probability that the sample gets an anomaly.
        allow_missing_keys: skip image keys that are absent, and leave the sample normal when
            ``foreground_key`` is absent (instead of raising).
        empty_foreground: a sample whose foreground is empty is left normal with a warning (``"skip"``), or
            raises (``"raise"``), as :class:`~pseudoanomaly.PseudoAnomaly`.

    Returns:
        Called on a dictionary, a new dictionary: the images under ``keys`` (tensors, ``MetaTensor`` when MONAI
        tracks metadata, their metadata kept), with an anomaly when the gate picks the sample, and the mask under
        ``mask_key``.

    Shape:
        - ``data[key]``: :math:`(C, H, W)` or :math:`(C, D, H, W)`, float, in the synthesis's value range.
        - ``data[foreground_key]``: :math:`(1, H, W)` or :math:`(1, D, H, W)`, on the images' grid (affine).
        - ``data[mask_key]``: :math:`(1, H, W)` or :math:`(1, D, H, W)`.

    Example:
        >>> from monai.transforms import Compose
        >>> t = Compose([RandPseudoAnomalyd(keys="image", foreground_key="liver", mask_key="anomaly", prob=1.0)])
        >>> sample = {"image": 0.25 + 0.5 * torch.rand(1, 64, 64), "liver": torch.ones(1, 64, 64)}
        >>> out = t.set_random_state(seed=0)(sample)
        >>> out["image"].shape, out["anomaly"].shape
        (torch.Size([1, 64, 64]), torch.Size([1, 64, 64]))
        >>> again = t.set_random_state(seed=0)(sample)
        >>> torch.equal(again["image"], out["image"]) and torch.equal(again["anomaly"], out["anomaly"])
        True
    """

    def __init__(
        self,
        keys: KeysCollection,
        foreground_key: Hashable | None = None,
        mask_key: Hashable = "anomaly",
        synthesis: Synthesis | None = None,
        prob: float = 1.0,
        allow_missing_keys: bool = False,
        empty_foreground: str = "skip",
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.empty_foreground = check_choice("empty_foreground", empty_foreground, EMPTY_FOREGROUND)
        if isinstance(prob, bool) or not isinstance(prob, (int, float)) or not 0.0 <= prob <= 1.0:
            raise ValueError(f"RandPseudoAnomalyd: prob must be a number in [0, 1], got {prob!r}")
        RandomizableTransform.__init__(self, prob)
        for name, key in (("foreground_key", foreground_key), ("mask_key", mask_key)):
            if key in self.keys:
                raise ValueError(f"RandPseudoAnomalyd: {name}={key!r} is also one of keys={self.keys}; it must be "
                                 "another key")
        if mask_key == foreground_key:
            raise ValueError(f"RandPseudoAnomalyd: mask_key and foreground_key must differ, both are {mask_key!r}")
        self.foreground_key = foreground_key
        self.mask_key = mask_key
        self.synthesis = check_synthesis(zhang2023() if synthesis is None else synthesis, "RandPseudoAnomalyd")
        self._seed = 0

    def randomize(self, data: object = None) -> None:
        """Draw the gate and the synthesis's seed from ``self.R`` (both on every call, so that the random stream
        does not depend on the gate)."""
        super().randomize(None)
        self._seed = int(self.R.randint(SEED_BOUND, dtype=np.int64))

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        self.randomize()
        keys = list(self.key_iterator(d))
        if not keys:  # every image key absent, and allowed to be: nothing to do
            return d
        track_meta = get_track_meta()
        images = {key: convert_to_tensor(d[key], track_meta=track_meta) for key in keys}
        for key, image in images.items():
            check_sample(image, f"RandPseudoAnomalyd: data[{key!r}]")
            check_sample_value_range(image, self.synthesis, f"RandPseudoAnomalyd: data[{key!r}]")
        first = images[keys[0]]
        foreground = self._foreground(d)
        self._check_one_grid(images, foreground)

        stacked = _stack_channels([_plain(image) for image in images.values()], keys)  # (C, *spatial)
        fg = None if foreground is None else check_sample_foreground(
            _plain(foreground), stacked, f"RandPseudoAnomalyd: data[{self.foreground_key!r}]", f"data[{keys[0]!r}]"
        )
        if self._do_transform and (fg is not None or self.foreground_key is None):
            augmented, mask = synthesize_sample(self.synthesis, stacked, fg, self._seed, "RandPseudoAnomalyd",
                                              self.empty_foreground)
            start = 0
            for key, image in images.items():
                channels = image.shape[0]
                d[key] = convert_to_dst_type(augmented[start : start + channels], dst=image)[0]
                start += channels
        else:
            mask = stacked.new_zeros((1, *stacked.shape[1:]))
            d.update(images)
        d[self.mask_key] = convert_to_dst_type(mask, dst=first)[0]  # the first image's type, dtype and metadata
        return d

    def _foreground(self, d: dict) -> Tensor | None:
        """``data[foreground_key]`` as a tensor; ``None`` when it is not set or absent and allowed to be."""
        if self.foreground_key is None:
            return None
        if self.foreground_key not in d:
            if self.allow_missing_keys:
                return None
            raise KeyError(f"RandPseudoAnomalyd: foreground_key={self.foreground_key!r} is not in the data (keys "
                           f"{list(d)}); pass allow_missing_keys=True to leave such samples normal, or "
                           "foreground_key=None to allow anomalies anywhere")
        return convert_to_tensor(d[self.foreground_key], track_meta=get_track_meta())

    def _check_one_grid(self, images: dict[Hashable, Tensor], foreground: Tensor | None) -> None:
        """Every image, and the foreground, on one grid: the same spatial shape and, for MetaTensors, affine."""
        named = {f"data[{key!r}]": image for key, image in images.items()}
        if foreground is not None:
            named[f"data[{self.foreground_key!r}]"] = foreground
        (first_name, first), *others = named.items()
        for name, tensor in others:
            if tuple(tensor.shape[1:]) != tuple(first.shape[1:]):
                raise ValueError(f"RandPseudoAnomalyd: {name} has spatial shape {tuple(tensor.shape[1:])} but "
                                 f"{first_name} has {tuple(first.shape[1:])} (shapes {tuple(tensor.shape)} and "
                                 f"{tuple(first.shape)}); they must lie on one grid")
        affines = {name: t.affine.detach().cpu().numpy() for name, t in named.items() if isinstance(t, MetaTensor)}
        if len(affines) > 1:
            check_same_grid(affines, "RandPseudoAnomalyd")


def _plain(x: Tensor) -> Tensor:
    """The data of a (Meta)Tensor without MONAI's metadata: the synthesis runs on plain tensors."""
    return x.as_tensor() if isinstance(x, MetaTensor) else x


def _stack_channels(images: list[Tensor], keys: list[Hashable]) -> Tensor:
    if len(images) == 1:
        return images[0]
    first = images[0]
    for key, image in zip(keys[1:], images[1:]):
        if image.dtype != first.dtype or image.device != first.device:
            raise ValueError(f"RandPseudoAnomalyd: data[{key!r}] is {image.dtype} on {image.device} but "
                             f"data[{keys[0]!r}] is {first.dtype} on {first.device}; images stacked as channels "
                             "must share dtype and device")
    return torch.cat(images, dim=0)  # (C_1 + C_2 + ..., *spatial)
