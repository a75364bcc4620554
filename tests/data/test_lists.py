"""hf_dpo.data.lists and hf_dpo.data.list_preparation: rows of several answers per prompt, tokenized as pairs are
(one EOS per answer, truncation counted), best first; errors that name the row and field, counted skips."""

import logging
import math

import numpy as np
import pytest
from datasets import Dataset, IterableDataset

from hf_dpo import DPOTrainingArguments
from hf_dpo.data import DataFormatError
from hf_dpo.data.lists import spread, tokenize_list_row
from hf_dpo.data.preparation import check_vocabulary, prepare_dataset, with_lengths
from hf_dpo.data.tokenization import tokenize_row

ROWS = [
    {"prompt": "Question: fox?", "completions": [" no", " yes good", " maybe"], "scores": [1.0, 3.0, 2.0]},
    {"prompt": "Question: dog?", "completions": [" bad", " good"], "scores": [0, 5]},
]


def _args(**overrides):
    return DPOTrainingArguments(output_dir="unused", report_to="none", use_cpu=True, **overrides)


def _prepare(rows, tokenizer, **overrides):
    return prepare_dataset(rows, tokenizer, _args(**overrides))


def _decoded(tokenizer, row):
    return [tokenizer.decode(ids) for ids in row["completions_input_ids"]]


def test_answers_are_tokenized_as_pair_completions_best_first(tokenizer):
    prepared, stats = _prepare(ROWS, tokenizer)
    first = prepared[0]
    assert _decoded(tokenizer, first) == [" yes good</s>", " maybe</s>", " no</s>"]
    assert first["completion_scores"] == [3.0, 2.0, 1.0]
    pair = tokenize_row(
        {"prompt": "Question: fox?", "chosen": " yes good", "rejected": " no"}, 0, tokenizer, False, **_limits()
    )
    assert first["prompt_input_ids"] == pair["prompt_input_ids"]
    assert first["completions_input_ids"][0] == pair["chosen_input_ids"]
    assert first["completions_input_ids"][2] == pair["rejected_input_ids"]
    assert set(prepared.column_names) == {"prompt_input_ids", "completions_input_ids", "completion_scores"}
    assert (stats.kept, stats.answers_in, stats.answers_kept) == (2, 5, 5)


def _limits():
    return {
        "max_length": 1024,
        "max_prompt_length": None,
        "max_completion_length": None,
        "truncation_mode": "keep_start",
    }


def test_a_ranking_becomes_negated_ranks_and_ties_are_kept(tokenizer):
    rows = [{"prompt": "Q:", "completions": [" a", " b", " c"], "ranking": [2, 1, 2]}]
    prepared, _ = _prepare(rows, tokenizer)
    assert _decoded(tokenizer, prepared[0]) == [" b</s>", " a</s>", " c</s>"]  # ties keep their order
    assert prepared[0]["completion_scores"] == [-1.0, -2.0, -2.0]


def test_chat_rows_and_bare_answers_to_a_chat_prompt(tokenizer):
    prompt = [{"role": "user", "content": "Capital of France?"}]
    rows = [
        {
            "prompt": prompt,
            "completions": [[{"role": "assistant", "content": "Paris"}], [{"role": "assistant", "content": "Rome"}]],
            "scores": [1.0, 0.0],
        }
    ]
    messages, _ = _prepare(rows, tokenizer)
    bare, _ = _prepare([{**rows[0], "completions": ["Paris", "Rome"]}], tokenizer)
    assert messages[0] == bare[0]
    assert _decoded(tokenizer, messages[0])[0] == "Paris<|im_end|>\n</s>"


def test_ultrafeedback_shape_is_one_column_mapping_and_score_column_away(tokenizer):
    rows = [
        {
            "instruction": "Question: fox?",
            "completions": [
                {"response": " no", "overall_score": 2.5, "model": "a"},
                {"response": " yes", "overall_score": 8.0, "model": "b"},
            ],
        }
    ]
    prepared, _ = _prepare(rows, tokenizer, column_mapping={"instruction": "prompt"}, score_column="overall_score")
    assert _decoded(tokenizer, prepared[0]) == [" yes</s>", " no</s>"] and prepared[0]["completion_scores"] == [8, 2.5]


