"""A thousand steps (tests/long_run.py, in a subprocess of its own): evaluation every 100 steps with samples, a log
every 10, a checkpoint every 100 with ``save_total_limit=2``, the doctor on. What grows with a long run must stop
growing after warm-up: resident memory, open files, live Python objects, the metric windows, the doctor's history.

Margins, and why: the run's per-step tensors (a batch of 2 pairs, ~20 tokens, a 400-token vocabulary) are ~128 KiB
of logits, so a leak of one of them per step adds 100 MiB over the 800 steps after warm-up; the bound, 16 KiB a
step, catches that and leaves room for the allocator's noise and the log history (~0.2 KiB a step, by design). One
leaked Python container per step adds 700 objects between steps 250 and 950; the log history adds one entry per
log (70 there) and a few per evaluation, so the bound is 350. Step times are printed, not asserted (no timed
assertions in tests); the numbers measured on the development machine are in docs/reliability.md's table.
"""

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "long_run.py"
STEPS, WARM_UP = 1000, 200


def _slope(points: list[tuple[float, float]]) -> float:
    """The least-squares slope of ``y`` over ``x``."""
    mean_x, mean_y = statistics.mean(x for x, _ in points), statistics.mean(y for _, y in points)
    covariance = sum((x - mean_x) * (y - mean_y) for x, y in points)
    return covariance / sum((x - mean_x) ** 2 for x, _ in points)


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> dict:
    output_dir = tmp_path_factory.mktemp("long")
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), str(output_dir), str(STEPS)],
        capture_output=True,
        text=True,
        timeout=900,
        env=environment,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads((output_dir / "measures.json").read_text())
    rows = [row for row in report["rows"] if row["step"] >= WARM_UP]
    seconds = {row["step"]: row["seconds"] for row in report["rows"] if row["seconds"] >= 0}
    ordinary = [step for step in seconds if step % 100 not in (0, 1)]  # steps without an evaluation or a save
    report["summary"] = {
        "rss_mib": {step: round(row["rss"] / 2**20, 1) for row in report["rows"] for step in [row["step"]]
                    if step in (1, WARM_UP, 500, STEPS)},
        "rss_kib_per_step_after_warm_up": _slope([(row["step"], row["rss"] / 1024) for row in rows]),
        "open_files": sorted({row["fds"] for row in rows}),
        "median_step_ms": {
            f"{start}-{start + 99}": round(1000 * statistics.median(seconds[s] for s in ordinary if start <= s < start + 100), 1)
            for start in range(100, STEPS, 100)
        },
    }  # fmt: skip
    print(json.dumps(report["summary"], indent=1))  # shown with -s: the numbers of this run
    return report


def test_a_thousand_steps_end_with_the_checkpoints_rotated(measured):
    assert len(measured["rows"]) == STEPS
    assert measured["checkpoints"] == ["checkpoint-1000", "checkpoint-900"]
    # one entry per log, two per evaluation (its metrics, its samples), one at the end: the run's record, by design
    assert measured["log_history"] == STEPS // 10 + 2 * (STEPS // 100) + 1


def test_resident_memory_stops_growing_after_warm_up(measured):
    assert measured["summary"]["rss_kib_per_step_after_warm_up"] < 16


def test_open_files_and_live_objects_stay_flat(measured):
    after = [row for row in measured["rows"] if row["step"] >= WARM_UP]
    assert max(row["fds"] for row in after) - min(row["fds"] for row in after) <= 2
    objects = {row["step"]: row["objects"] for row in measured["rows"] if row["objects"] >= 0}
    assert objects[950] - objects[250] < 350, objects


def test_metric_windows_and_the_doctors_history_stay_bounded(measured):
    columns = measured["metric_columns"] + 1  # the running sums and the row count
    for row in measured["rows"]:
        # train and eval, one vector each, whatever the step
        assert row["window_modes"] <= 2 and row["window_values"] <= 2 * columns, row
        assert row["chosen_logps"] <= 6 and row["lengths"] <= 4, row  # falling_logs + 1, growing_evaluations + 1
