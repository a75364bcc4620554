"""The splits a command reads: ``hf-dpo train``'s recipe, ``hf-dpo eval --dataset``, ``hf-dpo inspect``'s target.

    load_splits(DataArguments(dataset_name="hf_dpo:concise_qa"))   # (train, test) of the demo's data

A ``dataset_name`` is data packaged with hf_dpo (an ``hf_dpo:`` name, the demo's), one local file (json, jsonl, csv,
parquet, ...: its rows are the train split), or a Hub id or local folder (a folder of ``train.jsonl`` and
``test.jsonl`` has those two splits, as ``datasets`` names files). ``eval_split_size`` holds part of the train split
out for evaluation, where the data has no test split. The commands share this; it lives here, below the CLI and
beside the tools, because the packaged data is the demo's, which the core modules never import.
"""

from __future__ import annotations

import os
from typing import Any

from hf_dpo.config.recipe import UserError
from hf_dpo.config.run_arguments import DataArguments
from hf_dpo.models.packaged import PACKAGED_PREFIX


def load_splits(data_args: DataArguments, seed: int = 42) -> tuple[Any, Any]:
    """The train and evaluation splits named by ``data_args`` (evaluation may be ``None``); with
    ``eval_split_size``, the evaluation rows are drawn from the train split with ``seed`` and left out of it."""
    if data_args.datasets is not None:
        return mixed_splits(data_args, seed)[:2]
    splits = _dataset_dict(data_args)
    wanted = [data_args.dataset_train_split]
    if data_args.eval_split_size is None and data_args.dataset_test_split:
        wanted.append(data_args.dataset_test_split)
    for split in wanted:
        if split not in splits:
            hint = "; or hold rows of the train split out with eval_split_size" if split != wanted[0] else ""
            raise UserError(f"dataset {data_args.dataset_name!r} has no split {split!r}; it has {list(splits)}{hint}")
    train = splits[data_args.dataset_train_split]
    test = splits[data_args.dataset_test_split] if len(wanted) == 2 else None
    if data_args.eval_split_size is not None:
        train, test = _held_out(train, data_args, seed)
    if data_args.max_train_samples is not None:
        train = train.select(range(min(data_args.max_train_samples, len(train))))
    if test is not None and data_args.max_eval_samples is not None:
        test = test.select(range(min(data_args.max_eval_samples, len(test))))
    return train, test


def mixed_splits(data_args: DataArguments, seed: int) -> tuple[Any, Any, list[tuple[str, int, int]]]:
    """``datasets:``'s sources mixed into the train split (:mod:`hf_dpo.tools.mixing`), the evaluation rows held out
    of the mixture with ``eval_split_size`` (None: no evaluation), and ``(source, rows taken, rows it has)``."""
    from hf_dpo.tools.mixing import mix_sources

    train, counts = mix_sources(data_args.sources(), seed)
    test = None
    if data_args.eval_split_size is not None:
        train, test = _held_out(train, data_args, seed)
    if data_args.max_train_samples is not None:
        train = train.select(range(min(data_args.max_train_samples, len(train))))
    if test is not None and data_args.max_eval_samples is not None:
        test = test.select(range(min(data_args.max_eval_samples, len(test))))
    return train, test, counts


def _held_out(train: Any, data_args: DataArguments, seed: int) -> tuple[Any, Any]:
    """``(train, eval)``: ``eval_split_size`` rows of ``train`` (a fraction or a count) drawn with ``seed``."""
    size = data_args.eval_split_size
    count = round(size * len(train)) if size < 1 else int(size)
    if not 0 < count < len(train):
        raise UserError(
            f"eval_split_size={size:g} holds out {count} of the {len(train)} training rows; both splits need at "
            "least one row"
        )
    parts = train.train_test_split(test_size=count, seed=seed, shuffle=True)
    return parts["train"], parts["test"]


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
        if data_args.dataset_test_split is not None and data_args.eval_split_size is None:
            raise UserError(
                f"dataset_name={name!r} is a single file, which holds only the train split: hold some of its rows out "
                "for evaluation with eval_split_size (e.g. --eval_split_size 0.1), set dataset_test_split to null "
                "(--dataset_test_split none) to train without one, or give a folder of train.jsonl and test.jsonl"
            )
        extension = path.rsplit(".", 1)[-1].replace("jsonl", "json")
        return load_dataset(extension, data_files={data_args.dataset_train_split: path})
    try:
        return load_dataset(path, data_args.dataset_config)
    except DatasetNotFoundError as error:  # a Hub id that does not exist, or is not cached offline
        raise UserError(f"dataset_name={name!r}: {error}") from error
