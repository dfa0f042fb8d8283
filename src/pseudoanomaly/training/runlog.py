"""What a training run shows and records as it goes: the JSON-lines log and the progress bar.

``log.jsonl`` gets one JSON object per line: ``{"time", "event", ...}`` with ``event`` one of ``"train"``
(running means of the losses and the lr), ``"eval"`` (a history record) and ``"resume"``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

__all__ = ["RunLog", "progress_bar"]


class RunLog:
    """Appends records to a JSON-lines file, each stamped with the time; ``RunLog(None)`` writes nothing.

    Args:
        path: the log file (its directory is created on the first record), or ``None`` (e.g. on ranks other
            than 0, or without ``out_dir``).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     log = RunLog(Path(tmp) / "run" / "log.jsonl")
        ...     log({"event": "eval", "dice": float("nan")})
        ...     json.loads(log.path.read_text())["dice"] is None
        True
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def __call__(self, record: dict[str, Any]) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # NaN/Inf become null: strict JSON readers reject them (e.g. AUROC of a single-class validation set).
        record = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps({"time": time.time(), **record}, allow_nan=False) + "\n")


def progress_bar(name: str, total: int, initial: int) -> Any:
    """A tqdm bar over a phase's ``total`` steps starting at ``initial``, or ``None`` when tqdm is not installed."""
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional; training runs without a bar.
        return None
    return tqdm(total=total, initial=initial, desc=name, dynamic_ncols=True)
