"""README.md stays in step with the code: the DPO arguments table and the CI command."""

import dataclasses
import re
from pathlib import Path

from transformers import TrainingArguments

from hf_dpo import DPOTrainingArguments

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()


def test_every_dpo_argument_is_in_the_readme_table():
    base = {f.name for f in dataclasses.fields(TrainingArguments)}
    documented = set(re.findall(r"^\| `(\w+)` \|", README, flags=re.MULTILINE))
    for f in dataclasses.fields(DPOTrainingArguments):
        if f.name not in base:
            assert f.name in documented, f"{f.name} is missing from README.md's table"


def test_ci_runs_the_readme_test_command():
    test_command = next(line for line in README.splitlines() if "python -m pytest" in line and "pip install" in line)
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_the_layout_lists_every_module_and_no_other():
    """One line per module of hf_dpo/ and hf_dpo/demo/, one per other subpackage folder (hf_dpo/tools/)."""
    layout = README.split("## Layout", 1)[1].split("```")[1]
    listed = {line.split()[0] for line in layout.splitlines() if line.startswith("hf_dpo/")}
    package = ROOT / "hf_dpo"
    modules = {f"hf_dpo/{path.relative_to(package).as_posix()}" for path in package.glob("*.py")}
    modules |= {f"hf_dpo/{path.relative_to(package).as_posix()}" for path in (package / "demo").glob("*.py")}
    folders = {f"hf_dpo/{path.parent.name}/" for path in package.glob("*/__init__.py") if path.parent.name != "demo"}
    assert listed == modules | folders
