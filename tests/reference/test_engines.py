"""The reference model under each engine: DeepSpeed's inference config by hand, the dispatch with the engine
mocked at the boundary, and FSDP2 for real in one CPU process."""

import importlib.util
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from tiny import build_model, free_port

from hf_dpo.reference.engines import deepspeed_inference_config, engine_name, precompute_model, prepare_reference_model
from hf_dpo.reference.kinds import FrozenModelReference

SCRIPT = Path(__file__).parents[1].joinpath("fsdp2_reference.py")


def _accelerator(kind, **state):
    return types.SimpleNamespace(
        distributed_type=types.SimpleNamespace(name=kind),
        device=torch.device("cpu"),
        state=types.SimpleNamespace(**state),
    )


def test_zero3_keeps_the_reference_sharded_and_drops_what_only_training_needs():
    training = {
        "zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu"}, "offload_param": {"device": "cpu"}},
        "optimizer": {"type": "AdamW"},
        "scheduler": {"type": "WarmupLR"},
        "bf16": {"enabled": True},
    }
    config = deepspeed_inference_config(training, hidden_size=64)
    assert config == {
        "zero_optimization": {
            "stage": 3,
            "offload_param": {"device": "cpu"},  # parameters may stay offloaded: a forward gathers them
            "reduce_bucket_size": 64 * 64,
            "stage3_param_persistence_threshold": 640,
            "stage3_prefetch_bucket_size": int(0.9 * 64 * 64),
        },
        "bf16": {"enabled": True},
    }
    assert training["optimizer"] == {"type": "AdamW"}  # the run's own config is untouched
    assert deepspeed_inference_config({"zero_optimization": {"stage": 1}}, 64)["zero_optimization"] == {"stage": 0}


def test_under_deepspeed_the_reference_gets_its_own_inference_engine(monkeypatch, tokenizer):
    calls = []

    class Engine:
        def __init__(self, model):
            self.module, self.evaluated = model, False

        def eval(self):
            self.evaluated = True

    def initialize(model, config):
        calls.append(config)
        return Engine(model), None, None, None

    monkeypatch.setitem(sys.modules, "deepspeed", types.SimpleNamespace(initialize=initialize))
    plugin = types.SimpleNamespace(deepspeed_config={"zero_optimization": {"stage": 3}, "optimizer": {}})
    accelerator = _accelerator("DEEPSPEED", deepspeed_plugin=plugin)
    reference = FrozenModelReference(build_model(tokenizer))
    reference.prepare(accelerator)
    assert (
        isinstance(reference.model, Engine)
        and reference.model.evaluated
        and calls[0]["zero_optimization"]["stage"] == 3
    )
    assert isinstance(precompute_model(build_model(tokenizer), accelerator), Engine)  # the precompute pass too
    with pytest.raises(ValueError, match="sharded weights cannot be mixed"):
        reference.sync(build_model(tokenizer), 0.5)


def test_fsdp1_is_refused_with_what_to_use_instead(tokenizer):
    accelerator = _accelerator("FSDP", fsdp_plugin=types.SimpleNamespace(fsdp_version=1))
    with pytest.raises(ValueError, match=r"FSDP1 is not supported; use FSDP2 \(fsdp_version: 2"):
        prepare_reference_model(build_model(tokenizer), accelerator)


def test_without_an_engine_the_reference_is_a_replicated_copy_on_the_device(tokenizer):
    accelerator = _accelerator("MULTI_CPU")
    assert engine_name(accelerator) == "ddp"
    model = build_model(tokenizer)
    assert prepare_reference_model(model, accelerator) is model


def _run(script_name, port, **environment):
    """A one-process distributed script of tests/, its RESULT line as a dict."""
    script = SCRIPT.with_name(script_name)
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(script.parent), **environment}
    completed = subprocess.run(
        [sys.executable, str(script), str(port)],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
        check=False,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    assert completed.returncode == 0 and lines, completed.stderr[-3000:]
    return json.loads(lines[0][7:])


def test_fsdp2_reference_for_real_on_one_cpu_process():
    result = _run(SCRIPT.name, free_port())
    assert result["difference"] == 0.0 and result["frozen"]
    assert result["dtensors"] == result["parameters"] > 0  # every parameter sharded
    assert result["same_fingerprint"]  # the cache key reads the whole weights, not one process's shard


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed is not installed")
def test_zero3_reference_for_real_on_one_cpu_process():
    """DeepSpeed runs on this CPU with its CPU accelerator: the reference is partitioned (every parameter holds
    shape [0] on the process), scores exactly as the plain model, and its cache fingerprint reads whole weights."""
    result = _run("zero3_reference.py", free_port(), DS_ACCELERATOR="cpu")
    assert result == {"difference": 0.0, "partitioned": True, "same_fingerprint": True}
