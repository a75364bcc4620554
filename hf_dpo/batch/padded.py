"""Batching of tokenized rows into one batch for one forward pass: preference pairs as ``[2B, T]`` (chosen rows
first, then rejected rows), unpaired (KTO) rows as ``[2N, T]`` (completions, then their KL counterparts)."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from hf_dpo.data.columns import ID_COLUMNS, IGNORE_INDEX, KL_COMPLETION_COLUMN, LABEL_COLUMN, UNPAIRED_ID_COLUMNS
from hf_dpo.data.unpaired import kl_partners


@dataclass
class DPODataCollator:
    """Pads preference pairs into one batch the policy sees in a single forward pass.

    Each row holds ``prompt_input_ids``, ``chosen_input_ids`` and ``rejected_input_ids`` (lists of token ids; the
    completions without the prompt). The batch stacks the ``B`` sequences ``prompt + chosen`` and then the ``B``
    sequences ``prompt + rejected``, so the loss can split it with ``chunk(2)``. Sequences are right-padded with
    ``pad_token_id``; ``labels`` copy ``input_ids`` except on prompt and padding tokens, where they are ``-100``.
    Other per-row columns holding numbers (such as precomputed reference log-probs) come through as ``[B]``
    tensors; columns of other types (raw text) are left out.

    Args:
        pad_token_id (`int`): the id written into padding positions of ``input_ids``.
        pad_to_multiple_of (`int`, *optional*): round the padded length up to a multiple of this.

    Example, two pairs sharing nothing (pad id 0):

    >>> collator = DPODataCollator(pad_token_id=0)
    >>> batch = collator([
    ...     {"prompt_input_ids": [5, 6], "chosen_input_ids": [7, 2], "rejected_input_ids": [8, 9, 2]},
    ...     {"prompt_input_ids": [5], "chosen_input_ids": [3, 2], "rejected_input_ids": [4, 2]},
    ... ])
    >>> batch["input_ids"]
    tensor([[5, 6, 7, 2, 0],
            [5, 3, 2, 0, 0],
            [5, 6, 8, 9, 2],
            [5, 4, 2, 0, 0]])
    >>> batch["attention_mask"]
    tensor([[1, 1, 1, 1, 0],
            [1, 1, 1, 0, 0],
            [1, 1, 1, 1, 1],
            [1, 1, 1, 0, 0]])
    >>> batch["labels"]
    tensor([[-100, -100,    7,    2, -100],
            [-100,    3,    2, -100, -100],
            [-100, -100,    8,    9,    2],
            [-100,    4,    2, -100, -100]])
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if self.pad_token_id is None:
            raise ValueError("DPODataCollator needs a pad_token_id (the tokenizer has no pad token; set one)")
        sequences = [
            (row["prompt_input_ids"], row[side]) for side in ("chosen_input_ids", "rejected_input_ids") for row in rows
        ]
        batch = pad_sequences(sequences, self.pad_token_id, self.pad_to_multiple_of)
        return {**batch, **number_columns(rows, ID_COLUMNS)}


def pad_sequences(
    sequences: list[tuple[Sequence[int], Sequence[int]]], pad_token_id: int, pad_to_multiple_of: int | None = None
) -> dict[str, torch.Tensor]:
    """``(prompt, completion)`` id lists -> right-padded ``input_ids``, ``attention_mask`` and ``labels`` (the
    completion's ids, ``-100`` on prompt and padding), one row per pair of lists."""
    length = max(len(prompt) + len(completion) for prompt, completion in sequences)
    if pad_to_multiple_of:
        length = -(-length // pad_to_multiple_of) * pad_to_multiple_of
    input_ids = torch.full((len(sequences), length), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), length), dtype=torch.long)
    labels = torch.full((len(sequences), length), IGNORE_INDEX, dtype=torch.long)
    for i, (prompt, completion) in enumerate(sequences):
        end = len(prompt) + len(completion)
        input_ids[i, :end] = torch.tensor([*prompt, *completion], dtype=torch.long)
        attention_mask[i, :end] = 1
        labels[i, len(prompt) : end] = input_ids[i, len(prompt) : end]
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def number_columns(rows: list[dict[str, Any]], skip: Sequence[str]) -> dict[str, torch.Tensor]:
    """Per-row columns holding numbers (such as precomputed reference log-probs) as ``[B]`` tensors; columns of
    other types (raw text) are left out."""
    columns = {}
    for key in rows[0].keys() - set(skip):
        values = [row[key] for row in rows]
        if all(isinstance(value, numbers.Number) for value in values):
            columns[key] = torch.tensor(values)
    return columns


