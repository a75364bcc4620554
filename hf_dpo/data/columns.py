"""Column names of the tokenized-row contract, read by validation, tokenization, batching, caching and the trainer.

A tokenized preference row holds the token ids of its prompt and of each completion (completions without the
prompt); with a precomputed reference it also holds that reference's summed completion log-probs.
"""

IGNORE_INDEX = -100  # the label of a token no loss scores (prompt, padding), as in transformers
ID_COLUMNS = ("prompt_input_ids", "chosen_input_ids", "rejected_input_ids")
REF_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")

# Unpaired (KTO) rows: one completion per row and whether it is desirable.
UNPAIRED_ID_COLUMNS = ("prompt_input_ids", "completion_input_ids")
LABEL_COLUMN = "label"
# Another row's completion (with a different prompt) for KTO's estimate of KL(π‖π_ref), fixed per row.
KL_COMPLETION_COLUMN = "kl_completion_input_ids"
UNPAIRED_REF_COLUMNS = ("ref_logps", "ref_kl_logps")  # TRL's ref_logps / ref_KL_logps

# Lists of answers to one prompt, ranked or scored (hf_dpo.data.lists): the raw columns, then the tokenized row's
# answers (a list of id lists, best first), their scores (higher is better; a ranking as negated ranks) and, with a
# precomputed reference, one reference log-prob per answer.
LIST_TEXT_COLUMNS = ("completions", "scores", "ranking")
COMPLETIONS_COLUMN = "completions_input_ids"
SCORES_COLUMN = "completion_scores"
LIST_ID_COLUMNS = ("prompt_input_ids", COMPLETIONS_COLUMN)
LIST_REF_COLUMNS = ("ref_completion_logps",)
TOKEN_COLUMNS = tuple(
    dict.fromkeys(
        (
            *("prompt_input_ids", "chosen_input_ids", "rejected_input_ids"),
            *UNPAIRED_ID_COLUMNS,
            KL_COMPLETION_COLUMN,
            COMPLETIONS_COLUMN,  # a list of id lists
        )
    )
)


def reference_columns(unpaired: bool, with_kl: bool, lists: bool = False) -> tuple[str, ...]:
    """The reference log-prob columns of a run's rows: chosen and rejected, or a completion and its KL
    counterpart (without the counterpart when the loss needs no KL estimate), or one per answer of a list."""
    if lists:
        return LIST_REF_COLUMNS
    if not unpaired:
        return REF_COLUMNS
    return UNPAIRED_REF_COLUMNS if with_kl else UNPAIRED_REF_COLUMNS[:1]


# TRL's names for a vision-language row's images: a list per row, or one per row; kept as they are until the collator
IMAGE_COLUMNS = ("images", "image")

# Every column the trainer reads from a tokenized row (kept whatever remove_unused_columns says).
ALL_REF_COLUMNS = (*REF_COLUMNS, *UNPAIRED_REF_COLUMNS, *LIST_REF_COLUMNS)
TRAINER_COLUMNS = (*TOKEN_COLUMNS, SCORES_COLUMN, LABEL_COLUMN, *ALL_REF_COLUMNS, *IMAGE_COLUMNS)
