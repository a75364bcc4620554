"""Every dataset shape users bring, and every kind of bad input: a clear error naming row and field, or a count."""

import json
import logging

import pytest
from datasets import Dataset, DatasetDict
from tiny import CHATML, build_model, build_tokenizer

from hf_dpo import DPOTrainer, DPOTrainingArguments
from hf_dpo.data.errors import DataFormatError
from hf_dpo.data.formats import normalise_row
from hf_dpo.data.preparation import prepare_dataset


def _args(**overrides):
    return DPOTrainingArguments(output_dir="unused", report_to="none", **overrides)


def _chat_tokenizer():
    tokenizer = build_tokenizer(bos=False)
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.chat_template = CHATML
    return tokenizer


def _prepare(rows, tokenizer=None, split="train", **overrides):
    return prepare_dataset(rows, tokenizer or _chat_tokenizer(), _args(**overrides), split)


def _decoded(dataset, tokenizer, index=0):
    row = dataset[index]
    return {name: tokenizer.decode(row[f"{name}_input_ids"]) for name in ("prompt", "chosen", "rejected")}


USER = {"role": "user", "content": "Capital of France?"}
SYSTEM = {"role": "system", "content": "Be brief."}


def _assistant(text):
    return [{"role": "assistant", "content": text}]


# ---- formats ---------------------------------------------------------------------------------------------------


def test_standard_text_rows():
    tokenizer = build_tokenizer()
    dataset, stats = _prepare([{"prompt": "Q: fox?", "chosen": " yes", "rejected": " no"}], tokenizer)
    assert _decoded(dataset, tokenizer) == {"prompt": "Q: fox?", "chosen": " yes</s>", "rejected": " no</s>"}
    assert stats.kept == 1


def test_conversational_multi_turn_with_system_message():
    tokenizer = _chat_tokenizer()
    prompt = [SYSTEM, USER, *_assistant("Paris."), {"role": "user", "content": "And of Spain?"}]
    dataset, _ = _prepare([{"prompt": prompt, "chosen": _assistant("Madrid"), "rejected": _assistant("Rome")}])
    decoded = _decoded(dataset, tokenizer)
    assert decoded["prompt"].startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert decoded["prompt"].endswith("And of Spain?<|im_end|>\n<|im_start|>assistant\n")
    assert decoded["chosen"] == "Madrid<|im_end|>"


def test_per_row_chat_template_kwargs_reach_the_template():
    tokenizer = _chat_tokenizer()
    tokenizer.chat_template = "{% if shout %}LOUD {% endif %}" + CHATML
    rows = [
        {"prompt": [USER], "chosen": "a", "rejected": "b", "chat_template_kwargs": {"shout": True}},
        {"prompt": [USER], "chosen": "a", "rejected": "b", "chat_template_kwargs": {"shout": False}},
    ]
    dataset, _ = _prepare(rows, tokenizer)
    assert _decoded(dataset, tokenizer, 0)["prompt"].startswith("LOUD ")
    assert not _decoded(dataset, tokenizer, 1)["prompt"].startswith("LOUD ")


def test_implicit_prompt_in_text_is_split_at_a_word_boundary():
    """The Anthropic HH shape: the shared start up to the answer is the prompt; the space goes with the answer."""
    chosen = "\n\nHuman: Is the fox quick?\n\nAssistant: Yes it is."
    rejected = "\n\nHuman: Is the fox quick?\n\nAssistant: Yesterday it was."
    row = normalise_row({"chosen": chosen, "rejected": rejected}, 0)
    assert row["prompt"] == "\n\nHuman: Is the fox quick?\n\nAssistant:"
    assert (row["chosen"], row["rejected"]) == (" Yes it is.", " Yesterday it was.")