def test_nectar_shape_reads_ranks_from_the_answers(tokenizer):
    rows = [{"prompt": "Q:", "answers": [{"answer": " a", "rank": 2}, {"answer": " b", "rank": 1}]}]
    prepared, _ = _prepare(rows, tokenizer, column_mapping={"answers": "completions"}, ranking_column="rank")
    assert _decoded(tokenizer, prepared[0]) == [" b</s>", " a</s>"]


BAD_ROWS = [
    ({"completions": [" a", " b"], "scores": [1, 0]}, "field 'prompt': a list of answers needs its prompt"),
    ({"prompt": "Q", "completions": " a", "scores": [1]}, "field 'completions': expected a list of answers, got str"),
    (
        {"prompt": "Q", "completions": [" a", " b"], "scores": [1, 0, 2]},
        r"field 'scores': expected one value per answer \(2\), got 3",
    ),
    (
        {"prompt": "Q", "completions": [" a", " b"], "scores": [1, math.nan]},
        r"field 'scores\[1\]': a score must be a finite number, got nan",
    ),
    ({"prompt": "Q", "completions": [" a", " b"], "scores": [math.inf, 0]}, r"scores\[0\]': a score must be a finite"),
    (
        {"prompt": "Q", "completions": [" a", " b"], "ranking": [1, 0]},
        r"ranking\[1\]': a rank must be an integer >= 1",
    ),
    ({"prompt": "Q", "completions": [" a", " b"], "ranking": [1, 1.5]}, r"ranking\[1\]': a rank must be an integer"),
    (
        {"prompt": "Q", "completions": [" a", " b"], "scores": [1, 0], "ranking": [1, 2]},
        "one way.*got scores, ranking",
    ),
    ({"prompt": "Q", "completions": [" a", " b"]}, "one way.*got none"),
    (
        {"prompt": "Q", "completions": [" a", " b", " a"], "scores": [1, 0, 0]},
        "answers 0 and 2 are the same text with different scores",
    ),
    (
        {"prompt": "Q", "completions": [" a", ""], "scores": [1, 0]},
        r"field 'completions\[1\]': expected non-empty text",
    ),
    (
        {
            "prompt": "Q",
            "completions": [[{"role": "assistant", "content": "a"}], [{"role": "assistant", "content": "b"}]],
            "scores": [1, 0],
        },
        "prompt is a string but completions",
    ),
]


@pytest.mark.parametrize(("row", "message"), BAD_ROWS, ids=lambda value: str(value)[:40])
def test_bad_rows_raise_errors_naming_row_and_field(tokenizer, row, message):
    with pytest.raises(DataFormatError, match=f"row 1.*{message}|row 1, {message}|{message}") as error:
        _prepare([ROWS[1], row], tokenizer)
    assert "row 1" in str(error.value)


def test_a_bool_is_no_score(tokenizer):
    row = {"prompt": "Q", "completions": [" a", " b"], "scores": [1, True]}
    with pytest.raises(
        DataFormatError, match=r"row 3, field 'scores\[1\]': a score must be a finite number, got True"
    ):
        tokenize_list_row(row, 3, tokenizer, False, **_limits())


def test_answers_given_as_dicts_need_one_text_key_and_the_score_key(tokenizer):
    base = {"prompt": "Q"}
    with pytest.raises(DataFormatError, match=r"completions\[0\]'.*exactly one of response, answer.*several of"):
        _prepare(
            [{**base, "completions": [{"response": "a", "text": "b", "s": 1}, {"response": "c", "s": 0}]}],
            tokenizer,
            score_column="s",
        )
    with pytest.raises(
        DataFormatError, match=r"completions\[1\]'.*score_column='s' reads each answer's score.*keys \['response'\]"
    ):
        _prepare(
            [{**base, "completions": [{"response": "a", "s": 1}, {"response": "c"}]}], tokenizer, score_column="s"
        )
    with pytest.raises(
        DataFormatError, match=r"score_column='s' reads each answer's score from a dict; this answer is str"
    ):
        _prepare([{**base, "completions": [" a", " b"]}], tokenizer, score_column="s")


