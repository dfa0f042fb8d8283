"""Deprecated name of :mod:`pseudoanomaly.integrations.kornia` (the Kornia adapter).

``from pseudoanomaly.augmentation import RandomPseudoAnomaly`` keeps working and gives the same class, with a
``DeprecationWarning``; import it from :mod:`pseudoanomaly.integrations.kornia` instead.
"""

from __future__ import annotations

import importlib
import warnings

__all__ = ["RandomPseudoAnomaly"]  # noqa: F822  (served by __getattr__, with a DeprecationWarning)

_NEW_HOME = "pseudoanomaly.integrations.kornia"


def __getattr__(name: str):
    if name in __all__ or name == "SEED_BOUND":
        warnings.warn(
            f"pseudoanomaly.augmentation is deprecated: import {name} from {_NEW_HOME}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(_NEW_HOME), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