def test_implicit_hh_prompt_ends_at_the_assistant_marker_even_when_answers_share_words():
    chosen = "\n\nHuman: Should I lie?\n\nAssistant: I think you should not."
    rejected = "\n\nHuman: Should I lie?\n\nAssistant: I think you should."
    row = normalise_row({"chosen": chosen, "rejected": rejected}, 0)
    assert row["prompt"] == "\n\nHuman: Should I lie?\n\nAssistant:"
    assert row["chosen"] == " I think you should not."


def test_identical_implicit_pairs_are_counted_not_fatal():
    rows = [
        {"chosen": "Question: fox? Answer: yes", "rejected": "Question: fox? Answer: no"},
        {"chosen": "Question: dog? Answer: yes", "rejected": "Question: dog? Answer: yes"},
        {"chosen": [USER, *_assistant("Paris")], "rejected": [USER, *_assistant("Paris")]},
    ]
    _, stats = _prepare(rows[:2], build_tokenizer())
    assert (stats.kept, stats.dropped_identical) == (1, 1)
    _, stats = _prepare([{"chosen": [USER, *_assistant("Lyon")], "rejected": [USER, *_assistant("Nice")]}, rows[2]])
    assert (stats.kept, stats.dropped_identical) == (1, 1)


def test_implicit_prompt_in_conversations_ends_before_the_assistant_turn():
    chosen = [SYSTEM, USER, *_assistant("Paris")]
    rejected = [SYSTEM, USER, *_assistant("Lyon")]
    row = normalise_row({"chosen": chosen, "rejected": rejected}, 0)
    assert row["prompt"] == [SYSTEM, USER] and row["chosen"] == _assistant("Paris")
    dataset, _ = _prepare([{"chosen": chosen, "rejected": rejected}])
    assert _decoded(dataset, _chat_tokenizer())["rejected"] == "Lyon<|im_end|>"


def test_implicit_prompt_never_cuts_inside_a_turn_they_share():
    """Both answers start with the same assistant message and differ in a later turn: the prompt still ends before
    the first assistant turn after the last shared user message."""
    follow_up = {"role": "user", "content": "Sure?"}
    chosen = [USER, *_assistant("Paris"), follow_up, *_assistant("Yes")]
    rejected = [USER, *_assistant("Paris"), follow_up, *_assistant("No")]
    assert normalise_row({"chosen": chosen, "rejected": rejected}, 0)["prompt"] == [
        USER,
        *_assistant("Paris"),
        follow_up,
    ]


def test_column_mapping_renames_other_names():
    rows = [{"question": "Q: fox?", "response_j": " yes", "response_k": " no"}]
    mapping = {"question": "prompt", "response_j": "chosen", "response_k": "rejected"}
    dataset, stats = _prepare(rows, build_tokenizer(), column_mapping=mapping)
    assert stats.kept == 1 and "prompt_input_ids" in dataset.column_names
    args = _args(column_mapping='{"question": "prompt"}')  # a JSON string from the command line
    assert args.column_mapping == {"question": "prompt"}


def test_dataset_dict_splits_are_chosen_by_name():
    row = {"prompt": "p", "chosen": " a", "rejected": " b"}
    splits = DatasetDict({"train": Dataset.from_list([row] * 3), "validation": Dataset.from_list([row] * 2)})
    train, _ = _prepare(splits, build_tokenizer(), split="train")
    evaluation, _ = _prepare(splits, build_tokenizer(), split="eval")
    assert (len(train), len(evaluation)) == (3, 2)


def test_streaming_rows_are_tokenized_lazily_and_drops_are_logged(caplog):
    rows = [{"prompt": "p", "chosen": " a", "rejected": " b"}, {"prompt": "p", "chosen": " a", "rejected": " a"}]
    stream = Dataset.from_list(rows).to_iterable_dataset()
    prepared, stats = _prepare(stream, build_tokenizer())
    with caplog.at_level(logging.WARNING, logger="hf_dpo.data.preparation"):
        assert len(list(prepared)) == 1
    assert stats is None and "dropped streamed row 1 (identical pair)" in caplog.text