def test_counted_skips_fewer_than_two_ties_copies_and_truncation(tokenizer, caplog):
    rows = [
        *ROWS,
        {"prompt": "Q: one", "completions": [" only"], "scores": [1.0]},
        {"prompt": "Q: none", "completions": [], "scores": []},
        {"prompt": "Q: tied", "completions": [" a", " b"], "scores": [2.0, 2.0]},
        {"prompt": "Q: copies", "completions": [" a", " b", " a"], "ranking": [1, 2, 1]},
        {"prompt": "Q: copies only", "completions": [" a", " a"], "scores": [1.0, 1.0]},
    ]
    with caplog.at_level(logging.WARNING, logger="hf_dpo.data.list_preparation"):
        prepared, stats = _prepare(rows, tokenizer)
    assert len(prepared) == 3 and _decoded(tokenizer, prepared[2]) == [" a</s>", " b</s>"]
    assert (stats.rows_in, stats.kept, stats.too_few_answers, stats.all_tied, stats.dropped_identical) == (
        7,
        3,
        3,
        1,
        4,
    )
    assert stats.duplicate_answers == 2 and stats.answers_in == 5 + 1 + 0 + 2 + 3 + 2 and stats.answers_kept == 7
    assert "3 of 7 lists kept" in caplog.text and "3 with fewer than two answers" in caplog.text
    assert "1 whose answers all tie" in caplog.text and "2 repeated answers dropped" in caplog.text


def test_truncation_is_counted_and_answers_it_makes_identical_are_dropped(tokenizer):
    prompt_length = len(tokenizer("Question: fox?", add_special_tokens=False)["input_ids"])
    rows = [
        {"prompt": "Question: fox?", "completions": [" yes good", " yes bad", " no"], "scores": [3, 2, 1]},
        {"prompt": "Question: fox?", "completions": [" yes good", " yes bad"], "scores": [3, 2]},
    ]
    prepared, stats = _prepare(rows, tokenizer, max_length=prompt_length + 1)  # one token of each answer
    assert stats.truncated == 1 and stats.kept == 1 and stats.dropped_identical == 1
    assert stats.duplicate_answers == 2  # " yes" twice: the worse copy goes, in both rows
    assert len(prepared[0]["completions_input_ids"]) == 2 and prepared[0]["completion_scores"] == [3, 1]


def test_max_completions_per_prompt_keeps_best_worst_and_an_even_spread(tokenizer, caplog):
    rows = [{"prompt": "Q:", "completions": [f" a{i}" for i in range(7)], "scores": list(range(7))}]
    with caplog.at_level(logging.WARNING):
        prepared, stats = _prepare(rows, tokenizer, max_completions_per_prompt=4)
    assert prepared[0]["completion_scores"] == [6, 4, 2, 0]
    assert (stats.capped_rows, stats.capped_answers) == (1, 3)
    assert "max_completions_per_prompt left out 3 answers of 1 rows" in caplog.text
    assert spread(7, 4) == [0, 2, 4, 6] and spread(5, 3) == [0, 2, 4] and spread(2, 2) == [0, 1]


def test_tokenized_lists_pass_through_and_need_their_scores(tokenizer):
    tokenized = Dataset.from_dict(
        {"prompt_input_ids": [[5]], "completions_input_ids": [[[6, 2], [7, 2]]], "completion_scores": [[1.0, 0.0]]}
    )
    prepared, stats = prepare_dataset(tokenized, tokenizer, _args())
    assert prepared is tokenized and stats is None
    with pytest.raises(DataFormatError, match="'completion_scores'"):
        prepare_dataset(tokenized.remove_columns("completion_scores"), tokenizer, _args())


