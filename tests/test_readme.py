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


def test_the_layout_lists_every_folder_in_its_floor_order():
    """One line per folder of hf_dpo/, in the order of the import rules' floors (bottom first)."""
    from test_import_rules import FLOORS

    layout = README.split("## Layout", 1)[1].split("```")[1]
    listed = [line.split()[0] for line in layout.splitlines() if line.startswith("hf_dpo/")]
    assert listed == [f"hf_dpo/{folder}/" for folder in FLOORS]