def test_trainer_accepts_a_dataset_dict_and_records_data_counts_in_the_state(tmp_path):
    tokenizer = build_tokenizer()
    rows = [{"prompt": f"Q{i}", "chosen": " yes", "rejected": " no"} for i in range(6)] + [
        {"prompt": "Q", "chosen": " same", "rejected": " same"}
    ]
    splits = DatasetDict({"train": Dataset.from_list(rows), "test": Dataset.from_list(rows[:2])})
    args = DPOTrainingArguments(
        output_dir=str(tmp_path), max_steps=1, report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True
    )
    trainer = DPOTrainer(
        build_model(tokenizer), args=args, train_dataset=splits, eval_dataset=splits, processing_class=tokenizer
    )
    # as in Trainer, a DatasetDict of evaluation sets is several named sets; for training its 'train' split is used
    assert (len(trainer.train_dataset), len(trainer.eval_dataset["test"])) == (6, 2)
    trainer.train()
    trainer.save_state()
    saved = json.loads((tmp_path / "trainer_state.json").read_text())
    stats = saved["stateful_callbacks"]["DataStatsCallback"]["args"]["stats"]
    assert stats["train"]["dropped_identical"] == 1 and stats["eval_test"]["kept"] == 2


# ---- bad input: each kind gives a DataFormatError naming row and field, or a counted skip ----------------------

