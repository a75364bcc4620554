"""Two CPU processes (torchrun, gloo): the sharded reference pass equals a single-process one, and DDP trains."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tiny import build_model, build_tokenizer, free_port, preference_rows

from hf_dpo import DPOTrainer, DPOTrainingArguments

SCRIPT = Path(__file__).parents[1].joinpath("distributed_precompute.py")
CHECKS = Path(__file__).parents[1].joinpath("distributed_checks.py")
TORCHRUN = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
needs_torchrun = pytest.mark.skipif(not os.path.exists(TORCHRUN), reason="no torchrun")


def _run_two_processes(script, *arguments, port):
    command = [TORCHRUN, "--nproc_per_node", "2", "--master_port", str(port), str(script), *map(str, arguments)]
    # the caller's PYTHONPATH stays after tests/: a checkout run that way tests its own hf_dpo, not an installed one
    path = os.pathsep.join(filter(None, [str(script.parent), os.environ.get("PYTHONPATH")]))
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment, check=False)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    assert completed.returncode == 0 and lines, completed.stderr[-3000:]
    return json.loads(lines[0][7:])


@needs_torchrun
def test_two_processes_shard_the_reference_pass_and_train(tmp_path):
    result = _run_two_processes(SCRIPT, tmp_path / "out", tmp_path / "cache", port=free_port())

    tokenizer = build_tokenizer()
    args = DPOTrainingArguments(
        output_dir=str(tmp_path / "single"),
        report_to="none",
        use_cpu=True,
        precompute_ref_log_probs=True,
        ref_logps_cache=False,
    )
    single = DPOTrainer(
        build_model(tokenizer), args=args, train_dataset=preference_rows(11), processing_class=tokenizer
    )
    assert result["ref_chosen"] == pytest.approx(list(single.train_dataset["ref_chosen_logps"]), abs=1e-5)
    assert result["ref_rejected"] == pytest.approx(list(single.train_dataset["ref_rejected_logps"]), abs=1e-5)
    assert result["eval_loss"] == pytest.approx(math.log(2), abs=1e-6) and result["eval_accuracy"] == 0
    assert result["steps"] == 2
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2  # train and eval, written once by rank 0


@pytest.fixture(scope="module")
def distributed_result(tmp_path_factory):
    """One 2-process run of tests/distributed_checks.py shared by the tests that read it (each torchrun costs
    ~20 s)."""
    return _run_two_processes(CHECKS, tmp_path_factory.mktemp("checks"), port=free_port())


@needs_torchrun
def test_eval_loss_and_loss_state_do_not_depend_on_the_number_of_processes(tmp_path, distributed_result):
    """7 evaluation pairs over 2 processes x 2: the last batch is uneven and accelerate repeats a pair to fill it.
    Before the fix eval_loss was 0.347788 against an exact per-pair mean of 0.344113, and each process kept its
    own bco_pair running mean ([1.6605, 8] and [1.8800, 8] instead of [3.5405, 16] on both)."""
    result = distributed_result
    assert result["eval_loss"] == pytest.approx(result["exact_eval_loss"], abs=1e-6)
    first, second = result["bco_rewards_per_process"]
    # KTO: the reference point z0 is the mean over every process's KL rows, so 2 x 2 rows train as 1 x 4
    import distributed_checks

    single = distributed_checks.kto_trainer(build_tokenizer(), str(tmp_path / "kto_single"), per_device_batch=4)
    single.train()
    first_log = next(entry for entry in single.state.log_history if "kl" in entry)  # KTO: TRL's z0 estimate
    metrics = single.evaluate(eval_dataset=distributed_checks.kto_rows(8, offset=100))
    assert result["kto_first_kl"] == pytest.approx(first_log["kl"], abs=1e-6)
    assert result["kto_loss"] == pytest.approx(first_log["loss"], abs=1e-5)
    assert result["kto_eval_loss"] == pytest.approx(metrics["eval_loss"], abs=1e-5)
    assert first == second and first[1] == 2 * 2 * 2 * 2  # 2 processes x 2 pairs x 2 completions x 2 steps


@needs_torchrun
@pytest.mark.parametrize("kind", ["copy", "peft_disabled", "sft_adapter", "precomputed"])
def test_every_reference_kind_trains_under_ddp_as_in_one_process(tmp_path, kind, distributed_result):
    import distributed_checks

    single = distributed_checks.reference_kind_trainer(build_tokenizer(), str(tmp_path / kind), kind, 4)
    single.train()
    losses = [entry["loss"] for entry in single.state.log_history if "loss" in entry]
    assert distributed_result[f"{kind}_losses"] == pytest.approx(losses, abs=1e-5)
    eval_loss = single.evaluate()["eval_loss"]
    assert distributed_result[f"{kind}_eval_loss"] == pytest.approx(eval_loss, abs=1e-5)


@needs_torchrun
@pytest.mark.parametrize("precompute", [False, True])
def test_lists_of_answers_train_under_ddp_as_in_one_process(tmp_path, precompute, distributed_result):
    import distributed_checks

    single = distributed_checks.list_trainer(build_tokenizer(), str(tmp_path / "single"), precompute, 4)
    single.train()
    name = "precomputed" if precompute else "on_the_fly"
    losses = [entry["loss"] for entry in single.state.log_history if "loss" in entry]
    assert distributed_result[f"lists_{name}_losses"] == pytest.approx(losses, abs=1e-5)
    metrics = single.evaluate()
    assert distributed_result[f"lists_{name}_eval"] == pytest.approx(
        [metrics["eval_loss"], metrics["eval_rewards/kendall_tau"]], abs=1e-5
    )
    if precompute:  # the shards' lists of different lengths, gathered in order
        reference = list(single.train_dataset["ref_completion_logps"])
        assert [len(row) for row in distributed_result["lists_reference"]] == [len(row) for row in reference]
        for got, expected in zip(distributed_result["lists_reference"], reference):
            assert got == pytest.approx(expected, abs=1e-5)
