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
    "postprocess",
    "training",
    "lesions",
    "io",
]
PAGES = ["index", "quickstart", "concepts", "gallery", "lits", "integrations", "architecture", "benchmarks", "changelog"]
# One page per command of python -m examples.lits, as docs/lits.rst lists them.
LITS_COMMANDS = ["demo", "prepare", "train", "evaluate", "calibrate", "segment", "ablation", "lesions", "score"]
PAGES += [f"lits/{command}" for command in LITS_COMMANDS]
# docs/gallery.py writes small PNGs on purpose (a fixed palette); the repository should stay light.
GALLERY_BUDGET_BYTES = 400 * 1024
BUILD_TIMEOUT_S = 300
EXAMPLE_TIMEOUT_S = 300


def _require_docs_extra() -> None:
    missing = [m for m in ("sphinx", "furo", "sphinx_autodoc_typehints", "myst_parser", "latex2mathml") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"the docs extra is not installed (missing {', '.join(missing)}): "
                    'pip install -c constraints.txt -e ".[docs]"')


def _environment() -> dict[str, str]:
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONWARNINGS="ignore")
    # the scripts import pseudoanomaly from the source tree even where the package is not installed
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site, built once for this module's tests by the documented command."""
    _require_docs_extra()
    out = tmp_path_factory.mktemp("docs") / "html"
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-b", "html", "docs", str(out)],
        cwd=ROOT, env=_environment(), capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
    )
    assert result.returncode == 0, f"sphinx -W failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return out


def test_docs_build_without_warnings(site):
    out = site
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


def test_every_lits_command_has_a_page():
    try:
        from examples.lits.__main__ import COMMANDS
    except ImportError as error:  # the example needs the lits extra
        pytest.skip(f"examples.lits does not import ({error}): pip install -c constraints.txt -e \".[lits]\"")
    assert list(COMMANDS) == LITS_COMMANDS, "a command of examples.lits has no page in docs/lits/ (or the reverse)"
    listed = re.findall(r"^   lits/(\S+)$", (DOCS / "lits.rst").read_text(), flags=re.MULTILINE)
    assert listed == LITS_COMMANDS, "docs/lits.rst's toctree does not list the command pages in the CLI's order"
    for command in LITS_COMMANDS:
        page = (DOCS / "lits" / f"{command}.rst").read_text()
        assert f"python -m examples.lits {command}" in page, f"docs/lits/{command}.rst shows no {command} command"
        for section in ("What it does", "Main options", "What it writes"):
            assert f"\n{section}\n" in page, f"docs/lits/{command}.rst has no section {section!r}"


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


# What makes a browser fetch something when it shows a page: a script, a stylesheet or icon (<link href>), an image,
# a frame, media, a CSS @import or url(). Plain links (<a href>) are not loads, and neither is an XML namespace.
_LOADS = [
    re.compile(r"<(?:script|img|iframe|source|audio|video|embed|input)\b[^>]*?\bsrc\s*=\s*[\"']?([^\"'\s>]+)", re.I),
    re.compile(r"<(?:link)\b[^>]*?\bhref\s*=\s*[\"']?([^\"'\s>]+)", re.I),
    re.compile(r"<(?:img|source)\b[^>]*?\bsrcset\s*=\s*[\"']?([^\"'\s>]+)", re.I),
    re.compile(r"<object\b[^>]*?\bdata\s*=\s*[\"']?([^\"'\s>]+)", re.I),
    re.compile(r"@import\s+(?:url\(\s*)?[\"']?([^\"')\s;]+)", re.I),
    re.compile(r"url\(\s*[\"']?([^\"')\s]+)", re.I),
]
_REMOTE = re.compile(r"^(?:https?:)?//", re.I)


def remote_loads(text: str) -> list[str]:
    """The URLs on the network that a page or stylesheet makes a browser fetch."""
    return sorted({m.group(1) for pattern in _LOADS for m in pattern.finditer(text) if _REMOTE.match(m.group(1))})


def test_remote_loads_are_recognized():
    """The scanner of the next test finds what a CDN setup writes, and not links or namespaces."""
    page = ('<script defer="defer" src="https://cdn.example.org/mathjax/tex-mml-chtml.js"></script>'
            "<link rel='stylesheet' href=//fonts.example.org/css>"
            '<style>@import "https://example.org/a.css"; .x { background: url(http://example.org/b.png) }</style>'
            '<img alt="" src="_static/local.png"><a href="https://github.com/x">source</a>'
            '<math xmlns="http://www.w3.org/1998/Math/MathML"></math><script src="_static/furo.js"></script>')
    assert remote_loads(page) == ["//fonts.example.org/css", "http://example.org/b.png",
                                  "https://cdn.example.org/mathjax/tex-mml-chtml.js", "https://example.org/a.css"]


def test_docs_load_nothing_from_the_network(site):
    """Every page shows fully offline: nothing a page or stylesheet loads (scripts, styles, images, fonts) comes
    from a remote host. A CDN (MathJax's, a web font's) would leave raw LaTeX or missing styles offline."""
    found = []
    for path in sorted(site.rglob("*")):
        if path.suffix in {".html", ".css"} and path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            found += [f"{path.relative_to(site)}: {url}" for url in remote_loads(text)]
    assert not found, "pages load from the network:\n" + "\n".join(found)


def test_math_and_results_are_rendered(site):
    """Math is MathML in the page (no LaTeX left for a script to typeset), and RESULTS.md's tables are tables."""
    for page in ("concepts.html", "api/models.html", "api/losses.html"):
        text = (site / page).read_text(encoding="utf-8")
        assert "<math" in text, f"{page} has no MathML"
        assert "\\(" not in text and "\\[" not in text, f"{page} still holds LaTeX delimiters for a script"
    assert '<math xmlns="http://www.w3.org/1998/Math/MathML" display="block">' in (site / "concepts.html").read_text()
    results = (site / "benchmarks.html").read_text(encoding="utf-8")
    # a Markdown table's delimiter row, e.g. "| --- | :---: |"
    tables = len(re.findall(r"^\|\s*:?-{3,}:?\s*\|", (ROOT / "benchmarks" / "RESULTS.md").read_text(), re.MULTILINE))
    assert tables and results.count("<table") == tables, "benchmarks.html does not show RESULTS.md's tables"
