"""The benchmark scripts stay runnable: each parses its options and prints its usage.

They are run by hand and their figures go to ``benchmarks/RESULTS.md``; this only guards against an import or
argument-parser broken by a change elsewhere (the figures themselves are never timed in tests). The scripts
with a ``--quick`` mode also run end to end at tiny sizes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# scripts, not the helpers they share (benchmarks/_*.py)
BENCHMARKS = sorted(p for p in (Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py")
                    if not p.name.startswith("_"))


def test_there_are_benchmarks():
    assert {p.name for p in BENCHMARKS} >= {"synthesis_speed.py", "training_speed.py", "lits_cpu_preset.py"}


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda p: p.name)
def test_benchmark_prints_its_usage(script):
    result = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:")


REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script, marker", [
    ("scaling.py", "| base | 32 x 32 | 2 | 2 |"),
    ("prepare_memory.py", "| int16 | cpu |"),
    ("cpu_preset_step.py", "| channels-last + bf16 | retained |"),
], ids=["scaling", "prepare_memory", "cpu_preset_step"])
def test_scaling_benchmarks_print_their_tables(script, marker):
    """Issue 14's benchmarks run end to end at tiny sizes (``--quick``) and print their Markdown tables."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--quick"], capture_output=True,
                            text=True, timeout=300, cwd=REPO, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert marker in result.stdout, result.stdout
    assert any(line.startswith("| --- |") for line in lines)
    if script == "scaling.py":
        assert any(line.startswith("| 16 | ") for line in lines), result.stdout  # the cohort table
