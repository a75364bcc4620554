"""Tokenized rows into the batch of one step: every layout and its collator, the layout choice, and the per-step
batch object the policy's scoring, the reference and the metrics all read.

- :mod:`~hf_dpo.batch.padded`: :class:`DPODataCollator` (pairs as ``[chosen; rejected]`` rows) and
  :class:`UnpairedDataCollator` (KTO's ``[completions; KL counterparts]``);
- :mod:`~hf_dpo.batch.shared_prompt`: :class:`SharedPromptCollator`, each prompt held once per group;
- :mod:`~hf_dpo.batch.lists`: lists of answers to one prompt, each a group (or :class:`ListDataCollator`'s rows);
- :mod:`~hf_dpo.batch.choice`: which layout a run uses, and why (:func:`default_collator`);
- :mod:`~hf_dpo.batch.scored_tokens`: which position scores which token of which sequence;
- :mod:`~hf_dpo.batch.scored_batch`: :class:`ScoredBatch`, one step's batch as one object;
- :mod:`~hf_dpo.batch.attention`: how a model reads the shared-prompt layout;
- :mod:`~hf_dpo.batch.vision`, :mod:`~hf_dpo.batch.vision_inputs`: each pair's images processed once and laid out
  per model row, with a vision-language model's token types and 3-D positions.
"""

from hf_dpo._lazy import lazy_surface

__getattr__, __dir__, __all__ = lazy_surface(
    __name__,
    {
        "DPODataCollator": "hf_dpo.batch.padded",
        "ListDataCollator": "hf_dpo.batch.lists",
        "ScoredBatch": "hf_dpo.batch.scored_batch",
        "ScoredTokens": "hf_dpo.batch.scored_tokens",
        "SharedPromptCollator": "hf_dpo.batch.shared_prompt",
        "ImageInputs": "hf_dpo.batch.vision",
        "UnpairedDataCollator": "hf_dpo.batch.padded",
        "VisionCollator": "hf_dpo.batch.vision",
        "default_collator": "hf_dpo.batch.choice",
        "shared_prompt_support": "hf_dpo.batch.choice",
        "vision_layout_support": "hf_dpo.batch.vision_inputs",
    },
)
