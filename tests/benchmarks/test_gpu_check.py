"""benchmarks/gpu_check.sh --dry-run: the GPU check's steps on a tiny model on CPU (what the lent GPU machine runs,
minus the GPU), so the script cannot rot between the rare sessions that have one."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_gpu_check_runs_dry_on_cpu(tmp_path):
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])  # the script's `python`
    environment = {**os.environ, "OUT": str(tmp_path), "PATH": path}
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=600,
        env=environment,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads((tmp_path / "gpu_results.json").read_text())
    runs = {(run["workload"], run["trainer"]) for run in results if "error" not in run}
    assert {("prompt-heavy", "hf_dpo"), ("balanced", "hf_dpo"), ("completion-heavy", "hf_dpo")} <= runs
    assert all(run["losses"] and abs(run["losses"][0] - 0.6931) < 1e-3 for run in results if "losses" in run)
    assert (
        "gpu" in (tmp_path / "gpu_tests.txt").read_text() or "deselected" in (tmp_path / "gpu_tests.txt").read_text()
    )
    assert "| workload | attention | trainer |" in (tmp_path / "gpu_bench.md").read_text()
