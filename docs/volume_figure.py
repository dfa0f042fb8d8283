"""Draw the 3-D gallery picture: pseudo-anomalies in a CT volume, in orthogonal views.

    python docs/volume_figure.py [--chaos DIR] [--out docs/_static/volumes/blobs_3d.png]

The CHAOS scan (``../shared/data/chaos-ct3``; healthy, 2.0 x 0.73 x 0.73 mm) in the paper's window, cropped to
its liver; tumour-like blobs of 5-20 mm radius drawn in millimetres inside the liver, made darker by the paper's
intensity shift. The views cross at the centre of the largest anomaly: axial, coronal and sagittal, before and
after, the anomaly outlined.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from scipy import ndimage  # noqa: E402

from pseudoanomaly import PseudoAnomaly  # noqa: E402
from pseudoanomaly.masks import BlobMask  # noqa: E402
from pseudoanomaly.overlays import IntensityShift  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def load(chaos: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """CT in [0, 1] and liver, ``(D, H, W)`` from feet to head, anterior at the top, cropped to the liver."""
    ct_img = nib.as_closest_canonical(nib.load(chaos / "ct.nii.gz"))
    liver_img = nib.as_closest_canonical(nib.load(chaos / "liver.nii.gz"))
    hu = np.asarray(ct_img.dataobj, np.float32).transpose(2, 1, 0)[:, ::-1, ::-1]  # RAS (x, y, z) -> (z, -y, -x)
    liver = np.asarray(liver_img.dataobj).transpose(2, 1, 0)[:, ::-1, ::-1] > 0
    box = ndimage.find_objects(liver.astype(np.uint8))[0]
    box = tuple(slice(max(s.start - 4, 0), s.stop + 4) for s in box)
    zooms = ct_img.header.get_zooms()
    return np.clip((hu[box] + 200) / 450, 0, 1), liver[box], (float(zooms[2]), float(zooms[1]), float(zooms[0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chaos", type=Path, default=ROOT.parent / "shared" / "data" / "chaos-ct3")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "_static" / "volumes" / "blobs_3d.png")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    ct, liver, spacing = load(args.chaos)
    synth = PseudoAnomaly(BlobMask(radius=(5.0, 20.0), count=(2, 3), spacing=spacing), IntensityShift())
    images, fg = torch.from_numpy(ct.copy())[None, None], torch.from_numpy(liver.copy())[None, None]
    out, masks = synth(images, fg, generator=torch.Generator().manual_seed(args.seed))
    after, mask = out[0, 0].numpy(), masks[0, 0].numpy() > 0
    labels, n = ndimage.label(mask)
    largest = 1 + int(np.argmax(ndimage.sum(mask, labels, range(1, n + 1))))
    z, y, x = (int(round(c)) for c in ndimage.center_of_mass(labels == largest))
    dz, dy, dx = spacing

    views = {  # name -> (slice of a volume, aspect: row spacing / column spacing)
        "axial": (lambda v: v[z], dy / dx),
        "coronal": (lambda v: v[::-1, y, :], dz / dx),
        "sagittal": (lambda v: v[::-1, :, x], dz / dy),
    }
    fig, axes = plt.subplots(2, 3, figsize=(9, 5.6))
    for column, (name, (cut, aspect)) in enumerate(views.items()):
        for row, volume in enumerate((ct, after)):
            ax = axes[row, column]
            ax.imshow(cut(volume), cmap="gray", vmin=0, vmax=1, aspect=aspect, interpolation="nearest")
            if row == 1 and cut(mask).any():
                ax.contour(cut(mask), levels=[0.5], colors="orangered", linewidths=1.4)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=10)
        axes[0, 0].set_ylabel("CHAOS scan", fontsize=10)
        axes[1, 0].set_ylabel("with 3-D anomalies", fontsize=10)
    fig.suptitle(f"BlobMask(radius=(5, 20) mm, spacing={tuple(round(s, 2) for s in spacing)}) + IntensityShift, "
                 "one call on the volume", fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, facecolor="white")
    plt.close(fig)
    buffer.seek(0)
    picture = Image.open(buffer).convert("RGB").quantize(colors=128, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    picture.save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB); {n} anomalies, {int(mask.sum())} voxels")


if __name__ == "__main__":
    main()
