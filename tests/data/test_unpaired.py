"""Unpaired rows for KTO (prompt, completion, label): exact tokens, pairs unrolled as TRL unrolls them, counted
truncation, every kind of bad input named by row and field, and the paired path left as it was."""

import json
import logging

import numpy as np
import pytest
from datasets import Dataset, IterableDataset
from tiny import CHATML, build_model, build_tokenizer

import hf_dpo.data.unpaired
from hf_dpo import DPOTrainingArguments
from hf_dpo.data.errors import DataFormatError
from hf_dpo.data.preparation import check_vocabulary, prepare_dataset
from hf_dpo.publish.model_card import render_model_card

USER = {"role": "user", "content": "Capital of France?"}
SYSTEM = {"role": "system", "content": "Be brief."}
CHAT_PROMPT = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nCapital of France?<|im_end|>\n"
GENERATION = "<|im_start|>assistant\n"


def _args(loss_type="kto", **overrides):
    args = DPOTrainingArguments(output_dir="unused", report_to="none", **overrides)
    # Set after validation: these tests are about the data, whichever losses config.py accepts at the time.
    args.loss_type = loss_type
    return args


def _chat_tokenizer():
    tokenizer = build_tokenizer(bos=False)
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.chat_template = CHATML
    return tokenizer


def _prepare(rows, tokenizer=None, split="train", loss_type="kto", **overrides):
    return prepare_dataset(rows, tokenizer or _chat_tokenizer(), _args(loss_type, **overrides), split)


def _decoded(dataset, tokenizer):
    """Each row as (prompt text, completion text, label)."""
    return [
        (tokenizer.decode(row["prompt_input_ids"]), tokenizer.decode(row["completion_input_ids"]), row["label"])
        for row in dataset
    ]


def _assistant(text):
    return [{"role": "assistant", "content": text}]


# ---- unpaired rows -------------------------------------------------------------------------------------------


def test_text_rows_exact_tokens_and_labels():
    tokenizer = build_tokenizer()
    rows = [
        {"prompt": "Q: fox?", "completion": " yes", "label": True},
        {"prompt": "Q: dog?", "completion": " no</s>", "label": False},  # already ends with EOS: not doubled
    ]
    dataset, stats = _prepare(rows, tokenizer)
    assert dataset.column_names == ["label", "prompt_input_ids", "completion_input_ids"]
    assert _decoded(dataset, tokenizer) == [("Q: fox?", " yes</s>", True), ("Q: dog?", " no</s>", False)]
    assert (stats.rows_in, stats.kept, stats.desirable, stats.undesirable, stats.pairs_unrolled) == (2, 2, 1, 1, None)


def test_chat_rows_with_message_and_bare_string_completions():
    tokenizer = _chat_tokenizer()
    messages, _ = _prepare([{"prompt": [SYSTEM, USER], "completion": _assistant("Paris"), "label": True}])
    assert _decoded(messages, tokenizer) == [(CHAT_PROMPT + GENERATION, "Paris<|im_end|>", True)]
    # a bare string is the assistant's turn
    bare, _ = _prepare([{"prompt": [SYSTEM, USER], "completion": "Lyon", "label": False}])
    assert _decoded(bare, tokenizer) == [(CHAT_PROMPT + GENERATION, "Lyon<|im_end|>", False)]


def test_numpy_bools_are_labels_and_become_python_bools():
    rows = [
        {"prompt": "Q", "completion": " a", "label": np.bool_(True)},
        {"prompt": "Q", "completion": " b", "label": False},
    ]
    dataset, stats = _prepare(rows, build_tokenizer())
    assert dataset["label"] == [True, False] and type(dataset[0]["label"]) is bool
    assert (stats.desirable, stats.undesirable) == (1, 1)


