"""``command-help``: the ``--help`` text of an ``hf-dpo`` sub-command, printed by the command itself when the site is
built, so the page lists exactly the flags the installed command takes.

In a Markdown page::

    ```{command-help} eval
    ```
"""

from __future__ import annotations

import contextlib
import io
import os
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

HELP_WIDTH = "100"  # argparse wraps to $COLUMNS: a fixed width keeps the page the same on every machine


def command_help(command: list[str]) -> str:
    """What ``hf-dpo COMMAND --help`` prints (argparse exits after printing it)."""
    from hf_dpo.cli import main

    printed = io.StringIO()
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_WIDTH
    try:
        with contextlib.redirect_stdout(printed), contextlib.suppress(SystemExit):
            main([*command, "--help"])
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    return printed.getvalue().rstrip()


class CommandHelp(SphinxDirective):
    optional_arguments = 1  # the sub-command; none: hf-dpo's own help

    def run(self) -> list[nodes.Node]:
        command = self.arguments[:1]
        text = command_help(command)
        if not text:
            raise self.error(f"hf-dpo {' '.join(command)} --help printed nothing")
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("command-help", CommandHelp)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
