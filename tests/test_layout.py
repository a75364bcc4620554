"""The package's layout holds: the core never imports the demo or the command line, and the version is written once.

Core modules are every module in hf_dpo/ except cli.py and the demo/ folder. Their imports are read with `ast`, so
an import inside a function counts too.
"""

import ast
import importlib.metadata
import re
from pathlib import Path

import pytest

import hf_dpo

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "hf_dpo"
CORE = sorted(path for path in PACKAGE.glob("*.py") if path.name != "cli.py")


def imported_modules(path: Path) -> list[str]:
    """Every module ``path`` imports, absolute names (``from hf_dpo import demo`` gives ``hf_dpo.demo``), plus
    names given to ``importlib.import_module``/``__import__`` as literal strings."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: resolve against the hf_dpo package
                module = ".".join(["hf_dpo", *path.relative_to(PACKAGE).parent.parts, module]).rstrip(".")
            names += [module, *(f"{module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) in (
            "import_module",
            "__import__",
        ):
            names += [
                arg.value for arg in node.args[:1] if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
            ]
    return names


def _names_module(name: str, module: str) -> bool:
    return name == module or name.startswith(module + ".")


def test_the_core_is_every_module_but_the_cli_and_the_demo():
    assert {path.name for path in CORE} >= {"trainer.py", "loading.py", "model_card.py", "__init__.py"}
    assert (PACKAGE / "demo" / "tasks.py").is_file() and not (PACKAGE / "tasks.py").exists()


@pytest.mark.parametrize("path", CORE, ids=lambda path: path.name)
def test_core_modules_never_import_the_demo_or_the_cli(path):
    offending = [
        name
        for name in imported_modules(path)
        if _names_module(name, "hf_dpo.demo") or _names_module(name, "hf_dpo.cli")
    ]
    assert not offending, f"{path.name} imports {offending}; the core must work without the demo and the CLI"


def test_the_cli_imports_the_demo_only_inside_functions():
    tree = ast.parse((PACKAGE / "cli.py").read_text(encoding="utf-8"))
    top_level = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    names = [alias.name for node in top_level for alias in node.names] + [
        node.module for node in top_level if isinstance(node, ast.ImportFrom) and node.module
    ]
    assert not [name for name in names if _names_module(name, "hf_dpo.demo") or name == "demo"]
    assert any(_names_module(name, "hf_dpo.demo") for name in imported_modules(PACKAGE / "cli.py"))


def test_the_import_reader_sees_every_spelling(tmp_path):
    module = tmp_path / "spellings.py"
    module.write_text(
        "import hf_dpo.demo.tasks\nfrom hf_dpo import cli\ndef f():\n    from hf_dpo.demo import summary\n"
        "    importlib.import_module('hf_dpo.demo.make_data')\n"
    )
    names = imported_modules(module)
    assert {"hf_dpo.demo.tasks", "hf_dpo.cli", "hf_dpo.demo.summary", "hf_dpo.demo.make_data"} <= set(names)


def test_the_version_is_written_once_in_the_package():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in project["project"] and project["project"]["dynamic"] == ["version"]
    assert project["tool"]["hatch"]["version"]["path"] == "hf_dpo/__init__.py"
    assert re.fullmatch(r"\d+\.\d+\.\d+", hf_dpo.__version__)
    # the installed metadata was read from __init__.py at install time (reinstall after a version bump)
    assert importlib.metadata.version("hf_dpo") == hf_dpo.__version__
