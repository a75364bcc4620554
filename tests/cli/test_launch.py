"""``hf-dpo train --accelerate_config``: the relaunch command it builds, the names it takes, and one real
2-process run on CPU through accelerate launch."""

import json
import subprocess
import sys

import pytest
import yaml
from tiny import build_model, build_tokenizer, free_port, preference_rows

from hf_dpo.cli.dispatch import main
from hf_dpo.cli.launch import CONFIGS_DIR, launch_command, relaunch, take_launch_flags
from hf_dpo.config.recipe import UserError


def test_the_flag_and_the_launchers_flags_leave_the_train_flags():
    config, launch, rest = take_launch_flags(
        ["--beta", "0.2", "--accelerate_config", "zero3", "--num_processes=4", "--debug", "--output_dir", "o"]
    )
    assert config == "zero3" and launch == ["--num_processes", "4"]
    assert rest == ["--beta", "0.2", "--debug", "--output_dir", "o"]
    assert take_launch_flags(["--beta", "0.2"]) == (None, [], ["--beta", "0.2"])


def test_the_relaunch_command_runs_train_without_the_flag(tmp_path):
    command = launch_command("zero3", ["--num_processes", "2"], ["recipe.yaml", "--beta", "0.2"], debug=True)
    assert command[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert command[3:] == [
        "--config_file", str(CONFIGS_DIR / "zero3.yaml"), "--num_processes", "2",
        "-m", "hf_dpo.cli", "--debug", "train", "recipe.yaml", "--beta", "0.2",
    ]  # fmt: skip
    own = tmp_path / "mine.yaml"
    own.write_text("distributed_type: MULTI_GPU\n")
    assert launch_command(str(own), [], ["r.yaml"])[4] == str(own)  # a path is used as it is


def test_an_unknown_name_is_refused_with_the_names(capsys):
    with pytest.raises(UserError, match=r"'zero4': neither a file nor .* fsdp2, multi_gpu, single_gpu, zero1, zero2"):
        launch_command("zero4", [], [])
    assert main(["train", "--accelerate_config", "zero4", "recipe.yaml"]) == 2
    assert "hf-dpo: error: --accelerate_config 'zero4'" in capsys.readouterr().err


def test_launcher_flags_need_the_config_and_a_value():
    with pytest.raises(UserError, match="--num_processes is a flag of accelerate launch: give it with"):
        take_launch_flags(["--num_processes", "2"])
    with pytest.raises(UserError, match="--accelerate_config needs a value"):
        take_launch_flags(["--accelerate_config"])


def test_inside_a_launcher_the_flag_is_refused(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(UserError, match="not inside a launcher"):
        relaunch("multi_gpu", [], [])


def test_a_real_two_process_run_on_cpu(tmp_path):
    """The command as a user types it, with the shipped multi_gpu config switched to the CPU (a path): accelerate
    starts two processes, each trains; the summary says how the run was spread."""
    tokenizer = build_tokenizer()
    build_model(tokenizer).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(row) for row in preference_rows(16)))
    config = yaml.safe_load((CONFIGS_DIR / "multi_gpu.yaml").read_text()) | {"use_cpu": True}
    (tmp_path / "cpu.yaml").write_text(yaml.safe_dump(config))
    recipe = {
        "model_name_or_path": str(tmp_path / "model"),
        "dataset_name": str(tmp_path / "pairs.jsonl"),
        "dataset_test_split": None,
        "output_dir": str(tmp_path / "out"),
        "max_steps": 2,
        "per_device_train_batch_size": 2,
        "report_to": "none",
        "use_cpu": True,
        "save_strategy": "no",
        "plot": False,
    }
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(recipe))
    flags = ["--num_processes", "2", "--main_process_port", str(free_port())]
    script = "import sys; from hf_dpo.cli import main; sys.exit(main(sys.argv[1:]))"
    result = subprocess.run(
        [sys.executable, "-c", script, "train", "--accelerate_config", str(tmp_path / "cpu.yaml"), *flags,
         str(tmp_path / "tiny.yaml")],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    # accelerate has no GPUs here: DDP over CPU processes (FACTS.md: check it before believing a multi-process test)
    assert summary["distributed_type"] == "MULTI_CPU" and summary["processes"] == 2
    assert summary["train_steps"] == 2
