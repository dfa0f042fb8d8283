"""Render math as MathML at build time, so that it shows without a script and without the network.

Sphinx's default renderer (``sphinx.ext.mathjax``) writes the LaTeX into the page and loads MathJax from a CDN;
offline a reader sees ``\\((B, C, H, W)\\)``. Here every ``:math:`` role and ``.. math::`` directive is converted
by ``latex2mathml`` (a maintained, pure-Python converter) into MathML, which browsers draw natively (MathML Core:
Firefox, Safari, and Chromium since version 109). The page then loads nothing for its math.

A formula that ``latex2mathml`` cannot convert is a build warning naming the formula and its place (an error
under ``-W``), and the page shows its LaTeX source as code instead.
"""

from __future__ import annotations

from docutils import nodes
from latex2mathml.converter import convert
from sphinx.locale import _
from sphinx.util import logging
from sphinx.util.math import get_node_equation_number

logger = logging.getLogger(__name__)


def _to_mathml(translator, node: nodes.Element, latex: str, display: str) -> str:
    try:
        return convert(latex, display=display)
    except Exception as error:  # latex2mathml raises its own errors and plain ones for malformed input
        logger.warning("cannot render the math %r as MathML: %s", latex, error, location=node)
        return f'<code class="math-source">{translator.encode(latex)}</code>'


def visit_math(translator, node: nodes.math) -> None:
    translator.body.append(translator.starttag(node, "span", "", CLASS="math notranslate"))
    translator.body.append(_to_mathml(translator, node, node.astext(), "inline"))
    translator.body.append("</span>")
    raise nodes.SkipNode


def visit_math_block(translator, node: nodes.math_block) -> None:
    translator.body.append(translator.starttag(node, "div", CLASS="math notranslate"))
    if node["number"]:
        translator.body.append(f'<span class="eqno">({get_node_equation_number(translator, node)})')
        translator.add_permalink_ref(node, _("Link to this equation"))
        translator.body.append("</span>")
    # As in LaTeX's math directive, equations separated by a blank line are shown one below the other.
    for part in (part for part in node.astext().split("\n\n") if part.strip()):
        translator.body.append(_to_mathml(translator, node, part, "block"))
    translator.body.append("</div>\n")
    raise nodes.SkipNode


def setup(app):
    app.add_html_math_renderer("mathml", (visit_math, None), (visit_math_block, None))
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
