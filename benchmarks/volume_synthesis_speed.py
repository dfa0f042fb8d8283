"""How fast is batched 3-D synthesis against a per-sample, per-tumour CPU generator?

Ours: one call of a :class:`~pseudoanomaly.PseudoAnomaly` on a batch of volumes ``(B, 1, D, H, W)`` with a liver
foreground: ``BlobMask`` (tumour-like blobs, sizes in mm with the voxel spacing) or ``BlurredNoiseMask`` (the
paper's recipe in 3-D), then ``IntensityShift``.

Reference, written here after the approach of Hu et al. (CVPR 2023, Sec. 3: location, texture, shape,
post-processing) as such generators run: one volume and one tumour at a time, on the CPU, in NumPy/SciPy on the
whole volume, seeded through NumPy. Per tumour: a centre drawn among the liver voxels; an ellipsoid of random
semi-axes in mm; an elastic deformation of it (Gaussian-smoothed random displacement fields, ``map_coordinates``);
a texture (Gaussian-filtered noise); a blurred edge; blended into the liver with an intensity shift. This is not
their code, and it draws a richer anomaly than a blob with a shift: the comparison is of the cost of the
per-sample CPU pattern against a batched call, for anomalies of the same size and placement.

Cases: a phantom batch of 8 volumes of 64 x 128 x 128 voxels (D, H, W) with an ellipsoidal liver, and the CHAOS
scan (78 x 512 x 512, 2.0 x 0.73 x 0.73 mm) with its liver mask when ``../shared/data/chaos-ct3`` is there.
Prints one line per method and case, then a JSON record (date, machine, threads) for ``RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from pseudoanomaly import PseudoAnomaly
from pseudoanomaly.masks import BlobMask, BlurredNoiseMask
from pseudoanomaly.overlays import IntensityShift

CHAOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "chaos-ct3"
RADIUS_MM = (5.0, 20.0)  # tumour radii of both methods: small to medium liver lesions
COUNT = (1, 3)  # tumours per volume, both methods


def reference_volume(ct: np.ndarray, liver: np.ndarray, spacing: tuple[float, float, float],
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One volume, one tumour at a time, on the whole grid (the per-sample CPU pattern). ``ct`` in [0, 1]."""
    out, label = ct.copy(), np.zeros(ct.shape, bool)
    candidates = np.argwhere(liver)
    grid = np.indices(ct.shape, dtype=np.float32)  # (3, D, H, W)
    for _ in range(rng.integers(COUNT[0], COUNT[1] + 1)):
        centre = candidates[rng.integers(len(candidates))]
        radius = rng.uniform(*RADIUS_MM)
        axes = radius * rng.uniform(0.75, 1.25, 3)  # mm
        inside = sum(((grid[i] - centre[i]) * spacing[i] / axes[i]) ** 2 for i in range(3)) <= 1
        # Elastic deformation of the shape: smooth random displacement fields, in voxels.
        shift = [ndimage.gaussian_filter(rng.standard_normal(ct.shape).astype(np.float32), 4) * 20 for _ in range(3)]
        shape = ndimage.map_coordinates(inside.astype(np.float32), [grid[i] + shift[i] for i in range(3)], order=1)
        texture = ndimage.gaussian_filter(rng.standard_normal(ct.shape).astype(np.float32), 1.0)
        weight = ndimage.gaussian_filter(shape, 0.8) * liver
        value = np.clip(ct - rng.uniform(0.25, 0.4) + 0.02 * texture, 0, 1)  # hypodense, with grain
        out = out * (1 - weight) + value * weight
        label |= (shape > 0.5) & liver
    return out, label


def phantom(batch: int, shape: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor, tuple[float, ...]]:
    d, h, w = shape
    z, y, x = np.ogrid[:d, :h, :w]
    liver = ((z - d / 2) / (0.4 * d)) ** 2 + ((y - h / 2) / (0.35 * h)) ** 2 + ((x - w / 2) / (0.35 * w)) ** 2 <= 1
    rng = np.random.default_rng(0)
    ct = np.where(liver, 0.55, 0.3) + 0.03 * rng.standard_normal((batch, 1, d, h, w))
    images = torch.from_numpy(np.clip(ct, 0, 1).astype(np.float32))
    return images, torch.from_numpy(np.broadcast_to(liver, (batch, 1, d, h, w)).copy()), (2.5, 1.5, 1.5)


