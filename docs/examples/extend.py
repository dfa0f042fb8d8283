"""Extending pseudoanomaly: a new mask family, a new overlay, and a new training schedule.

Each piece implements only what makes it new; the base classes add batching, foreground restriction,
rejection and redraws, replay, argument checks and the whole training loop (checkpoints, resume, logs).
"""

import torch

from pseudoanomaly import PseudoAnomaly
from pseudoanomaly.masks import MaskGenerator
from pseudoanomaly.models import RestorationUNet, SegmentationNet
from pseudoanomaly.overlays import Overlay
from pseudoanomaly.training import Phase, TwoPhaseConfig, TwoPhaseTrainer
from pseudoanomaly.training.objectives import JointObjective, RestorationObjective


class DiskMask(MaskGenerator):
    """Discs of random centre and radius: draw() holds all the randomness, render() is a pure function."""

    def __init__(self, radius=(0.05, 0.2), **kwargs):
        super().__init__(**kwargs)  # union, rejection, area, max_tries, same_on_batch come for free
        self.radius = radius

    def draw(self, n, height, width, foreground, generator, device):
        u = torch.rand(n, 3, generator=generator, device=device)  # one draw for the whole batch
        low, high = self.radius
        return {"centre": u[:, :2], "radius": low + (high - low) * u[:, 2]}

    def render(self, params, height, width):
        y = torch.linspace(0, 1, height, device=params["radius"].device).view(1, height, 1)
        x = torch.linspace(0, 1, width, device=params["radius"].device).view(1, 1, width)
        cy, cx = params["centre"][:, 0, None, None], params["centre"][:, 1, None, None]
        inside = (y - cy) ** 2 + (x - cx) ** 2 <= params["radius"][:, None, None] ** 2
        return inside[:, None]  # (n, 1, H, W)


class Darken(Overlay):
    """Darken masked pixels by a random factor per sample."""

    def draw(self, images, generator):
        return {"factor": 0.3 + 0.4 * torch.rand(len(images), generator=generator, device=images.device)}

    def fill(self, images, params):
        return images * params["factor"].view(-1, 1, 1, 1)


images = torch.rand(4, 1, 64, 64)
liver = torch.zeros(4, 1, 64, 64, dtype=torch.bool)
liver[:, :, 16:48, 16:48] = True
synth = PseudoAnomaly(DiskMask(rejection=True), Darken())
augmented, masks = synth(images, liver, generator=torch.Generator().manual_seed(0))
assert not masks[~liver].any()  # the base class keeps every mask inside the foreground
again, masks_again = synth(images, liver, params=synth.last_params)  # replay: the same anomalies
assert torch.equal(again, augmented) and torch.equal(masks_again, masks)
print(f"DiskMask + Darken: {int(masks.sum())} anomalous pixels, replayed bit for bit")


class WarmStartedJoint(TwoPhaseTrainer):
    """A schedule is a list of phases: the paper's restoration phase, then DRAEM's joint objective on both nets."""

    def build_phases(self):
        cfg = self.config
        return [
            Phase("restoration", RestorationObjective(self.restoration, cfg.restoration_loss),
                  trainable=(self.restoration,), max_steps=cfg.restoration_max_steps),
            Phase("both", JointObjective(self.restoration, self.segmentation, cfg.restoration_loss, cfg.focal_alpha,
                                         cfg.focal_gamma),
                  trainable=(self.restoration, self.segmentation), max_steps=cfg.segmentation_max_steps,
                  evaluates=True),
        ]


torch.manual_seed(0)
trainer = WarmStartedJoint(
    RestorationUNet(base_width=4, depth=1), SegmentationNet(base_width=2, channel_multipliers=(1, 2)), synth,
    TwoPhaseConfig(restoration_max_steps=2, segmentation_max_steps=2, batch_size=2, progress=False))
trainer.fit(images, max_steps={"both": 3})  # fit's step budget names phases, whatever the trainer
print("phases:", [p.name for p in trainer.phases], "| segmenter:", type(trainer.export()).__name__)