@pytest.mark.parametrize(
    "limits",
    [
        {"max_length": 1024, "max_prompt_length": 512},
        {"max_length": 20, "max_prompt_length": 6, "truncation_mode": "keep_end"},
        {"max_length": 20, "max_prompt_length": 6, "truncation_mode": "keep_start"},
        {"max_length": 1024, "max_prompt_length": None, "max_completion_length": 3},
        {"max_length": 16, "max_prompt_length": None},
    ],
)
def test_an_unpaired_row_is_tokenized_and_truncated_as_the_chosen_side_of_a_pair(limits):
    """One set of rules: the same prompt and completion give the same ids, paired or not."""
    tokenizer = build_tokenizer()
    prompt, chosen = "Question: is the fox quick or lazy?", " Answer: the quick brown fox jumps over the dog."
    pairs, _ = _prepare(
        [{"prompt": prompt, "chosen": chosen, "rejected": " no"}], tokenizer, loss_type="sigmoid", **limits
    )
    unpaired, _ = _prepare([{"prompt": prompt, "completion": chosen, "label": True}], tokenizer, **limits)
    assert unpaired[0]["prompt_input_ids"] == pairs[0]["prompt_input_ids"]
    assert unpaired[0]["completion_input_ids"] == pairs[0]["chosen_input_ids"]


def test_truncated_and_dropped_rows_are_counted_and_logged(caplog):
    rows = [
        {"prompt": "short", "completion": " yes", "label": True},
        {"prompt": "a much longer prompt " * 20, "completion": " yes", "label": False},
        {"prompt": "short", "completion": " yes good " * 10, "label": False},
    ]
    with caplog.at_level(logging.INFO, logger="hf_dpo.data"):
        dataset, stats = _prepare(rows, build_tokenizer(), max_length=24, max_prompt_length=None)
    assert (stats.rows_in, stats.kept, stats.truncated, stats.dropped_no_room) == (3, 2, 1, 1)
    assert (stats.dropped_identical, stats.desirable, stats.undesirable) == (0, 1, 1)
    assert [len(r["prompt_input_ids"]) + len(r["completion_input_ids"]) for r in dataset][1] == 24
    assert stats.summary() == (
        "train set: 2 of 3 rows kept (1 of them truncated): 1 desirable, 1 undesirable; dropped 1 whose prompt "
        "leaves no room for a completion within max_length"
    )
    assert stats.summary() in caplog.text


def test_column_mapping_onto_completion_and_label():
    rows = [{"question": "Q: fox?", "answer": " yes", "thumbs_up": True}]
    mapping = {"question": "prompt", "answer": "completion", "thumbs_up": "label"}
    tokenizer = build_tokenizer()
    for given in (rows, Dataset.from_list(rows)):
        dataset, stats = _prepare(given, tokenizer, column_mapping=mapping)
        assert _decoded(dataset, tokenizer) == [("Q: fox?", " yes</s>", True)] and stats.kept == 1


def test_tokenized_unpaired_rows_pass_through():
    rows = [{"prompt_input_ids": [5], "completion_input_ids": [6, 1], "label": True, "score": 0.5}]
    dataset = Dataset.from_list(rows)
    again, stats = _prepare(dataset)
    assert again is dataset and stats is None


def test_a_stream_is_prepared_lazily():
    rows = [
        {"prompt": "p", "completion": " a", "label": True},
        {"prompt": "a much longer prompt " * 20, "completion": " b", "label": False},
    ]
    tokenizer = build_tokenizer()
    prepared, stats = _prepare(Dataset.from_list(rows).to_iterable_dataset(), tokenizer, max_length=24)
    assert stats is None and isinstance(prepared, IterableDataset)
    assert _decoded(prepared, tokenizer) == [("p", " a</s>", True)]


def test_check_vocabulary_reads_completion_ids():
    tokenizer = build_tokenizer()
    model = build_model(tokenizer)
    tokenizer.add_tokens(["<brand-new>"])
    rows = [
        {"prompt": "Q", "completion": " yes", "label": True},
        {"prompt": "Q", "completion": " <brand-new>", "label": False},
    ]
    dataset, _ = _prepare(rows, tokenizer)
    with pytest.raises(ValueError, match=r"row 1, field 'completion_input_ids': token id 400 is past the model's 400"):
        check_vocabulary(model, tokenizer, dataset)


# ---- pairs unrolled ------------------------------------------------------------------------------------------


