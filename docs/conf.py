"""Sphinx configuration of the hf_dpo documentation site.

    pip install -e ".[docs]" && sphinx-build -W --keep-going docs site    # then open site/index.html

Why Sphinx (with MyST for Markdown pages and the Furo theme) rather than MkDocs: hf_dpo's docstrings are written
with reStructuredText roles (``:class:``, ``:func:``, ``:mod:``, a few hundred of them), which Sphinx's autodoc turns
into links and checks, where mkdocstrings would print them as text. The pages themselves stay Markdown. The formulas
are turned into MathML when the site is built (``_ext/mathml.py``), so pages show them without JavaScript or a
network. ``tests/test_docs.py`` builds the site with ``-W`` (a warning fails), checks every relative link of the
built pages, and runs every Python block of the pages.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(DOCS.parent))  # the hf_dpo of this checkout, installed or not

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # autodoc imports the package; nothing it imports may reach the Hub

import hf_dpo  # noqa: E402

project = "hf_dpo"
author = "The hf_dpo authors"
copyright = "the hf_dpo authors, Apache-2.0"
release = version = hf_dpo.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "mathml",  # _ext/mathml.py: formulas as MathML at build time
    "generated_tables",  # _ext/generated_tables.py: the argument and loss tables, read from the code
    "reference_checks",  # _ext/reference_checks.py: a docstring naming an hf_dpo object that does not exist fails
    "command_help",  # _ext/command_help.py: each hf-dpo sub-command's --help, printed by the command
]
html_math_renderer = "mathml"

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build"]

myst_enable_extensions = ["dollarmath", "colon_fence", "deflist"]
myst_heading_anchors = 3  # `[text](page.md#a-heading)` links work; a wrong anchor is a warning

# Docstrings: HF/Google style sections; a `single-backticked` name is code, as in Markdown and in the HF libraries.
default_role = "code"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True  # `beta: float = 0.1`, not the value's repr
autodoc_default_options = {"show-inheritance": False}
add_module_names = False
python_display_short_literal_types = True

# Every cross-reference must resolve (reference_checks.py decides what "resolves" means for other libraries' names).
nitpicky = True

html_theme = "furo"
html_title = f"hf_dpo {release}"
html_static_path = ["_static"]
html_css_files = ["hf_dpo.css"]
html_show_sourcelink = False
html_copy_source = False
html_theme_options = {"navigation_with_keys": True}
pygments_style = "friendly"
