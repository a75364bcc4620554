"""A run's settings: `DPOTrainingArguments` (fields documented once, validated by topic, tokens never pickled), the
``hf-dpo`` command's model/data/run arguments and their parsing, and YAML recipes checked against the fields' types.
"""

from hf_dpo._lazy import lazy_surface

__getattr__, __dir__, __all__ = lazy_surface(
    __name__,
    {
        "DPOTrainingArguments": "hf_dpo.config.training_arguments",
        "KTOConfig": "hf_dpo.config.kto_arguments",
        "DataArguments": "hf_dpo.config.run_arguments",
        "ModelArguments": "hf_dpo.config.run_arguments",
        "RunArguments": "hf_dpo.config.run_arguments",
        "UserError": "hf_dpo.config.recipe",
        "parse_train_args": "hf_dpo.config.run_arguments",
    },
)
