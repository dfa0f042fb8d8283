"""Peak memory and time of ``prepare`` on one large synthetic CT volume (issue 14).

Writes a synthetic CT of 512 x 512 x 600 voxels (an abdomen-like ellipse of soft tissue in air, a liver-shaped
ellipsoid spanning a quarter of the slices) and its liver mask as uncompressed NIfTI files into a temporary
folder, then runs ``python -m examples.lits prepare --layout pair`` on them in a subprocess, once per variant:

- ``int16``: the CT stored as int16 without scaling (nibabel reads it memory-mapped, as int16);
- ``int16+inter``: the same voxels stored as int16 with ``scl_inter = -1024`` (as many DICOM conversions
  write them): nibabel applies the scaling on reading and returns float64, 4x the stored volume.

each with ``prepare``'s ``cpu`` preset (liver box at 128 px, liver window) and its ``paper`` preset (whole
slices at 256 px, equalization). The peak RSS of each subprocess (``os.wait4``'s ``ru_maxrss``, the
subprocess's own ``getrusage(RUSAGE_CHILDREN)`` figure) less a baseline (the same command on a 64 x 64 x 40
volume: the imports, torch and OpenCV) is compared with the volume's own size: int16 (2 bytes a voxel) and
float32 (4 bytes a voxel).

    python benchmarks/prepare_memory.py                       # 512 x 512 x 600
    python benchmarks/prepare_memory.py --shape 512 512 300 --variant int16 --preset cpu
    python benchmarks/prepare_memory.py --quick               # 64 x 64 x 40: checks that it runs (tests)

"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("int16", "int16+inter")
PRESETS = ("cpu", "paper")
TINY = (64, 64, 40)  # the baseline's volume: what prepare holds whatever the volume (imports, torch, OpenCV)


def write_case(folder: Path, shape: tuple[int, int, int], variant: str, seed: int = 0) -> tuple[Path, Path]:
    """A synthetic CT (HU) and its liver mask as NIfTI files in ``folder``; built slice by slice."""
    x, y, z = shape
    rng = np.random.default_rng(seed)
    xx, yy = np.meshgrid(np.linspace(-1, 1, x), np.linspace(-1, 1, y), indexing="ij")
    body = (xx / 0.9) ** 2 + (yy / 0.7) ** 2 <= 1
    hu = np.full(shape, -1000, np.int16)
    label = np.zeros(shape, np.uint8)
    first, last = z // 2 - z // 8, z // 2 + z // 8  # the liver spans a quarter of the slices
    for k in range(z):
        hu[:, :, k][body] = rng.normal(40, 20, int(body.sum())).astype(np.int16)
        if first <= k < last:
            t = (k - (first + last) / 2) / ((last - first) / 2)
            liver = ((xx + 0.35) / 0.4) ** 2 + ((yy - 0.1) / 0.35) ** 2 <= 1 - t * t
            label[:, :, k][liver] = 1
            hu[:, :, k][liver] = rng.normal(100, 15, int(liver.sum())).astype(np.int16)
    affine = np.diag([0.75, 0.75, 1.0, 1.0])
    image_path, mask_path = folder / f"ct-{variant}.nii", folder / "liver.nii"
    if variant == "int16+inter":
        image = nib.Nifti1Image((hu + 1024).astype(np.int16), affine)  # stored + 1024, read back as HU
        image.header.set_slope_inter(1.0, -1024.0)
    else:
        image = nib.Nifti1Image(hu, affine)
    nib.save(image, image_path)
    if not mask_path.is_file():
        nib.save(nib.Nifti1Image(label, affine), mask_path)
    return image_path, mask_path


def run_child(command: list[str]) -> tuple[float, float]:
    """Run ``command``; its wall time (s) and peak RSS (MiB), read with ``os.wait4`` for that child alone."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        child = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)  # reaps it: its own rusage, not the children's maximum
        seconds = time.perf_counter() - t0
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode:
            err.seek(0)
            raise RuntimeError(f"{' '.join(command)} failed ({child.returncode}):\n{err.read().decode()[-3000:]}")
    return seconds, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=(512, 512, 600), metavar=("X", "Y", "Z"))
    parser.add_argument("--variant", action="append", choices=VARIANTS, help="repeatable (default: both)")
    parser.add_argument("--preset", action="append", choices=PRESETS, help="repeatable (default: both)")
    parser.add_argument("--quick", action="store_true", help="a 64 x 64 x 40 volume, one variant and preset")
    args = parser.parse_args()
    shape = TINY if args.quick else tuple(args.shape)
    variants = args.variant or (VARIANTS[:1] if args.quick else VARIANTS)
    presets = args.preset or (PRESETS[:1] if args.quick else PRESETS)
    voxels = int(np.prod(shape))
    int16_mib, float32_mib = 2 * voxels / 2**20, 4 * voxels / 2**20
    prepare = [sys.executable, "-m", "examples.lits", "prepare", "--layout", "pair", "--no-progress"]

    print(f"machine: {platform.node()} | {platform.processor() or platform.machine()} | nibabel {nib.__version__} | "
          f"load {os.getloadavg()[0]:.2f} | volume {' x '.join(map(str, shape))}: {int16_mib:,.0f} MiB int16, "
          f"{float32_mib:,.0f} MiB float32")
    print()
    print("| volume file | prepare preset | time | peak RSS | peak - baseline | / int16 volume | / float32 volume |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory(prefix="prepare-memory-") as tmp:
        tmp = Path(tmp)
        imports = 0.0
        if not args.quick:  # (--quick: its volume is the baseline's)
            (tmp / "tiny").mkdir()
            image, mask = write_case(tmp / "tiny", TINY, VARIANTS[0])
            tiny = ["--image", str(image), "--mask", str(mask), "--out", str(tmp / "tiny/out")]
            _, imports = run_child(prepare + tiny)
            print(f"| (baseline: imports, a {' x '.join(map(str, TINY))} volume) | cpu | | {imports:,.0f} MiB | | | |",
                  flush=True)
        for variant in variants:
            image, mask = write_case(tmp, shape, variant)
            for preset in presets:
                out = tmp / f"out-{variant}-{preset}"
                seconds, peak = run_child(prepare + ["--image", str(image), "--mask", str(mask), "--out", str(out),
                                                     "--preset", preset])
                extra = peak - imports
                print(f"| {variant} | {preset} | {seconds:.1f} s | {peak:,.0f} MiB | {extra:,.0f} MiB | "
                      f"{extra / int16_mib:.2f}x | {extra / float32_mib:.2f}x |", flush=True)
            image.unlink()
    print(f"\nload at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
