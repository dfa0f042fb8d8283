"""``LesionSynthesis``: labels, locality, reproducibility, sizes, contrasts, bad input, and a real CT scan."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from pseudoanomaly.lesions import APPEARANCES, SIZES, LesionSynthesis

SHAPE = (24, 48, 48)  # (D, H, W)
SPACING = (2.0, 1.0, 1.0)  # mm: anisotropic, like a CT's thick slices
LIVER_HU = 120.0
# one real healthy CT with its liver mask, ../shared/data/chaos-ct3 from the repository root
CHAOS_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "chaos-ct3"
seeds = st.integers(0, 2**31 - 1)


def _phantom(batch: int = 1, seed: int = 0, shape=SHAPE, radius: float = 0.85, dtype=torch.float32):
    """``(ct, liver)``: an ellipsoidal liver of ~120 HU with noise and three brighter vessels, in -80 HU fat."""
    g = torch.Generator().manual_seed(seed)
    z, y, x = torch.meshgrid(*(torch.linspace(-1, 1, n) for n in shape), indexing="ij")
    liver = (z / radius) ** 2 + (y / radius) ** 2 + (x / (0.9 * radius)) ** 2 < 1
    vessels = torch.zeros(shape, dtype=torch.bool)
    for z0, y0 in ((-0.3, 0.4), (0.2, -0.35), (0.45, 0.1)):  # tubes along W, about 1.5 mm thick
        vessels |= ((z - z0) * shape[0] / 2 * SPACING[0]) ** 2 + ((y - y0) * shape[1] / 2 * SPACING[1]) ** 2 < 2.5
    ct = torch.where(liver, LIVER_HU, -80.0) + torch.where(liver & vessels, 60.0, 0.0)
    ct = ct + 10 * torch.randn((batch, 1, *shape), generator=g)
    return ct.to(dtype), liver.expand(batch, 1, *shape).clone()


def _run(synth, ct, liver, seed, spacing=SPACING):
    return synth(ct, liver, spacing, generator=torch.Generator().manual_seed(seed))


def _distance_mm(shape, centre, spacing=SPACING) -> np.ndarray:
    grids = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    return np.sqrt(sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, spacing)))


# ------------------------------------------------------------------------------------------------ behaviour


@settings(max_examples=10)
@given(
    seed=seeds,
    batch=st.integers(1, 2),
    sizes=st.sampled_from([("small",), ("medium",), ("small", "medium")]),
    appearances=st.lists(st.sampled_from(tuple(APPEARANCES)), min_size=1, max_size=5, unique=True),
    mass_effect=st.booleans(),
)
def test_labels_in_the_liver_and_nothing_changes_far_away(seed, batch, sizes, appearances, mass_effect):
    ct, liver = _phantom(batch, seed)
    before = ct.clone()
    synth = LesionSynthesis(sizes=sizes, appearances=appearances, mass_effect=mass_effect)
    out, label = _run(synth, ct, liver, seed)
    assert torch.equal(ct, before)  # not modified in place
    assert out.shape == ct.shape and out.dtype == ct.dtype and label.dtype == torch.bool
    assert not label[~liver].any()
    assert label.flatten(1).sum(dim=1).min() > 0  # every sample gets a lesion
    assert torch.equal(out[~liver], ct[~liver])  # outside the liver nothing changes
    for b, lesions in enumerate(synth.last_params):
        assert 1 <= len(lesions) <= 3
        near = np.zeros(SHAPE, bool)
        for p in lesions:
            assert p["size"] in sizes and p["appearance"] in appearances
            assert liver[b, 0][tuple(p["centre_voxel"])]
            near |= _distance_mm(SHAPE, p["centre_voxel"]) <= p["reach_mm"]
        assert torch.equal(out[b, 0][~torch.from_numpy(near)], ct[b, 0][~torch.from_numpy(near)])


@settings(max_examples=5)
@given(seed=seeds)
def test_same_seed_is_bit_identical_and_another_seed_differs(seed):
    ct, liver = _phantom(2, seed)
    synth = LesionSynthesis(sizes=("small", "medium"))
    out1, label1 = _run(synth, ct, liver, seed)
    params1 = synth.last_params
    out2, label2 = _run(synth, ct, liver, seed)
    assert torch.equal(out1, out2) and torch.equal(label1, label2) and synth.last_params == params1
    out3, label3 = _run(synth, ct, liver, seed + 1)
    assert not torch.equal(out1, out3) or not torch.equal(label1, label3)


def test_float64_keeps_its_dtype_and_its_untouched_values():
    ct, liver = _phantom(1, 3, dtype=torch.float64)
    ct = ct + 1e-9  # values a float32 round trip would change
    out, label = _run(LesionSynthesis(sizes=("small",)), ct, liver, 3)
    assert out.dtype == torch.float64
    assert torch.equal(out[~liver], ct[~liver])


def test_records_plain_data_of_each_lesion():
    import json

    ct, liver = _phantom(1, 0)
    synth = LesionSynthesis(sizes=("small",), appearances=("calcified", "rim", "heterogeneous"), count=3)
    _run(synth, ct, liver, 0)
    lesions = synth.last_params[0]
    assert json.loads(json.dumps(synth.last_params)) == synth.last_params  # plain data, JSON round trip
    for p in lesions:
        assert {"centre_voxel", "size", "diameter_mm", "semi_axes_mm", "appearance", "contrast_hu"} <= set(p)
        extra = {"rim": "rim_mm", "heterogeneous": "necrosis_hu", "calcified": "calcifications"}[p["appearance"]]
        assert extra in p


def test_mass_effect_moves_tissue_beyond_the_blurred_edge_only_when_asked():
    ct, liver = _phantom(1, 1)
    spacing = (4.0, 2.0, 2.0)  # a liver of about 80 mm, twice the lesion
    # the blurred edge reaches int(3 sigma / spacing + 0.5) voxels, sigma <= 1.5 mm: 1 slice, 2 pixels
    edge = np.ones((3, 5, 5), bool)
    changed_far = {}
    for mass_effect in (False, True):
        synth = LesionSynthesis(sizes=("medium",), count=1, mass_effect=mass_effect)
        out, label = _run(synth, ct, liver, 1, spacing)
        near = ndimage.binary_dilation(label[0, 0].numpy(), edge)
        changed = (out != ct)[0, 0].numpy()
        changed_far[mass_effect] = int((changed & ~near).sum())
        params = [{k: v for k, v in p.items() if k not in ("mass_effect", "reach_mm", "voxels", "volume_ml")}
                  for p in synth.last_params[0]]
        if mass_effect:
            assert params == params_without  # the same draws with and without the mass effect
        params_without = params
    assert changed_far[False] == 0 and changed_far[True] > 0


# ---------------------------------------------------------------------------------------------- distributions


@pytest.mark.parametrize("size", ["small", "medium", "large"])
def test_sizes_fall_in_their_class(size):
    spacing = (4.0, 2.0, 2.0)  # a 96 x 96 x 96 mm volume, so a large lesion fits
    lo, hi = SIZES[size]
    for seed in range(4):
        ct, liver = _phantom(1, seed)
        synth = LesionSynthesis(sizes=(size,), count=1)
        _, label = _run(synth, ct, liver, seed, spacing)
        (p,) = synth.last_params[0]
        r = p["diameter_mm"] / 2
        assert lo <= p["diameter_mm"] <= hi
        assert all(0.75 * r - 1e-3 <= a <= 1.25 * r + 1e-3 for a in p["semi_axes_mm"])  # Hu et al.'s rule
        # measured on the label: it holds a ball of 0.75 r less the elastic displacement (<= 0.28 r) and lies in
        # the ellipsoid grown by it (<= 1.53 r), up to a voxel
        extents = [(hits.max() - hits.min() + 1) * s for hits, s in zip(np.nonzero(label[0, 0].numpy()), spacing)]
        assert 2 * 0.47 * r - 2 <= max(extents) <= 2 * 1.53 * r + max(spacing)


def test_larger_classes_give_larger_lesions():
    diameters = {}
    for size in ("small", "medium"):
        measured = []
        for seed in range(6):
            ct, liver = _phantom(1, seed)
            synth = LesionSynthesis(sizes=(size,), count=1)
            _, label = _run(synth, ct, liver, seed)
            volume = float(label.sum()) * math.prod(SPACING)
            measured.append((6 * volume / math.pi) ** (1 / 3))  # equivalent diameter, mm
        diameters[size] = measured
    assert max(diameters["small"]) < 22 and np.mean(diameters["small"]) < np.mean(diameters["medium"])


@pytest.mark.parametrize("appearance", list(APPEARANCES))
def test_contrast_to_the_parenchyma(appearance):
    low, high = APPEARANCES[appearance]
    for seed in range(3):
        ct, liver = _phantom(1, seed)
        synth = LesionSynthesis(sizes=("medium",), appearances=(appearance,), count=1)
        out, label = _run(synth, ct, liver, seed)
        (p,) = synth.last_params[0]
        assert low <= p["contrast_hu"] <= high
        assert abs(p["parenchyma_hu"] - LIVER_HU) < 5  # the median around the lesion, vessels left out
        inside = out[label].numpy()
        core = ndimage.binary_erosion(label[0, 0].numpy(), iterations=2)
        shell = label[0, 0].numpy() & ~core
        values = out[0, 0].numpy()
        if appearance in ("hypodense", "heterogeneous", "rim"):
            assert values[core].mean() < p["parenchyma_hu"] - 15
        if appearance == "hyperdense":
            assert inside.mean() > p["parenchyma_hu"] + 10
        if appearance == "rim":
            assert values[shell].mean() > values[core].mean() + 10  # brighter rim
        if appearance == "calcified":
            assert inside.max() > p["parenchyma_hu"] + 150 and p["calcifications"]
            assert abs(np.median(inside) - p["parenchyma_hu"]) < 60  # hypo- to iso-dense elsewhere


def test_heterogeneous_lesions_vary_more_than_hypodense_ones():
    spread = {}
    for appearance in ("hypodense", "heterogeneous"):
        values = []
        for seed in range(4):
            ct, liver = _phantom(1, seed)
            synth = LesionSynthesis(sizes=("medium",), appearances=(appearance,), count=1)
            out, label = _run(synth, ct, liver, seed)
            core = ndimage.binary_erosion(label[0, 0].numpy(), iterations=2)
            values.append(float(out[0, 0].numpy()[core].std()))
        spread[appearance] = np.mean(values)
    assert spread["heterogeneous"] > spread["hypodense"]


def test_hypodense_is_the_most_frequent_by_default():
    counts = dict.fromkeys(APPEARANCES, 0)
    ct, liver = _phantom(4, 0)
    synth = LesionSynthesis(sizes=("small",), count=3)
    for seed in range(6):
        _run(synth, ct, liver, seed)
        for lesions in synth.last_params:
            for p in lesions:
                counts[p["appearance"]] += 1
    assert max(counts, key=counts.get) == "hypodense", counts
    assert counts["hypodense"] > 0.3 * sum(counts.values())


# -------------------------------------------------------------------------------------------------- bad input


def _bad_inputs():
    ct, liver = _phantom(1, 0)
    empty = torch.zeros_like(liver)
    speck = torch.zeros_like(liver)
    speck[0, 0, 12, 24, 24] = True  # one voxel: its depth is 1 mm, too shallow for a 5 mm lesion
    edge = liver.clone()
    edge[0, 0, 0, 20:28, 20:28] = True
    small = LesionSynthesis(sizes=("small",))
    return [
        ("empty liver", small, (ct, empty, SPACING), "liver is empty in sample 0"),
        ("liver too small", small, (ct, speck, SPACING), "too small for the smallest requested size 'small'"),
        ("liver on the border", small, (ct, edge, SPACING), "'D=0': 64"),
        ("class too large", LesionSynthesis(sizes=("small", "large")), (ct, liver, SPACING), "'large' (50-90 mm)"),
        ("not HU", small, (torch.full_like(ct, 0.5), liver, SPACING), "all its values lie in [0.5, 0.5]"),
        ("liver median out of range", small, (ct + 1000, liver, SPACING), "1120"),
        ("spacing length", small, (ct, liver, (1.0, 1.0)), "(1.0, 1.0)"),
        ("spacing non-positive", small, (ct, liver, (2.0, 0.0, 1.0)), "(2.0, 0.0, 1.0)"),
        ("shape mismatch", small, (ct, liver[..., :40], SPACING), "(1, 1, 24, 48, 40)"),
        ("ct not 5-D", small, (ct[0], liver[0], SPACING), "(1, 24, 48, 48)"),
        ("NaN", small, (torch.where(liver, float("nan"), ct), liver, SPACING), "finite"),
    ]


@pytest.mark.parametrize(("case", "synth", "args", "message"), _bad_inputs(), ids=[c[0] for c in _bad_inputs()])
def test_bad_input_raises_naming_the_value(case, synth, args, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        synth(*args, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"sizes": ("huge",)}, "'huge'"),
    ({"sizes": "small"}, "'small'"),
    ({"appearances": ("glowing",)}, "'glowing'"),
    ({"size_probs": (0.5, 0.2, 0.2)}, "sum 0.9"),
    ({"appearance_probs": (1.0,)}, "(1.0,)"),
    ({"appearances": ("rim", "hypodense"), "appearance_probs": (0.5, -0.5)}, "(0.5, -0.5)"),
    ({"count": (3, 1)}, "(3, 1)"),
    ({"count": 0}, "0"),
    ({"max_tries": 0}, "0"),
])
def test_bad_settings_raise_naming_the_value(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        LesionSynthesis(**kwargs)


def test_subset_of_appearances_keeps_the_default_odds():
    synth = LesionSynthesis(appearances=("hypodense", "rim"))
    assert synth.appearance_probs == pytest.approx((0.5 / 0.65, 0.15 / 0.65))


# ------------------------------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def chaos():
    nib = pytest.importorskip("nibabel", reason="reading the real scan needs nibabel (the 'lits' extra)")
    if not (CHAOS_DIR / "ct.nii.gz").is_file() or not (CHAOS_DIR / "liver.nii.gz").is_file():
        pytest.skip(f"real-data test: CHAOS CT set 3 not found at {CHAOS_DIR}")
    image = nib.load(CHAOS_DIR / "ct.nii.gz")
    ct = torch.from_numpy(np.asarray(image.dataobj, np.float32))[None, None]
    liver = torch.from_numpy(np.asarray(nib.load(CHAOS_DIR / "liver.nii.gz").dataobj) > 0)[None, None]
    return ct, liver, tuple(float(s) for s in image.header.get_zooms()[:3])


def test_real_scan_liver_reaching_the_edge_is_refused(chaos):
    ct, liver, spacing = chaos
    with pytest.raises(ValueError, match="liver touches the volume's border"):
        LesionSynthesis()(ct, liver, spacing)


def test_lesions_in_a_real_scan(chaos):
    ct, liver, spacing = chaos
    inner = liver.clone()  # the liver reaches the scan's first slice: the scan's edge is its boundary there
    for axis in (2, 3, 4):
        inner.index_fill_(axis, torch.tensor([0, ct.shape[axis] - 1]), False)
    synth = LesionSynthesis()
    out, label = synth(ct, inner, spacing, generator=torch.Generator().manual_seed(0))
    assert label.any() and not label[~inner].any()
    assert torch.equal(out[~inner], ct[~inner]) and bool(torch.isfinite(out).all())
    changed = (out != ct).float().mean().item()
    assert 0 < changed < 0.05  # a few lesions in a 512 x 512 x 78 scan
    for p in synth.last_params[0]:
        lo, hi = SIZES[p["size"]]
        assert lo <= p["diameter_mm"] <= hi
        assert 100 < p["parenchyma_hu"] < 190  # enhanced liver (the scan's median is ~143 HU)
        assert p["voxels"] > 0 and inner[0, 0][tuple(p["centre_voxel"])]
