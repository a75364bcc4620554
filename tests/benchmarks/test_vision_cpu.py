"""benchmarks/vision_cpu.py --quick: the dry run of the vision benchmark, both trainers on a tiny Qwen2-VL-shaped model,
with its counts: each image encoded once per pass by hf_dpo and twice by TRL, a pair in one language-model row
instead of two, and the same losses."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "vision_cpu.py"


@pytest.fixture(scope="module")
def vision():
    spec = importlib.util.spec_from_file_location("vision_cpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["vision_cpu"] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules["vision_cpu"]


def test_the_quick_run_counts_each_image_once_per_pass_and_matches_trl(vision, tmp_path, capsys):
    pytest.importorskip("trl")
    results = tmp_path / "vision.jsonl"
    assert vision.main(["--quick", "--json", str(results)]) == 0
    out = capsys.readouterr().out
    runs = {run["trainer"]: run for run in map(json.loads, results.read_text().splitlines())}
    assert runs["hf_dpo"]["vision_passes_per_image"] == 2.0  # the policy's pass and the reference's, once each
    assert runs["trl"]["vision_passes_per_image"] == 4.0  # each twice: the chosen and the rejected copies
    assert runs["hf_dpo"]["lm_rows_per_pair"] == 1.0 and runs["trl"]["lm_rows_per_pair"] == 2.0
    assert runs["hf_dpo"]["lm_tokens_per_pair"] < runs["trl"]["lm_tokens_per_pair"]
    assert runs["hf_dpo"]["losses"] == pytest.approx(runs["trl"]["losses"], abs=1e-5)
    assert "| hf_dpo |" in out and "| trl |" in out and "speed-up (TRL / hf_dpo s/step)" in out


def test_rows_are_deterministic(vision):
    shape = vision.SHAPES["tiny"]
    first, again = vision.build_rows(shape, 2, 0), vision.build_rows(shape, 2, 0)
    assert [row["prompt"] for row in first] == [row["prompt"] for row in again]
    assert first[0]["images"][0].tobytes() == again[0]["images"][0].tobytes()
    assert first[0]["images"][0].size == (56, 56)
