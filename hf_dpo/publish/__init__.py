"""What a run leaves for others: the model card, the training plots, the Hub push (adapter or merged model).

- :mod:`~hf_dpo.publish.model_card` and :mod:`~hf_dpo.publish.card_sections`: the card written next to the model;
- :mod:`~hf_dpo.publish.plots`: ``training.png``;
- :mod:`~hf_dpo.publish.hub`: ``push_to_hub(merge_adapter=True)``; a failed push that says what is where, and the
  watch on the background checkpoint pushes.
"""

from hf_dpo._lazy import lazy_surface

__getattr__, __dir__, __all__ = lazy_surface(
    __name__,
    {
        "CheckpointPushWatch": "hf_dpo.publish.hub",
        "plot_training": "hf_dpo.publish.plots",
        "push_merged": "hf_dpo.publish.hub",
        "push_run": "hf_dpo.publish.hub",
        "update_card_eval": "hf_dpo.publish.card_sections",
        "write_model_card": "hf_dpo.publish.model_card",
    },
)
