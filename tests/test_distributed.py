"""Two CPU processes (torchrun, gloo): the sharded reference pass equals a single-process one, and DDP trains."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tiny import build_model, build_tokenizer, preference_rows

from hf_dpo import DPOTrainer, DPOTrainingArguments

SCRIPT = Path(__file__).with_name("distributed_precompute.py")


@pytest.mark.skipif(
    shutil.which("torchrun") is None and not os.path.exists(Path(sys.executable).with_name("torchrun")),
    reason="no torchrun",
)
def test_two_processes_shard_the_reference_pass_and_train(tmp_path):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    command = [
        torchrun,
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        str(SCRIPT),
        str(tmp_path / "out"),
        str(tmp_path / "cache"),
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SCRIPT.parent)}
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment, check=False)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    assert completed.returncode == 0 and lines, completed.stderr[-3000:]
    result = json.loads(lines[0][7:])

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
