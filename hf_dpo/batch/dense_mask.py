"""The shared-prompt layout as a dense 4D mask: the fallback where the attention function cannot run (see
:mod:`hf_dpo.batch.attention`); each completion attends its prompt and its own earlier tokens only.

Today that is a 4D mask the model applies as given, built once per step (:class:`~hf_dpo.batch.scored_batch.ScoredBatch`
caches it per attention implementation and dtype): ``sdpa`` takes a bool mask, ``eager`` an additive float mask
(0 allowed, the dtype's minimum hidden; ``eager`` misreads a bool one).
"""

from __future__ import annotations

import torch

from hf_dpo.batch.scored_tokens import GROUP_COLUMN, SEGMENT_COLUMN

MASKED_ATTENTION = ("sdpa", "eager")  # attention implementations that apply a 4D mask as given


def shared_prompt_model_inputs(
    input_ids: torch.Tensor, layout_columns: dict[str, torch.Tensor], attention: str | None, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """``input_ids``, the 4D mask and the position ids a model whose attention implementation is ``attention`` and
    whose activations are ``dtype`` reads a shared-prompt batch through."""
    if attention not in MASKED_ATTENTION:
        raise ValueError(
            f"this batch shares each prompt between its completions, which needs a 4D attention mask; the model's "
            f"attention implementation {attention!r} does not take one (use 'sdpa' or 'eager', or the padded "
            "DPODataCollator)"
        )
    allowed = attention_allowed(layout_columns[GROUP_COLUMN], layout_columns[SEGMENT_COLUMN])
    if attention == "eager":  # eager adds the mask to the scores; a bool mask would be read as 0/1 additions
        mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
        allowed = mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return {"input_ids": input_ids, "attention_mask": allowed, "position_ids": layout_columns["position_ids"]}


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
