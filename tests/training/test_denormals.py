"""CPU training flushes subnormal floats on every torch thread, leaves the caller's threads alone, and stops on Ctrl-C."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import torch

from pseudoanomaly.training import TwoPhaseTrainer, _denormals
from pseudoanomaly.training._denormals import call_flushing_denormals, flushes_denormals


@pytest.fixture
def two_threads():
    """Two intra-op threads, so that a flag missing on a worker thread shows (the conftest sets one)."""
    torch.set_num_threads(2)
    if torch.get_num_threads() < 2:
        pytest.skip("needs two torch threads")
    if flushes_denormals():
        pytest.skip("this thread already flushes subnormals: nothing to tell apart")
    # set_flush_denormal says whether the CPU has the flag; set it back at once (this thread only)
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush subnormals")
    torch.set_flush_denormal(False)


class Probe:
    """A synthesis that records, at each training step, what the step's thread does with subnormals."""

    def __init__(self, synthesis, on_call=None) -> None:
        self.synthesis, self.on_call = synthesis, on_call
        self.flushed, self.threads = [], []

    def __call__(self, images, foreground=None, generator=None):
        self.flushed.append(flushes_denormals())
        self.threads.append(torch.get_num_threads())
        if self.on_call is not None:
            self.on_call(len(self.flushed))
        return self.synthesis(images, foreground, generator=generator)


@pytest.mark.parametrize("flush", [True, False])
def test_fit_on_cpu_flushes_subnormals_on_every_thread_unless_told_not_to(toy, two_threads, flush):
    probe = Probe(toy.Synthesis())
    trainer = TwoPhaseTrainer(*toy.nets(), synthesis=probe, config=toy.two_phase(flush_denormal=flush))
    trainer.fit(toy.images(8))
    assert probe.flushed == [flush] * 8  # 4 steps per phase
    assert probe.threads == [2] * 8  # the caller's thread count, not the new thread's default
    assert not flushes_denormals()  # the caller's threads are as they were


def test_flushed_training_is_reproducible_and_matches_unflushed_on_these_nets(toy, two_threads):
    def weights(flush):
        trainer = TwoPhaseTrainer(*toy.nets(), synthesis=toy.Synthesis(), config=toy.two_phase(flush_denormal=flush))
        trainer.fit(toy.images(8))
        return [p.detach().clone() for net in (trainer.restoration, trainer.segmentation) for p in net.parameters()]

    first, again = weights(True), weights(True)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    # tiny nets on smooth images meet no subnormal: flushing changes nothing here
    assert all(torch.equal(a, b) for a, b in zip(first, weights(False)))


def test_errors_of_the_training_thread_reach_the_caller(toy):
    def fail(calls):
        if calls == 2:
            raise RuntimeError("synthesis failed at step 2")

    trainer = TwoPhaseTrainer(*toy.nets(), synthesis=Probe(toy.Synthesis(), fail), config=toy.two_phase())
    with pytest.raises(RuntimeError, match="synthesis failed at step 2"):
        trainer.fit(toy.images(8))


def test_ctrl_c_stops_training_after_the_current_step(toy):
    def interrupt(calls):
        if calls == 2:
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C: handled by the main thread, which waits on the trainer

    probe = Probe(toy.Synthesis(), interrupt)
    trainer = TwoPhaseTrainer(*toy.nets(), synthesis=probe,
                              config=toy.two_phase(restoration_epochs=1000))  # 4,000 steps unless stopped
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(toy.images(8))
    calls = len(probe.flushed)
    assert calls < 100  # stopped within a few steps of the signal
    time.sleep(0.5)
    assert len(probe.flushed) == calls  # and nothing goes on in the background


def test_a_call_from_the_training_thread_runs_there_without_waiting_for_itself():
    def outer(stop):
        return threading.current_thread(), call_flushing_denormals(lambda inner: threading.current_thread())

    first, second = call_flushing_denormals(outer)
    assert first is second


def test_with_gnu_openmp_the_work_stays_on_the_callers_thread_and_its_team_flushes(two_threads):
    if _denormals._gomp() is None:
        pytest.skip("torch's threads do not come from GNU OpenMP here: the dedicated thread is used")
    torch.full((1 << 18,), 1.0).mul_(2.0)  # the caller's OpenMP workers exist before the call, as in a real run
    seen = call_flushing_denormals(lambda stop: (threading.current_thread(), flushes_denormals()))
    assert seen == (threading.current_thread(), True)
    assert not flushes_denormals()  # set back on the caller and its workers


def test_without_gnu_openmp_the_dedicated_thread_flushes(two_threads, monkeypatch):
    monkeypatch.setattr(_denormals, "_gomp", lambda: None)
    thread, flushed = call_flushing_denormals(lambda stop: (threading.current_thread(), flushes_denormals()))
    assert thread is not threading.current_thread() and flushed
    assert not flushes_denormals()


def test_the_callers_team_is_set_back_when_the_work_fails(two_threads):
    def fail(stop):
        raise RuntimeError("failed inside")

    with pytest.raises(RuntimeError, match="failed inside"):
        call_flushing_denormals(fail)
    assert not flushes_denormals()
