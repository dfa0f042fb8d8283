"""DRAEM's joint training (Zavrtanik, Kristan & Skocaj, ICCV 2021): both nets, one loss, every step.

Each step minimises reconstruction loss (L2 + SSIM) + focal loss of the segmentation of
``cat([restored, synthesized])``; the focal loss also reaches the restoration net. DRAEM trains 700 epochs with
Adam at lr 1e-4, batch 8, multiplying the lr by 0.2 at 80% and 90% of training (reference code
github.com/VitjanZ/DRAEM ``train_DRAEM.py``); those are the :class:`~pseudoanomaly.training.config.JointConfig`
defaults. Zhang et al. (SASHIMI 2023, Table 2) use it as the baseline their two-phase training improves on.

NOTE: DRAEM steps its scheduler per epoch; here milestones are fractions of the steps, the same points in
training.
"""

from __future__ import annotations

from .config import JointConfig
from .engine import Phase, Trainer
from .objectives import JointObjective

__all__ = ["JointTrainer"]


class JointTrainer(Trainer):
    """Train the restoration and segmentation nets together on DRAEM's summed loss.

    Args:
        restoration: restoration net (DRAEM: :class:`~pseudoanomaly.models.ReconstructiveAE`).
        segmentation: segmentation net (:class:`~pseudoanomaly.models.SegmentationNet`).
        synthesis: the :class:`~pseudoanomaly.PseudoAnomaly` applied to each batch; ``None`` uses DRAEM's,
            ``pseudoanomaly.presets.draem()``.
        config: a :class:`~pseudoanomaly.training.config.JointConfig`; DRAEM defaults when ``None``.
    """

    config_class = JointConfig
    default_synthesis = "draem"
    config: JointConfig

    def build_phases(self) -> list[Phase]:
        cfg = self.config
        objective = JointObjective(
            self.restoration, self.segmentation, cfg.restoration_loss, cfg.focal_alpha, cfg.focal_gamma
        )
        return [
            Phase(
                "joint",
                objective,
                trainable=(self.restoration, self.segmentation),
                epochs=cfg.epochs,
                max_steps=cfg.max_steps,
                evaluates=True,
            )
        ]
