"""PerlinMask and the Perlin functionals: the contract, the noise itself (against a NumPy oracle of DRAEM's
grid), rotation, per-sample resolutions and argument checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transform_contract import check_mask_contract

from pseudoanomaly import noise
from pseudoanomaly.masks.perlin import PerlinMask
from pseudoanomaly.noise import fractal_noise, perlin_noise

seeds = st.integers(0, 2**31 - 1)


def _angles(seed: int, n: int, side: int, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 2 * math.pi * torch.rand(n, side, side, generator=g, dtype=dtype)


def _fade(t):
    return 6 * t**5 - 15 * t**4 + 10 * t**3


def draem_perlin_oracle(angles: np.ndarray, shape: tuple[int, int], res: tuple[int, int]) -> np.ndarray:
    """DRAEM's rand_perlin_2d_np written out for one image (sizes divisible by the resolution), with given
    gradient angles: each lattice cell is a block of (H / ry) x (W / rx) pixels whose gradients are repeated
    over it; pixel i sits at i * ry / H lattice units."""
    h, w = shape
    ry, rx = res
    by, bx = h // ry, w // rx
    grads = np.stack([np.cos(angles[: ry + 1, : rx + 1]), np.sin(angles[: ry + 1, : rx + 1])], axis=-1)
    coords = np.stack(np.meshgrid(np.arange(h) * ry / h, np.arange(w) * rx / w, indexing="ij"), axis=-1) % 1

    def corner_ramp(dy: int, dx: int) -> np.ndarray:
        g = grads[dy : dy + ry, dx : dx + rx].repeat(by, axis=0).repeat(bx, axis=1)  # (H, W, 2)
        return ((coords - np.array([dy, dx])) * g).sum(axis=-1)

    t = _fade(coords)
    left = corner_ramp(0, 0) + t[..., 0] * (corner_ramp(1, 0) - corner_ramp(0, 0))
    right = corner_ramp(0, 1) + t[..., 0] * (corner_ramp(1, 1) - corner_ramp(0, 1))
    return math.sqrt(2) * (left + t[..., 1] * (right - left))


# -- the shared contract ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs", [{}, {"union": 2, "rejection": True}, {"same_on_batch": True}, {"scale_exponents": (2, 3)},
               {"rotation_mode": "resample"}]
)
def test_keeps_the_contract(device, kwargs):
    check_mask_contract(PerlinMask(**kwargs), device)


def test_defaults_are_draems():
    gen = PerlinMask()
    assert gen.scale_exponents == (0, 5) and gen.rotation == (-90.0, 90.0) and gen.threshold == 0.5


# -- the noise -------------------------------------------------------------------------------------------
@settings(max_examples=25)
@given(seed=seeds, ey=st.integers(0, 5), ex=st.integers(0, 5), my=st.integers(1, 3), mx=st.integers(1, 3))
def test_matches_a_numpy_oracle_of_draems_perlin(seed, ey, ex, my, mx):
    ry, rx = 2**ey, 2**ex
    h, w = ry * my, rx * mx
    angles = _angles(seed, 1, 33, torch.float64)
    expected = draem_perlin_oracle(angles[0].numpy(), (h, w), (ry, rx))
    got64 = perlin_noise(angles, torch.tensor([[ry, rx]]), h, w)[0, 0].numpy()
    np.testing.assert_allclose(got64, expected, atol=1e-12)
    got32 = perlin_noise(angles.float(), torch.tensor([[ry, rx]]), h, w)[0, 0].numpy()
    np.testing.assert_allclose(got32, expected, atol=2e-5)


@given(
    seed=seeds,
    h=st.integers(1, 61),
    w=st.integers(1, 61),
    e=st.tuples(st.integers(0, 5), st.integers(0, 5)),
    angle=st.floats(-180, 180),
)
def test_noise_lies_in_minus_one_one_and_masks_are_binary(seed, h, w, e, angle):
    # Plain 2-D Perlin noise with unit gradients spans [-sqrt(2)/2, sqrt(2)/2]; DRAEM's sqrt(2) makes it [-1, 1].
    resolution = torch.tensor([[2 ** e[0], 2 ** e[1]]] * 2)
    noise = perlin_noise(_angles(seed, 2, 33), resolution, h, w, torch.tensor([angle, 0.0]))
    assert noise.shape == (2, 1, h, w)
    assert bool(torch.isfinite(noise).all()) and float(noise.abs().max()) <= 1.0 + 1e-6
    masks = PerlinMask()(torch.rand(3, 1, h, w), generator=torch.Generator().manual_seed(seed))
    assert masks.shape == (3, 1, h, w) and bool(((masks == 0) | (masks == 1)).all())


def test_odd_prime_sizes_work():
    masks = PerlinMask()(torch.rand(8, 1, 37, 53), generator=torch.Generator().manual_seed(0))
    assert masks.shape == (8, 1, 37, 53) and 0 < float(masks.mean()) < 0.5


def test_noise_is_zero_on_lattice_points():
    # Every ramp vanishes at its own corner and the fade selects that corner: noise 0 on the lattice.
    noise = perlin_noise(_angles(1, 1, 9), torch.tensor([[4, 8]]), 32, 64)[0, 0]
    assert torch.equal(noise[::8, ::8], torch.zeros(4, 8))


@pytest.mark.parametrize("angle, axis", [(0.0, "height"), (math.pi / 2, "width")])
def test_single_cell_with_equal_gradients_is_analytic(angle, axis):
    # One cell, every gradient (cos a, sin a): with a = 0 all four ramps are (row offset) and the blend is
    # sqrt(2) * (t - fade(t)) with t = y / H, whatever x; with a = pi/2 the same along the width.
    h, w = 23, 31
    angles = torch.full((1, 2, 2), angle, dtype=torch.float64)
    noise = perlin_noise(angles, torch.tensor([[1, 1]]), h, w, torch.zeros(1, dtype=torch.float64))[0, 0]
    t = torch.arange(h if axis == "height" else w, dtype=torch.float64) / (h if axis == "height" else w)
    profile = math.sqrt(2) * (t - _fade(t))
    expected = profile.view(h, 1).expand(h, w) if axis == "height" else profile.view(1, w).expand(h, w)
    torch.testing.assert_close(noise, expected, atol=1e-12, rtol=0)
    # the mask generator with exponents (0, 0) and no rotation thresholds exactly that field
    gen = PerlinMask(scale_exponents=(0, 0), rotation=(0.0, 0.0), threshold=0.1)
    params = {
        "resolution": torch.ones(1, 1, 2, dtype=torch.long),
        "gradient_angles": angles.float().unsqueeze(1),
        "rotation": torch.zeros(1, 1),
    }
    masks = gen(torch.rand(1, 1, h, w), params=params)[0, 0]
    decided = (expected - 0.1).abs() > 1e-5
    assert torch.equal(masks.bool()[decided], (expected > 0.1)[decided]) and bool(masks.any())


def test_drawn_exponents_zero_zero_give_one_cell():
    gen = PerlinMask(scale_exponents=(0, 0), rotation=(0.0, 0.0))
    gen(torch.rand(4, 1, 16, 16), generator=torch.Generator().manual_seed(0))
    assert torch.equal(gen.last_params["resolution"], torch.ones(4, 1, 2, dtype=torch.long))
    assert gen.last_params["gradient_angles"].shape == (4, 1, 2, 2) and bool((gen.last_params["rotation"] == 0).all())


def test_rotation_by_90_degrees_turns_the_pattern_clockwise():
    angles, res = _angles(3, 1, 9, torch.float64), torch.tensor([[4, 8]])
    flat = perlin_noise(angles, res, 32, 32)[0, 0]
    turned = perlin_noise(angles, res, 32, 32, torch.tensor([90.0], dtype=torch.float64))[0, 0]
    torch.testing.assert_close(turned, torch.rot90(flat, -1, dims=(0, 1)), atol=1e-9, rtol=0)


def test_rotated_out_corners_are_zero_as_draems_zero_fill():
    # Turned by 45 degrees, the corners of a square sample points outside the frame: noise 0, no mask.
    n = 16
    angles = _angles(4, n, 9)
    noise = perlin_noise(angles, torch.full((n, 2), 8), 65, 65, torch.full((n,), 45.0))[:, 0]
    y, x = torch.meshgrid(torch.arange(65.0) - 32, torch.arange(65.0) - 32, indexing="ij")
    outside = (y + x).abs().maximum((y - x).abs()) > 32 * math.sqrt(2) + 1e-3
    assert bool(outside.any()) and bool((noise[:, outside] == 0).all())
    assert float((noise[:, ~outside] != 0).float().mean()) > 0.95


def test_batched_noise_equals_one_sample_at_a_time(monkeypatch):
    n = 5
    angles, res = _angles(5, n, 33), 2 ** torch.randint(0, 6, (n, 2), generator=torch.Generator().manual_seed(5))
    rotation = torch.linspace(-90, 90, n)
    batch = perlin_noise(angles, res, 37, 53, rotation)
    for i in range(n):
        one = perlin_noise(angles[i : i + 1], res[i : i + 1], 37, 53, rotation[i : i + 1])
        assert torch.equal(one, batch[i : i + 1])
    # on a CPU large batches are evaluated in blocks of samples: the blocks must not change a value
    monkeypatch.setattr(noise, "_CPU_BLOCK_PIXELS", 2 * 37 * 53)
    assert torch.equal(perlin_noise(angles, res, 37, 53, rotation), batch)


def test_each_sample_has_its_own_resolution():
    gen = PerlinMask(rotation=(0.0, 0.0))
    gen(torch.rand(48, 1, 64, 64), generator=torch.Generator().manual_seed(0))
    p = gen.last_params
    res = p["resolution"][:, 0]  # (48, 2)
    assert len(res[:, 0].unique()) >= 4 and len(res[:, 1].unique()) >= 4
    assert not torch.equal(res[:, 0], res[:, 1])  # the two axes are drawn independently
    # a finer lattice along the width makes the noise vary faster along the width
    noise = perlin_noise(p["gradient_angles"][:, 0], res, 64, 64)[:, 0]
    roughness = (noise[:, :, 1:] - noise[:, :, :-1]).abs().mean(dim=(1, 2))
    log_rx = res[:, 1].float().log2()
    corr = torch.corrcoef(torch.stack([log_rx, roughness.log()]))[0, 1]
    assert float(corr) > 0.9


def test_coarse_and_fine_lattices_make_different_masks():
    x = torch.rand(32, 1, 64, 64)
    coarse = PerlinMask(scale_exponents=(0, 0))(x, generator=torch.Generator().manual_seed(0))
    fine = PerlinMask(scale_exponents=(5, 5))(x, generator=torch.Generator().manual_seed(0))

    def edges(m):  # boundary length per pixel of mask: many small blobs have more boundary
        return float((m[..., 1:] != m[..., :-1]).float().mean())

    assert edges(fine) > 5 * edges(coarse)


def test_fractal_noise_stays_in_range_and_one_octave_is_perlin():
    angles = [_angles(6 + k, 3, 4 * 2**k + 1) for k in range(3)]
    res = torch.full((3, 2), 4)
    noise = fractal_noise(angles, res, 40, 48)
    assert noise.shape == (3, 1, 40, 48) and float(noise.abs().max()) <= 1.0 + 1e-6
    assert torch.equal(fractal_noise(angles[:1], res, 40, 48), perlin_noise(angles[0], res, 40, 48))


# -- argument checks ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"scale_exponents": (0, 9)}, r"scale_exponents.*\(0, 9\)"),
        ({"scale_exponents": (3, 1)}, r"scale_exponents.*\(3, 1\)"),
        ({"scale_exponents": (0.5, 2)}, r"scale_exponents.*\(0\.5, 2\)"),
        ({"scale_exponents": (-1, 2)}, r"scale_exponents.*\(-1, 2\)"),
        ({"scale_exponents": "05"}, r"scale_exponents.*'05'"),
        ({"threshold": 0.0}, r"threshold.*0\.0"),
        ({"threshold": 1.5}, r"threshold.*1\.5"),
        ({"rotation": (10.0, -10.0)}, r"rotation.*\(10\.0, -10\.0\)"),
        ({"rotation": (0.0, float("nan"))}, r"rotation.*nan"),
        ({"union": 0}, r"union.*0"),
        ({"rotation_mode": "bilinear"}, r"rotation_mode.*'bilinear'"),
    ],
)
def test_bad_arguments_raise_naming_the_value(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        PerlinMask(**kwargs)


def test_functional_checks_name_the_value():
    angles = _angles(0, 2, 5)
    with pytest.raises(ValueError, match=r"resolution.*\[1, 8\]"):
        perlin_noise(angles, torch.tensor([[1, 1], [8, 1]]), 8, 8)  # 8 cells need 9 lattice points
    with pytest.raises(ValueError, match=r"resolution.*\(2, 2\).*\(3,\)"):
        perlin_noise(angles, torch.tensor([1, 2, 3]), 8, 8)
    with pytest.raises(ValueError, match=r"gradient_angles.*\(2, 5\)"):
        perlin_noise(angles[0, :2], torch.ones(2, 2, dtype=torch.long), 8, 8)
    with pytest.raises(ValueError, match=r"rotation.*\(3,\)"):
        perlin_noise(angles, torch.ones(2, 2, dtype=torch.long), 8, 8, torch.zeros(3))
    with pytest.raises(ValueError, match=r"persistence.*1\.5"):
        fractal_noise([angles], torch.ones(2, 2, dtype=torch.long), 8, 8, persistence=1.5)
    with pytest.raises(ValueError, match=r"gradient_angles.*\[\]"):
        fractal_noise([], torch.ones(2, 2, dtype=torch.long), 8, 8)


@pytest.mark.parametrize("mode, bound", [("exact", 0.01), ("resample", 0.001)])
def test_agrees_with_rotating_a_noise_image_as_draem_does(mode, bound):
    # DRAEM rotates a noise image (bilinear, zero border); evaluating at the rotated points instead differs
    # only where interpolation flattens the peaks of the finest lattices (measured: 0.36% of pixels at
    # 32 x 128 x 128), and resampling as DRAEM does differs only by OpenCV's fixed-point interpolation (0.025%).
    cv2 = pytest.importorskip("cv2")
    n, size = 16, 128
    gen = PerlinMask(rotation_mode=mode)
    masks = gen(torch.rand(n, 1, size, size), generator=torch.Generator().manual_seed(1))[:, 0].numpy() > 0
    p = gen.last_params
    differ = 0
    for i in range(n):
        ry, rx = p["resolution"][i, 0].tolist()
        noise = draem_perlin_oracle(p["gradient_angles"][i, 0].double().numpy(), (size, size), (ry, rx))
        centre = ((size - 1) / 2, (size - 1) / 2)
        # our angles turn clockwise as displayed; OpenCV's turn counter-clockwise
        turn = cv2.getRotationMatrix2D(centre, -float(p["rotation"][i, 0]), 1.0)
        turned = cv2.warpAffine(noise, turn, (size, size), flags=cv2.INTER_LINEAR, borderValue=0)
        differ += int(((turned > 0.5) != masks[i]).sum())
    assert differ / masks.size < bound


def test_resampled_turns_keep_the_exact_masks_statistics():
    # the same draws through both modes: masks agree on all but a sliver of boundary pixels, and cover the
    # frame alike (resampling flattens the finest lattices' peaks a little, so it covers slightly less)
    images = torch.rand(96, 1, 128, 128)
    exact, resampled = (PerlinMask(rotation_mode=mode)(images, generator=torch.Generator().manual_seed(3))[:, 0] > 0
                        for mode in ("exact", "resample"))
    assert float((exact != resampled).float().mean()) < 0.01
    coverage = float(exact.float().mean()), float(resampled.float().mean())
    assert 0.01 < coverage[1] <= coverage[0] and coverage[1] > 0.85 * coverage[0]
    per_mask = exact.flatten(1).float().mean(1), resampled.flatten(1).float().mean(1)
    assert float(torch.corrcoef(torch.stack(per_mask))[0, 1]) > 0.99


def test_resampling_leaves_unturned_samples_and_blocks_alone(monkeypatch):
    images = torch.rand(9, 1, 40, 48)
    still = [PerlinMask(rotation=(0.0, 0.0), rotation_mode=mode)(images, generator=torch.Generator().manual_seed(5))
             for mode in ("exact", "resample")]
    assert torch.equal(*still)  # a turn by 0 degrees is no turn in either mode
    gen = PerlinMask(rotation_mode="resample")
    masks = gen(images, generator=torch.Generator().manual_seed(6))
    monkeypatch.setattr(noise, "_CPU_BLOCK_PIXELS", 2 * 40 * 48)  # blocks of 2 samples, the last one short
    assert torch.equal(gen(images, params=gen.last_params), masks)
    assert "rotation_mode='resample'" in repr(gen)


# -- the separable evaluation of unrotated noise -----------------------------------------------------------
def per_pixel_reference(angles: np.ndarray, shape: tuple[int, int], res: tuple[int, int]) -> np.ndarray:
    """Perlin noise of one sample evaluated pixel by pixel in float64, any size: pixel (y, x) at lattice
    coordinates (y * ry / H, x * rx / W), corner ramps blended along the height, then the width, as DRAEM."""
    h, w = shape
    ry, rx = res
    out = np.empty((h, w))
    for y in range(h):
        cy = y * ry / h
        j, fy = int(math.floor(cy)), cy - math.floor(cy)
        for x in range(w):
            cx = x * rx / w
            k, fx = int(math.floor(cx)), cx - math.floor(cx)

            def ramp(a: int, b: int) -> float:
                angle = angles[j + a, k + b]
                return math.cos(angle) * (fy - a) + math.sin(angle) * (fx - b)

            ty, tx = _fade(fy), _fade(fx)
            left = ramp(0, 0) + ty * (ramp(1, 0) - ramp(0, 0))
            right = ramp(0, 1) + ty * (ramp(1, 1) - ramp(0, 1))
            out[y, x] = math.sqrt(2) * (left + tx * (right - left))
    return out


@settings(max_examples=30)
@given(
    seed=seeds,
    n=st.integers(1, 4),
    h=st.integers(1, 70),
    w=st.integers(1, 70),
    ey=st.integers(0, 6),
    ex=st.integers(0, 6),
    spare=st.integers(0, 3),
)
def test_unrotated_noise_matches_the_per_pixel_evaluation_to_float_rounding(seed, n, h, w, ey, ex, spare):
    # Without rotation the noise is evaluated in its separable form (noise._perlin_separable): the same sums,
    # in another order, so float32 values may differ in their last bits from the per-pixel evaluation
    # (noise._perlin_block) and nothing more. Bound: 1e-5 (measured: 4e-7 at 64 x 256 x 256); float64: 1e-12.
    g = torch.Generator().manual_seed(seed)
    side = 2 ** max(ey, ex) + 1 + spare  # lattices larger than the resolutions need, as PerlinMask draws them
    angles = 2 * math.pi * torch.rand(n, side, side, generator=g, dtype=torch.float64)
    res = torch.stack([2 ** torch.randint(0, ey + 1, (n,), generator=g),
                       2 ** torch.randint(0, ex + 1, (n,), generator=g)], dim=1)
    for dtype, bound in ((torch.float32, 1e-5), (torch.float64, 1e-12)):
        a = angles.to(dtype)
        got = perlin_noise(a, res, h, w)
        per_pixel = noise._perlin_block(a, res, h, w, None)
        assert got.dtype == dtype and got.shape == (n, 1, h, w)
        assert float((got - per_pixel).abs().max()) <= bound
    # and against a plain float64 evaluation written pixel by pixel, for the first sample
    expected = per_pixel_reference(angles[0].numpy(), (h, w), tuple(res[0].tolist()))
    np.testing.assert_allclose(perlin_noise(angles[:1], res[:1], h, w)[0, 0].numpy(), expected, atol=1e-12)
    np.testing.assert_allclose(perlin_noise(angles[:1].float(), res[:1], h, w)[0, 0].numpy(), expected, atol=1e-5)


def test_unrotated_noise_does_not_depend_on_the_batch_or_its_blocks(monkeypatch):
    n = 6
    angles, res = _angles(7, n, 65), 2 ** torch.randint(0, 7, (n, 2), generator=torch.Generator().manual_seed(7))
    batch = perlin_noise(angles, res, 37, 53)
    for i in range(n):
        assert torch.equal(perlin_noise(angles[i : i + 1], res[i : i + 1], 37, 53), batch[i : i + 1])
    assert torch.equal(perlin_noise(angles.flip(0), res.flip(0), 37, 53), batch.flip(0))
    monkeypatch.setattr(noise, "_CPU_BLOCK_PIXELS", 2 * 37 * 53)
    assert torch.equal(perlin_noise(angles, res, 37, 53), batch)
    fractal = [_angles(8 + k, n, 2**k * 8 + 1) for k in range(3)]
    res = torch.full((n, 2), 4)
    one_block = fractal_noise(fractal, res, 40, 48)
    monkeypatch.setattr(noise, "_CPU_BLOCK_PIXELS", 40 * 48)
    assert torch.equal(fractal_noise(fractal, res, 40, 48), one_block)
    assert torch.equal(fractal_noise([a[2:3] for a in fractal], res[2:3], 40, 48), one_block[2:3])


def test_unrotated_masks_keep_their_statistics():
    # PerlinMask(rotation=(0, 0)) thresholds the separable evaluation; against the per-pixel one on the same
    # draws, a pixel may only flip where the noise lies within float rounding of the threshold.
    gen = PerlinMask(rotation=(0.0, 0.0))
    masks = gen(torch.rand(128, 1, 128, 128), generator=torch.Generator().manual_seed(2))[:, 0].bool()
    p = gen.last_params
    assert bool((p["rotation"] == 0).all())  # turns by 0 degrees take the separable evaluation
    per_pixel = noise._perlin_block(p["gradient_angles"][:, 0], p["resolution"][:, 0], 128, 128, None)[:, 0] > 0.5
    assert torch.equal(masks, perlin_noise(p["gradient_angles"][:, 0], p["resolution"][:, 0], 128, 128)[:, 0] > 0.5)
    flipped = float((masks != per_pixel).float().mean())
    assert flipped < 1e-3
    coverage, reference = float(masks.float().mean()), float(per_pixel.float().mean())
    assert abs(coverage - reference) < 1e-4 and 0.01 < coverage < 0.2


def test_samples_turned_by_zero_degrees_are_unrotated_whatever_their_batch():
    n = 6
    angles, res = _angles(9, n, 33), 2 ** torch.randint(0, 6, (n, 2), generator=torch.Generator().manual_seed(9))
    rotation = torch.tensor([0.0, 30.0, 0.0, -45.0, 90.0, 0.0])
    mixed = perlin_noise(angles, res, 37, 53, rotation)
    still = rotation == 0
    assert torch.equal(mixed[still], perlin_noise(angles[still], res[still], 37, 53))
    assert torch.equal(mixed[~still], perlin_noise(angles[~still], res[~still], 37, 53, rotation[~still]))
    for i in range(n):
        one = slice(i, i + 1)
        assert torch.equal(perlin_noise(angles[one], res[one], 37, 53, rotation[one]), mixed[one])


@pytest.mark.parametrize("turns", [None, "mixed", "all"])
def test_noise_written_into_a_reused_buffer_is_the_same_noise(turns):
    n = 5
    angles, res = _angles(11, n, 33), 2 ** torch.randint(0, 6, (n, 2), generator=torch.Generator().manual_seed(11))
    rotation = {None: None, "mixed": torch.tensor([0.0, 30.0, 0.0, -45.0, 90.0]), "all": torch.linspace(-80, 80, n)}
    expected = perlin_noise(angles, res, 37, 53, rotation[turns])
    buffer = torch.full((n, 1, 37, 53), float("nan"))
    for _ in range(2):
        got = perlin_noise(angles, res, 37, 53, rotation[turns], out=buffer)
        assert got.data_ptr() == buffer.data_ptr() and torch.equal(got, expected)


@pytest.mark.parametrize("out", [torch.empty(5, 1, 37, 52), torch.empty(5, 1, 37, 53, dtype=torch.float64),
                                 torch.empty(5, 1, 53, 37).transpose(2, 3)])
def test_noise_refuses_an_out_of_another_shape_dtype_or_layout(out):
    angles, res = _angles(0, 5, 33), torch.full((5, 2), 4)
    with pytest.raises(ValueError, match=r"out must be a contiguous torch.float32 tensor of shape \(5, 1, 37, 53\)"):
        perlin_noise(angles, res, 37, 53, out=out)


def test_masks_do_not_depend_on_the_blocks_they_are_thresholded_in(monkeypatch):
    gen = PerlinMask()
    masks = gen(torch.rand(9, 1, 40, 48), generator=torch.Generator().manual_seed(4))
    p = gen.last_params
    noise_all = perlin_noise(p["gradient_angles"][:, 0], p["resolution"][:, 0], 40, 48, p["rotation"][:, 0])
    assert masks.dtype == torch.float32 and torch.equal(masks.bool(), noise_all > gen.threshold)
    monkeypatch.setattr(noise, "_CPU_BLOCK_PIXELS", 2 * 40 * 48)  # blocks of 2 samples, the last one short
    assert torch.equal(gen(torch.rand(9, 1, 40, 48), params=p), masks)
