"""hf_dpo.batch.ScoredBatch: one step's batch, built once: the scored tokens, counts and weights by hand, one host
synchronisation for the shared-prompt layout, and the model's mask built once per step."""

from typing import ClassVar

import torch
from tiny import build_model, build_tokenizer, preference_rows

import hf_dpo.batch.scored_batch as scored_batch_module
from hf_dpo import DPOTrainer, DPOTrainingArguments
from hf_dpo.batch import DPODataCollator, ScoredBatch, SharedPromptCollator

ROWS = [
    {"prompt_input_ids": [5, 6], "chosen_input_ids": [7, 2], "rejected_input_ids": [8, 9, 2]},
    {"prompt_input_ids": [5], "chosen_input_ids": [3, 2], "rejected_input_ids": [4, 2]},
]


def test_a_shared_prompt_batch_by_hand():
    """Row 0: 5 6 | 7 2 | 8 9 2 (flat 0..6); row 1: 5 | 3 2 | 4 2 | pad pad (flat 7..13). Sequences in the padded
    order: chosen 0, chosen 1, rejected 0, rejected 1. The rejected parts' first tokens (flat 4 and 10) are
    predicted from their prompts' last tokens (flat 1 and 7)."""
    batch = ScoredBatch.from_collated(SharedPromptCollator(0)(ROWS), ld_alpha=0.5)
    tokens = batch.tokens
    assert tokens.target.tolist() == [2, 3, 4, 5, 6, 8, 9, 10, 11]
    assert tokens.source.tolist() == [1, 2, 1, 4, 5, 7, 8, 7, 10]
    assert tokens.sequence.tolist() == [0, 0, 2, 2, 2, 1, 1, 3, 3]
    assert (tokens.num_sequences, tokens.num_groups) == (4, 2)
    assert tokens.counts().tolist() == [2, 2, 3, 2]
    assert batch.input_tokens.tolist() == [4, 3, 5, 3]  # prompt + completion, as each padded row holds them
    # LD-DPO: pair 0 shares 2 tokens, so the rejected completion's third token weighs 0.5
    assert batch.token_weights.tolist() == [1.0, 1.0, 1.0, 1.0, 0.5, 1.0, 1.0, 1.0, 1.0]
    assert batch.shared_prompt and set(batch.columns) == set()


def test_the_padded_layout_gives_the_same_sequences():
    shared = ScoredBatch.from_collated(SharedPromptCollator(0)(ROWS))
    padded = ScoredBatch.from_collated(DPODataCollator(0)(ROWS))
    assert padded.tokens.counts().tolist() == shared.tokens.counts().tolist()
    assert padded.input_tokens.tolist() == shared.input_tokens.tolist()
    assert padded.tokens.labels.tolist() == [7, 2, 3, 2, 8, 9, 2, 4, 2]  # rows in order: chosen 0, 1, rejected 0, 1
    assert not padded.shared_prompt and padded.model_inputs(build_model(build_tokenizer())).keys() == {
        "input_ids",
        "attention_mask",
    }


class _Watched(torch.Tensor):
    """A tensor that records every call that makes the host wait for the device (a value read back, or an op whose
    output size depends on the data), through everything computed from it."""

    calls: ClassVar[list[str]] = []
    SYNCING: ClassVar[set[str]] = {
        "cpu",
        "tolist",
        "item",
        "nonzero",
        "__bool__",
        "__int__",
        "__index__",
        "bincount",
        "unique",
        "masked_select",
    }

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", str(func))
        boolean_index = name == "__getitem__" and any(
            isinstance(a, torch.Tensor) and a.dtype == torch.bool for a in args[1:] if isinstance(a, torch.Tensor)
        )
        if name in cls.SYNCING or boolean_index:
            cls.calls.append(name)
        return super().__torch_function__(func, types, args, kwargs or {})


def test_the_shared_prompt_batch_costs_one_host_sync():
    columns = SharedPromptCollator(0, padding_free=True)(ROWS * 3)
    watched = {name: value.as_subclass(_Watched) for name, value in columns.items()}
    _Watched.calls = []
    batch = ScoredBatch.from_collated(watched, ld_alpha=0.5)
    batch.tokens.counts(), batch.tokens.per_sequence(batch.token_weights)
    assert _Watched.calls == ["cpu"]  # the token count and the groups' places, read at once
    assert batch.num_sequences == 12
    tensor = torch.tensor([0, 1, 2]).as_subclass(_Watched)
    _Watched.calls = []
    tensor.nonzero(), tensor[tensor > 0], torch.bincount(tensor)  # the watch sees what the old layout code did
    assert _Watched.calls == ["nonzero", "__getitem__", "bincount"]


def test_a_step_builds_the_models_inputs_once_for_the_policy_and_its_reference(tmp_path, monkeypatch):
    tokenizer = build_tokenizer()
    args = DPOTrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4, report_to="none", use_cpu=True, ref_logps_cache=False
    )
    trainer = DPOTrainer(
        build_model(tokenizer), args=args, train_dataset=preference_rows(8), processing_class=tokenizer
    )
    assert trainer.reference.model is not None  # a frozen copy: a second model reads the batch
    built = []
    real = scored_batch_module.SharedPromptCall
    monkeypatch.setattr(scored_batch_module, "SharedPromptCall", lambda *a: built.append(a[1]) or real(*a))
    columns = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    trainer._step(trainer.model.train(), columns)
    assert built == ["sdpa"]  # the spans for the attention function: once, for both models
