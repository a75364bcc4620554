"""Batch layouts: where the sequences of a batch sit in the rows the model reads, and which position scores which
token of which sequence.

Two layouts, told apart by the batch's columns:

- **padded** (:class:`~hf_dpo.batch.padded.DPODataCollator`'s contract): one row per sequence, ``[2B, T]``, the ``B``
  chosen sequences first, then the ``B`` rejected ones; each row is ``prompt + completion``, right-padded.
- **shared prompt** (:class:`SharedPromptCollator`): one *group* per pair, ``prompt + chosen + rejected``, the
  prompt held once. Position ids restart at the prompt's length for the rejected part, and the attention mask
  hides the chosen tokens from the rejected ones, so every token sees exactly what it sees in its own padded row
  (the same logits, to float rounding). Several groups may share a row (packing): the mask keeps them apart.
  Unpaired (KTO) rows are groups too: ``prompt + completion + KL counterpart``, or ``prompt + completion``.

Both give the same :class:`ScoredTokens`, so :mod:`hf_dpo.logprobs.scoring` scores any layout the same way and returns
per-sequence values in the padded layout's order (slot-major: every group's first completion, then every
group's second).

The shared-prompt layout needs a 4D mask the model applies as given: ``sdpa`` (a bool mask) and ``eager`` (an
additive float mask: 0 allowed, the dtype's minimum hidden; ``eager`` misreads a bool one). FlashAttention takes
no 4D mask and sliding-window or linear-attention layers would ignore or misread it: those models keep the padded
layout (:func:`shared_prompt_support` says why).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from hf_dpo.batch.padded import number_columns, unpaired_sequences
from hf_dpo.data.columns import ID_COLUMNS, IGNORE_INDEX, KL_COMPLETION_COLUMN, LABEL_COLUMN, UNPAIRED_ID_COLUMNS

GROUP_COLUMN = "group_ids"  # per token: its group's index in the batch, -1 on padding
SEGMENT_COLUMN = "segment_ids"  # per token: 0 prompt, k the k-th completion of its group, -1 padding


@dataclass
class ScoredTokens:
    """The tokens a batch scores, flattened over its ``[R, L]`` positions (``M`` tokens).

    Attributes:
        source: `[M]` flat index ``r * L + c`` of the position whose output predicts the token.
        target: `[M]` flat index of the token itself (where its label and token weight sit).
        labels: `[M]` the token ids.
        sequence: `[M]` the sequence each token belongs to, in the padded layout's row order.
        num_sequences: the number of sequences of the batch.
    """

    source: torch.Tensor
    target: torch.Tensor
    labels: torch.Tensor
    sequence: torch.Tensor
    num_sequences: int

    def per_sequence(self, values: torch.Tensor) -> torch.Tensor:
        """Sums of ``values`` (`[M]` or `[M, k]`) over each sequence's tokens: `[num_sequences, ...]`."""
        out = values.new_zeros((self.num_sequences, *values.shape[1:]))
        return out.index_add(0, self.sequence, values)

    def counts(self) -> torch.Tensor:
        return torch.bincount(self.sequence, minlength=self.num_sequences)


def is_shared_prompt(batch: dict[str, Any]) -> bool:
    return SEGMENT_COLUMN in batch