def test_options_of_pairs_and_unpaired_losses_are_refused_on_lists(tokenizer):
    with pytest.raises(DataFormatError, match="loss_type 'kto' trains on unpaired rows"):
        _prepare(ROWS, tokenizer, loss_type="kto")
    with pytest.raises(DataFormatError, match="use_weighting weighs the two answers of a pair"):
        _prepare(ROWS, tokenizer, use_weighting=True)
    with pytest.raises(DataFormatError, match="ld_alpha"):
        _prepare(ROWS, tokenizer, ld_alpha=0.5)


def test_a_stream_is_tokenized_lazily_and_logs_each_drop(tokenizer, caplog):
    rows = [*ROWS, {"prompt": "Q: tied", "completions": [" a", " b"], "scores": [2.0, 2.0]}]
    stream = IterableDataset.from_generator(lambda: iter(rows))
    with caplog.at_level(logging.WARNING):
        prepared, stats = prepare_dataset(stream, tokenizer, _args())
        kept = list(prepared)
    assert stats is None and len(kept) == 2 and kept[1]["completion_scores"] == [5, 0]
    assert "dropped streamed row 2 (every answer tied)" in caplog.text


def test_invalid_utf8_in_an_answer_names_its_row_and_field(tokenizer):
    rows = [ROWS[0], {"prompt": "Q", "completions": [" a", "b\udcff"], "scores": [1, 0]}]
    with pytest.raises(DataFormatError, match=r"row 1, field 'completions\[1\]': not valid UTF-8"):
        _prepare(rows, tokenizer)


def test_numpy_scores_and_a_dataset_of_lists(tokenizer):
    dataset = Dataset.from_list([{**ROWS[0], "scores": list(np.array([1.0, 3.0, 2.0]))}])
    prepared, _ = prepare_dataset(dataset, tokenizer, _args())
    assert prepared[0]["completion_scores"] == [3.0, 2.0, 1.0]


def test_lengths_and_vocabulary_read_every_answer(tokenizer):
    prepared, _ = _prepare(ROWS, tokenizer)
    lengths = with_lengths(prepared, "length")["length"]
    row = prepared[1]
    assert lengths[1] == len(row["prompt_input_ids"]) + sum(map(len, row["completions_input_ids"]))
    prepared = Dataset.from_dict(
        {"prompt_input_ids": [[1, 2]], "completions_input_ids": [[[3, 4], [5, 9]]], "completion_scores": [[1.0, 0.0]]}
    )

    class Small:  # a model with fewer embeddings than the tokenizer's ids
        def get_input_embeddings(self):
            return type("E", (), {"num_embeddings": 8})()

    with pytest.raises(ValueError, match="field 'completions_input_ids': token id"):
        check_vocabulary(Small(), tokenizer, prepared)


def test_tokenize_list_row_reports_its_counts(tokenizer):
    row = tokenize_list_row(
        {"prompt": "Q", "completions": [" a", " b", " a", " c"], "scores": [3, 2, 3, 1]},
        0,
        tokenizer,
        False,
        max_completions_per_prompt=2,
        **_limits(),
    )
    assert row["_hf_dpo_duplicates"] == 1 and row["_hf_dpo_capped"] == 1 and row["completion_scores"] == [3, 1]


def test_lists_with_images_are_refused_not_trained_without_them(tokenizer):
    # the list layout reads text only; a Dataset (not a list of dicts) reaches preparation with its image column
    rows = Dataset.from_dict(
        {"prompt": ["q"], "completions": [[" a", " b"]], "scores": [[1.0, 0.0]], "images": [["img.png"]]}
    )
    with pytest.raises(DataFormatError, match=r"lists of answers \('completions'\) with images"):
        prepare_dataset(rows, tokenizer, _args())
