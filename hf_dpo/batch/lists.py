"""Lists of answers to one prompt in one batch: each list a group ``prompt + answer_1 + ... + answer_k`` of the
shared-prompt layout (:class:`~hf_dpo.batch.shared_prompt.SharedPromptCollator` with ``lists=True``), or, for a model
that cannot read that layout, one padded row per answer (:class:`ListDataCollator`).

Lists of different lengths share a batch: sequences stay slot-major (every list's first answer, then every list's
second, ...: sequence ``group + G·(slot - 1)``), and a list shorter than the batch's longest has empty sequences in
its missing slots, which ``completion_mask`` marks False. Rows are tokenized list rows (``completions_input_ids``, best
first, and ``completion_scores``) or pairs, each a list of 2 (``chosen`` scored 1, ``rejected`` 0). Besides the
layout's columns a batch holds ``completion_mask`` (bool ``[G, K]``), ``completion_scores`` (float ``[G, K]``, 0 on the
padding) and, when the rows have them, the precomputed ``ref_completion_logps`` (float ``[G, K]``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from hf_dpo.batch.padded import number_columns, pad_sequences
from hf_dpo.data.columns import COMPLETIONS_COLUMN, ID_COLUMNS, LIST_ID_COLUMNS, LIST_REF_COLUMNS, SCORES_COLUMN

MASK_COLUMN = "completion_mask"  # [G, K] bool: a real answer (False: a shorter list's padding)
PAIR_SCORES = (1.0, 0.0)  # a pair as a list: chosen above rejected


def row_answers(row: dict[str, Any]) -> tuple[list[list[int]], list[float]]:
    """A tokenized row's answers and their scores: a list row's, or a pair's ``[chosen, rejected]``."""
    if COMPLETIONS_COLUMN in row:
        return row[COMPLETIONS_COLUMN], list(row[SCORES_COLUMN])
    return [row["chosen_input_ids"], row["rejected_input_ids"]], list(PAIR_SCORES)


def padded_matrix(values: list[list[float]], width: int, dtype: torch.dtype) -> torch.Tensor:
    """Rows of different lengths as ``[len(values), width]``, 0 past each row's end."""
    matrix = torch.zeros(len(values), width, dtype=dtype)
    for row, row_values in enumerate(values):
        matrix[row, : len(row_values)] = torch.tensor(row_values, dtype=dtype)
    return matrix


def list_batch(rows: list[dict[str, Any]]) -> tuple[list[tuple[list[int], list[list[int]]]], dict[str, torch.Tensor]]:
    """``(groups, columns)``: each row's ``(prompt, answers)``, and the batch's ``completion_mask``,
    ``completion_scores``, precomputed reference column and other number columns.

    >>> _, columns = list_batch([
    ...     {"prompt_input_ids": [5], "completions_input_ids": [[7, 2], [8, 2], [9, 2]], "completion_scores": [3, 2, 0]},
    ...     {"prompt_input_ids": [6], "chosen_input_ids": [3, 2], "rejected_input_ids": [4, 2]},
    ... ])
    >>> columns["completion_mask"], columns["completion_scores"]
    (tensor([[ True,  True,  True],
            [ True,  True, False]]), tensor([[3., 2., 0.],
            [1., 0., 0.]]))
    """
    answers, scores = zip(*map(row_answers, rows))
    width = max(map(len, answers))
    groups = [(row["prompt_input_ids"], list(row_answers_)) for row, row_answers_ in zip(rows, answers)]
    columns = {
        MASK_COLUMN: padded_matrix([[1.0] * len(a) for a in answers], width, torch.float32).bool(),
        SCORES_COLUMN: padded_matrix(scores, width, torch.float32),
    }
    for name in LIST_REF_COLUMNS:
        if all(name in row for row in rows):
            columns[name] = padded_matrix([row[name] for row in rows], width, torch.float32)
    skip = (*ID_COLUMNS, *LIST_ID_COLUMNS, SCORES_COLUMN, *LIST_REF_COLUMNS)
    return groups, {**number_columns(rows, skip), **columns}


@dataclass
class ListDataCollator:
    """Pads lists of answers into one batch the policy sees in one forward pass: one row ``prompt + answer`` per
    answer, slot-major (every list's first answer, then every list's second, ...), ``[K·G, T]``, for models that
    cannot read the shared-prompt layout. A shorter list's missing answer is a row holding its prompt's first token
    alone, nothing scored (a row with no token at all gives some attention kernels NaNs).

    >>> batch = ListDataCollator(pad_token_id=0)([
    ...     {"prompt_input_ids": [5, 6], "completions_input_ids": [[7, 2], [8, 9, 2], [4, 2]], "completion_scores": [3, 2, 1]},
    ...     {"prompt_input_ids": [5], "chosen_input_ids": [3, 2], "rejected_input_ids": [4, 2]},
    ... ])
    >>> batch["input_ids"]
    tensor([[5, 6, 7, 2, 0],
            [5, 3, 2, 0, 0],
            [5, 6, 8, 9, 2],
            [5, 4, 2, 0, 0],
            [5, 6, 4, 2, 0],
            [5, 0, 0, 0, 0]])
    >>> batch["labels"][4:]
    tensor([[-100, -100,    4,    2, -100],
            [-100, -100, -100, -100, -100]])
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if self.pad_token_id is None:
            raise ValueError("ListDataCollator needs a pad_token_id (the tokenizer has no pad token; set one)")
        groups, columns = list_batch(rows)
        width = columns[MASK_COLUMN].shape[1]
        sequences = [
            (prompt, answers[slot]) if slot < len(answers) else (prompt[:1], [])
            for slot in range(width)
            for prompt, answers in groups
        ]
        return {**pad_sequences(sequences, self.pad_token_id, self.pad_to_multiple_of), **columns}