BAD_ROWS = [
    (
        "prompt under another name",
        [{"question": "q", "chosen": "a", "rejected": "b"}],
        "row 0: no 'prompt' column, .* map one with column_mapping",
    ),
    ("missing completion", [{"prompt": "q", "chosen": "a"}], r"has no column\(s\) \['rejected'\].*column_mapping"),
    ("None value", [{"prompt": "q", "chosen": None, "rejected": "b"}], "row 0, field 'chosen': expected a string"),
    ("number value", [{"prompt": "q", "chosen": "a", "rejected": 3}], "row 0, field 'rejected': expected a string"),
    ("empty chosen", [{"prompt": "q", "chosen": "", "rejected": "b"}], "row 0, field 'chosen': expected non-empty"),
    (
        "blank rejected",
        [{"prompt": "q", "chosen": "a", "rejected": " \n"}],
        "row 0, field 'rejected': expected non-empty",
    ),
    (
        "message without role",
        [{"prompt": [{"content": "q"}], "chosen": "a", "rejected": "b"}],
        "message 0: expected a dict",
    ),
    (
        "message without content",
        [{"prompt": [{"role": "user"}], "chosen": "a", "rejected": "b"}],
        "row 0, field 'prompt', message 0: expected string 'content', got NoneType",
    ),
    (
        "unknown role",
        [{"prompt": [{"role": "human", "content": "q"}], "chosen": "a", "rejected": "b"}],
        "role 'human'",
    ),
    (
        "roles out of order",
        [{"prompt": [USER, USER], "chosen": "a", "rejected": "b"}],
        "message 1: two 'user' messages in a row",
    ),
    (
        "system message not first",
        [{"prompt": [USER, SYSTEM, USER], "chosen": "a", "rejected": "b"}],
        "message 1: a system message may only come first",
    ),
    (
        "prompt ends with assistant turn",
        [{"prompt": [USER, *_assistant("x")], "chosen": "a", "rejected": "b"}],
        "row 0, field 'prompt': the prompt ends with an assistant turn",
    ),
    (
        "completion starts with a user turn",
        [{"prompt": [USER], "chosen": [USER], "rejected": "b"}],
        "row 0, field 'chosen', message 0: a completion holds the assistant's answer .* got a 'user' message",
    ),
    (
        "user turn inside a completion",
        [{"prompt": [USER], "chosen": [*_assistant("a"), USER, *_assistant("b")], "rejected": "b"}],
        "row 0, field 'chosen', message 1: a completion holds the assistant's answer .* got a 'user' message",
    ),
    (
        "implicit conversations differing before the last user turn",
        [{"chosen": [USER, *_assistant("a"), USER, *_assistant("b")], "rejected": [USER, *_assistant("c")]}],
        "row 0, field 'chosen': after the shared prompt .* still has a 'user' turn",
    ),
    (
        "content shapes that differ between rows",
        [
            {"prompt": "q", "chosen": "a", "rejected": "b", "score": 1},
            {"prompt": "q", "chosen": "a", "rejected": "b", "score": "high"},
        ],
        "the train rows cannot form one table: column 'score' holds different types in different rows",
    ),
    (
        "text prompt, chat completions",
        [{"prompt": "q", "chosen": _assistant("a"), "rejected": _assistant("b")}],
        "row 0: prompt is a string but chosen/rejected are chat messages",
    ),
    (
        "mixed formats across rows",
        [{"prompt": "q", "chosen": "a", "rejected": "b"}, {"prompt": [USER], "chosen": "a", "rejected": "b"}],
        "row 1, field 'prompt': is list while row 0 is str",
    ),
    (
        "lists of unequal structure",
        [{"prompt": [USER], "chosen": [{"role": "assistant", "content": ["part"]}], "rejected": "b"}],
        "row 0, field 'chosen', message 0: expected string 'content' or 'tool_calls', got list",
    ),
    (
        "non-UTF-8 text",
        [{"prompt": "q\udcff", "chosen": "a", "rejected": "b"}],
        "row 0, field 'prompt': not valid UTF-8",
    ),
    ("bytes instead of text", [{"prompt": b"q", "chosen": "a", "rejected": "b"}], "field 'prompt': expected a string"),
    ("row not a dict", [["q", "a", "b"]], "row 0 of the train dataset: expected a dict, got list"),
    (
        "empty dataset",
        Dataset.from_dict({"prompt": [], "chosen": [], "rejected": []}),
        "the train dataset has no rows",
    ),
    (
        "implicit prompt, nothing shared",
        [{"chosen": "Yes.", "rejected": "No."}],
        "row 0: no 'prompt' column, and 'chosen' and 'rejected' share no leading text",
    ),
    (
        "implicit prompt, mixed kinds",
        [{"chosen": "text", "rejected": _assistant("b")}],
        "row 0: 'chosen' and 'rejected' must both be text or both be chat messages",
    ),
    (
        "chat_template_kwargs not a dict",
        [{"prompt": [USER], "chosen": "a", "rejected": "b", "chat_template_kwargs": "x"}],
        "row 0, field 'chat_template_kwargs': expected a dict",
    ),
    (
        "image column, text-only training",
        Dataset.from_list([{"images": ["cat.png"], "prompt": [USER], "chosen": "a", "rejected": "b"}]),
        r"the train dataset has an 'images' column, and the processing class is a tokenizer \(a text-only model\): "
        r"the images would be ignored.*remove_columns",
    ),
    (
        "image key in a list of rows",
        [{"prompt": "q", "chosen": "a", "rejected": "b"}, {"prompt": "q", "chosen": "a", "rejected": "b", "image": 1}],
        r"the train dataset has an 'image' column, and the processing class is a tokenizer \(a text-only model\)",
    ),
    (
        "dataset dict without a usable split",
        DatasetDict({"other": Dataset.from_list([{"prompt": "q", "chosen": "a", "rejected": "b"}])}),
        r"DatasetDict with splits \['other'\] and none is named train",
    ),
]


@pytest.mark.parametrize(("kind", "rows", "message"), BAD_ROWS, ids=[kind for kind, _, _ in BAD_ROWS])
def test_bad_input_raises_a_clear_error(kind, rows, message):
    with pytest.raises(DataFormatError, match=message):
        _prepare(rows)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"column_mapping": {"question": "query"}}, r"targets must be among \['prompt', 'chosen', 'rejected'\]"),
        ({"column_mapping": {"nope": "prompt"}}, r"column_mapping names \['nope'\], which the train dataset lacks"),
    ],
)
def test_bad_column_mapping(overrides, message):
    with pytest.raises(DataFormatError, match=message):
        _prepare([{"prompt": "q", "chosen": "a", "rejected": "b"}], **overrides)


