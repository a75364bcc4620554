"""Where the reference log-probs ``log π_ref(y|x)`` come from; the one place that decides it.

- :class:`FrozenModelReference`: a separate, frozen model (an explicit ``ref_model`` or a copy of the policy).
- :class:`DisabledAdapterReference`: the PEFT policy itself with its adapters switched off, so the base weights
  are held once.
- :class:`AdapterReference`: a frozen adapter of the PEFT policy (the SFT LoRA a run starts from) while a copy of
  it, or another named adapter, trains.
- :class:`PrecomputedReference`: columns ``ref_chosen_logps`` / ``ref_rejected_logps`` already in the batch.
- :class:`NoReference`: zeros, for reference-free losses (nothing is built or run).

Each is called as ``reference(policy, batch) -> (ref_chosen_logps, ref_rejected_logps)``, both float32 ``[B]``,
without gradients. Reference passes run in eval mode, which turns off dropout and gradient checkpointing.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import broadcast_object_list, gather_object
from datasets import Dataset
from tqdm.auto import tqdm

from hf_dpo import ref_cache
from hf_dpo.columns import REF_COLUMNS
from hf_dpo.logprobs import sequence_logps
from hf_dpo.model_utils import eval_mode, freeze
from hf_dpo.ref_cache import weights_fingerprint

logger = logging.getLogger(__name__)


def _batch_logps(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    logps, _ = sequence_logps(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
    chosen, rejected = logps.chunk(2)  # the collator stacks [chosen; rejected]
    return chosen, rejected


class NoReference:
    """Reference-free: ``log π_ref`` is taken as 0."""

    kind = "none"

    def __call__(self, policy: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        zeros = torch.zeros(batch["input_ids"].shape[0] // 2, dtype=torch.float32, device=batch["input_ids"].device)
        return zeros, zeros


class FrozenModelReference:
    """A separate model, frozen; the trainer moves it to its device."""

    kind = "model"

    def __init__(self, model: torch.nn.Module):
        self.model = freeze(model)

    def fingerprint(self, policy: torch.nn.Module) -> str:
        return weights_fingerprint(self.model)

    @torch.no_grad()
    def __call__(self, policy: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return _batch_logps(self.model, batch)


class DisabledAdapterReference:
    """The PEFT policy with its adapters disabled: the base model, without a second copy of its weights.

    ``policy`` may be wrapped (DDP, FSDP, DeepSpeed expose the PeftModel as ``.module``); the forward goes through
    the wrapper so a sharded model gathers its weights as it does for the policy's own forward.
    """

    kind = "peft_disabled"

    def fingerprint(self, policy: torch.nn.Module) -> str:
        return weights_fingerprint(getattr(policy, "module", policy), skip=lambda name: "lora_" in name)

    @torch.no_grad()
    def __call__(self, policy: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        peft_model = getattr(policy, "module", policy)
        with peft_model.disable_adapter(), eval_mode(policy):
            return _batch_logps(policy, batch)


class AdapterReference:
    """A frozen adapter of the PEFT policy (typically the SFT LoRA the run starts from) while another adapter
    trains: the base weights are held once, the reference is the SFT model and not the bare base."""

    kind = "adapter"

    def __init__(self, ref_adapter: str, train_adapter: str):
        self.ref_adapter, self.train_adapter = ref_adapter, train_adapter

    def fingerprint(self, policy: torch.nn.Module) -> str:
        trained = f".{self.train_adapter}."
        return weights_fingerprint(getattr(policy, "module", policy), skip=lambda name: trained in name)

    @torch.no_grad()
    def __call__(self, policy: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        peft_model = getattr(policy, "module", policy)
        peft_model.set_adapter(self.ref_adapter, inference_mode=True)  # stays frozen while active
        try:
            with eval_mode(policy):
                return _batch_logps(policy, batch)
        finally:
            peft_model.set_adapter(self.train_adapter)  # trainable again


def add_reference_adapter(
    peft_model: torch.nn.Module, train_adapter: str, ref_adapter: str | None
) -> AdapterReference:
    """Freeze ``ref_adapter`` (default: a new copy of ``train_adapter`` named ``"reference"``) as the reference."""
    if ref_adapter is None:
        from peft import get_peft_model_state_dict, set_peft_model_state_dict

        ref_adapter = "reference"
        while ref_adapter in peft_model.peft_config:
            ref_adapter += "_"
        peft_model.add_adapter(ref_adapter, copy.deepcopy(peft_model.peft_config[train_adapter]))
        weights = get_peft_model_state_dict(peft_model, adapter_name=train_adapter)
        set_peft_model_state_dict(peft_model, weights, adapter_name=ref_adapter)
    for name in (train_adapter, ref_adapter):
        if name not in peft_model.peft_config:
            raise ValueError(f"adapter {name!r} is not loaded in the PeftModel; it has {list(peft_model.peft_config)}")
    if ref_adapter == train_adapter:
        raise ValueError(f"model_adapter_name and ref_adapter_name are both {train_adapter!r}; they must differ")
    peft_model.set_adapter(train_adapter)  # trainable; every other adapter frozen
    return AdapterReference(ref_adapter, train_adapter)


class PrecomputedReference:
    """Reference log-probs computed before training and carried in the batch by the collator."""

    kind = "precomputed"

    def __call__(self, policy: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        missing = [name for name in REF_COLUMNS if name not in batch]
        if missing:
            raise KeyError(f"batch has no precomputed reference column(s) {missing}; it has {sorted(batch)}")
        return tuple(batch[name].to(torch.float32) for name in REF_COLUMNS)


@torch.no_grad()
def compute_reference_logps(
    reference: Callable[[torch.nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]],
    policy: torch.nn.Module,
    dataset: Dataset,
    collator: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]],
    batch_size: int,
    device: torch.device,
    description: str = "reference log-probs",
) -> tuple[torch.Tensor, torch.Tensor]:
    """One no-grad pass of ``reference`` over ``dataset``: float32 ``(chosen, rejected)`` log-probs, ``[N]`` each."""
    if not isinstance(dataset, Dataset):
        raise TypeError(f"precompute_ref_log_probs needs a map-style datasets.Dataset, got {type(dataset).__name__}")
    chosen, rejected = [], []
    for start in tqdm(range(0, len(dataset), batch_size), desc=description):
        rows = dataset.select(range(start, min(start + batch_size, len(dataset))))
        batch = {name: value.to(device) for name, value in collator(list(rows)).items()}
        ref_chosen, ref_rejected = reference(policy, batch)
        chosen.append(ref_chosen.float().cpu())
        rejected.append(ref_rejected.float().cpu())
    return torch.cat(chosen), torch.cat(rejected)


def with_reference_columns(dataset: Dataset, chosen: torch.Tensor, rejected: torch.Tensor) -> Dataset:
    """``dataset`` with the columns :class:`PrecomputedReference` reads (replacing any old ones)."""
    dataset = dataset.remove_columns([name for name in REF_COLUMNS if name in dataset.column_names])
    dataset = dataset.add_column(REF_COLUMNS[0], chosen.tolist())
    return dataset.add_column(REF_COLUMNS[1], rejected.tolist())


def precompute_columns(
    dataset: Any,
    split: str,
    *,
    reference: Callable[[torch.nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]],
    policy: torch.nn.Module,
    collator: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]],
    batch_size: int,
    accelerator: Any,
    cache_dir: str | Path | None,
    fingerprint: Callable[[torch.nn.Module], str],
) -> Any:
    """``dataset`` with reference log-prob columns: from the disk cache (see :mod:`hf_dpo.ref_cache`) when it has
    them, else computed with each process scoring a contiguous shard, gathered in order, and cached by rank 0."""
    if dataset is None or set(REF_COLUMNS) <= set(dataset.column_names or ()):
        return dataset
    cache_file, key = None, ""
    if cache_dir is not None:
        precision = f"{accelerator.mixed_precision}-{accelerator.device.type}"
        key = ref_cache.cache_key(fingerprint(policy), ref_cache.dataset_fingerprint(dataset), precision)
        cache_file = Path(cache_dir) / f"{key}.pt"
    # The main process reads the cache and tells the others, so all take the same branch around the collectives.
    cached = ref_cache.load(cache_file, key, len(dataset)) if cache_file and accelerator.is_main_process else None
    if accelerator.num_processes > 1:
        cached = broadcast_object_list([cached])[0]
    if cached is not None:
        logger.info("%s set: reference log-probs loaded from %s", split, cache_file)
        return with_reference_columns(dataset, *cached)

    processes, index = accelerator.num_processes, accelerator.process_index
    shard = dataset.shard(processes, index, contiguous=True) if processes > 1 else dataset
    chosen, rejected = compute_reference_logps(
        reference, policy, shard, collator, batch_size, accelerator.device, split
    )
    if processes > 1:
        shards = gather_object([(chosen.tolist(), rejected.tolist())])  # [(chosen, rejected) of rank 0, 1, ...]
        chosen = torch.tensor([value for shard_chosen, _ in shards for value in shard_chosen])
        rejected = torch.tensor([value for _, shard_rejected in shards for value in shard_rejected])
    if cache_file is not None and accelerator.is_main_process:
        ref_cache.save(cache_file, key, chosen, rejected)
        logger.info("%s set: reference log-probs cached in %s", split, cache_file)
    return with_reference_columns(dataset, chosen, rejected)
