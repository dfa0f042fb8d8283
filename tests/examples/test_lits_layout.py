"""The shape of examples/lits: a base of shared modules, commands on one floor above it, demo composing them."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "examples" / "lits"
COMMANDS = {"prepare", "train", "calibrate", "evaluate", "segment", "lesions", "ablation", "score"}
COMPOSERS = {"demo"}  # runs the commands one after another, as a user would
BASE = {"arguments", "locking", "cases", "dicom", "preprocess", "volumes", "dataset", "settings", "runs", "scoring", "report",
        "phantom", "calibration", "lesion_output"}


def _local_imports(module: str) -> set[str]:
    """The sibling modules ``module`` imports (``from .x import``, ``from . import x``)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module} if node.module else {alias.name for alias in node.names}
    return found


def test_every_module_is_placed_on_a_floor():
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    assert modules == BASE | COMMANDS | COMPOSERS


def test_no_command_imports_another_and_the_base_imports_no_command():
    for module in BASE | COMMANDS:
        assert _local_imports(module) <= BASE, (module, _local_imports(module) - BASE)


def test_the_demo_composes_commands_and_base_only():
    for module in COMPOSERS:
        assert _local_imports(module) <= BASE | COMMANDS


def test_the_example_uses_only_public_names_of_pseudoanomaly():
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pseudoanomaly"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                private += [part for part in node.module.split(".") if part.startswith("_")]
                assert not private, (path.name, node.module, private)
