"""``examples/synthesis_demo.py``, which the README points newcomers to, runs and writes its picture."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "synthesis_demo.py"


def test_synthesis_demo_writes_its_grid(tmp_path):
    out = tmp_path / "grid.png"
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--seed", "1"], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "zhang2023" in result.stdout and "coverage of the liver" in result.stdout
    picture = cv2.imread(str(out))
    assert picture is not None and picture.shape[0] > 512 and picture.shape[1] > 512
    assert picture.std() > 10  # a picture, not a blank canvas
