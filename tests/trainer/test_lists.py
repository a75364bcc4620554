"""DPOTrainer on lists of answers end to end, tiny Llama models built in code: loss_type="sigmoid" on lists of 2 is
today's DPO exactly, all_pairs is training on the expanded pairs, every reference kind and precompute (with its
cache) work per answer, and the ranking metrics are logged."""

import logging
import math

import pytest
import torch
from peft import LoraConfig
from tiny import build_model, preference_rows
from torch.testing import assert_close

from hf_dpo import DPOTrainer, DPOTrainingArguments
from hf_dpo.batch import ListDataCollator, SharedPromptCollator
from hf_dpo.reference.kinds import DisabledAdapterReference, PrecomputedReference

ANSWERS = [" Answer: yes good", " Answer: yes", " Answer: maybe", " Answer: no bad"]
LIST_METRICS = ("rewards/top1", "rewards/kendall_tau", "rewards/accuracies", "rewards/margins", "logps/chosen")


def list_rows(count, sizes=(4, 3, 2), offset=0):
    """Lists of 4, 3 and 2 answers in turn (best first in ANSWERS), given in a shuffled order with scores."""
    rows = []
    for i in range(count):
        size = sizes[i % len(sizes)]
        kept = [ANSWERS[k] for k in (0, 1, 2, 3)[:size]] if size != 2 else [ANSWERS[0], ANSWERS[3]]
        order = list(reversed(range(size))) if i % 2 else list(range(size))
        rows.append(
            {
                "prompt": f"Question: is the fox good {i + offset}?",
                "completions": [kept[k] for k in order],
                "scores": [float(size - k) for k in order],
            }
        )
    return rows


def _args(tmp_path, **overrides):
    values = {
        "output_dir": str(tmp_path),
        "per_device_train_batch_size": 3,
        "per_device_eval_batch_size": 4,
        "learning_rate": 1e-2,
        "max_steps": 6,
        "logging_steps": 2,
        "report_to": "none",
        "save_strategy": "no",
        "use_cpu": True,
        "disable_tqdm": True,
        "seed": 0,
        "train_sampling_strategy": "sequential",
    }
    return DPOTrainingArguments(**{**values, **overrides})


def _trainer(tmp_path, tokenizer, train, eval_rows=None, model=None, peft_config=None, **overrides):
    return DPOTrainer(
        model=model if model is not None else build_model(tokenizer),
        args=_args(tmp_path, **overrides),
        train_dataset=train,
        eval_dataset=eval_rows,
        processing_class=tokenizer,
        peft_config=peft_config,
    )


def _losses(trainer):
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def as_lists_of_two(pairs):
    return [{"prompt": p["prompt"], "completions": [p["rejected"], p["chosen"]], "ranking": [2, 1]} for p in pairs]


def test_sigmoid_on_lists_of_two_is_todays_dpo_exactly(tmp_path, tokenizer):
    pairs = preference_rows(24)
    as_pairs = _trainer(tmp_path / "pairs", tokenizer, pairs, pairs[:8])
    as_lists = _trainer(tmp_path / "lists", tokenizer, as_lists_of_two(pairs), as_lists_of_two(pairs[:8]))
    assert isinstance(as_lists.data_collator, SharedPromptCollator) and as_lists.data_collator.lists
    before = as_pairs.evaluate(), as_lists.evaluate()
    as_pairs.train()
    as_lists.train()
    after = as_pairs.evaluate(), as_lists.evaluate()
    assert _losses(as_pairs) == _losses(as_lists)
    for pair_metrics, list_metrics in (before, after):
        for name, value in pair_metrics.items():
            if not name.endswith(("time", "per_second")):
                assert list_metrics[name] == value, name
    for (name, value), other in zip(as_pairs.model.named_parameters(), as_lists.model.parameters()):
        assert torch.equal(value, other), name
    assert after[1]["eval_rewards/top1"] == after[1]["eval_rewards/accuracies"]  # on pairs, one and the same


def test_plackett_luce_trains_on_lists_and_logs_the_ranking_metrics(tmp_path, tokenizer):
    trainer = _trainer(
        tmp_path, tokenizer, list_rows(30), list_rows(8, offset=100), loss_type="plackett_luce", max_steps=10
    )
    before = trainer.evaluate()
    # policy == reference: each list's loss is the log of its orderings (4!, 3!, 2!), averaged over the 8 lists
    expected = (3 * math.log(24) + 3 * math.log(6) + 2 * math.log(2)) / 8
    assert before["eval_loss"] == pytest.approx(expected, abs=1e-5)
    assert before["eval_rewards/accuracies"] == 0 and before["eval_rewards/kendall_tau"] == 0
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert all(name in logs[0] for name in LIST_METRICS) and logs[-1]["loss"] < logs[0]["loss"]
    after = trainer.evaluate()
    assert after["eval_rewards/accuracies"] > 0.9 and after["eval_rewards/kendall_tau"] > 0.8
    assert after["eval_rewards/top1"] == 1 and after["eval_rewards/margins"] > 0
    assert trainer.dataset_stats["train"]["answers_kept"] == 90