def scored_tokens(batch: dict[str, torch.Tensor]) -> ScoredTokens:
    """Which position scores which token of which sequence, for either layout."""
    labels = batch["labels"]
    width = labels.shape[1]
    flat_labels = labels.reshape(-1)
    target = (flat_labels != IGNORE_INDEX).nonzero().squeeze(1)
    if not is_shared_prompt(batch):  # padded: position t - 1 of the same row predicts token t
        target = target[target % width != 0]
        return ScoredTokens(target - 1, target, flat_labels[target], target // width, labels.shape[0])
    groups, segments = batch[GROUP_COLUMN].reshape(-1), batch[SEGMENT_COLUMN].reshape(-1)
    num_groups, slots = _group_counts(batch)
    source = target - 1
    # A later completion's first token is predicted from its prompt's last token, not from the tokens before it.
    restarts = (segments[target] > 1) & (segments[source.clamp(min=0)] != segments[target])
    source = torch.where(restarts, _prompt_ends(groups, segments, num_groups)[groups[target]], source)
    valid = source >= 0
    clamped = source.clamp(min=0)
    valid &= groups[clamped] == groups[target]  # an empty prompt: the first token has no predecessor
    valid &= (segments[clamped] == 0) | (segments[clamped] == segments[target])
    source, target = source[valid], target[valid]
    sequence = groups[target] + num_groups * (segments[target] - 1)
    return ScoredTokens(source, target, flat_labels[target], sequence, num_groups * slots)


def num_sequences(batch: dict[str, torch.Tensor]) -> int:
    """How many sequences the batch scores (its rows, in the padded layout)."""
    if not is_shared_prompt(batch):
        return batch["input_ids"].shape[0]
    num_groups, slots = _group_counts(batch)
    return num_groups * slots


def _group_counts(batch: dict[str, torch.Tensor]) -> tuple[int, int]:
    """(groups, completions per group) of a shared-prompt batch: one host sync, as the sequence count needs."""
    counts = torch.stack([batch[GROUP_COLUMN].max(), batch[SEGMENT_COLUMN].max()]).tolist()
    return counts[0] + 1, max(counts[1], 1)


def _prompt_ends(groups: torch.Tensor, segments: torch.Tensor, num_groups: int) -> torch.Tensor:
    """The flat index of each group's last prompt token (-1 for an empty prompt)."""
    positions = torch.arange(groups.numel(), device=groups.device)
    in_prompt = segments == 0
    ends = torch.full((num_groups,), -1, dtype=torch.long, device=groups.device)
    return ends.scatter_reduce(0, groups[in_prompt], positions[in_prompt], reduce="amax")


def input_token_counts(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per sequence, its prompt's and completion's tokens (what its padded row holds without padding): `[N]`."""
    if not is_shared_prompt(batch):
        return batch["attention_mask"].sum(dim=1)
    num_groups, slots = _group_counts(batch)
    groups, segments = batch[GROUP_COLUMN].reshape(-1), batch[SEGMENT_COLUMN].reshape(-1)
    real = groups >= 0
    prompts = torch.bincount(groups[real & (segments == 0)], minlength=num_groups)
    completion = real & (segments > 0)
    sequence = groups[completion] + num_groups * (segments[completion] - 1)
    return torch.bincount(sequence, minlength=num_groups * slots) + prompts.repeat(slots)


def ld_token_weights(batch: dict[str, torch.Tensor], ld_alpha: float) -> torch.Tensor:
    """LD-DPO's weights, aligned with ``batch["labels"]``: 1 on the first ``min(len_chosen, len_rejected)``
    completion tokens of each pair, ``ld_alpha`` on the longer completion's tail (any layout).

    >>> labels = torch.tensor([[-100, 5, 6, 7], [-100, 8, -100, -100]])  # chosen: 3 tokens, rejected: 1
    >>> ld_token_weights({"labels": labels}, 0.5)
    tensor([[1.0000, 1.0000, 0.5000, 0.5000],
            [1.0000, 1.0000, 1.0000, 1.0000]])
    """
    labels = batch["labels"]
    tokens = scored_tokens(batch)
    target, sequence, num_sequences = tokens.target, tokens.sequence, tokens.num_sequences
    lengths = tokens.counts()
    chosen_lengths, rejected_lengths = lengths.chunk(2)
    shared = torch.minimum(chosen_lengths, rejected_lengths).repeat(2)
    # tokens of a sequence are contiguous and in order: rank = index - index of the sequence's first token
    index = torch.arange(target.numel(), device=labels.device)
    first = torch.full((num_sequences,), target.numel(), device=labels.device, dtype=torch.long)
    first = first.scatter_reduce(0, sequence, index, reduce="amin")
    rank = index - first[sequence] + 1
    weights = torch.ones(labels.numel(), dtype=torch.float32, device=labels.device)
    weights[target] = torch.where(rank > shared[sequence], ld_alpha, 1.0)
    return weights.reshape(labels.shape)


# ---- what the model reads ------------------------------------------------------------------------------------


def model_inputs(batch: dict[str, torch.Tensor], attention: str, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """``input_ids`` and the attention inputs of ``batch`` for a model whose attention implementation is
    ``attention`` and whose activations are ``dtype``: the 2D mask as it is, or the shared-prompt layout's 4D mask
    and position ids."""
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    if not is_shared_prompt(batch):
        return inputs
    if attention not in ("sdpa", "eager"):  # the attention implementations that apply a 4D mask as given
        raise ValueError(
            f"this batch shares each prompt between its completions, which needs a 4D attention mask; the model's "
            f"attention implementation {attention!r} does not take one (use 'sdpa' or 'eager', or the padded "
            "DPODataCollator)"
        )
    allowed = attention_allowed(batch[GROUP_COLUMN], batch[SEGMENT_COLUMN])
    if attention == "eager":  # eager adds the mask to the scores; a bool mask would be read as 0/1 additions
        mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
        allowed = mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return {**inputs, "attention_mask": allowed, "position_ids": batch["position_ids"]}


def attention_allowed(groups: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """``[R, 1, L, L]`` bool: query ``q`` may attend key ``k`` when ``k <= q`` in the same group and ``k`` is in the
    prompt or in ``q``'s own completion; padding attends itself alone (a row of nothing but masks gives NaNs).

    >>> groups = torch.tensor([[0, 0, 0, 0, -1]])
    >>> segments = torch.tensor([[0, 1, 2, 2, -1]])  # prompt, chosen, rejected x2, padding
    >>> attention_allowed(groups, segments)[0, 0].int()
    tensor([[1, 0, 0, 0, 0],
            [1, 1, 0, 0, 0],
            [1, 0, 1, 0, 0],
            [1, 0, 1, 1, 0],
            [0, 0, 0, 0, 1]], dtype=torch.int32)
    """
    width = groups.shape[1]
    causal = torch.ones(width, width, dtype=torch.bool, device=groups.device).tril()
    same_group = (groups[:, :, None] == groups[:, None, :]) & (groups[:, None, :] >= 0)
    visible = (segments[:, None, :] == 0) | (segments[:, :, None] == segments[:, None, :])
    itself = torch.eye(width, dtype=torch.bool, device=groups.device)
    return ((same_group & visible & causal) | itself)[:, None]


# ---- batching ------------------------------------------------------------------------------------------------


@dataclass
class SharedPromptCollator:
    """Batches tokenized rows in the shared-prompt layout: each pair (or unpaired row) as one group
    ``prompt + completions``, a row per group right-padded to the longest, or all groups in one row without
    padding (``padding_free``).

    Rows are what :class:`~hf_dpo.batch.padded.DPODataCollator` takes (or, with ``unpaired``,
    :class:`~hf_dpo.batch.padded.UnpairedDataCollator`, with its KL counterparts when ``with_kl``). The batch holds
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

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if self.pad_token_id is None:
            raise ValueError("SharedPromptCollator needs a pad_token_id (the tokenizer has no pad token; set one)")
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
