"""Adapters that run a :class:`~pseudoanomaly.PseudoAnomaly` inside other augmentation libraries.

- :mod:`pseudoanomaly.integrations.kornia`: :class:`~pseudoanomaly.integrations.kornia.RandomPseudoAnomaly`, a
  Kornia augmentation for ``kornia.augmentation.AugmentationSequential``.
- :mod:`pseudoanomaly.integrations.monai`: :class:`~pseudoanomaly.integrations.monai.RandPseudoAnomalyd`, a MONAI
  dictionary transform (the ``monai`` extra).
- :mod:`pseudoanomaly.integrations.torchio`: :class:`~pseudoanomaly.integrations.torchio.RandomPseudoAnomaly`, a
  TorchIO transform whose mask is a ``LabelMap`` (the ``torchio`` extra).

Each adapter imports its library only when it is itself imported, so ``import pseudoanomaly.integrations`` stays
light; the adapters load on first use (``pseudoanomaly.integrations.kornia``) or by importing them directly.
"""

from __future__ import annotations

# One entry per adapter, named after the library it adapts (absolute imports inside each adapter reach the real
# library, not this package's module of the same name).
_ADAPTERS = ("kornia", "monai", "torchio")

__all__: list[str] = []


def __getattr__(name: str):
    if name in _ADAPTERS:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_ADAPTERS))