def test_pairs_unroll_into_the_chosen_rows_then_the_rejected_rows(caplog):
    """TRL's unpair_preference_dataset order: the batch's chosen completions (True), then its rejected ones (False),
    each with its pair's prompt and other columns; implicit prompts are split off first."""
    tokenizer = build_tokenizer()
    rows = [
        {"chosen": "Question: fox? Answer: yes", "rejected": "Question: fox? Answer: no", "score": 1},
        {"chosen": "Question: dog? Answer: good", "rejected": "Question: dog? Answer: bad", "score": 2},
    ]
    with caplog.at_level(logging.INFO, logger="hf_dpo.data"):
        dataset, stats = _prepare(rows, tokenizer)
    assert _decoded(dataset, tokenizer) == [
        ("Question: fox? Answer:", " yes</s>", True),
        ("Question: dog? Answer:", " good</s>", True),
        ("Question: fox? Answer:", " no</s>", False),
        ("Question: dog? Answer:", " bad</s>", False),
    ]
    assert dataset["score"] == [1, 2, 1, 2]
    assert (stats.pairs_unrolled, stats.rows_in, stats.kept, stats.desirable, stats.undesirable) == (2, 4, 4, 2, 2)
    assert (
        "train set: 2 pairs unrolled into 4 rows; 4 of 4 rows kept (0 of them truncated): 2 desirable" in caplog.text
    )


def test_chat_pairs_unroll():
    tokenizer = _chat_tokenizer()
    rows = [{"chosen": [SYSTEM, USER, *_assistant("Paris")], "rejected": [SYSTEM, USER, *_assistant("Lyon")]}]
    dataset, _ = _prepare(rows, tokenizer)
    assert _decoded(dataset, tokenizer) == [
        (CHAT_PROMPT + GENERATION, "Paris<|im_end|>", True),
        (CHAT_PROMPT + GENERATION, "Lyon<|im_end|>", False),
    ]


def test_unrolling_goes_batch_by_batch_as_trl_does(monkeypatch):
    """TRL's map batches are 1000 pairs; with batches of 2, five pairs give c0 c1 r0 r1 c2 c3 r2 r3 c4 r4."""
    assert hf_dpo.data.unpaired.UNROLL_BATCH_SIZE == 1000
    monkeypatch.setattr(hf_dpo.data.unpaired, "UNROLL_BATCH_SIZE", 2)
    tokenizer = build_tokenizer()
    rows = [{"prompt": f"Q{i}", "chosen": f" {i}", "rejected": f" {i}{i}"} for i in range(5)]
    dataset, _ = _prepare(rows, tokenizer)
    completions = [tokenizer.decode(ids).removesuffix("</s>").strip() for ids in dataset["completion_input_ids"]]
    assert completions == ["0", "1", "00", "11", "2", "3", "22", "33", "4", "44"]
    assert dataset["label"] == [True, True, False, False] * 2 + [True, False]


def test_identical_pairs_and_pairs_without_room_drop_both_rows():
    rows = [
        {"prompt": "short", "chosen": " yes", "rejected": " no"},
        {"prompt": "same", "chosen": " x", "rejected": " x"},
        {"prompt": "a much longer prompt " * 20, "chosen": " yes", "rejected": " no"},
        {"prompt": "short", "chosen": " yes good " * 10, "rejected": " no"},
    ]
    dataset, stats = _prepare(rows, build_tokenizer(), max_length=24, max_prompt_length=None)
    assert (stats.pairs_unrolled, stats.rows_in, stats.kept, stats.truncated) == (4, 8, 4, 2)
    assert (stats.dropped_identical, stats.dropped_no_room, stats.desirable, stats.undesirable) == (2, 2, 2, 2)
    assert dataset["label"] == [True, True, False, False]


def test_a_stream_of_pairs_unrolls_and_logs_the_pair_it_drops(caplog):
    rows = [{"prompt": "p", "chosen": " a", "rejected": " b"}, {"prompt": "p", "chosen": " a", "rejected": " a"}]
    with caplog.at_level(logging.INFO, logger="hf_dpo.data"):
        prepared, _ = _prepare(Dataset.from_list(rows).to_iterable_dataset(), build_tokenizer())
        assert [row["label"] for row in prepared] == [True, False]
    assert "train set: preference pairs unrolled into unpaired rows, as TRL's KTOTrainer does" in caplog.text
    assert "dropped streamed row 1 (identical pair)" in caplog.text


