"""A recipe's ``datasets:`` entries are checked before anything loads; each mistake names the entry and the field."""

import pytest
import yaml

from hf_dpo.config.data_sources import data_sources
from hf_dpo.config.recipe import UserError
from hf_dpo.config.run_arguments import parse_train_args


def test_entries_become_sources_with_their_defaults():
    first, second = data_sources([{"path": "org/a", "fraction": 0.5}, {"path": "b.jsonl", "rows": 3, "name": "en"}])
    assert (first.path, first.split, first.fraction, first.rows) == ("org/a", "train", 0.5, None)
    assert second.label == "datasets[1] (b.jsonl, en, train)"


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([], "expected a non-empty list"),
        (["org/a"], r"datasets\[0\]: expected a mapping"),
        ([{"path": "org/a"}, {"pth": "org/b"}], r"datasets\[1\]: unknown key 'pth' \(did you mean 'path'\?\)"),
        ([{"split": "train"}], r"datasets\[0\]: path: expected the dataset"),
        (
            [{"path": "org/a", "fraction": 0.5, "rows": 10}],
            r"datasets\[0\] \(org/a\): fraction and rows are exclusive",
        ),
        ([{"path": "org/a", "fraction": 1.5}], r"datasets\[0\] \(org/a\): fraction=1.5 must be in \(0, 1\]"),
        ([{"path": "org/a", "rows": 0}], r"datasets\[0\] \(org/a\): rows: expected a whole number of rows >= 1"),
        ([{"path": "org/a", "column_mapping": ["q"]}], r"datasets\[0\] \(org/a\): column_mapping: expected a mapping"),
    ],
)
def test_each_mistake_names_the_entry_and_the_field(entries, message):
    with pytest.raises(ValueError, match=message):
        data_sources(entries)


def _recipe(tmp_path, **values):
    (tmp_path / "r.yaml").write_text(yaml.safe_dump({"datasets": [{"path": "org/a"}], **values}))
    return str(tmp_path / "r.yaml")


def test_a_recipe_with_datasets_has_no_test_split_and_refuses_dataset_name(tmp_path):
    _, data_args, _, args = parse_train_args([_recipe(tmp_path)])
    assert data_args.dataset_test_split is None and data_args.dataset_names() == ["org/a"]
    assert args.output_dir.endswith("-mix")
    with pytest.raises(UserError, match="datasets and dataset_name are exclusive"):
        parse_train_args([_recipe(tmp_path), "--dataset_name", "org/b"])
    with pytest.raises(UserError, match="held out of it with eval_split_size"):
        parse_train_args([_recipe(tmp_path, dataset_test_split="test")])
    with pytest.raises(UserError, match=r"datasets\[0\] \(org/a\): fraction=2"):
        parse_train_args([_recipe(tmp_path, datasets=[{"path": "org/a", "fraction": 2}])])
