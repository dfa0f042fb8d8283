"""Throughput of every mask generator and overlay, one at a time, on one batch.

Masks/s (generators) and images/s (overlays) at the library's defaults, on a batch of liver-ROI-like images
(a textured disc on a zero background, the disc as foreground); median of several timed calls after a warm-up,
synchronizing the device around each call.

    python benchmarks/transform_speed.py                                  # CPU, batch 64, 256 x 256, 2 threads
    python benchmarks/transform_speed.py --device cuda --batch 256
    python benchmarks/transform_speed.py --only BlobMask PerlinMask       # a subset, by name

The first two cases time the binary morphology of the paper's masks (opening and closing with a 9 x 9 ellipse of
thresholded blurred noise) with the OpenCV and the bit-packed backends, which give the same masks.
"""

from __future__ import annotations

import argparse
import platform

import torch

from _timing import cpu_model, median_seconds  # benchmarks/, on the path of a script run from there

from pseudoanomaly import masks, overlays


class Morphology(torch.nn.Module):
    """The paper's opening and closing (9 x 9 ellipse) of binary masks with one backend of ``binary_morphology``."""

    def __init__(self, backend: str) -> None:
        super().__init__()
        self.backend, self.kernel = backend, masks.functional.elliptical_kernel(9)

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        return masks.functional.binary_morphology(raw, self.kernel.to(raw.device), ("open", "close"), self.backend)


def cases(channels: int) -> dict[str, tuple[torch.nn.Module, str]]:
    """Name -> (transform at its defaults, "mask", "overlay" or "morphology")."""
    bank = torch.rand(8, channels, 320, 320, generator=torch.Generator().manual_seed(0))
    return {
        **{f"open+close, {backend}": (Morphology(backend), "morphology") for backend in ("opencv", "packed")},
        "BlurredNoiseMask": (masks.BlurredNoiseMask(), "mask"),
        "PerlinMask": (masks.PerlinMask(), "mask"),
        "PerlinMask(rotation_mode='resample')": (masks.PerlinMask(rotation_mode="resample"), "mask"),
        "PerlinMask(rotation=(0, 0))": (masks.PerlinMask(rotation=(0.0, 0.0)), "mask"),
        "BlobMask": (masks.BlobMask(), "mask"),
        "BlobMask(irregularity=0)": (masks.BlobMask(irregularity=0.0), "mask"),
        "IntensityShift": (overlays.IntensityShift(), "overlay"),
        "TextureBlend(bank)": (overlays.TextureBlend(bank), "overlay"),
        "TextureBlend(noise)": (overlays.TextureBlend(), "overlay"),
        "PatchBlend": (overlays.PatchBlend(), "overlay"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--channels", type=int, default=1, help="image channels (DRAEM's images have 3)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--only", nargs="+", metavar="NAME", help="time only these cases")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    g = torch.Generator(device).manual_seed(0)
    y, x = torch.meshgrid(*(torch.linspace(-1, 1, args.size, device=device),) * 2, indexing="ij")
    fg = ((x / 0.7) ** 2 + (y / 0.5) ** 2 <= 1).expand(args.batch, 1, -1, -1).contiguous()
    images = (0.4 + 0.2 * torch.rand(args.batch, args.channels, args.size, args.size, device=device, generator=g))
    images = images * fg
    blobs = masks.BlobMask()(images, fg, generator=g).bool()
    raw = masks.BlurredNoiseMask(kernel_size=1)(images, generator=g).bool()  # the paper's blobs before smoothing

    chosen = cases(args.channels)
    unknown = sorted(set(args.only or ()) - set(chosen))
    if unknown:
        parser.error(f"--only: unknown case(s) {unknown}; choose from {sorted(chosen)}")
    print(f"{platform.node()} | {cpu_model()} | {args.device} threads={torch.get_num_threads()} torch {torch.__version__}, "
          f"batch {args.batch} x {args.channels} x {args.size} x {args.size}, median of {args.repeats}")
    for name, (transform, kind) in chosen.items():
        if args.only and name not in args.only:
            continue
        transform = transform.to(device)
        if kind == "mask":
            seconds = median_seconds(lambda: transform(images, fg, generator=g), args.repeats, sync)
        elif kind == "morphology":
            seconds = median_seconds(lambda: transform(raw), args.repeats, sync)
        else:
            seconds = median_seconds(lambda: transform(images, blobs, generator=g), args.repeats, sync)
        unit = "images/s" if kind == "overlay" else "masks/s"
        print(f"{name:38} {1000 * seconds:9.1f} ms/batch {args.batch / seconds:9.0f} {unit}")


if __name__ == "__main__":
    main()