def test_tokenized_pairs_unroll_without_counts():
    pairs = Dataset.from_list([{"prompt_input_ids": [5], "chosen_input_ids": [6, 1], "rejected_input_ids": [7, 1]}])
    dataset, stats = _prepare(pairs)
    assert stats is None and dataset.to_list() == [
        {"prompt_input_ids": [5], "completion_input_ids": [6, 1], "label": True},
        {"prompt_input_ids": [5], "completion_input_ids": [7, 1], "label": False},
    ]


# ---- the paired path is unchanged ----------------------------------------------------------------------------


def test_pairs_for_a_paired_loss_are_counted_as_before():
    rows = [
        {"prompt": "short", "chosen": " yes", "rejected": " no"},
        {"prompt": "same", "chosen": " x", "rejected": " x"},
    ]
    dataset, stats = _prepare(rows, build_tokenizer(), loss_type="sigmoid")
    assert dataset.column_names == ["prompt_input_ids", "chosen_input_ids", "rejected_input_ids"]
    assert (stats.desirable, stats.undesirable, stats.pairs_unrolled) == (None, None, None)
    assert stats.summary() == (
        "train set: 1 of 2 rows kept (0 of them truncated); dropped 0 whose prompt leaves no room for a completion "
        "within max_length, 1 whose chosen and rejected completions are identical"
    )


def test_counts_are_json_and_fill_the_model_card_table():
    pairs = [{"prompt": "Q", "chosen": " yes", "rejected": " no"}, {"prompt": "R", "chosen": " x", "rejected": " x"}]
    _, paired = _prepare(pairs, build_tokenizer(), loss_type="sigmoid")
    _, unrolled = _prepare(pairs, build_tokenizer())
    stats = json.loads(json.dumps({"train": paired.to_dict(), "eval": unrolled.to_dict()}))
    card = render_model_card(
        model_name="m",
        base_model=None,
        is_peft=False,
        args=_args(),
        reference_kind="frozen copy",
        log_history=[],
        dataset_stats=stats,
    )
    assert "| train | 2 | 1 | 0 | 1 |" in card and "| eval | 4 | 2 | 0 | 2 |" in card


# ---- bad input: each kind gives a DataFormatError naming row and field ---------------------------------------

