"""Training configurations: plain-data dataclasses that every part of a trainer reads.

A config holds only numbers, strings, booleans, ``None`` and tuples of numbers, so it round-trips through
:meth:`TrainerConfig.to_dict` / :meth:`TrainerConfig.from_dict` into a checkpoint that loads with
``torch.load(..., weights_only=True)`` and into JSON logs. Construction validates every field and raises
``ValueError`` naming the field and the value received.

Defaults follow the paper (Zhang, Deng & Li, "Unsupervised Liver Tumor Segmentation with Pseudo Anomaly
Synthesis", SASHIMI 2023, Sec. 3.1) for :class:`TwoPhaseConfig` and DRAEM (Zavrtanik et al., ICCV 2021, and
its reference code github.com/VitjanZ/DRAEM) for :class:`JointConfig`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from .._checks import (
    check_choice,
    check_int_at_least,
    check_non_negative,
    check_positive,
)

__all__ = ["TrainerConfig", "TwoPhaseConfig", "JointConfig", "OPTIMIZERS", "SCHEDULERS", "RESTORATION_LOSSES"]

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "multistep", "cosine")
RESTORATION_LOSSES = ("l1", "l2", "l2+ssim")
PRECISIONS = ("fp32", "bf16")
EVAL_UNITS = ("epoch", "step")

# Both papers train with Adam at lr 1e-4 and batch size 8.
PAPER_LR = 1e-4
PAPER_BATCH_SIZE = 8
# Zhang et al. 2023, Sec. 3.1: restoration 200 epochs, then the segmentation net for 1 epoch only, because
# training it longer overfits to the synthetic anomalies (their Fig. 3).
PAPER_RESTORATION_EPOCHS = 200
PAPER_SEGMENTATION_EPOCHS = 1
# Their Fig. 3 tracks Dice/AUROC every 5 epochs of phase 2.
PAPER_EVAL_EVERY = 5
# DRAEM trains 700 epochs and multiplies the lr by 0.2 at 80% and 90% of training (MultiStepLR in train_DRAEM.py).
DRAEM_EPOCHS = 700
DRAEM_MILESTONES = (0.8, 0.9)
DRAEM_GAMMA = 0.2
# Focal loss as in DRAEM's segmentation head (Lin et al. 2017 gamma; DRAEM keeps alpha = 1).
FOCAL_ALPHA = 1.0
FOCAL_GAMMA = 2.0

# Fields that may differ between a checkpoint and the run resuming it: they change where output goes or how it
# is shown, never the trajectory of the weights.
NON_TRAJECTORY_FIELDS = frozenset({"out_dir", "progress", "checkpoint_every", "log_every", "num_workers"})


@dataclass
class TrainerConfig:
    """Settings shared by every trainer.

    Args:
        seed: seeds the data order, the synthesis generator and torch's global RNG (dropout) of a fresh run.
        batch_size: global batch size; under ``torch.distributed`` each of W processes takes ``batch_size / W``.
        lr: learning rate of every phase.
        optimizer: one of ``"adam"``, ``"adamw"``, ``"sgd"``.
        weight_decay: optimizer weight decay.
        momentum: SGD momentum (ignored by Adam/AdamW).
        scheduler: ``"none"``, ``"multistep"`` (multiply the lr by ``gamma`` at each of ``milestones``, given as
            fractions of the phase's steps) or ``"cosine"`` (cosine decay to 0 over the phase); restarts with
            each phase.
        milestones: fractions in (0, 1) of a phase's steps for ``"multistep"``.
        gamma: lr factor at each milestone.
        focal_alpha: focal loss alpha.
        focal_gamma: focal loss gamma.
        eval_every: run the evaluation hook every this many ``eval_unit`` of each phase that trains the
            segmentation net (and at its end); 0 evaluates only at the end. Needs ``val_data`` in ``fit``.
        eval_unit: ``"epoch"`` or ``"step"``.
        checkpoint_every: also write a checkpoint every this many optimizer steps of a phase (0: only at epoch
            and phase ends). Needs ``out_dir``.
        log_every: write a JSON-lines training record every this many steps.
        out_dir: directory of ``checkpoint.pt`` and ``log.jsonl`` (a ``str`` or ``os.PathLike``, kept as
            ``str``); ``None`` writes nothing.
        progress: show a tqdm progress bar with the running loss (silently off when tqdm is not installed).
        precision: ``"fp32"`` or ``"bf16"`` (autocast to bfloat16, on CUDA or a CPU). On a CPU with native
            bfloat16 (AVX-512 BF16 or AMX; a warning says when it has neither) the released nets' steps took
            2.4-2.5x less time with ``channels_last``, and with it the ``cpu`` preset's whole training took
            2.17x less than the default did before (230 against 498 s on the dev VM's CPU, with freed memory
            retained; ``benchmarks/RESULTS.md``). The nets then compute in bfloat16, so results differ from fp32
            training beyond rounding; off by default.
        flush_denormal: on a CPU, train with subnormal floats (below 1.2e-38) flushed to zero on every
            :mod:`torch` thread: where torch's threads come from GNU OpenMP (Linux), the caller's thread and its
            workers for the duration of ``fit``, set back afterwards; elsewhere the threads of a dedicated
            thread. The released nets' gradients hold such values and x86 cores compute with them many times
            slower: a phase-1 step of the released nets is 4x faster flushed. The results differ from
            unflushed ones at most by that rounding. Ignored on other devices.
        channels_last: keep the nets' weights and activations in the channels-last memory format, which
            oneDNN's CPU convolutions (and CUDA's tensor cores) run faster: on the dev VM's CPU the released
            nets' steps took 1.2-1.45x less time, the ``cpu`` preset's steps 1.33x
            (``benchmarks/RESULTS.md``). The convolutions then sum in another order, so the results differ from
            the default's by float rounding; off by default.
        device: where the models, the synthesis and the batches live (``"cuda"`` means this process's
            ``cuda:LOCAL_RANK`` under torchrun).
        num_workers: DataLoader worker processes.

    Example:
        >>> cfg = TrainerConfig(batch_size=4, lr=3e-4)
        >>> TrainerConfig.from_dict(cfg.to_dict()) == cfg
        True
        >>> TrainerConfig(batch_size=0)
        Traceback (most recent call last):
            ...
        ValueError: batch_size must be an integer >= 1, got 0
    """

    seed: int = 0
    batch_size: int = PAPER_BATCH_SIZE
    lr: float = PAPER_LR
    optimizer: str = "adam"
    weight_decay: float = 0.0
    momentum: float = 0.0
    scheduler: str = "none"
    milestones: tuple[float, ...] = ()
    gamma: float = DRAEM_GAMMA
    focal_alpha: float = FOCAL_ALPHA
    focal_gamma: float = FOCAL_GAMMA
    eval_every: int = PAPER_EVAL_EVERY
    eval_unit: str = "epoch"
    checkpoint_every: int = 0
    log_every: int = 10
    out_dir: str | None = None
    progress: bool = True
    precision: str = "fp32"
    flush_denormal: bool = True
    channels_last: bool = False
    device: str = "cpu"
    num_workers: int = 0

    def __post_init__(self) -> None:
        check_int_at_least("seed", self.seed, 0)
        check_int_at_least("batch_size", self.batch_size, 1)
        check_positive("lr", self.lr)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_non_negative("weight_decay", self.weight_decay)
        check_non_negative("momentum", self.momentum)
        check_choice("scheduler", self.scheduler, SCHEDULERS)
        self.milestones = tuple(self.milestones)
        if not all(isinstance(m, (int, float)) and 0 < m < 1 for m in self.milestones) or list(
            self.milestones
        ) != sorted(self.milestones):
            raise ValueError(f"milestones must be increasing fractions in (0, 1), got {self.milestones!r}")
        check_positive("gamma", self.gamma)
        check_non_negative("focal_alpha", self.focal_alpha)
        check_non_negative("focal_gamma", self.focal_gamma)
        check_int_at_least("eval_every", self.eval_every, 0)
        check_choice("eval_unit", self.eval_unit, EVAL_UNITS)
        check_int_at_least("checkpoint_every", self.checkpoint_every, 0)
        check_int_at_least("log_every", self.log_every, 1)
        if isinstance(self.out_dir, os.PathLike):
            self.out_dir = os.fspath(self.out_dir)  # stored as str: the config goes into JSON logs and checkpoints
        if self.out_dir is not None and not isinstance(self.out_dir, str):
            raise ValueError(f"out_dir must be a path (str or os.PathLike) or None, got {self.out_dir!r}")
        check_choice("precision", self.precision, PRECISIONS)
        if not isinstance(self.flush_denormal, bool):
            raise ValueError(f"flush_denormal must be True or False, got {self.flush_denormal!r}")
        if not isinstance(self.channels_last, bool):
            raise ValueError(f"channels_last must be True or False, got {self.channels_last!r}")
        if not isinstance(self.device, str):
            raise ValueError(f"device must be a str such as 'cpu' or 'cuda', got {self.device!r}")
        if self.precision == "bf16" and not self.device.startswith(("cuda", "cpu", "auto")):
            raise ValueError(f"precision='bf16' needs a CUDA device or a CPU, got device={self.device!r}")
        check_int_at_least("num_workers", self.num_workers, 0)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data copy (tuples become lists) for checkpoints and JSON logs."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainerConfig:
        """Rebuild a config from :meth:`to_dict` output (e.g. ``checkpoint["config"]``).

        Args:
            data: field name -> value; unknown names raise ``ValueError``.
        """
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s) {unknown}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def trajectory_diff(self, other: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
        """Fields, other than output settings, whose value differs from ``other`` (a :meth:`to_dict`)."""
        mine = self.to_dict()
        # A field the other config lacks is newer than its checkpoint: compare it at its default, so a checkpoint
        # of an earlier version resumes (of such fields, flush_denormal moves only subnormal roundings).
        defaults = type(self)().to_dict()
        theirs = {k: other.get(k, defaults.get(k)) for k in set(mine) | set(other)}
        keys = set(theirs) - NON_TRAJECTORY_FIELDS
        return {k: (theirs[k], mine.get(k)) for k in sorted(keys) if mine.get(k) != theirs[k]}


@dataclass
class TwoPhaseConfig(TrainerConfig):
    """The paper's two-phase training (see :class:`TrainerConfig` for the shared fields).

    Args:
        restoration_epochs: phase 1 epochs (paper: 200).
        restoration_max_steps: if set, phase 1 runs exactly this many steps instead of ``restoration_epochs``.
        segmentation_epochs: phase 2 epochs (paper: 1).
        segmentation_max_steps: if set, phase 2 runs exactly this many steps instead of
            ``segmentation_epochs``.
        restoration_loss: ``"l1"`` (paper), ``"l2"`` or ``"l2+ssim"`` (DRAEM) between restored and clean image.

    Example:
        >>> TwoPhaseConfig(restoration_epochs=2, segmentation_max_steps=10).segmentation_max_steps
        10
    """

    restoration_epochs: int = PAPER_RESTORATION_EPOCHS
    restoration_max_steps: int | None = None
    segmentation_epochs: int = PAPER_SEGMENTATION_EPOCHS
    segmentation_max_steps: int | None = None
    restoration_loss: str = "l1"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int_at_least("restoration_epochs", self.restoration_epochs, 0)
        check_int_at_least("segmentation_epochs", self.segmentation_epochs, 0)
        for name in ("restoration_max_steps", "segmentation_max_steps"):
            if getattr(self, name) is not None:
                check_int_at_least(name, getattr(self, name), 0)
        check_choice("restoration_loss", self.restoration_loss, RESTORATION_LOSSES)


@dataclass
class JointConfig(TrainerConfig):
    """DRAEM's joint training of both nets (see :class:`TrainerConfig` for the shared fields).

    Args:
        epochs: training epochs (DRAEM: 700).
        max_steps: if set, train exactly this many steps instead of ``epochs``.
        restoration_loss: reconstruction loss, ``"l2+ssim"`` (DRAEM), ``"l2"`` or ``"l1"``.

    Example:
        >>> JointConfig().scheduler, JointConfig().milestones
        ('multistep', (0.8, 0.9))
    """

    epochs: int = DRAEM_EPOCHS
    max_steps: int | None = None
    restoration_loss: str = "l2+ssim"
    scheduler: str = "multistep"
    milestones: tuple[float, ...] = field(default=DRAEM_MILESTONES)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int_at_least("epochs", self.epochs, 0)
        if self.max_steps is not None:
            check_int_at_least("max_steps", self.max_steps, 0)
        check_choice("restoration_loss", self.restoration_loss, RESTORATION_LOSSES)