def test_all_pairs_is_training_on_the_expanded_pairs(tmp_path, tokenizer):
    """6 lists of 3 answers, 2 lists a step, against their 18 pairs, 6 a step: the same batches, the same numbers."""
    lists = list_rows(6, sizes=(3,))
    expanded = [
        {"prompt": row["prompt"], "chosen": row["completions"][i], "rejected": row["completions"][j]}
        for row in lists
        for i in range(3)
        for j in range(3)
        if row["scores"][i] > row["scores"][j]
    ]
    on_lists = _trainer(
        tmp_path / "lists", tokenizer, lists, loss_type="all_pairs", per_device_train_batch_size=2, max_steps=3
    )
    on_pairs = _trainer(
        tmp_path / "pairs", tokenizer, expanded, per_device_train_batch_size=6, max_steps=3, logging_steps=1
    )
    on_lists.args.logging_steps = 1
    on_lists.train()
    on_pairs.train()
    assert_close(torch.tensor(_losses(on_lists)), torch.tensor(_losses(on_pairs)), atol=1e-5, rtol=0)
    norms = [
        [entry["grad_norm"] for entry in t.state.log_history if "grad_norm" in entry] for t in (on_lists, on_pairs)
    ]
    assert_close(torch.tensor(norms[0]), torch.tensor(norms[1]), atol=0, rtol=1e-5)
    # Adam divides by the root of the squared gradients: float rounding of a near-zero gradient moves a weight by
    # up to ~lr·1e-3 (2.8e-5 seen), so the weights are compared at 1e-4
    for value, other in zip(on_lists.model.parameters(), on_pairs.model.parameters()):
        assert_close(value, other, atol=1e-4, rtol=0)


def test_the_padded_layout_trains_as_the_shared_prompt(tmp_path, tokenizer):
    shared = _trainer(tmp_path / "shared", tokenizer, list_rows(12), loss_type="best_vs_rest", max_steps=3)
    padded = _trainer(
        tmp_path / "padded", tokenizer, list_rows(12), loss_type="best_vs_rest", max_steps=3, prefix_sharing=False
    )
    assert isinstance(padded.data_collator, ListDataCollator)
    shared.train()
    padded.train()
    assert_close(torch.tensor(_losses(shared)), torch.tensor(_losses(padded)), atol=1e-5, rtol=0)


def test_precomputed_reference_holds_one_value_per_answer_and_is_cached(tmp_path, tokenizer, caplog):
    train, eval_rows = list_rows(9), list_rows(5, offset=50)
    on_the_fly = _trainer(tmp_path / "fly", tokenizer, train, eval_rows, loss_type="nca", max_steps=3)
    cache = str(tmp_path / "cache")
    precomputed = _trainer(
        tmp_path / "pre",
        tokenizer,
        train,
        eval_rows,
        loss_type="nca",
        max_steps=3,
        precompute_ref_log_probs=True,
        ref_logps_cache_dir=cache,
    )
    assert isinstance(precomputed.reference, PrecomputedReference)
    column = precomputed.train_dataset["ref_completion_logps"]
    assert [len(values) for values in column] == [4, 3, 2] * 3 and all(math.isfinite(v) for row in column for v in row)
    on_the_fly.train()
    precomputed.train()
    assert_close(torch.tensor(_losses(on_the_fly)), torch.tensor(_losses(precomputed)), atol=1e-5, rtol=0)
    assert_close(on_the_fly.evaluate()["eval_loss"], precomputed.evaluate()["eval_loss"], atol=1e-5, rtol=0)
    # the same lists again: read from the cache; the same data as pairs of the first two answers: its own entry
    with caplog.at_level(logging.INFO, logger="hf_dpo.reference.precompute"):
        again = _trainer(
            tmp_path / "again",
            tokenizer,
            train,
            eval_rows,
            loss_type="nca",
            precompute_ref_log_probs=True,
            ref_logps_cache_dir=cache,
        )
    assert "train set: reference log-probs loaded from" in caplog.text
    assert again.train_dataset["ref_completion_logps"] == column
    shorter = [{**row, "completions": row["completions"][:2], "scores": row["scores"][:2]} for row in train]
    _trainer(
        tmp_path / "shorter",
        tokenizer,
        shorter,
        loss_type="nca",
        precompute_ref_log_probs=True,
        ref_logps_cache_dir=cache,
    )
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 3  # train and eval lists, and the shorter lists


def test_peft_reference_and_a_list_loss_on_a_pair_dataset(tmp_path, tokenizer):
    """plackett_luce on pairs is the sigmoid loss; the disabled-adapter reference scores each answer."""
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    pairs = preference_rows(12)
    ranked = _trainer(
        tmp_path / "pl",
        tokenizer,
        pairs,
        pairs[:4],
        loss_type="plackett_luce",
        peft_config=lora,
        max_steps=3,
        learning_rate=5e-2,
    )
    plain = _trainer(tmp_path / "dpo", tokenizer, pairs, pairs[:4], peft_config=lora, max_steps=3, learning_rate=5e-2)
    assert isinstance(ranked.reference, DisabledAdapterReference)
    ranked.train()
    plain.train()
    assert_close(torch.tensor(_losses(ranked)), torch.tensor(_losses(plain)), atol=1e-5, rtol=0)
    assert ranked.evaluate()["eval_rewards/kendall_tau"] > 0


def test_lists_for_training_and_pairs_for_evaluation(tmp_path, tokenizer):
    trainer = _trainer(tmp_path, tokenizer, list_rows(6), preference_rows(4), max_steps=2)
    trainer.train()
    metrics = trainer.evaluate()
    assert "eval_rewards/top1" in metrics and metrics["eval_loss"] > 0


def test_lists_given_late_to_a_pair_run_are_refused_by_name(tmp_path, tokenizer):
    trainer = _trainer(tmp_path, tokenizer, preference_rows(4), max_steps=1)
    with pytest.raises(ValueError, match="the eval dataset holds lists of answers; this run trains on pairs"):
        trainer.evaluate(eval_dataset=list_rows(3))