BAD_ROWS = [
    (
        "no label column",
        [{"prompt": "q", "completion": "a", "thumbs_up": True}],
        r"has no column\(s\) \['label'\].*column_mapping=\{'thumbs_up': 'label'\}",
    ),
    (
        "no completion column",
        [{"prompt": "q", "answer": "a", "label": True}],
        r"has no column\(s\) \['completion'\].*pairs are taken too",
    ),
    ("no prompt column", [{"completion": "a", "label": True}], r"has no column\(s\) \['prompt'\]"),
    (
        "label 1",
        [{"prompt": "q", "completion": "a", "label": 1}],
        r"row 0, field 'label': expected a bool .* as TRL's KTOTrainer takes it; got int 1; cast 0/1 labels",
    ),
    (
        "label 0 in an Arrow column",
        Dataset.from_dict({"prompt": ["q"], "completion": ["a"], "label": [0]}),
        r"row 0, field 'label': expected a bool .*got int 0; cast 0/1 labels first: dataset.cast_column",
    ),
    (
        "label as text",
        [{"prompt": "q", "completion": "a", "label": "good"}],
        r"row 0, field 'label': expected a bool .*got str 'good'; turn the labels into bools first",
    ),
    (
        "label None",
        [{"prompt": "q", "completion": "a", "label": True}, {"prompt": "q", "completion": "b", "label": None}],
        r"row 1, field 'label': expected a bool .*got NoneType None; every row needs one",
    ),
    (
        "labels of mixed types",
        [{"prompt": "q", "completion": "a", "label": True}, {"prompt": "q", "completion": "b", "label": 1}],
        r"row 1, field 'label': expected a bool",
    ),
    ("label 2.0", [{"prompt": "q", "completion": "a", "label": 2.0}], r"row 0, field 'label': .*got float 2.0"),
    (
        "empty completion",
        [{"prompt": "q", "completion": "", "label": True}],
        "row 0, field 'completion': expected non-empty",
    ),
    (
        "completion None",
        [{"prompt": "q", "completion": None, "label": True}],
        "row 0, field 'completion': expected a string or a non-empty list of chat messages",
    ),
    (
        "completion starting with a user turn",
        [{"prompt": [USER], "completion": [USER], "label": True}],
        "row 0, field 'completion', message 0: a completion holds the assistant's answer .* got a 'user' message",
    ),
    (
        "empty assistant answer",
        [{"prompt": [USER], "completion": _assistant(""), "label": True}],
        r"row 0, field 'completion\[0\].content': expected non-empty text",
    ),
    (
        "prompt ending with an assistant turn",
        [{"prompt": [USER, *_assistant("x")], "completion": "a", "label": True}],
        "row 0, field 'prompt': the prompt ends with an assistant turn",
    ),
    (
        "text prompt, chat completion",
        [{"prompt": "q", "completion": _assistant("a"), "label": True}],
        "row 0: prompt is a string but completion is chat messages",
    ),
    (
        "mixed formats across rows",
        [{"prompt": "q", "completion": "a", "label": True}, {"prompt": [USER], "completion": "a", "label": False}],
        "row 1, field 'prompt': is list while row 0 is str",
    ),
    (
        "non-UTF-8 completion",
        [{"prompt": "q", "completion": "a\udcff", "label": True}],
        "row 0, field 'completion': not valid UTF-8",
    ),
    (
        "tools with text rows",
        [{"prompt": "q", "completion": "a", "label": True, "tools": [{"type": "function"}]}],
        "row 0, field 'tools': tools are given to a chat template, and this row is text",
    ),
    (
        "chat_template_kwargs not a dict",
        [{"prompt": [USER], "completion": "a", "label": True, "chat_template_kwargs": "x"}],
        "row 0, field 'chat_template_kwargs': expected a dict",
    ),
    (
        "empty dataset",
        Dataset.from_dict({"prompt": [], "completion": [], "label": []}),
        "the train dataset has no rows",
    ),
    (
        "image column",
        [{"prompt": "q", "completion": "a", "label": True, "images": ["cat.png"]}],
        r"the train dataset has an 'images' column",
    ),
    (
        "tokenized pairs with reference log-probs",
        Dataset.from_list(
            [
                {
                    "prompt_input_ids": [5],
                    "chosen_input_ids": [6, 1],
                    "rejected_input_ids": [7, 1],
                    "ref_chosen_logps": -1.0,
                    "ref_rejected_logps": -2.0,
                }
            ]
        ),
        r"tokenized pairs with reference log-probs \['ref_chosen_logps', 'ref_rejected_logps'\]",
    ),
]


@pytest.mark.parametrize(("kind", "rows", "message"), BAD_ROWS, ids=[kind for kind, _, _ in BAD_ROWS])
def test_bad_input_raises_a_clear_error(kind, rows, message):
    with pytest.raises(DataFormatError, match=message):
        _prepare(rows)


def test_chat_rows_need_a_chat_template():
    with pytest.raises(DataFormatError, match="row 0: the prompt is a list of chat messages but the tokenizer has no"):
        _prepare([{"prompt": [USER], "completion": "a", "label": True}], build_tokenizer(chat_template=False))


@pytest.mark.parametrize(
    "rows",
    [
        [{"prompt": "q", "completion": "a", "label": True}],
        Dataset.from_list([{"prompt_input_ids": [5], "completion_input_ids": [6, 1], "label": True}]),
    ],
    ids=["text", "tokenized"],
)
def test_unpaired_data_for_a_paired_loss_says_which_loss_takes_it(rows):
    with pytest.raises(DataFormatError, match=r"unpaired data; use loss_type='kto' \(or 'apo_zero_unpaired'\)"):
        _prepare(rows, loss_type="sigmoid")


def test_a_bad_mapping_target_names_every_kind_of_rows():
    message = (
        r"targets must be among \['prompt', 'chosen', 'rejected'\] \(pairs\), \['prompt', 'completion', 'label'\] "
        r"\(unpaired rows\) or \['prompt', 'completions', 'scores', 'ranking'\] \(lists of answers\)"
    )
    with pytest.raises(DataFormatError, match=message):
        _prepare([{"prompt": "q", "completion": "a", "label": True}], column_mapping={"label": "thumbs"})
