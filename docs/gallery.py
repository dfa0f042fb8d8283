"""The documentation's gallery: what every mask generator and overlay makes, with measured statistics.

    python docs/gallery.py            # a few minutes on 2 CPU cores

Writes the pictures to docs/_static/gallery/ and the statistics to docs/gallery_stats.rst, which
docs/gallery.rst includes; both are committed, so the docs build does not run this script. Uses the CHAOS CT
scan in ../shared/data/chaos-ct3 (relative to the repository root) when it is there, a generated phantom
otherwise; the output names its source. Same seeds, same machine type: the same pictures and numbers.

Statistics are measured over ``--n`` masks (200 by default) drawn on the slice with the most liver, the liver
as foreground: coverage of the 256 x 256 frame and blobs per frame when the masks are drawn without a
foreground (the paper's recipe makes its masks on the whole frame, then keeps what falls in the liver), and,
inside the liver, coverage, blobs (connected components, 8-connectivity, ``cv2.connectedComponents``) and the
rate of empty masks.
"""

from __future__ import annotations

import argparse
import io
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT / "src"))  # a source checkout works without an installed package

from pseudoanomaly.masks import BlobMask, BlurredNoiseMask, MaskGenerator, PerlinMask  # noqa: E402
from pseudoanomaly.overlays import IntensityShift, Overlay, PatchBlend, TextureBlend  # noqa: E402

CHAOS = ROOT.parent / "shared" / "data" / "chaos-ct3"
SIZE = 256  # the paper's training resolution
HU_WINDOW = (-200.0, 250.0)  # the paper's abdominal window
SEED = 0
SHOWN = 5  # masks shown per setting
CHUNK = 50  # masks drawn per call (BlobMask renders (n, blobs, H, W) temporaries)
# The PNGs are stored with a fixed palette, undithered: a few tens of KB each. Grey levels for the slices, and
# the three colours of the drawings (an adaptive palette would give them to the greys, which cover more pixels).
GREY_LEVELS = 28
# Mask pictures show the slice as context only: dimmed and reduced to a few grey levels, it costs little on disk
# and lets the masks stand out. Overlay pictures show the slice as it is.
CONTEXT_LEVELS = 10

# Colours of the pictures: the liver outline, a mask drawn on the whole frame, and what is kept in the liver.
LIVER_COLOR = "#38bdf8"
FRAME_MASK_COLOR = "#fbbf24"
KEPT_COLOR = "#ef4444"


# -- the slice ---------------------------------------------------------------------------------------------
@dataclass
class Slices:
    images: np.ndarray  # (K, SIZE, SIZE) float32 in [0, 1]; images[0] has the most liver
    livers: np.ndarray  # (K, SIZE, SIZE) bool
    source: str


def _window(hu: np.ndarray) -> np.ndarray:
    return np.clip((hu - HU_WINDOW[0]) / (HU_WINDOW[1] - HU_WINDOW[0]), 0.0, 1.0).astype(np.float32)


def chaos_slices(count: int) -> Slices | None:
    """The CHAOS slice with the most liver, then ``count - 1`` other liver slices, windowed, at 256 x 256."""
    try:
        import nibabel as nib
    except ImportError:
        return None
    if not (CHAOS / "ct.nii.gz").is_file() or not (CHAOS / "liver.nii.gz").is_file():
        return None
    hu = np.asarray(nib.as_closest_canonical(nib.load(CHAOS / "ct.nii.gz")).dataobj, dtype=np.float32)
    liver = np.asarray(nib.as_closest_canonical(nib.load(CHAOS / "liver.nii.gz")).dataobj) > 0
    area = liver.sum(axis=(0, 1))
    best = int(area.argmax())
    # other slices well inside the liver, 8 slices (16 mm) apart, for overlays that take content from them
    near = (best - 8, best + 8, best - 16, best + 16)
    others = [z for z in near if 0 <= z < len(area) and area[z] > 0.5 * area[best]]
    images, livers = [], []
    for z in [best, *others][:count]:
        # Canonical RAS arrays are indexed (x: patient's left -> right, y: posterior -> anterior). Radiological
        # view: anterior at the top, the patient's right (the liver) on the image's left.
        image = hu[:, :, z].T[::-1, ::-1]
        roi = liver[:, :, z].T[::-1, ::-1].astype(np.uint8)
        images.append(cv2.resize(_window(np.ascontiguousarray(image)), (SIZE, SIZE), interpolation=cv2.INTER_AREA))
        livers.append(cv2.resize(np.ascontiguousarray(roi), (SIZE, SIZE), interpolation=cv2.INTER_NEAREST).astype(bool))
    return Slices(np.stack(images), np.stack(livers), "the CHAOS CT scan, set 3 (Kavur et al., 2021)")


