"""The library's floors (docs/architecture.rst): every module imports only the floors below it.

Masks and overlays know nothing of models or training, models nothing of trainers, and nothing in the library
imports ``examples``. A new module gets a line here, which is where its place is decided.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "pseudoanomaly"

# top-level module or subpackage -> what it may import from the package
ALLOWED = {
    "_checks": set(),
    "_random": set(),
    "_filters": set(),
    "io": set(),
    "noise": {"_checks", "_filters"},
    "noise3d": {"_checks", "_filters"},
    "losses": {"_checks"},
    "metrics": {"_checks"},
    "postprocess": set(),
    "models": {"_checks"},
    "lesions": {"_checks", "_random"},
    "masks": {"_checks", "_random", "noise", "noise3d"},
    "overlays": {"_checks", "_random", "noise", "noise3d"},
    "synthesis": {"_checks", "_random", "masks", "overlays"},
    "presets": {"masks", "overlays", "synthesis"},
    "integrations": {"_checks", "presets", "synthesis"},
    "augmentation": {"integrations"},  # the deprecated path of integrations.kornia
    "training": {"_checks", "io", "losses", "metrics", "models", "presets"},
}


def _part(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> set[str]:
    """Top-level parts of the package that ``path`` imports (relative or absolute)."""
    package = list(path.relative_to(PACKAGE.parent).parent.parts)
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1]
            names = [*base, *(node.module.split(".") if node.module else [])]
            targets = [names] if node.module or len(names) > 1 else [[*names, a.name] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            targets = [node.module.split(".")]
        elif isinstance(node, ast.Import):
            targets = [a.name.split(".") for a in node.names]
        else:
            continue
        for t in targets:
            if t[0] == "examples":
                found.add("examples")
            elif t[0] == "pseudoanomaly" and len(t) > 1:
                found.add(t[1])
    return found


def test_every_module_has_a_floor():
    parts = {_part(p) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE}
    assert parts <= set(ALLOWED), parts - set(ALLOWED)


def test_every_module_imports_only_the_floors_below_it():
    for path in PACKAGE.rglob("*.py"):
        if path.parent == PACKAGE and path.name == "__init__.py":
            continue  # the package's front door re-exports
        part = _part(path)
        extra = _imports(path) - ALLOWED[part] - {part}
        assert not extra, f"{path.relative_to(PACKAGE)} imports {sorted(extra)}"


def test_the_floors_have_no_cycle():
    done: set[str] = set()

    def visit(part: str, stack: tuple[str, ...]) -> None:
        assert part not in stack, stack + (part,)
        if part not in done:
            for below in ALLOWED[part]:
                visit(below, stack + (part,))
            done.add(part)

    for part in ALLOWED:
        visit(part, ())