@dataclass
class UnpairedDataCollator:
    """Pads unpaired (KTO) rows into one batch: the ``N`` sequences ``prompt + completion`` and then, when
    ``with_kl``, the ``N`` sequences ``prompt + another row's completion`` whose log-probs estimate KTO's
    ``KL(π‖π_ref)``: ``[2N, T]`` for one forward pass.

    Each row holds ``prompt_input_ids``, ``completion_input_ids`` and ``label`` (bool), and may hold
    ``kl_completion_input_ids`` (its KL counterpart, fixed by the trainer: see :func:`~hf_dpo.data.unpaired.with_kl_completions`);
    without it, counterparts are taken within the batch (:func:`kl_partners`). ``label`` becomes a bool ``[N]``
    tensor; other number columns come through as ``[N]`` tensors.

    >>> collator = UnpairedDataCollator(pad_token_id=0)
    >>> batch = collator([
    ...     {"prompt_input_ids": [5, 6], "completion_input_ids": [7, 2], "label": True},
    ...     {"prompt_input_ids": [5], "completion_input_ids": [3, 4, 2], "label": False},
    ... ])
    >>> batch["input_ids"]  # two completions, then each prompt with the other row's completion
    tensor([[5, 6, 7, 2, 0],
            [5, 3, 4, 2, 0],
            [5, 6, 3, 4, 2],
            [5, 7, 2, 0, 0]])
    >>> batch["labels"][2:]
    tensor([[-100, -100,    3,    4,    2],
            [-100,    7,    2, -100, -100]])
    >>> batch["label"]
    tensor([ True, False])
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None
    with_kl: bool = True

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if self.pad_token_id is None:
            raise ValueError("UnpairedDataCollator needs a pad_token_id (the tokenizer has no pad token; set one)")
        sequences = unpaired_sequences(rows, self.with_kl)
        batch = pad_sequences(sequences, self.pad_token_id, self.pad_to_multiple_of)
        batch[LABEL_COLUMN] = torch.tensor([bool(row[LABEL_COLUMN]) for row in rows], dtype=torch.bool)
        skip = (*UNPAIRED_ID_COLUMNS, KL_COMPLETION_COLUMN, LABEL_COLUMN)
        return {**batch, **number_columns(rows, skip)}


def unpaired_sequences(rows: list[dict[str, Any]], with_kl: bool) -> list[tuple[Sequence[int], Sequence[int]]]:
    """``(prompt, completion)`` for each row, then, with ``with_kl``, ``(prompt, KL counterpart)`` for each row:
    the row's ``kl_completion_input_ids`` when every row has one, else another row's completion
    (:func:`kl_partners`)."""
    prompts = [row["prompt_input_ids"] for row in rows]
    sequences = [(row["prompt_input_ids"], row["completion_input_ids"]) for row in rows]
    if with_kl:
        if all(KL_COMPLETION_COLUMN in row for row in rows):
            kl_completions = [row[KL_COMPLETION_COLUMN] for row in rows]
        else:
            kl_completions = [rows[partner]["completion_input_ids"] for partner in kl_partners(prompts)]
        sequences += list(zip(prompts, kl_completions))
    return sequences
