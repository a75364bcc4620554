"""Formulas as MathML, written into the pages when the site is built.

Sphinx's default (MathJax) loads a script from a CDN when a page opens: offline, or behind a firewall, the reader
sees raw LaTeX. MathML is rendered by the browser itself (Chromium 109+, Firefox, Safari), so a page shows its
formulas with no script and no network. A formula latex2mathml cannot read fails the build.
"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from latex2mathml.converter import convert
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError


def _mathml(latex: str, display: str) -> str:
    try:
        return convert(latex.strip(), display=display)
    except Exception as error:  # latex2mathml raises its own types, and some plain ones, for what it cannot read
        raise ExtensionError(f"cannot turn this formula into MathML: {latex!r} ({error})") from error


def visit_inline(translator: Any, node: nodes.Element) -> None:
    translator.body.append(_mathml(node.astext(), "inline"))
    raise nodes.SkipNode


def visit_block(translator: Any, node: nodes.Element) -> None:
    translator.body.append(translator.starttag(node, "div", CLASS="math-display"))
    translator.body.append(_mathml(node.astext(), "block"))
    translator.body.append("</div>\n")
    raise nodes.SkipNode


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_html_math_renderer("mathml", (visit_inline, None), (visit_block, None))
    return {"parallel_read_safe": True, "parallel_write_safe": True}
