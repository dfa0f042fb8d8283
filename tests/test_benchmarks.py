"""The benchmark scripts stay runnable: each parses its options and prints its usage.

They are run by hand and their figures go to ``benchmarks/RESULTS.md``; this only guards against an import or
argument-parser broken by a change elsewhere (the figures themselves are never timed in tests).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


def test_there_are_benchmarks():
    assert {p.name for p in BENCHMARKS} >= {"synthesis_speed.py", "training_speed.py", "lits_cpu_preset.py"}


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda p: p.name)
def test_benchmark_prints_its_usage(script):
    result = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:")
