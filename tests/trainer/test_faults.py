"""Faults a long run meets, provoked for real: SIGKILL in the middle of a checkpoint save, Ctrl-C in the middle of a
step, a disk that fills up while a checkpoint is written. Each run is compared with the same run uninterrupted.

The runs that are killed or interrupted are subprocesses (tests/fault_run.py) started together, once per module:
each spends seconds importing torch. They pause at the named moment and print where they are; the test sends the
signal. The resumed runs and the uninterrupted one run in this process.
"""

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from fault_run import MAX_STEPS, fault_trainer
from small_disk import fill, small_filesystem
from torch.testing import assert_close
from transformers import TrainerCallback
from transformers.trainer_utils import get_last_checkpoint

from hf_dpo.trainer.checkpoints import CheckpointSpaceError, checkpoint_problem
from hf_dpo.trainer.interrupt import TrainingInterrupted

SCRIPT = Path(__file__).parents[1] / "fault_run.py"
KILL_POINTS = {  # where the child pauses for SIGKILL -> the checkpoint a resume must start from
    "weights": "checkpoint-2",  # checkpoint-4 holds model.safetensors and nothing else
    "optimizer": "checkpoint-2",  # ... and optimizer.pt, scheduler.pt
    "state": "checkpoint-2",  # ... and half of trainer_state.json
    "rotation": "checkpoint-6",  # checkpoint-6 complete; checkpoint-2 half deleted by save_total_limit
}
INTERRUPTS = ("steps", "no", "twice")  # save_strategy of the interrupted run; "twice": Ctrl-C pressed twice


class Child:
    """A tests/fault_run.py subprocess whose stdout lines are read as they come."""

    def __init__(self, workdir: Path, mode: str, value: str):
        self.output_dir, self.stderr_path = workdir / "out", workdir / "stderr.txt"
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen(
            [sys.executable, str(SCRIPT), str(self.output_dir), mode, value],
            stdout=subprocess.PIPE,
            stderr=self.stderr_path.open("w"),
            text=True,
            env=environment,
        )
        self.lines: queue.Queue = queue.Queue()
        self.stdout: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line.strip())
        self.lines.put(None)

    def wait_for(self, marker: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while (line := self.lines.get(timeout=max(deadline - time.monotonic(), 0.1))) != marker:
            if line is None:
                raise AssertionError(f"the child ended before {marker!r}:\n{self.stderr[-3000:]}")
            self.stdout.append(line)

    def finish(self, timeout: float = 120) -> int:
        code = self.process.wait(timeout=timeout)
        while (line := self.lines.get(timeout=10)) is not None:
            self.stdout.append(line)
        return code

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()


def _weights(trainer) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in trainer.model.named_parameters()}


