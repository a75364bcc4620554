"""The package's floor plan holds: each folder imports only the folders below it, the core never imports the
command line, the tools or the demo, and the version is written once.

The floors, bottom to top, follow the data: losses are pure maths; rows become tokenized rows (``data``); a run's
settings (``config``); models; the batch of one step (``batch``); its log-probs (``logprobs``); the reference;
what watches and what publishes a run; the trainer; then the demo, the tools and the command line, which the core
never needs. Imports are read with `ast`, so an import inside a function counts too.
"""

import ast
import importlib
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

import hf_dpo

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "hf_dpo"
FLOORS = (
    "losses",
    "data",
    "config",
    "models",
    "batch",
    "logprobs",
    "reference",
    "monitor",
    "publish",
    "trainer",
    "demo",
    "tools",
    "cli",
)
OUTSIDE_THE_CORE = ("demo", "tools", "cli")
MODULES = sorted(path for path in PACKAGE.rglob("*.py") if path.parent != PACKAGE)


def imported_modules(path: Path) -> list[str]:
    """Every module ``path`` imports, absolute names (``from hf_dpo import demo`` gives ``hf_dpo.demo``), plus
    names given to ``importlib.import_module``/``__import__`` as literal strings."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{path}: a relative import; hf_dpo spells its imports out"
            names += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) in (
            "import_module",
            "__import__",
        ):
            names += [
                arg.value for arg in node.args[:1] if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
            ]
    return names


def folder_of(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0]


def folders_imported(path: Path) -> set[str]:
    """The hf_dpo folders ``path`` imports from (``hf_dpo.batch.padded`` -> ``batch``)."""
    folders = set()
    for name in imported_modules(path):
        parts = name.split(".")
        if parts[0] == "hf_dpo" and len(parts) > 1 and parts[1] in FLOORS:
            folders.add(parts[1])
    return folders


def test_every_folder_has_a_floor():
    folders = {path.name for path in PACKAGE.iterdir() if path.is_dir() and (path / "__init__.py").exists()}
    assert folders == set(FLOORS)


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_modules_import_only_their_own_floor_and_the_floors_below(path):
    floor = FLOORS.index(folder_of(path))
    above = sorted(folder for folder in folders_imported(path) if FLOORS.index(folder) > floor)
    assert not above, f"{path.relative_to(PACKAGE)} imports {above}, above its floor {folder_of(path)!r}"


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_the_core_never_imports_the_demo_the_tools_or_the_cli(path):
    if folder_of(path) in OUTSIDE_THE_CORE:
        return
    offending = folders_imported(path) & set(OUTSIDE_THE_CORE)
    assert not offending, f"{path.relative_to(PACKAGE)} imports {sorted(offending)}; the core works without them"


def test_the_command_line_imports_the_demo_only_inside_functions():
    for path in (PACKAGE / "cli").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top_level = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
        names = [alias.name for node in top_level for alias in node.names] + [
            node.module for node in top_level if isinstance(node, ast.ImportFrom) and node.module
        ]
        assert not [name for name in names if name.startswith("hf_dpo.demo")], path.name


def test_the_import_reader_sees_every_spelling(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import hf_dpo.demo.tasks\nfrom hf_dpo import cli\ndef f():\n    from hf_dpo.demo import summary\n"
        "    importlib.import_module('hf_dpo.demo.make_data')\n"
    )
    names = imported_modules(probe)
    assert {"hf_dpo.demo.tasks", "hf_dpo.cli", "hf_dpo.demo.summary", "hf_dpo.demo.make_data"} <= set(names)


def test_the_top_level_package_imports_its_public_names_lazily():
    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    top_level = [node for node in tree.body if isinstance(node, ast.ImportFrom) and node.module]
    assert not [node.module for node in top_level if node.module.startswith("hf_dpo")]


def test_the_version_is_written_once_in_the_package():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in project["project"] and project["project"]["dynamic"] == ["version"]
    assert project["tool"]["hatch"]["version"]["path"] == "hf_dpo/__init__.py"
    assert re.fullmatch(r"\d+\.\d+\.\d+", hf_dpo.__version__)
    # the installed metadata was read from __init__.py at install time (reinstall after a version bump)
    assert importlib.metadata.version("hf_dpo") == hf_dpo.__version__


def test_the_command_imports_no_torch_until_a_run_needs_it():
    """``hf-dpo plot``, ``--help`` and one-line errors need no torch; bitsandbytes stays held back until a run
    quantizes (the package surfaces import on first use, see hf_dpo/_lazy.py)."""
    code = "import sys, hf_dpo, hf_dpo.cli; print(sorted({'torch', 'transformers', 'peft', 'datasets'} & set(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


@pytest.mark.parametrize("folder", [f for f in FLOORS if f not in OUTSIDE_THE_CORE])
def test_every_public_name_of_a_folder_resolves_and_none_is_also_a_module(folder):
    package = importlib.import_module(f"hf_dpo.{folder}")
    modules = {path.stem for path in (PACKAGE / folder).glob("*.py")} | {
        path.name for path in (PACKAGE / folder).iterdir() if path.is_dir()
    }
    assert not set(package.__all__) & modules  # importing the module would hide the name
    for name in package.__all__:
        assert getattr(package, name) is not None, name
