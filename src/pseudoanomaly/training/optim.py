"""The optimizer and learning-rate schedule of a phase, built from a :class:`~pseudoanomaly.training.TrainerConfig`.

Each phase of a trainer gets a fresh optimizer over the parameters it trains and a schedule over its own length
(``config.optimizer``, ``config.scheduler`` and the fields they read); a subclass of
:class:`~pseudoanomaly.training.Trainer` that needs them elsewhere builds them the same way.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from .config import TrainerConfig

__all__ = ["make_optimizer", "make_scheduler"]


def make_optimizer(cfg: TrainerConfig, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """``cfg.optimizer`` over ``params``, with ``cfg.lr`` and ``cfg.weight_decay`` (and ``cfg.momentum`` for SGD).

    Example:
        >>> make_optimizer(TrainerConfig(optimizer="sgd", lr=0.1), nn.Linear(2, 1).parameters()).defaults["lr"]
        0.1
    """
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def make_scheduler(
    cfg: TrainerConfig, optimizer: torch.optim.Optimizer, total: int
) -> torch.optim.lr_scheduler.LambdaLR | None:
    """A per-step ``LambdaLR`` for ``cfg.scheduler`` over a phase of ``total`` steps, or ``None`` for a constant lr.

    ``LambdaLR`` because its ``state_dict`` is plain data, so a checkpoint holding it loads with
    ``weights_only=True``; the lr factor is a function of the step alone, so a resumed phase continues it exactly.

    Example:
        >>> opt = make_optimizer(TrainerConfig(lr=1.0), nn.Linear(2, 1).parameters())
        >>> sched = make_scheduler(TrainerConfig(scheduler="multistep", milestones=(0.5,), gamma=0.1), opt, 4)
        >>> for _ in range(2):
        ...     opt.step()
        ...     sched.step()
        >>> opt.param_groups[0]["lr"]
        0.1
    """
    if cfg.scheduler == "none":
        return None
    if cfg.scheduler == "multistep":
        steps = [int(m * total) for m in cfg.milestones]

        def factor(step: int) -> float:
            return cfg.gamma ** sum(step >= s for s in steps)
    else:

        def factor(step: int) -> float:
            return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
