"""What trainers accept: the batch layouts (unpacked into tensors on the training device), map-style datasets
and synthesis callables.

Training data holds healthy images only; the trainer synthesizes the anomalies. A training dataset item (and
so a collated batch) may be:

- an image tensor ``(C, H, W)`` -> batch ``(B, C, H, W)``;
- a tuple ``(image, foreground)`` with foreground ``(1, H, W)`` (bool or 0/1), where anomalies may be placed;
- a dict with key ``"image"`` and optionally ``"foreground"``.

A training item may also be a slab of neighbouring slices, ``(C, D, H, W)`` (foreground ``(1, D, H, W)``): the
batch ``(B, C, D, H, W)`` goes to the synthesis whole, so an anomaly spans the slices as it would in the patient
(the synthesis must accept volumes, as :class:`~pseudoanomaly.PseudoAnomaly` with a 3-D capable mask does), and
the nets then train on its ``B * D`` slices (:func:`fold_slabs`).

Validation items carry the true anomaly (tumor) label ``(1, H, W)`` as well: a tuple ``(image, foreground,
label)`` or a dict with keys ``"image"``, ``"label"`` and optionally ``"foreground"``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

__all__ = ["unpack_train_batch", "unpack_eval_batch", "check_map_dataset", "check_synthesis", "fold_slabs"]


def check_map_dataset(name: str, data: object) -> None:
    """Raise unless ``data`` is indexable with a length (a map-style dataset or a tensor).

    Trainers build their own loaders, because the data order must come from the run's seed for ``resume``
    to reproduce an uninterrupted run; a ready ``DataLoader`` would hide the order.
    """
    if isinstance(data, torch.utils.data.DataLoader):
        raise TypeError(
            f"{name} must be a map-style dataset (or a tensor), not a DataLoader: the trainer draws the data "
            f"order from its seed; pass {name}.dataset instead"
        )
    if not (hasattr(data, "__len__") and hasattr(data, "__getitem__")):
        raise TypeError(f"{name} must be a map-style dataset with __len__ and __getitem__, got {type(data).__name__}")


def check_synthesis(synthesis: object) -> Callable[..., tuple[Tensor, Tensor]]:
    """``synthesis`` if it is callable as ``synthesis(images, foreground=None, generator=None) -> (augmented,
    masks)`` (a :class:`~pseudoanomaly.PseudoAnomaly`, or any function drawing from ``generator``); else
    ``TypeError``."""
    if not callable(synthesis):
        raise TypeError(
            "synthesis must be callable as synthesis(images, foreground=None, generator=None) -> (augmented, "
            f"masks), like a pseudoanomaly.PseudoAnomaly; got {type(synthesis).__name__}"
        )
    return synthesis


def _as_images(images: object, device: torch.device, slabs: bool = False) -> Tensor:
    ndims = (4, 5) if slabs else (4,)
    if not isinstance(images, Tensor) or images.ndim not in ndims or not images.is_floating_point():
        got = type(images).__name__
        if isinstance(images, Tensor):
            got = f"shape {tuple(images.shape)}, dtype {images.dtype}"
        shapes = "(B, C, H, W) or slabs (B, C, D, H, W)" if slabs else "(B, C, H, W)"
        raise ValueError(f"batch images must be a float tensor {shapes}, got {got}")
    return images.to(device, non_blocking=True)


def _as_mask(mask: object, name: str, device: torch.device, ndim: int = 4) -> Tensor | None:
    if mask is None:
        return None
    if not isinstance(mask, Tensor) or mask.ndim != ndim:
        got = f"shape {tuple(mask.shape)}" if isinstance(mask, Tensor) else type(mask).__name__
        shape = "(B, 1, H, W)" if ndim == 4 else "(B, 1, D, H, W) like the slabs"
        raise ValueError(f"batch {name} must be a tensor {shape}, got {got}")
    return mask.to(device, non_blocking=True) != 0


def _missing(batch: Mapping, key: str) -> KeyError:
    return KeyError(f"batch dict has no {key!r} key; keys: {sorted(batch)}")


def unpack_train_batch(batch: object, device: torch.device) -> tuple[Tensor, Tensor | None]:
    """``(images, foreground or None)`` on ``device`` from a training batch (see the module docstring).

    Args:
        batch: a tensor, a ``(images, foreground)`` tuple/list, or a dict with ``"image"`` [, ``"foreground"``].
        device: the training device.

    Example:
        >>> images, foreground = unpack_train_batch(torch.rand(2, 1, 8, 8), torch.device("cpu"))
        >>> images.shape, foreground
        (torch.Size([2, 1, 8, 8]), None)
    """
    if isinstance(batch, Tensor):
        images, foreground = batch, None
    elif isinstance(batch, Mapping):
        if "image" not in batch:
            raise _missing(batch, "image")
        images, foreground = batch["image"], batch.get("foreground")
    elif isinstance(batch, Sequence) and len(batch) in (1, 2):
        images, foreground = batch[0], (batch[1] if len(batch) == 2 else None)
    else:
        length = f" of length {len(batch)}" if isinstance(batch, Sequence) else ""
        raise TypeError(
            "a training batch must be a tensor, an (images, foreground) tuple or a dict with 'image' [and "
            f"'foreground'], got {type(batch).__name__}{length}"
        )
    images = _as_images(images, device, slabs=True)
    return images, _as_mask(foreground, "foreground", device, images.ndim)


def fold_slabs(x: Tensor) -> Tensor:
    """The slices of a batch of slabs as a batch of images, slab by slab, each slab's slices in order.

    Args:
        x: a batch of slabs, or of images (returned as it is).

    Returns:
        The slices as images (a view where the layout allows, else a copy).

    Shape:
        - x: :math:`(B, C, D, H, W)` or :math:`(B, C, H, W)`
        - output: :math:`(B D, C, H, W)` or :math:`(B, C, H, W)`

    Example:
        >>> fold_slabs(torch.zeros(2, 1, 3, 8, 8)).shape
        torch.Size([6, 1, 8, 8])
    """
    return x.movedim(2, 1).flatten(0, 1) if x.ndim == 5 else x


def unpack_eval_batch(batch: object, device: torch.device) -> tuple[Tensor, Tensor | None, Tensor]:
    """``(images, foreground or None, labels)`` on ``device`` from a validation batch.

    Args:
        batch: an ``(images, foreground, labels)`` tuple/list or a dict with ``"image"``, ``"label"``
            [, ``"foreground"``].
        device: where the tensors go.
    """
    if isinstance(batch, Mapping):
        for key in ("image", "label"):
            if key not in batch:
                raise _missing(batch, key)
        images, foreground, labels = batch["image"], batch.get("foreground"), batch["label"]
    elif isinstance(batch, Sequence) and not isinstance(batch, Tensor) and len(batch) == 3:
        images, foreground, labels = batch
    else:
        raise TypeError(
            "a validation batch must be an (images, foreground, labels) tuple or a dict with 'image', 'label' "
            f"[and 'foreground'], got {type(batch).__name__}"
        )
    return _as_images(images, device), _as_mask(foreground, "foreground", device), _as_mask(labels, "label", device)
