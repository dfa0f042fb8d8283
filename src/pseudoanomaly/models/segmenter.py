"""Deprecated name of :mod:`pseudoanomaly.models.anomaly_segmenter`.

``from pseudoanomaly.models.segmenter import AnomalySegmenter`` keeps working and gives the same class, with a
``DeprecationWarning``; import it from :mod:`pseudoanomaly.models` instead.
"""

from __future__ import annotations

import warnings

from . import anomaly_segmenter as _new_home

__all__ = ["AnomalySegmenter"]  # noqa: F822  (served by __getattr__, with a DeprecationWarning)


def __getattr__(name: str):
    if name in __all__:
        warnings.warn(
            f"pseudoanomaly.models.segmenter is deprecated: import {name} from pseudoanomaly.models "
            "(defined in pseudoanomaly.models.anomaly_segmenter)",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(_new_home, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
