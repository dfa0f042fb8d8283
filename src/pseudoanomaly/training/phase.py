"""A trainer's phases and their lengths: :class:`Phase`, the step budget of ``fit``, and the error that stops one.

A phase's length is what its trainer's config says (``epochs``, or a ``*max_steps`` field), unless
:meth:`~pseudoanomaly.training.Trainer.fit` is given a step budget ``max_steps``:

- an int: every phase runs exactly that many steps (0 skips it);
- ``{phase name: steps}``: the named phases run that many steps, the others their configured length.

The budget only replaces the number of steps: epochs still begin every ``steps_per_epoch`` steps (data order,
checkpoints, evaluation) and the lr schedule spans the phase's steps, so a budgeted run gives the weights of a run
whose config sets the same lengths.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from torch import nn

from .._checks import check_int_at_least

__all__ = ["Phase", "NonFiniteLossError", "StepBudget", "check_step_budget", "phase_length"]

#: ``fit``'s ``max_steps``: steps of every phase, steps by phase name, or ``None`` for the configured lengths.
StepBudget = Union[int, Mapping[str, int], None]


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

    def freeze(self) -> None:
        """Put the :attr:`frozen` nets in eval mode with ``requires_grad=False`` (on entering the phase, and for
        the phases a resumed run skips, so that later phases see the same nets)."""
        for net in self.frozen:
            net.eval()
            net.requires_grad_(False)


def check_step_budget(max_steps: StepBudget, phases: list[Phase]) -> StepBudget:
    """``max_steps`` checked against ``phases``: a mapping must name only phases, and every count be an int >= 0.

    Returns:
        ``max_steps``, a mapping copied to a ``dict``.

    Example:
        >>> phases = [Phase("restoration", nn.Identity(), ()), Phase("segmentation", nn.Identity(), ())]
        >>> check_step_budget({"segmentation": 3}, phases)
        {'segmentation': 3}
        >>> check_step_budget({"joint": 3}, phases)
        Traceback (most recent call last):
        ...
        ValueError: max_steps names ['joint'], not phases of this trainer; its phases: ['restoration', 'segmentation']
    """
    if max_steps is None:
        return None
    if isinstance(max_steps, Mapping):
        names = [phase.name for phase in phases]
        unknown = [name for name in max_steps if name not in names]
        if unknown:
            raise ValueError(f"max_steps names {unknown}, not phases of this trainer; its phases: {names}")
        return {name: check_int_at_least(f"max_steps[{name!r}]", steps, 0) for name, steps in max_steps.items()}
    return check_int_at_least("max_steps", max_steps, 0)


def phase_length(phase: Phase, steps_per_epoch: int, max_steps: StepBudget = None) -> int:
    """Steps of ``phase``: those ``max_steps`` sets for it, else its configured :meth:`Phase.total_steps`.

    Example:
        >>> phase = Phase("joint", nn.Identity(), (), epochs=2)
        >>> phase_length(phase, 10), phase_length(phase, 10, 3), phase_length(phase, 10, {"joint": 0})
        (20, 3, 0)
    """
    if isinstance(max_steps, Mapping):
        return max_steps[phase.name] if phase.name in max_steps else phase.total_steps(steps_per_epoch)
    return max_steps if max_steps is not None else phase.total_steps(steps_per_epoch)


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
