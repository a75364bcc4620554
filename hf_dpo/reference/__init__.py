"""Where the reference log-probs come from: the kinds, the one function that picks one, the precompute pass, the
disk cache, and the reference's placement under DeepSpeed or FSDP.

- :mod:`~hf_dpo.reference.kinds`: :class:`Reference` and its kinds (frozen model, adapters off, a frozen adapter,
  precomputed columns, none);
- :mod:`~hf_dpo.reference.choice`: :func:`build_reference`, the decision;
- :mod:`~hf_dpo.reference.precompute`, :mod:`~hf_dpo.reference.cache`: the pass before training and its cache;
- :mod:`~hf_dpo.reference.engines`: a frozen reference placed for the engine the policy runs under.
"""

from hf_dpo._lazy import lazy_surface

__getattr__, __dir__, __all__ = lazy_surface(
    __name__,
    {
        "AdapterReference": "hf_dpo.reference.kinds",
        "DisabledAdapterReference": "hf_dpo.reference.kinds",
        "FrozenModelReference": "hf_dpo.reference.kinds",
        "NoReference": "hf_dpo.reference.kinds",
        "PolicyAsReference": "hf_dpo.reference.kinds",
        "PrecomputedReference": "hf_dpo.reference.kinds",
        "Reference": "hf_dpo.reference.kinds",
        "build_reference": "hf_dpo.reference.choice",
        "engine_name": "hf_dpo.reference.engines",
        "pass_settings": "hf_dpo.reference.precompute",
        "precompute_columns": "hf_dpo.reference.precompute",
        "precompute_model": "hf_dpo.reference.engines",
    },
)
