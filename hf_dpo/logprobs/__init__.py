"""Completion log-probs of a batch, from the model's logits or straight from its final hidden states.

- :mod:`~hf_dpo.logprobs.scoring`: :func:`sequence_scores`, one forward pass over a batch in any layout;
- :mod:`~hf_dpo.logprobs.from_hidden`: ``lm_head`` on the scored positions only, no logits tensor;
- :mod:`~hf_dpo.logprobs.from_logits`: a chunked float32 log-softmax of the logits with its own backward;
- :mod:`~hf_dpo.logprobs.chunks`: the chunked softmax both share.
"""

from hf_dpo._lazy import lazy_surface

__getattr__, __dir__, __all__ = lazy_surface(
    __name__,
    {
        "CompletionScores": "hf_dpo.logprobs.scoring",
        "STAT_NAMES": "hf_dpo.logprobs.chunks",
        "sequence_logps": "hf_dpo.logprobs.scoring",
        "sequence_scores": "hf_dpo.logprobs.scoring",
        "supports_logits_to_keep": "hf_dpo.logprobs.scoring",
    },
)
