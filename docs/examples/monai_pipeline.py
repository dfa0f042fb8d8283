"""A MONAI pipeline that paints 3-D pseudo-anomalies, sized in millimetres, into the CHAOS CT scan, inside the liver.

Runs as is (the test suite runs it); it exits quietly, saying why, where MONAI or the scan is absent. The scan is
looked for in ``$CHAOS_DIR``, by default ``shared/data/chaos-ct3`` next to the repository.
"""

import os
import sys
from pathlib import Path

import torch

try:
    from monai.data import CacheDataset, DataLoader
    from monai.transforms import (
        Compose, LoadImaged, Orientationd, RandCropByPosNegLabeld, RandFlipd, ScaleIntensityRanged,
    )
except ImportError:
    print('skipped: MONAI is not installed (pip install -c constraints.txt -e ".[monai]")')
    sys.exit(0)
from pseudoanomaly import PseudoAnomaly
from pseudoanomaly.integrations.monai import RandPseudoAnomalyd
from pseudoanomaly.masks import BlobMask
from pseudoanomaly.overlays import IntensityShift

CHAOS = Path(os.environ.get("CHAOS_DIR", Path(__file__).resolve().parents[3] / "shared" / "data" / "chaos-ct3"))
if not (CHAOS / "ct.nii.gz").is_file() or not (CHAOS / "liver.nii.gz").is_file():
    print(f"skipped: the CHAOS scan is not in {CHAOS} (set CHAOS_DIR to the folder of ct.nii.gz and liver.nii.gz)")
    sys.exit(0)

pipeline = Compose([
    LoadImaged(keys=["image", "liver"], ensure_channel_first=True),  # (1, 512, 512, 78), HU and 0/1
    Orientationd(keys=["image", "liver"], axcodes="RAS"),  # the last axis runs from feet to head
    # the paper's abdominal window, to the [0, 1] the synthesis paints in
    ScaleIntensityRanged(keys="image", a_min=-200.0, a_max=250.0, b_min=0.0, b_max=1.0, clip=True),
    # two patches of 128 x 128 x 32 voxels (93 x 93 x 64 mm) centred in the liver
    RandCropByPosNegLabeld(keys=["image", "liver"], label_key="liver", spatial_size=(128, 128, 32), pos=1, neg=0,
                           num_samples=2),
    # tumour-like blobs of 5-15 mm radius in the liver; spacing in the tensor's axis order (x, y, z after RAS)
    RandPseudoAnomalyd(keys="image", foreground_key="liver", mask_key="anomaly", prob=1.0, synthesis=PseudoAnomaly(
        BlobMask(radius=(5.0, 15.0), spacing=(0.73, 0.73, 2.0)), IntensityShift())),
    RandFlipd(keys=["image", "liver", "anomaly"], prob=0.5, spatial_axis=0),  # the mask moves with the image
])
data = [{"image": str(CHAOS / "ct.nii.gz"), "liver": str(CHAOS / "liver.nii.gz")}]


# The loading, orientation and window are cached; the random transforms run on every pass.
dataset = CacheDataset(data, transform=pipeline, progress=False)


def patches(seed):
    # MONAI's DataLoader seeds every random transform of the pipeline, ours included, from its generator (through
    # worker_init_fn when it has workers).
    loader = DataLoader(dataset, batch_size=1, generator=torch.Generator().manual_seed(seed))
    return next(iter(loader))


batch = patches(seed=0)
image, anomaly = batch["image"], batch["anomaly"]
print("image", tuple(image.shape), "anomaly", tuple(anomaly.shape))  # (2, 1, 128, 128, 32) each
print("anomalous voxels per patch:", anomaly.flatten(1).sum(dim=1).int().tolist())
print("the mask keeps the image's affine:", bool((anomaly.affine == image.affine).all()))
again = patches(seed=0)
assert torch.equal(again["image"], image) and torch.equal(again["anomaly"], anomaly), "the same seed, the same patches"
