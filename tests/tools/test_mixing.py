"""``datasets:`` mixed into one training set: each source's share drawn with the seed, columns mapped, the rows of
each counted; mistakes name the entry. End to end through ``hf-dpo train``: the summary, the log and the card count
every source."""

import json
import logging

import pytest
import yaml
from tiny import build_model, build_tokenizer

from hf_dpo.cli.dispatch import main
from hf_dpo.config.data_sources import data_sources
from hf_dpo.config.recipe import UserError
from hf_dpo.tools.mixing import mix_sources


def _write(path, rows):
    path.write_text("\n".join(json.dumps(row) for row in rows))
    return str(path)


def _pairs(tag, count, keys=("prompt", "chosen", "rejected")):
    return [dict(zip(keys, (f"{tag} question {i}?", f" {tag} yes", f" {tag} no"))) for i in range(count)]


@pytest.fixture
def files(tmp_path):
    return {
        "a": _write(tmp_path / "a.jsonl", _pairs("a", 20)),
        "b": _write(tmp_path / "b.jsonl", _pairs("b", 10, ("question", "good", "bad"))),
    }


def test_shares_are_drawn_mixed_and_counted(files, caplog):
    sources = data_sources([
        {"path": files["a"], "fraction": 0.25},
        {"path": files["b"], "rows": 4, "column_mapping": {"question": "prompt", "good": "chosen", "bad": "rejected"}},
    ])  # fmt: skip
    with caplog.at_level(logging.INFO, logger="hf_dpo"):
        mixed, counts = mix_sources(sources, seed=3)
    assert counts == [(f"{files['a']}, train", 5, 20), (f"{files['b']}, train", 4, 10)]
    assert len(mixed) == 9 and sorted(mixed.column_names) == ["chosen", "prompt", "rejected"]
    tags = [row["prompt"].split()[0] for row in mixed]
    assert sorted(tags) == ["a"] * 5 + ["b"] * 4 and tags != sorted(tags)  # shuffled, not one source after the other
    assert f"train data: 5 rows of {files['a']}, train (fraction 0.25 of its 20)" in caplog.text
    assert "train data: 9 rows from 2 sources, mixed and shuffled with seed 3" in caplog.text
    # the same seed draws the same rows in the same order; another seed, others
    assert mix_sources(sources, seed=3)[0]["prompt"] == mixed["prompt"]
    assert mix_sources(sources, seed=4)[0]["prompt"] != mixed["prompt"]


def test_columns_only_some_sources_have_are_dropped_and_said(files, tmp_path, caplog):
    extra = _write(tmp_path / "c.jsonl", [row | {"score": 1.0} for row in _pairs("c", 4)])
    with caplog.at_level(logging.INFO, logger="hf_dpo"):
        mixed, _ = mix_sources(data_sources([{"path": files["a"]}, {"path": extra}]), seed=0)
    assert "score" not in mixed.column_names and len(mixed) == 24
    assert f"datasets[1] ({extra}, train): columns 'score' dropped (not every source has them)" in caplog.text


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"rows": 50}, r"datasets\[0\] \(.*a.jsonl, train\): rows=50, but the split has only 20 rows"),
        ({"fraction": 0.01}, r"fraction=0.01 of 20 rows is no row"),
        ({"column_mapping": {"question": "prompt"}}, r"column_mapping names 'question', which the dataset does not"),
    ],
)
def test_mistakes_found_on_loading_name_the_entry(files, entry, message):
    with pytest.raises(UserError, match=message):
        mix_sources(data_sources([{"path": files["a"], **entry}]), seed=0)


def test_a_column_of_another_kind_names_both_sources(files, tmp_path):
    chat = [
        {"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "y"}],
         "rejected": [{"role": "assistant", "content": "n"}]}
    ]  # fmt: skip
    with pytest.raises(
        UserError, match=r"datasets\[1\] .*column 'prompt' holds .* but in datasets\[0\] .* holds text"
    ):
        mix_sources(data_sources([{"path": files["a"]}, {"path": _write(tmp_path / "chat.jsonl", chat)}]), seed=0)


def test_a_run_on_two_sources_counts_each_in_its_summary_and_card(files, tmp_path):
    tokenizer = build_tokenizer()
    build_model(tokenizer).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    mapping = {"question": "prompt", "good": "chosen", "bad": "rejected"}
    recipe = {
        "model_name_or_path": str(tmp_path / "model"),
        "datasets": [
            {"path": files["a"], "rows": 6},
            {"path": files["b"], "fraction": 0.5, "column_mapping": mapping},
        ],
        "eval_split_size": 3,
        "output_dir": str(tmp_path / "out"),
        "max_steps": 1,
        "per_device_train_batch_size": 2,
        "report_to": "none",
        "use_cpu": True,
        "plot": False,
    }
    (tmp_path / "mix.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["train", str(tmp_path / "mix.yaml")]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["sources"] == [[f"{files['a']}, train", 6], [f"{files['b']}, train", 5]]
    assert summary["train_rows"] == 8  # 11 mixed, 3 held out for evaluation
    card = (tmp_path / "out" / "README.md").read_text()
    assert f"| {files['a']}, train | 6 |" in card and f"| {files['b']}, train | 5 |" in card
