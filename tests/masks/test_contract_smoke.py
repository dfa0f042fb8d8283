from transform_contract import check_mask_contract, check_overlay_contract

from pseudoanomaly.masks import BlurredNoiseMask
from pseudoanomaly.overlays import IntensityShift


def test_blurred_noise_keeps_the_contract(device):
    check_mask_contract(BlurredNoiseMask(sigma=4.0), device)


def test_intensity_shift_keeps_the_contract(device):
    check_overlay_contract(IntensityShift(), device)
