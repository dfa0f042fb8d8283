"""3-D volumes (B, C, D, H, W) through the shared machinery: checks, base classes, PseudoAnomaly and OneOf."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from transform_contract import check_mask_contract, check_overlay_contract, check_refuses_volumes

from pseudoanomaly import OneOf, PseudoAnomaly
from pseudoanomaly.masks.functional import binary_morphology, ellipsoidal_kernel
from pseudoanomaly.noise import minmax_stretch
from pseudoanomaly.noise3d import perlin_volume, random_unit_vectors, smooth_volume_field, volume_noise_grid_shape
from pseudoanomaly.masks import BlobMask, BlurredNoiseMask, MaskGenerator, PerlinMask
from pseudoanomaly.overlays import IntensityShift, Overlay, PatchBlend, TextureBlend

VOLUME = (6, 20, 24)  # (D, H, W)


class CubeMask(MaskGenerator):
    """Axis-aligned boxes of a quarter of each side at random corners: the smallest volume generator."""

    supports_volumes = True

    def draw_volume(self, n, size, foreground, generator, device):
        high = torch.tensor([s - s // 4 for s in size], device=device)
        corner = (torch.rand((n, 3), generator=generator, device=device) * high).long()
        return {"corner": corner}

    def render_volume(self, params, size):
        inside = None
        for axis, side in enumerate(size):
            coords = torch.arange(side, device=params["corner"].device).view([-1 if i == axis else 1 for i in range(3)])
            start = params["corner"][:, axis].view(-1, 1, 1, 1, 1)
            along = (coords >= start) & (coords < start + max(side // 4, 1))
            inside = along if inside is None else inside & along
        return inside


@pytest.mark.parametrize("options", [{}, {"union": 3}, {"rejection": True, "area": (0.0, 0.5)},
                                     {"same_on_batch": True}])
def test_the_base_class_keeps_the_mask_contract_on_volumes(device, options):
    check_mask_contract(CubeMask(**options), device, size=VOLUME)


def test_intensity_shift_keeps_the_overlay_contract_on_volumes(device):
    check_overlay_contract(IntensityShift(), device, size=VOLUME)
    check_overlay_contract(IntensityShift(distribution="gaussian", value_range=(-1.0, 2.0)), device, size=VOLUME)


def test_pseudo_anomaly_and_one_of_make_volumes_anomalous_and_replay(device):
    images = torch.rand(5, 1, *VOLUME, device=device)
    fg = torch.zeros(5, 1, *VOLUME, dtype=torch.bool, device=device)
    fg[..., 1:5, 4:16, 4:20] = True
    for synth in (PseudoAnomaly(CubeMask(rejection=True), p=0.6),
                  OneOf([PseudoAnomaly(CubeMask()), PseudoAnomaly(CubeMask(union=2), IntensityShift(direction="darken"))])):
        augmented, masks = synth(images, fg, generator=torch.Generator(device=device).manual_seed(0))
        assert augmented.shape == images.shape and masks.shape == (5, 1, *VOLUME)
        assert not bool(masks[~fg].any())
        outside = (masks == 0).expand_as(images)
        assert torch.equal(augmented[outside], images[outside])
        again, again_masks = synth(images, fg, params=synth.last_params)
        assert torch.equal(again, augmented) and torch.equal(again_masks, masks)


class FlatSquares(MaskGenerator):
    """A user's 2-D-only generator (no supports_volumes): volumes must be refused by name."""

    def draw(self, n, height, width, foreground, generator, device):
        return {"corner": torch.randint(0, height // 2, (n, 2), generator=generator, device=device)}

    def render(self, params, height, width):
        return torch.zeros(params["corner"].shape[0], 1, height, width, dtype=torch.bool)


class Darken(Overlay):
    """A user's 2-D-only overlay (no supports_volumes)."""

    def draw(self, images, generator):
        return {"s": torch.rand(images.shape[0], generator=generator, device=images.device)}

    def fill(self, images, params):
        return images * params["s"].view(-1, 1, 1, 1)


@pytest.mark.parametrize("make", [FlatSquares, Darken])
def test_transforms_without_volume_support_say_so(make):
    check_refuses_volumes(make())


def test_pseudo_anomaly_refuses_volumes_before_drawing_when_a_part_cannot():
    for synth, name in ((PseudoAnomaly(CubeMask(), Darken()), "Darken"), (PseudoAnomaly(FlatSquares()), "FlatSquares")):
        with pytest.raises(ValueError, match=f"{name} does not support 3-D volumes"):
            synth(torch.rand(2, 1, *VOLUME))
        assert synth.last_params is None



@pytest.mark.parametrize("images_shape, fg_shape", [((2, 1, *VOLUME), (2, 1, 20, 24)),
                                                    ((2, 1, 20, 24), (2, 1, *VOLUME))])
def test_a_foreground_with_the_wrong_number_of_dimensions_names_both_shapes(images_shape, fg_shape):
    images, fg = torch.rand(images_shape), torch.ones(fg_shape, dtype=torch.bool)
    gen = CubeMask() if len(images_shape) == 5 else BlurredNoiseMask()
    pattern = rf"foreground has shape \({fg_shape[0]}, 1, .*\) \({len(fg_shape)}-D\) but images are .*{images_shape[-1]}\)"
    with pytest.raises(ValueError, match=pattern):
        gen(images, fg)
    with pytest.raises(ValueError, match=r"masks has shape .* but images are"):
        IntensityShift()(images, fg.float())


def test_volume_replay_checks_all_three_sides():
    gen = CubeMask()
    gen(torch.rand(2, 1, *VOLUME))
    with pytest.raises(ValueError, match=r"drawn for a batch of 2 image\(s\) of 6 x 20 x 24, got 2 image\(s\) of 7 x 20 x 24"):
        gen(torch.rand(2, 1, 7, 20, 24), params=gen.last_params)


def test_six_dimensional_images_are_refused():
    with pytest.raises(ValueError, match=r"images must have shape \(B, C, H, W\), got shape \(1, 1, 2, 2, 2, 2\) \(volumes: \(B, C, D, H, W\)\)"):
        IntensityShift()(torch.rand(1, 1, 2, 2, 2, 2), torch.ones(1, 1, 2, 2, 2, 2))


# ------------------------------------------------------------------------------------------- BlobMask


@pytest.mark.parametrize("kwargs", [{}, {"irregularity": 0.0, "union": 2}, {"radius": (2.0, 5.0), "spacing": (2.5, 0.7, 0.7)},
                                    {"radius": (0.2, 0.5), "rejection": True, "area": (0.01, 0.6), "same_on_batch": True}])
def test_blob_mask_keeps_the_contract_on_volumes(device, kwargs):
    check_mask_contract(BlobMask(**kwargs), device, size=VOLUME)


def test_blob_mask_blobs_are_round_in_millimetres_on_anisotropic_voxels():
    # exact spheres of radius 6 mm on 2.5 x 0.5 x 0.5 mm voxels: 5 slices deep but 25 voxels wide
    gen = BlobMask(count=1, radius=(6.0, 6.0), irregularity=0.0, spacing=(2.5, 0.5, 0.5))
    masks = gen(torch.rand(3, 1, 16, 48, 48), generator=torch.Generator().manual_seed(1))
    for m, c in zip(masks[:, 0].bool(), gen.last_params["center"][:, 0, 0]):
        z, y, x = m.nonzero().T
        if (c[0] >= 3) and (c[0] <= 12) and (c[1:] >= 13).all() and (c[1:] <= 34).all():  # not cut by a border
            assert int(z.max() - z.min()) + 1 == 5 and int(y.max() - y.min()) + 1 == 25
        volume = float(m.sum()) * 2.5 * 0.5 * 0.5
        assert volume <= 4 / 3 * math.pi * 6**3 * 1.05


def test_blob_mask_centres_lie_in_the_foreground_of_a_volume(device):
    fg = torch.zeros(4, 1, *VOLUME, dtype=torch.bool, device=device)
    fg[0, 0, 2, 3, 4] = fg[1, 0, 5, 19, 23] = True
    fg[2:, :, 1:3, 10:12, 5:9] = True
    gen = BlobMask(count=(2, 3))
    gen(torch.rand(4, 1, *VOLUME, device=device), fg, generator=torch.Generator(device=device).manual_seed(0))
    center = gen.last_params["center"][:, 0].long()  # (B, slots, 3)
    for b in range(4):
        for z, y, x in center[b].tolist():
            assert bool(fg[b, 0, z, y, x])


@pytest.mark.parametrize("spacing, shown", [((1.0, 1.0), r"spacing must hold 3 positive numbers .*got \(1\.0, 1\.0\)"),
                                            ((1.0, 0.0, 1.0), r"spacing must hold positive numbers .*got \(1\.0, 0\.0, 1\.0\)"),
                                            ((1.0, -2, 1.0), r"spacing must hold positive numbers")])
def test_a_bad_spacing_is_refused_by_name(spacing, shown):
    with pytest.raises(ValueError, match=shown):
        BlobMask(spacing=spacing)


def test_blob_mask_with_a_spacing_refuses_2d_images():
    with pytest.raises(ValueError, match=r"BlobMask: spacing=\(2\.5, 0\.7, 0\.7\) is a voxel size"):
        BlobMask(radius=(3.0, 5.0), spacing=(2.5, 0.7, 0.7))(torch.rand(1, 1, 32, 32))


# ------------------------------------------------------------------------------------------- BlurredNoiseMask


@pytest.mark.parametrize("kwargs", [{"sigma": 2.0, "threshold": 0.6, "kernel_size": 3},
                                    {"sigma": 3.0, "threshold": 0.5, "kernel_size": 2.0, "spacing": (2.0, 1.0, 1.0),
                                     "union": 2, "rejection": True},
                                    {"sigma": 2.0, "threshold": 0.6, "kernel_size": 1, "same_on_batch": True}])
def test_blurred_noise_mask_keeps_the_contract_on_volumes(device, kwargs):
    check_mask_contract(BlurredNoiseMask(**kwargs), device, size=VOLUME)


def test_blurred_noise_mask_volumes_are_the_recipe_smooth_threshold_open_close():
    gen = BlurredNoiseMask(sigma=6.0, threshold=0.7, kernel_size=4.0, spacing=(2.5, 1.0, 1.0))
    masks = gen(torch.rand(2, 1, 10, 40, 40), generator=torch.Generator().manual_seed(0))
    field = smooth_volume_field(gen.last_params["noise"][:, 0], (10, 40, 40), 6.0, spacing=(2.5, 1.0, 1.0))
    expected = binary_morphology(minmax_stretch(field) > 0.7, ellipsoidal_kernel(4.0, spacing=(2.5, 1.0, 1.0)),
                                 ("open", "close"), "scipy")
    assert torch.equal(masks.bool(), expected)
    assert 0.0 < float(masks.mean()) < 0.5


def test_blurred_noise_mask_torch_and_host_morphology_agree_on_volumes():
    a, b = (BlurredNoiseMask(sigma=2.0, threshold=0.6, kernel_size=3, backend=be) for be in ("torch", "opencv"))
    images = torch.rand(3, 1, *VOLUME)
    assert torch.equal(a(images, generator=torch.Generator().manual_seed(4)),
                       b(images, generator=torch.Generator().manual_seed(4)))


@pytest.mark.parametrize("kwargs, shown", [
    ({"kernel_size": 0.5, "spacing": (2.5, 0.7, 0.7)}, r"kernel_size=0\.5 mm rounds to a single voxel"),
    ({"spacing": (2.5, 0.7)}, r"spacing must hold 3 positive numbers .*got \(2\.5, 0\.7\)"),
    ({"spacing": (2.5, 0.7, 0.0)}, r"spacing must hold positive numbers"),
    ({"kernel_size": -1.0, "spacing": (1.0, 1.0, 1.0)}, r"kernel_size must be positive, got -1\.0"),
])
def test_bad_millimetre_settings_are_refused_by_name(kwargs, shown):
    with pytest.raises(ValueError, match=shown):
        BlurredNoiseMask(**kwargs)


def test_smooth_volume_field_is_smooth_with_the_spacing_and_unbiased():
    spacing, size = (3.0, 1.0, 1.0), (24, 72, 72)
    shape = volume_noise_grid_shape(size, 6.0, spacing)
    noise = torch.randn(4, 1, *shape, generator=torch.Generator().manual_seed(0))
    field = smooth_volume_field(noise, size, 6.0, spacing, scale=2.0, offset=1.0)
    assert field.shape == (4, 1, *size)
    assert abs(float(field.mean()) - 1.0) < 0.1
    # isotropic in mm: the correlation of neighbours one voxel apart is higher in-plane (1 mm) than across (3 mm)
    f = field - field.mean()
    corr = [float((f * f.roll(1, dims=d)).mean() / f.var()) for d in (2, 3, 4)]
    assert corr[0] < corr[1] and abs(corr[1] - corr[2]) < 0.05
    with pytest.raises(ValueError, match=r"noise must have shape \(B, 1, "):
        smooth_volume_field(noise[..., :-1], size, 6.0, spacing)


@pytest.mark.parametrize("size, sigma", [((9, 30, 26), 2.0), ((3, 20, 20), 1.5)])  # the 2nd: a mirror too wide in z
def test_smooth_volume_field_is_a_separable_gaussian_with_mirrored_borders(size, sigma):
    # no coarsening (downsample=1): the field is exactly the blurred noise; the borders mirror without repeating
    # the edge sample (scipy's "mirror"), or repeat it where the kernel is wider than the axis ("nearest")
    from scipy import ndimage

    noise = torch.randn(2, 1, *size, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    field = smooth_volume_field(noise, size, sigma, downsample=1)
    radius = math.ceil(3 * sigma)
    taps = np.exp(-np.arange(-radius, radius + 1) ** 2 / (2 * sigma**2))
    expected = noise.numpy()
    for axis in (2, 3, 4):
        mode = "mirror" if radius < size[axis - 2] else "nearest"
        expected = ndimage.correlate1d(expected, taps / taps.sum(), axis=axis, mode=mode)
    np.testing.assert_allclose(field.numpy(), expected, rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------------- PatchBlend


@pytest.mark.parametrize("kwargs", [{}, {"source": "self", "alpha": (1.0, 1.0)}, {"same_on_batch": True}])
def test_patch_blend_keeps_the_overlay_contract_on_volumes(device, kwargs):
    check_overlay_contract(PatchBlend(**kwargs), device, size=VOLUME)


def test_patch_blend_pastes_a_shifted_copy_of_the_volume_itself():
    images = torch.rand(2, 1, *VOLUME)
    blend = PatchBlend(source="self", alpha=(1.0, 1.0), shift=(0.3, 0.3))
    masks = torch.ones(2, 1, *VOLUME)
    out = blend(images, masks, generator=torch.Generator().manual_seed(0))
    for b, offset in enumerate(blend.last_params["offset"].tolist()):
        assert any(offset)
        assert torch.equal(out[b], torch.roll(images[b], shifts=offset, dims=(1, 2, 3)))


# ------------------------------------------------------------------------------------------- Perlin noise


@pytest.mark.parametrize("kwargs", [{"scale_exponents": (0, 3)}, {"scale_exponents": (1, 2), "union": 2,
                                                                   "rejection": True, "threshold": 0.3}])
def test_perlin_mask_keeps_the_contract_on_volumes(device, kwargs):
    check_mask_contract(PerlinMask(**kwargs), device, size=VOLUME)


def test_perlin_volume_is_zero_on_the_lattice_bounded_and_continuous():
    g = torch.Generator().manual_seed(0)
    gradients = random_unit_vectors((3, 9, 9, 9), g, "cpu").double()
    resolution = torch.tensor([[1, 2, 4], [2, 2, 2], [8, 8, 8]])
    noise = perlin_volume(gradients, resolution, (16, 32, 32))
    assert noise.dtype == torch.float64 and noise.shape == (3, 1, 16, 32, 32)
    assert bool(noise.abs().max() <= 1) and float(noise.abs().max()) > 0.3
    # lattice points: z * r_z / D integral (and likewise y, x) -> exactly 0
    assert float(noise[0, 0, ::16, ::16, ::8].abs().max()) == 0.0
    # a coarse lattice varies slowly from voxel to voxel
    assert float((noise[1, 0, :, :, 1:] - noise[1, 0, :, :, :-1]).abs().max()) < 0.2
    with pytest.raises(ValueError, match=r"resolution must be >= 1 and below the lattice size"):
        perlin_volume(gradients, torch.tensor([[1, 2, 9]] * 3), (4, 4, 4))


# ------------------------------------------------------------------------------------------- TextureBlend


@pytest.mark.parametrize("bank", [None, (3, 1, 8, 24, 30), (2, 1, 4, 10, 12), (2, 3, 7, 21, 25)])
def test_texture_blend_keeps_the_overlay_contract_on_volumes(device, bank):
    textures = None if bank is None else torch.rand(bank, generator=torch.Generator().manual_seed(0)).to(device)
    if bank is not None and bank[1] == 3:
        with pytest.raises(ValueError, match="textures have 3 channels but the images have 1"):
            check_overlay_contract(TextureBlend(textures), device, size=VOLUME)
        return
    check_overlay_contract(TextureBlend(textures), device, size=VOLUME)
    check_overlay_contract(TextureBlend(textures, same_on_batch=True), device, size=VOLUME)


def test_texture_blend_pastes_crops_of_bank_volumes():
    bank = torch.rand(2, 1, 8, 24, 30, generator=torch.Generator().manual_seed(1))
    blend = TextureBlend(bank, beta=(0.0, 0.0))
    images, masks = torch.rand(3, 1, *VOLUME), torch.ones(3, 1, *VOLUME)
    out = blend(images, masks, generator=torch.Generator().manual_seed(2))
    for b in range(3):
        i, (z, y, x) = int(blend.last_params["index"][b]), blend.last_params["corner"][b].tolist()
        assert torch.equal(out[b], bank[i, :, z : z + 6, y : y + 20, x : x + 24])


def test_a_texture_bank_of_the_other_kind_is_refused_by_name():
    with pytest.raises(ValueError, match=r"textures is a bank of 2-D textures \(N, C, h, w\) .* pass a bank of volumes"):
        TextureBlend(torch.rand(2, 1, 32, 32))(torch.rand(2, 1, *VOLUME), torch.ones(2, 1, *VOLUME))
    with pytest.raises(ValueError, match=r"textures is a bank of volumes \(N, C, d, h, w\)"):
        TextureBlend(torch.rand(2, 1, 4, 32, 32))(torch.rand(2, 1, 32, 32), torch.ones(2, 1, 32, 32))


@given(seed=st.integers(0, 2**31 - 1), size=st.tuples(st.integers(1, 8), st.integers(1, 24), st.integers(1, 24)),
       spacing=st.sampled_from([None, (2.5, 0.7, 0.7), (1.0, 1.0, 1.0)]), union=st.integers(1, 2))
def test_every_volume_blob_mask_covers_its_foreground_centres_and_replays(seed, size, spacing, union):
    g = torch.Generator().manual_seed(seed)
    fg = torch.rand(3, 1, *size, generator=g) < 0.3
    fg[:, :, 0, 0, 0] = True  # no empty sample
    radius = (0.1, 0.5) if spacing is None else (0.5, 4.0)
    gen = BlobMask(radius=radius, spacing=spacing, union=union)
    masks = gen(torch.rand(3, 1, *size), fg, generator=g)
    assert not bool(masks[~fg].any())
    center = gen.last_params["center"].long().flatten(1, 2)  # (B, K * slots, 3)
    valid = gen.last_params["valid"].flatten(1)
    for b in range(3):
        for (z, y, x), used in zip(center[b].tolist(), valid[b].tolist()):
            if used:  # a blob always covers its centre voxel, which is a foreground voxel
                assert bool(fg[b, 0, z, y, x]) and masks[b, 0, z, y, x] == 1
    assert torch.equal(gen(torch.rand(3, 1, *size), fg, params=gen.last_params), masks)


@given(seed=st.integers(0, 2**31 - 1), shape=st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 7),
                                                        st.integers(1, 9)), density=st.floats(0.01, 1.0))
def test_blob_centres_are_the_kth_foreground_voxel_for_a_uniform_k(seed, shape, density):
    # the row-by-row search gives the voxel a cumulative count over the whole volume would: the k-th foreground
    # voxel in raster order, with k = floor(u * count) for the same uniform draws u
    from pseudoanomaly.masks.blob3d import _uniform_in_foreground

    g = torch.Generator().manual_seed(seed)
    fg = torch.rand(shape[0], 1, *shape[1:], generator=g) < density
    fg.view(shape[0], -1)[:, 0] = True  # no empty sample
    index = _uniform_in_foreground(fg, 5, torch.Generator().manual_seed(seed), "cpu")
    counts = fg.flatten(1).long().cumsum(1)
    u = torch.rand((shape[0], 5), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    k = (u * counts[:, -1:]).long().clamp_max(counts[:, -1:] - 1)
    assert torch.equal(index, torch.searchsorted(counts, k, right=True))
    assert bool(fg.flatten(1).gather(1, index).all())


def test_perlin_volume_threshold_gives_volumes_drams_coverage_of_images():
    # 3-D Perlin noise is less spread than 2-D noise: at DRAEM's 0.5 it covers a small fraction of what it covers
    # in images; VOLUME_THRESHOLD restores DRAEM's coverage (seeded: 24 volumes and 96 images)
    from pseudoanomaly.masks.perlin import VOLUME_THRESHOLD

    images = PerlinMask()(torch.rand(96, 1, 96, 96), generator=torch.Generator().manual_seed(0)).mean()
    volumes = torch.rand(24, 1, 8, 96, 96)
    at_half = PerlinMask()(volumes, generator=torch.Generator().manual_seed(0)).mean()
    matched = PerlinMask(threshold=VOLUME_THRESHOLD)(volumes, generator=torch.Generator().manual_seed(0)).mean()
    assert at_half < images / 3
    assert abs(float(matched) - float(images)) < 0.4 * float(images)
