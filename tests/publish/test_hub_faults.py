"""The Hub failing on cue during pushes, for real over HTTP (tests/hub_server.py): 500s, a dropped connection, a
gateway timeout, a 401; on ``push_to_hub`` and on the background pushes of ``hub_strategy="every_save"``.

What huggingface_hub (2.5) already does right is tested as such: it retries a preupload and a commit on 5xx, 408,
429, dropped connections and timeouts (6 tries over ~23 s of backoff) and not on 401. What hf_dpo adds: the error
that ends a push says what reached the Hub, what did not and where the model is on disk; a checkpoint push that
fails in the background is reported, and training goes on. Each case is a subprocess (HF_ENDPOINT is read when
huggingface_hub is imported), all started together.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hub_server import HubServer

SCRIPT = Path(__file__).parents[1] / "hub_fault_push.py"
COMMIT, PREUPLOAD = r"^POST /api/models/[^ ]+/commit/", r"^POST /api/models/[^ ]+/preupload/"
CASES = {  # name -> (mode, [(route, action, times, skip, stall seconds)])
    "500s": ("final", [(PREUPLOAD, 500, 2, 0, 0), (COMMIT, 500, 2, 0, 0)]),
    "dropped, then a gateway timeout": ("final", [(COMMIT, "drop", 1, 0, 0), (COMMIT, "stall", 1, 0, 2.0)]),
    "500 always": ("final", [(COMMIT, 500, 99, 0, 0)]),
    "merged 401": ("merged", [(COMMIT, 401, 99, 0, 0)]),
    "every_save step 4 fails": ("every_save", [(COMMIT, 500, 6, 1, 0)]),  # the 2nd push's 6 tries
    "every_save 401": ("every_save", [(COMMIT, 401, 99, 0, 0)]),
}
LOCAL_FILES = {"adapter_model.safetensors", "adapter_config.json", "README.md", "tokenizer.json"}


class Pushed:
    """A finished child: its output lines, its stderr, and what its Hub saw and holds."""

    def __init__(self, completed, hub, output_dir):
        self.lines, self.stderr = completed.stdout.splitlines(), completed.stderr
        self.returncode, self.output_dir = completed.returncode, output_dir
        self.requests, self.repo = list(hub.requests), dict(hub.repos.get("tester/tiny-dpo", {}))

    def line(self, prefix: str) -> str | None:
        return next((line.removeprefix(prefix).strip() for line in self.lines if line.startswith(prefix)), None)

    def count(self, route: str, outcome: str | None = None) -> int:
        import re

        return sum(
            1
            for request in self.requests
            if re.search(route, request) and (outcome is None or request.endswith(outcome))
        )

    @property
    def on_disk(self) -> set[str]:
        return set(self.line("ON DISK").split())


@pytest.fixture(scope="module")
def pushes(tmp_path_factory):
    servers, children = {}, {}
    try:
        for name, (mode, failures) in CASES.items():
            hub = servers[name] = HubServer().__enter__()
            for route, action, times, skip, seconds in failures:
                hub.fail(route, action, times=times, skip=skip, seconds=seconds)
            environment = {
                **os.environ,
                "HF_ENDPOINT": hub.endpoint,  # read when huggingface_hub is imported: hence a subprocess
                "HF_HUB_OFFLINE": "0",  # offline mode blocks even 127.0.0.1
                "HF_HUB_DISABLE_TELEMETRY": "1",
                "PYTHONPATH": os.pathsep.join(sys.path),
                "OMP_NUM_THREADS": "1",
            }
            output_dir = tmp_path_factory.mktemp(name.replace(" ", "-"))
            command = [sys.executable, str(SCRIPT), str(output_dir), "tiny-dpo", mode]
            process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment
            )
            children[name] = (process, output_dir)
        results = {}
        for name, (process, output_dir) in children.items():
            stdout, stderr = process.communicate(timeout=600)
            completed = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
            results[name] = Pushed(completed, servers[name], output_dir)
        return results
    finally:
        for process, _ in children.values():
            if process.poll() is None:
                process.kill()
        for hub in servers.values():
            hub.shutdown()
            hub.server_close()


def _landed(pushed: Pushed) -> None:
    assert pushed.line("PUSHED") is not None, pushed.stderr[-3000:]
    assert set(pushed.repo) >= LOCAL_FILES and pushed.on_disk >= LOCAL_FILES


def _failed(pushed: Pushed, kind: str) -> str:
    """The error that ended the push, checked to say what is where."""
    message = pushed.line("PUSH FAILED")
    assert message is not None and message.startswith("HfHubHTTPError"), pushed.stderr[-3000:]  # its type kept
    assert f"pushing the model to tester/tiny-dpo failed: {kind}" in message
    assert "the repository holds none of it" in message and "The model is on local disk in" in message
    assert "push it again with trainer.push_to_hub()" in message
    assert not pushed.repo or not any(
        name.startswith("adapter_") or name == "model.safetensors" for name in pushed.repo
    )
    return message


def test_500s_on_preupload_and_commit_are_retried_by_huggingface_hub(pushes):
    pushed = pushes["500s"]
    _landed(pushed)
    assert pushed.count(PREUPLOAD, "-> 500") == 2 and pushed.count(PREUPLOAD, "-> served") == 1
    assert pushed.count(COMMIT, "-> 500") == 2 and pushed.count(COMMIT, "-> served") == 1


def test_a_dropped_connection_and_a_gateway_timeout_mid_upload_are_retried_by_huggingface_hub(pushes):
    """The server reads half the commit and hangs up; then it reads the whole and answers 504 two seconds later
    (what the Hub's gateway answers when its backend times out)."""
    pushed = pushes["dropped, then a gateway timeout"]
    _landed(pushed)
    assert (
        pushed.count(COMMIT, "-> drop") == pushed.count(COMMIT, "-> stall") == pushed.count(COMMIT, "-> served") == 1
    )


def test_a_hub_that_keeps_failing_ends_in_one_clear_error_with_the_model_on_disk(pushes):
    pushed = pushes["500 always"]
    message = _failed(pushed, "the Hub kept failing after huggingface_hub's retries")
    assert pushed.count(COMMIT, "-> 500") == 6  # huggingface_hub's 6 tries, then the error
    assert "500 Internal Server Error" in message and str(pushed.output_dir) in message
    assert pushed.on_disk >= LOCAL_FILES


def test_a_401_is_not_retried_and_a_merged_push_names_the_merged_folder(pushes):
    pushed = pushes["merged 401"]
    message = _failed(pushed, "the Hub refused it (trying again will not mend that)")
    assert pushed.count(COMMIT) == 1 and "401 Unauthorized" in message
    merged = pushed.output_dir / "merged"
    assert f"The model is on local disk in {merged} (" in message and "model.safetensors" in message
    assert (merged / "model.safetensors").is_file()


def test_a_failed_checkpoint_push_is_reported_and_training_goes_on(pushes):
    pushed = pushes["every_save step 4 fails"]
    assert pushed.line("TRAINED") == "6"
    reported = [line for line in pushed.stderr.splitlines() if line.startswith("pushing the checkpoint of step")]
    assert len(reported) == 1 and "step 4 to tester/tiny-dpo failed (HfHubHTTPError" in reported[0]
    assert f"safe on local disk in {pushed.output_dir}/checkpoint-4" in reported[0]
    # pushes of steps 2 and 6, then the final one, landed; the failed one's 6 tries in between
    assert pushed.count(COMMIT, "-> served") == 3 and pushed.count(COMMIT, "-> 500") == 6
    _landed(pushed)


def test_a_hub_refusing_every_push_loses_no_training(pushes):
    pushed = pushes["every_save 401"]
    assert pushed.line("TRAINED") == "6"
    for step in (2, 4, 6):
        assert f"pushing the checkpoint of step {step} to tester/tiny-dpo failed" in pushed.stderr
    _failed(pushed, "the Hub refused it")
    assert pushed.count(COMMIT) == 4  # one try for each checkpoint push and for the final one: a 401 is final
    assert {"checkpoint-2", "checkpoint-4", "checkpoint-6"} <= pushed.on_disk and pushed.on_disk >= LOCAL_FILES
