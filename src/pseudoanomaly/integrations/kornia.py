"""``RandomPseudoAnomaly``: a :class:`~pseudoanomaly.PseudoAnomaly` as a Kornia augmentation.

It drops into ``kornia.augmentation.AugmentationSequential(..., data_keys=["input", "mask"])``: Kornia's ``p``
gate picks the samples, the wrapped synthesis paints an anomaly into each of them, and the "mask" data key
receives the anomaly target, which geometric augmentations placed after this one then move with the image.

NOTE: how the mask pass gets the anomaly. Kornia runs an augmentation once per data key, and the mask pass sees
the parameters but not the image, while the anomaly depends on the image (its foreground, and the mask
generator's rejection redraws). So the random parameters are a seed: with the image it determines the anomaly
exactly (the synthesis draws from a ``torch.Generator`` seeded with it, on the image's device). The image pass
computes the anomaly once and keeps it, keyed by the parameter *values* (seed and gate), and the mask pass
reads it back; values rather than the dict's identity because Kornia hands each pass its own deep copy of the
parameters (``override_parameters`` -> ``deepcopy_dict``, kornia/augmentation/utils/helpers.py). A mask pass
whose parameters match no image pass raises instead of guessing.

NOTE: 2-D only. Kornia's ``AugmentationSequential`` does not carry 3-D masks (kornia 0.9:
``MaskSequentialOps`` raises "The support for 3d mask operations are not yet supported"), and the mask data key
is the anomaly target, so a 3-D twin would lose the one output that matters. For volumes, call
:class:`~pseudoanomaly.PseudoAnomaly` directly or use the MONAI and TorchIO adapters.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from kornia.augmentation import IntensityAugmentationBase2D
from torch import Tensor

from .._checks import EMPTY_FOREGROUND, any_per_sample, check_choice, check_probability
from ..presets import zhang2023
from ..synthesis import GATE_KEY, PseudoAnomaly

__all__ = ["RandomPseudoAnomaly"]

SEED_BOUND = 2**63 - 1  # seeds are drawn in [0, 2^63 - 1): any int64 a torch.Generator accepts


class RandomPseudoAnomaly(IntensityAugmentationBase2D):
    """Paint a pseudo-anomaly into randomly chosen images; the "mask" data key gets the anomaly target.

    Each sample is chosen with probability ``p`` by Kornia's gate; every chosen sample gets an anomaly from
    ``synthesis`` (its mask generator, then its overlay), only where the image exceeds
    ``foreground_threshold`` when that is set. The random parameters (``aug._params``) are the gate
    ``batch_prob`` and a ``seed`` drawn from torch's global generator, so ``torch.manual_seed`` reproduces a
    call and ``aug(x, params=aug._params)`` replays it bit-identically on the same device.

    .. note::
        The "mask" data key is a label map that follows the image: a chosen sample's mask comes back as the
        union (maximum) of the incoming mask and the anomaly, whose pixels are set to 1; the other samples
        keep their incoming mask. Pass zeros to get the anomaly target alone. The mask pass reuses the anomaly
        of the image pass with equal parameters, so the "input" key must be present (Kornia runs it first);
        to get the target after a direct call, use ``aug.transform_masks(zeros, params=aug._params,
        flags=aug.flags)``. A chosen sample with no pixel above ``foreground_threshold`` is left normal, with a
        warning.

    Args:
        synthesis: the :class:`~pseudoanomaly.PseudoAnomaly` to apply; defaults to
            :func:`~pseudoanomaly.presets.zhang2023`. Its own ``p`` must be 1: ``p`` here is the only gate.
        p: per-sample probability of an anomaly.
        same_on_batch: one gate draw and one anomaly (mask shape and overlay parameters, drawn for the first
            chosen sample) for the whole batch; each sample still cuts it to its own foreground.
        keepdim: keep the input's rank (``(C, H, W)`` stays ``(C, H, W)``) instead of returning a batch.
        foreground_threshold: anomalies go only where the channel maximum of the image exceeds it (``0.0``
            gives the paper's liver ROI, ``image > 0``); ``None`` allows them anywhere.
        empty_foreground: a chosen sample with nothing above ``foreground_threshold`` is left normal with a
            warning (``"skip"``), or the call raises (``"raise"``), as :class:`~pseudoanomaly.PseudoAnomaly`.

    Returns:
        Called on images (directly or inside ``AugmentationSequential``), it returns the images with an anomaly
        painted into each chosen sample; for the "mask" data key, the incoming masks united with the anomaly.

    Shape:
        - Input: :math:`(C, H, W)` or :math:`(B, C, H, W)`, values in the overlay's ``value_range``.
        - Output: :math:`(B, C, H, W)`, or the input's shape with ``keepdim=True``.
        - "mask" data key: :math:`(B, C_m, H, W)` or :math:`(B, H, W)`, any dtype; the anomaly is added to every
          channel. As for any Kornia augmentation, :math:`(B, H, W)` comes back :math:`(B, 1, H, W)` unless
          ``keepdim=True``.

    Example:
        >>> import kornia.augmentation as K
        >>> _ = torch.manual_seed(0)
        >>> seq = K.AugmentationSequential(
        ...     RandomPseudoAnomaly(p=1.0), K.RandomHorizontalFlip(p=1.0), data_keys=["input", "mask"]
        ... )
        >>> images = 0.25 + 0.5 * torch.rand(2, 1, 64, 64)
        >>> out, masks = seq(images, torch.zeros(2, 1, 64, 64))
        >>> bool(((out != images.flip(-1)) == masks.bool()).all())
        True
        >>> again, _ = seq(images, torch.zeros(2, 1, 64, 64), params=seq._params)
        >>> torch.equal(again, out)
        True
    """

    def __init__(
        self,
        synthesis: PseudoAnomaly | None = None,
        p: float = 1.0,
        same_on_batch: bool = False,
        keepdim: bool = False,
        foreground_threshold: float | None = None,
        empty_foreground: str = "skip",
    ) -> None:
        synthesis = zhang2023() if synthesis is None else synthesis
        if not isinstance(synthesis, PseudoAnomaly):
            raise TypeError(f"synthesis must be a pseudoanomaly.PseudoAnomaly or None, got {type(synthesis).__name__}")
        _check_ungated(synthesis)
        p = check_probability("p", p)
        super().__init__(p=p, p_batch=1.0, same_on_batch=bool(same_on_batch), keepdim=bool(keepdim))
        self.synthesis = synthesis
        self.flags = {"foreground_threshold": _check_threshold(foreground_threshold),
                      "empty_foreground": check_choice("empty_foreground", empty_foreground, EMPTY_FOREGROUND)}
        # (parameter key, (B, 1, H, W) bool anomaly) of the last image pass, read back by the mask pass
        self._anomaly: tuple[tuple, Tensor] | None = None

    def forward(self, input: Tensor, params: dict[str, Tensor] | None = None, **kwargs: Any) -> Tensor:
        if isinstance(input, Tensor) and input.ndim == 5:  # before Kornia's message about (*, C, H, W)
            raise ValueError(
                f"RandomPseudoAnomaly takes images (B, C, H, W), got a volume batch {tuple(input.shape)}: Kornia's "
                "AugmentationSequential cannot carry 3-D masks (the anomaly target); for volumes call "
                "pseudoanomaly.PseudoAnomaly directly or use pseudoanomaly.integrations.monai / .torchio"
            )
        return super().forward(input, params, **kwargs)

    def generate_parameters(self, batch_shape: tuple[int, ...]) -> dict[str, Tensor]:
        # One seed per call, not per sample: the synthesis is batched and draws from one generator.
        return {"seed": torch.randint(SEED_BOUND, (1,), device=self.device, dtype=torch.int64)}

    def apply_transform(
        self, input: Tensor, params: dict[str, Tensor], flags: dict[str, Any], transform: Tensor | None = None
    ) -> Tensor:
        _check_ungated(self.synthesis)
        seed, key = _seed_and_key(params)
        fg = _foreground(input, flags["foreground_threshold"])
        chosen = self._chosen(params, input.shape[0]).to(input.device)
        if fg is not None:
            empty = chosen[~any_per_sample(fg[chosen])]
            if len(empty) > 0 and flags.get("empty_foreground", "skip") == "raise":
                raise ValueError(
                    f"RandomPseudoAnomaly: sample(s) {empty.tolist()} have no pixel above foreground_threshold="
                    f"{flags['foreground_threshold']!r}: there is nowhere to put an anomaly; use "
                    "empty_foreground='skip' to leave them normal"
                )
            if len(empty) > 0:
                warnings.warn(
                    f"RandomPseudoAnomaly: sample(s) {empty.tolist()} have no pixel above foreground_threshold="
                    f"{flags['foreground_threshold']!r}; they are left without an anomaly",
                    RuntimeWarning,
                    stacklevel=2,
                )
                chosen = chosen[any_per_sample(fg[chosen])]
        output = input
        anomaly = torch.zeros_like(input[:, :1], dtype=torch.bool)  # (B, 1, H, W)
        if len(chosen) > 0:
            generator = torch.Generator(device=input.device).manual_seed(seed)
            sub_out, sub_masks = self._synthesize(input[chosen], None if fg is None else fg[chosen], generator)
            output = input.index_put((chosen,), sub_out)
            anomaly[chosen] = sub_masks != 0
        self._anomaly = (key, anomaly)
        return output

    def apply_transform_mask(
        self, input: Tensor, params: dict[str, Tensor], flags: dict[str, Any], transform: Tensor | None = None
    ) -> Tensor:
        _, key = _seed_and_key(params)
        if self._anomaly is not None and self._anomaly[0][0] == key[0] and len(self._anomaly[0][1]) != len(key[1]):
            # Kornia slices the parameters per sample for a list of masks (MaskSequentialOps.transform_list)
            raise NotImplementedError(
                f"RandomPseudoAnomaly: got the parameters of {len(key[1])} sample(s) for images of batch "
                f"{len(self._anomaly[0][1])}; a list of per-sample masks is not supported, stack them instead"
            )
        if self._anomaly is None or self._anomaly[0] != key:
            raise RuntimeError(
                f"RandomPseudoAnomaly: no image pass was made with these parameters (seed={key[0][0]}), so there "
                'is no anomaly to add to the mask; pass the images too ("input" in data_keys), or replay the '
                "masks right after the images with the same params"
            )
        anomaly = self._anomaly[1]
        if anomaly.shape[0] != input.shape[0] or anomaly.shape[2:] != input.shape[2:]:
            raise ValueError(
                f"RandomPseudoAnomaly: masks of shape {tuple(input.shape)} do not match the images' anomaly of "
                f"shape {tuple(anomaly.shape)}"
            )
        # Union with the anomaly: its pixels become at least 1, every other pixel is kept as it was.
        return torch.where(anomaly.to(input.device), input.clamp(min=1), input)

    def _chosen(self, params: dict[str, Tensor], b: int) -> Tensor:
        """Indices of the samples the gate transforms."""
        # A static p = 1 transforms every sample whatever batch_prob says, as Kornia's own image and label paths
        # do (_AugmentationBase.transform_inputs and _gate, kornia/augmentation/base.py).
        if self.p == 1.0 and self.p_batch == 1.0:
            return torch.arange(b)
        return torch.atleast_1d(params["batch_prob"] > 0.5).nonzero().flatten()

    def _synthesize(self, images: Tensor, fg: Tensor | None, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        synth = self.synthesis
        n = images.shape[0]
        if not self.same_on_batch or n == 1:
            return synth(images, fg, generator=generator)
        # One draw, made for the first sample (its foreground decides rejection), replayed on every sample:
        # what a MaskGenerator's own same_on_batch does.
        synth(images[:1], None if fg is None else fg[:1], generator=generator)
        one = synth.last_params
        shared = {
            GATE_KEY: torch.ones(n, dtype=torch.bool, device=images.device),
            "mask": _repeat_first(one["mask"], n),
            "overlay": _repeat_first(one["overlay"], n),
        }
        return synth(images, fg, params=shared)


def _check_ungated(synthesis: PseudoAnomaly) -> None:
    if synthesis.p != 1.0:
        raise ValueError(
            f"synthesis.p must be 1.0 (RandomPseudoAnomaly's own p is the gate; two would compound), "
            f"got {synthesis.p!r}: set p on RandomPseudoAnomaly instead"
        )


def _check_threshold(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"foreground_threshold must be a finite number or None, got {value!r}")
    return float(value)


def _seed_and_key(params: dict[str, Tensor]) -> tuple[int, tuple]:
    """The call's seed, and the key that ties a mask pass to its image pass (the values of seed and gate)."""
    if "seed" not in params or "batch_prob" not in params:
        raise ValueError(
            f"params must hold 'seed' and 'batch_prob' (pass aug._params of an earlier call), got keys {sorted(params)}"
        )
    seeds = params["seed"].flatten().tolist()
    return int(seeds[0]), (tuple(seeds), tuple(params["batch_prob"].flatten().tolist()))


def _foreground(images: Tensor, threshold: float | None) -> Tensor | None:
    if threshold is None:
        return None
    return images.amax(dim=1, keepdim=True) > threshold  # (B, 1, H, W)


def _repeat_first(params: dict[str, Tensor], n: int) -> dict[str, Tensor]:
    return {name: p[:1].expand(n, *p.shape[1:]) for name, p in params.items()}
