"""The reference log-prob cache under faults met for real: two runs sharing it (a sweep launched in parallel), a
reader racing a writer, a disk that fills up and a file-size limit during the write.

The cache writes a uniquely named temporary file and renames it over the entry (hf_dpo/reference/cache.py), so
this held before these tests; they keep it held.
"""

import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from cache_race import ROWS, entry_values, precompute_trainer
from small_disk import fill, small_filesystem

from hf_dpo.reference.cache import load

SCRIPT = Path(__file__).parents[1] / "cache_race.py"
COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")


RUNNING: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_child_left():
    """A failed test leaves no child process behind (a reader would loop on)."""
    yield
    while RUNNING:
        process = RUNNING.pop()
        if process.poll() is None:
            process.kill()
            process.wait()


class Child:
    """A tests/cache_race.py subprocess; its stdout is read line by line as it comes, its stderr kept (both pipes,
    which a file-size limit does not touch)."""

    def __init__(self, *arguments: str):
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen(
            [sys.executable, str(SCRIPT), *arguments],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        self.lines: queue.Queue = queue.Queue()
        self._stderr: list[str] = []
        threading.Thread(
            target=lambda: [*map(self.lines.put, self.process.stdout), self.lines.put(None)], daemon=True
        ).start()
        threading.Thread(target=lambda: self._stderr.extend(self.process.stderr), daemon=True).start()
        RUNNING.append(self.process)

    def line_starting(self, prefix: str, timeout: float = 300) -> str:
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.1))
            assert line is not None, f"the child ended before {prefix!r}:\n{self.stderr[-3000:]}"
            if line.startswith(prefix):
                return line.removeprefix(prefix).strip()

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)


def _uncached_columns() -> dict[str, list[float]]:
    dataset = precompute_trainer(None).train_dataset
    return {name: list(dataset[name]) for name in COLUMNS}


def test_two_runs_started_together_both_get_the_right_log_probs_and_leave_one_entry(tmp_path):
    cache_dir, go = tmp_path / "cache", tmp_path / "go"
    runs = [Child("train", str(cache_dir), str(go)) for _ in range(2)]
    for run in runs:
        run.line_starting("READY")
    go.touch()  # both build their trainer, score the data and write the entry at the same moment
    expected = _uncached_columns()
    for run in runs:
        columns = json.loads(run.line_starting("COLUMNS"))
        for name in COLUMNS:
            assert columns[name] == pytest.approx(expected[name], abs=1e-6)
        assert run.process.wait(timeout=120) == 0, run.stderr[-3000:]
        assert "unusable" not in run.stderr  # neither read a half-written file
    (entry,) = cache_dir.glob("*.pt")
    assert not list(cache_dir.glob("*.partial"))
    values = load(entry, entry.stem, len(expected[COLUMNS[0]]))
    assert values is not None and values[:, 0].tolist() == pytest.approx(expected[COLUMNS[0]], abs=1e-6)


def test_a_reader_never_sees_half_a_file_while_a_writer_rewrites_it(tmp_path):
    """300 rewrites of a 160 KB entry against a reader in a loop. Written in place (no temporary file), the reader
    sees a cut file within a few writes (tried: ``unusable`` warnings by the dozen)."""
    entry, stop = tmp_path / "cache" / "entry.pt", tmp_path / "stop"
    reader = Child("read", str(entry), str(stop))
    writer = Child("write", str(entry), "300")
    reader.line_starting("READY")
    writer.process.wait(timeout=300)
    stop.touch()
    seen = json.loads(reader.line_starting("SEEN"))
    assert reader.process.wait(timeout=60) == 0
    assert "unusable" not in reader.stderr, reader.stderr[-3000:]
    assert seen["whole"] > 0 and seen["other"] == 0, seen
    assert writer.process.returncode == 0, writer.stderr[-3000:]
    assert [path.name for path in entry.parent.iterdir()] == ["entry.pt"]  # no temporary file left behind
    assert torch.equal(load(entry, "a-key", ROWS), entry_values())


def _assert_write_failed_and_the_run_went_on(log: str, cache_dir: Path, previous: Path) -> None:
    assert f"could not write the reference log-prob cache {cache_dir}" in log
    assert "bytes are free there" in log and "The run goes on" in log
    assert not list(cache_dir.glob("*.partial"))  # the cache is as it was: the earlier entry, whole, alone
    assert list(cache_dir.glob("*.pt")) == [previous]
    assert load(previous, previous.stem, 16) is not None


def test_a_full_disk_during_the_cache_write_leaves_the_cache_as_it_was(tmp_path, caplog):
    with small_filesystem(tmp_path / "disk", size="1m") as disk:
        cache_dir = disk / "cache"
        precompute_trainer(str(cache_dir), rows=16)  # an earlier run's entry
        (previous,) = cache_dir.glob("*.pt")
        fill(disk, leave=64)
        with caplog.at_level(logging.WARNING, logger="hf_dpo.reference.cache"):
            dataset = precompute_trainer(str(cache_dir)).train_dataset
        _assert_write_failed_and_the_run_went_on(caplog.text, cache_dir, previous)
        assert "No space left on device" in caplog.text
    expected = _uncached_columns()
    for name in COLUMNS:
        assert list(dataset[name]) == pytest.approx(expected[name], abs=1e-6)


def test_a_file_size_limit_during_the_cache_write_leaves_the_cache_as_it_was(tmp_path):
    """Without privileges: RLIMIT_FSIZE (ulimit -f) makes the kernel refuse the write (EFBIG), in a subprocess."""
    cache_dir = tmp_path / "cache"
    precompute_trainer(str(cache_dir), rows=16)
    (previous,) = cache_dir.glob("*.pt")
    run = Child("limited", str(cache_dir), "256")  # an entry of 24 rows takes ~1.5 KB
    columns = json.loads(run.line_starting("COLUMNS"))
    assert run.process.wait(timeout=120) == 0, run.stderr[-3000:]
    _assert_write_failed_and_the_run_went_on(run.stderr, cache_dir, previous)
    assert "File too large" in run.stderr
    expected = _uncached_columns()
    for name in COLUMNS:
        assert columns[name] == pytest.approx(expected[name], abs=1e-6)
