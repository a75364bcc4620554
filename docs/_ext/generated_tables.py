"""Tables the site reads from the code, so nothing is written twice.

- ``argument-table``: one row per field of a dataclass of arguments (``DPOTrainingArguments``, the command's
  model/data/run arguments): name, type, default, and the ``help`` of its ``field(metadata=...)``, the one place
  each field is documented (``hf-dpo train --help`` prints the same text). ``:own:`` keeps the fields the class
  itself declares (for ``DPOTrainingArguments``: its own, and the ``TrainingArguments`` defaults it changes).
- ``loss-registry``: one row per registered loss: whether it reads reference log-probs, the settings it reads (its
  keyword-only parameters, which the registry passes by name), the rewards it reports and its function.

In a Markdown page::

    ```{argument-table} hf_dpo.config.training_arguments.DPOTrainingArguments
    :own:
    ```
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective


def import_object(path: str) -> Any:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def inline(text: str) -> list[nodes.Node]:
    """Help text as nodes: `backticked` spans become code, the rest stays text (help strings use no other markup)."""
    parts = text.split("`")
    if len(parts) % 2 == 0:  # an odd number of backticks: show the text as it is rather than guess
        return [nodes.Text(text)]
    return [nodes.literal(part, part) if i % 2 else nodes.Text(part) for i, part in enumerate(parts) if part]


def table(headers: list[str], rows: list[list[list[nodes.Node]]], widths: list[int]) -> nodes.table:
    group = nodes.tgroup(cols=len(headers))
    for width in widths:
        group += nodes.colspec(colwidth=width)
    head = nodes.thead()
    head += nodes.row("", *[nodes.entry("", nodes.paragraph("", title)) for title in headers])
    body = nodes.tbody()
    for cells in rows:
        body += nodes.row("", *[nodes.entry("", nodes.paragraph("", "", *cell)) for cell in cells])
    group += head
    group += body
    return nodes.table("", group)


def default_text(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        return repr(field.default)
    if field.default_factory is not dataclasses.MISSING:
        return repr(field.default_factory())
    return "(required)"


class ArgumentTable(SphinxDirective):
    required_arguments = 1
    option_spec: ClassVar = {"own": directives.flag}

    def run(self) -> list[nodes.Node]:
        cls = import_object(self.arguments[0])
        # a field with init=False is set by the code, not by a user: it has no row
        fields = [field for field in dataclasses.fields(cls) if field.init]
        if "own" in self.options:
            declared = vars(cls).get("__annotations__", {})
            fields = [field for field in fields if field.name in declared]
        rows = []
        for field in fields:
            help_text = field.metadata.get("help")
            if not help_text:
                raise self.error(f"{cls.__name__}.{field.name} has no help metadata: document it where it is declared")
            rows.append(
                [
                    [nodes.literal(field.name, field.name)],
                    [nodes.literal(str(field.type), str(field.type))],
                    [nodes.literal(default_text(field), default_text(field))],
                    inline(help_text),
                ]
            )
        return [table(["argument", "type", "default", "meaning"], rows, [18, 14, 12, 56])]


def function_link(fn: Any) -> nodes.Node:
    """A link to ``fn``'s entry in the API reference (a missing entry fails the build)."""
    name = fn.__name__
    return nodes.inline(
        "",
        "",
        *[
            addnodes.pending_xref(
                "",
                nodes.literal(name, name),
                refdomain="py",
                reftype="func",
                reftarget=f"{fn.__module__}.{name}",
                refexplicit=True,
            )
        ],
    )


def list_loss_row(name: str, lists: Any) -> list[list[nodes.Node]]:
    """A loss on lists of answers: the settings its function reads (``all_pairs``: a paired loss on every ordered pair
    of a list, named by ``list_pair_loss_type``), the rewards it compares and its function."""
    fn = lists.LIST_LOSSES.get(name)
    if fn is None:
        reads = [nodes.literal("list_pair_loss_type", "list_pair_loss_type"), nodes.Text(" and that loss's settings")]
        fn = lists.pairwise_loss
    else:
        parameters = [p.name for p in inspect.signature(fn).parameters.values() if p.kind is p.KEYWORD_ONLY]
        reads = [part for parameter in parameters for part in (nodes.literal(parameter, parameter), nodes.Text(", "))]
        reads = reads[:-1]
    return [
        [nodes.literal(name, name), nodes.Text(" (lists)")],
        [nodes.Text("yes")],
        reads,
        [function_link(lists.list_rewards)],
        [function_link(fn)],
    ]


class LossRegistryTable(SphinxDirective):
    def run(self) -> list[nodes.Node]:
        from hf_dpo.losses import lists, registry, unpaired

        rows = []
        for name in registry.registered_loss_types():
            if name in registry.LIST_LOSS_TYPES:  # losses on lists of answers have their own registry
                rows.append(list_loss_row(name, lists))
                continue
            if name in registry.UNPAIRED_LOSS_TYPES:  # KTO's losses live outside the registry of pair losses
                reads = [nodes.Text("unpaired rows; "), nodes.literal("beta", "beta"), nodes.Text(", the two weights")]
                rows.append([[nodes.literal(name, name)], [nodes.Text("yes")], reads, [nodes.Text("KTO's")]])
                rows[-1].append([function_link(unpaired.kto_loss)])
                continue
            spec = registry.spec(name)
            reads = [
                part
                for parameter in spec.parameters
                for part in (nodes.literal(parameter, parameter), nodes.Text(", "))
            ]
            rows.append(
                [
                    [nodes.literal(name, name)],
                    [nodes.Text("yes" if spec.needs_reference else "no")],
                    reads[:-1] or [nodes.Text("-")],
                    [function_link(spec.rewards)],
                    [function_link(spec.fn)],
                ]
            )
        headers = ["loss_type", "reference", "reads", "rewards", "function"]
        return [table(headers, rows, [14, 8, 30, 20, 20])]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("argument-table", ArgumentTable)
    app.add_directive("loss-registry", LossRegistryTable)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
