"""README.md (the front page) and the docs pages stay in step with the code: the CI command, the demo's duration, and
every `hf-dpo` command line they show. The argument table and the layout live on the site now: tests/test_docs.py
checks them (the table is generated from the fields' help, the layout against the import rules' floors)."""

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()
QUICK_START = (ROOT / "docs" / "quickstart.md").read_text()


def bash_lines(text: str) -> list[str]:
    """The lines of a page's ```bash blocks (an output block may show `hf-dpo ...` text that is not a command)."""
    blocks = re.findall(r"^```bash\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    return [line for block in blocks for line in block.splitlines()]


def test_ci_runs_the_readme_test_command():
    test_command = next(line for line in README.splitlines() if "python -m pytest" in line and "pip install" in line)
    assert test_command in (ROOT / ".ci" / "run").read_text()
    assert test_command in QUICK_START, "the Quick start page shows another test command than the README"


def test_the_readme_the_quick_start_and_the_demo_recipe_give_the_same_duration():
    recipe = (ROOT / "recipes" / "demo.yaml").read_text()
    quick_start = QUICK_START.split("## The demo", 1)[1].split("```", 1)[0]
    readme = README.split("## Quick start", 1)[1].split("```", 1)[0]
    said = [re.findall(r"about (\d+) minutes", text) for text in (quick_start, readme, recipe)]
    assert said[0] and said[0] == said[1] == said[2], said


def test_the_commands_of_the_readme_and_the_docs_parse():
    """Every `hf-dpo eval|sweep|inspect|train` line of the README's and the docs' bash blocks parses, its scorers
    import, and every flag of the `hf-dpo train` and sweep lines exists."""
    import argparse

    from hf_dpo.cli.commands import add_commands
    from hf_dpo.cli.launch import resolve_accelerate_config, take_launch_flags
    from hf_dpo.cli.train import train_from_flags
    from hf_dpo.config.run_arguments import parse_train_args
    from hf_dpo.tools.scoring import load_scorer

    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    lines = [line.split("#")[0].strip() for page in pages for line in bash_lines(page.read_text())]
    commands = [
        line.split()[1:]
        for line in lines
        if line.startswith("hf-dpo ")
        and "..." not in line
        and "[" not in line
        and "OUTPUT_DIR" not in line
        and "--help" not in line
    ]
    assert {"eval", "sweep", "inspect"} <= {argv[0] for argv in commands}
    for argv in commands:
        if argv[0] == "train":
            # a GPU recipe asks for bf16, which TrainingArguments refuses on a machine without one unless use_cpu
            on_gpu = any(flag.startswith(("recipes/one_gpu/", "recipes/multi_gpu/")) for flag in argv[1:])
            config, _, flags = take_launch_flags(argv[1:])  # --accelerate_config and the launcher's flags
            if config is not None:
                assert resolve_accelerate_config(config).is_file()
            parse_train_args([*flags, *(["--use_cpu", "true"] if on_gpu else [])])
            continue
        if argv[0] == "plot":
            continue  # plot takes one folder and nothing else
        parser = argparse.ArgumentParser(prog="hf-dpo")
        add_commands(parser.add_subparsers(dest="command", required=True), train_from_flags)
        options = parser.parse_args(argv)
        for spec in getattr(options, "scorer", None) or []:
            load_scorer(spec)
        if argv[0] == "sweep":
            parse_train_args([options.recipe, *options.train_flags])
