"""The training loop both trainers share: phases of steps, checkpoints, resume, evaluation, logs, DDP.

A trainer is a list of :class:`~pseudoanomaly.training.phase.Phase` s run in order. Each step of a phase: take a
batch of healthy images, synthesize anomalies on the device from the run's synthesis generator, run the phase's
objective (:mod:`~pseudoanomaly.training.objectives`), stop with ``NonFiniteLossError`` if the loss is NaN/Inf,
and take an optimizer step (:mod:`~pseudoanomaly.training.optim`).

Reproducibility: a phase's position is its step count ``s``; epoch ``s // steps_per_epoch`` draws its data order
from ``(seed, phase, epoch)`` (:func:`~pseudoanomaly.training.sampler.epoch_loader`), so a resumed run starts that
epoch's order at batch ``s % steps_per_epoch``. The synthesis generator and torch's global RNG states (one per
process) are saved in each checkpoint (:func:`~pseudoanomaly.training.checkpoint.training_state`) and restored on
resume, so on CPU a resumed run ends with the weights of an uninterrupted one, bit for bit. Not covered:
randomness inside the dataset itself.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from .. import presets
from ..models import AnomalySegmenter
from ._denormals import call_flushing_denormals
from ._seeds import capture_global_rng, derive_seed, restore_global_rng
from .batches import check_map_dataset, check_synthesis, fold_slabs, unpack_train_batch
from .checkpoint import atomic_save, load_state_dict_checked, read_training_state, training_state
from .config import TrainerConfig
from .distributed import average_over_processes, data_parallel, gather, process_device, rank_and_world_size
from .evaluation import evaluate_segmenter, evaluation_due
from .optim import make_optimizer, make_scheduler
from .phase import NonFiniteLossError, Phase, StepBudget, check_step_budget, phase_length
from .runlog import RunLog, progress_bar
from .sampler import epoch_loader, steps_in_an_epoch

__all__ = ["Trainer", "CHECKPOINT_NAME", "LOG_NAME"]

CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "log.jsonl"


class Trainer:
    """Base class of :class:`TwoPhaseTrainer` and :class:`JointTrainer`; subclasses only define their phases.

    With a ``torch.distributed`` process group initialised before ``fit`` (launch with ``torchrun`` and call
    :func:`~pseudoanomaly.training.init_distributed`), each of W processes trains on ``batch_size / W``
    samples of every global batch through ``DistributedDataParallel``; rank 0 evaluates, logs and writes
    checkpoints. Averaged gradients equal the single-process ones except for BatchNorm, whose statistics are
    per process (DRAEM's nets use it; the paper's restoration U-Net uses GroupNorm).

    Args:
        restoration: restoration net, ``(B, C, H, W) -> (B, C, H, W)``.
        segmentation: segmentation net, ``cat([restored, image]) (B, 2C, H, W) -> logits (B, 2, H, W)``.
        synthesis: a :class:`~pseudoanomaly.PseudoAnomaly`, or any callable ``synthesis(images,
            foreground=None, generator=None) -> (augmented, masks)`` drawing its randomness from ``generator``;
            ``None`` calls the class attribute ``default_synthesis``, a function of no arguments (a subclass
            sets e.g. ``default_synthesis = staticmethod(presets.draem)``; the base class uses the paper's).
        config: the subclass's config dataclass; its defaults when ``None``.
        max_steps: the step budget :meth:`fit` uses when not given one (kept as :attr:`max_steps`).

    Example:
        A trainer is its list of phases. One that only trains a restoration net, for two steps:

        >>> from torch import nn
        >>> from pseudoanomaly import PseudoAnomaly
        >>> from pseudoanomaly.masks import BlobMask
        >>> class L1(nn.Module):  # an objective: (clean, augmented, masks) -> {"loss": ...}
        ...     def __init__(self, net):
        ...         super().__init__()
        ...         self.net = net
        ...     def forward(self, clean, augmented, masks):
        ...         return {"loss": (self.net(augmented) - clean).abs().mean()}
        >>> class RestoreOnly(Trainer):
        ...     def build_phases(self):
        ...         return [Phase("restoration", L1(self.restoration), (self.restoration,), max_steps=2)]
        >>> _ = torch.manual_seed(0)
        >>> trainer = RestoreOnly(nn.Conv2d(1, 1, 3, padding=1), nn.Identity(), PseudoAnomaly(BlobMask()),
        ...                       TrainerConfig(batch_size=2, progress=False))
        >>> trainer.fit(torch.rand(4, 1, 16, 16))  # no validation data: no evaluation history
        []
    """

    config_class: ClassVar[type[TrainerConfig]] = TrainerConfig
    # Called with no arguments for the synthesis when none is given.
    default_synthesis: ClassVar[Callable[[], object]] = staticmethod(presets.zhang2023)

    def __init__(self, restoration: nn.Module, segmentation: nn.Module, synthesis: object | None = None,
                 config: TrainerConfig | None = None, *, max_steps: StepBudget = None) -> None:
        config = self.config_class() if config is None else config
        if not isinstance(config, self.config_class):
            raise TypeError(f"config must be a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config
        self.restoration, self.segmentation = restoration, segmentation
        if synthesis is None:
            factory = type(self).default_synthesis  # off the class: a plain function is not bound to self
            if not callable(factory):  # e.g. a preset's name, which default_synthesis used to be
                raise TypeError(f"{type(self).__name__}.default_synthesis must be a function returning a synthesis, "
                                f"e.g. staticmethod(pseudoanomaly.presets.draem); got {factory!r}")
            synthesis = factory()
        self.synthesis = check_synthesis(synthesis)
        self.rank, self.world_size = rank_and_world_size()
        self.device = process_device(config.device)
        self.out_dir = Path(config.out_dir) if config.out_dir is not None else None
        self.checkpoint_path = self.out_dir / CHECKPOINT_NAME if self.out_dir is not None else None
        self.history: list[dict[str, Any]] = []
        self.phases = self.build_phases()
        self.max_steps = check_step_budget(max_steps, self.phases)
        self._log = RunLog(self.out_dir / LOG_NAME if self.out_dir is not None and self.rank == 0 else None)
        self._generator: torch.Generator | None = None
        self._budget: StepBudget = None
        self._steps_left: int | None = None
        self._stop: threading.Event | None = None
        # True when the last fit stopped at its stop_after rather than at the end of training.
        self.stopped_early = False

    def build_phases(self) -> list[Phase]:
        """The phases of this trainer, in order."""
        raise NotImplementedError

    # -- public API -----------------------------------------------------------------------------------------
    def fit(self, train_data: object, val_data: object | None = None, *,
            resume: str | os.PathLike[str] | None = None, max_steps: StepBudget = None,
            stop_after: int | None = None) -> list[dict[str, Any]]:
        """Train every phase; return the evaluation history.

        A fresh run seeds torch's global RNG (dropout) from ``config.seed``; a resumed one restores it.

        Args:
            train_data: map-style dataset (or tensor ``(N, C, H, W)``) of healthy images; item layouts in
                :mod:`pseudoanomaly.training.batches`, slabs ``(C, D, H, W)`` of neighbouring slices among them
                (synthesized in 3-D, trained on as ``D`` slices each). The last incomplete batch of each epoch is
                dropped.
            val_data: optional map-style dataset of ``(image, foreground, label)`` for the evaluation hook.
            resume: a checkpoint written by this trainer with the same config (output settings aside), dataset
                length, world size and ``max_steps``; training continues where it stopped. The log gets a
                ``"resume"`` record: steps the interrupted run logged after its last checkpoint appear twice.
            max_steps: step budget replacing the phase lengths the config gives: an int runs every phase exactly
                that many steps, ``{phase name: steps}`` the phases it names (details in
                :mod:`~pseudoanomaly.training.phase`); ``None``: the trainer's :attr:`max_steps`. Checkpoints
                record it; ``resume`` refuses a different one.
            stop_after: stop as an interruption would after this many optimizer steps of this call, with a
                checkpoint of that step (when ``config.out_dir`` is set): :attr:`stopped_early` is then True and
                ``fit(..., resume=checkpoint)`` continues bit for bit. ``None`` trains to the end.

        Returns:
            ``[{"phase", "epoch", "step", "dice", "auroc"}, ...]`` (rank 0's under ``torch.distributed``).
        """
        check_map_dataset("train_data", train_data)
        if val_data is not None:
            check_map_dataset("val_data", val_data)
        cfg = self.config
        steps_per_epoch = steps_in_an_epoch(len(train_data), cfg.batch_size, self.world_size)
        self._budget = self.max_steps if max_steps is None else check_step_budget(max_steps, self.phases)
        if stop_after is not None and (isinstance(stop_after, bool) or not isinstance(stop_after, int)
                                       or stop_after < 1):
            raise ValueError(f"stop_after must be a positive integer or None, got {stop_after!r}")
        self._steps_left, self.stopped_early = stop_after, False
        if cfg.precision == "bf16" and self.device.type == "cpu" and not _native_cpu_bf16():
            warnings.warn("precision='bf16' on a CPU without AVX-512 BF16 or AMX: bfloat16 is emulated there and "
                          "may train slower than fp32", RuntimeWarning, stacklevel=2)
        if self.device.type == "cpu" and cfg.flush_denormal:
            return call_flushing_denormals(lambda stop: self._fit(train_data, val_data, resume, steps_per_epoch, stop))
        return self._fit(train_data, val_data, resume, steps_per_epoch, None)

    def export(self) -> AnomalySegmenter:
        """The trained pair as an :class:`~pseudoanomaly.models.AnomalySegmenter` in eval mode (shares weights)."""
        return AnomalySegmenter(self.restoration, self.segmentation).eval()

    # -- the run --------------------------------------------------------------------------------------------
    def _fit(self, train_data: object, val_data: object | None, resume: str | os.PathLike[str] | None,
             steps_per_epoch: int, stop: threading.Event | None) -> list[dict[str, Any]]:
        """:meth:`fit` after its checks; ``stop``, once set, raises ``KeyboardInterrupt`` before the next step."""
        cfg = self.config
        self._stop = stop
        for net in (self.restoration, self.segmentation, self.synthesis):
            if isinstance(net, nn.Module):
                net.to(self.device)
        if cfg.channels_last:
            # 4-D weights (the convolutions') in channels-last order; the activations follow them. A batch of one
            # channel is the same in both orders, so the batches need no conversion.
            for net in (self.restoration, self.segmentation):
                net.to(memory_format=torch.channels_last)
        self._generator = torch.Generator(self.device)
        if resume is None:
            start_phase, start_step, saved = 0, 0, None
            torch.manual_seed(derive_seed(cfg.seed, "torch", self.rank))
            self._generator.manual_seed(derive_seed(cfg.seed, "synthesis", self.rank))
            self.history = []
        else:
            saved = self._load(resume, steps_per_epoch)
            start_phase, start_step = saved["progress"]["phase"], saved["progress"]["step"]
            # Steps logged after that checkpoint by the interrupted run are logged again from here on.
            self._log({"event": "resume", "phase": saved["progress"]["phase_name"], "step": start_step,
                       "checkpoint": str(resume)})
        for index, phase in enumerate(self.phases):
            if index < start_phase:
                continue
            total = phase_length(phase, steps_per_epoch, self._budget)
            if self._steps_left == 0 and total > 0:  # the stop fell on the end of the previous phase
                self.stopped_early = True
                break
            resumed = saved if index == start_phase and start_step > 0 else None
            if self._run_phase(index, phase, total, train_data, val_data, steps_per_epoch,
                               start_step if resumed else 0, resumed):
                self.stopped_early = True
                break
        return self.history

    # -- one phase ------------------------------------------------------------------------------------------
    def _run_phase(self, index: int, phase: Phase, total: int, data: object, val_data: object | None,
                   steps_per_epoch: int, step: int, resumed: dict[str, Any] | None) -> bool:
        """Train one phase from ``step``; True when ``stop_after`` stopped it before its end."""
        if total == 0:
            return False
        optimizer, scheduler = self._enter(phase, total)
        if resumed is not None:
            optimizer.load_state_dict(resumed["optimizer"])
            if scheduler is not None:
                scheduler.load_state_dict(resumed["scheduler"])
        model = data_parallel(phase.objective, self.device, self.world_size)
        bar = progress_bar(phase.name, total, step) if self.config.progress and self.rank == 0 else None
        window: list[dict[str, float]] = []
        try:
            while step < total:
                epoch, position = divmod(step, steps_per_epoch)
                for batch in epoch_loader(data, self.config.batch_size, self.config.seed, index, epoch, position,
                                          self.rank, self.world_size, self.config.num_workers,
                                          pin_memory=self.device.type == "cuda"):
                    if self._stop is not None and self._stop.is_set():  # the caller was interrupted
                        raise KeyboardInterrupt
                    lr = optimizer.param_groups[0]["lr"]  # the lr this step uses (the scheduler moves it after)
                    values = self._train_step(model, optimizer, scheduler, phase, batch, step)
                    step += 1
                    window.append(values)
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{_mean(window, 'loss'):.4g}", refresh=False)
                    if step % self.config.log_every == 0 or step == total:
                        self._log({"event": "train", "phase": phase.name, "epoch": epoch, "step": step, "lr": lr,
                                   **{k: _mean(window, k) for k in window[0]}})
                        window = []
                    if phase.evaluates and val_data is not None and evaluation_due(
                            step, steps_per_epoch, total, self.config.eval_every, self.config.eval_unit):
                        self._evaluate(phase.name, step, steps_per_epoch, val_data)
                    if self._steps_left is not None:
                        self._steps_left -= 1
                    if step == total:
                        break
                    epoch_end = step % steps_per_epoch == 0
                    every = self.config.checkpoint_every
                    if epoch_end or (every and step % every == 0) or self._steps_left == 0:
                        self._save(index, step, steps_per_epoch, optimizer, scheduler)
                    if self._steps_left == 0:
                        return True
        finally:
            if bar is not None:
                bar.close()
        # Gradients of a finished phase are stale (and, for a frozen net, would outlive it): free them.
        optimizer.zero_grad(set_to_none=True)
        # The next phase starts fresh (new optimizer), so its checkpoint holds no optimizer state.
        self._save(index + 1, 0, steps_per_epoch, None, None)
        return False

    def _enter(self, phase: Phase, total: int) -> tuple[torch.optim.Optimizer, Any]:
        phase.freeze()
        for net in phase.trainable:
            net.train()
        params = [p for net in phase.trainable for p in net.parameters() if p.requires_grad]
        if not params:
            raise ValueError(f"phase {phase.name!r} has no parameters with requires_grad=True to train")
        optimizer = make_optimizer(self.config, params)
        return optimizer, make_scheduler(self.config, optimizer, total)

    def _train_step(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, phase: Phase, batch: object, step: int
    ) -> dict[str, float]:
        clean, foreground = unpack_train_batch(batch, self.device)
        with torch.no_grad():
            augmented, masks = self.synthesis(clean, foreground, generator=self._generator)
        # slabs: synthesized across their slices above, the nets see the slices
        clean, augmented, masks = fold_slabs(clean), fold_slabs(augmented), fold_slabs(masks)
        with self._autocast():
            losses = model(clean, augmented, masks)
        names = list(losses)
        # Averaged over processes, so that every process sees the same (non-)finite loss and stops together.
        mean = average_over_processes(torch.stack([losses[k].detach().float() for k in names]), self.world_size)
        # NOTE: .tolist() waits for the device every step, on purpose: a NaN/Inf loss must stop training before
        # its optimizer step (NonFiniteLossError promises untouched weights), which needs the value on the host
        # now. One sync per step costs little next to a forward and backward pass of the two nets.
        values = dict(zip(names, mean.tolist()))
        if not math.isfinite(values["loss"]):
            written = self.checkpoint_path if self.checkpoint_path and self.checkpoint_path.exists() else None
            raise NonFiniteLossError(phase.name, step, values["loss"], written)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        return values

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.config.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # -- evaluation -----------------------------------------------------------------------------------------
    def _evaluate(self, phase: str, step: int, steps_per_epoch: int, val_data: object) -> None:
        if self.rank != 0:
            return
        with self._autocast():
            scores = evaluate_segmenter(
                AnomalySegmenter(self.restoration, self.segmentation), val_data, self.config.batch_size, self.device
            )
        record = {"phase": phase, "epoch": step / steps_per_epoch, "step": step, **scores}
        self.history.append(record)
        self._log({"event": "eval", **record})

    # -- checkpoints (layout: checkpoint.training_state) ----------------------------------------------------
    def _save(
        self, phase: int, step: int, steps_per_epoch: int, optimizer: torch.optim.Optimizer | None, scheduler: Any
    ) -> None:
        """Write the state after ``step`` steps of phase ``phase`` (collective under torch.distributed)."""
        if self.checkpoint_path is None:
            return
        rng = {"torch": capture_global_rng(self.device), "synthesis": self._generator.get_state()}
        per_rank = gather(rng, self.world_size)
        if self.rank != 0:
            return
        state = training_state(
            trainer=type(self).__name__, config=self.config, phase=phase,
            phase_name=self.phases[phase].name if phase < len(self.phases) else "done", step=step,
            steps_per_epoch=steps_per_epoch, world_size=self.world_size,
            models={"restoration": self.restoration, "segmentation": self.segmentation},
            optimizer=optimizer, scheduler=scheduler, rng=per_rank, history=self.history, max_steps=self._budget,
        )
        atomic_save(state, self.checkpoint_path)

    def _load(self, path: str | os.PathLike[str], steps_per_epoch: int) -> dict[str, Any]:
        saved = read_training_state(path, trainer=type(self).__name__, config=self.config,
                                    steps_per_epoch=steps_per_epoch, world_size=self.world_size, max_steps=self._budget)
        for name in ("restoration", "segmentation"):
            load_state_dict_checked(getattr(self, name), saved["models"].get(name), path, name)
        # Phases before the saved one are done: apply their freezing so later phases see the same nets.
        for phase in self.phases[: saved["progress"]["phase"]]:
            phase.freeze()
        restore_global_rng(saved["rng"]["torch"][self.rank], self.device)
        self._generator.set_state(saved["rng"]["synthesis"][self.rank])
        self.history = list(saved["history"])
        return saved


def _mean(window: list[dict[str, float]], key: str) -> float:
    return sum(v[key] for v in window) / len(window)


def _native_cpu_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX), as far as torch can tell."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)
