"""Data parallelism: 2 gloo processes on CPU take the same steps as 1 process on the full batch.

With plain SGD at lr 1 a step subtracts the gradient, so equal weights after a step mean equal (averaged)
gradients. The nets use GroupNorm: BatchNorm statistics of half a batch differ from the full batch's.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from pseudoanomaly.models import ReconstructiveAE, SegmentationNet
from pseudoanomaly.models.layers import MedianDivisorGroupNorm
from pseudoanomaly.training import JointConfig, JointTrainer, SeededBatchSampler, TwoPhaseConfig, TwoPhaseTrainer

WORLD_SIZE = 2
KINDS = ("two_phase", "joint")


def _images() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return F.interpolate(torch.rand(8, 1, 4, 4, generator=g), size=(32, 32), mode="bilinear").clamp(0, 1)


def _synth(images, foreground=None, generator=None):
    """Anomalies set by the image alone, so the result does not depend on which process synthesizes it."""
    masks = (images > images.mean(dim=(1, 2, 3), keepdim=True)).float()
    return images * (1 - masks) + masks, masks


def _trainer(kind: str) -> TwoPhaseTrainer | JointTrainer:
    torch.manual_seed(0)
    norm = dict(norm_layer=MedianDivisorGroupNorm)
    rest = ReconstructiveAE(base_width=4, channel_multipliers=(1, 2), **norm)
    seg = SegmentationNet(base_width=4, channel_multipliers=(1, 2), **norm)
    common = dict(batch_size=4, optimizer="sgd", lr=1.0, progress=False, eval_every=0)
    if kind == "two_phase":
        # One step per phase: DDP wraps the restoration objective, then the segmentation one.
        config = TwoPhaseConfig(restoration_max_steps=1, segmentation_max_steps=1, **common)
        return TwoPhaseTrainer(rest, seg, _synth, config)
    return JointTrainer(rest, seg, _synth, JointConfig(max_steps=1, scheduler="none", **common))


def _state(trainer) -> dict[str, torch.Tensor]:
    return {f"{name}.{k}": v.clone() for name in ("restoration", "segmentation")
            for k, v in getattr(trainer, name).state_dict().items()}


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD_SIZE)
    try:
        for kind in KINDS:  # one process group for both trainers: spawning is the slow part
            trainer = _trainer(kind)
            trainer.fit(_images())
            if rank == 0:
                torch.save(_state(trainer), os.path.join(out_dir, f"{kind}.pt"))
        dist.barrier()  # both ranks done before the group goes: a rank leaving early can abort its peer in gloo
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed gloo")
def test_two_gloo_processes_average_to_the_single_process_gradient(tmp_path, monkeypatch):
    # Gloo would otherwise look the host name up to choose its interface; stay on the loopback.
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    for kind in KINDS:
        single = _trainer(kind)
        initial = _state(single)
        single.fit(_images())
        expected = _state(single)
        got = torch.load(tmp_path / f"{kind}.pt", weights_only=True)

        assert got.keys() == expected.keys()
        moved = [k for k in expected if expected[k].is_floating_point() and not torch.equal(expected[k], initial[k])]
        assert len(moved) > 10, kind  # the steps did train both nets
        for key in moved:
            # Compare the steps (= gradients), to float32 summation-order tolerance.
            torch.testing.assert_close(got[key] - initial[key], expected[key] - initial[key], rtol=1e-4, atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(size=st.integers(0, 40), per_rank=st.integers(1, 4), world=st.integers(1, 4), epoch=st.integers(0, 3))
def test_shards_of_every_batch_make_up_the_single_process_batch(size, per_rank, world, epoch):
    batch = per_rank * world
    single = list(SeededBatchSampler(size, batch, seed=7, epoch=epoch))
    shards = [list(SeededBatchSampler(size, batch, seed=7, epoch=epoch, rank=r, world_size=world))
              for r in range(world)]
    assert len(single) == size // batch and all(len(s) == len(single) for s in shards)
    for step, full in enumerate(single):
        parts = [shards[r][step] for r in range(world)]
        assert all(len(p) == per_rank for p in parts)
        assert sorted(i for p in parts for i in p) == sorted(full)
    # Every sample appears at most once per epoch.
    flat = [i for b in single for i in b]
    assert len(set(flat)) == len(flat)


def test_sampler_start_skips_batches_and_epochs_differ():
    full = list(SeededBatchSampler(20, 4, seed=1, epoch=0))
    assert list(SeededBatchSampler(20, 4, seed=1, epoch=0, start=3)) == full[3:]
    assert list(SeededBatchSampler(20, 4, seed=1, epoch=1)) != full
    with pytest.raises(ValueError, match="batch_size must be divisible by world_size=3, got 4"):
        SeededBatchSampler(20, 4, seed=1, epoch=0, world_size=3)


def test_no_launcher_means_one_process():
    from pseudoanomaly.training import init_distributed

    if "WORLD_SIZE" not in os.environ:
        assert init_distributed() is False
