"""The machinery every mask generator shares.

A generator only says how to *draw* its random parameters for a batch and how to *render* those parameters
into binary masks. This base class adds, once for all of them: the union of K masks, restriction to a
foreground, bounded batched redraws for rejection and area limits, ``same_on_batch``, and parameter replay
(``gen(images, params=gen.last_params)`` gives the same masks again).
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from .._checks import (
    check_choice,
    check_foreground,
    check_images,
    check_int_at_least,
    check_range_pair,
    check_replay,
    check_volume_support,
)
from .._random import check_generator

__all__ = ["MaskGenerator"]

Params = dict[str, Tensor]

# Entries of ``last_params`` that record how a draw went rather than what was drawn: not rendered.
RECORDS = ("accepted", "image_size")


class MaskGenerator(nn.Module):
    """Base class of batched random-shape mask generators.

    Subclasses implement :meth:`draw` (all randomness, for ``n`` masks at once) and :meth:`render` (a pure
    function of the drawn parameters). Calling the generator returns masks that are exactly 0 or 1, in the
    images' dtype and on their device; ``gen.last_params`` then holds the parameters of that call (a dict of
    tensors with one row per image), which ``params=`` replays. A composer that has already checked its inputs
    (like :class:`~pseudoanomaly.PseudoAnomaly`) calls :meth:`generate` instead.

    Args:
        union: number of independent masks OR-ed into each output mask (K).
        rejection: redraw samples whose mask is empty inside the foreground.
        area: ``(min, max)`` fraction of the foreground (of the image when no foreground is given) that a
            mask may cover; samples outside are redrawn.
        max_tries: total number of draws per sample before giving up (1 disables redraws).
        on_failure: what happens to samples still rejected after ``max_tries`` draws: ``"keep"`` keeps the
            last draw (for a foreground too small to hold a mask this is an empty mask: the sample becomes a
            normal one) and warns; ``"raise"`` raises ``RuntimeError``. Either way ``params["accepted"]``
            tells which samples passed.
        same_on_batch: draw one set of parameters and use it for every sample.

    Returns:
        Calling a generator returns one mask per image, see :meth:`forward`.

    A generator that also makes 3-D masks sets ``supports_volumes = True`` and implements
    :meth:`draw_volume` and :meth:`render_volume`; 5-D input to any other generator raises a ``ValueError``
    naming it. The 2-D methods are never called for volumes, nor the 3-D ones for images.

    Shape:
        - images: :math:`(B, C, H, W)` or :math:`(B, C, D, H, W)`
        - foreground: :math:`(B, 1, H, W)` or :math:`(B, 1, D, H, W)` (as many dimensions as images)
        - output: :math:`(B, 1, H, W)` or :math:`(B, 1, D, H, W)`

    Example:
        A new generator only draws its parameters and renders them; union, foreground, rejection and replay
        come from the base class. Squares of a quarter of the image side, at random places:

        >>> class SquareMask(MaskGenerator):
        ...     def draw(self, n, height, width, foreground, generator, device):
        ...         return {"corner": torch.randint(0, height // 2, (n, 2), generator=generator, device=device)}
        ...     def render(self, params, height, width):
        ...         y = torch.arange(height).view(1, 1, -1, 1)
        ...         x = torch.arange(width).view(1, 1, 1, -1)
        ...         top, left = (params["corner"][:, i].view(-1, 1, 1, 1) for i in (0, 1))
        ...         return (y >= top) & (y < top + height // 4) & (x >= left) & (x < left + width // 4)
        >>> gen = SquareMask(union=2)
        >>> images = torch.rand(3, 1, 32, 32)
        >>> masks = gen(images, generator=torch.Generator().manual_seed(0))
        >>> masks.shape, bool((masks.flatten(1).sum(1) <= 2 * 8 * 8).all())
        (torch.Size([3, 1, 32, 32]), True)
        >>> torch.equal(gen(images, params=gen.last_params), masks)  # replay
        True
    """

    #: Whether :meth:`draw_volume` and :meth:`render_volume` are implemented (5-D input is refused otherwise).
    supports_volumes: bool = False

    def __init__(
        self,
        *,
        union: int = 1,
        rejection: bool = False,
        area: tuple[float, float] = (0.0, 1.0),
        max_tries: int = 10,
        on_failure: str = "keep",
        same_on_batch: bool = False,
    ) -> None:
        super().__init__()
        self.union = check_int_at_least("union", union, 1)
        self.rejection = bool(rejection)
        self.area = check_range_pair("area", area, 0.0, 1.0)
        self.max_tries = check_int_at_least("max_tries", max_tries, 1)
        self.on_failure = check_choice("on_failure", on_failure, ("keep", "raise"))
        self.same_on_batch = bool(same_on_batch)
        #: Parameters of the last call, for replay with ``params=``; ``None`` before the first call.
        self.last_params: Params | None = None

    # -- what a subclass provides -------------------------------------------------------------------------
    def draw(
        self,
        n: int,
        height: int,
        width: int,
        foreground: Tensor | None,
        generator: torch.Generator | None,
        device: torch.device,
    ) -> Params:
        """Draw the random parameters of ``n`` masks: a dict of tensors whose first dimension is ``n``."""
        raise NotImplementedError

    def render(self, params: Params, height: int, width: int) -> Tensor:
        """Turn parameters from :meth:`draw` into ``(n, 1, H, W)`` masks, bool or 0/1 (before the foreground)."""
        raise NotImplementedError

    def draw_volume(
        self,
        n: int,
        size: tuple[int, int, int],
        foreground: Tensor | None,
        generator: torch.Generator | None,
        device: torch.device,
    ) -> Params:
        """:meth:`draw` for volumes of ``size = (D, H, W)``; the foreground, if any, is ``(n, 1, D, H, W)``."""
        raise NotImplementedError

    def render_volume(self, params: Params, size: tuple[int, int, int]) -> Tensor:
        """:meth:`render` for volumes: ``(n, 1, D, H, W)`` masks, bool or 0/1 (before the foreground)."""
        raise NotImplementedError

    # -- shared machinery ---------------------------------------------------------------------------------
    def forward(
        self,
        images: Tensor,
        foreground: Tensor | None = None,
        generator: torch.Generator | None = None,
        params: Params | None = None,
    ) -> Tensor:
        """Make one mask per image.

        Args:
            images: the batch the masks are for; only its shape, dtype and device are used.
            foreground: where anomalies may go; masks never leave it. ``None`` means anywhere.
            generator: random source on ``images.device``; the same seed gives bit-identical masks.
            params: parameters of an earlier call (``gen.last_params``) to replay instead of drawing new ones.

        Returns:
            Masks with values exactly 0 or 1, in ``images.dtype`` on ``images.device``.

        Shape:
            - images: :math:`(B, C, H, W)` or :math:`(B, C, D, H, W)`
            - foreground: :math:`(B, 1, H, W)` or :math:`(B, 1, D, H, W)`
            - output: :math:`(B, 1, H, W)` or :math:`(B, 1, D, H, W)`
        """
        check_images(images)
        check_volume_support(type(self).__name__, self.supports_volumes, images)
        fg = check_foreground(foreground, images)
        check_generator(generator, images.device)
        return self.generate(images, fg, generator, params)

    def generate(
        self,
        images: Tensor,
        foreground: Tensor | None,
        generator: torch.Generator | None = None,
        params: Params | None = None,
    ) -> Tensor:
        """:meth:`forward` without the argument checks, for a composer that has already made them.

        Args:
            images: a checked batch (see :meth:`forward`); only its shape, dtype and device are used.
            foreground: a bool foreground on ``images.device`` with no empty sample, or ``None``.
            generator: random source on ``images.device``.
            params: parameters of an earlier call (``gen.last_params``) to replay instead of drawing new ones.

        Returns:
            The masks :meth:`forward` would return; ``last_params`` is set as by :meth:`forward`.

        Shape:
            - images: :math:`(B, C, H, W)` or :math:`(B, C, D, H, W)`
            - foreground: :math:`(B, 1, H, W)` or :math:`(B, 1, D, H, W)`
            - output: :math:`(B, 1, H, W)` or :math:`(B, 1, D, H, W)`
        """
        return self._generate_bool(images, foreground, generator, params).to(images.dtype)

    def _generate_bool(self, images: Tensor, foreground: Tensor | None, generator: torch.Generator | None,
                       params: Params | None) -> Tensor:
        # generate's masks as bool, for a composer that needs them so (no float copy and back)
        check_volume_support(type(self).__name__, self.supports_volumes, images)
        b, size = images.shape[0], tuple(images.shape[2:])  # size: (H, W) or (D, H, W)
        if params is None:
            params, masks = self._sample(b, size, foreground, generator, images.device)
            # what replay checks: the (H, W) or (D, H, W) each sample's parameters were drawn for
            params["image_size"] = torch.tensor([list(size)], device=images.device).repeat(b, 1)
        else:
            check_replay(type(self).__name__, params, b, size)
            masks = self._compose(params, size, foreground)
        self.last_params = params
        return masks

    # Kornia's name for it (``aug(x, params=aug._params)``), which users were told to use: kept as an alias.
    _params = property(lambda self: self.last_params, lambda self, value: setattr(self, "last_params", value))

    def _draw(self, n, size, fg, generator, device) -> Params:
        # images call the 2-D draw with its (height, width) arguments, volumes the 3-D one
        if len(size) == 2:
            return self.draw(n, size[0], size[1], fg, generator, device)
        return self.draw_volume(n, size, fg, generator, device)

    def _draw_batch(
        self, n: int, size: tuple[int, ...], fg: Tensor | None, generator: torch.Generator | None,
        device: torch.device
    ) -> Params:
        # (n, K, ...) parameters: K union members per sample, or one set repeated when same_on_batch.
        k = self.union
        if self.same_on_batch:
            first = None if fg is None else fg[:1].repeat(k, *([1] * (fg.ndim - 1)))
            one = self._draw(k, size, first, generator, device)
            return {name: p.unsqueeze(0).expand(n, *p.shape).contiguous() for name, p in one.items()}
        fg_k = None if fg is None else fg.repeat_interleave(k, dim=0)
        flat = self._draw(n * k, size, fg_k, generator, device)
        return {name: p.view(n, k, *p.shape[1:]) for name, p in flat.items()}

    def _compose(self, params: Params, size: tuple[int, ...], fg: Tensor | None) -> Tensor:
        members = {name: p for name, p in params.items() if name not in RECORDS}
        n, k = next(iter(members.values())).shape[:2]
        flat = {name: p.reshape(n * k, *p.shape[2:]) for name, p in members.items()}
        if len(size) == 2:
            masks = self.render(flat, size[0], size[1])  # (n * K, 1, H, W)
        else:
            masks = self.render_volume(flat, size)  # (n * K, 1, D, H, W)
        if masks.dtype != torch.bool:
            masks = masks != 0
        if k > 1:
            masks = masks.view(n, k, *size).any(dim=1, keepdim=True)  # (n, 1, *size)
        if fg is not None:
            masks = masks & fg
        return masks

    def _acceptable(self, masks: Tensor, fg: Tensor | None) -> Tensor:
        covered = masks.flatten(1).sum(dim=1)
        total = fg.flatten(1).sum(dim=1) if fg is not None else torch.full_like(covered, masks[0].numel())
        fraction = covered / total
        ok = (fraction >= self.area[0]) & (fraction <= self.area[1])
        if self.rejection:
            ok &= covered > 0
        return ok

    def _sample(
        self, b: int, size: tuple[int, ...], fg: Tensor | None, generator: torch.Generator | None,
        device: torch.device
    ) -> tuple[Params, Tensor]:
        params = self._draw_batch(b, size, fg, generator, device)
        masks = self._compose(params, size, fg)
        checks_needed = self.rejection or self.area != (0.0, 1.0)
        accepted = self._acceptable(masks, fg) if checks_needed else torch.ones(b, dtype=torch.bool, device=device)
        for _ in range(self.max_tries - 1):
            if not checks_needed or bool(accepted.all()):
                break
            if self.same_on_batch:  # one shared draw: redraw it for everyone
                params = self._draw_batch(b, size, fg, generator, device)
                masks = self._compose(params, size, fg)
                accepted = self._acceptable(masks, fg)
                continue
            redo = (~accepted).nonzero().flatten()
            sub_fg = None if fg is None else fg[redo]
            new = self._draw_batch(len(redo), size, sub_fg, generator, device)
            new_masks = self._compose(new, size, sub_fg)
            for name, p in new.items():
                params[name][redo] = p
            masks[redo] = new_masks
            accepted[redo] = self._acceptable(new_masks, sub_fg)
        if checks_needed and not bool(accepted.all()):
            failed = (~accepted).nonzero().flatten().tolist()
            message = (
                f"{type(self).__name__}: sample(s) {failed} have no acceptable mask after max_tries="
                f"{self.max_tries} draws (rejection={self.rejection}, area={self.area}); the foreground may be "
                "too small for this generator's shapes"
            )
            if self.on_failure == "raise":
                raise RuntimeError(message)
            warnings.warn(message + "; keeping the last draw", RuntimeWarning, stacklevel=3)
        params["accepted"] = accepted
        return params, masks

    def extra_repr(self) -> str:
        parts = [f"union={self.union}"]
        if self.rejection:
            parts.append("rejection=True")
        if self.area != (0.0, 1.0):
            parts.append(f"area={self.area}")
        if self.same_on_batch:
            parts.append("same_on_batch=True")
        return ", ".join(parts)
