"""The lesions that ``segment`` writes and ``evaluate`` scores: how a probability map becomes lesions, in mm.

0. 3-D consistency: the map is smoothed along the slice axis by a Gaussian of ``--slice-smoothing-mm`` (default
   :data:`DEFAULT_SMOOTHING_MM` mm; :func:`pseudoanomaly.postprocess.smooth_across_slices`): the net maps one slice
   at a time, and a speck it flags in one slice but not its neighbours is seldom a lesion.
1. Threshold: the run's own, calibrated on healthy livers (:mod:`examples.lits.calibration`; 0.5 for a run that
   records none), or ``--threshold T``.
2. 3-D components (26-connected) of the voxels above it; one smaller than ``--min-lesion-mm3`` (default
   :data:`DEFAULT_MIN_LESION_MM3` mm³, the volume of a sphere of about 6 mm) is dropped: specks of a few voxels
   are noise of the map, not lesions a reader could confirm, and most false lesions of a plain 0.5 cut on real CT
   are such specks (129 of 138 under 10 mm in the issue that introduced this step).
3. Optional (off by default): each lesion kept grows over the connected voxels above ``--grow-threshold G``
   (hysteresis: a lesion detected by a strict threshold, delineated by a lenient one; ``auto``: the net's
   decision boundary :data:`GROW_THRESHOLD` when the threshold is above it). On the out-of-sample instrument,
   growing to 0.5 made lesions larger than the truth (benchmarks/RESULTS.md), so it is not the default.

``--slice-smoothing-mm 0 --min-lesion-mm3 0`` switches steps 0 and 2 off: the plain voxel-wise cut.
See :func:`pseudoanomaly.postprocess.lesion_mask` for the laws it keeps.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from pseudoanomaly.postprocess import lesion_mask, smooth_across_slices

from .arguments import non_negative_float, open_unit_interval
from .calibration import DEFAULT_SMOOTHING_MM, run_threshold

__all__ = ["DEFAULT_MIN_LESION_MM3", "DEFAULT_SMOOTHING_MM", "GROW_THRESHOLD", "LesionOutput", "add_lesion_arguments",
           "lesion_settings"]

# mm³: a sphere of 6.2 mm diameter. Smaller than the smallest lesions LiTS's detection analysis counts as
# measurable (10 mm) by a factor of 4 in volume, so a small real lesion is kept while specks go.
DEFAULT_MIN_LESION_MM3 = 125.0
# The segmentation net's decision boundary: where it was trained to put a lesion's edge.
GROW_THRESHOLD = 0.5


@dataclass(frozen=True)
class LesionOutput:
    """Settings that turn a probability map into lesions (see the module docstring).

    Args:
        threshold: voxels above it seed lesions; in (0, 1).
        source: where the threshold comes from, in words (recorded in ``summary.json`` and reports).
        min_volume_mm3: smallest lesion kept, mm³ (0: all).
        grow_threshold: lesions grow over connected voxels above it (``None``: no growth); at most ``threshold``.
        smoothing_mm: standard deviation (mm) of the smoothing across slices (0: none).
        connectivity: 26 or 6.
    """

    threshold: float
    source: str
    min_volume_mm3: float = DEFAULT_MIN_LESION_MM3
    grow_threshold: float | None = None
    smoothing_mm: float = DEFAULT_SMOOTHING_MM
    connectivity: int = 26

    @classmethod
    def resolve(cls, meta: dict[str, Any], threshold: float | str | None = "auto",
                min_volume_mm3: float | None = None, grow_threshold: float | str | None = None,
                smoothing_mm: float | None = None) -> LesionOutput:
        """The settings for a run (``load_run``'s metadata) from the user's choices.

        Args:
            threshold: ``"auto"`` (the run's calibrated threshold, 0.5 without one) or a value in (0, 1).
            min_volume_mm3: ``None`` (the default, :data:`DEFAULT_MIN_LESION_MM3`) or a finite value >= 0.
            grow_threshold: ``None`` or ``"none"`` (no growth, the default), ``"auto"`` (:data:`GROW_THRESHOLD`
                when the threshold is above it, else no growth), or a value in (0, threshold].
            smoothing_mm: ``None`` (the default, :data:`DEFAULT_SMOOTHING_MM`) or a finite value >= 0.

        Raises:
            ValueError: a value out of range, named with the value.
        """
        if threshold == "auto" or threshold is None:
            value, source = run_threshold(meta)
        else:
            value, source = _unit("threshold", threshold), "given (--threshold)"
        if min_volume_mm3 is None:
            min_volume_mm3 = DEFAULT_MIN_LESION_MM3
        if isinstance(min_volume_mm3, bool) or not isinstance(min_volume_mm3, (int, float)) or \
                not math.isfinite(min_volume_mm3) or min_volume_mm3 < 0:
            raise ValueError(f"min_lesion_mm3 must be a finite number >= 0, got {min_volume_mm3!r}")
        if grow_threshold == "auto":
            grow = GROW_THRESHOLD if value > GROW_THRESHOLD else None
        elif grow_threshold is None or grow_threshold == "none":
            grow = None
        else:
            grow = _unit("grow_threshold", grow_threshold)
            if grow > value:
                raise ValueError(f"grow_threshold must be <= the threshold ({value:g}): lesions grow over fainter "
                                 f"voxels, got {grow:g}")
        if smoothing_mm is None:
            smoothing_mm = DEFAULT_SMOOTHING_MM
        if isinstance(smoothing_mm, bool) or not isinstance(smoothing_mm, (int, float)) or \
                not math.isfinite(smoothing_mm) or smoothing_mm < 0:
            raise ValueError(f"slice_smoothing_mm must be a finite number >= 0, got {smoothing_mm!r}")
        return cls(value, source, float(min_volume_mm3), grow, float(smoothing_mm))

    def apply(self, probability: np.ndarray, spacing: tuple[float, ...], axis: int) -> np.ndarray:
        """The lesion mask (bool) of a 3-D probability map with voxels of ``spacing`` mm along its axes, its slices
        along ``axis``."""
        if self.smoothing_mm > 0:
            probability = smooth_across_slices(probability, axis, self.smoothing_mm, spacing)
        return lesion_mask(probability, self.threshold, spacing=spacing, min_volume_mm3=self.min_volume_mm3,
                           grow_threshold=self.grow_threshold, connectivity=self.connectivity)

    def check_liver(self, liver_ml: float, where: str) -> None:
        """Refuse a minimum lesion volume larger than the liver (no lesion could ever be kept)."""
        if self.min_volume_mm3 > liver_ml * 1000:
            raise ValueError(f"min_lesion_mm3={self.min_volume_mm3:g} is larger than the liver of {where} "
                             f"({liver_ml * 1000:.0f} mm³): no lesion could be kept")

    def describe(self) -> str:
        smooth = f"map smoothed across slices ({self.smoothing_mm:g} mm), " if self.smoothing_mm else ""
        grow = "" if self.grow_threshold is None else f", grown to p > {self.grow_threshold:g}"
        return f"{smooth}p > {self.threshold:.3g} ({self.source}), lesions >= {self.min_volume_mm3:g} mm³{grow}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _unit(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}")
    if not 0 < float(value) < 1:  # NaN fails this too
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")
    return float(value)


def _threshold_arg(text: str) -> float | str:
    return text if text == "auto" else open_unit_interval(text)


def _grow_arg(text: str) -> float | str:
    return text if text in ("auto", "none") else open_unit_interval(text)


def add_lesion_arguments(parser: argparse.ArgumentParser | Any, threshold_help: str) -> None:
    """``--threshold``, ``--min-lesion-mm3`` and ``--grow-threshold`` (``segment`` and ``evaluate``)."""
    group = parser.add_argument_group("lesions (see examples.lits.lesion_output)")
    group.add_argument("--threshold", type=_threshold_arg, metavar="T", help=threshold_help)
    group.add_argument("--min-lesion-mm3", type=non_negative_float, metavar="MM3",
                       help=f"drop lesions smaller than this volume (default: {DEFAULT_MIN_LESION_MM3:g}; 0 keeps all)")
    group.add_argument("--slice-smoothing-mm", type=non_negative_float, metavar="MM",
                       help=f"smooth the map across slices by a Gaussian of MM mm before the threshold, for 3-D "
                            f"consistency (default: {DEFAULT_SMOOTHING_MM:g}; 0: none)")
    group.add_argument("--grow-threshold", type=_grow_arg, metavar="G",
                       help=f"grow each lesion over connected voxels above G <= T (hysteresis; auto: {GROW_THRESHOLD} "
                            "when T is above it; default: none, no growth)")


def lesion_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments ``threshold``, ``min_lesion_mm3``, ``grow_threshold`` and ``slice_smoothing_mm`` (of
    ``segment`` and ``evaluate``) from parsed flags."""
    return {"threshold": "auto" if args.threshold is None else args.threshold,
            "min_lesion_mm3": args.min_lesion_mm3,
            "grow_threshold": args.grow_threshold,
            "slice_smoothing_mm": args.slice_smoothing_mm}