def _losses(trainer) -> dict[int, float]:
    return {entry["step"]: entry["loss"] for entry in trainer.state.log_history if "loss" in entry}


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The same run, uninterrupted: its final weights and the loss of each of its steps."""
    trainer = fault_trainer(tmp_path_factory.mktemp("straight"))
    trainer.train()
    return _weights(trainer), _losses(trainer)


@pytest.fixture(scope="module")
def faulted(tmp_path_factory, request):
    """Every faulted child, started together; each is signalled at its moment and waited for."""
    children = {}
    for point in KILL_POINTS:
        children[f"kill-{point}"] = Child(tmp_path_factory.mktemp(f"kill-{point}"), "kill", point)
    for case in INTERRUPTS:
        value = "steps-twice" if case == "twice" else case
        children[f"interrupt-{case}"] = Child(tmp_path_factory.mktemp(f"interrupt-{case}"), "interrupt", value)
    try:
        request.getfixturevalue("straight")  # runs while the children import torch
        for name, child in children.items():
            if name.startswith("kill-"):
                child.wait_for(f"AT {name.removeprefix('kill-')}")
                child.process.send_signal(signal.SIGKILL)
            else:
                child.wait_for("MID-STEP")
                child.process.send_signal(signal.SIGINT)
                if name == "interrupt-twice":  # the second press once the first was seen (two at once make one)
                    _wait_until(lambda child=child: "Ctrl-C again stops at once" in child.stderr)
                    child.process.send_signal(signal.SIGINT)
            child.returncode = child.finish()
    finally:  # a failure leaves no child waiting for its signal
        for child in children.values():
            if child.process.poll() is None:
                child.process.kill()
                child.process.wait()
    return children


def _wait_until(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _assert_same_run(trainer, straight) -> None:
    weights, losses = straight
    assert trainer.state.global_step == MAX_STEPS
    resumed = _weights(trainer)
    for name, value in weights.items():
        assert_close(resumed[name], value, atol=1e-6, rtol=0), name
    assert sorted(_losses(trainer)) == sorted(losses) == list(range(1, MAX_STEPS + 1))
    for step, loss in losses.items():
        assert _losses(trainer)[step] == pytest.approx(loss, abs=1e-6), step


# ---- 1. killed while saving a checkpoint ------------------------------------------------------------------------


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_a_run_killed_while_saving_resumes_from_the_last_complete_checkpoint(faulted, straight, point, caplog):
    child = faulted[f"kill-{point}"]
    assert child.returncode == -signal.SIGKILL, child.stderr[-3000:]
    output_dir = child.output_dir
    half_written = output_dir / ("checkpoint-2" if point == "rotation" else "checkpoint-4")
    assert half_written.is_dir() and checkpoint_problem(half_written) is not None
    if point != "rotation":  # the fault as users met it: transformers takes the highest number, complete or not
        assert get_last_checkpoint(str(output_dir)) == str(half_written)
        with pytest.raises(ValueError, match=r"checkpoint-4.* is not a complete checkpoint .*checkpoint-2"):
            fault_trainer(output_dir).train(resume_from_checkpoint=str(half_written))

    resumed = fault_trainer(output_dir)
    with caplog.at_level("INFO", logger="hf_dpo"):
        resumed.train(resume_from_checkpoint=True)
    assert f"{half_written} is incomplete" in caplog.text and "removed" in caplog.text
    assert f"resuming from {output_dir / KILL_POINTS[point]}" in caplog.text
    _assert_same_run(resumed, straight)
    kept = sorted(path.name for path in output_dir.glob("checkpoint-*"))
    assert kept == ["checkpoint-6", "checkpoint-8"]  # save_total_limit=2, nothing half-written left behind
    assert all(checkpoint_problem(output_dir / name) is None for name in kept)


def test_a_folder_without_its_weights_or_with_a_cut_state_is_no_checkpoint(tmp_path):
    folder = tmp_path / "checkpoint-3"
    folder.mkdir()
    assert "no trainer_state.json" in checkpoint_problem(folder)
    (folder / "trainer_state.json").write_text('{"global_step": 3, "log_hi')
    assert "cut short" in checkpoint_problem(folder)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 3}))
    assert "no model weights" in checkpoint_problem(folder)
    (folder / "adapter_model.safetensors").write_bytes(b"")
    assert checkpoint_problem(folder) is None


def test_resume_true_with_no_complete_checkpoint_says_so(tmp_path):
    (tmp_path / "checkpoint-2").mkdir()  # killed inside the first save
    with pytest.raises(ValueError, match="No valid checkpoint found"):
        fault_trainer(tmp_path).train(resume_from_checkpoint=True)


# ---- 6. Ctrl-C ----------------------------------------------------------------------------------------------------


def test_ctrl_c_stops_at_the_step_boundary_saves_and_the_resumed_run_is_the_same(faulted, straight):
    child = faulted["interrupt-steps"]
    assert child.returncode != 0  # KeyboardInterrupt reaches the caller: its script does not go on to push
    assert "INTERRUPTED TrainingInterrupted AT STEP 4" in child.stdout, child.stderr[-3000:]
    checkpoint = child.output_dir / "checkpoint-4"
    assert checkpoint_problem(checkpoint) is None
    message = f"training stopped by Ctrl-C after step 4; checkpoint saved in {checkpoint}"
    assert message in child.stderr and "resume_from_checkpoint=True" in child.stderr
    resumed = fault_trainer(child.output_dir)
    resumed.train(resume_from_checkpoint=True)
    _assert_same_run(resumed, straight)


def test_ctrl_c_without_saves_says_the_run_cannot_be_resumed(faulted):
    child = faulted["interrupt-no"]
    assert "INTERRUPTED TrainingInterrupted AT STEP 4" in child.stdout, child.stderr[-3000:]
    assert "save_strategy='no', so no checkpoint was written" in child.stderr
    assert not list(child.output_dir.glob("checkpoint-*"))


def test_ctrl_c_twice_stops_at_once(faulted):
    child = faulted["interrupt-twice"]
    # the second press lands in the 4th step's forward: Python's KeyboardInterrupt, nothing saved for step 4
    assert "INTERRUPTED KeyboardInterrupt AT STEP 3" in child.stdout, child.stderr[-3000:]
    assert not (child.output_dir / "checkpoint-4").exists()
    assert checkpoint_problem(child.output_dir / "checkpoint-2") is None


def test_a_checkpoint_between_save_steps_when_ctrl_c_lands_off_the_interval(tmp_path, straight):
    """In-process: the flag the signal handler sets, raised after step 3 (save_steps=2): checkpoint-3 is written."""
    trainer = fault_trainer(tmp_path)
    original = trainer._interrupt.on_step_end

    def press_after_step_3(args, state, control, **kwargs):
        trainer._interrupt.requested = state.global_step == 3
        return original(args, state, control, **kwargs)

    trainer._interrupt.on_step_end = press_after_step_3
    with pytest.raises(TrainingInterrupted, match="after step 3; checkpoint saved in"):
        trainer.train()
    assert checkpoint_problem(tmp_path / "checkpoint-3") is None
    resumed = fault_trainer(tmp_path)
    resumed.train(resume_from_checkpoint=True)
    _assert_same_run(resumed, straight)


# ---- 4. the disk fills up while a checkpoint is written -----------------------------------------------------------


class OnSave(TrainerCallback):
    def __init__(self, function):
        self.on_save = function


def _check_full_disk_outcome(error: CheckpointSpaceError, output_dir: Path) -> None:
    message = str(error)
    assert f"saving the checkpoint {output_dir / 'checkpoint-4'} failed for lack of room" in message
    assert "takes about" in message and "MiB free" in message
    assert f"{output_dir / 'checkpoint-2'} is intact" in message and "resume_from_checkpoint=True" in message
    assert not (output_dir / "checkpoint-4").exists()  # removed: it holds no space and passes for nothing
    assert checkpoint_problem(output_dir / "checkpoint-2") is None


@pytest.mark.parametrize("limit", [100_000, 250_000], ids=["in the weights", "in the optimizer state"])
def test_a_file_size_limit_mid_checkpoint_is_one_clear_error(tmp_path, straight, limit):
    """Without privileges, a real write fault: RLIMIT_FSIZE (ulimit -f) makes the kernel refuse to grow a file past
    ``limit`` bytes (EFBIG). model.safetensors is ~175 KiB (safetensors says "File too large"), optimizer.pt
    ~363 KiB (torch.save says only "unexpected pos")."""
    import resource

    trainer = fault_trainer(tmp_path)
    old_limit, old_handler = resource.getrlimit(resource.RLIMIT_FSIZE), signal.getsignal(signal.SIGXFSZ)

    def limit_after_first_checkpoint(args, state, control, **kwargs):
        if state.global_step == 2:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails instead of the process being killed
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, old_limit[1]))

    trainer.add_callback(OnSave(limit_after_first_checkpoint))
    try:
        with pytest.raises(CheckpointSpaceError) as raised:
            trainer.train()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    _check_full_disk_outcome(raised.value, tmp_path)
    assert "ulimit -f" in str(raised.value)
    resumed = fault_trainer(tmp_path)
    resumed.train(resume_from_checkpoint=True)
    _assert_same_run(resumed, straight)


@pytest.fixture
def small_disk(tmp_path):
    with small_filesystem(tmp_path / "disk") as mount_point:
        yield mount_point


@pytest.mark.parametrize("leave", [50_000, 250_000], ids=["in the weights", "in the optimizer state"])
def test_a_full_disk_mid_checkpoint_is_one_clear_error(small_disk, straight, leave):
    output_dir = small_disk / "run"
    trainer = fault_trainer(output_dir)
    ballast = []

    def fill_after_first_checkpoint(args, state, control, **kwargs):
        if state.global_step == 2:
            ballast.append(fill(small_disk, leave))

    trainer.add_callback(OnSave(fill_after_first_checkpoint))
    with pytest.raises(CheckpointSpaceError) as raised:
        trainer.train()
    _check_full_disk_outcome(raised.value, output_dir)
    ballast[0].unlink()  # the user frees space and resumes
    resumed = fault_trainer(output_dir)
    resumed.train(resume_from_checkpoint=True)
    _assert_same_run(resumed, straight)
