"""DRAEM's joint training (Zavrtanik, Kristan & Skocaj, ICCV 2021): both nets, one loss, every step.

Each step minimises reconstruction loss (L2 + SSIM) + focal loss of the segmentation of
``cat([restored, synthesized])``; the focal loss also reaches the restoration net. DRAEM trains 700 epochs with
Adam at lr 1e-4, batch 8, multiplying the lr by 0.2 at 80% and 90% of training (reference code
github.com/VitjanZ/DRAEM ``train_DRAEM.py``); those are the :class:`~pseudoanomaly.training.JointConfig`
defaults. Zhang et al. (SASHIMI 2023, Table 2) use it as the baseline their two-phase training improves on.

NOTE: DRAEM steps its scheduler per epoch; here milestones are fractions of the steps, the same points in
training.
"""

from __future__ import annotations

from .. import presets
from .config import JointConfig
from .objectives import JointObjective
from .phase import Phase
from .trainer import Trainer

__all__ = ["JointTrainer"]


class JointTrainer(Trainer):
    """Train the restoration and segmentation nets together on DRAEM's summed loss.

    Args:
        restoration: restoration net (DRAEM: :class:`~pseudoanomaly.models.ReconstructiveAE`).
        segmentation: segmentation net (:class:`~pseudoanomaly.models.SegmentationNet`).
        synthesis: the :class:`~pseudoanomaly.PseudoAnomaly` applied to each batch; ``None`` uses DRAEM's,
            ``pseudoanomaly.presets.draem()``.
        config: a :class:`~pseudoanomaly.training.JointConfig`; DRAEM defaults when ``None``.

    Example:
        >>> import torch
        >>> from pseudoanomaly.models import ReconstructiveAE, SegmentationNet
        >>> def synth(images, foreground=None, generator=None):  # stand-in for presets.draem()
        ...     masks = torch.zeros_like(images)
        ...     masks[..., 8:16, 8:16] = 1
        ...     return images + 0.5 * masks, masks
        >>> _ = torch.manual_seed(0)
        >>> trainer = JointTrainer(
        ...     ReconstructiveAE(base_width=2, channel_multipliers=(1, 2)),
        ...     SegmentationNet(base_width=2, channel_multipliers=(1, 2)),
        ...     synth, JointConfig(max_steps=1, batch_size=2, progress=False))
        >>> trainer.fit(torch.rand(4, 1, 16, 16))
        []
        >>> trainer.restoration.training, next(trainer.restoration.parameters()).requires_grad  # trained too
        (True, True)
    """

    config_class = JointConfig
    default_synthesis = staticmethod(presets.draem)
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
