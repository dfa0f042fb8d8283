"""Phantom abdominal CT: healthy volumes in BTCV layout, tumor volumes in LiTS layout.

A stand-in for the real data sets (BTCV for healthy training livers, LiTS for tumors) so that the whole
pipeline — prepare, train, evaluate, segment — runs and is tested on any machine. It is a drawing, not a
simulation: each axial slice is built from ellipses and smooth random fields whose Hounsfield values are the
typical ones of a portal-venous abdominal CT, so that the HU window, the liver ROI and the histogram
equalization of ``prepare`` see realistic numbers.

Tissues (HU; why):

- air outside the body: -1000 (the definition of the scale); bowel gas -700 (gas mixed with content);
- subcutaneous and mesenteric fat: -100 (fat is -150..-50); abdominal wall and paraspinal muscle: 50;
- other soft tissue of the abdominal cavity: 30 +- 15 (bowel, fluid, unenhanced structures);
- bone: cortex 700 (vertebral ring, ribs), cancellous vertebral body 250;
- liver parenchyma: a base drawn per volume in [85, 115] plus a smooth texture of 10 HU standard deviation,
  so 60..140 (enhanced liver; the CHAOS scan measures ~141, unenhanced liver ~60);
- hepatic and portal vessels: the parenchyma + 40..60 (contrast-filled), tubes of 0.6-2.5 mm radius;
- spleen 110, kidneys 160 (enhancing cortex), aorta 180, inferior vena cava 130 (portal-venous phase);
- tumors (LiTS set only), 1-3 per volume (fewer when the liver has no room left), inside the liver and apart
  from each other: three in four hypo-dense (-30..-70 relative to the parenchyma, like most metastases and HCC
  washout in the portal phase), the rest hyper-dense (+30..+60, hypervascular lesions); radius 4-20 px at a
  160 px slice (scaled with the slice), irregular (an ellipsoid with a smoothly perturbed surface), spanning at
  least three slices before clipping to the liver, with a heterogeneous interior (smooth noise, and a necrotic
  core of a further -20..-40 in some large hypo-dense ones) and a soft rim;
- quantum noise: 8 HU standard deviation everywhere.

Geometry: the patient lies supine; the liver is on the patient's right (the image's left in the radiological
view), the spleen and the aorta on the left; the liver spans the upper ~75 % of the slices, widest in its upper
half, with a left lobe crossing the midline anteriorly in the upper slices. Spacing is about 0.8 x 0.8 x 2.5 mm
(drawn per volume). Files: BTCV volumes are stored in (L, P, S) orientation (like DICOM-derived NIfTI), LiTS
volumes in (L, A, I), so that readers must reorient.

:func:`make_cohort` writes ``OUT/btcv/img/img0001.nii.gz`` (int16 HU) with ``OUT/btcv/label/label0001.nii.gz``
(uint8 organ labels: 1 spleen, 2 right kidney, 3 left kidney, 6 liver, 8 aorta, 9 inferior vena cava), and
``OUT/lits/volume-0.nii.gz`` (int16 HU) with ``OUT/lits/segmentation-0.nii.gz`` (uint8 0/1 liver/2 tumor).
Everything is deterministic per seed: case ``i`` of a kind depends only on ``(seed, kind, i)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
from scipy import ndimage

from pseudoanomaly.io import atomic_path

BTCV_LABELS = {"spleen": 1, "right_kidney": 2, "left_kidney": 3, "liver": 6, "aorta": 8, "ivc": 9}
LITS_LIVER, LITS_TUMOR = 1, 2
BTCV_AXCODES = ("L", "P", "S")
LITS_AXCODES = ("L", "A", "I")
REFERENCE_SLICE_PX = 160  # tumor radii are given at this slice size and scale with it
QUANTUM_NOISE_HU = 8.0


@dataclass(frozen=True)
class PhantomCase:
    """One phantom volume in canonical RAS orientation (array axes point to patient Right, Anterior, Superior).

    Attributes:
        hu: (X, Y, Z) int16 Hounsfield units.
        organs: (X, Y, Z) uint8 BTCV organ labels (liver = 6, tumors included in the liver).
        tumor: (X, Y, Z) bool tumor voxels (a subset of the liver).
        affine: (4, 4) voxel-to-world (RAS, mm) matrix.
    """

    hu: np.ndarray
    organs: np.ndarray
    tumor: np.ndarray
    affine: np.ndarray

    @property
    def liver(self) -> np.ndarray:
        """(X, Y, Z) bool liver voxels, tumors included."""
        return self.organs == BTCV_LABELS["liver"]


@dataclass(frozen=True)
class Cohort:
    """Where :func:`make_cohort` wrote its files.

    Attributes:
        btcv_root: the BTCV-layout folder (``img/``, ``label/``), for ``prepare --layout btcv``.
        lits_root: the LiTS-layout folder, for ``prepare --layout lits``.
        healthy: ``(image, label)`` paths of the healthy volumes.
        tumor: ``(volume, segmentation)`` paths of the tumor volumes.
    """

    btcv_root: Path
    lits_root: Path
    healthy: list[tuple[Path, Path]]
    tumor: list[tuple[Path, Path]]


def reorient(array: np.ndarray, affine: np.ndarray, axcodes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The same volume with its array axes permuted and flipped to ``axcodes``, and the matching affine.

    Args:
        array: (X, Y, Z) voxel data.
        affine: (4, 4) voxel-to-world matrix of ``array``.
        axcodes: target axis codes, e.g. ``("L", "P", "S")``.

    Returns:
        ``(array, affine)`` describing the same voxels in world space.
    """
    start = nib.orientations.io_orientation(affine)
    transform = nib.orientations.ornt_transform(start, nib.orientations.axcodes2ornt(tuple(axcodes)))
    out = nib.orientations.apply_orientation(array, transform)
    return np.ascontiguousarray(out), affine @ nib.orientations.inv_ornt_aff(transform, array.shape)


