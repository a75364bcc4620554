"""Which position of a batch scores which token of which sequence, for every layout, found once per step.

A causal LM's output at position ``t`` predicts the token at ``t + 1``. In the padded layout a completion token's
predecessor is the position before it in its row; in the shared-prompt layout the first token of a later
completion is predicted from its prompt's last token, not from the completion before it. Both layouts give the
same :class:`ScoredTokens`, and every per-sequence value comes out in the padded layout's sequence order
(slot-major: every group's first completion, then every group's second, ...), so the losses never see the layout.

Finding the tokens costs one host synchronisation per batch (the number of scored tokens, and the groups' and
completions' places, read together); everything else is index arithmetic on the batch's device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hf_dpo.batch.segments import Segments
from hf_dpo.data.columns import IGNORE_INDEX

GROUP_COLUMN = "group_ids"  # shared prompt, per token: its group's index in the batch, -1 on padding
SEGMENT_COLUMN = "segment_ids"  # shared prompt, per token: 0 prompt, k the k-th completion of its group, -1 padding


@dataclass(frozen=True)
class ScoredTokens:
    """The tokens a batch scores, flattened over its ``[R, L]`` positions (``M`` tokens).

    Attributes:
        source: `[M]` flat index ``r * L + c`` of the position whose output predicts the token.
        target: `[M]` flat index of the token itself (where its label sits).
        labels: `[M]` the token ids.
        sequence: `[M]` the sequence each token belongs to, in the padded layout's order.
        num_sequences: the number of sequences of the batch.
        num_groups: shared prompt: the number of groups (prompts); padded: the number of rows.
        first_column: the leftmost column of a source position (the logits before it are never read).
    """

    source: torch.Tensor
    target: torch.Tensor
    labels: torch.Tensor
    sequence: torch.Tensor
    num_sequences: int
    num_groups: int
    first_column: int

    def per_sequence(self, values: torch.Tensor) -> torch.Tensor:
        """Sums of ``values`` (`[M]` or `[M, k]`) over each sequence's tokens: `[num_sequences, ...]`."""
        out = values.new_zeros((self.num_sequences, *values.shape[1:]))
        return out.index_add(0, self.sequence, values)

    def counts(self) -> torch.Tensor:
        """The number of scored tokens of each sequence, long `[num_sequences]`."""
        return self.per_sequence(torch.ones_like(self.sequence))

    def rank(self) -> torch.Tensor:
        """Each token's place in its sequence, from 1 (a sequence's tokens are contiguous and in order)."""
        index = torch.arange(self.target.numel(), device=self.target.device)
        first = torch.full((self.num_sequences,), self.target.numel(), device=index.device, dtype=torch.long)
        first = first.scatter_reduce(0, self.sequence, index, reduce="amin")
        return index - first[self.sequence] + 1


