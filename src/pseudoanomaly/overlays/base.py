"""The machinery every overlay shares.

An overlay says how to *draw* its random parameters for a batch and what the masked pixels should become
(:meth:`Overlay.fill`). This base class checks the inputs, handles ``same_on_batch`` and parameter replay,
and composes ``where(mask, fill, image)``, so pixels outside the mask come back bit-identical whatever an
overlay computes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .._checks import (
    check_images,
    check_masks,
    check_range_pair,
    check_replay,
    check_value_range,
    check_volume_support,
)
from .._random import check_generator

__all__ = ["Overlay"]

Params = dict[str, Tensor]


# The library's own `fill` methods that return a new tensor nobody else holds (a subclass's own fill may not).
_NEW_TENSOR_FILLS: set = set()


def returns_new_tensor(fill):
    """Mark an overlay's ``fill`` as returning a new tensor of its own, which ``paint`` may write its result into."""
    _NEW_TENSOR_FILLS.add(fill)
    return fill


class Overlay(nn.Module):
    """Base class of batched overlays that paint an anomaly into the masked pixels of each image.

    Calling an overlay sets ``overlay.last_params`` to the parameters of that call (a dict of tensors with one row
    per image), which ``params=`` replays. A composer that has already checked its inputs (like
    :class:`~pseudoanomaly.PseudoAnomaly`) calls :meth:`paint` instead.

    Args:
        value_range: ``(low, high)`` of valid image values; overlays clip their output to it, and images with
            values outside it are refused (painting them would be clipped to a meaningless anomaly).
        same_on_batch: draw one set of parameters and use it for every sample.

    Returns:
        Calling an overlay returns a new batch with the masked pixels painted, see :meth:`forward`.

    An overlay whose :meth:`draw` and :meth:`fill` also work on volumes sets ``supports_volumes = True``; 5-D
    input to any other overlay raises a ``ValueError`` naming it.

    Shape:
        - images: :math:`(B, C, H, W)` or :math:`(B, C, D, H, W)`
        - masks: :math:`(B, 1, H, W)` or :math:`(B, 1, D, H, W)`
        - output: the shape of images

    Example:
        A new overlay only draws its parameters and says what a masked pixel becomes; the base class keeps
        every other pixel bit-identical. A partial inversion of random strength:

        >>> class Invert(Overlay):
        ...     def draw(self, images, generator):
        ...         return {"strength": torch.rand(images.shape[0], generator=generator, device=images.device)}
        ...     def fill(self, images, params):
        ...         s = params["strength"].view(-1, 1, 1, 1)
        ...         return (1 - s) * images + s * (1 - images)
        >>> images = torch.rand(2, 1, 8, 8)
        >>> masks = torch.zeros(2, 1, 8, 8); masks[..., 2:5, 2:5] = 1
        >>> out = Invert()(images, masks, generator=torch.Generator().manual_seed(0))
        >>> torch.equal(out[masks == 0], images[masks == 0]), bool((out[masks == 1] != images[masks == 1]).any())
        (True, True)
    """

    #: Whether :meth:`draw` and :meth:`fill` handle 5-D volume batches (they are refused otherwise).
    supports_volumes: bool = False

    def __init__(self, *, value_range: tuple[float, float] = (0.0, 1.0), same_on_batch: bool = False) -> None:
        super().__init__()
        self.value_range = check_range_pair("value_range", value_range)
        if self.value_range[0] == self.value_range[1]:
            raise ValueError(f"value_range must have low < high, got {value_range!r}")
        self.same_on_batch = bool(same_on_batch)
        #: Parameters of the last call, for replay with ``params=``; ``None`` before the first call.
        self.last_params: Params | None = None

    # -- what a subclass provides -------------------------------------------------------------------------
    def draw(self, images: Tensor, generator: torch.Generator | None) -> Params:
        """Draw the random parameters for ``images``: a dict of tensors whose first dimension is B."""
        raise NotImplementedError

    def fill(self, images: Tensor, params: Params) -> Tensor:
        """What every pixel would become if it were masked; only masked pixels are kept."""
        raise NotImplementedError

    # -- shared machinery ---------------------------------------------------------------------------------
    def forward(
        self,
        images: Tensor,
        masks: Tensor,
        generator: torch.Generator | None = None,
        params: Params | None = None,
    ) -> Tensor:
        """Paint anomalies into the masked pixels.

        Args:
            images: the batch to modify (not modified in place).
            masks: where to paint, exactly 0/1 (or bool); pixels outside come back bit-identical.
            generator: random source on ``images.device``; the same seed gives bit-identical output.
            params: parameters of an earlier call (``overlay.last_params``) to replay.

        Returns:
            A new tensor of the same shape, dtype and device as ``images``.

        Shape:
            - images: :math:`(B, C, H, W)` or :math:`(B, C, D, H, W)`
            - masks: :math:`(B, 1, H, W)` or :math:`(B, 1, D, H, W)`
            - output: the shape of images
        """
        check_images(images)
        check_volume_support(type(self).__name__, self.supports_volumes, images)
        check_value_range(images, self.value_range)
        inside = check_masks(masks, images)
        check_generator(generator, images.device)
        return self.paint(images, inside, generator, params)

    def paint(
        self,
        images: Tensor,
        inside: Tensor,
        generator: torch.Generator | None = None,
        params: Params | None = None,
        *,
        masks: Tensor | None = None,
    ) -> Tensor:
        """:meth:`forward` without the argument checks, for a composer that has already made them.

        Args:
            images: a checked batch with values in ``value_range`` (see :meth:`forward`).
            inside: where to paint, bool, on ``images.device``.
            generator: random source on ``images.device``.
            params: parameters of an earlier call (``overlay.last_params``) to replay.
            masks: optionally ``inside`` as 0/1 in the images' dtype, when the caller makes it anyway (as
                :class:`~pseudoanomaly.PseudoAnomaly` does for its output): an overlay may paint with it in fewer
                passes over the batch. The result is the same with or without it.

        Returns:
            The new batch :meth:`forward` would return; ``last_params`` is set as by :meth:`forward`.

        Shape:
            - images: :math:`(B, C, H, W)` or :math:`(B, C, D, H, W)`
            - inside: :math:`(B, 1, *S)` or :math:`(B, C, *S)`, ``S`` the spatial size of images
            - output: the shape of images
        """
        check_volume_support(type(self).__name__, self.supports_volumes, images)
        b, size = images.shape[0], tuple(images.shape[2:])  # size: (H, W) or (D, H, W)
        if params is None:
            if self.same_on_batch:
                one = self.draw(images[:1], generator)
                params = {k: v.expand(b, *v.shape[1:]).contiguous() for k, v in one.items()}
            else:
                params = self.draw(images, generator)
            # what replay checks: the (H, W) or (D, H, W) each sample's parameters were drawn for
            params["image_size"] = torch.tensor([list(size)], device=images.device).repeat(b, 1)
        else:
            check_replay(type(self).__name__, params, b, size)
        self.last_params = params
        return self._composite(images, inside, params, masks)

    def _composite(self, images: Tensor, inside: Tensor, params: Params, masks: Tensor | None) -> Tensor:
        # the painted batch: the fill where `inside`, the images elsewhere (`masks`, inside as 0/1, is for
        # subclasses that can use it)
        filled = self.fill(images, params).to(images.dtype)
        if type(self).fill in _NEW_TENSOR_FILLS and filled.shape == images.shape:
            # the fill is a new tensor of ours: the result goes into it, sparing a batch-sized allocation
            return torch.where(inside, filled, images, out=filled)
        return torch.where(inside, filled, images)

    # Kornia's name for it (``aug(x, params=aug._params)``), which users were told to use: kept as an alias.
    _params = property(lambda self: self.last_params, lambda self, value: setattr(self, "last_params", value))

    def _clip(self, x: Tensor) -> Tensor:
        # in place: callers pass a fresh tensor of their own
        return x.clamp_(self.value_range[0], self.value_range[1])

    def extra_repr(self) -> str:
        parts = []
        if self.value_range != (0.0, 1.0):
            parts.append(f"value_range={self.value_range}")
        if self.same_on_batch:
            parts.append("same_on_batch=True")
        return ", ".join(parts)
