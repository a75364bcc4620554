"""A trained run as ``hf-dpo eval`` loads it: what its model card says, the base model of an adapter, the policy and
its reference, the tokenizer, and the settings the run trained with.

    models = load_models(options, torch.device("cpu"))   # options: the parsed ``hf-dpo eval`` flags

Which reference is loaded, and why, is told in :mod:`hf_dpo.tools.evaluation`'s docstring.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from hf_dpo.config.recipe import UserError

logger = logging.getLogger("hf_dpo.eval")

# DPOTrainingArguments fields that change the numbers, read from the run's model card when not given as flags
CARD_FIELDS = ("beta", "loss_type", "max_length", "max_prompt_length", "max_completion_length", "truncation_mode")


def card_facts(folder: str | os.PathLike) -> dict[str, Any]:
    """What a model card written by hf_dpo says about its run: ``base_model`` (front matter), the packaged copy
    training started from, and the hyper-parameter table's values (``beta``, ``loss_type``, ...)."""
    path = Path(folder) / "README.md"
    if not path.is_file():
        return {}
    text = path.read_text(encoding="utf-8")
    facts: dict[str, Any] = {}
    front = re.match(r"---\n(.*?)\n---", text, flags=re.DOTALL)
    if front and isinstance(metadata := yaml.safe_load(front.group(1)), dict) and metadata.get("base_model"):
        facts["base_model"] = metadata["base_model"]
    if packaged := re.search(r"Training started from `(hf_dpo:[^`]+)`", text):
        facts["packaged_copy"] = packaged.group(1)
    for name, value in re.findall(r"^\| (\w+) \| (.+?) \|$", text, flags=re.MULTILINE):
        if name in CARD_FIELDS:
            parsed = yaml.safe_load(value) if value not in ("None", "") else None
            facts[name] = parsed
    return facts


def adapter_base(path: str, base: str | None = None) -> str | None:
    """The model an adapter folder's weights go on (``None``: ``path`` is not an adapter): ``base`` when given,
    else the packaged copy its card says training started from, else ``adapter_config.json``'s base model."""
    config_file = Path(path) / "adapter_config.json"
    if not config_file.is_file():
        return None
    if base:
        return base
    packaged = card_facts(path).get("packaged_copy")
    if packaged:
        logger.info("%s: its model card says training started from %s; loading that as the base", path, packaged)
        return packaged
    name = json.loads(config_file.read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not name:
        raise UserError(f"{config_file} names no base_model_name_or_path; pass --base")
    return name


def load_model_or_adapter(name: str, role: str, base: str | None = None, **init_kwargs: Any) -> tuple[Any, bool]:
    """A causal LM, or a PeftModel when ``name`` is an adapter folder (its base loaded first); and whether it is
    an adapter."""
    from hf_dpo.models.loading import load_causal_lm

    base_name = adapter_base(name, base)
    if base_name is None:
        return load_causal_lm(name, role=role, **init_kwargs), False
    from peft import PeftModel

    from hf_dpo.models.upstream_noise import PEFT_READS_DEPRECATED_CHECKPOINTING, silenced

    model = load_causal_lm(base_name, role=f"{role} base", **init_kwargs)
    logger.info("%s adapter: %s", role, name)
    with silenced(
        PEFT_READS_DEPRECATED_CHECKPOINTING
    ):  # peft's own call, nothing a user can act on (hf_dpo.models.upstream_noise)
        return PeftModel.from_pretrained(model, name), True


def load_eval_tokenizer(name: str, base: str | None) -> Any:
    """The tokenizer saved with the run (the Trainer saves it next to the adapter), else the base model's; with a
    pad token (the EOS when it has none, as training does)."""
    from hf_dpo.data.vision import text_tokenizer
    from hf_dpo.models.loading import load_tokenizer

    saved = Path(name) / "tokenizer_config.json"
    tokenizer = load_tokenizer(name if saved.is_file() or base is None else base)  # a processor, for images
    text = text_tokenizer(tokenizer)
    if text.pad_token is None:
        text.pad_token = text.eos_token
    return tokenizer


@dataclass
class Models:
    """The policy, the reference (:class:`hf_dpo.reference.kinds.Reference`) and words for both."""

    policy: Any
    reference: Any
    policy_words: str
    reference_words: str
    reference_model: Any = None  # a separate reference model (for generation), if any

    def reference_context(self) -> Any:
        """Where the reference generates: its own model, or the policy with adapters disabled."""
        from hf_dpo.reference.kinds import DisabledAdapterReference

        if isinstance(self.reference, DisabledAdapterReference):
            return self.policy.disable_adapter()
        import contextlib

        return contextlib.nullcontext()

    @property
    def generator_of_reference(self) -> Any:
        from hf_dpo.reference.kinds import NoReference

        if isinstance(self.reference, NoReference):
            return None
        return self.reference_model if self.reference_model is not None else self.policy


def load_models(options: argparse.Namespace, device: torch.device) -> Models:
    """Policy and reference as the module docstring says (``options``: the parsed ``hf-dpo eval`` flags)."""
    from hf_dpo.reference.kinds import DisabledAdapterReference, FrozenModelReference, NoReference

    init_kwargs = {"dtype": options.dtype} if options.dtype else {}
    policy, is_adapter = load_model_or_adapter(options.model, "policy", options.base, **init_kwargs)
    policy.to(device).eval()
    policy_words = f"{options.model} ({'adapter' if is_adapter else 'model'})"
    ref = options.ref
    if ref is None and not is_adapter:
        ref = card_facts(options.model).get("base_model") if os.path.isdir(options.model) else None
        if ref is None:
            raise UserError(
                f"{options.model} is a full model and nothing records the model it was trained from; pass --ref "
                "(the model before training), or --ref none for no reference"
            )
    if ref is None:
        return Models(policy, DisabledAdapterReference(), policy_words, "its base model, adapters disabled")
    if ref.lower() == "none":
        return Models(policy, NoReference(), policy_words, "none (log-probs count as 0)")
    reference_model, _ = load_model_or_adapter(ref, "reference", **init_kwargs)
    reference_model.to(device)
    return Models(policy, FrozenModelReference(reference_model), policy_words, ref, reference_model)


def eval_arguments(options: argparse.Namespace, output_dir: str) -> Any:
    """`DPOTrainingArguments` for the step: flags, else the model card's values, else the defaults."""
    from hf_dpo.config.training_arguments import DPOTrainingArguments

    card = card_facts(options.model) if os.path.isdir(options.model) else {}
    values = {name: card[name] for name in CARD_FIELDS if name in card}
    values |= {name: getattr(options, name) for name in CARD_FIELDS if getattr(options, name, None) is not None}
    on_cpu = not torch.cuda.is_available()
    return DPOTrainingArguments(output_dir=output_dir, report_to="none", use_cpu=on_cpu, **values)
