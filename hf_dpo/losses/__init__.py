"""Preference losses: pure functions of per-sequence log-probs, in a registry.

- :mod:`~hf_dpo.losses.paired`: DPO and its family on pairs, one function per loss type;
- :mod:`~hf_dpo.losses.unpaired`: KTO on rows of one completion and a label;
- :mod:`~hf_dpo.losses.lists`: the losses on lists of ranked or scored answers (:func:`list_losses`);
- :mod:`~hf_dpo.losses.ranking`: the ordered pairs of a list and the ranking metrics;
- :mod:`~hf_dpo.losses.preference`: :func:`dpo_loss`, the entry point on pairs;
- :mod:`~hf_dpo.losses.registry`: the names, what each loss needs, the parsing of ``loss_type``;
- :mod:`~hf_dpo.losses.settings`: :class:`LossSettings`, a run's loss settings as one value;
- :mod:`~hf_dpo.losses.pair_logps`: :class:`PairLogps` and what losses read off it;
- :mod:`~hf_dpo.losses.running_mean`: ``bco_pair``'s running δ.

Adding a loss: one function with :func:`register_loss` (see ``paired.py``); the trainer never changes.
"""

from hf_dpo._lazy import lazy_surface

__getattr__, __dir__, __all__ = lazy_surface(
    __name__,
    {
        "F_DIVERGENCES": "hf_dpo.losses.pair_logps",
        "LIST_LOSS_TYPES": "hf_dpo.losses.registry",
        "ListLogps": "hf_dpo.losses.lists",
        "LOSS_TYPES": "hf_dpo.losses.preference",
        "LossSettings": "hf_dpo.losses.settings",
        "PAIRED_LOSS_TYPES": "hf_dpo.losses.preference",
        "PairLogps": "hf_dpo.losses.pair_logps",
        "RewardMean": "hf_dpo.losses.running_mean",
        "UNPAIRED_LOSS_TYPES": "hf_dpo.losses.registry",
        "as_loss_types": "hf_dpo.losses.registry",
        "check_f_divergence": "hf_dpo.losses.settings",
        "dpo_loss": "hf_dpo.losses.preference",
        "f_divergence_score": "hf_dpo.losses.pair_logps",
        "is_list_loss": "hf_dpo.losses.registry",
        "is_unpaired": "hf_dpo.losses.registry",
        "list_losses": "hf_dpo.losses.lists",
        "kto_kl_estimate": "hf_dpo.losses.unpaired",
        "kto_loss": "hf_dpo.losses.unpaired",
        "needs_reference": "hf_dpo.losses.registry",
        "as_pair": "hf_dpo.losses.preference",
        "preference_losses": "hf_dpo.losses.preference",
        "register_loss": "hf_dpo.losses.registry",
        "ranking_values": "hf_dpo.losses.ranking",
        "registered_loss_types": "hf_dpo.losses.registry",
        "wpo_weights": "hf_dpo.losses.pair_logps",
    },
)