def phantom_slices(count: int) -> Slices:
    """Body ellipses with a textured liver-like region, slightly different per slice."""
    rng = np.random.default_rng(SEED)
    images, livers = [], []
    for k in range(count):
        image = np.zeros((SIZE, SIZE), np.float32)
        cv2.ellipse(image, (128, 128), (115, 85), 0, 0, 360, 0.45, -1)
        roi = np.zeros((SIZE, SIZE), np.uint8)
        cv2.ellipse(roi, (100 + 3 * k, 120), (60 - 2 * k, 45), 25, 0, 360, 1, -1)
        texture = cv2.GaussianBlur(rng.normal(0, 0.05, (SIZE, SIZE)).astype(np.float32), (7, 7), 2)
        images.append(np.where(roi > 0, 0.62 + texture, image).clip(0, 1).astype(np.float32))
        livers.append(roi.astype(bool))
    return Slices(np.stack(images), np.stack(livers), "a generated phantom slice (the CHAOS scan was not found)")


def load_slices(count: int = 4) -> Slices:
    found = chaos_slices(count)
    return found if found is not None and len(found.images) == count else phantom_slices(count)


# -- statistics ----------------------------------------------------------------------------------------------
@dataclass
class MaskStats:
    frame_coverage: float  # mean fraction of the frame, masks drawn without a foreground
    frame_blobs: float  # mean connected components per frame, same masks
    liver_coverage: float  # mean fraction of the liver, masks drawn with the liver as foreground
    liver_blobs: float  # mean connected components inside the liver (empty masks count 0)
    empty_rate: float  # fraction of masks with no pixel in the liver


def _components(masks: torch.Tensor) -> np.ndarray:
    u8 = masks[:, 0].to(torch.uint8).numpy()
    return np.array([cv2.connectedComponents(m, connectivity=8)[0] - 1 for m in u8])


