"""Preference losses: pure functions of per-sequence log-probs, in a registry.

- :mod:`~hf_dpo.losses.paired`: DPO and its family on pairs, one function per loss type;
- :mod:`~hf_dpo.losses.unpaired`: KTO on rows of one completion and a label;
- :mod:`~hf_dpo.losses.preference`: :func:`dpo_loss`, the entry point on pairs;
- :mod:`~hf_dpo.losses.registry`: the names, what each loss needs, the parsing of ``loss_type``;
- :mod:`~hf_dpo.losses.settings`: :class:`LossSettings`, a run's loss settings as one value;
- :mod:`~hf_dpo.losses.pair_logps`: :class:`PairLogps` and what losses read off it;
- :mod:`~hf_dpo.losses.running_mean`: ``bco_pair``'s running δ.

Adding a loss: one function with :func:`register_loss` (see ``paired.py``); the trainer never changes.
"""

from hf_dpo.losses.pair_logps import F_DIVERGENCES, PairLogps, f_divergence_score, wpo_weights
from hf_dpo.losses.preference import LOSS_TYPES, PAIRED_LOSS_TYPES, dpo_loss, pair_logps, preference_losses
from hf_dpo.losses.registry import (
    UNPAIRED_LOSS_TYPES,
    as_loss_types,
    is_unpaired,
    needs_reference,
    register_loss,
    registered_loss_types,
)
from hf_dpo.losses.running_mean import RewardMean
from hf_dpo.losses.settings import LossSettings, check_f_divergence
from hf_dpo.losses.unpaired import kto_kl_estimate, kto_loss

__all__ = [
    "F_DIVERGENCES",
    "LOSS_TYPES",
    "PAIRED_LOSS_TYPES",
    "UNPAIRED_LOSS_TYPES",
    "LossSettings",
    "PairLogps",
    "RewardMean",
    "as_loss_types",
    "check_f_divergence",
    "dpo_loss",
    "f_divergence_score",
    "is_unpaired",
    "kto_kl_estimate",
    "kto_loss",
    "needs_reference",
    "pair_logps",
    "preference_losses",
    "register_loss",
    "registered_loss_types",
    "wpo_weights",
]
