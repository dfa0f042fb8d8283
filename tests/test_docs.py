"""The documentation builds, offline, with warnings as errors, and the code it shows runs.

The build is exactly the documented command, ``python -m sphinx -W -b html docs OUT``, into a temporary
folder (about 15 s on 2 CPU cores). It needs the ``docs`` extra; without it these tests skip and say so.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
# One page per public module, as docs/api/index.rst lists them.
API_PAGES = [
    "pseudoanomaly",
    "noise",
    "noise3d",
    "masks",
    "masks.functional",
    "overlays",
    "presets",
    "integrations",
    "models",
    "losses",
    "metrics",
    "training",
    "lesions",
    "io",
]
PAGES = ["index", "quickstart", "concepts", "gallery", "lits", "integrations", "architecture", "benchmarks", "changelog"]
# docs/gallery.py writes small PNGs on purpose (a fixed palette); the repository should stay light.
GALLERY_BUDGET_BYTES = 400 * 1024
BUILD_TIMEOUT_S = 300
EXAMPLE_TIMEOUT_S = 300


def _require_docs_extra() -> None:
    missing = [m for m in ("sphinx", "furo", "sphinx_autodoc_typehints") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"the docs extra is not installed (missing {', '.join(missing)}): "
                    'pip install -c constraints.txt -e ".[docs]"')


def _environment() -> dict[str, str]:
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONWARNINGS="ignore")
    # the scripts import pseudoanomaly from the source tree even where the package is not installed
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def test_docs_build_without_warnings(tmp_path):
    _require_docs_extra()
    out = tmp_path / "html"
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-b", "html", "docs", str(out)],
        cwd=ROOT, env=_environment(), capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
    )
    assert result.returncode == 0, f"sphinx -W failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    assert (out / "index.html").is_file()
    for page in PAGES:
        assert (out / f"{page}.html").is_file(), f"page {page}.html was not built"
    for page in API_PAGES:
        html = out / "api" / f"{page}.html"
        assert html.is_file(), f"API page {html.name} was not built"
        text = html.read_text(encoding="utf-8")
        assert "Example" in text, f"{html.name} shows no example"
        # every public name of the module is documented on its page, under the name users import
        module_name = "pseudoanomaly" if page == "pseudoanomaly" else f"pseudoanomaly.{page}"
        module = importlib.import_module(module_name)
        missing = [name for name in module.__all__ if not inspect.ismodule(getattr(module, name))
                   and f'id="{module_name}.{name}"' not in text]
        assert not missing, f"{html.name} does not document {missing}"
    # the gallery's pictures made it into the site
    assert len(list((out / "_static" / "gallery").glob("*.png"))) >= 7


def test_every_public_module_has_an_api_page():
    listed = re.findall(r"^   (\S+)$", (DOCS / "api" / "index.rst").read_text(), flags=re.MULTILINE)
    assert listed == API_PAGES
    for page in API_PAGES:
        assert (DOCS / "api" / f"{page}.rst").is_file()


def test_gallery_pictures_are_committed_and_small():
    text = (DOCS / "gallery.rst").read_text() + (DOCS / "index.rst").read_text() + (DOCS / "quickstart.rst").read_text()
    referenced = set(re.findall(r"_static/gallery/([\w.]+\.png)", text))
    pictures = {p.name: p for p in (DOCS / "_static" / "gallery").glob("*.png")}
    assert referenced, "no gallery picture is referenced by the docs"
    assert referenced <= set(pictures), f"missing pictures (run python docs/gallery.py): {referenced - set(pictures)}"
    total = sum(p.stat().st_size for p in pictures.values())
    assert total <= GALLERY_BUDGET_BYTES, f"gallery pictures weigh {total / 1024:.0f} KB, over the budget"
    stats = (DOCS / "gallery_stats.rst").read_text()
    for marker in ("blurred_noise", "perlin", "blob", "intensity", "texture", "patch", "source"):
        assert f".. {marker}-start" in stats and f".. {marker}-end" in stats, f"gallery_stats.rst lacks {marker}"


@pytest.mark.parametrize("script", sorted(p.name for p in (DOCS / "examples").glob("*.py")))
def test_docs_example_runs(script, tmp_path):
    """The scripts the quickstart shows (literalinclude) run as shown."""
    result = subprocess.run(
        [sys.executable, str(DOCS / "examples" / script)],
        cwd=tmp_path, env=_environment(), capture_output=True, text=True, timeout=EXAMPLE_TIMEOUT_S,
    )
    assert result.returncode == 0, f"docs/examples/{script} failed:\n{result.stderr[-4000:]}"
