"""hf_dpo.data.preparation and hf_dpo.data.tokenization: tokenisation rules (one EOS, one BOS, prompt masked and a prefix),
truncation and clear errors."""

import logging

import pytest
from datasets import Dataset
from tiny import CHATML, build_tokenizer

from hf_dpo import DPOTrainingArguments
from hf_dpo.data.preparation import prepare_dataset
from hf_dpo.data.tokenization import DROPPED_NO_ROOM, KEPT, TRUNCATED, tokenize_row, tokenizer_adds_bos, truncate


def _args(**overrides):
    return DPOTrainingArguments(output_dir="unused", report_to="none", **overrides)


def _limits(max_length=1024, max_prompt_length=512, max_completion_length=None, truncation_mode="keep_end"):
    return {
        "max_length": max_length,
        "max_prompt_length": max_prompt_length,
        "max_completion_length": max_completion_length,
        "truncation_mode": truncation_mode,
    }


def _chat_tokenizer_ending_turns_with_eos():
    """Like SmolLM2/Qwen: the template ends each turn with the EOS token, then a newline."""
    tokenizer = build_tokenizer(bos=False)
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.chat_template = CHATML
    return tokenizer


def test_string_row_one_bos_one_eos(tokenizer):
    assert tokenizer_adds_bos(tokenizer) is False  # PreTrainedTokenizerFast without a post-processor adds nothing
    row = tokenize_row(
        {"prompt": "Question: fox?", "chosen": " yes", "rejected": " no"}, 0, tokenizer, True, **_limits()
    )
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    assert row["prompt_input_ids"][0] == bos and row["prompt_input_ids"].count(bos) == 1
    for side in ("chosen_input_ids", "rejected_input_ids"):
        assert row[side][-1] == eos and row[side].count(eos) == 1
    assert tokenizer.decode(row["chosen_input_ids"]) == " yes</s>"


def test_bos_already_in_the_text_is_not_doubled(tokenizer):
    row = tokenize_row({"prompt": "<s>Question?", "chosen": " a", "rejected": " b"}, 0, tokenizer, True, **_limits())
    assert row["prompt_input_ids"].count(tokenizer.bos_token_id) == 1
    row = tokenize_row(
        {"prompt": "<s><s>Question?", "chosen": " a", "rejected": " b"}, 0, tokenizer, False, **_limits()
    )
    assert row["prompt_input_ids"].count(tokenizer.bos_token_id) == 1


def test_completion_already_ending_with_eos_gets_no_second_one(tokenizer):
    row = tokenize_row(
        {"prompt": "Q", "chosen": " yes</s>", "rejected": " no</s>\n"}, 0, tokenizer, False, **_limits()
    )
    eos = tokenizer.eos_token_id
    assert row["chosen_input_ids"].count(eos) == 1 and row["chosen_input_ids"][-1] == eos
    assert row["rejected_input_ids"].count(eos) == 1 and row["rejected_input_ids"][-1] == eos


def test_chat_row_prompt_is_a_prefix_and_turn_end_is_the_single_eos():
    tokenizer = _chat_tokenizer_ending_turns_with_eos()
    prompt = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}]
    chosen = [{"role": "assistant", "content": "Paris"}]
    raw = {"prompt": prompt, "chosen": chosen, "rejected": [{"role": "assistant", "content": "It is Paris."}]}
    row = tokenize_row(raw, 0, tokenizer, False, **_limits())
    eos = tokenizer.eos_token_id
    assert tokenizer.decode(row["prompt_input_ids"]).endswith("<|im_start|>assistant\n")
    assert tokenizer.decode(row["chosen_input_ids"]) == "Paris<|im_end|>"
    assert row["chosen_input_ids"].count(eos) == 1 and row["rejected_input_ids"].count(eos) == 1
    full = tokenizer(tokenizer.apply_chat_template(prompt + chosen, tokenize=False), add_special_tokens=False)
    joined = row["prompt_input_ids"] + row["chosen_input_ids"]
    assert full["input_ids"][: len(joined)] == joined  # tokenized apart == tokenized together, up to the newline


def test_chat_prompt_with_plain_string_completions():
    tokenizer = _chat_tokenizer_ending_turns_with_eos()
    raw = {"prompt": [{"role": "user", "content": "hi"}], "chosen": "yes", "rejected": "no"}
    row = tokenize_row(raw, 0, tokenizer, False, **_limits())
    assert tokenizer.decode(row["rejected_input_ids"]) == "no<|im_end|>"


