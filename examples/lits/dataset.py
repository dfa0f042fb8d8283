"""Prepared slices (the output of ``prepare``) as tensors, and the torch datasets the trainers read.

    prepared = load_prepared("prepared/train", size=128, max_slices=2000)
    trainer.fit(prepared.train_dataset(), ...)           # items {"image", "foreground"}
    trainer.fit(prepared.slab_dataset(8), ...)           # slabs of 8 neighbouring slices, (1, 8, S, S) items
    evaluate_segmenter(segmenter, load_prepared("prepared/test").eval_dataset())   # + "label"

Each volume file is checked against the checksum the manifest records before it is decoded. Subsetting happens
before anything is decoded: ``stride`` keeps every k-th slice of each volume (neighbouring
slices are nearly identical), then ``max_slices`` picks that many slices evenly spread over the whole set, so
every volume stays represented. ``size`` resizes for fast CPU presets: images bilinearly with antialiasing,
masks with centre-aligned nearest neighbour, and the image is masked again so the background stays exactly 0.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from pseudoanomaly.io import atomic_write

from .cases import PrepareError
from .volumes import load_prepared_volume

__all__ = [
    "MANIFEST", "VOLUMES", "PreparedSet", "TrainSlices", "TrainSlabs", "EvalSlices", "load_prepared", "load_slices",
    "read_manifest", "write_manifest", "resize_slices",
]

# A prepared folder: OUT/manifest.json indexes OUT/volumes/<case_id>.npz (format: examples.lits.volumes).
FORMAT = "examples.lits.prepare"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
VOLUMES = "volumes"


def read_manifest(out: str | os.PathLike) -> dict | None:
    """The manifest in ``out``, or None when there is none.

    Args:
        out: an output folder of ``prepare``.

    Returns:
        The parsed ``manifest.json``.

    Raises:
        PrepareError: the manifest is unreadable or not one of ``prepare``.
    """
    path = Path(out) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PrepareError(path, f"unreadable manifest ({exc}); delete it to start over") from exc
    if manifest.get("format") != FORMAT:
        raise PrepareError(path, f"not a manifest of {FORMAT} (format {manifest.get('format')!r})")
    return manifest


def write_manifest(out: Path, manifest: dict) -> None:
    """Write ``out/manifest.json`` atomically."""
    data = json.dumps(manifest, indent=1, sort_keys=False).encode()
    atomic_write(out / MANIFEST, lambda f: f.write(data))


@dataclass(frozen=True)
class PreparedSet:
    """All selected slices of a prepared data set.

    Attributes:
        images: (N, 1, S, S) float32 in [0, 1], 0 outside the liver.
        foreground: (N, 1, S, S) bool liver masks.
        tumor: (N, 1, S, S) bool tumor labels (all False for healthy data).
        case_index: (N,) int64 index into ``cases`` of each slice's volume.
        slice_index: (N,) int64 canonical axial index of each slice in its volume (see ``preprocess``).
        cases: volume ids, in manifest order.
        manifest: the data set's ``manifest.json``.
        voxel_mm: (N, 3) float64 size in mm of each slice's voxels as loaded, along (slices, rows, columns): the
            slice thickness, and the pixel size after the crop and the resize.
    """

    images: Tensor
    foreground: Tensor
    tumor: Tensor
    case_index: Tensor
    slice_index: Tensor
    cases: list[str]
    manifest: dict
    voxel_mm: Tensor

    def __len__(self) -> int:
        return len(self.images)

    @property
    def case_ids(self) -> list[str]:
        """The volume id of every slice (N,)."""
        return [self.cases[i] for i in self.case_index.tolist()]

    def fingerprint(self) -> str:
        """A digest of the data set these slices come from: its cases with their volume checksums, labels and
        preprocessing settings. Two sets of the same length but other data (or other preprocessing) differ.

        Returns:
            64 hex digits.
        """
        entries = self.manifest["cases"]
        # Manifests written before volume checksums were recorded: the source checksums stand in for them.
        cases = [[c, entries[c].get("file_sha256") or [entries[c].get("image_sha256"), entries[c].get("label_sha256")]]
                 for c in self.cases]
        record = {"cases": cases, "labels": self.manifest.get("labels"), "config": self.manifest.get("config")}
        return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()

    def indices_of(self, case_id: str) -> Tensor:
        """Positions in this set of the slices of volume ``case_id``, in axial order.

        Args:
            case_id: a volume id from ``cases``.

        Returns:
            (n,) int64 indices.
        """
        if case_id not in self.cases:
            raise KeyError(f"case_id {case_id!r} is not in this set; cases: {self.cases}")
        return torch.nonzero(self.case_index == self.cases.index(case_id)).flatten()

    def train_dataset(self) -> TrainSlices:
        """Map-style training dataset: items ``{"image": (1, S, S) float, "foreground": (1, S, S) bool}``.

        Returns:
            A :class:`TrainSlices` over this set.
        """
        return TrainSlices(self.images, self.foreground)

    def slab_dataset(self, depth: int, max_slabs: int | None = None) -> TrainSlabs:
        """Map-style training dataset of slabs: ``depth`` neighbouring slices of one volume per item,
        ``{"image": (1, depth, S, S), "foreground": (1, depth, S, S)}``.

        Each run of consecutive slices of a volume is cut into slabs that do not overlap, the last one ending on
        the run's last slice (so it may share slices with the one before); runs shorter than ``depth`` are left
        out. An epoch of slabs then holds each slice about once, as an epoch of slices does.

        Args:
            depth: slices per slab, at least 2.
            max_slabs: keep at most this many slabs, evenly spread over the set (default: all).

        Returns:
            A :class:`TrainSlabs` over this set.
        """
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 2:
            raise ValueError(f"depth must be an integer >= 2 (slices per slab), got {depth!r}")
        starts = []
        # a new run where the volume changes or a slice index does not follow the previous one
        breaks = torch.ones(len(self), dtype=torch.bool)
        breaks[1:] = (self.case_index[1:] != self.case_index[:-1]) | (self.slice_index[1:] != self.slice_index[:-1] + 1)
        bounds = torch.nonzero(breaks).flatten().tolist() + [len(self)]
        for first, end in zip(bounds[:-1], bounds[1:]):
            if end - first >= depth:
                starts += list(range(first, end - depth + 1, depth))
                if (end - first) % depth:
                    starts.append(end - depth)
        if not starts:
            longest = max(b - a for a, b in zip(bounds[:-1], bounds[1:]))
            raise ValueError(f"no run of {depth} consecutive slices in one volume (the longest has {longest}): "
                             "lower the slab depth")
        if max_slabs is not None and len(starts) > max_slabs:
            starts = [starts[i] for i in np.unique(np.linspace(0, len(starts) - 1, max_slabs).round().astype(int))]
        index = torch.tensor(starts)[:, None] + torch.arange(depth)  # (n, depth) positions in this set
        return TrainSlabs(self.images, self.foreground, index)

    def eval_dataset(self) -> EvalSlices:
        """Map-style validation/test dataset: items add ``"label"`` (the tumor) and ``"index"`` (position here).

        Returns:
            An :class:`EvalSlices` over this set.
        """
        return EvalSlices(self.images, self.foreground, self.tumor)


class TrainSlices(Dataset):
    """Healthy slices for the trainers: ``{"image": (1, S, S) float32, "foreground": (1, S, S) bool}``.

    Args:
        images: (N, 1, S, S) float images.
        foreground: (N, 1, S, S) bool liver masks.
    """

    def __init__(self, images: Tensor, foreground: Tensor):
        if images.ndim != 4 or foreground.shape != images.shape:
            raise ValueError(f"images and foreground must both be (N, 1, S, S), got {tuple(images.shape)} and "
                             f"{tuple(foreground.shape)}")
        self.images, self.foreground = images, foreground

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {"image": self.images[i], "foreground": self.foreground[i]}


class TrainSlabs(Dataset):
    """Healthy slabs for the trainers: ``{"image": (1, D, S, S) float32, "foreground": (1, D, S, S) bool}``.

    Args:
        images: (N, 1, S, S) float images.
        foreground: (N, 1, S, S) bool liver masks.
        index: (n, D) positions in ``images`` of each slab's slices, in order.
    """

    def __init__(self, images: Tensor, foreground: Tensor, index: Tensor):
        self.images, self.foreground, self.index = images, foreground, index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        rows = self.index[i]
        return {"image": self.images[rows].transpose(0, 1), "foreground": self.foreground[rows].transpose(0, 1)}

    @property
    def depth(self) -> int:
        """Slices per slab."""
        return self.index.shape[1]


class EvalSlices(TrainSlices):
    """Labelled slices: ``{"image", "foreground", "label": (1, S, S) bool tumor, "index": int}``.

    Args:
        images: (N, 1, S, S) float images.
        foreground: (N, 1, S, S) bool liver masks.
        label: (N, 1, S, S) bool tumor masks.
    """

    def __init__(self, images: Tensor, foreground: Tensor, label: Tensor):
        super().__init__(images, foreground)
        if label.shape != images.shape:
            raise ValueError(f"label must be {tuple(images.shape)} like the images, got {tuple(label.shape)}")
        self.label = label

    def __getitem__(self, i: int) -> dict:
        return {**super().__getitem__(i), "label": self.label[i], "index": i}


def load_prepared(
    directory: str | os.PathLike,
    size: int | None = None,
    max_slices: int | None = None,
    stride: int = 1,
    cases: Sequence[str] | None = None,
) -> PreparedSet:
    """Load the slices of a ``prepare`` output folder.

    Args:
        directory: the folder holding ``manifest.json`` and ``volumes/``.
        size: resize slices to ``size`` x ``size`` (default: as prepared).
        max_slices: keep at most this many slices, evenly spread over the set (default: all).
        stride: keep every ``stride``-th slice of each volume.
        cases: only these volume ids (default: all, in manifest order).

    Returns:
        The selected slices as tensors.
    """
    directory = Path(directory)
    manifest = read_manifest(directory)
    if manifest is None:
        raise FileNotFoundError(f"{directory}: no manifest.json; run `python -m examples.lits prepare` first")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if max_slices is not None and max_slices < 1:
        raise ValueError(f"max_slices must be >= 1, got {max_slices}")
    if size is not None and not 8 <= size <= 4096:
        raise ValueError(f"size must be in [8, 4096], got {size}")
    entries = manifest["cases"]
    names = list(entries) if cases is None else list(cases)
    unknown = [c for c in names if c not in entries]
    if unknown:
        raise KeyError(f"cases {unknown} are not in {directory / 'manifest.json'}; it has {list(entries)}")

    # Choose (case, position) pairs from the slice counts alone, then decode only the volumes that contribute.
    counts = [int(entries[c]["slices"]) for c in names]
    chosen = [(ci, p) for ci, n in enumerate(counts) for p in range(0, n, stride)]
    if max_slices is not None and len(chosen) > max_slices:
        picks = np.unique(np.linspace(0, len(chosen) - 1, max_slices).round().astype(int))
        chosen = [chosen[i] for i in picks]
    if not chosen:
        raise ValueError(f"{directory}: no slices selected (cases {names}, stride {stride}, max_slices {max_slices})")

    # The slices go straight into arrays of the whole selection (no list of per-volume copies to concatenate,
    # which held the set twice: 5.8 GiB to load 7,000 slices of 256 x 256 that take 2.6 GiB).
    image_np = liver_np = tumor_np = None
    filled = 0
    case_index, slice_index, voxel_mm = [], [], []
    for ci, name in enumerate(names):
        positions = [p for c, p in chosen if c == ci]
        if not positions:
            continue
        path = directory / entries[name]["file"]
        expected = entries[name].get("file_sha256")
        content = path.read_bytes() if path.is_file() else None  # read once: checked, then decoded
        if expected is not None and content is not None and hashlib.sha256(content).hexdigest() != expected:
            raise ValueError(f"{path}: its checksum differs from the one in {directory / MANIFEST} (the file was "
                             "changed, truncated or swapped after prepare); run prepare again")
        volume = load_prepared_volume(path, content)
        if len(volume.images) != counts[ci]:
            raise ValueError(f"{directory / entries[name]['file']}: {len(volume.images)} slices, the manifest says "
                             f"{counts[ci]}; run prepare again")
        if image_np is None:
            shape = (len(chosen), *volume.images.shape[1:])
            image_np = np.empty(shape, volume.images.dtype)
            liver_np, tumor_np = np.empty(shape, volume.liver.dtype), np.empty(shape, volume.tumor.dtype)
        elif volume.images.shape[1:] != image_np.shape[1:]:
            raise ValueError(f"{path}: slices of {tuple(volume.images.shape[1:])}, the set's others are "
                             f"{tuple(image_np.shape[1:])}; prepare the set again with one --size")
        rows = slice(filled, filled + len(positions))
        image_np[rows], liver_np[rows], tumor_np[rows] = (volume.images[positions], volume.liver[positions],
                                                          volume.tumor[positions])
        filled += len(positions)
        case_index += [ci] * len(positions)
        slice_index += volume.geometry.slices[positions].tolist()
        # (slices, rows, columns) in mm: a box of (rows, columns) source pixels becomes the slice's side
        x_mm, y_mm, z_mm = volume.geometry.spacing
        boxes = volume.geometry.boxes[positions].astype(np.float64)
        side = float(size or volume.images.shape[-1])
        voxel_mm.append(np.stack([np.full(len(positions), z_mm), (boxes[:, 1] - boxes[:, 0]) * y_mm / side,
                                  (boxes[:, 3] - boxes[:, 2]) * x_mm / side], axis=1))

    image_t = torch.from_numpy(image_np)[:, None]  # (N, 1, S, S)
    liver_t = torch.from_numpy(liver_np)[:, None]
    tumor_t = torch.from_numpy(tumor_np)[:, None]
    if size is not None and size != image_t.shape[-1]:
        image_t, liver_t, tumor_t = resize_slices(image_t, liver_t, size, tumor_t)
    tumor_t &= liver_t  # in place: the tumor only inside the liver
    return PreparedSet(
        images=image_t.contiguous(),
        foreground=liver_t.contiguous(),
        tumor=tumor_t.contiguous(),
        case_index=torch.tensor(case_index, dtype=torch.int64),
        slice_index=torch.tensor(slice_index, dtype=torch.int64),
        cases=names,
        manifest=manifest,
        voxel_mm=torch.from_numpy(np.concatenate(voxel_mm)),
    )


def load_slices(directory: str | os.PathLike, size: int | None, max_slices: int | None = None) -> PreparedSet:
    """:func:`load_prepared`, where a missing folder raises ``FileNotFoundError`` naming it."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such folder (expected the output of `prepare`)")
    return load_prepared(directory, size=size, max_slices=max_slices)


