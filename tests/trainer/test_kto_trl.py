"""TRL's KTO users: ``from hf_dpo import KTOConfig, KTOTrainer`` in place of TRL's, with TRL 1.16's KTO defaults
(loss type, weights, sequential order and its KL pairing) and TRL's losses step by step on a tiny Llama in float32."""

import dataclasses
import warnings

import pytest
import torch
from datasets import Dataset
from tiny import build_model, preference_rows
from torch.testing import assert_close

from hf_dpo import DPOTrainingArguments, KTOConfig, KTOTrainer
from hf_dpo.data.columns import KL_COMPLETION_COLUMN
from hf_dpo.data.unpaired import kl_partners

KTO_DEFAULTS = (
    "loss_type",
    "desirable_weight",
    "undesirable_weight",
    "beta",
    "learning_rate",
    "max_length",
    "train_sampling_strategy",
    "gradient_checkpointing",
    "precompute_ref_log_probs",
    "disable_dropout",
)


def thumbs(count: int) -> list[dict]:
    """Unpaired rows, two desirable for each undesirable one, interleaved: batches mix both labels."""
    rows = []
    for index, pair in enumerate(preference_rows(count)):
        desirable = index % 3 != 0
        rows.append(
            {"prompt": pair["prompt"], "completion": pair["chosen" if desirable else "rejected"], "label": desirable}
        )
    return rows


