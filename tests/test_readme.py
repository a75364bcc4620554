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


def test_no_argument_is_listed_twice_in_the_arguments_table():
    table = README.split("## DPO arguments", 1)[1].split("\n## ", 1)[0]
    names = re.findall(r"^\| `(\w+)` \|", table, flags=re.MULTILINE)
    assert len(names) == len(set(names)), sorted({name for name in names if names.count(name) > 1})


def test_the_readme_and_the_demo_recipe_give_the_same_duration():
    recipe = (ROOT / "recipes" / "demo.yaml").read_text()
    quick_start = README.split("## Quick start", 1)[1].split("```", 1)[0]
    said = re.findall(r"about (\d+) minutes", quick_start), re.findall(r"about (\d+) minutes", recipe)
    assert said[0] and said[0] == said[1], said


def test_the_readmes_commands_parse():
    """Every `hf-dpo eval|sweep|inspect` line of the README parses, its scorers import, and every flag of the `hf-dpo
    train` and sweep lines exists."""
    import argparse

    from hf_dpo.cli.commands import add_commands
    from hf_dpo.cli.train import train_from_flags
    from hf_dpo.config.run_arguments import parse_train_args
    from hf_dpo.tools.scoring import load_scorer

    lines = [line.split("#")[0].strip() for line in README.splitlines() if line.strip().startswith("hf-dpo ")]
    commands = [
        line.split()[1:]
        for line in lines
        if "..." not in line and "[" not in line and "OUTPUT_DIR" not in line and "--help" not in line
    ]
    assert {"eval", "sweep", "inspect"} <= {argv[0] for argv in commands}
    for argv in commands:
        if argv[0] == "train":
            parse_train_args(argv[1:])
            continue
        parser = argparse.ArgumentParser(prog="hf-dpo")
        add_commands(parser.add_subparsers(dest="command", required=True), train_from_flags)
        options = parser.parse_args(argv)
        for spec in getattr(options, "scorer", None) or []:
            load_scorer(spec)
        if argv[0] == "sweep":
            parse_train_args([options.recipe, *options.train_flags])
