"""``train`` under torchrun: two gloo processes on the CPU, as ``torchrun --nproc-per-node 2`` would start them.

The library's own tests check that the processes' averaged step equals one process's step on the whole batch;
here the command: rank 0 alone holds and writes the run folder, once, and the run resumes with the same number
of processes.
"""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

pytest.importorskip("nibabel")

from examples.lits import phantom  # noqa: E402
from examples.lits.__main__ import main  # noqa: E402

TINY = ["--preset", "demo", "--size", "32", "--width", "4", "--steps-restoration", "3", "--steps-segmentation", "2",
        "--batch-size", "4", "--checkpoint-every", "1", "--no-progress", "--device", "cpu"]


def _worker(rank: int, port: int, argv: list[str]) -> None:
    # the environment torchrun gives each process
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    code = main(["--threads", "1", *argv])
    assert code == 0, f"rank {rank}: exit status {code}"
    assert not dist.is_initialized(), "train must leave the process group"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed gloo")
def test_two_processes_train_one_run_that_rank_0_writes_and_that_resumes(tmp_path):
    cohort = phantom.make_cohort(tmp_path / "cohort", n_healthy=2, n_tumor=1, shape=(48, 48, 8), seed=0)
    data, run = tmp_path / "train", tmp_path / "run"
    assert main(["--threads", "1", "prepare", "--layout", "btcv", "--root", str(cohort.btcv_root), "--out", str(data),
                 "--size", "32", "--crop", "volume", "--no-progress"]) == 0
    argv = ["train", "--data", str(data), "--out", str(run), *TINY]
    mp.spawn(_worker, args=(_free_port(), [*argv, "--stop-after", "2"]), nprocs=2, join=True)
    assert json.loads((run / "config.json").read_text())["processes"] == 2
    assert not (run / "segmenter.pt").exists()  # stopped after 2 steps, as an interruption would
    mp.spawn(_worker, args=(_free_port(), [*argv, "--resume"]), nprocs=2, join=True)
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt", "config.json", "history.json", "log.jsonl",
                                                    "segmenter.pt"]  # no lock or temporary left behind
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    events = [(r["event"], r.get("phase"), r.get("step")) for r in records]
    assert events.count(("resume", "restoration", 2)) == 1 and len(events) == len(set(events))  # one writer
    assert ("train", "segmentation", 2) in events  # both phases ran to their end
    weights = torch.load(run / "segmenter.pt", weights_only=True)
    assert weights  # loadable without unpickling objects
