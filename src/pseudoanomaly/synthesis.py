"""``PseudoAnomaly``: a mask generator and an overlay, applied to a random subset of a batch."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._checks import (
    EMPTY_FOREGROUND,
    check_choice,
    check_foreground,
    check_images,
    check_probability,
    check_value_range,
    check_volume_support,
    usable_foreground,
)
from ._random import bernoulli, check_generator
from .masks import BlurredNoiseMask, MaskGenerator
from .overlays import IntensityShift, Overlay

__all__ = ["PseudoAnomaly", "OneOf"]

Params = dict[str, object]


class PseudoAnomaly(nn.Module):
    """Synthesize pseudo-anomalies for a batch of normal images.

    Each sample is made anomalous with probability ``p``: ``mask`` draws where the anomaly goes (inside the
    foreground) and ``overlay`` paints it. A sample left normal keeps its image unchanged and gets an
    all-zero mask. Randomness is drawn in a fixed order (gate, mask, overlay) from one generator, so a seed
    reproduces the whole synthesis.

    Args:
        mask: a :class:`~pseudoanomaly.masks.MaskGenerator`; defaults to the paper's
            :class:`~pseudoanomaly.masks.BlurredNoiseMask`.
        overlay: an :class:`~pseudoanomaly.overlays.Overlay`; defaults to the paper's
            :class:`~pseudoanomaly.overlays.IntensityShift`.
        p: per-sample probability of an anomaly.
        same_on_batch: gate all samples together (all anomalous or none). Use the mask's and overlay's own
            ``same_on_batch`` to share their parameters.
        empty_foreground: a sample whose foreground is empty (a slice without liver) is left normal with a
            ``RuntimeWarning`` (``"skip"``), or the call raises (``"raise"``). The same option, with the same
            default, on :class:`OneOf` and the Kornia, MONAI and TorchIO adapters; trainers follow their synthesis.

    Returns:
        Calling it returns ``(augmented, masks)``: the images with anomalies painted in (a new tensor; samples
        left normal are unchanged) and the anomaly masks, exactly 0/1 in the images' dtype (all zero for a
        sample left normal). ``synth.last_params`` then holds the call's parameters, for replay: ``applied``, the
        per-sample gate (bool, ``(B,)``), and the ``mask`` and ``overlay`` parameters of the anomalous samples.

    Shape:
        - images: :math:`(B, C, H, W)` or :math:`(B, C, D, H, W)` (volumes need a mask and an overlay with
          ``supports_volumes``)
        - foreground: :math:`(B, 1, H, W)` or :math:`(B, 1, D, H, W)`, as many dimensions as images
        - output: ``(augmented, masks)`` of shapes :math:`(B, C, *S)` and :math:`(B, 1, *S)`, ``S`` the spatial
          size of images

    Example:
        >>> synth = PseudoAnomaly(p=1.0)
        >>> images = torch.rand(2, 1, 64, 64)
        >>> augmented, masks = synth(images, generator=torch.Generator().manual_seed(0))
        >>> augmented.shape, masks.shape, bool((augmented == images)[masks == 0].all())
        (torch.Size([2, 1, 64, 64]), torch.Size([2, 1, 64, 64]), True)
    """

    def __init__(
        self,
        mask: MaskGenerator | None = None,
        overlay: Overlay | None = None,
        p: float = 1.0,
        same_on_batch: bool = False,
        empty_foreground: str = "skip",
    ) -> None:
        super().__init__()
        mask = BlurredNoiseMask() if mask is None else mask
        overlay = IntensityShift() if overlay is None else overlay
        if not isinstance(mask, MaskGenerator):
            raise TypeError(f"mask must be a pseudoanomaly.masks.MaskGenerator, got {type(mask).__name__}")
        if not isinstance(overlay, Overlay):
            raise TypeError(f"overlay must be a pseudoanomaly.overlays.Overlay, got {type(overlay).__name__}")
        self.mask = mask
        self.overlay = overlay
        self.p = check_probability("p", p)
        self.same_on_batch = bool(same_on_batch)
        self.empty_foreground = check_choice("empty_foreground", empty_foreground, EMPTY_FOREGROUND)
        #: Parameters of the last call, for replay with ``params=``; ``None`` before the first call.
        self.last_params: Params | None = None

    def forward(
        self,
        images: Tensor,
        foreground: Tensor | None = None,
        generator: torch.Generator | None = None,
        params: Params | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Make a random subset of ``images`` anomalous.

        Args:
            images: normal images, float, values in the overlay's ``value_range`` ([0, 1] by default; values
                outside it raise).
            foreground: where anomalies may go (bool or 0/1); ``None`` means anywhere.
            generator: random source on ``images.device``; the same seed gives bit-identical output.
            params: ``synth.last_params`` of an earlier call, to replay it exactly.

        Returns:
            ``(augmented, masks)``: new images and their anomaly masks (exactly 0/1, in ``images.dtype``).
        """
        check_images(images)
        # before any draw: a volume batch needs both parts to handle volumes
        check_volume_support(type(self.mask).__name__, self.mask.supports_volumes, images)
        check_volume_support(type(self.overlay).__name__, self.overlay.supports_volumes, images)
        check_value_range(images, self.overlay.value_range)
        fg = check_foreground(foreground, images, allow_empty=True)
        check_generator(generator, images.device)
        usable = usable_foreground(fg, self.empty_foreground, "PseudoAnomaly")  # None: every sample
        b = images.shape[0]
        if params is None:
            gate = bernoulli((1,) if self.same_on_batch else (b,), self.p, generator=generator, device=images.device)
            gate = gate.expand(b) if usable is None else gate.expand(b) & usable
            mask_params = overlay_params = None
        else:
            gate = _replayed_gate(params, b).to(images.device)
            if usable is not None and bool((gate & ~usable).any()):
                raise ValueError(f"PseudoAnomaly: the replayed params apply an anomaly to sample(s) "
                                 f"{(gate & ~usable).nonzero().flatten().tolist()}, whose foreground is empty now; "
                                 "replay with the foreground of the call that drew them")
            mask_params, overlay_params = params["mask"], params["overlay"]
        chosen = gate.nonzero().flatten()
        if len(chosen) == b:  # every sample anomalous (p = 1, the paper's setting): no gathering needed
            inside = self.mask._generate_bool(images, fg, generator, mask_params)
            masks = inside.to(images.dtype)
            augmented = self.overlay.paint(images, inside, generator, overlay_params, masks=masks)
        else:
            # Only the anomalous samples are synthesized: with p = 0.5 that halves the work.
            masks = torch.zeros_like(images[:, :1])
            augmented = images.clone()
            if len(chosen) > 0:
                sub_images = images[chosen]
                sub_fg = None if fg is None else fg[chosen]
                inside = self.mask._generate_bool(sub_images, sub_fg, generator, mask_params)
                sub_masks = inside.to(masks.dtype)
                masks[chosen] = sub_masks
                augmented[chosen] = self.overlay.paint(sub_images, inside, generator, overlay_params, masks=sub_masks)
        if len(chosen) > 0:
            mask_params, overlay_params = self.mask.last_params, self.overlay.last_params
        self.last_params = {GATE_KEY: gate, "mask": mask_params, "overlay": overlay_params}
        return augmented, masks

    # Kornia's name for it (``aug(x, params=aug._params)``), which users were told to use: kept as an alias.
    _params = property(lambda self: self.last_params, lambda self, value: setattr(self, "last_params", value))

    def extra_repr(self) -> str:
        return (f"p={self.p}" + (", same_on_batch=True" if self.same_on_batch else "")
                + (", empty_foreground='raise'" if self.empty_foreground == "raise" else ""))


