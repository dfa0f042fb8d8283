"""Sphinx configuration: autodoc + napoleon + typehints, furo theme, fully offline.

Build (warnings are errors):  python -m sphinx -W -b html docs docs/_build/html
The gallery pictures and their statistics are committed; regenerate them with  python docs/gallery.py
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# A fresh clone without an installed package still documents the source tree.
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent / "_ext"))  # this site's own extensions

import pseudoanomaly  # noqa: E402

# sphinx-autodoc-typehints 3.x calls an API Sphinx 9 deprecates (a Python warning, not a Sphinx one): keep the
# build log readable.
warnings.filterwarnings("ignore", message=".*set_application.*is deprecated", module="sphinx_autodoc_typehints")

project = "pseudoanomaly"
author = "pseudoanomaly developers"
copyright = "2025, pseudoanomaly developers"
release = pseudoanomaly.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx_autodoc_typehints",  # must come after napoleon
    "sphinx.ext.viewcode",
    "mathml",  # docs/_ext/mathml.py
    "myst_parser",  # benchmarks/RESULTS.md, Markdown, is shown as a page with real tables
]
# No intersphinx: the build must work offline, and -W would fail on a network error.

# -- math: MathML written at build time, no script, nothing from the network -----------------------------------
# sphinx.ext.mathjax loads MathJax from a CDN: offline, a reader sees raw "\((B, C, H, W)\)". The choices were:
# * a bundled MathJax served from _static: the one pip package for it (sphinx-mathjax-offline, 0.0.2) has not
#   been released since 2022, and MathJax itself is megabytes of script to ship;
# * sphinx.ext.imgmath: needs LaTeX and dvipng on every machine that builds the docs, and writes images (neither
#   selectable nor searchable) for ~170 small formulas;
# * a hand-written LaTeX-to-HTML converter: the docstrings' math is mostly shapes, but also \sqrt, \alpha,
#   \mathrm, sub- and superscripts and one display equation; a converter of our own would be the part to break.
# So the formulas are converted to MathML by latex2mathml (maintained, pure Python, MIT) when the site is built
# (docs/_ext/mathml.py); browsers draw MathML without a script (Firefox, Safari, Chromium since 109; checked in
# a headless Chromium on the API pages' shapes and Eq. 1 of concepts). tests/test_docs.py fails if a page loads
# anything from the network.
html_math_renderer = "mathml"

exclude_patterns = ["_build", "gallery_stats.rst", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []
html_static_path = ["_static"]
html_theme = "furo"
html_title = f"pseudoanomaly {release}"
pygments_style = "sphinx"
pygments_dark_style = "monokai"

# -- autodoc ---------------------------------------------------------------------------------------------------
autodoc_default_options = {"members": True, "show-inheritance": True, "member-order": "bysource"}
autodoc_class_signature = "mixed"
autodoc_inherit_docstrings = True
add_module_names = False
python_use_unqualified_type_names = True
# Every public name is documented once, under the module users import it from; the canonical location of a
# re-exported class (e.g. pseudoanomaly.masks.blob.BlobMask) is recorded by autodoc so references to it resolve.

# The adapters' libraries are optional extras: where one is absent, its module is documented against a mock.
autodoc_mock_imports = [name for name in ("monai", "torchio") if importlib.util.find_spec(name) is None]

# -- napoleon (Google style, as the docstrings are written) ----------------------------------------------------
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_custom_sections = ["Shape"]  # the Kornia-style "Shape:" section of every tensor API

# -- sphinx-autodoc-typehints ----------------------------------------------------------------------------------
typehints_fully_qualified = False
always_document_param_types = False
typehints_document_rtype = True
typehints_defaults = None

# Methods of the generator/overlay/trainer protocol are documented on the base classes only; subclasses
# implement them but a user never calls them directly.
_PROTOCOL_METHODS = {"draw": "MaskGenerator Overlay", "render": "MaskGenerator", "fill": "Overlay",
                     "generate": "MaskGenerator", "paint": "Overlay", "build_phases": "Trainer"}


def _skip_member(app, what, name, obj, skip, options):
    if name == "extra_repr":
        return True
    owner = getattr(obj, "__qualname__", "").split(".")[0]
    if name in _PROTOCOL_METHODS and owner not in _PROTOCOL_METHODS[name].split():
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_member)