def draw_masks(gen: MaskGenerator, image: np.ndarray, liver: np.ndarray, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` masks inside the liver and the same draws on the whole frame (replayed without a foreground)."""
    g = torch.Generator().manual_seed(SEED)
    inside, frame = [], []
    for start in range(0, n, CHUNK):
        b = min(CHUNK, n - start)
        images = torch.from_numpy(image)[None, None].expand(b, 1, SIZE, SIZE)
        fg = torch.from_numpy(liver)[None, None].expand(b, 1, SIZE, SIZE)
        inside.append(gen(images, fg, generator=g).bool())
        frame.append(gen(images, params=gen.last_params).bool())  # same parameters, no foreground
    return torch.cat(inside), torch.cat(frame)


def mask_stats(inside: torch.Tensor, frame: torch.Tensor, liver: np.ndarray) -> MaskStats:
    inside_area = inside.flatten(1).sum(1).double()
    return MaskStats(
        frame_coverage=float(frame.double().mean()),
        frame_blobs=float(_components(frame).mean()),
        liver_coverage=float((inside_area / liver.sum()).mean()),
        liver_blobs=float(_components(inside).mean()),
        empty_rate=float((inside_area == 0).double().mean()),
    )


# -- drawing -------------------------------------------------------------------------------------------------
def _palette() -> Image.Image:
    greys = np.linspace(0, 255, GREY_LEVELS).round().astype(int)
    colors = [(g, g, g) for g in greys] + [
        tuple(round(255 * v) for v in matplotlib.colors.to_rgb(c)) for c in (LIVER_COLOR, FRAME_MASK_COLOR, KEPT_COLOR)
    ]
    flat = [v for rgb in colors for v in rgb]
    palette = Image.new("P", (1, 1))
    palette.putpalette(flat + flat[-3:] * (256 - len(colors)))
    return palette


def _save(fig: plt.Figure, path: Path, dpi: float, grey: bool = False) -> None:
    """Save with a fixed palette, or in grey levels for a grey figure (the pictures are small on disk), and no
    metadata (reproducible bytes)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    plt.close(fig)
    buffer.seek(0)
    picture = Image.open(buffer).convert("RGB")
    picture = picture.convert("L") if grey else picture.quantize(palette=_palette(), dither=Image.Dither.NONE)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path, optimize=True)


def _crop_box(livers: np.ndarray, margin: int = 8) -> tuple[slice, slice]:
    """A square around every liver ROI, with a margin."""
    ys, xs = np.nonzero(livers.any(axis=0))
    cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
    half = max(ys.max() - ys.min(), xs.max() - xs.min()) / 2 + margin
    top = int(np.clip(round(cy - half), 0, SIZE - 2 * half))
    left = int(np.clip(round(cx - half), 0, SIZE - 2 * half))
    side = int(round(2 * half))
    return slice(top, top + side), slice(left, left + side)


def _context(image: np.ndarray, pixels: int) -> np.ndarray:
    """The slice as a background: resized to the tile's pixels, smoothed, contrast halved, a few grey levels."""
    small = cv2.GaussianBlur(cv2.resize(image, (pixels, pixels), interpolation=cv2.INTER_AREA), (0, 0), 0.7)
    return np.round((0.25 + 0.5 * small) * CONTEXT_LEVELS) / CONTEXT_LEVELS


def _tile(ax: plt.Axes, image: np.ndarray, box: tuple[slice, slice] | None = None, size: int | None = None) -> None:
    """Show ``image[box]``; ``size`` stretches it over a ``size x size`` pixel grid (a resized background)."""
    box = box or (slice(None), slice(None))
    h, w = (size, size) if size else image[box].shape
    ax.imshow(image[box], cmap="gray", vmin=0, vmax=1, interpolation="antialiased",
              extent=(-0.5, w - 0.5, h - 0.5, -0.5))
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _outline(ax: plt.Axes, mask: np.ndarray, color: str, width: float, box=None, style="solid") -> None:
    box = box or (slice(None), slice(None))
    part = mask[box].astype(float)
    if part.any() and not part.all():
        ax.contour(part, levels=[0.5], colors=[color], linewidths=width, linestyles=style)


def _fill(ax: plt.Axes, mask: np.ndarray, color: str, alpha: float, box=None) -> None:
    box = box or (slice(None), slice(None))
    rgba = np.zeros((*mask[box].shape, 4))
    rgba[..., :3] = matplotlib.colors.to_rgb(color)
    rgba[..., 3] = mask[box] * alpha
    ax.imshow(rgba, interpolation="nearest")


# Each picture is made at the width, in pixels, at which the docs show it (docs/gallery.rst gives no width, so
# one picture pixel is one CSS pixel and nothing is blurred by scaling; furo's content column, 736 px at the
# default font size, holds either). Tiles come out about 115 px wide, no smaller than the docs showed them
# before, and the row labels LABEL_PX tall, as legible as the page's small print.
MASKS_PX = 600  # five tiles
OVERLAYS_PX = 480  # four tiles
LABEL_PX = 13
GAP = 0.04  # space between tiles, as a fraction of a tile


@dataclass
class Grid:
    fig: plt.Figure
    axes: np.ndarray  # (rows, cols) of plt.Axes
    dpi: float  # at which to save the figure for its shown width

    def label_row(self, row: int, text: str) -> None:
        """The row's label, one line of code above its first tile (it may run over the next tiles)."""
        self.axes[row, 0].set_title(text, loc="left", fontsize=LABEL_PX * 72 / self.dpi, family="monospace", pad=3)


def _grid(rows: int, cols: int, tile: float, shown_px: int) -> Grid:
    """A figure of ``rows x cols`` square tiles of ``tile`` inches, each row under a band for its label, to be
    saved ``shown_px`` pixels wide.

    As the picture's width in pixels is fixed, ``tile`` only sets how thick lines given in points come out (about
    one pixel per point for 1.6-inch tiles at 600 px). The labels go above the rows rather than on their left,
    so that they take no width from the tiles."""
    width = cols * tile * (1 + GAP)
    dpi = shown_px / width
    band = 1.9 * LABEL_PX / dpi  # inches above a row for its label
    height = rows * (tile + band) + GAP * tile
    fig, axes = plt.subplots(rows, cols, figsize=(width, height), squeeze=False,
                             gridspec_kw={"wspace": GAP, "hspace": band / tile})
    fig.subplots_adjust(left=0.5 * GAP * tile / width, right=1 - 0.5 * GAP * tile / width, top=1 - band / height,
                        bottom=0.5 * GAP * tile / height)
    return Grid(fig, axes, dpi)


def mask_figure(rows: list[tuple[str, torch.Tensor, torch.Tensor]], slices: Slices, path: Path) -> None:
    """Rows of masks on the whole frame: drawn without a foreground (outline) and kept in the liver (filled)."""
    image, liver = slices.images[0], slices.livers[0]
    grid = _grid(len(rows), SHOWN, 1.6, shown_px=MASKS_PX)
    background = _context(image, round(1.6 * grid.dpi))
    for r, (label, inside, frame) in enumerate(rows):
        for c in range(SHOWN):
            ax = grid.axes[r, c]
            _tile(ax, background, size=SIZE)
            _outline(ax, liver, LIVER_COLOR, 0.8)
            _outline(ax, frame[c, 0].numpy(), FRAME_MASK_COLOR, 0.7)
            _fill(ax, inside[c, 0].numpy(), KEPT_COLOR, 1.0)
            _outline(ax, inside[c, 0].numpy(), KEPT_COLOR, 0.9)  # keeps blobs of a few pixels visible
        grid.label_row(r, label)
    _save(grid.fig, path, dpi=grid.dpi)


def overlay_figure(
    rows: list[tuple[str, torch.Tensor]], masks: torch.Tensor, slices: Slices, path: Path
) -> None:
    """First row: where the anomaly goes; then one row per overlay setting, on the same masks."""
    box = _crop_box(slices.livers)
    n = masks.shape[0]
    grid = _grid(len(rows) + 1, n, 1.25, shown_px=OVERLAYS_PX)
    for c in range(n):
        _tile(grid.axes[0, c], slices.images[c], box)
        _outline(grid.axes[0, c], slices.livers[c], LIVER_COLOR, 0.8, box)
        _outline(grid.axes[0, c], masks[c, 0].numpy(), KEPT_COLOR, 1.0, box)
    grid.label_row(0, "input slices: liver (blue) and mask (red)")
    for r, (label, augmented) in enumerate(rows, start=1):
        for c in range(n):
            _tile(grid.axes[r, c], augmented[c, 0].numpy(), box)
        grid.label_row(r, label)
    _save(grid.fig, path, dpi=grid.dpi)


def quickstart_figure(path: Path) -> None:
    """Run the quickstart example exactly as the docs show it, saving its figure instead of showing it."""
    code = (DOCS / "examples" / "quickstart.py").read_text()
    namespace: dict[str, object] = {}
    show = plt.show
    plt.show = lambda *args, **kwargs: None
    try:
        exec(compile(code, "quickstart.py", "exec"), namespace)
    finally:
        plt.show = show
    _save(plt.gcf(), path, dpi=64, grey=True)


# -- what the gallery shows ------------------------------------------------------------------------------------
MASK_SETTINGS: dict[str, list[tuple[str, str, MaskGenerator]]] = {
    "blurred_noise": [
        ("paper", "BlurredNoiseMask()", BlurredNoiseMask()),
        ("sigma8", "BlurredNoiseMask(sigma=8)", BlurredNoiseMask(sigma=8.0)),
        ("sigma25", "BlurredNoiseMask(sigma=25)", BlurredNoiseMask(sigma=25.0)),
        ("threshold", "BlurredNoiseMask(threshold=170/255)", BlurredNoiseMask(threshold=170 / 255)),
        ("rejection", "BlurredNoiseMask(rejection=True, max_tries=50)",
         BlurredNoiseMask(rejection=True, max_tries=50)),
    ],
    "perlin": [
        ("draem", "PerlinMask()", PerlinMask()),
        ("coarse", "PerlinMask(scale_exponents=(0, 2))", PerlinMask(scale_exponents=(0, 2))),
        ("fine", "PerlinMask(scale_exponents=(4, 5))", PerlinMask(scale_exponents=(4, 5))),
        ("threshold", "PerlinMask(threshold=0.3)", PerlinMask(threshold=0.3)),
    ],
    "blob": [
        ("default", "BlobMask()", BlobMask()),
        ("ellipses", "BlobMask(irregularity=0)", BlobMask(irregularity=0.0)),
        ("irregular", "BlobMask(irregularity=0.4)", BlobMask(irregularity=0.4)),
        ("many_small", "BlobMask(count=(4, 8), radius=(0.015, 0.04))",
         BlobMask(count=(4, 8), radius=(0.015, 0.04))),
    ],
}

OVERLAY_SETTINGS: dict[str, list[tuple[str, Overlay]]] = {
    "intensity": [
        ("IntensityShift()", IntensityShift()),
        ('IntensityShift(direction="darken")', IntensityShift(direction="darken")),
        ("IntensityShift(magnitude=(10/255, 30/255))", IntensityShift(magnitude=(10 / 255, 30 / 255))),
    ],
    "texture": [
        ("TextureBlend()", TextureBlend()),
        ("TextureBlend(beta=(0, 0))", TextureBlend(beta=(0.0, 0.0))),
        ("TextureBlend(beta=(0.6, 0.8))", TextureBlend(beta=(0.6, 0.8))),
    ],
    "patch": [
        ('PatchBlend(source="other")', PatchBlend(source="other")),
        ('PatchBlend(source="other", alpha=(1, 1))', PatchBlend(source="other", alpha=(1.0, 1.0))),
        ('PatchBlend(source="self", alpha=(1, 1))', PatchBlend(source="self", alpha=(1.0, 1.0))),
    ],
}


def _percent(x: float) -> str:
    return f"{100 * x:.1f} %"


def _table(header: list[str], rows: list[list[str]], widths: str) -> list[str]:
    lines = [".. list-table::", "   :header-rows: 1", f"   :widths: {widths}", ""]
    for row in [header, *rows]:
        lines.append(f"   * - {row[0]}")
        lines += [f"     - {cell}" for cell in row[1:]]
    return lines + [""]


def run(n: int, out: Path, stats_path: Path) -> None:
    torch.manual_seed(SEED)
    slices = load_slices()
    image, liver = slices.images[0], slices.livers[0]
    print(f"slice: {slices.source}; liver {liver.mean():.1%} of the frame; {n} masks per setting")
    rst = [
        ".. This file is generated by docs/gallery.py; do not edit it by hand.",
        "",
    ]
    measured: dict[str, list[tuple[str, str, MaskStats, torch.Tensor, torch.Tensor]]] = {}
    for family, settings in MASK_SETTINGS.items():
        measured[family] = []
        for key, code, gen in settings:
            t0 = time.perf_counter()
            inside, frame = draw_masks(gen, image, liver, n)
            stats = mask_stats(inside, frame, liver)
            measured[family].append((key, code, stats, inside, frame))
            print(f"  {code:48s} frame {stats.frame_coverage:6.1%} in {stats.frame_blobs:4.1f} blobs | liver "
                  f"{stats.liver_coverage:6.1%} in {stats.liver_blobs:4.1f} blobs, empty {stats.empty_rate:6.1%} "
                  f"({time.perf_counter() - t0:.1f} s)")
        rows = [(code, inside, frame) for _, code, _, inside, frame in measured[family]]
        mask_figure(rows, slices, out / f"masks_{family}.png")
        rst += [f".. {family}-start", ""]
        rst += _table(
            ["setting", "frame covered", "blobs per frame", "liver covered", "blobs in the liver",
             "empty in the liver"],
            [[f"``{code}``", _percent(s.frame_coverage), f"{s.frame_blobs:.1f}", _percent(s.liver_coverage),
              f"{s.liver_blobs:.1f}", _percent(s.empty_rate)] for _, code, s, _, _ in measured[family]],
            "34 13 13 13 13 14",
        )
        rst += [f".. {family}-end", ""]

    # the three generators side by side, at their defaults
    defaults = [
        (code, inside, frame)
        for family in measured for _, code, _, inside, frame in measured[family][:1]
    ]
    mask_figure(defaults, slices, out / "masks_compared.png")

    # overlays: one batch of liver slices, one set of tumor-like masks, every setting on the same masks
    count = len(slices.images)
    images = torch.from_numpy(slices.images)[:, None]  # (K, 1, H, W)
    livers = torch.from_numpy(slices.livers)[:, None]
    masks = BlobMask(radius=(0.04, 0.09))(images, livers, generator=torch.Generator().manual_seed(SEED))
    big = torch.from_numpy(slices.images)[:, None].repeat(math.ceil(n / count), 1, 1, 1)[:n]
    big_livers = torch.from_numpy(slices.livers)[:, None].repeat(math.ceil(n / count), 1, 1, 1)[:n]
    big_masks = BlobMask(radius=(0.04, 0.09))(big, big_livers, generator=torch.Generator().manual_seed(SEED + 1))
    window = HU_WINDOW[1] - HU_WINDOW[0]
    for family, settings in OVERLAY_SETTINGS.items():
        rows, table = [], []
        for code, overlay in settings:
            augmented = overlay(images, masks, generator=torch.Generator().manual_seed(SEED))
            rows.append((code, augmented))
            # measured on n samples: how much the masked pixels change; pixels outside never do
            changed = overlay(big, big_masks, generator=torch.Generator().manual_seed(SEED + 1))
            inside = big_masks.bool().expand_as(big)
            change = (changed - big)[inside].abs()
            assert torch.equal(changed[~inside], big[~inside]), f"{code} changed pixels outside the mask"
            table.append([f"``{code.replace(chr(10), ' ')}``", f"{float(change.mean()) * window:.0f} HU",
                          f"{float(change.median()) * window:.0f} HU",
                          _percent(float((change == 0).double().mean()))])
            print(f"  {code.replace(chr(10), ' '):48s} mean |change| in the mask "
                  f"{float(change.mean()) * window:5.0f} HU")
        overlay_figure(rows, masks, slices, out / f"overlays_{family}.png")
        rst += [f".. {family}-start", ""]
        rst += _table(["setting", "mean abs. change in the mask", "median abs. change", "masked pixels unchanged"],
                      table, "46 18 18 18")
        rst += [f".. {family}-end", ""]

    quickstart_figure(out / "quickstart.png")
    rst += [".. source-start", "", f"Pictures and statistics made from {slices.source}, slice with the most liver"
            f" (window [{HU_WINDOW[0]:.0f}, {HU_WINDOW[1]:.0f}] HU, {SIZE} x {SIZE} pixels); mask statistics over"
            f" {n} masks per setting, seed {SEED}, by ``python docs/gallery.py``.", "", ".. source-end", ""]
    stats_path.write_text("\n".join(rst))
    total = sum(p.stat().st_size for p in out.glob("*.png"))
    print(f"wrote {len(list(out.glob('*.png')))} pictures to {out} ({total / 1024:.0f} KB) and {stats_path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="masks per setting for the statistics (default 200)")
    parser.add_argument("--out", type=Path, default=DOCS / "_static" / "gallery", help="folder of the pictures")
    parser.add_argument("--stats", type=Path, default=DOCS / "gallery_stats.rst", help="generated rST file")
    args = parser.parse_args()
    if args.n < SHOWN:
        parser.error(f"--n must be at least {SHOWN}, got {args.n}")
    run(args.n, args.out, args.stats)


if __name__ == "__main__":
    main()