def resize_slices(images: Tensor, liver: Tensor, size: int, tumor: Tensor | None = None, chunk: int = 512
                  ) -> tuple[Tensor, Tensor, Tensor | None]:
    """Resize prepared slices to ``size`` x ``size``, as training and inference both must.

    Images bilinearly with antialiasing, masks with centre-aligned nearest neighbour; the images are masked
    again so the background stays exactly 0. Works in chunks of ``chunk`` slices (bounded memory).

    Shape:
        - images: :math:`(N, 1, S, S)` float in [0, 1]; liver, tumor: :math:`(N, 1, S, S)` bool.
        - output: the same at ``size``; ``tumor`` is ``None`` when not given.
    """
    out_i, out_l, out_t = [], [], []
    for s in range(0, len(images), chunk):
        mask = F.interpolate(liver[s:s + chunk].float(), size=(size, size), mode="nearest-exact") > 0.5
        image = F.interpolate(images[s:s + chunk], size=(size, size), mode="bilinear", antialias=True,
                              align_corners=False).clamp_(0, 1)
        out_i.append(image * mask)
        out_l.append(mask)
        if tumor is not None:
            out_t.append(F.interpolate(tumor[s:s + chunk].float(), size=(size, size), mode="nearest-exact") > 0.5)
    return torch.cat(out_i), torch.cat(out_l), (torch.cat(out_t) if tumor is not None else None)


def stack_slices(slices: np.ndarray, slice_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One volume's prepared slices ``(N, S, S)`` stacked at their axial index: ``(volume (Z, S, S), rows)`` with
    ``volume[rows] == slices``; slices missing between two kept ones are 0 (too little liver to keep)."""
    rows = np.asarray(slice_index) - int(np.min(slice_index))
    volume = np.zeros((int(rows.max()) + 1, *slices.shape[1:]), slices.dtype)
    volume[rows] = slices
    return volume, rows
