"""How fast is presets.zhang2023() (mask + overlay) against the released per-image OpenCV recipe?

Both run in this process on the same batch of liver-ROI images (256 x 256, background 0, foreground =
image > 0 as in the released code), with the same thread count; each is timed several times and the
median is reported. On a GPU only our batched synthesis is timed (the recipe is CPU-only), as masks/s.

    python benchmarks/synthesis_speed.py                       # CPU, batch 64, 2 threads
    python benchmarks/synthesis_speed.py --device cuda --batch 256
"""

from __future__ import annotations

import argparse
import platform

import cv2
import numpy as np
import torch

from _timing import cpu_model, median_seconds, paired_median_seconds  # benchmarks/, on the path of a script run from there

from pseudoanomaly import presets


def liver_roi_batch(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Liver-like ROIs: a textured ellipse of random pose on a zero background, float32 in [0, 1]."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, size, size), np.float32)
    for i in range(n):
        roi = np.zeros((size, size), np.uint8)
        axes = (int(rng.integers(size // 5, size // 3)), int(rng.integers(size // 6, size // 4)))
        cv2.ellipse(roi, (size // 2, size // 2), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        texture = rng.uniform(0.35, 0.65, (size, size)).astype(np.float32)
        out[i] = roi * cv2.GaussianBlur(texture, (5, 5), 1.0)
    return out


def released_recipe(image: np.ndarray, rng: np.random.Generator, kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The released code's synthesis for one image, in OpenCV (our re-implementation, as in the tests)."""
    noise = rng.integers(0, 256, image.shape, dtype=np.uint8)
    blurred = cv2.GaussianBlur(noise, (91, 91), 15)
    stretched = cv2.normalize(blurred, None, 0, 255, cv2.NORM_MINMAX)
    mask = (stretched > 200).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
    mask &= (image > 0).astype(np.uint8)
    shift = rng.uniform(60, 100) / 255 * rng.choice((-1.0, 1.0))
    out = np.where(mask > 0, np.clip(image + shift, 0.0, 1.0), image)
    return out, mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    batch = liver_roi_batch(args.batch, args.size)
    images = torch.from_numpy(batch)[:, None].to(device)
    foreground = images > 0
    synth = presets.zhang2023().to(device)
    generator = torch.Generator(device=device).manual_seed(0)
    run_ours = lambda: synth(images, foreground, generator=generator)  # noqa: E731

    print(f"machine: {platform.node()} | {cpu_model()} | torch {torch.__version__}"
          f" | opencv {cv2.__version__} | threads {args.threads}")
    print(f"batch {args.batch} x {args.size}x{args.size}, device {device}, median of {args.repeats} runs")
    if device.type != "cpu":
        ours = median_seconds(run_ours, args.repeats, sync)
        print(f"ours (presets.zhang2023, batched):  {ours * 1e3:9.1f} ms/batch  {args.batch / ours:10.0f} images/s")
        return
    rng = np.random.default_rng(0)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))
    # in alternation, one call of each per repeat: the ratio of each pair is what a drifting VM disturbs least
    ours, loop, ratio = paired_median_seconds(run_ours, lambda: [released_recipe(im, rng, kernel) for im in batch],
                                              args.repeats)
    print(f"ours (presets.zhang2023, batched):  {ours * 1e3:9.1f} ms/batch  {args.batch / ours:10.0f} images/s")
    print(f"released recipe (per-image OpenCV): {loop * 1e3:9.1f} ms/batch  {args.batch / loop:10.0f} images/s")
    print(f"speed-up: {ratio:.1f}x (median of the {args.repeats} paired ratios; ratio of the medians "
          f"{loop / ours:.1f}x)")


if __name__ == "__main__":
    main()
