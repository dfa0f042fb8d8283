import kornia.augmentation as K
import torch
from pseudoanomaly import PseudoAnomaly
from pseudoanomaly.integrations.kornia import RandomPseudoAnomaly
from pseudoanomaly.masks import BlobMask
from pseudoanomaly.overlays import TextureBlend

images = 0.2 + 0.6 * torch.rand(16, 1, 128, 128)  # normal images in [0, 1]
foreground = torch.zeros(16, 1, 128, 128, dtype=torch.bool)
foreground[..., 32:96, 32:96] = True  # anomalies stay inside

# Any mask generator with any overlay; half of the samples get an anomaly.
synth = PseudoAnomaly(mask=BlobMask(count=(1, 2)), overlay=TextureBlend(beta=(0.0, 0.5)), p=0.5)
augmented, masks = synth(images, foreground, generator=torch.Generator().manual_seed(0))
print(f"{int(masks.flatten(1).any(dim=1).sum())} of 16 samples got an anomaly")

# Replay: the same anomalies again, bit for bit.
again, masks_again = synth(images, foreground, params=synth.last_params)
assert torch.equal(again, augmented) and torch.equal(masks_again, masks)

# Inside a Kornia pipeline: the "mask" key receives the anomaly target and moves with later geometric steps.
pipeline = K.AugmentationSequential(
    RandomPseudoAnomaly(p=0.5, foreground_threshold=0.0),  # the paper's synthesis, inside image > 0
    K.RandomAffine(degrees=10.0, p=1.0),
    data_keys=["input", "mask"],
)
out, target = pipeline(images, torch.zeros_like(images))
print(out.shape, target.shape)
