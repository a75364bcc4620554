"""Batching of tokenized preference pairs into one ``[2B, T]`` batch: chosen rows first, then rejected rows."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import torch

from hf_dpo.columns import ID_COLUMNS
from hf_dpo.logprobs import IGNORE_INDEX


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
        sequences, completion_starts = [], []
        for side in ("chosen_input_ids", "rejected_input_ids"):
            for row in rows:
                sequences.append(list(row["prompt_input_ids"]) + list(row[side]))
                completion_starts.append(len(row["prompt_input_ids"]))
        length = max(len(sequence) for sequence in sequences)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of

        input_ids = torch.full((len(sequences), length), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), length), dtype=torch.long)
        labels = torch.full((len(sequences), length), IGNORE_INDEX, dtype=torch.long)
        for i, (sequence, start) in enumerate(zip(sequences, completion_starts)):
            input_ids[i, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
            attention_mask[i, : len(sequence)] = 1
            labels[i, start : len(sequence)] = input_ids[i, start : len(sequence)]

        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        for key in rows[0].keys() - set(ID_COLUMNS):
            values = [row[key] for row in rows]
            if all(isinstance(value, numbers.Number) for value in values):
                batch[key] = torch.tensor(values)
        return batch
