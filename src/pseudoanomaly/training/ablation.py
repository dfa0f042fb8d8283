"""The rows of the paper's ablation (Zhang, Deng & Li, SASHIMI 2023, Table 2) as named configurations.

Each row is a choice of trainer (DRAEM's joint training or the paper's two-phase training), restoration net
(DRAEM's autoencoder or the paper's U-Net) and synthesis (DRAEM's Perlin + texture, or the paper's); no row
needs code of its own:

==============================  ===========  ============  ==========
row                             trainer      restoration   synthesis
==============================  ===========  ============  ==========
``draem``                       joint        autoencoder   draem
``draem+two_phase``             two-phase    autoencoder   draem
``draem+two_phase+synthesis``   two-phase    autoencoder   zhang2023
``draem+synthesis+unet``        joint        U-Net         zhang2023
``full``                        two-phase    U-Net         zhang2023
==============================  ===========  ============  ==========

NOTE: each trainer keeps its own defaults (joint: DRAEM's 700 epochs, L2 + SSIM, lr steps; two-phase: the
paper's 200 + 1 epochs, L1); override them with ``row.build(..., **config_fields)``, or cap the length of every
row alike with a step budget: ``row.build(max_steps=...)`` or ``trainer.fit(..., max_steps=...)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .. import presets
from .._checks import check_choice
from ..models import ReconstructiveAE, RestorationUNet, SegmentationNet
from .config import JointConfig, TrainerConfig, TwoPhaseConfig
from .joint import JointTrainer
from .phase import StepBudget
from .trainer import Trainer
from .two_phase import TwoPhaseTrainer

__all__ = ["AblationRow", "TABLE2_ROWS", "table2_rows", "ablation_row"]

RESTORATION_NETS: dict[str, type[nn.Module]] = {"ae": ReconstructiveAE, "unet": RestorationUNet}
SYNTHESES: dict[str, Callable[[], object]] = {"draem": presets.draem, "zhang2023": presets.zhang2023}
TRAINERS = (TwoPhaseTrainer, JointTrainer)


@dataclass(frozen=True)
class AblationRow:
    """One configuration of the ablation: which trainer, restoration net, synthesis and config.

    Args:
        name: row name (see the module docstring).
        trainer: :class:`TwoPhaseTrainer` or :class:`JointTrainer`.
        restoration: ``"ae"`` (DRAEM's :class:`~pseudoanomaly.models.ReconstructiveAE`) or ``"unet"``
            (:class:`~pseudoanomaly.models.RestorationUNet`).
        synthesis: name of a :mod:`pseudoanomaly.presets` function, ``"draem"`` or ``"zhang2023"``.
        config: the trainer's config.

    Example:
        >>> row = ablation_row("draem+two_phase")
        >>> small = {"base_width": 2, "channel_multipliers": (1, 2)}
        >>> trainer = row.build(restoration_kwargs=small, segmentation_kwargs=small, max_steps=1, progress=False)
        >>> type(trainer).__name__, type(trainer.restoration).__name__, trainer.max_steps
        ('TwoPhaseTrainer', 'ReconstructiveAE', 1)
    """

    name: str
    trainer: type[Trainer]
    restoration: str
    synthesis: str
    config: TrainerConfig

    def __post_init__(self) -> None:
        check_choice("restoration", self.restoration, tuple(RESTORATION_NETS))
        check_choice("synthesis", self.synthesis, tuple(SYNTHESES))
        if self.trainer not in TRAINERS:
            raise ValueError(f"trainer must be TwoPhaseTrainer or JointTrainer, got {self.trainer!r}")
        if not isinstance(self.config, self.trainer.config_class):
            raise ValueError(
                f"config must be a {self.trainer.config_class.__name__} for {self.trainer.__name__}, "
                f"got {type(self.config).__name__}"
            )

    def build(
        self,
        *,
        restoration_kwargs: dict[str, Any] | None = None,
        segmentation_kwargs: dict[str, Any] | None = None,
        max_steps: StepBudget = None,
        **config_fields: Any,
    ) -> Trainer:
        """A ready trainer for this row; the nets are initialised from ``config.seed``.

        Args:
            restoration_kwargs: passed to the restoration net's constructor (e.g. ``base_width``).
            segmentation_kwargs: passed to :class:`~pseudoanomaly.models.SegmentationNet`.
            max_steps: the trainer's step budget (its :attr:`~pseudoanomaly.training.Trainer.max_steps`): an int
                runs every phase exactly this many steps (smoke tests, quick looks), whichever the trainer.
            **config_fields: replace fields of :attr:`config`.

        Returns:
            A :class:`TwoPhaseTrainer` or :class:`JointTrainer` with fresh nets and the row's synthesis.
        """
        config = dataclasses.replace(self.config, **config_fields)
        # Seed the initial weights without touching the caller's global RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            restoration = RESTORATION_NETS[self.restoration](**(restoration_kwargs or {}))
            segmentation = SegmentationNet(**(segmentation_kwargs or {}))
        return self.trainer(restoration, segmentation, SYNTHESES[self.synthesis](), config, max_steps=max_steps)


def table2_rows() -> dict[str, AblationRow]:
    """Every row of Table 2, by name, in the paper's order (fresh default configs on each call).

    Returns:
        ``{name: AblationRow}`` for the names of :data:`TABLE2_ROWS`.

    Example:
        >>> list(table2_rows())
        ['draem', 'draem+two_phase', 'draem+two_phase+synthesis', 'draem+synthesis+unet', 'full']
    """
    rows = [
        AblationRow("draem", JointTrainer, "ae", "draem", JointConfig()),
        AblationRow("draem+two_phase", TwoPhaseTrainer, "ae", "draem", TwoPhaseConfig()),
        AblationRow("draem+two_phase+synthesis", TwoPhaseTrainer, "ae", "zhang2023", TwoPhaseConfig()),
        AblationRow("draem+synthesis+unet", JointTrainer, "unet", "zhang2023", JointConfig()),
        AblationRow("full", TwoPhaseTrainer, "unet", "zhang2023", TwoPhaseConfig()),
    ]
    return {row.name: row for row in rows}


TABLE2_ROWS = tuple(table2_rows())


def ablation_row(name: str) -> AblationRow:
    """The Table 2 row called ``name``.

    Args:
        name: one of :data:`TABLE2_ROWS`.

    Returns:
        The :class:`AblationRow`, with a fresh default config.

    Example:
        >>> row = ablation_row("full")
        >>> row.trainer.__name__, row.restoration, row.synthesis
        ('TwoPhaseTrainer', 'unet', 'zhang2023')
    """
    rows = table2_rows()
    if name not in rows:
        raise ValueError(f"name must be one of {list(rows)}, got {name!r}")
    return rows[name]
