"""A frozen reference model placed for the engine accelerate runs the policy with; weights read whole for hashing.

| engine (accelerate) | the reference model                                                                   |
| --- | --- |
| none, DDP, multi-CPU | an unwrapped copy on each process's device (it gets no gradients: nothing to sync) |
| DeepSpeed ZeRO-3 | its own DeepSpeed inference engine: sharded like the policy, gathered layer by layer |
| DeepSpeed ZeRO-1/2 | a replicated copy inside an inference engine with ZeRO off (stage 0)                    |
| FSDP2 | ``fully_shard`` on each decoder layer and on the root: sharded, gathered for its forward  |
| FSDP1 | refused: use FSDP2 (``fsdp_version: 2``), or a PEFT policy (its reference holds no weights) |

PEFT references (adapters disabled, a frozen adapter) run through the policy as the engine wrapped it, and
precomputed log-probs need no model during training; both work under every engine. The precompute pass runs
before the Trainer prepares the policy, so under DeepSpeed it goes through an inference engine built on the
policy for that pass (:func:`precompute_model`).

Nothing here runs without the engine's package: DeepSpeed is imported only under DeepSpeed, FSDP2 only under FSDP.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterator
from typing import Any

import torch

from hf_dpo.models.facts import is_quantized
from hf_dpo.models.modes import freeze

logger = logging.getLogger(__name__)


def engine_name(accelerator: Any) -> str:
    """``"deepspeed"``, ``"fsdp"`` or ``"ddp"`` (no engine, DDP or multi-CPU) for ``accelerator``."""
    kind = getattr(accelerator.distributed_type, "name", str(accelerator.distributed_type))
    return {"DEEPSPEED": "deepspeed", "FSDP": "fsdp"}.get(kind, "ddp")


def prepare_reference_model(model: torch.nn.Module, accelerator: Any) -> torch.nn.Module:
    """The frozen reference ``model`` placed for ``accelerator``'s engine (see the module table)."""
    engine = engine_name(accelerator)
    if engine == "deepspeed":
        return deepspeed_inference_engine(model, accelerator)
    if engine == "fsdp":
        return fsdp2_shard(model, accelerator)
    if not is_quantized(model):  # bitsandbytes models were placed when loaded and refuse .to()
        model.to(accelerator.device)
    return model


def deepspeed_inference_config(training_config: dict[str, Any], hidden_size: int | None) -> dict[str, Any]:
    """The run's DeepSpeed config turned into one for a model that only runs forward passes.

    No optimizer, scheduler or optimizer offload (DeepSpeed would build them and fail without an optimizer to
    attach to). ZeRO-3 stays: the reference is sharded like the policy, with buckets sized to the hidden size
    (the values transformers uses for inference); ZeRO-1/2 shard optimizer state and gradients, which a frozen
    model has none of, so they become stage 0: one replicated copy per process.

    >>> config = {"zero_optimization": {"stage": 2, "offload_optimizer": {"device": "cpu"}}, "optimizer": {}}
    >>> deepspeed_inference_config(config, 64)
    {'zero_optimization': {'stage': 0}}
    """
    config = copy.deepcopy(training_config)
    config.pop("optimizer", None)
    config.pop("scheduler", None)
    zero = config.setdefault("zero_optimization", {})
    zero.pop("offload_optimizer", None)
    if zero.get("stage", 0) != 3:
        zero["stage"] = 0
    elif hidden_size is not None:
        zero.update(
            reduce_bucket_size=hidden_size * hidden_size,
            stage3_param_persistence_threshold=10 * hidden_size,
            stage3_prefetch_bucket_size=int(0.9 * hidden_size * hidden_size),
        )
    return config


def deepspeed_inference_engine(model: torch.nn.Module, accelerator: Any) -> Any:
    import deepspeed  # only under DeepSpeed

    config = getattr(getattr(model, "config", None), "get_text_config", lambda: None)()
    hidden_size = getattr(config, "hidden_size", None)
    ds_config = deepspeed_inference_config(accelerator.state.deepspeed_plugin.deepspeed_config, hidden_size)
    engine, *_ = deepspeed.initialize(model=model, config=ds_config)
    engine.eval()
    logger.info(
        "reference model: a DeepSpeed inference engine (ZeRO stage %d)", ds_config["zero_optimization"]["stage"]
    )
    return engine


def fsdp2_shard(model: torch.nn.Module, accelerator: Any) -> torch.nn.Module:
    """``fully_shard`` each decoder layer (the model's ``_no_split_modules`` classes), then the root, with the run's
    mixed precision and resharding; the parameters are gathered for each layer's forward and freed after."""
    plugin = accelerator.state.fsdp_plugin
    if getattr(plugin, "fsdp_version", 1) != 2:
        raise ValueError(
            "a separate frozen reference model under FSDP1 is not supported; use FSDP2 (fsdp_version: 2 in the "
            "accelerate config), or train a PEFT model (its reference is the policy with its adapters disabled)"
        )
    from torch.distributed.fsdp import MixedPrecisionPolicy

    options = {
        "reshard_after_forward": getattr(plugin, "reshard_after_forward", True),
        "mp_policy": getattr(plugin, "mixed_precision_policy", None) or MixedPrecisionPolicy(),
        "mesh": getattr(accelerator, "torch_device_mesh", None),
    }
    return shard_layers(model, options)


def shard_layers(model: torch.nn.Module, options: dict[str, Any]) -> torch.nn.Module:
    from torch.distributed.fsdp import fully_shard

    layer_classes = set(getattr(model, "_no_split_modules", None) or ())
    layers = [module for module in model.modules() if type(module).__name__ in layer_classes]
    for layer in layers:
        fully_shard(layer, **options)
    fully_shard(model, **options)
    logger.info("reference model: FSDP2, %d layers sharded", len(layers))
    return freeze(model)


@contextlib.contextmanager
def whole(tensor: torch.Tensor) -> Iterator[torch.Tensor]:
    """``tensor`` with all its values on this process: a ZeRO-3 partitioned parameter gathered for the block, an
    FSDP2 (DTensor) parameter as its full tensor, anything else as it is."""
    if hasattr(tensor, "ds_id"):  # a ZeRO-3 parameter holds only this process's partition
        import deepspeed

        with deepspeed.zero.GatheredParameters([tensor]):
            yield tensor
        return
    full_tensor = getattr(tensor, "full_tensor", None)  # DTensor (FSDP2)
    yield full_tensor() if callable(full_tensor) else tensor


def precompute_model(policy: torch.nn.Module, accelerator: Any) -> Any:
    """The module the precompute pass runs a PEFT reference through: under DeepSpeed, an inference engine around
    the not yet prepared policy (ZeRO-3 has partitioned its parameters at load time); else the policy itself."""
    if engine_name(accelerator) == "deepspeed":
        return deepspeed_inference_engine(policy, accelerator)
    return policy
