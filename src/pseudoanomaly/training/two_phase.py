"""Two-phase training of Zhang, Deng & Li (SASHIMI 2023): restoration first, then a light segmentation phase.

Phase 1 trains the restoration net to undo synthesized anomalies (L1 to the clean image, 200 epochs in the
paper). Phase 2 freezes it (eval mode, ``requires_grad=False``: its weights stay bit-identical) and trains the
segmentation net on ``cat([restored, synthesized])`` against the synthetic masks with focal loss, for 1 epoch
in the paper: training it longer overfits to the synthetic anomalies (their Fig. 3).

NOTE: the reference code (github.com/nono-zz/LiTs-Segmentation) trains both phases with Adam, lr 1e-4, batch 8;
those are the :class:`~pseudoanomaly.training.TwoPhaseConfig` defaults.
"""

from __future__ import annotations

from .. import presets
from .config import TwoPhaseConfig
from .objectives import RestorationObjective, SegmentationObjective
from .phase import Phase
from .trainer import Trainer

__all__ = ["TwoPhaseTrainer"]


class TwoPhaseTrainer(Trainer):
    """Train the restoration net, freeze it, then train the segmentation net (the paper's method).

    Args:
        restoration: restoration net (e.g. :class:`~pseudoanomaly.models.RestorationUNet`).
        segmentation: segmentation net (e.g. :class:`~pseudoanomaly.models.SegmentationNet`).
        synthesis: the :class:`~pseudoanomaly.PseudoAnomaly` applied to each batch (any preset or composition);
            ``None`` uses the paper's, ``pseudoanomaly.presets.zhang2023()``.
        config: a :class:`~pseudoanomaly.training.TwoPhaseConfig`; paper defaults when ``None``.

    Example:
        >>> import torch
        >>> from pseudoanomaly.models import RestorationUNet, SegmentationNet
        >>> def synth(images, foreground=None, generator=None):  # stand-in for presets.zhang2023()
        ...     masks = torch.zeros_like(images)
        ...     masks[..., 8:16, 8:16] = 1
        ...     return images + 0.5 * masks, masks
        >>> _ = torch.manual_seed(0)
        >>> trainer = TwoPhaseTrainer(
        ...     RestorationUNet(base_width=4, depth=1), SegmentationNet(base_width=2, channel_multipliers=(1, 2)),
        ...     synth, TwoPhaseConfig(restoration_epochs=1, segmentation_epochs=1, batch_size=2, progress=False))
        >>> trainer.fit(torch.rand(4, 1, 16, 16))
        []
        >>> trainer.restoration.training, next(trainer.restoration.parameters()).requires_grad
        (False, False)
    """

    config_class = TwoPhaseConfig
    default_synthesis = staticmethod(presets.zhang2023)
    config: TwoPhaseConfig

    def build_phases(self) -> list[Phase]:
        cfg = self.config
        return [
            Phase(
                "restoration",
                RestorationObjective(self.restoration, cfg.restoration_loss),
                trainable=(self.restoration,),
                epochs=cfg.restoration_epochs,
                max_steps=cfg.restoration_max_steps,
            ),
            Phase(
                "segmentation",
                SegmentationObjective(self.restoration, self.segmentation, cfg.focal_alpha, cfg.focal_gamma),
                trainable=(self.segmentation,),
                frozen=(self.restoration,),
                epochs=cfg.segmentation_epochs,
                max_steps=cfg.segmentation_max_steps,
                evaluates=True,
            ),
        ]