@pytest.fixture(scope="module")
def tiny_llama_path(tmp_path_factory, tokenizer):
    path = tmp_path_factory.mktemp("tiny-llama-kto")
    build_model(tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def _common(**overrides):
    return {
        "per_device_train_batch_size": 4,
        "max_steps": 3,
        "logging_steps": 1,
        "learning_rate": 1e-2,
        "report_to": "none",
        "save_strategy": "no",
        "use_cpu": True,
        "bf16": False,
        "activation_checkpointing": False,
        "disable_tqdm": True,
        "seed": 0,
        **overrides,
    }


def _trl_and_ours(tmp_path, model_path, tokenizer, rows, **overrides):
    trl = pytest.importorskip("trl")
    runs = {}
    for name, config_class, trainer_class in (("trl", trl.KTOConfig, trl.KTOTrainer), ("ours", KTOConfig, KTOTrainer)):
        args = config_class(output_dir=str(tmp_path / name), **_common(**overrides))
        trainer = trainer_class(
            model=model_path, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer
        )
        trainer.train()
        runs[name] = [entry for entry in trainer.state.log_history if "loss" in entry]
    return runs


def test_every_default_of_trls_kto_config_is_ours(tmp_path):
    """TRL 1.16's KTOConfig and ours built alike: the same value in every field (loss_type "kto", both weights 1.0,
    sequential sampling, ...), but bf16 (off on a CPU) and remove_unused_columns (our columns are kept either way)."""
    trl = pytest.importorskip("trl")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TRL's config sets transformers' deprecated name
        theirs = trl.KTOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    ours = KTOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    different = {
        field.name
        for field in dataclasses.fields(trl.KTOConfig)
        if getattr(ours, field.name) != getattr(theirs, field.name)
    }
    assert different == {"bf16", "remove_unused_columns"}
    for name in KTO_DEFAULTS:
        assert getattr(ours, name) == getattr(theirs, name), name
    assert isinstance(ours, DPOTrainingArguments)  # every other field keeps its DPO meaning


@pytest.mark.parametrize("loss_type", ["kto", "apo_zero_unpaired"])
@pytest.mark.parametrize("data", ["unpaired", "pairs"])
def test_kto_trainer_follows_trls_losses(tmp_path, tokenizer, tiny_llama_path, loss_type, data):
    """Same rows, same order, same KL completions: the loss, the KL estimate z0 and the rewards match TRL's at every
    step (pairs are unrolled as TRL unrolls them: every chosen row, then every rejected one)."""
    rows = thumbs(12) if data == "unpaired" else preference_rows(8)
    steps = 3 if data == "unpaired" else 4  # pairs: 16 rows, two batches of each label
    runs = _trl_and_ours(tmp_path, tiny_llama_path, tokenizer, rows, loss_type=loss_type, max_steps=steps)
    assert len(runs["ours"]) == len(runs["trl"]) == steps
    for name in ("loss", "kl", "rewards/chosen", "rewards/rejected", "logps/chosen", "logps/rejected"):
        trl_values = [log.get(name) for log in runs["trl"]]
        our_values = [log.get(name) for log in runs["ours"]]
        assert [value is None for value in our_values] == [value is None for value in trl_values], name
        present = [(ours, theirs) for ours, theirs in zip(our_values, trl_values) if theirs is not None]
        assert_close([pair[0] for pair in present], [pair[1] for pair in present], atol=1e-5, rtol=1e-5), name
    assert max(log["kl"] for log in runs["ours"]) > (0 if loss_type == "kto" else -1)


def test_sequential_order_takes_trls_rotated_kl_completions(tmp_path, tokenizer):
    rows = thumbs(10)
    trainer = KTOTrainer(
        build_model(tokenizer),
        args=KTOConfig(output_dir=str(tmp_path), **_common(per_device_train_batch_size=4)),
        train_dataset=rows,
        processing_class=tokenizer,
    )
    completions = trainer.train_dataset["completion_input_ids"]
    # blocks of 4 rows: (x1, y4), (x2, y1), (x3, y2), (x4, y3); the last block of 2 rows swaps its completions
    expected = [completions[i] for i in (3, 0, 1, 2, 7, 4, 5, 6, 9, 8)]
    assert trainer.train_dataset[KL_COMPLETION_COLUMN] == expected
    assert trainer.args.train_sampling_strategy == "sequential"


def test_a_shuffled_order_pairs_each_row_with_another_prompt(tmp_path, tokenizer):
    trainer = KTOTrainer(
        build_model(tokenizer),
        args=KTOConfig(output_dir=str(tmp_path), **_common(train_sampling_strategy="random")),
        train_dataset=thumbs(8),
        processing_class=tokenizer,
    )
    data = trainer.train_dataset
    partners = kl_partners(data["prompt_input_ids"])
    assert all(data["prompt_input_ids"][index] != data["prompt_input_ids"][p] for index, p in enumerate(partners))
    assert data[KL_COMPLETION_COLUMN] == [data["completion_input_ids"][p] for p in partners]
    trainer.train()
    assert all(torch.isfinite(torch.tensor(log["loss"])) for log in trainer.state.log_history if "loss" in log)


def test_what_kto_trainer_refuses(tmp_path, tokenizer):
    with pytest.raises(ValueError, match="Invalid KTOConfig: loss_type='sigmoid' must be one of kto"):
        KTOConfig(output_dir=str(tmp_path), loss_type="sigmoid")
    with pytest.raises(ValueError, match="KTOTrainer trains an unpaired loss"):
        KTOTrainer(build_model(tokenizer), args=DPOTrainingArguments(output_dir=str(tmp_path), report_to="none"))
    one_row_batches = KTOConfig(output_dir=str(tmp_path), **_common(per_device_train_batch_size=1))
    with pytest.raises(ValueError, match="per_device_train_batch_size must be > 1"):
        KTOTrainer(build_model(tokenizer), args=one_row_batches, train_dataset=thumbs(4), processing_class=tokenizer)


def test_kto_trainer_without_arguments_takes_trls_defaults(tmp_path, tokenizer, tiny_llama_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    trainer = KTOTrainer(tiny_llama_path, train_dataset=thumbs(8), processing_class=tokenizer)
    assert isinstance(trainer.args, KTOConfig) and trainer.args.output_dir.endswith("-KTO")
    assert trainer.args.loss_type == "kto" and trainer.model.dtype == torch.float32
