"""Gaussian blur as 1-D kernels and matrices: shared by the 2-D noise fields (:mod:`pseudoanomaly.noise`) and their
volume counterparts (``noise3d``), which sit on the same floor and do not import each other."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor


def _gaussian_1d(sigma: float, device, dtype) -> Tensor:
    # 3 sigma either side keeps >99.7% of the mass; for sigma 15 that is the released code's 91 taps
    radius = math.ceil(3.0 * sigma)
    x = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    k = torch.exp(-(x * x) / (2 * sigma * sigma))
    return k / k.sum()


@lru_cache(maxsize=64)
def _blur_matrix(n: int, sigma: float) -> np.ndarray:
    """``(n, n)`` matrix of a Gaussian blur of ``sigma`` along an axis of ``n`` samples: reflect-101 borders (the
    mirror image without repeating the edge sample, as ``cv2.BORDER_REFLECT_101``), or replicate ones when the
    kernel's radius reaches past the axis (a mirror would fold more than once)."""
    kernel = _gaussian_1d(sigma, "cpu", torch.float64).numpy()
    r = kernel.size // 2
    source = np.arange(n)[:, None] + np.arange(-r, r + 1)[None, :]  # (n, taps): sample read by each tap
    if r < n:
        source = np.abs(source)
        source = np.where(source > n - 1, 2 * (n - 1) - source, source)
    else:
        source = source.clip(0, n - 1)
    matrix = np.zeros((n, n))
    np.add.at(matrix, (np.repeat(np.arange(n), kernel.size), source.ravel()), np.tile(kernel, n))
    matrix.setflags(write=False)
    return matrix
