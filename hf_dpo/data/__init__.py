"""Preference rows in, tokenized rows out: the shapes rows come in and their checks, tokenization, preparation with
counted drops, unpaired (KTO) rows, and the column names of the tokenized-row contract.

- :mod:`~hf_dpo.data.formats`, :mod:`~hf_dpo.data.tool_calls`, :mod:`~hf_dpo.data.dataset_checks`: what a row and a
  dataset may look like (every problem a :class:`DataFormatError` naming the row and field);
- :mod:`~hf_dpo.data.tokenization`: one row's text to token ids (chat templates, BOS/EOS, truncation);
- :mod:`~hf_dpo.data.preparation`: a dataset to tokenized rows, with the counts of what was dropped or cut;
- :mod:`~hf_dpo.data.unpaired`: KTO's rows and their KL counterparts;
- :mod:`~hf_dpo.data.images`, :mod:`~hf_dpo.data.vision`: rows with images, read and checked, tokenized by a
  processor with every image token kept;
- :mod:`~hf_dpo.data.lists`, :mod:`~hf_dpo.data.list_preparation`: rows of several answers per prompt;
- :mod:`~hf_dpo.data.columns`: the column names every later stage reads.
"""

from hf_dpo._lazy import lazy_surface

__getattr__, __dir__, __all__ = lazy_surface(
    __name__,
    {
        "ALL_REF_COLUMNS": "hf_dpo.data.columns",
        "DataFormatError": "hf_dpo.data.errors",
        "DataStatsCallback": "hf_dpo.data.preparation",
        "ID_COLUMNS": "hf_dpo.data.columns",
        "IGNORE_INDEX": "hf_dpo.data.columns",
        "KL_COMPLETION_COLUMN": "hf_dpo.data.columns",
        "LABEL_COLUMN": "hf_dpo.data.columns",
        "PreparationStats": "hf_dpo.data.preparation_stats",
        "REF_COLUMNS": "hf_dpo.data.columns",
        "TOKEN_COLUMNS": "hf_dpo.data.columns",
        "TRAINER_COLUMNS": "hf_dpo.data.columns",
        "UNPAIRED_ID_COLUMNS": "hf_dpo.data.columns",
        "apply_column_mapping": "hf_dpo.data.dataset_checks",
        "check_vocabulary": "hf_dpo.data.preparation",
        "holds_lists": "hf_dpo.data.lists",
        "is_conversation": "hf_dpo.data.formats",
        "is_list_data": "hf_dpo.data.lists",
        "kl_partners": "hf_dpo.data.unpaired",
        "normalise_row": "hf_dpo.data.formats",
        "prepare_dataset": "hf_dpo.data.preparation",
        "reference_columns": "hf_dpo.data.columns",
        "tokenize_row": "hf_dpo.data.tokenization",
        "tokenize_vision_row": "hf_dpo.data.vision",
        "tokenizer_adds_bos": "hf_dpo.data.tokenization",
        "warn_if_unbalanced": "hf_dpo.data.unpaired",
        "with_kl_completions": "hf_dpo.data.unpaired",
        "with_lengths": "hf_dpo.data.preparation",
    },
)
