"""The disk cache of precomputed reference log-probs: hit, miss on any key change, recovery from bad files."""

import logging

import pytest
import torch
from tiny import build_model, preference_rows

import hf_dpo.reference.precompute as precompute_module
from hf_dpo import DPOTrainer, DPOTrainingArguments
from hf_dpo.reference.cache import cache_key, load, save, weights_fingerprint


@pytest.fixture
def passes(monkeypatch):
    """Counts reference passes over a dataset (each costs one no-grad forward per batch)."""
    calls = []
    real = precompute_module.compute_reference_logps

    def counting(*args, **kwargs):
        calls.append(kwargs.get("description", args[-1]))
        return real(*args, **kwargs)

    monkeypatch.setattr(precompute_module, "compute_reference_logps", counting)
    return calls


def _trainer(tmp_path, tokenizer, seed=0, rows=16, **overrides):
    args = DPOTrainingArguments(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=4,
        max_steps=2,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        precompute_ref_log_probs=True,
        ref_logps_cache_dir=str(tmp_path / "cache"),
        **overrides,
    )
    return DPOTrainer(
        build_model(tokenizer, seed=seed), args=args, train_dataset=preference_rows(rows), processing_class=tokenizer
    )


def test_second_run_loads_the_cache_and_runs_no_reference_pass(tmp_path, tokenizer, passes):
    first = _trainer(tmp_path, tokenizer)
    assert len(passes) == 1 and len(list((tmp_path / "cache").glob("*.pt"))) == 1
    second = _trainer(tmp_path, tokenizer, beta=0.5, learning_rate=1e-3)  # a sweep: same reference, same data
    assert len(passes) == 1
    assert second.train_dataset["ref_chosen_logps"] == first.train_dataset["ref_chosen_logps"]
    assert second.train_dataset["ref_rejected_logps"] == first.train_dataset["ref_rejected_logps"]
    second.train()


@pytest.mark.parametrize(
    "change",
    [{"seed": 1}, {"max_length": 12, "max_prompt_length": 8}, {"rows": 12}, {"bf16": True}],
    ids=["reference weights", "truncation", "data", "precision"],
)
def test_any_change_of_key_recomputes(tmp_path, tokenizer, passes, change):
    _trainer(tmp_path, tokenizer)
    _trainer(tmp_path, tokenizer, **change)
    assert len(passes) == 2
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2


def test_peft_reference_key_ignores_the_adapters(tmp_path, tokenizer):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(build_model(tokenizer), LoraConfig(r=4, target_modules=["q_proj"], init_lora_weights=False))
    before = weights_fingerprint(model, skip=lambda name: "lora_" in name)
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if "lora_B" in n).add_(1.0)
    assert weights_fingerprint(model, skip=lambda name: "lora_" in name) == before
    assert weights_fingerprint(model) != before


@pytest.mark.parametrize("damage", ["truncate", "garbage", "checksum"])
def test_a_damaged_cache_file_is_detected_and_recomputed(tmp_path, tokenizer, passes, caplog, damage):
    first = _trainer(tmp_path, tokenizer)
    (path,) = (tmp_path / "cache").glob("*.pt")
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "garbage":
        path.write_bytes(b"not a cache file")
    else:
        payload = torch.load(path, weights_only=True)
        payload["values"][0, 0] += 1.0
        torch.save(payload, path)
    with caplog.at_level(logging.WARNING, logger="hf_dpo.reference.cache"):
        second = _trainer(tmp_path, tokenizer)
    assert len(passes) == 2 and "is unusable" in caplog.text
    assert second.train_dataset["ref_chosen_logps"] == first.train_dataset["ref_chosen_logps"]
    assert load(path, path.stem, 16) is not None  # rewritten whole


def test_load_refuses_a_wrong_key_or_row_count(tmp_path):
    path = tmp_path / "entry.pt"
    save(path, "k1", torch.tensor([[-1.0, -3.0], [-2.0, -4.0]]))
    assert load(path, "k1", 2)[:, 0].tolist() == [-1.0, -2.0]
    assert load(path, "k1", 3) is None and not path.exists()
    save(path, "k1", torch.tensor([[-1.0, -3.0]]))
    assert load(path, "other", 1) is None


def test_cache_disabled_writes_nothing(tmp_path, tokenizer, passes):
    _trainer(tmp_path, tokenizer, ref_logps_cache=False)
    _trainer(tmp_path, tokenizer, ref_logps_cache=False)
    assert len(passes) == 2 and not (tmp_path / "cache").exists()


def test_key_parts_are_all_used():
    assert (
        len(
            {cache_key("w", "d", "p"), cache_key("w2", "d", "p"), cache_key("w", "d2", "p"), cache_key("w", "d", "p2")}
        )
        == 4
    )
