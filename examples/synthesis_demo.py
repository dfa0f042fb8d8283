"""Synthesis demo: what every mask generator and overlay makes, on a real CT slice (or a phantom).

Writes a PNG grid (one row per synthesis: input, mask, result, for three samples) and prints per-row mask
statistics. Uses the CHAOS CT scan in ../shared/data/chaos-ct3 when it is there, a generated phantom
slice otherwise.

    python examples/synthesis_demo.py [--out synthesis_demo.png] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

from pseudoanomaly import PseudoAnomaly, presets
from pseudoanomaly.io import atomic_path
from pseudoanomaly.masks import BlobMask, BlurredNoiseMask, PerlinMask
from pseudoanomaly.overlays import IntensityShift, PatchBlend, TextureBlend

SIZE = 256
HU_WINDOW = (-200.0, 250.0)  # the paper's abdominal window
CHAOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "chaos-ct3"


def chaos_liver_slice() -> tuple[np.ndarray, np.ndarray, str] | None:
    """The CHAOS slice with the largest liver area, windowed to [0, 1], and its liver mask, at 256 x 256."""
    try:
        import nibabel as nib
    except ImportError:
        return None
    if not (CHAOS / "ct.nii.gz").exists():
        return None
    ct = nib.as_closest_canonical(nib.load(CHAOS / "ct.nii.gz"))
    liver = nib.as_closest_canonical(nib.load(CHAOS / "liver.nii.gz"))
    hu = np.asarray(ct.dataobj, dtype=np.float32)
    mask = np.asarray(liver.dataobj) > 0
    z = int(mask.sum(axis=(0, 1)).argmax())
    # canonical RAS arrays are indexed (x: to the patient's right, y: to anterior). Radiological view puts
    # anterior at the top and the patient's right on the image's left: transpose, then flip both axes.
    image = hu[:, :, z].T[::-1, ::-1]
    roi = mask[:, :, z].T[::-1, ::-1]
    image = np.clip((image - HU_WINDOW[0]) / (HU_WINDOW[1] - HU_WINDOW[0]), 0, 1)
    image = cv2.resize(image, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
    roi = cv2.resize(roi.astype(np.uint8), (SIZE, SIZE), interpolation=cv2.INTER_NEAREST).astype(bool)
    return image, roi, "CHAOS CT set 3 (Kavur et al., 2021)"


def phantom_slice(seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """A body ellipse with a textured liver-like region: enough to show what the transforms do."""
    rng = np.random.default_rng(seed)
    image = np.zeros((SIZE, SIZE), np.float32)
    cv2.ellipse(image, (128, 128), (115, 85), 0, 0, 360, 0.45, -1)
    roi = np.zeros((SIZE, SIZE), np.uint8)
    cv2.ellipse(roi, (100, 120), (60, 45), 25, 0, 360, 1, -1)
    texture = cv2.GaussianBlur(rng.normal(0, 0.05, (SIZE, SIZE)).astype(np.float32), (7, 7), 2)
    image = np.where(roi > 0, 0.62 + texture, image).clip(0, 1)
    return image, roi.astype(bool), "generated phantom"


def syntheses() -> dict[str, PseudoAnomaly]:
    return {
        "zhang2023: blurred noise + intensity shift": presets.zhang2023(),
        "blurred noise (rejection) + intensity shift": PseudoAnomaly(
            BlurredNoiseMask(rejection=True, max_tries=50), IntensityShift()
        ),
        "draem: Perlin + texture blend": presets.draem(p=1.0),
        "blobs + intensity shift (darken)": PseudoAnomaly(BlobMask(), IntensityShift(direction="darken")),
        "Perlin + patch blend (self, CutPaste)": PseudoAnomaly(PerlinMask(), PatchBlend(source="self")),
        "blobs + texture blend": PseudoAnomaly(BlobMask(), TextureBlend()),
    }


def to_u8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("synthesis_demo.png"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=3)
    args = parser.parse_args()

    found = chaos_liver_slice()
    image, roi, source = found if found is not None else phantom_slice(args.seed)
    n = args.samples
    images = torch.from_numpy(np.ascontiguousarray(image))[None, None].expand(n, 1, SIZE, SIZE).contiguous()
    # the paper's foreground: the liver ROI; anomalies never leave it
    foreground = torch.from_numpy(np.ascontiguousarray(roi))[None, None].expand(n, 1, SIZE, SIZE).contiguous()
    print(f"slice: {source}; liver ROI {roi.mean():.1%} of the frame")

    rows = []
    for name, synth in syntheses().items():
        generator = torch.Generator().manual_seed(args.seed)
        augmented, masks = synth(images, foreground, generator=generator)
        coverage = masks.flatten(1).sum(1) / foreground.flatten(1).sum(1)
        print(f"{name:48s} coverage of the liver {coverage.mean():6.1%}, empty masks {int((coverage == 0).sum())}/{n}")
        tiles = []
        for i in range(n):
            overlay = cv2.cvtColor(to_u8(augmented[i, 0]), cv2.COLOR_GRAY2BGR)
            contours, _ = cv2.findContours(to_u8(masks[i, 0]), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            outlined = cv2.drawContours(overlay.copy(), contours, -1, (0, 0, 255), 1)
            tiles += [overlay, outlined]
        row = np.concatenate(tiles, axis=1)
        label = np.zeros((22, row.shape[1], 3), np.uint8)
        cv2.putText(label, name, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        rows += [label, row]
    grid = np.concatenate(rows, axis=0)

    # write atomically: a crash never leaves a truncated picture behind
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out, suffix=".png") as tmp:
        if not cv2.imwrite(str(tmp), grid):
            raise OSError(f"could not write {args.out}")
    print(f"wrote {args.out} ({grid.shape[1]} x {grid.shape[0]} px): per sample, the synthesized image and the "
          "same with the anomaly mask outlined in red")


if __name__ == "__main__":
    main()
