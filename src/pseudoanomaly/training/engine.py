"""Deprecated: this module was split. Import these names from :mod:`pseudoanomaly.training` instead.

``Trainer``, ``CHECKPOINT_NAME`` and ``LOG_NAME`` live in :mod:`pseudoanomaly.training.trainer`; ``Phase`` and
``NonFiniteLossError`` in :mod:`pseudoanomaly.training.phase`; the checkpoint layout in
:mod:`pseudoanomaly.training.checkpoint`; optimizer and scheduler construction in
:mod:`pseudoanomaly.training.optim`.
"""

from __future__ import annotations

import importlib
import warnings

_HOME = {"Trainer": "trainer", "CHECKPOINT_NAME": "trainer", "LOG_NAME": "trainer", "Phase": "phase",
         "NonFiniteLossError": "phase"}
__all__ = list(_HOME)


def __getattr__(name: str) -> object:
    # Warn on use, not on import: importing the module alone (doctest collection, autodoc) stays quiet.
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    home = f"pseudoanomaly.training.{_HOME[name]}"
    warnings.warn(f"pseudoanomaly.training.engine is deprecated; import {name} from pseudoanomaly.training "
                  f"(it lives in {home})", DeprecationWarning, stacklevel=2)
    return getattr(importlib.import_module(home), name)