def padded_tokens(labels: torch.Tensor) -> ScoredTokens:
    """One row per sequence: position ``t - 1`` of the same row predicts token ``t``.

    >>> tokens = padded_tokens(torch.tensor([[-100, 5, 6], [-100, -100, 7]]))
    >>> tokens.source.tolist(), tokens.sequence.tolist(), tokens.counts().tolist()
    ([0, 1, 4], [0, 0, 1], [2, 1])
    """
    width = labels.shape[1]
    flat_labels = labels.reshape(-1)
    columns = torch.arange(flat_labels.numel(), device=labels.device) % width
    valid = (flat_labels != IGNORE_INDEX) & (columns != 0)
    count, first_column = torch.stack([valid.sum(), torch.where(valid, columns - 1, width).min()]).tolist()  # 1 sync
    target = torch.nonzero_static(valid, size=count).squeeze(1)
    rows = labels.shape[0]
    return ScoredTokens(target - 1, target, flat_labels[target], target // width, rows, rows, first_column)


def shared_prompt_tokens(
    labels: torch.Tensor, groups: torch.Tensor, segments: torch.Tensor
) -> tuple[ScoredTokens, Segments]:
    """``prompt + completion_1 + ... + completion_k`` per group, each completion blind to the others; with the
    groups' spans (:class:`~hf_dpo.batch.segments.Segments`), read in the same host sync.

    >>> labels = torch.tensor([[-100, -100, 7, 2, 8, 2]])  # prompt 5 6, chosen 7 2, rejected 8 2
    >>> tokens, _ = shared_prompt_tokens(labels, torch.zeros(1, 6, dtype=torch.long), torch.tensor([[0, 0, 1, 1, 2, 2]]))
    >>> tokens.source.tolist(), tokens.target.tolist(), tokens.sequence.tolist()  # 8 is predicted from 6
    ([1, 2, 1, 4], [2, 3, 4, 5], [0, 0, 1, 1])
    """
    shape = labels.shape
    flat_labels, groups, segments = labels.reshape(-1), groups.reshape(-1), segments.reshape(-1)
    positions = torch.arange(flat_labels.numel(), device=labels.device)
    scored = flat_labels != IGNORE_INDEX
    previous = (positions - 1).clamp(min=0)
    # A later completion's first token is predicted from its prompt's last token, not from the tokens before it.
    restarts = scored & (segments > 1) & (segments[previous] != segments)
    in_prompt = segments == 0
    ends = torch.full_like(positions, -1).scatter_reduce(  # per group (index < R*L): its last prompt position
        0, torch.where(in_prompt, groups, 0), torch.where(in_prompt, positions, -1), reduce="amax"
    )
    source = torch.where(restarts, ends[groups.clamp(min=0)], positions - 1)
    known = source.clamp(min=0)
    valid = scored & (source >= 0) & (groups[known] == groups)  # an empty prompt: the first token has no predecessor
    valid &= (segments[known] == 0) | (segments[known] == segments)
    width = shape[1]
    first_column = torch.where(valid, source % width, width).min()
    host = torch.cat([torch.stack([valid.sum(), first_column]), groups, segments]).cpu().numpy()  # the one sync
    count, first_column = int(host[0]), int(host[1])
    host_groups, host_segments = host[2 : 2 + groups.numel()], host[2 + groups.numel() :]
    target = torch.nonzero_static(valid, size=count).squeeze(1)
    num_groups, slots = int(host_groups.max()) + 1, max(int(host_segments.max()), 1)
    sequence = groups[target] + num_groups * (segments[target] - 1)
    tokens = ScoredTokens(
        source[target], target, flat_labels[target], sequence, num_groups * slots, num_groups, first_column
    )
    return tokens, Segments.from_host(host_groups.reshape(shape), host_segments.reshape(shape))


def input_token_counts(
    tokens: ScoredTokens, attention_mask: torch.Tensor, groups: torch.Tensor | None, segments: torch.Tensor | None
) -> torch.Tensor:
    """Per sequence, its prompt's and completion's tokens (what its padded row holds without padding): `[N]`."""
    if groups is None:
        return attention_mask.sum(dim=1)
    groups, segments = groups.reshape(-1), segments.reshape(-1)
    num_groups, slots = tokens.num_groups, tokens.num_sequences // tokens.num_groups
    sequence = torch.where(segments > 0, groups + num_groups * (segments - 1), tokens.num_sequences)
    completions = torch.zeros(tokens.num_sequences + 1, dtype=torch.long, device=groups.device)
    completions = completions.scatter_add(
        0, torch.where(groups >= 0, sequence, tokens.num_sequences), (groups >= 0).long()
    )
    prompt_group = torch.where((segments == 0) & (groups >= 0), groups, num_groups)
    prompts = torch.zeros(num_groups + 1, dtype=torch.long, device=groups.device)
    prompts = prompts.scatter_add(0, prompt_group, torch.ones_like(prompt_group))
    return completions[:-1] + prompts[:-1].repeat(slots)


def ld_token_weights(tokens: ScoredTokens, ld_alpha: float) -> torch.Tensor:
    """LD-DPO's weight of each scored token (`[M]`): 1 on the first ``min(len_chosen, len_rejected)`` completion
    tokens of each pair, ``ld_alpha`` on the longer completion's tail (sequences ``[chosen; rejected]``).

    >>> tokens = padded_tokens(torch.tensor([[-100, 5, 6, 7], [-100, 8, -100, -100]]))  # chosen: 3, rejected: 1
    >>> ld_token_weights(tokens, 0.5)
    tensor([1.0000, 0.5000, 0.5000, 1.0000])
    """
    chosen_lengths, rejected_lengths = tokens.counts().chunk(2)
    shared = torch.minimum(chosen_lengths, rejected_lengths).repeat(2)
    rank = tokens.rank()
    ones = torch.ones_like(rank, dtype=torch.float32)
    return torch.where(rank > shared[tokens.sequence], ld_alpha * ones, ones)
