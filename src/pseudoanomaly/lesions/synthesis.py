"""``LesionSynthesis``: 1-3 liver lesions per healthy CT volume, with their labels (see the package docstring)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor, nn

from .._checks import check_count_range, check_int_at_least
from .._random import check_generator
from .anatomy import LiverMap, check_spacing, check_volumes, draw_centre, map_liver, split_noise, tissue_stats
from .render import EDGE_TRUNCATE, Box, blend, lesion_shape, push_outward, random_rotation, smooth_noise

__all__ = ["LesionSynthesis", "SIZES", "APPEARANCES"]

# Diameter (mm) of each size class. Ours, from the usual radiological grouping (sub-centimetre to ~2 cm lesions
# are "small"); Hu et al. use radii of 4/8/16/32 voxels for tiny/small/medium/large.
SIZES = {"small": (5.0, 20.0), "medium": (20.0, 50.0), "large": (50.0, 90.0)}
# Mean HU relative to the surrounding parenchyma, portal-venous phase (ours, from typical CT values):
# hypodense - metastases and most HCC in the portal phase (the most common look); hyperdense - hypervascular
# lesions; rim - hypodense core (rim: RIM_HU); heterogeneous - hypodense with necrotic patches (NECROSIS_HU);
# calcified - hypo- to iso-dense with a few bright spots (CALCIFICATION_HU), e.g. mucinous colorectal metastases.
APPEARANCES = {"hypodense": (-100.0, -20.0), "hyperdense": (20.0, 70.0), "rim": (-100.0, -30.0),
               "heterogeneous": (-90.0, -20.0), "calcified": (-40.0, 10.0)}
APPEARANCE_PROBS = {"hypodense": 0.5, "hyperdense": 0.1, "rim": 0.15, "heterogeneous": 0.15, "calcified": 0.1}
COUNT = (1, 3)  # lesions per volume; Hu et al. put 1-3 large tumours in a volume
AXIS_FACTOR = (0.75, 1.25)  # semi-axes in [0.75 r, 1.25 r], drawn independently (Hu et al.)
DEPTH_FRACTION = 0.8  # ours: a centre lies at least 0.8 r inside the liver, so most of the lesion is liver
SEPARATION = 1.0  # ours: centres at least r1 + r2 apart when the liver has room
VESSEL_TOLERANCE = 0.02  # ours: a lesion's nominal sphere may hold this fraction of vessel voxels
MAX_TRIES = 20  # ours: location draws before the least colliding one is kept
ELASTIC = (0.03, 0.08)  # ours: elastic displacement's standard deviation, fraction of r...
ELASTIC_CLIP = 2.0  # ... clipped at 2 standard deviations per axis, so the centre stays inside the lesion
ELASTIC_CELL = 1 / 3  # ours: the displacement varies over r / 3
EDGE_SIGMA_MM = (0.5, 1.5)  # ours: Gaussian blur of the lesion's edge
MASS_EFFECT = (0.05, 0.15)  # ours: outward push at the lesion's radius, fraction of r
MASS_EFFECT_REACH = 1.0  # ours: the push fades to 0 at (1 + reach) r
TEXTURE_CELL_MM = (1.0, 2.0)  # ours: grid of Hu et al.'s scaled-up texture noise, then smoothed over half a cell
# ours: amplitude (HU) of slow intensity variations across the lesion
HETEROGENEITY_HU = {"hypodense": (2.0, 8.0), "hyperdense": (2.0, 8.0), "rim": (2.0, 8.0),
                    "heterogeneous": (10.0, 25.0), "calcified": (2.0, 8.0)}
RIM_HU = (0.0, 40.0)  # ours: the enhancing rim, relative to the parenchyma (the core is >= 30 HU darker)
RIM_MM = (1.5, 4.0)  # ours: rim thickness, a few voxels in-plane
RIM_FADE_MM = 1.0  # ours: the rim fades into the core over 1 mm
NECROSIS_HU = (-60.0, -20.0)  # ours: necrotic patches, relative to the lesion; necrosis is near water (~10-30 HU)
CALCIFICATION_HU = (300.0, 800.0)  # ours: calcification peak, relative to the lesion
CALCIFICATION_MM = (0.5, 1.0)  # ours: Gaussian sigma of a calcification
CALCIFICATIONS = (1, 4)  # ours: spots per calcified lesion...
CALCIFICATION_RHO = 0.6  # ... centred on voxels of the lesion's inner part (rho <= 0.6), so they never leave it
NOISE_CLIP = 2.5  # ours: the scanner's noise residual is clipped at 2.5 of its standard deviations
MIN_REFERENCE_VOXELS = 100  # ours: fewer parenchyma voxels around a lesion than this: use the whole liver's


def _check_names(name: str, values: object, known: dict) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, Sequence) or not values:
        raise ValueError(f"{name} must be a non-empty sequence of names from {list(known)}, got {values!r}")
    unknown = [v for v in values if v not in known]
    if unknown or len(set(values)) != len(values):
        raise ValueError(f"{name} must hold distinct names from {list(known)}, got {values!r}")
    return tuple(values)


def _check_probs(name: str, probs: object, n: int, default: Sequence[float]) -> tuple[float, ...]:
    if probs is None:
        total = sum(default)
        return tuple(p / total for p in default)
    ok = isinstance(probs, Sequence) and len(probs) == n and all(
        isinstance(p, (int, float)) and not isinstance(p, bool) and math.isfinite(p) and p >= 0 for p in probs)
    if not ok:
        raise ValueError(f"{name} must be {n} non-negative numbers, got {probs!r}")
    if abs(sum(probs) - 1) > 1e-6:
        raise ValueError(f"{name} must sum to 1, got {probs!r} (sum {sum(probs):g})")
    return tuple(float(p) for p in probs)


class LesionSynthesis(nn.Module):
    """Insert 1-3 realistic liver lesions into healthy CT volumes, with their labels (Hu et al., CVPR 2023).

    The lesion model, its sources and where it departs from the paper: :mod:`pseudoanomaly.lesions`. Each volume
    gets a random number of lesions in ``count`` (fewer when one finds no room apart from the earlier ones: lesions
    are kept apart, never merged into one blob); each lesion a size class (``size_probs``), a diameter uniform in
    that class (:data:`SIZES`, capped at what the liver's depth allows), an appearance (``appearance_probs``)
    with its contrast (:data:`APPEARANCES`), a location, shape, texture, edge blur and mass effect. After a call,
    ``synth.last_params`` holds, per sample, a list of one plain dict per lesion (JSON-ready): ``centre_voxel``,
    ``size``, ``diameter_mm``, ``semi_axes_mm``, ``rotation``, ``appearance``, ``contrast_hu``,
    ``parenchyma_hu``, ``texture_hu``, ``heterogeneity_hu``, ``edge_sigma_mm``, ``elastic``, ``mass_effect``,
    ``vessel_fraction``, ``tries``, ``voxels``, ``volume_ml``, ``reach_mm`` (nothing farther from the centre
    changed), and per appearance ``rim_hu``/``rim_mm``, ``necrosis_hu`` or ``calcifications``.

    Nothing is modified in place, and the call is not differentiable (an instrument for making test data).

    Args:
        sizes: size classes to draw from, names of :data:`SIZES`.
        size_probs: probability of each of ``sizes`` (default: equal).
        appearances: appearances to draw from, names of :data:`APPEARANCES`.
        appearance_probs: probability of each of ``appearances`` (default: 0.5 hypodense, 0.1 hyperdense, 0.15
            rim, 0.15 heterogeneous, 0.1 calcified, renormalized over the ones asked for).
        count: ``(min, max)`` lesions per volume (an integer means exactly that many).
        mass_effect: push the surrounding liver outward. The draws are the same either way, so one seed gives
            the same lesions with and without it.
        max_tries: location draws per lesion before the least colliding one (vessels, other lesions) is kept.

    Returns:
        Calling it, ``synth(ct_hu, liver, spacing, generator=None)``, returns ``(ct_with_lesions, label)``: the
        CT in HU, same dtype and device, unchanged outside each lesion's neighbourhood and outside the liver; and
        the lesion label, bool, inside the liver, at least one voxel per sample. ``spacing`` is the voxel size in
        mm along D, H, W. Raises ``ValueError`` for data that is not HU, an empty liver or one touching the
        volume's border, a liver too small for a requested size class, a bad spacing or shape.

    Shape:
        - ct_hu: :math:`(B, 1, D, H, W)` float, Hounsfield units
        - liver: :math:`(B, 1, D, H, W)` bool (or 0/1)
        - output: ``(ct_with_lesions, label)``, both :math:`(B, 1, D, H, W)`

    Example:
        >>> z, y, x = torch.meshgrid(*(torch.linspace(-1, 1, n) for n in (24, 48, 48)), indexing="ij")
        >>> liver = (z**2 + y**2 + x**2 < 0.7)[None, None]
        >>> noise = torch.randn(1, 1, 24, 48, 48, generator=torch.Generator().manual_seed(0))
        >>> ct = torch.where(liver, 120.0, -100.0) + 10 * noise
        >>> synth = LesionSynthesis(sizes=("small",), count=2)
        >>> out, label = synth(ct, liver, spacing=(2.0, 1.0, 1.0), generator=torch.Generator().manual_seed(0))
        >>> out.shape, bool(label.any()), bool(label[~liver].any()), len(synth.last_params[0])
        (torch.Size([1, 1, 24, 48, 48]), True, False, 2)
    """

    def __init__(
        self,
        sizes: Sequence[str] = tuple(SIZES),
        size_probs: Sequence[float] | None = None,
        appearances: Sequence[str] = tuple(APPEARANCES),
        appearance_probs: Sequence[float] | None = None,
        count: int | tuple[int, int] = COUNT,
        mass_effect: bool = True,
        max_tries: int = MAX_TRIES,
    ) -> None:
        super().__init__()
        self.sizes = _check_names("sizes", sizes, SIZES)
        self.size_probs = _check_probs("size_probs", size_probs, len(self.sizes), [1.0] * len(self.sizes))
        self.appearances = _check_names("appearances", appearances, APPEARANCES)
        self.appearance_probs = _check_probs("appearance_probs", appearance_probs, len(self.appearances),
                                             [APPEARANCE_PROBS[a] for a in self.appearances])
        self.count = check_count_range("count", count)
        self.mass_effect = bool(mass_effect)
        self.max_tries = check_int_at_least("max_tries", max_tries, 1)
        self.last_params: list[list[dict]] = []

    def forward(
        self, ct_hu: Tensor, liver: Tensor, spacing: Sequence[float], generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Insert lesions into ``ct_hu`` (see the class); return ``(ct_with_lesions, label)``."""
        cts, livers = check_volumes(ct_hu, liver)  # (B, D, H, W) NumPy; cts may be a view of ct_hu: read only
        spacing = check_spacing(spacing)
        device = ct_hu.device
        check_generator(generator, device)
        maps = [map_liver(ct, mask, spacing) for ct, mask in zip(cts, livers)]
        for b, liver_map in enumerate(maps):  # every sample is checked before anything is drawn
            self._check_room(liver_map, b)
        outs, labels, params = [], [], []
        for ct, liver_map in zip(cts, maps):
            out, label = ct.copy(), np.zeros(ct.shape, bool)
            n = int(torch.randint(self.count[0], self.count[1] + 1, (1,), generator=generator, device=device))
            lesions: list[dict] = []
            for _ in range(n):
                lesion = self._insert(out, label, ct, liver_map, lesions, spacing, generator, device)
                if lesion is not None:
                    lesions.append(lesion)
            outs.append(out)
            labels.append(label)
            params.append(lesions)
        self.last_params = params
        out = torch.from_numpy(np.stack(outs)[:, None]).to(device, ct_hu.dtype)
        return out, torch.from_numpy(np.stack(labels)[:, None]).to(device)

    def _fit_diameter(self, liver_map: LiverMap) -> float:
        return 2 * liver_map.max_depth / DEPTH_FRACTION  # the largest diameter whose centre can be deep enough

    def _check_room(self, liver_map: LiverMap, b: int) -> None:
        fit = self._fit_diameter(liver_map)
        smallest = min(self.sizes, key=lambda s: SIZES[s][0])
        for name in sorted(self.sizes, key=lambda s: SIZES[s][0]):
            lo, hi = SIZES[name]
            if lo <= fit:
                continue
            why = (f"its deepest voxel is {liver_map.max_depth:.1f} mm from the liver's boundary, so lesions up to "
                   f"{fit:.1f} mm across fit (centre at least {DEPTH_FRACTION} x the radius inside the liver)")
            if name == smallest:
                raise ValueError(f"the liver of sample {b} is too small for the smallest requested size {name!r} "
                                 f"({lo:g}-{hi:g} mm): {why}")
            raise ValueError(f"size class {name!r} ({lo:g}-{hi:g} mm) is larger than the liver of sample {b} "
                             f"allows: {why}; drop it from sizes")

    def _uniform(self, low: float, high: float, generator, device) -> float:
        return low + (high - low) * float(torch.rand(1, generator=generator, device=device, dtype=torch.float64))

    def _choice(self, names: tuple[str, ...], probs: tuple[float, ...], generator, device) -> str:
        weights = torch.tensor(probs, dtype=torch.float64, device=device)
        return names[int(torch.multinomial(weights, 1, generator=generator))]

    def _insert(self, out, label, ct, liver_map: LiverMap, others: list[dict], spacing, generator, device
                ) -> dict | None:
        """Draw one lesion and paint it into ``out`` and ``label`` (in place); return its parameters, or None when
        it found no room apart from the ``others``."""
        def uniform(pair):
            return self._uniform(pair[0], pair[1], generator, device)

        size = self._choice(self.sizes, self.size_probs, generator, device)
        lo, hi = SIZES[size]
        diameter = uniform((lo, min(hi, self._fit_diameter(liver_map))))
        r = diameter / 2
        appearance = self._choice(self.appearances, self.appearance_probs, generator, device)
        centre, vessel_fraction, tries, overlaps = draw_centre(
            liver_map, r, DEPTH_FRACTION * r, [(np.array(o["centre_voxel"]), o["diameter_mm"] / 2) for o in others],
            spacing, separation=SEPARATION, vessel_tolerance=VESSEL_TOLERANCE, max_tries=self.max_tries,
            generator=generator, device=device)
        if overlaps:  # no room apart from the earlier lesions: leave it out rather than merge two lesions
            return None
        axes = np.array([uniform(AXIS_FACTOR) * r for _ in range(3)])
        rotation = random_rotation(generator, device)
        elastic, edge_sigma, push = uniform(ELASTIC), uniform(EDGE_SIGMA_MM), uniform(MASS_EFFECT)

        reach = push_outward(out, label, liver_map.liver, centre, r, push, MASS_EFFECT_REACH, spacing) \
            if self.mass_effect else 0.0
        # the box holds the lesion at its most displaced, and its blurred edge
        box = Box(centre, axes.max() + ELASTIC_CLIP * math.sqrt(3) * elastic * r + EDGE_TRUNCATE * edge_sigma,
                  spacing, out.shape)
        field = smooth_noise(3, box.shape, spacing, ELASTIC_CELL * r, generator=generator, device=device)
        displacement = np.clip(field, -ELASTIC_CLIP, ELASTIC_CLIP) * np.float32(elastic * r)  # (3, *box) mm
        rho = lesion_shape(box, axes, rotation, displacement)
        mask = rho <= 1
        liver = liver_map.liver[box.slices]
        # the parenchyma around the lesion, in the scan as it came (earlier lesions are not parenchyma)
        smooth, residual = split_noise(ct[box.slices])
        around = liver & ~liver_map.vessels[box.slices]
        stats = (tissue_stats(ct[box.slices], smooth, residual, around) if around.sum() >= MIN_REFERENCE_VOXELS
                 else liver_map.parenchyma)
        contrast = uniform(APPEARANCES[appearance])
        lesion_hu, extra = self._appearance(appearance, box, rho, mask & liver, stats, contrast, r, spacing,
                                            generator, device)
        # The scanner's noise grain goes on unchanged (noise does not depend on the tissue); clipped so that the
        # sharp edges of vessels, which the residual also holds, do not show through as ghosts.
        lesion_hu += np.clip(residual, -NOISE_CLIP * stats.noise_hu, NOISE_CLIP * stats.noise_hu)
        blend(out, box, mask, lesion_hu, liver, edge_sigma, spacing)
        own = mask & liver
        label[box.slices] |= own
        voxels = int(own.sum())
        return {
            "centre_voxel": [int(c) for c in centre], "size": size, "diameter_mm": round(diameter, 3),
            "semi_axes_mm": [round(float(a), 3) for a in axes], "rotation": np.round(rotation, 5).tolist(),
            "appearance": appearance, "contrast_hu": round(contrast, 2), "parenchyma_hu": round(stats.median_hu, 2),
            "noise_hu": round(stats.noise_hu, 2),
            **extra, "edge_sigma_mm": round(edge_sigma, 3), "elastic": round(elastic, 4),
            "mass_effect": round(push, 4) if self.mass_effect else 0.0,
            "vessel_fraction": round(vessel_fraction, 4), "tries": tries, "voxels": voxels,
            "volume_ml": round(voxels * math.prod(spacing) / 1000, 4), "reach_mm": round(max(reach,
                                                                                             box.radius_mm), 3),
        }

    def _appearance(self, appearance, box, rho, own, stats, contrast, r, spacing, generator, device
                    ) -> tuple[np.ndarray, dict]:
        """The lesion's HU on the box (meaningful inside it), and the appearance's own parameters."""
        def uniform(pair):
            return self._uniform(pair[0], pair[1], generator, device)

        cell = uniform(TEXTURE_CELL_MM)
        # Hu et al.'s texture: Gaussian noise on a coarser grid, upsampled, then smoothed, with the spread of the
        # parenchyma's texture
        texture = smooth_noise(1, box.shape, spacing, cell, generator=generator, device=device, smooth_cells=0)[0]
        texture = ndimage.gaussian_filter(texture, [0.5 * cell / s for s in spacing], mode="nearest")
        texture *= np.float32(stats.texture_hu / (texture.std() + 1e-6))
        heterogeneity = uniform(HETEROGENEITY_HU[appearance])
        slow = smooth_noise(1, box.shape, spacing, r / 2, generator=generator, device=device)[0]
        hu = np.float32(stats.median_hu + contrast) + texture + np.float32(heterogeneity) * slow
        extra = {"texture_hu": round(stats.texture_hu, 2), "heterogeneity_hu": round(heterogeneity, 2)}
        if appearance == "rim":
            rim_hu, thickness = uniform(RIM_HU), uniform(RIM_MM)
            depth = ndimage.distance_transform_edt(rho <= 1, sampling=spacing)  # mm to the lesion's outside
            weight = np.clip((thickness + RIM_FADE_MM - depth) / RIM_FADE_MM, 0, 1).astype(np.float32)
            hu += weight * np.float32(rim_hu - contrast)  # the rim's mean is the parenchyma's + rim_hu
            extra.update(rim_hu=round(rim_hu, 2), rim_mm=round(thickness, 3))
        elif appearance == "heterogeneous":
            necrosis = uniform(NECROSIS_HU)
            patches = smooth_noise(1, box.shape, spacing, r / 3, generator=generator, device=device)[0]
            # patches where the field is high, mostly away from the edge (necrosis is central)
            weight = np.clip((patches - 0.3) / 0.6, 0, 1) * np.clip((1 - rho) / 0.3, 0, 1)
            hu += np.float32(necrosis) * weight.astype(np.float32)
            extra.update(necrosis_hu=round(necrosis, 2))
        elif appearance == "calcified":
            lo, hi = CALCIFICATIONS
            n = int(torch.randint(lo, hi + 1, (1,), generator=generator, device=device))
            inner = np.flatnonzero(own & (rho <= CALCIFICATION_RHO))
            inner = inner if inner.size else np.flatnonzero(own)  # a lesion of a few voxels
            spots = []
            for _ in range(n):
                at = np.unravel_index(inner[int(torch.randint(inner.size, (1,), generator=generator, device=device))],
                                      box.shape)
                peak, sigma = uniform(CALCIFICATION_HU), uniform(CALCIFICATION_MM)
                d2 = sum((o - o.reshape(-1)[i]) ** 2 for o, i in zip(box.offsets, at))  # mm^2 from the spot
                hu += np.float32(peak) * np.exp(-d2 / (2 * sigma**2)).astype(np.float32)
                voxel = [int(i + b) for i, b in zip(at, box.start)]
                spots.append({"voxel": voxel, "hu": round(peak, 1), "sigma_mm": round(sigma, 3)})
            extra.update(calcifications=spots)
        return hu, extra