def chaos(batch: int) -> tuple[torch.Tensor, torch.Tensor, tuple[float, ...]] | None:
    if not (CHAOS / "ct.nii.gz").is_file():
        return None
    import nibabel as nib

    ct_img, liver_img = nib.load(CHAOS / "ct.nii.gz"), nib.load(CHAOS / "liver.nii.gz")
    hu = np.asarray(ct_img.dataobj, np.float32).transpose(2, 1, 0)  # (x, y, z) -> (D, H, W)
    liver = np.asarray(liver_img.dataobj).transpose(2, 1, 0) > 0
    ct = np.clip((hu + 200) / 450, 0, 1)  # the paper's window [-200, 250] HU
    zooms = ct_img.header.get_zooms()
    images = torch.from_numpy(np.broadcast_to(ct, (batch, 1, *ct.shape)).copy())
    return images, torch.from_numpy(np.broadcast_to(liver, (batch, 1, *liver.shape)).copy()), (
        float(zooms[2]), float(zooms[1]), float(zooms[0]))


def time_ours(synth, images, liver, repeats: int) -> float:
    """Median seconds per call (one warm-up call first)."""
    generator = torch.Generator().manual_seed(0)
    synth(images, liver, generator=generator)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        synth(images, liver, generator=generator)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_reference(images, liver, spacing, volumes: int) -> float:
    """Seconds per volume over ``volumes`` volumes."""
    rng = np.random.default_rng(0)
    ct, mask = images[0, 0].numpy(), liver[0, 0].numpy()
    start = time.perf_counter()
    for _ in range(volumes):
        reference_volume(ct, mask, spacing, rng)
    return (time.perf_counter() - start) / volumes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch and SciPy CPU threads (default 2)")
    parser.add_argument("--batch", type=int, default=8, help="phantom volumes per call (default 8)")
    parser.add_argument("--shape", type=int, nargs=3, default=(64, 128, 128), metavar=("D", "H", "W"))
    parser.add_argument("--repeats", type=int, default=3, help="timed calls of ours (median)")
    parser.add_argument("--reference-volumes", type=int, default=4, help="volumes timed for the reference (default 4)")
    parser.add_argument("--no-chaos", action="store_true", help="skip the CHAOS volume")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cases = {"phantom": phantom(args.batch, tuple(args.shape))}
    if not args.no_chaos:
        real = chaos(2)
        if real is not None:
            cases["chaos"] = real
    records = []
    for case, (images, liver, spacing) in cases.items():
        batch = images.shape[0]
        methods = {
            "BlobMask(mm) + IntensityShift": PseudoAnomaly(
                BlobMask(radius=RADIUS_MM, count=COUNT, spacing=spacing), IntensityShift()),
            "BlurredNoiseMask(mm) + IntensityShift": PseudoAnomaly(
                BlurredNoiseMask(spacing=spacing, sigma=8.0, kernel_size=4.0), IntensityShift()),
        }
        ref = time_reference(images, liver, spacing, args.reference_volumes)
        print(f"{case} {tuple(images.shape[2:])} spacing {spacing}: per-sample reference {ref:.3f} s/volume "
              f"({1 / ref:.2f} volumes/s)")
        for name, synth in methods.items():
            seconds = time_ours(synth, images, liver, args.repeats)
            rate = batch / seconds
            print(f"  ours, {name}: {1000 * seconds:.0f} ms per batch of {batch} = {rate:.1f} volumes/s, "
                  f"{rate * ref:.0f}x the reference")
            records.append({"case": case, "shape": list(images.shape[2:]), "batch": batch, "method": name,
                            "volumes_per_s": rate, "reference_volumes_per_s": 1 / ref, "speedup": rate * ref})
    print(json.dumps({"date": time.strftime("%Y-%m-%d"), "machine": platform.machine(), "torch": torch.__version__,
                      "threads": args.threads, "records": records}))


if __name__ == "__main__":
    main()
