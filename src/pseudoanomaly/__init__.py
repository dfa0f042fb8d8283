"""pseudoanomaly: batched, seedable pseudo-anomaly synthesis for self-supervised anomaly segmentation.

Data flow of the method (Zhang, Deng & Li, SASHIMI 2023, built on DRAEM, Zavrtanik et al., ICCV 2021)::

    healthy images (B, C, H, W) + foreground (B, 1, H, W)
        -> mask generator   pseudoanomaly.masks     where the anomaly goes    -> masks (B, 1, H, W) in {0, 1}
        -> overlay          pseudoanomaly.overlays  what it looks like        -> augmented images (B, C, H, W)
           (both draw their random fields from pseudoanomaly.noise, which knows neither)
           (the two together, applied with probability p: PseudoAnomaly; published recipes: presets)
        -> restoration net  pseudoanomaly.models    undoes the anomaly        -> restored images
        -> segmentation net pseudoanomaly.models    compares restored / input -> anomaly map (B, 1, H, W)
        -> metrics          pseudoanomaly.metrics   Dice, AUROC, AP
        -> lesions          pseudoanomaly.postprocess  a threshold set on healthy data, 3-D lesions in mm³

Everything runs batched on the images' device and draws its randomness from an optional ``torch.Generator``:
the same seed on the same device gives bit-identical output. Every one of them keeps the parameters of its last
call in ``last_params``; passing them back as ``params=`` replays the call exactly.

Adapters to other augmentation libraries live in :mod:`pseudoanomaly.integrations` (Kornia today).
"""

from __future__ import annotations

from . import losses, masks, metrics, models, noise, overlays, presets, training
from .synthesis import OneOf, PseudoAnomaly

__version__ = "0.1.0"

# Submodules with heavier dependencies load on first use (``pseudoanomaly.integrations.kornia`` needs Kornia's
# augmentation stack, ``pseudoanomaly.lesions`` SciPy), so ``import pseudoanomaly`` stays light yet every submodule is
# reachable from it (``postprocess`` needs SciPy too). ``augmentation`` is the deprecated name of
# ``integrations.kornia``.
_LAZY_SUBMODULES = ("augmentation", "integrations", "lesions", "postprocess")


def __getattr__(name: str):
    if name in _LAZY_SUBMODULES:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))
__all__ = [
    "PseudoAnomaly",
    "OneOf",
    "noise",
    "masks",
    "overlays",
    "presets",
    "models",
    "losses",
    "metrics",
    "training",
    "__version__",
]