def make_case(shape: Sequence[int] = (160, 160, 24), seed: int | Sequence[int] = 0, n_tumors: int = 0) -> PhantomCase:
    """Draw one phantom volume.

    Args:
        shape: (X, Y, Z) voxels; X and Y at least 48, Z at least 8.
        seed: seed (or seed sequence) of the NumPy generator; the same seed gives the same volume.
        n_tumors: number of tumors to place in the liver (0 for a healthy volume).

    Returns:
        The volume in canonical RAS orientation (see :class:`PhantomCase`).
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape[:2]) < 48 or shape[2] < 8:
        raise ValueError(f"shape must be (X, Y, Z) with X, Y >= 48 and Z >= 8, got {shape}")
    if not 0 <= n_tumors <= 10:
        raise ValueError(f"n_tumors must be in [0, 10], got {n_tumors}")
    rng = np.random.default_rng(seed)
    x, y, z = shape
    spacing = np.array([rng.uniform(0.7, 0.9), 0, rng.choice([2.0, 2.5, 3.0])])
    spacing[1] = spacing[0]
    p = _draw_patient(rng)

    # Draw in the radiological slice frame (rows anterior -> posterior, columns patient right -> left,
    # slices inferior -> superior): the frame the anatomy above is described in.
    hu = np.empty((y, x, z), np.float32)  # (R, C, Z)
    organs = np.zeros((y, x, z), np.uint8)
    tissue_noise = _smooth_noise(rng, (y, x, z), sigma_px=3.0)
    fat_noise = _smooth_noise(rng, (y, x, z), sigma_px=4.0)
    for k in range(z):
        t = k / (z - 1)
        hu[:, :, k], organs[:, :, k] = _draw_slice((y, x), t, p, tissue_noise[:, :, k], fat_noise[:, :, k])

    liver = organs == BTCV_LABELS["liver"]
    mm = (spacing[1], spacing[0], spacing[2])  # (R, C, Z) voxel size
    scale = min(x, y) / REFERENCE_SLICE_PX
    hu += np.where(liver, p["liver_hu"] + 10.0 * _smooth_noise(rng, (y, x, z), sigma_px=2.5), 0.0)
    _add_vessels(rng, hu, liver, mm, scale)
    tumor = np.zeros_like(liver)
    for _ in range(n_tumors):
        _add_tumor(rng, hu, liver, tumor, mm, scale, p["liver_hu"])
    hu += rng.normal(0.0, QUANTUM_NOISE_HU, hu.shape).astype(np.float32)
    hu = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)

    # (R, C, Z) radiological -> (X, Y, Z) RAS: columns run right -> left, rows anterior -> posterior.
    def to_ras(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a[::-1, ::-1, :].transpose(1, 0, 2))

    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -(np.array(shape) - 1) / 2 * spacing + rng.uniform(-20, 20, 3)
    return PhantomCase(hu=to_ras(hu), organs=to_ras(organs), tumor=to_ras(tumor), affine=affine)


def make_cohort(
    out_dir: str | Path,
    n_healthy: int = 4,
    n_tumor: int = 4,
    shape: Sequence[int] = (160, 160, 24),
    seed: int = 0,
) -> Cohort:
    """Write healthy volumes in BTCV layout and tumor volumes in LiTS layout (see the module docstring).

    Args:
        out_dir: folder to write ``btcv/`` and ``lits/`` into (created if needed; files are overwritten).
        n_healthy: number of healthy volumes (``img0001`` ...).
        n_tumor: number of tumor volumes (``volume-0`` ...), each with 1-3 tumors.
        shape: (X, Y, Z) voxels of every volume.
        seed: cohort seed; volume ``i`` of each kind depends only on ``(seed, kind, i)``.

    Returns:
        The roots and file pairs written.
    """
    if n_healthy < 0 or n_tumor < 0:
        raise ValueError(f"n_healthy and n_tumor must be >= 0, got {n_healthy} and {n_tumor}")
    out = Path(out_dir)
    btcv, lits = out / "btcv", out / "lits"
    for folder in (btcv / "img", btcv / "label", lits):
        folder.mkdir(parents=True, exist_ok=True)
    healthy, tumor = [], []
    for i in range(n_healthy):
        case = make_case(shape, seed=(seed, 0, i))
        image, label = btcv / "img" / f"img{i + 1:04d}.nii.gz", btcv / "label" / f"label{i + 1:04d}.nii.gz"
        _save(case.hu, case.affine, BTCV_AXCODES, image)
        _save(case.organs, case.affine, BTCV_AXCODES, label)
        healthy.append((image, label))
    for i in range(n_tumor):
        n = int(np.random.default_rng((seed, 2, i)).integers(1, 4))
        case = make_case(shape, seed=(seed, 1, i), n_tumors=n)
        seg = np.where(case.tumor, LITS_TUMOR, np.where(case.liver, LITS_LIVER, 0)).astype(np.uint8)
        image, label = lits / f"volume-{i}.nii.gz", lits / f"segmentation-{i}.nii.gz"
        _save(case.hu, case.affine, LITS_AXCODES, image)
        _save(seg, case.affine, LITS_AXCODES, label)
        tumor.append((image, label))
    return Cohort(btcv_root=btcv, lits_root=lits, healthy=healthy, tumor=tumor)


def _save(array: np.ndarray, affine: np.ndarray, axcodes: Sequence[str], path: Path) -> None:
    data, aff = reorient(array, affine, axcodes)
    image = nib.Nifti1Image(data, aff)
    image.header.set_xyzt_units("mm")
    with atomic_path(path, suffix=".nii.gz") as tmp:  # nibabel infers the format from the name
        nib.save(image, tmp)


def _draw_patient(rng: np.random.Generator) -> dict:
    """Per-volume anatomy parameters (lengths in units of half the slice size)."""
    return {
        "body": (rng.uniform(0.82, 0.94), rng.uniform(0.62, 0.72)),
        "liver_z": (rng.uniform(0.15, 0.3), rng.uniform(0.88, 0.97)),
        "liver_c": (rng.uniform(-0.42, -0.34), rng.uniform(-0.1, 0.0)),
        "liver_ax": (rng.uniform(0.3, 0.38), rng.uniform(0.36, 0.44)),
        "left_lobe": rng.uniform(0.6, 1.2),
        "liver_hu": rng.uniform(85, 115),
        # Boundary harmonics 2..5: amplitude, phase and how fast the phase turns along z.
        "harm_a": rng.uniform(0.02, 0.07, 4) / np.arange(2, 6) * 2,
        "harm_phi": rng.uniform(0, 2 * np.pi, 4),
        "harm_turn": rng.uniform(-2.5, 2.5, 4),
        "rib_phase": rng.uniform(0, 2 * np.pi),
    }


def _draw_slice(size: tuple[int, int], t: float, p: dict, tissue: np.ndarray, fat: np.ndarray):
    """One axial slice at height ``t`` in [0, 1] (inferior -> superior): (HU without liver texture, organs)."""
    h, w = size
    half = min(h, w) / 2
    v = ((np.arange(h, dtype=np.float32) + 0.5 - h / 2) / half)[:, None]  # anterior (-) -> posterior (+)
    u = ((np.arange(w, dtype=np.float32) + 0.5 - w / 2) / half)[None, :]  # patient right (-) -> left (+)

    def ellipse(cu, cv, au, av):
        return ((u - cu) / au) ** 2 + ((v - cv) / av) ** 2 <= 1

    bw, bh = p["body"]
    body, wall, cavity = (ellipse(0, 0.05, bw * s, bh * s) for s in (1.0, 0.9, 0.82))
    hu = np.full((h, w), -1000.0, np.float32)
    hu[body] = -100.0
    hu[wall] = 50.0
    hu[cavity] = 30.0 + 15.0 * tissue[cavity]
    hu[cavity & (fat > 0.8)] = -100.0
    hu[cavity & (fat < -2.0) & (t < 0.5) & (v < 0.2)] = -700.0  # bowel gas, lower abdomen

    organs = np.zeros((h, w), np.uint8)
    structures = []  # (mask, HU, label) drawn in order
    muscle = ellipse(-0.2, 0.5, 0.12, 0.12) | ellipse(0.2, 0.5, 0.12, 0.12)
    structures.append((muscle & cavity, 50.0, 0))
    if t < 0.5:
        structures.append((ellipse(-0.42, 0.3, 0.1, 0.15), 160.0, BTCV_LABELS["right_kidney"]))
    if 0.05 < t < 0.55:
        structures.append((ellipse(0.42, 0.28, 0.1, 0.15), 160.0, BTCV_LABELS["left_kidney"]))
    if t > 0.45:
        structures.append((ellipse(0.5, 0.12, 0.15, 0.24) & cavity, 110.0, BTCV_LABELS["spleen"]))
    structures.append((ellipse(0.06, 0.3, 0.06, 0.06), 180.0, BTCV_LABELS["aorta"]))
    structures.append((ellipse(-0.13, 0.27, 0.07, 0.055), 130.0, BTCV_LABELS["ivc"]))
    for mask, value, label in structures:
        hu[mask] = value
        organs[mask] = label

    occupied = organs > 0
    spine = ellipse(0, 0.5, 0.13, 0.12) | ellipse(0, 0.68, 0.035, 0.1)
    liver = _liver_slice(u, v, t, p) & cavity & ~occupied & ~spine
    hu[liver] = 0.0  # the parenchyma value is added later, with its 3-D texture
    organs[liver] = BTCV_LABELS["liver"]

    hu[spine] = 700.0
    hu[ellipse(0, 0.5, 0.1, 0.09)] = 250.0  # cancellous bone inside the cortical ring
    if t > 0.3:  # ribs: cross-sections along the wall, shifting with height as ribs run obliquely
        for a in p["rib_phase"] + 3.0 * t + np.linspace(0, 2 * np.pi, 12, endpoint=False):
            cu, cv = 0.86 * bw * np.cos(a), 0.05 + 0.86 * bh * np.sin(a)
            if cv > -0.2:  # no ribs in front of the abdomen
                hu[ellipse(cu, cv, 0.035, 0.03)] = 700.0
    return hu, organs


def _liver_slice(u: np.ndarray, v: np.ndarray, t: float, p: dict) -> np.ndarray:
    """The liver outline at height ``t``: a perturbed ellipse (right lobe) plus a left lobe in upper slices."""
    z0, z1 = p["liver_z"]
    s = (t - z0) / (z1 - z0)  # 0 at the inferior tip, 1 at the dome
    if not 0 < s < 1:
        return np.zeros(np.broadcast_shapes(u.shape, v.shape), bool)
    f = np.sin(np.pi * s**0.7) ** 0.5  # widest in the upper half, tapering to the inferior tip
    cu, cv = p["liver_c"]
    au, av = p["liver_ax"]
    du, dv = (u - cu) / (au * f), (v - cv) / (av * f)
    theta = np.arctan2(dv, du)
    k = np.arange(2, 6)[:, None, None]
    edge = 1 + (p["harm_a"][:, None, None] * np.cos(k * theta + p["harm_phi"][:, None, None]
                                                    + p["harm_turn"][:, None, None] * s)).sum(0)
    liver = np.hypot(du, dv) < edge
    g = np.clip((s - 0.4) / 0.3, 0, 1) * f * p["left_lobe"]
    if g > 0.05:
        lu, lv = cu + au * f * 0.8 + 0.12 * g, cv - 0.18
        liver |= ((u - lu) / (0.25 * g)) ** 2 + ((v - lv) / (0.13 * g)) ** 2 < 1 + 0.1 * np.cos(3 * theta)
    return liver


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int, int], sigma_px: float) -> np.ndarray:
    """Zero-mean unit-variance smooth noise: Gaussian-filtered on a coarse grid, upsampled in-plane."""
    h, w, d = shape
    step = max(1, int(sigma_px))
    coarse = rng.standard_normal((-(-h // step), -(-w // step), d)).astype(np.float32)
    coarse = ndimage.gaussian_filter(coarse, (sigma_px / step, sigma_px / step, 0.7))
    coarse /= coarse.std() + 1e-8
    return np.stack([cv2.resize(coarse[:, :, k], (w, h), interpolation=cv2.INTER_LINEAR) for k in range(d)], -1)


def _liver_box(liver: np.ndarray, pad: int = 2) -> tuple[slice, ...]:
    idx = np.argwhere(liver)
    lo, hi = np.maximum(idx.min(0) - pad, 0), np.minimum(idx.max(0) + pad + 1, liver.shape)
    return tuple(slice(a, b) for a, b in zip(lo, hi))


def _add_vessels(rng: np.random.Generator, hu: np.ndarray, liver: np.ndarray, mm, scale: float) -> None:
    """Branching contrast-filled tubes from the hilum: random walks rasterized with one distance transform."""
    if not liver.any():
        return
    box = _liver_box(liver)
    sub = liver[box]
    mm = np.asarray(mm, np.float64)
    hilum = np.argwhere(sub).mean(0) * mm
    points, radii = [], []
    for _ in range(int(rng.integers(6, 10))):
        start = hilum + rng.normal(0, 4, 3) * np.array([1, 1, 0.5])
        direction = rng.normal(0, 1, 3) * np.array([1, 1, 0.4])
        length = rng.uniform(25, 70) * scale
        n = max(int(length / 0.4), 2)
        steps = direction / np.linalg.norm(direction) + np.cumsum(rng.normal(0, 0.08, (n, 3)), 0)
        steps /= np.linalg.norm(steps, axis=1, keepdims=True)
        points.append(start + np.cumsum(steps * 0.4, 0))
        radii.append(np.linspace(rng.uniform(1.5, 2.5), 0.6, n))
    points, radii = np.concatenate(points), np.concatenate(radii)
    idx = np.rint(points / mm).astype(int)
    inside = np.all((idx >= 0) & (idx < sub.shape), axis=1)
    idx, radii = idx[inside], radii[inside]
    if len(idx) == 0:
        return
    seeds = np.zeros(sub.shape, np.float32)
    np.maximum.at(seeds, tuple(idx.T), radii)
    dist, nearest = ndimage.distance_transform_edt(seeds == 0, sampling=mm, return_indices=True)
    vessel = (dist <= seeds[tuple(nearest)]) & sub
    hu[box][vessel] += rng.uniform(40, 60)


def _add_tumor(rng, hu, liver, tumor, mm, scale: float, liver_hu: float) -> None:
    """One irregular tumor centred deep in the liver and clear of earlier ones; blends ``hu`` towards its values.

    Skipped when the liver has no room left for even a small one.
    """
    if not liver.any():
        return
    box = _liver_box(liver)
    sub = liver[box]
    mm = np.asarray(mm, np.float64)
    depth = ndimage.distance_transform_edt(sub, sampling=mm)
    taken = tumor[box]
    clear = ndimage.distance_transform_edt(~taken, sampling=mm) if taken.any() else np.full(sub.shape, np.inf)
    radius_px = rng.uniform(4, 20) * scale
    while True:  # shrink until a centre deep enough in the liver and far enough from other tumors exists
        r_mm = radius_px * mm[0]
        candidates = np.argwhere((depth >= 0.6 * r_mm) & (clear >= 1.6 * r_mm))
        if len(candidates) or radius_px < 2:
            break
        radius_px *= 0.8
    if not len(candidates):
        return
    centre = candidates[rng.integers(len(candidates))] * mm
    axes = r_mm * rng.uniform(0.75, 1.25, 3)
    axes[2] = max(r_mm * rng.uniform(0.7, 1.2), 1.6 * mm[2])  # at least three slices
    angle = rng.uniform(0, np.pi)

    grid = np.stack(np.meshgrid(*(np.arange(n) * s for n, s in zip(sub.shape, mm)), indexing="ij"), -1) - centre
    a, b = np.cos(angle), np.sin(angle)
    rot = np.stack([a * grid[..., 0] + b * grid[..., 1], -b * grid[..., 0] + a * grid[..., 1], grid[..., 2]], -1)
    rho = np.sqrt(((rot / axes) ** 2).sum(-1))
    near = rho < 1.6
    if not near.any():
        return
    wobble = 0.18 * _smooth_noise(rng, sub.shape, sigma_px=max(radius_px / 3, 1.0))
    level = 1 - rho - wobble  # > 0 inside the tumor
    inside = (level > 0) & sub
    hypo = rng.uniform() < 0.75
    delta = -rng.uniform(30, 70) if hypo else rng.uniform(30, 60)
    values = liver_hu + delta + 8.0 * _smooth_noise(rng, sub.shape, sigma_px=1.5)
    if hypo and radius_px >= 8 * scale and rng.uniform() < 0.4:  # necrotic core
        values -= rng.uniform(20, 40) * np.clip((0.45 - rho) / 0.15, 0, 1)
    weight = np.where(inside, np.clip(level / 0.25, 0, 1), 0).astype(np.float32)  # soft rim
    view = hu[box]
    view[:] = (1 - weight) * view + weight * values
    tumor[box] |= inside
