"""What a cross-reference that finds no entry in the API reference means, decided instead of ignored.

With ``nitpicky = True`` Sphinx warns (and ``-W`` fails the build) for every reference it cannot link. The site
documents hf_dpo's public surface, not every helper, and it has no network to fetch other libraries' inventories,
so this handler sorts the references Sphinx could not link:

- a name of another library (``torch.Tensor``, ``transformers.Trainer``) or a builtin: shown as code, no link;
- an hf_dpo object that exists but has no page (a private helper a docstring points to): shown as code, no link;
- an hf_dpo name that does not exist (a docstring naming a function since renamed or removed): left to Sphinx, whose
  warning fails the build. A stale name in a docstring is a bug of the docs.
"""

from __future__ import annotations

import builtins
import importlib
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx

_MISSING = object()


def _find(path: str) -> Any:
    """The object ``a.b.c`` names, importing its longest importable module prefix; ``_MISSING`` if none."""
    parts = path.split(".")
    for split in range(len(parts), 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:]:
            found = getattr(found, name, _MISSING)
            if found is _MISSING:
                return _MISSING
        return found
    return _MISSING


def _exists_in_hf_dpo(target: str, module: str | None, cls: str | None) -> bool | None:
    """True/False where ``target`` names (or should name) an hf_dpo object; None for another library's name."""
    target = target.lstrip("~.")
    if target.startswith("hf_dpo.") or target == "hf_dpo":
        return _find(target) is not _MISSING
    first = target.split(".")[0]
    scopes = [f"{module}.{cls}" if module and cls else None, module]
    for scope in filter(None, scopes):
        home = _find(scope)
        if home is not _MISSING and hasattr(home, first):
            return _find(f"{scope}.{target}") is not _MISSING
    if module and module.startswith("hf_dpo") and "." not in target and not hasattr(builtins, target):
        # a bare name in an hf_dpo docstring that its module does not define: a sibling module's function, or a typo
        package = module.rsplit(".", 1)[0]
        return _find(f"{package}.{target}") is not _MISSING or _defined_below(package, target)
    return None


def _defined_below(package: str, name: str) -> bool:
    """Whether a module of ``package`` (one level down) defines ``name``: a docstring may name a sibling's function."""
    import pkgutil

    home = _find(package)
    for info in pkgutil.iter_modules(getattr(home, "__path__", [])):
        if hasattr(_find(f"{package}.{info.name}"), name):
            return True
    return False


def on_missing_reference(app: Sphinx, env: Any, node: Any, contnode: nodes.Node) -> nodes.Node | None:
    if node.get("refdomain") != "py":
        return None
    exists = _exists_in_hf_dpo(node["reftarget"], node.get("py:module"), node.get("py:class"))
    if exists is False:
        return None  # Sphinx's own warning names the file and the target
    return contnode  # code without a link


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("missing-reference", on_missing_reference)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
