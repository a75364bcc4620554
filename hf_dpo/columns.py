"""Column names of the tokenized-row contract, read by validation, tokenization, batching, caching and the trainer.

A tokenized preference row holds the token ids of its prompt and of each completion (completions without the
prompt); with a precomputed reference it also holds that reference's summed completion log-probs.
"""

ID_COLUMNS = ("prompt_input_ids", "chosen_input_ids", "rejected_input_ids")
REF_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")
