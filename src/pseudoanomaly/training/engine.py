"""The training loop both trainers share: phases of steps, checkpoints, resume, evaluation, logs, DDP.

A trainer is a list of :class:`Phase` s run in order. Each step of a phase: take a batch of healthy images,
synthesize anomalies on the device from the run's synthesis generator, run the phase's objective (see
:mod:`~pseudoanomaly.training.objectives`), stop with :class:`NonFiniteLossError` if the loss is NaN/Inf, and
take an optimizer step.

Reproducibility: a phase's position is its step count ``s``; epoch ``s // steps_per_epoch`` draws its data order
from ``(seed, phase, epoch)`` (:class:`~pseudoanomaly.training.sampler.SeededBatchSampler`), so a resumed run
starts that epoch's order at batch ``s % steps_per_epoch``. The synthesis generator and torch's global RNG
states (one per process) are saved in each checkpoint and restored on resume, so on CPU a resumed run ends with
the weights of an uninterrupted one, bit for bit. Not covered: randomness inside the dataset itself.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from .. import presets
from ..models import AnomalySegmenter
from .batches import check_map_dataset, unpack_train_batch
from .checkpoint import CHECKPOINT_FORMAT, atomic_save, load_checkpoint, load_state_dict_checked
from .config import TrainerConfig
from .distributed import rank_and_world_size, resolve_device
from .evaluation import evaluate_segmenter
from .optim import make_optimizer, make_scheduler
from ._seeds import capture_global_rng, derive_seed, restore_global_rng
from .sampler import SeededBatchSampler

__all__ = ["Trainer", "Phase", "NonFiniteLossError", "CHECKPOINT_NAME", "LOG_NAME"]

CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "log.jsonl"

Synthesize = Callable[..., tuple[Tensor, Tensor]]


class NonFiniteLossError(RuntimeError):
    """Raised when a training loss is NaN or Inf; the step is not taken and no checkpoint is written.

    Args:
        phase: name of the phase.
        step: the phase step (0-based) whose loss was not finite.
        value: the loss value.
        checkpoint: path of the last good checkpoint, or ``None`` when none was written.

    The arguments are kept as attributes of the same names, so a caller can resume from ``err.checkpoint``.

    Example:
        >>> err = NonFiniteLossError("restoration", 3, float("nan"), None)
        >>> err.phase, err.step, err.checkpoint
        ('restoration', 3, None)
        >>> print(err)
        loss is nan at step 3 of phase 'restoration'; training stopped before the optimizer step, no checkpoint
        was written
    """

    def __init__(self, phase: str, step: int, value: float, checkpoint: Path | None) -> None:
        self.phase, self.step, self.value, self.checkpoint = phase, step, value, checkpoint
        kept = f"the last good checkpoint is {str(checkpoint)!r}" if checkpoint else "no checkpoint was written"
        super().__init__(
            f"loss is {value} at step {step} of phase {phase!r}; training stopped before the optimizer step, {kept}"
        )


@dataclass
class Phase:
    """One stage of training: an objective, the nets it trains and the nets it freezes, and its length.

    Args:
        name: shown in logs, history and checkpoints.
        objective: ``objective(clean, augmented, masks) -> {"loss": ..., ...}``.
        trainable: nets put in train mode whose parameters (those with ``requires_grad``) are optimized.
        frozen: nets put in eval mode with ``requires_grad=False`` for the whole phase.
        epochs: length in epochs, unless ``max_steps`` is set.
        max_steps: length in optimizer steps, overriding ``epochs``.
        evaluates: run the evaluation hook in this phase (it trains the segmentation net).

    Example:
        >>> from torch import nn
        >>> net = nn.Conv2d(1, 1, 3, padding=1)
        >>> Phase("warm-up", nn.Identity(), trainable=(net,), epochs=2).total_steps(steps_per_epoch=10)
        20
        >>> Phase("warm-up", nn.Identity(), trainable=(net,), epochs=2, max_steps=5).total_steps(10)
        5
    """

    name: str
    objective: nn.Module
    trainable: tuple[nn.Module, ...]
    frozen: tuple[nn.Module, ...] = ()
    epochs: int = 0
    max_steps: int | None = None
    evaluates: bool = False

    def total_steps(self, steps_per_epoch: int) -> int:
        return self.max_steps if self.max_steps is not None else self.epochs * steps_per_epoch


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
            ``None`` uses the preset named by :attr:`default_synthesis`.
        config: the subclass's config dataclass; its defaults when ``None``.

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
    # Name of the pseudoanomaly.presets function used when no synthesis is given.
    default_synthesis: ClassVar[str] = "zhang2023"

    def __init__(
        self,
        restoration: nn.Module,
        segmentation: nn.Module,
        synthesis: object | None = None,
        config: TrainerConfig | None = None,
    ) -> None:
        config = self.config_class() if config is None else config
        if not isinstance(config, self.config_class):
            raise TypeError(f"config must be a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config
        self.restoration, self.segmentation = restoration, segmentation
        self.synthesis = getattr(presets, self.default_synthesis)() if synthesis is None else synthesis
        self._synthesize = _synthesis_fn(self.synthesis)
        self.rank, self.world_size = rank_and_world_size()
        self.device = resolve_device(config.device)
        self.out_dir = Path(config.out_dir) if config.out_dir is not None else None
        self.checkpoint_path = self.out_dir / CHECKPOINT_NAME if self.out_dir is not None else None
        self.history: list[dict[str, Any]] = []
        self.phases = self.build_phases()
        self._generator: torch.Generator | None = None

    def build_phases(self) -> list[Phase]:
        """The phases of this trainer, in order."""
        raise NotImplementedError

    # -- public API -----------------------------------------------------------------------------------------
    def fit(
        self, train_data: object, val_data: object | None = None, *, resume: str | os.PathLike[str] | None = None
    ) -> list[dict[str, Any]]:
        """Train every phase; return the evaluation history.

        A fresh run seeds torch's global RNG (dropout) from ``config.seed``; a resumed one restores it.

        Args:
            train_data: map-style dataset (or tensor ``(N, C, H, W)``) of healthy images; item layouts in
                :mod:`pseudoanomaly.training.batches`. The last incomplete batch of each epoch is dropped.
            val_data: optional map-style dataset of ``(image, foreground, label)`` for the evaluation hook.
            resume: a checkpoint written by this trainer with the same config (output settings aside), dataset
                length and world size; training continues where it stopped. The log gets a ``"resume"`` record:
                steps the interrupted run logged after its last checkpoint appear twice.

        Returns:
            ``[{"phase", "epoch", "step", "dice", "auroc"}, ...]`` (rank 0's under ``torch.distributed``).
        """
        check_map_dataset("train_data", train_data)
        if val_data is not None:
            check_map_dataset("val_data", val_data)
        cfg = self.config
        if cfg.batch_size % self.world_size:
            raise ValueError(f"batch_size must be divisible by the world size {self.world_size}, got {cfg.batch_size}")
        steps_per_epoch = len(train_data) // cfg.batch_size
        if steps_per_epoch == 0:
            raise ValueError(f"train_data has {len(train_data)} samples, fewer than batch_size={cfg.batch_size}")
        self._to_device()
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
            resumed = saved if index == start_phase and start_step > 0 else None
            self._run_phase(index, phase, train_data, val_data, steps_per_epoch, start_step if resumed else 0, resumed)
        return self.history

    def export(self) -> AnomalySegmenter:
        """The trained pair as an :class:`~pseudoanomaly.models.AnomalySegmenter` in eval mode (shares weights)."""
        return AnomalySegmenter(self.restoration, self.segmentation).eval()

    # -- one phase ------------------------------------------------------------------------------------------
    def _run_phase(
        self,
        index: int,
        phase: Phase,
        data: object,
        val_data: object | None,
        steps_per_epoch: int,
        step: int,
        resumed: dict[str, Any] | None,
    ) -> None:
        total = phase.total_steps(steps_per_epoch)
        if total == 0:
            return
        optimizer, scheduler = self._enter(phase, total)
        if resumed is not None:
            optimizer.load_state_dict(resumed["optimizer"])
            if scheduler is not None:
                scheduler.load_state_dict(resumed["scheduler"])
        model = phase.objective
        if self.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = DistributedDataParallel(phase.objective, device_ids=ids)
        bar = self._progress_bar(phase.name, total, step)
        window: list[dict[str, float]] = []
        try:
            while step < total:
                epoch, position = divmod(step, steps_per_epoch)
                for batch in self._loader(data, index, epoch, position):
                    lr = optimizer.param_groups[0]["lr"]  # the lr this step uses (the scheduler moves it after)
                    values = self._train_step(model, optimizer, scheduler, phase, batch, step)
                    step += 1
                    window.append(values)
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{_mean(window, 'loss'):.4g}", refresh=False)
                    if step % self.config.log_every == 0 or step == total:
                        self._log({"event": "train", "phase": phase.name, "epoch": epoch, "step": step, "lr": lr,
                                   **_means(window)})
                        window = []
                    if phase.evaluates and val_data is not None and self._eval_due(step, steps_per_epoch, total):
                        self._evaluate(phase.name, step, steps_per_epoch, val_data)
                    if step == total:
                        break
                    epoch_end = step % steps_per_epoch == 0
                    every = self.config.checkpoint_every
                    if epoch_end or (every and step % every == 0):
                        self._save(index, step, steps_per_epoch, optimizer, scheduler)
        finally:
            if bar is not None:
                bar.close()
        # Gradients of a finished phase are stale (and, for a frozen net, would outlive it): free them.
        optimizer.zero_grad(set_to_none=True)
        # The next phase starts fresh (new optimizer), so its checkpoint holds no optimizer state.
        self._save(index + 1, 0, steps_per_epoch, None, None)

    def _enter(self, phase: Phase, total: int) -> tuple[torch.optim.Optimizer, Any]:
        for net in phase.frozen:
            net.eval()
            net.requires_grad_(False)
        for net in phase.trainable:
            net.train()
        params = [p for net in phase.trainable for p in net.parameters() if p.requires_grad]
        if not params:
            raise ValueError(f"phase {phase.name!r} has no parameters with requires_grad=True to train")
        optimizer = make_optimizer(self.config, params)
        return optimizer, make_scheduler(self.config, optimizer, total)

    def _train_step(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        phase: Phase,
        batch: object,
        step: int,
    ) -> dict[str, float]:
        clean, foreground = unpack_train_batch(batch, self.device)
        with torch.no_grad():
            augmented, masks = self._synthesize(clean, foreground, generator=self._generator)
        with self._autocast():
            losses = model(clean, augmented, masks)
        values = self._reduce_for_logging(losses)
        if not math.isfinite(values["loss"]):
            written = self.checkpoint_path if self.checkpoint_path and self.checkpoint_path.exists() else None
            raise NonFiniteLossError(phase.name, step, values["loss"], written)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        return values

    def _reduce_for_logging(self, losses: dict[str, Tensor]) -> dict[str, float]:
        """Loss values averaged over processes, so every process sees the same (non-)finite loss and stops together."""
        names = list(losses)
        stacked = torch.stack([losses[k].detach().float() for k in names])
        if self.world_size > 1:
            dist.all_reduce(stacked)
            stacked /= self.world_size
        return dict(zip(names, stacked.tolist()))

    def _loader(self, data: object, phase_index: int, epoch: int, start: int) -> DataLoader:
        cfg = self.config
        sampler = SeededBatchSampler(
            len(data), cfg.batch_size, seed=derive_seed(cfg.seed, "data", phase_index), epoch=epoch, start=start,
            rank=self.rank, world_size=self.world_size,
        )
        # An explicit generator keeps the loader from drawing its worker seed from torch's global RNG.
        workers = torch.Generator().manual_seed(derive_seed(cfg.seed, "workers", phase_index, epoch, self.rank))
        return DataLoader(data, batch_sampler=sampler, num_workers=cfg.num_workers,
                          pin_memory=self.device.type == "cuda", generator=workers)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.config.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # -- evaluation, logs, progress -------------------------------------------------------------------------
    def _eval_due(self, step: int, steps_per_epoch: int, total: int) -> bool:
        every = self.config.eval_every
        if step == total:
            return True
        if every == 0:
            return False
        if self.config.eval_unit == "step":
            return step % every == 0
        return step % steps_per_epoch == 0 and (step // steps_per_epoch) % every == 0

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

    def _log(self, record: dict[str, Any]) -> None:
        if self.rank != 0 or self.out_dir is None:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        # NaN/Inf become null: strict JSON readers reject them (e.g. AUROC of a single-class validation set).
        record = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
        with open(self.out_dir / LOG_NAME, "a") as f:
            f.write(json.dumps({"time": time.time(), **record}, allow_nan=False) + "\n")

    def _progress_bar(self, name: str, total: int, initial: int) -> Any:
        if not self.config.progress or self.rank != 0:
            return None
        try:
            from tqdm import tqdm
        except ImportError:  # tqdm is optional; training runs without a bar.
            return None
        return tqdm(total=total, initial=initial, desc=name, dynamic_ncols=True)

    # -- checkpoints ----------------------------------------------------------------------------------------
    def _save(
        self, phase: int, step: int, steps_per_epoch: int, optimizer: torch.optim.Optimizer | None, scheduler: Any
    ) -> None:
        """Write the state after ``step`` steps of phase ``phase`` (collective under torch.distributed)."""
        if self.checkpoint_path is None:
            return
        rng = {"torch": capture_global_rng(self.device), "synthesis": self._generator.get_state()}
        per_rank = [rng]
        if self.world_size > 1:
            per_rank = [None] * self.world_size
            dist.all_gather_object(per_rank, rng)
        if self.rank != 0:
            return
        name = self.phases[phase].name if phase < len(self.phases) else "done"
        state = {
            "format": CHECKPOINT_FORMAT,
            "trainer": type(self).__name__,
            "config": self.config.to_dict(),
            "progress": {"phase": phase, "phase_name": name, "step": step, "epoch": step // steps_per_epoch,
                         "batch": step % steps_per_epoch, "steps_per_epoch": steps_per_epoch,
                         "world_size": self.world_size},
            "models": {"restoration": self.restoration.state_dict(), "segmentation": self.segmentation.state_dict()},
            "optimizer": optimizer.state_dict() if optimizer is not None else None,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            # The data order needs no state of its own: it is a function of these numbers (see SeededBatchSampler).
            "rng": {"torch": [r["torch"] for r in per_rank], "synthesis": [r["synthesis"] for r in per_rank],
                    "data_order": {"seed": self.config.seed, "phase": phase, "epoch": step // steps_per_epoch,
                                   "batch": step % steps_per_epoch}},
            "history": self.history,
        }
        atomic_save(state, self.checkpoint_path)

    def _load(self, path: str | os.PathLike[str], steps_per_epoch: int) -> dict[str, Any]:
        saved = load_checkpoint(path)
        if saved.get("format") != CHECKPOINT_FORMAT or saved.get("trainer") != type(self).__name__:
            raise ValueError(
                f"resume={str(path)!r} is a checkpoint of {saved.get('trainer')!r} (format {saved.get('format')}), "
                f"not of {type(self).__name__} (format {CHECKPOINT_FORMAT})"
            )
        missing = [k for k in ("config", "progress", "models", "optimizer", "scheduler", "rng", "history")
                   if k not in saved]
        if missing:
            raise ValueError(f"resume={str(path)!r} is an incomplete checkpoint: no {', '.join(missing)}")
        diff = self.config.trajectory_diff(saved["config"])
        if diff:
            detail = ", ".join(f"{k}: checkpoint {a!r} vs config {b!r}" for k, (a, b) in diff.items())
            raise ValueError(f"resume={str(path)!r} was written with a different config ({detail})")
        progress = saved["progress"]
        if progress["steps_per_epoch"] != steps_per_epoch:
            raise ValueError(
                f"resume={str(path)!r} was trained with {progress['steps_per_epoch']} steps per epoch, this "
                f"train_data gives {steps_per_epoch}: the data order would not match"
            )
        if progress["world_size"] != self.world_size:
            raise ValueError(f"resume={str(path)!r} was written by {progress['world_size']} processes, "
                             f"this run has {self.world_size}")
        for name in ("restoration", "segmentation"):
            load_state_dict_checked(getattr(self, name), saved["models"].get(name), path, name)
        # Phases before the saved one are done: apply their freezing so later phases see the same nets.
        for phase in self.phases[: progress["phase"]]:
            for net in phase.frozen:
                net.eval()
                net.requires_grad_(False)
        restore_global_rng(saved["rng"]["torch"][self.rank], self.device)
        self._generator.set_state(saved["rng"]["synthesis"][self.rank])
        self.history = list(saved["history"])
        return saved

    def _to_device(self) -> None:
        for net in (self.restoration, self.segmentation, self.synthesis):
            if isinstance(net, nn.Module):
                net.to(self.device)


def _synthesis_fn(synthesis: object) -> Synthesize:
    if not callable(synthesis):
        raise TypeError(
            "synthesis must be callable as synthesis(images, foreground=None, generator=None) -> (augmented, "
            f"masks), like a pseudoanomaly.PseudoAnomaly; got {type(synthesis).__name__}"
        )
    return synthesis


def _mean(window: list[dict[str, float]], key: str) -> float:
    return sum(v[key] for v in window) / len(window)


def _means(window: list[dict[str, float]]) -> dict[str, float]:
    return {k: _mean(window, k) for k in window[0]}
