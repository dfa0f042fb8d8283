"""The TorchIO equivalent: pseudo-anomalies in axial slices of the CHAOS CT scan, then in 3-D patches of it, the
mask as a ``LabelMap``.

Runs as is (the test suite runs it); it exits quietly, saying why, where TorchIO or the scan is absent. The scan is
looked for in ``$CHAOS_DIR``, by default ``shared/data/chaos-ct3`` next to the repository.
"""

import os
import sys
from pathlib import Path

import torch

try:
    import torchio as tio
except ImportError:
    print('skipped: TorchIO is not installed (pip install -c constraints.txt -e ".[torchio]")')
    sys.exit(0)
from pseudoanomaly import PseudoAnomaly
from pseudoanomaly.integrations.torchio import RandomPseudoAnomaly
from pseudoanomaly.masks import BlobMask
from pseudoanomaly.overlays import IntensityShift

CHAOS = Path(os.environ.get("CHAOS_DIR", Path(__file__).resolve().parents[3] / "shared" / "data" / "chaos-ct3"))
if not (CHAOS / "ct.nii.gz").is_file() or not (CHAOS / "liver.nii.gz").is_file():
    print(f"skipped: the CHAOS scan is not in {CHAOS} (set CHAOS_DIR to the folder of ct.nii.gz and liver.nii.gz)")
    sys.exit(0)

scan = tio.Subject(ct=tio.ScalarImage(CHAOS / "ct.nii.gz"), liver=tio.LabelMap(CHAOS / "liver.nii.gz"))
preprocess = tio.Compose([
    tio.ToCanonical(),  # RAS+: the last axis runs from feet to head
    # the paper's abdominal window, to the [0, 1] the synthesis paints in
    tio.RescaleIntensity(out_min_max=(0.0, 1.0), in_min_max=(-200.0, 250.0), include=["ct"]),
    tio.Clamp(0.0, 1.0, include=["ct"]),
])
augment = tio.Compose([
    # the paper's synthesis (pseudoanomaly.presets.zhang2023) inside the liver, in half of the slices
    RandomPseudoAnomaly("ct", foreground_key="liver", mask_key="anomaly", p=0.5),
    tio.RandomFlip(axes=(0,)),  # the LabelMap moves with the image
])
volume = preprocess(scan)
# Axial slices through the liver: TorchIO keeps a 2-D image as (1, W, H, 1), which the transform synthesizes in 2-D.
sampler = tio.LabelSampler(patch_size=(*volume.spatial_shape[:2], 1), label_name="liver")


def slices(seed, n=8):
    torch.manual_seed(seed)  # TorchIO's transforms and samplers, ours included, draw from torch's generator
    return [augment(patch) for patch, _ in zip(sampler(volume), range(n))]


first = slices(seed=0)
print("ct", first[0]["ct"].shape, "anomaly", type(first[0]["anomaly"]).__name__, first[0]["anomaly"].shape)
# (a slice the gate picked can still come back normal: the paper's masks are often empty inside the liver)
print("slices with an anomaly:", [int(s["anomaly"].data.any()) for s in first])
again = slices(seed=0)
assert all(torch.equal(a["ct"].data, b["ct"].data) and torch.equal(a["anomaly"].data, b["anomaly"].data)
           for a, b in zip(first, again)), "the same seed, the same slices"

# 3-D: patches of 128 x 128 x 32 voxels centred in the liver, each with tumour-like blobs of 5-15 mm radius that
# span neighbouring slices. TorchIO's (W, H, D) order is the tensor's, so the voxel spacing is given in it.
spacing = tuple(float(s) for s in volume["ct"].spacing)  # (x, y, z) in mm, about (0.73, 0.73, 2.0)
blobs = RandomPseudoAnomaly("ct", foreground_key="liver", mask_key="anomaly", synthesis=PseudoAnomaly(
    BlobMask(radius=(5.0, 15.0), count=(1, 2), spacing=spacing), IntensityShift(direction="darken")))
patches = tio.LabelSampler(patch_size=(128, 128, 32), label_name="liver")
torch.manual_seed(0)
patch = blobs(next(iter(patches(volume))))
anomaly = patch["anomaly"].data[0]  # (W, H, D)
print("patch", tuple(patch["ct"].shape), "anomaly voxels", int(anomaly.sum()),
      "in slices", anomaly.any(dim=0).any(dim=0).nonzero().flatten().tolist())
assert int(anomaly.any(dim=0).any(dim=0).sum()) > 1, "a blob spans several slices"
