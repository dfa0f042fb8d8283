import torch
from pseudoanomaly import presets
from pseudoanomaly.models import RestorationUNet, SegmentationNet
from pseudoanomaly.training import TwoPhaseConfig, TwoPhaseTrainer

healthy = torch.rand(16, 1, 64, 64)  # normal images (N, C, H, W) in [0, 1], or a Dataset of them
config = TwoPhaseConfig(
    restoration_epochs=1,  # the paper: 200
    segmentation_epochs=1,  # the paper: 1, on purpose (longer overfits to the synthetic anomalies)
    batch_size=8,
    out_dir="runs/quick",  # checkpoint.pt and log.jsonl; resume with trainer.fit(..., resume=...)
    progress=False,
)
trainer = TwoPhaseTrainer(
    RestorationUNet(base_width=8),  # the paper's: RestorationUNet(), base_width=64
    SegmentationNet(base_width=8, channel_multipliers=(1, 2, 4, 8)),  # DRAEM's: SegmentationNet()
    presets.zhang2023(),
    config,
)
trainer.fit(healthy)

segmenter = trainer.export()  # restoration -> segmentation -> anomaly map, eval mode, no grad
maps = segmenter(torch.rand(4, 1, 64, 64))  # (4, 1, 64, 64) anomaly probabilities in [0, 1]
print(maps.shape, float(maps.min()) >= 0.0, float(maps.max()) <= 1.0)
