"""The evaluation report: a markdown table of the metrics and the paper's two figures, as PNG files.

- Fig. 2 of Zhang, Deng & Li (SASHIMI 2023): test slices from easy to hard, each as input, restoration, anomaly
  map and ground truth; here ranked by per-slice Dice and sampled evenly along that ranking.
- Fig. 3: Dice and AUROC on the tumor slices as the segmentation phase (phase 2) trains; it shows why the
  paper stops phase 2 early. Drawn only when the run recorded an evaluation history (``train --val``).

Figures use matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pseudoanomaly.io import atomic_write

__all__ = [
    "PAPER_DICE", "write_markdown", "pick_examples", "liver_box", "plot_examples", "plot_history", "write_scan_figure",
]

# Zhang, Deng & Li, SASHIMI 2023, Table 1: Dice (%) on LiTS after training on healthy BTCV livers.
PAPER_DICE = 53.03
# Rows of the Fig. 2 grid.
EXAMPLE_ROWS = 6

METRIC_ROWS = (
    ("dice_global", "Dice, pooled over all slices (the paper's metric)"),
    ("dice_per_volume", "Dice, mean over volumes"),
    ("pixel_auroc", "pixel AUROC inside the liver"),
    ("image_auroc", "slice AUROC (tumor present?), liver slices"),
    ("pixel_ap", "pixel average precision inside the liver"),
)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # before pyplot is imported: no display on servers and CI
    import matplotlib.pyplot as plt

    return plt


def _fmt(value: float | None, percent: bool = True) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{100 * value:.2f}" if percent else f"{value:.3f}"


def write_markdown(path: Path, metrics: dict[str, Any], figures: Sequence[str] = ()) -> Path:
    """Write the report: headline table with the trivial baselines, data summary and figure links.

    Args:
        path: the ``.md`` file to write.
        metrics: the dict :func:`examples.lits.evaluate.evaluate` writes to ``metrics.json``.
        figures: file names (relative to the report) of the figures to embed.
    """
    baselines = metrics.get("baselines", {})
    columns = ["ours", *baselines]
    lines = [
        "# Liver tumor segmentation: evaluation",
        "",
        f"Run `{metrics['run']}` on `{metrics['data']}`: {metrics['n_slices']} slices of {metrics['n_volumes']} "
        f"volumes at {metrics['size']} x {metrics['size']}, {metrics['n_tumor_slices']} with tumor "
        f"({100 * metrics['tumor_fraction']:.2f}% of liver pixels). Threshold {metrics['threshold']} (fixed, "
        "not tuned on the test data).",
        "",
        "| metric (%) | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for key, label in METRIC_ROWS:
        if key not in metrics:
            continue
        cells = [_fmt(metrics[key])] + [_fmt(baselines[b].get(key)) for b in baselines]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Baselines need no training and no labels: *all-zero* predicts no tumor anywhere, *all-liver* predicts "
        "tumor on the whole liver (their AUROCs are 50: a constant score), *darkest-q%* flags the darkest q% of "
        "each slice's liver pixels (q fixed in advance; its score ranks each slice's pixels from bright to dark, "
        "so its slice AUROC is 50). A model that does not beat them has learned nothing a reader gets for free. "
        "A volume without tumor counts as Dice 100 when nothing is predicted in it, so the all-zero baseline's "
        "per-volume mean is above 0 when some test volumes are tumor-free.",
        "",
        f"For reference, the paper reports a global Dice of {PAPER_DICE} on LiTS (Zhang, Deng & Li, SASHIMI "
        "2023, Table 1), with its full-size networks trained for 200 + 1 epochs on BTCV.",
    ]
    if metrics.get("dice_best_threshold") is not None:
        best = metrics["dice_best_threshold"]
        lines += [
            "",
            f"Diagnostic only: the best threshold chosen *with* the test labels would give a pooled Dice of "
            f"{_fmt(best['dice'])} at {best['threshold']:.3g}; it is an upper bound, not a result.",
        ]
    lesions = metrics.get("lesions")
    if lesions:
        ours, rules = lesions["ours"], lesions["baselines"]
        lines += [
            "",
            "## Lesions",
            "",
            f"The lesion output that `segment` writes: {lesions['settings']['described']}. Each volume's slices are "
            "stacked into a 3-D grid at the prepared resolution; a true lesion is found when the output covers any "
            "of it, and an output lesion that touches no found lesion is false. The rules get the same minimum "
            "volume.",
            "",
            "| | lesions | found | missed | false | false per volume | Dice (%) |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, m in [("ours", ours), *rules.items()]:
            per = "n/a" if m["false_per_volume"] is None else f"{m['false_per_volume']:.1f}"
            lines.append(f"| {name} | {m['lesions']} | {m['found']} | {m['missed']} | {m['false']} | {per} | "
                         f"{_fmt(m['dice_global'])} |")
        lines += ["", "By size (equivalent-sphere diameter; found of lesions, false): " + ", ".join(
            f"{size}: {f}/{n}, {fp} false" for size, (n, f, fp) in ours["by_size"].items())]
        if ours["skipped"]:
            lines += ["", f"Not scored lesion by lesion (slices of unequal voxel size): {', '.join(ours['skipped'])}"]
    if metrics.get("warnings"):
        lines += ["", "**Warnings**", ""] + [f"- {w}" for w in metrics["warnings"]]
    for name in figures:
        lines += ["", f"![{name}]({name})"]
    text = "\n".join(lines) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))
    return path


def pick_examples(slice_dice: np.ndarray, has_tumor: np.ndarray, rows: int = EXAMPLE_ROWS) -> list[int]:
    """Indices of up to ``rows`` tumor slices spread evenly from the best per-slice Dice to the worst.

    Args:
        slice_dice: Dice of each slice, ``(N,)``.
        has_tumor: whether each slice holds tumor, ``(N,)`` bool.
        rows: how many to pick.
    """
    candidates = np.flatnonzero(has_tumor)
    if len(candidates) == 0:
        return []
    # stable sort, best first: ties keep slice order so the figure is reproducible
    ranked = candidates[np.argsort(-slice_dice[candidates], kind="stable")]
    positions = np.unique(np.linspace(0, len(ranked) - 1, min(rows, len(ranked))).round().astype(int))
    return ranked[positions].tolist()


def liver_box(livers: np.ndarray, margin: float = 0.1) -> tuple[int, int, int, int]:
    """Square ``(row0, row1, col0, col1)`` box around every liver of ``livers`` (R, H, W), grown by ``margin``
    of its side and kept inside the slice; the whole slice when there is no liver."""
    _, h, w = livers.shape
    rows, cols = np.flatnonzero(livers.any(axis=(0, 2))), np.flatnonzero(livers.any(axis=(0, 1)))
    if len(rows) == 0:
        return 0, h, 0, w
    side = max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1
    side = min(int(side * (1 + 2 * margin)) + 1, h, w)
    r0 = int(np.clip((rows[0] + rows[-1] + 1 - side) // 2, 0, h - side))
    c0 = int(np.clip((cols[0] + cols[-1] + 1 - side) // 2, 0, w - side))
    return r0, r0 + side, c0, c0 + side


def plot_examples(
    path: Path,
    images: np.ndarray,
    restored: np.ndarray,
    maps: np.ndarray,
    labels: np.ndarray,
    titles: Sequence[str],
    threshold: float = 0.5,
) -> Path:
    """The Fig. 2 grid: one row per slice; input, restoration, anomaly map (+ its 0.5 contour), ground truth.

    Shape:
        - images, restored, maps: :math:`(R, H, W)` float; labels: :math:`(R, H, W)` bool.
    """
    plt = _pyplot()
    rows = len(images)
    fig, axes = plt.subplots(rows, 4, figsize=(8, 2.1 * rows + 0.3), squeeze=False)
    for r in range(rows):
        panels = [
            (images[r], "gray", (0, 1), "input"),
            (restored[r], "gray", (0, 1), "restoration"),
            (maps[r], "magma", (0, 1), "tumor probability"),
            (labels[r].astype(float), "gray", (0, 1), "ground truth"),
        ]
        for c, (panel, cmap, (lo, hi), name) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(panel, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
            if c == 2 and (maps[r] > threshold).any():
                ax.contour(maps[r] > threshold, levels=[0.5], colors="cyan", linewidths=0.8)
            if c == 3 and labels[r].any():
                ax.contour(labels[r], levels=[0.5], colors="lime", linewidths=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=9)
        axes[r, 0].set_ylabel(titles[r], fontsize=8)
    fig.suptitle("Test slices from easy to hard (cyan: prediction > 0.5, green: tumor)", fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)
    return path


def plot_history(path: Path, history: Sequence[dict[str, Any]]) -> Path | None:
    """Fig. 3: Dice and AUROC against the step of the phase that trains the segmentation net.

    Args:
        path: the PNG to write.
        history: the trainer's evaluation records ``{"phase", "step", "dice", "auroc", ...}``.

    Returns:
        ``path``, or ``None`` when the history is empty (nothing is written).
    """
    if not history:
        return None
    plt = _pyplot()
    steps = [h["step"] for h in history]
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for key, label, style in (("dice", "Dice (at 0.5)", "o-"), ("auroc", "pixel AUROC", "s--")):
        values = [np.nan if h.get(key) is None else h[key] for h in history]
        ax.plot(steps, values, style, label=label, markersize=4)
    ax.set_xlabel(f"step of the {history[0]['phase']} phase")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title("Validation during the segmentation phase", fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)
    return path


# A liver window for CT (level 30 HU, width 150 HU, a common reading window for the liver): parenchyma sits
# mid-grey, hypodense and hyperdense lesions stand out.
LIVER_WINDOW = (30.0 - 75.0, 30.0 + 75.0)


def write_scan_figure(path: Path, hu: np.ndarray, liver: np.ndarray, tumor: np.ndarray,
                      spacing: Sequence[float], title: str = "", slices: int = 3) -> Path:
    """Picture of one segmented scan: axial slices through its largest predicted tumors.

    Up to ``slices`` panels, one per tumor (largest first, each at its widest axial slice; the widest liver
    slice when no tumor is predicted), the CT in a liver window, shown as radiologists read it (patient's right
    on the left, anterior at the top), the liver outlined in yellow and the tumor in red.

    Args:
        path: the ``.png`` to write (atomically).
        hu: the CT, ``(X, Y, Z)`` with axes pointing right, anterior and superior (RAS).
        liver: the liver mask, same shape.
        tumor: the predicted tumor mask, same shape.
        spacing: voxel sizes along X, Y, Z (mm), for the aspect ratio.
        title: the figure's title.
        slices: panels at most.
    """
    from scipy import ndimage

    components, count = ndimage.label(tumor)
    chosen: list[int] = []
    if count:
        sizes = ndimage.sum_labels(tumor, components, index=np.arange(1, count + 1))
        for label in np.argsort(sizes)[::-1][:slices] + 1:
            z = int(np.argmax((components == label).sum(axis=(0, 1))))  # the tumor's widest axial slice
            if z not in chosen:
                chosen.append(z)
    else:
        chosen.append(int(np.argmax(liver.sum(axis=(0, 1)))))
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(chosen), figsize=(4 * len(chosen), 4.4), squeeze=False)
    for ax, z in zip(axes[0], chosen):
        def shown(volume: np.ndarray) -> np.ndarray:  # (X, Y) -> rows anterior..posterior, columns right..left
            return volume[::-1, ::-1, z].T

        ax.imshow(shown(hu), cmap="gray", vmin=LIVER_WINDOW[0], vmax=LIVER_WINDOW[1],
                  aspect=float(spacing[1]) / float(spacing[0]), interpolation="nearest")
        for mask, color in ((liver, "yellow"), (tumor, "red")):
            if mask[:, :, z].any():
                ax.contour(shown(mask).astype(np.float32), levels=[0.5], colors=color, linewidths=1)
        ax.set_title(f"axial slice {z + 1} of {hu.shape[2]} from the feet; tumor {int(tumor[:, :, z].sum())} px",
                     fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)
    return Path(path)