class OneOf(nn.Module):
    """Apply one synthesis per sample, chosen at random from several (a mixture of anomaly families).

    Zhang, Deng & Li (SASHIMI 2023) name diversity of the synthetic anomalies as their first principle: a
    network that only ever sees one family learns that family's tell-tale signs rather than "anything that
    is not normal liver". ``OneOf`` draws, for every sample, which of ``syntheses`` makes it anomalous (with
    probabilities ``weights``), and runs each synthesis once on the samples that chose it, so the cost is that
    of one synthesis per sample whatever the number of options.

    Args:
        syntheses: two or more callables with the :class:`PseudoAnomaly` signature
            ``synth(images, foreground, generator=None, params=None) -> (augmented, masks)``.
        weights: relative probabilities of the options (default: equal); they need not sum to 1.
        empty_foreground: as :class:`PseudoAnomaly`'s: samples with an empty foreground are left normal with a
            warning (``"skip"``) before any option sees them, or the call raises (``"raise"``).

    Returns:
        Calling it returns ``(augmented, masks)`` like :class:`PseudoAnomaly`; ``synth.last_params`` holds the
        per-sample choice and each option's parameters, for replay with ``params=``.

    Shape:
        - images: :math:`(B, C, H, W)` or :math:`(B, C, D, H, W)` (volumes need a mask and an overlay with
          ``supports_volumes``)
        - foreground: :math:`(B, 1, H, W)` or :math:`(B, 1, D, H, W)`, as many dimensions as images
        - output: ``(augmented, masks)`` of shapes :math:`(B, C, *S)` and :math:`(B, 1, *S)`, ``S`` the spatial
          size of images

    Example:
        >>> from pseudoanomaly.masks import BlobMask
        >>> from pseudoanomaly.overlays import IntensityShift
        >>> synth = OneOf([PseudoAnomaly(), PseudoAnomaly(BlobMask(), IntensityShift(direction="darken"))])
        >>> images = torch.rand(4, 1, 64, 64)
        >>> augmented, masks = synth(images, generator=torch.Generator().manual_seed(0))
        >>> augmented.shape, masks.shape
        (torch.Size([4, 1, 64, 64]), torch.Size([4, 1, 64, 64]))
        >>> again, _ = synth(images, params=synth.last_params)  # replay
        >>> torch.equal(again, augmented)
        True
    """

    def __init__(self, syntheses, weights=None, empty_foreground: str = "skip") -> None:
        super().__init__()
        self.empty_foreground = check_choice("empty_foreground", empty_foreground, EMPTY_FOREGROUND)
        syntheses = list(syntheses)
        if len(syntheses) < 2:
            raise ValueError(f"syntheses must hold at least 2 options, got {len(syntheses)}")
        for i, s in enumerate(syntheses):
            if not callable(s):
                raise TypeError(f"syntheses[{i}] must be callable like a PseudoAnomaly, got {type(s).__name__}")
        if weights is None:
            weights = [1.0] * len(syntheses)
        weights = [float(w) for w in weights]
        if len(weights) != len(syntheses):
            raise ValueError(f"weights must have one value per synthesis ({len(syntheses)}), got {len(weights)}")
        if any(not w >= 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"weights must be >= 0 with a positive sum, got {weights}")
        self.syntheses = nn.ModuleList(s if isinstance(s, nn.Module) else _Wrapped(s) for s in syntheses)
        self.weights = tuple(w / sum(weights) for w in weights)
        #: Parameters of the last call, for replay with ``params=``; ``None`` before the first call.
        self.last_params: Params | None = None

    def forward(
        self,
        images: Tensor,
        foreground: Tensor | None = None,
        generator: torch.Generator | None = None,
        params: Params | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Make every sample anomalous with one of the syntheses (see the class).

        Args:
            images: normal images.
            foreground: where anomalies may go; ``None`` means anywhere.
            generator: random source on ``images.device``; the same seed gives bit-identical output.
            params: ``synth.last_params`` of an earlier call, to replay it exactly.

        Returns:
            ``(augmented, masks)``.
        """
        check_images(images)
        fg = check_foreground(foreground, images, allow_empty=True)
        check_generator(generator, images.device)
        usable = usable_foreground(fg, self.empty_foreground, "OneOf")  # None: every sample
        b = images.shape[0]
        if params is None:
            # inverse-CDF draw of the option of every sample, one uniform each
            u = torch.rand((b,), generator=generator, device=images.device)
            edges = torch.tensor(self.weights, device=images.device).cumsum(0)[:-1]
            choice = torch.bucketize(u, edges, right=True)
            option_params: list = [None] * len(self.syntheses)
        else:
            choice = params["choice"].to(images.device)  # type: ignore[union-attr]
            option_params = list(params["options"])  # type: ignore[arg-type]
            if choice.shape != (b,):
                raise ValueError(f"params replay a batch of {tuple(choice.shape)[0]} samples, got {b}")
        augmented = images.clone()
        masks = torch.zeros_like(images[:, :1])
        for k, synth in enumerate(self.syntheses):
            rows = ((choice == k) if usable is None else (choice == k) & usable).nonzero().flatten()
            if len(rows) == 0:
                continue
            sub_fg = None if fg is None else fg[rows]
            if params is not None and option_params[k] is None:
                raise ValueError(f"OneOf: cannot replay option {k} ({type(synth).__name__}): it recorded no "
                                 "parameters (a synthesis must keep them in .last_params to be replayed)")
            out, sub_masks = synth(images[rows], sub_fg, generator=generator, params=option_params[k])
            augmented[rows], masks[rows] = out, sub_masks.to(masks.dtype)
            option_params[k] = _recorded_params(synth)
        self.last_params = {"choice": choice, "options": option_params}
        return augmented, masks

    # Kornia's name for it (``aug(x, params=aug._params)``), which users were told to use: kept as an alias.
    _params = property(lambda self: self.last_params, lambda self, value: setattr(self, "last_params", value))

    def extra_repr(self) -> str:
        return ("weights=(" + ", ".join(f"{w:.3g}" for w in self.weights) + ")"
                + (", empty_foreground='raise'" if self.empty_foreground == "raise" else ""))


class _Wrapped(nn.Module):
    # a plain callable as a submodule, so OneOf's options move with .to() when they are modules
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    @property
    def last_params(self):
        return _recorded_params(self.fn)

    _params = last_params  # the name OneOf read before last_params

    def forward(self, images, foreground=None, generator=None, params=None):
        return self.fn(images, foreground, generator=generator, params=params)


def _recorded_params(synth: object) -> object:
    """What ``synth`` recorded of its last call: ``last_params``, else ``_params`` (Kornia's name), else ``None``."""
    params = getattr(synth, "last_params", None)
    return getattr(synth, "_params", None) if params is None else params


# The key of the per-sample gate in PseudoAnomaly's parameters, and its name before 0.1.0 (accepted on replay: a
# user may have saved parameters under it).
GATE_KEY, OLD_GATE_KEY = "applied", "batch_prob"


def _replayed_gate(params: object, batch: int) -> Tensor:
    """The per-sample gate of replayed ``params``, which must have been drawn for ``batch`` samples."""
    key = OLD_GATE_KEY if isinstance(params, dict) and GATE_KEY not in params else GATE_KEY
    if not isinstance(params, dict) or not {key, "mask", "overlay"} <= set(params):
        keys = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(f"PseudoAnomaly: params must be synth.last_params of an earlier call (keys "
                         f"'{GATE_KEY}', 'mask', 'overlay'), got {keys}")
    gate = params[key]
    if not isinstance(gate, Tensor) or gate.ndim != 1:
        raise ValueError(f"PseudoAnomaly: params['{key}'] must be a (B,) tensor, got {gate!r}")
    if len(gate) != batch:
        raise ValueError(f"PseudoAnomaly: replayed params were drawn for a batch of {len(gate)} image(s), got "
                         f"{batch}; replay needs the batch of the call that drew them")
    return gate
