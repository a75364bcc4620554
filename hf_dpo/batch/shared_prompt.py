"""The shared-prompt layout's collator: each pair (or unpaired row) as one group ``prompt + completions``, the
prompt held once.

Position ids restart at the prompt's length for each later completion, and the attention (:mod:`hf_dpo.batch.attention`)
hides each completion from the others, so every token sees exactly what it sees in its own padded row (the same
logits, to float rounding). Several groups may share a row (``padding_free``). Unpaired (KTO) rows are groups too:
``prompt + completion + KL counterpart``, or ``prompt + completion``. Which tokens such a batch scores is in
:mod:`hf_dpo.batch.scored_tokens`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from hf_dpo.batch.lists import list_batch
from hf_dpo.batch.padded import number_columns, unpaired_sequences
from hf_dpo.batch.scored_tokens import GROUP_COLUMN, SEGMENT_COLUMN
from hf_dpo.data.columns import ID_COLUMNS, IGNORE_INDEX, KL_COMPLETION_COLUMN, LABEL_COLUMN, UNPAIRED_ID_COLUMNS


@dataclass
class SharedPromptCollator:
    """Batches tokenized rows in the shared-prompt layout: each pair (or unpaired row) as one group
    ``prompt + completions``, a row per group right-padded to the longest, or all groups in one row without
    padding (``padding_free``).

    Rows are what :class:`~hf_dpo.batch.padded.DPODataCollator` takes (or, with ``unpaired``,
    :class:`~hf_dpo.batch.padded.UnpairedDataCollator`, with its KL counterparts when ``with_kl``; with ``lists``,
    lists of answers or pairs, each list one group: :mod:`hf_dpo.batch.lists`). The batch holds
    ``input_ids``, ``attention_mask`` (1 on tokens), ``labels`` (-100 on prompts and padding), ``position_ids``,
    ``group_ids`` and ``segment_ids``, plus the rows' number columns.

    >>> collator = SharedPromptCollator(pad_token_id=0)
    >>> batch = collator([
    ...     {"prompt_input_ids": [5, 6], "chosen_input_ids": [7, 2], "rejected_input_ids": [8, 9, 2]},
    ...     {"prompt_input_ids": [5], "chosen_input_ids": [3, 2], "rejected_input_ids": [4, 2]},
    ... ])
    >>> batch["input_ids"]
    tensor([[5, 6, 7, 2, 8, 9, 2],
            [5, 3, 2, 4, 2, 0, 0]])
    >>> batch["position_ids"]
    tensor([[0, 1, 2, 3, 2, 3, 4],
            [0, 1, 2, 1, 2, 0, 0]])
    >>> batch["segment_ids"]
    tensor([[ 0,  0,  1,  1,  2,  2,  2],
            [ 0,  1,  1,  2,  2, -1, -1]])
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None
    padding_free: bool = False
    unpaired: bool = False
    with_kl: bool = True
    lists: bool = False

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if self.pad_token_id is None:
            raise ValueError("SharedPromptCollator needs a pad_token_id (the tokenizer has no pad token; set one)")
        if self.lists:  # the answers' mask and scores come with the groups
            groups, columns = list_batch(rows)
            return {**pack_groups(groups, self.pad_token_id, self.pad_to_multiple_of, self.padding_free), **columns}
        if self.unpaired:
            sequences = unpaired_sequences(rows, self.with_kl)  # [completions; KL counterparts], same prompts
            groups = [(sequences[i][0], [c for _, c in sequences[i :: len(rows)]]) for i in range(len(rows))]
            skip = (*UNPAIRED_ID_COLUMNS, KL_COMPLETION_COLUMN, LABEL_COLUMN)
        else:
            groups = [(row["prompt_input_ids"], [row["chosen_input_ids"], row["rejected_input_ids"]]) for row in rows]
            skip = ID_COLUMNS
        batch = pack_groups(groups, self.pad_token_id, self.pad_to_multiple_of, self.padding_free)
        if self.unpaired:
            batch[LABEL_COLUMN] = torch.tensor([bool(row[LABEL_COLUMN]) for row in rows], dtype=torch.bool)
        return {**batch, **number_columns(rows, skip)}


def pack_groups(
    groups: list[tuple[list[int], list[list[int]]]],
    pad_token_id: int,
    pad_to_multiple_of: int | None = None,
    one_row: bool = False,
) -> dict[str, torch.Tensor]:
    """``(prompt, completions)`` id lists -> the shared-prompt batch (see :class:`SharedPromptCollator`)."""
    lengths = [len(prompt) + sum(len(c) for c in completions) for prompt, completions in groups]
    # One group per row by default: each group then sits at the same positions whatever the batch, so its
    # values are bit-identical across batch compositions (a precomputed reference equals an on-the-fly one).
    rows = [list(range(len(groups)))] if one_row else [[index] for index in range(len(groups))]
    fill = [sum(lengths[index] for index in row) for row in rows]
    width = max(fill)
    if pad_to_multiple_of:
        width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    shape = (len(rows), width)
    batch = {
        "input_ids": torch.full(shape, pad_token_id, dtype=torch.long),
        "attention_mask": torch.zeros(shape, dtype=torch.long),
        "labels": torch.full(shape, IGNORE_INDEX, dtype=torch.long),
        "position_ids": torch.zeros(shape, dtype=torch.long),
        GROUP_COLUMN: torch.full(shape, -1, dtype=torch.long),
        SEGMENT_COLUMN: torch.full(shape, -1, dtype=torch.long),
    }
    for r, members in enumerate(rows):
        offset = 0
        for index in sorted(members):  # groups in batch order within a row
            prompt, completions = groups[index]
            for segment, ids in enumerate([prompt, *completions]):
                start = len(prompt) if segment else 0
                span = slice(offset, offset + len(ids))
                batch["input_ids"][r, span] = torch.tensor(ids, dtype=torch.long)
                batch["position_ids"][r, span] = torch.arange(start, start + len(ids))
                batch[SEGMENT_COLUMN][r, span] = segment
                batch[GROUP_COLUMN][r, span] = index
                if segment:
                    batch["labels"][r, span] = batch["input_ids"][r, span]
                offset += len(ids)
        batch["attention_mask"][r, :offset] = 1
    return batch
