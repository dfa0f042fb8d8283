"""Realistic liver lesions inserted into real healthy CT: a label-free validation instrument.

What it is for: turning healthy abdominal CT scans (with a liver mask) into scans with liver tumours *and their
exact labels*, to measure a tumour detector where labelled tumour scans are scarce. It is a lesion model
independent of the library's training synthesis (:mod:`pseudoanomaly.masks`, :mod:`pseudoanomaly.overlays`):
3-D, in Hounsfield units and millimetres, with the appearances a CT reader sees. Because it is a model, a result
on it says something only for a detector that never trained on it, nor on anything drawn from it.

The model is the one of Hu et al., "Label-Free Liver Tumor Segmentation", CVPR 2023, Sec. 3 ("Tumor
Generation"), written from the paper's description (not from its code). Per lesion:

1. location: a centre drawn uniformly among liver voxels at least ``DEPTH_FRACTION`` x the lesion's radius
   from the liver's boundary, redrawn (at most ``max_tries`` times) while the lesion would collide with a
   vessel (more than ``VESSEL_TOLERANCE`` of its nominal sphere on vessel voxels) or with an earlier lesion
   (centres closer than the sum of the radii); the lesion's label is always cut to the liver;
2. shape: an ellipsoid with semi-axes drawn independently in ``[0.75 r, 1.25 r]`` (Hu et al.'s rule), a
   uniformly random rotation, and a smooth random elastic displacement (Gaussian-smoothed noise);
3. texture: Gaussian noise drawn on a coarser grid, upsampled and Gaussian-filtered (Hu et al.'s "scaled-up"
   noise), with the spread of the parenchyma's texture around the lesion, added to the lesion's mean HU (with
   the scan's own noise, see the NOTE below);
4. intensity: the lesion's mean HU is the median HU of the parenchyma around it plus a contrast drawn for its
   appearance (:data:`APPEARANCES`, in HU relative to the parenchyma, portal-venous phase);
5. mass effect: the tissue around the lesion is pushed radially outward a little (a local warp, zero beyond
   twice the radius);
6. blurred edge: ``out = (1 - alpha) * ct + alpha * lesion_hu`` with ``alpha`` the Gaussian-blurred lesion mask.

NOTE: departures from the paper, and choices of ours:

- Sizes are diameters in millimetres (:data:`SIZES`), on anisotropic voxels: small 5-20 mm, medium 20-50 mm,
  large 50-90 mm. Hu et al. use radii of 4, 8, 16 and 32 voxels (tiny to large) and put 1-3 large or 2-5
  medium tumours in a volume; we draw 1-3 lesions of any requested class per volume.
- Appearances beyond the paper's single hypodense-to-hyperdense range: rim-enhancing, heterogeneous
  (necrotic patches) and calcified lesions, with HU ranges of ours (:data:`APPEARANCES`).
- A lesion that finds no room apart from the earlier ones within ``max_tries`` draws is left out, so that
  lesions are not merged into one blob (a small liver may get fewer lesions than drawn).
- Vessels are approximated as liver voxels brighter than the parenchyma's median + ``VESSEL_MARGIN_HU`` after
  a light smoothing (Hu et al. use a vessel segmentation); a collision is a vessel fraction over a tolerance,
  and after ``max_tries`` draws the least colliding one is kept (a large lesion always meets vessels).
- The lesion keeps the scanner's noise: the fine residual of the scan (what a one-voxel Gaussian smoothing
  removes, clipped at ``NOISE_CLIP`` standard deviations) is added to the lesion's HU, and Hu et al.'s texture
  noise gets the spread of the parenchyma's smoothed part. Without it the lesion's grain differs from the scan's,
  which a detector could find instead of the lesion.
- The mass effect moves a smoothed copy of the CT and adds back the unmoved fine residual, so the scanner's
  noise keeps its grain around the lesion (interpolating the noise itself would blur it, a visible trace); it
  moves only liver voxels, so the liver's outline (and its mask) stays where it was.
- The alpha blend is cut to the liver too: nothing outside the liver changes.
- A liver that touches a face of the volume is refused: a lesion there would leave the scan. Clear the mask's
  border voxels (as ``examples/lits/lesions.py`` does) to treat the scan's edge as the liver's boundary.

The rendering of each lesion happens in a box around it (NumPy and SciPy on the CPU; the random draws come
from the caller's generator, on the data's device): a 512 x 512 x 78 scan takes a few seconds on two cores.
"""

from .synthesis import APPEARANCES, SIZES, LesionSynthesis

__all__ = ["LesionSynthesis", "SIZES", "APPEARANCES"]
