"""Draw the lesion instrument's figure for the docs: lesions of a ``lesions`` set, before and after insertion.

    python -m examples.lits lesions --layout pair --image ../shared/data/chaos-ct3/ct.nii.gz \\
        --mask ../shared/data/chaos-ct3/liver.nii.gz --out instrument --copies 6 --seed 0
    python docs/instrument_figure.py instrument docs/_static/lits/instrument_lesions.png

One column per lesion (up to ``--max``), through its centre slice: the healthy source above, the set's volume
with the lesion's outline below, both in the HU window [-200, 250] and in the radiological view.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

WINDOW = (-200, 250)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lesion_set", type=Path, help="a folder written by `lesions`")
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("--max", type=int, default=6, help="at most this many lesions")
    args = parser.parse_args()
    record = json.loads((args.lesion_set / "lesions.json").read_text())
    sources = {s["case_id"]: s for s in record["sources"]}
    panels = []
    for volume in record["volumes"]:
        source = sources[volume["case_id"]]
        before = np.asanyarray(nib.load(source["image"]).dataobj)
        after = np.asanyarray(nib.load(args.lesion_set / volume["volume"]).dataobj)
        label = np.asanyarray(nib.load(args.lesion_set / volume["segmentation"]).dataobj) == 2
        spacing = source["spacing_mm"]
        for lesion in volume["lesions"]:
            x, y, z = lesion["centre_voxel"]
            half = int(lesion["diameter_mm"] / spacing[0]) + 25  # the lesion and some liver around it
            box = (slice(max(x - half, 0), x + half), slice(max(y - half, 0), y + half), z)
            panels.append((before[box], after[box], label[box], lesion))
            if len(panels) == args.max:
                break
        if len(panels) == args.max:
            break
    fig, axes = plt.subplots(2, len(panels), figsize=(2.2 * len(panels), 4.6), squeeze=False)
    for i, (b, a, lab, lesion) in enumerate(panels):
        for row, image in enumerate((b, a)):
            ax = axes[row, i]
            # LPS storage (CHAOS): x runs right -> left and y anterior -> posterior, so the transpose is the
            # radiological view (rows anterior at the top, the patient's right on the image's left)
            ax.imshow(image.T, cmap="gray", vmin=WINDOW[0], vmax=WINDOW[1], interpolation="nearest")
            if row:
                ax.contour(lab.T, [0.5], colors="r", linewidths=0.6)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, i].set_title("healthy", fontsize=8)
        axes[1, i].set_title(f"{lesion['appearance']} {lesion['diameter_mm']:.0f} mm\n"
                             f"{lesion['contrast_hu']:+.0f} HU", fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out} ({len(panels)} lesions)")


if __name__ == "__main__":
    main()
