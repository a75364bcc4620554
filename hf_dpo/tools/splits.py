"""The splits a command reads: ``hf-dpo train``'s recipe, ``hf-dpo eval --dataset``, ``hf-dpo inspect``'s target.

    load_splits(DataArguments(dataset_name="hf_dpo:concise_qa"))   # (train, test) of the demo's data

A ``dataset_name`` is data packaged with hf_dpo (an ``hf_dpo:`` name, the demo's), one local file (json, jsonl, csv,
parquet, ...: its rows are the train split), or a Hub id or local folder. The commands share this; it lives here,
below the CLI and beside the tools, because the packaged data is the demo's, which the core modules never import.
"""

from __future__ import annotations

import os
from typing import Any

from hf_dpo.config.recipe import UserError
from hf_dpo.config.run_arguments import DataArguments
from hf_dpo.models.packaged import PACKAGED_PREFIX


def load_splits(data_args: DataArguments) -> tuple[Any, Any]:
    """The train and evaluation splits named by ``data_args`` (evaluation may be ``None``)."""
    splits = _dataset_dict(data_args)
    for split in filter(None, (data_args.dataset_train_split, data_args.dataset_test_split)):
        if split not in splits:
            raise UserError(f"dataset {data_args.dataset_name!r} has no split {split!r}; it has {list(splits)}")
    train = splits[data_args.dataset_train_split]
    test = splits[data_args.dataset_test_split] if data_args.dataset_test_split else None
    if data_args.max_train_samples is not None:
        train = train.select(range(min(data_args.max_train_samples, len(train))))
    if test is not None and data_args.max_eval_samples is not None:
        test = test.select(range(min(data_args.max_eval_samples, len(test))))
    return train, test


def _dataset_dict(data_args: DataArguments) -> Any:
    """All splits of the dataset: packaged with hf_dpo (``hf_dpo:`` names), one local file, or a Hub id/folder."""
    from datasets import load_dataset
    from datasets.exceptions import DatasetNotFoundError

    name = data_args.dataset_name
    if name.startswith(PACKAGED_PREFIX):
        from hf_dpo.demo.packaged import load_packaged_splits  # the demo's data; the core never needs it

        try:
            return load_packaged_splits(name)
        except ValueError as error:  # not a packaged name; the message lists them
            raise UserError(str(error)) from error
    path = os.path.expanduser(name)
    if os.path.isfile(path):
        if data_args.dataset_test_split is not None:
            raise UserError(
                f"dataset_name={name!r} is a single file, which holds only the train split; set "
                "dataset_test_split to null (--dataset_test_split none) or give a folder or Hub id with both splits"
            )
        extension = path.rsplit(".", 1)[-1].replace("jsonl", "json")
        return load_dataset(extension, data_files={data_args.dataset_train_split: path})
    try:
        return load_dataset(path, data_args.dataset_config)
    except DatasetNotFoundError as error:  # a Hub id that does not exist, or is not cached offline
        raise UserError(f"dataset_name={name!r}: {error}") from error
