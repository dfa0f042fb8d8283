"""Bad input, faults and hostile files against the library: a one-line error that names the value, never a
silently wrong result (issue 10).

The command line's cases are in ``tests/examples/test_lits_bad_input.py``.
"""

from __future__ import annotations

import builtins
import errno
import os
import pickle

import pytest
import torch
from torch import nn

from pseudoanomaly import PseudoAnomaly
from pseudoanomaly.masks import BlobMask, BlurredNoiseMask, PerlinMask
from pseudoanomaly.metrics import dice, dice_per_volume
from pseudoanomaly.models import AnomalySegmenter, RestorationUNet, SegmentationNet
from pseudoanomaly.overlays import IntensityShift, PatchBlend, TextureBlend
from pseudoanomaly.training import (
    TwoPhaseConfig,
    TwoPhaseTrainer,
    atomic_save,
    load_checkpoint,
    load_segmenter,
    save_segmenter,
)
from pseudoanomaly.training import checkpoint as checkpoint_module
from pseudoanomaly.training.distributed import resolve_device

SIZE = 32


def _seed(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _boxes(b: int, size: int = SIZE) -> torch.Tensor:
    masks = torch.zeros(b, 1, size, size)
    masks[..., size // 4 : size // 2, size // 4 : size // 2] = 1
    return masks


# ------------------------------------------------------------------------------------------- images


@pytest.mark.parametrize(
    "call",
    [
        lambda x: PseudoAnomaly()(x),
        lambda x: BlurredNoiseMask()(x),
        lambda x: IntensityShift()(x, torch.ones(x.shape[0], 1, *x.shape[2:])),
    ],
    ids=["synthesis", "mask", "overlay"],
)
def test_zero_channels_are_refused(call):
    with pytest.raises(ValueError, match=r"non-empty.*\(2, 0, 32, 32\)"):
        call(torch.rand(2, 0, SIZE, SIZE))


def test_meta_images_are_refused_by_name():
    with pytest.raises(ValueError, match="images is a meta tensor"):
        PseudoAnomaly()(torch.empty(2, 1, SIZE, SIZE, device="meta"))


@pytest.mark.parametrize(
    "make, scale, shown",
    [
        (lambda: PseudoAnomaly(), 255.0, r"\[0, 255\], outside value_range=\(0, 1\)"),  # images x 255
        (lambda: PseudoAnomaly(p=0.0), 255.0, r"\[0, 255\]"),  # refused even when no sample is painted
        (lambda: IntensityShift(), 255.0, r"\[0, 255\], outside value_range=\(0, 1\)"),
        (lambda: PatchBlend(), 255.0, r"\[0, 255\]"),
        (lambda: TextureBlend(), 255.0, r"\[0, 255\]"),
        (lambda: IntensityShift(value_range=(-200.0, 250.0)), -1000.0, r"\[-1000, 0\].*\(-200, 250\)"),  # HU air
    ],
    ids=["synthesis-x255", "synthesis-p0", "intensity-x255", "patch-x255", "texture-x255", "intensity-hu"],
)
def test_images_outside_the_value_range_are_refused_naming_both(make, scale, shown):
    images = torch.zeros(2, 1, SIZE, SIZE)
    images[0, 0, 0, 0] = scale  # one pixel out of range is enough
    op = make()
    with pytest.raises(ValueError, match=shown):
        if isinstance(op, PseudoAnomaly):
            op(images, generator=_seed())
        else:
            op(images, _boxes(2), generator=_seed())


def test_values_a_rounding_away_from_the_range_are_accepted():
    images = torch.rand(2, 1, SIZE, SIZE)
    images[0, 0, 0, 0] = 1.0 + 1e-7  # e.g. x / 255 * 255 / 255
    PseudoAnomaly()(images, generator=_seed())


# --------------------------------------------------------------------------------------------- replay


def test_replay_on_a_bigger_batch_raises_instead_of_leaving_a_sample_normal():
    synth = PseudoAnomaly(p=1.0)
    synth(torch.rand(2, 1, SIZE, SIZE), generator=_seed())
    with pytest.raises(ValueError, match=r"replay.*batch of 2 image\(s\), got 3"):
        synth(torch.rand(3, 1, SIZE, SIZE), params=synth.last_params)


def test_replay_with_a_gate_on_another_batch_raises():
    synth = PseudoAnomaly(p=0.5)
    synth(torch.rand(4, 1, SIZE, SIZE), generator=_seed(1))
    with pytest.raises(ValueError, match=r"replay.*batch of 4 image\(s\), got 2"):
        synth(torch.rand(2, 1, SIZE, SIZE), params=synth.last_params)


@pytest.mark.parametrize(
    "op, batch, size",
    [
        (BlurredNoiseMask(), 2, 48),
        (PerlinMask(), 2, 48),
        (BlobMask(), 3, SIZE),
        (IntensityShift(), 3, SIZE),
        (TextureBlend(), 2, 48),
        (PatchBlend(), 3, SIZE),
    ],
    ids=["blurred-size", "perlin-size", "blob-batch", "intensity-batch", "texture-size", "patch-batch"],
)
def test_replay_on_another_batch_or_size_names_both(op, batch, size):
    images = torch.rand(2, 1, SIZE, SIZE)
    is_mask = not isinstance(op, (IntensityShift, TextureBlend, PatchBlend))
    op(images, generator=_seed()) if is_mask else op(images, _boxes(2), generator=_seed())
    other = torch.rand(batch, 1, size, size)
    expected = rf"replay.*drawn for a batch of 2 image\(s\) of 32 x 32, got {batch} image\(s\) of {size} x {size}"
    with pytest.raises(ValueError, match=expected):
        op(other, params=op.last_params) if is_mask else op(other, _boxes(batch, size), params=op.last_params)


def test_synthesis_replay_on_another_size_names_both():
    synth = PseudoAnomaly()
    synth(torch.rand(2, 1, SIZE, SIZE), generator=_seed())
    with pytest.raises(ValueError, match=r"replay.*of 32 x 32, got 2 image\(s\) of 64 x 64"):
        synth(torch.rand(2, 1, 64, 64), params=synth.last_params)


# -------------------------------------------------------------------------------------------- metrics


@pytest.mark.parametrize("metric", ["dice", "dice_per_volume"])
def test_dice_refuses_nan_predictions(metric):
    pred, target = torch.rand(2, 1, 8, 8), torch.zeros(2, 1, 8, 8)
    pred[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"pred contains 1 NaN"):
        dice(pred, target) if metric == "dice" else dice_per_volume(pred, target, ["a", "b"])


@pytest.mark.parametrize("metric", ["dice", "dice_per_volume"])
def test_dice_refuses_a_nan_threshold(metric):
    pred, target = torch.rand(2, 1, 8, 8), torch.zeros(2, 1, 8, 8)
    with pytest.raises(ValueError, match="threshold.*nan"):
        if metric == "dice":
            dice(pred, target, float("nan"))
        else:
            dice_per_volume(pred, target, ["a", "b"], float("nan"))


def test_dice_refuses_meta_tensors():
    with pytest.raises(ValueError, match="pred is a meta tensor"):
        dice(torch.empty(4, device="meta"), torch.zeros(4))


# ------------------------------------------------------------------------------------------ segmenter


@pytest.fixture(scope="module")
def segmenter() -> AnomalySegmenter:
    torch.manual_seed(0)
    return AnomalySegmenter(RestorationUNet(base_width=4, depth=1),
                            SegmentationNet(base_width=2, channel_multipliers=(1, 2)))


def test_segmenter_refuses_a_nan_pixel_rather_than_a_nan_map(segmenter):
    images = torch.rand(2, 1, SIZE, SIZE)
    images[1, 0, 5, 5] = float("nan")
    with pytest.raises(ValueError, match=r"1 NaN or Inf value"):
        segmenter(images)


def test_segmenter_refuses_uint8_images_naming_the_dtype(segmenter):
    with pytest.raises(TypeError, match=r"floating-point.*torch.uint8"):
        segmenter(torch.randint(0, 256, (2, 1, SIZE, SIZE), dtype=torch.uint8))


def test_segmenter_refuses_a_meta_or_non_binary_foreground_naming_it(segmenter):
    images = torch.rand(2, 1, SIZE, SIZE)
    with pytest.raises(ValueError, match="foreground is a meta tensor"):
        segmenter(images, torch.empty(2, 1, SIZE, SIZE, device="meta"))
    with pytest.raises(ValueError, match=r"foreground must be bool or contain only 0 and 1, got values \[2\.0\]"):
        segmenter(images, torch.full((2, 1, SIZE, SIZE), 2.0))


def test_segmenter_refuses_meta_images_and_meta_weights(segmenter):
    with pytest.raises(ValueError, match="images is a meta tensor"):
        segmenter(torch.empty(2, 1, SIZE, SIZE, device="meta"))
    with torch.device("meta"):
        ghost = AnomalySegmenter(RestorationUNet(base_width=4, depth=1),
                                 SegmentationNet(base_width=2, channel_multipliers=(1, 2)))
    with pytest.raises(ValueError, match="weights are meta tensors"):
        ghost(torch.rand(1, 1, SIZE, SIZE))


# ---------------------------------------------------------------------------------------- checkpoints


class _Hostile:
    """Unpickling this would create ``marker``: a stand-in for any code a file could run."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


@pytest.mark.parametrize("container", ["torch", "pickle"])
def test_a_hostile_pickle_is_refused_in_one_line_and_runs_nothing(tmp_path, container):
    marker, path = tmp_path / "marker", tmp_path / "checkpoint.pt"
    payload = {"models": {"restoration": _Hostile(str(marker))}}
    if container == "torch":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))  # the protocol torch writes
    with pytest.raises(ValueError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    assert "weights_only" not in message  # never suggest loading it with weights_only=False
    assert not marker.exists()


@pytest.mark.parametrize(
    "content, reason",
    [(b"", "empty"), (b"not a torch file", "not a torch checkpoint"), ("truncated", "truncated")],
)
def test_unreadable_checkpoints_give_one_line_naming_the_file(tmp_path, content, reason):
    path = tmp_path / "segmenter.pt"
    if content == "truncated":
        atomic_save({"weight": torch.ones(100)}, path)
        path.write_bytes(path.read_bytes()[:200])
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=reason) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_load_checkpoint_of_a_directory_or_of_no_dict_says_so(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a directory"):
        load_checkpoint(tmp_path)
    torch.save(torch.ones(2), tmp_path / "tensor.pt")
    with pytest.raises(ValueError, match="holds a Tensor, not a checkpoint dict"):
        load_checkpoint(tmp_path / "tensor.pt")


def _small(width: int = 4) -> AnomalySegmenter:
    return AnomalySegmenter(RestorationUNet(base_width=width, depth=1),
                            SegmentationNet(base_width=2, channel_multipliers=(1, 2)))


def test_weights_of_another_architecture_name_the_file_and_first_key(tmp_path):
    path = save_segmenter(_small(width=4), tmp_path / "segmenter.pt")
    with pytest.raises(ValueError, match=r"segmenter.pt.*key 'restoration\.[\w.]+' has shape") as info:
        load_segmenter(_small(width=8), path)
    assert "\n" not in str(info.value)


def test_resume_from_a_checkpoint_of_another_architecture_or_truncated_is_one_line(tmp_path):
    images = torch.rand(4, 1, SIZE, SIZE)
    config = TwoPhaseConfig(batch_size=2, restoration_max_steps=1, segmentation_max_steps=1, progress=False,
                            out_dir=str(tmp_path))
    TwoPhaseTrainer(RestorationUNet(base_width=4, depth=1), SegmentationNet(base_width=2, channel_multipliers=(1, 2)),
                    config=config).fit(images)
    path = tmp_path / "checkpoint.pt"
    wider = TwoPhaseTrainer(RestorationUNet(base_width=8, depth=1),
                            SegmentationNet(base_width=2, channel_multipliers=(1, 2)), config=config)
    with pytest.raises(ValueError, match=r"checkpoint.pt.*\(restoration\).*key '[\w.]+' has shape"):
        wider.fit(images, resume=path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ValueError, match=r"checkpoint.pt.*cannot be loaded"):
        wider.fit(images, resume=path)


def test_a_full_disk_while_checkpointing_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    path = atomic_save({"step": 1}, tmp_path / "checkpoint.pt")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint_module.os, "fsync", full)
    with pytest.raises(OSError, match="No space left on device") as info:
        atomic_save({"step": 2}, path)
    assert info.value.filename == str(path) and str(path) in str(info.value)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_temporaries_of_killed_writers_are_removed_by_the_next_write(tmp_path):
    dead = tmp_path / ".checkpoint.pt.999999999.tmp"  # no such process
    dead.write_bytes(b"half a checkpoint")
    other = tmp_path / ".other.pt.999999999.tmp"  # another file's: not ours to remove
    other.write_bytes(b"x")
    atomic_save({"step": 1}, tmp_path / "checkpoint.pt")
    assert not dead.exists() and other.exists()


# -------------------------------------------------------------------------------------------- devices


@pytest.mark.parametrize("device", ["gpu", "meta"] + ([] if torch.cuda.is_available() else ["cuda", "cuda:1"]))
def test_unknown_or_missing_devices_are_named(device):
    with pytest.raises(ValueError, match=f"device='{device}'"):
        resolve_device(device)
    with pytest.raises(ValueError, match=f"device='{device}'"):
        TwoPhaseTrainer(nn.Identity(), nn.Identity(), config=TwoPhaseConfig(device=device))