def test_chat_row_with_eos_different_from_turn_end(tokenizer):
    raw = {"prompt": [{"role": "user", "content": "hi"}], "chosen": "yes", "rejected": "no"}
    row = tokenize_row(raw, 0, tokenizer, False, **_limits())
    assert tokenizer.decode(row["chosen_input_ids"]) == "yes<|im_end|>\n</s>"


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        (_limits(max_length=20, max_prompt_length=3), ([3, 4, 5], [6, 7], [8], TRUNCATED)),
        (
            _limits(max_length=20, max_prompt_length=3, truncation_mode="keep_start"),
            ([1, 2, 3], [6, 7], [8], TRUNCATED),
        ),
        # keep_start without a prompt budget: TRL's (prompt + completion)[:max_length]
        (
            _limits(max_length=6, max_prompt_length=None, truncation_mode="keep_start"),
            ([1, 2, 3, 4, 5], [6], [8], TRUNCATED),
        ),
        # keep_end without a prompt budget: the prompt's end, leaving room for the longer completion
        (_limits(max_length=6, max_prompt_length=None), ([2, 3, 4, 5], [6, 7], [8], TRUNCATED)),
        (_limits(max_length=5, max_prompt_length=None), ([3, 4, 5], [6, 7], [8], TRUNCATED)),
        (_limits(max_length=2, max_prompt_length=None), ([5], [6], [8], TRUNCATED)),
        (
            _limits(max_length=20, max_prompt_length=10, max_completion_length=1),
            ([1, 2, 3, 4, 5], [6], [8], TRUNCATED),
        ),
        (_limits(max_length=20, max_prompt_length=10), ([1, 2, 3, 4, 5], [6, 7], [8], KEPT)),
        (
            _limits(max_length=5, max_prompt_length=None, truncation_mode="keep_start"),
            ([1, 2, 3, 4, 5], [6, 7], [8], DROPPED_NO_ROOM),
        ),
    ],
)
def test_truncation(limits, expected):
    prompt, chosen, rejected, status = expected
    assert truncate([1, 2, 3, 4, 5], [[6, 7], [8]], **limits) == (prompt, [chosen, rejected], status)


def test_prepare_dataset_counts_and_logs_truncated_and_dropped_rows(tokenizer, caplog):
    rows = [
        {"prompt": "short", "chosen": " yes", "rejected": " no"},
        {"prompt": "a much longer prompt " * 20, "chosen": " yes", "rejected": " no"},
        {"prompt": "short", "chosen": " yes good " * 10, "rejected": " no"},
        {"prompt": "same", "chosen": " x", "rejected": " x"},
    ]
    args = _args(max_length=24, max_prompt_length=None)
    with caplog.at_level(logging.INFO, logger="hf_dpo.data.preparation"):
        dataset, stats = prepare_dataset(Dataset.from_list(rows), tokenizer, args, "train")
    assert (stats.rows_in, stats.kept, stats.truncated) == (4, 2, 1)
    assert (stats.dropped_no_room, stats.dropped_identical) == (1, 1)
    assert len(dataset) == 2 and dataset.column_names == ["prompt_input_ids", "chosen_input_ids", "rejected_input_ids"]
    assert all(len(r["prompt_input_ids"]) + len(r["chosen_input_ids"]) <= 24 for r in dataset)
    assert "2 of 4 rows kept (1 of them truncated)" in caplog.text and "1 whose chosen and rejected" in caplog.text


def test_extra_columns_are_kept_and_tokenized_datasets_pass_through(tokenizer):
    rows = [{"prompt": "p", "chosen": " a", "rejected": " b", "score": 0.5}]
    dataset, _ = prepare_dataset(rows, tokenizer, _args(), "train")
    assert dataset[0]["score"] == 0.5
    again, stats = prepare_dataset(dataset, tokenizer, _args(), "train")
    assert again is dataset and stats is None


def test_keep_end_truncation_keeps_the_bos(tokenizer):
    row = {"prompt": "Question: " + "fox dog " * 30, "chosen": " yes", "rejected": " no"}
    tokenized = tokenize_row(row, 0, tokenizer, True, **_limits(max_length=64, max_prompt_length=8))
    prompt = tokenized["prompt_input_ids"]
    assert len(prompt) == 8 and prompt[0] == tokenizer.bos_token_id and prompt.count(tokenizer.bos_token_id) == 1


def test_rows_identical_after_truncation_are_dropped(tokenizer):
    row = {"prompt": "Q", "chosen": " the fox jumps", "rejected": " the fox sleeps"}
    tokenized = tokenize_row(row, 0, tokenizer, False, **_limits(max_length=3, max_prompt_length=None))
    assert tokenized["_hf_dpo_status"] == 3  # DROPPED_IDENTICAL


def test_empty_prompt_without_bos_is_an_error():
    tokenizer = build_tokenizer(bos=False)
    with pytest.raises(ValueError, match="row 0, field 'prompt': empty, and the tokenizer adds no BOS"):
        tokenize_row({"prompt": "", "chosen": " a", "rejected": " b"}, 0, tokenizer, False, **_limits())
