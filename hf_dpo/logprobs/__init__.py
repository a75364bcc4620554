"""Completion log-probs of a batch, from the model's logits or straight from its final hidden states.

- :mod:`~hf_dpo.logprobs.scoring`: :func:`sequence_scores`, one forward pass over a batch in any layout;
- :mod:`~hf_dpo.logprobs.from_hidden`: ``lm_head`` on the scored positions only, no logits tensor;
- :mod:`~hf_dpo.logprobs.from_logits`: a chunked float32 log-softmax of the logits with its own backward;
- :mod:`~hf_dpo.logprobs.chunks`: the chunked softmax both share.
"""

from hf_dpo.logprobs.chunks import STAT_NAMES
from hf_dpo.logprobs.scoring import CompletionScores, sequence_logps, sequence_scores, supports_logits_to_keep

__all__ = ["STAT_NAMES", "CompletionScores", "chunks", "sequence_logps", "sequence_scores", "supports_logits_to_keep"]
