"""hf_dpo.models.policy: a model given by name loads with TRL 1.16's model_init_kwargs semantics (float32 unless told,
TRL's dtype names, device_map by placement), and a reference given by name like the policy."""

from types import SimpleNamespace

import pytest
import torch
from tiny import build_model

from hf_dpo import DPOTrainingArguments
from hf_dpo.models.policy import named_model_kwargs


def _args(**overrides):
    return DPOTrainingArguments(output_dir="unused", report_to="none", use_cpu=True, **overrides)


def test_a_named_model_loads_in_float32_unless_told():
    assert named_model_kwargs(_args()) == {"dtype": torch.float32, "device_map": None}
    assert named_model_kwargs(_args(model_init_kwargs={"dtype": "bfloat16"}))["dtype"] == torch.bfloat16
    assert named_model_kwargs(_args(model_init_kwargs={"dtype": "auto"}))["dtype"] == "auto"
    assert named_model_kwargs(_args(model_init_kwargs={"torch_dtype": torch.float16}))["dtype"] == torch.float16
    assert named_model_kwargs(_args(trust_remote_code=True))["trust_remote_code"] is True
    with pytest.raises(ValueError, match=r"dtype='fp16' must be 'auto', None, a torch.dtype or one of bfloat16"):
        named_model_kwargs(_args(model_init_kwargs={"dtype": "fp16"}))


def test_device_map_follows_trls_placement(monkeypatch):
    """None on a CPU and in a distributed run (each process holds its copy), "auto" on one process with a GPU; a
    user's choice stands, and a quantized load keeps the per-process placement of hf_dpo.models.loading."""
    args = _args(model_init_kwargs={"device_map": {"": "cpu"}})
    assert named_model_kwargs(args)["device_map"] == {"": "cpu"}
    gpu = SimpleNamespace(
        model_init_kwargs=None,
        trust_remote_code=False,
        device=torch.device("cuda", 0),
        distributed_state=SimpleNamespace(num_processes=1, distributed_type="NO"),
    )
    assert named_model_kwargs(gpu)["device_map"] == "auto"
    gpu.distributed_state.num_processes = 2
    assert named_model_kwargs(gpu)["device_map"] is None
    gpu.model_init_kwargs = {"load_in_4bit": True}
    assert "device_map" not in named_model_kwargs(gpu)


def test_a_named_reference_takes_the_policys_dtype_and_attention(tokenizer):
    policy = build_model(tokenizer, attn_implementation="eager").to(torch.bfloat16)
    kwargs = named_model_kwargs(_args(), like=policy)
    assert kwargs["dtype"] == torch.bfloat16 and kwargs["attn_implementation"] == "eager"
    told = named_model_kwargs(_args(model_init_kwargs={"dtype": "float32"}), like=policy)
    assert told["dtype"] == torch.float32