def test_column_mapping_checks_the_text_of_every_renamed_row():
    """Not only the last row: a bad first row under a mapped name is named, with the field's new name."""
    # no 'rejected': the row checks that follow would not look at it, Arrow would fail naming nothing
    rows = [{"question": "q\udcff", "chosen": "a"}, {"question": "fine", "chosen": "a"}]
    with pytest.raises(DataFormatError, match="row 0, field 'prompt': not valid UTF-8"):
        _prepare(rows, column_mapping={"question": "prompt"})


def test_an_empty_list_with_a_column_mapping_is_an_empty_dataset():
    with pytest.raises(DataFormatError, match="the train dataset has no rows"):
        _prepare([], column_mapping={"question": "prompt"})


def test_column_mapping_collisions_are_named():
    rows = [{"prompt": "p", "question": "q", "chosen": "a", "rejected": "b"}]
    with pytest.raises(DataFormatError, match=r"column_mapping would create \['prompt'\] twice"):
        _prepare(rows, column_mapping={"question": "prompt"})
    rows = [{"a": "p", "b": "q", "chosen": "x", "rejected": "y"}]
    with pytest.raises(DataFormatError, match=r"column_mapping would create \['prompt'\] twice"):
        _prepare(rows, column_mapping={"a": "prompt", "b": "prompt"})


def test_streams_without_declared_features():
    from datasets import IterableDataset

    def rows():
        yield {"prompt": "p", "chosen": " a"}

    stream = IterableDataset.from_generator(rows)
    with pytest.raises(DataFormatError, match=r"no (column|field)\(s\) \['rejected'\]"):
        list(_prepare(stream, build_tokenizer())[0])  # named when preparing, or at the latest when read

    def tokenized():
        yield {"prompt_input_ids": [5], "chosen_input_ids": [6, 1], "rejected_input_ids": [7, 1]}

    tokenized_stream = IterableDataset.from_generator(tokenized)
    assert _prepare(tokenized_stream, build_tokenizer())[0] is tokenized_stream


def test_chat_rows_need_a_chat_template():
    with pytest.raises(DataFormatError, match="row 0: the prompt is a list of chat messages but the tokenizer has no"):
        _prepare([{"prompt": [USER], "chosen": "a", "rejected": "b"}], build_tokenizer(chat_template=False))


def test_counted_skips_identical_and_too_long(caplog):
    rows = [
        {"prompt": "short", "chosen": " yes", "rejected": " no"},
        {"prompt": "same", "chosen": " x", "rejected": " x"},
        {"prompt": "a much longer prompt " * 20, "chosen": " yes", "rejected": " no"},
        {"prompt": "other", "chosen": " text", "rejected": " text"},
    ]
    with caplog.at_level(logging.INFO, logger="hf_dpo.data.preparation"):
        _, stats = _prepare(rows, build_tokenizer(), max_length=24, max_prompt_length=None)
    assert (stats.kept, stats.dropped_identical, stats.dropped_no_room) == (1, 2, 1)
    assert "1 of 4 rows kept" in caplog.text


def test_tokenizer_larger_than_the_model_embeddings_names_the_row(tmp_path):
    tokenizer = build_tokenizer()
    model = build_model(tokenizer)
    tokenizer.add_tokens(["<brand-new>"])
    rows = [
        {"prompt": "Q", "chosen": " yes", "rejected": " no"},
        {"prompt": "Q", "chosen": " <brand-new>", "rejected": " no"},
    ]
    with pytest.raises(ValueError, match=r"row 1, field 'chosen_input_ids': token id 400 is past the model's 400"):
        DPOTrainer(model, args=_args(use_cpu=True), train_dataset=rows, processing_class=tokenizer)
