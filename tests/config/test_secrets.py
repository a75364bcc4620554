"""Secrets stay secret: no Hub token in logs or in anything a run writes; no remote code unless asked; safetensors;
no unrestricted unpickling."""

import ast
import copy
import logging
import pickle
from pathlib import Path

import torch
from peft import LoraConfig
from tiny import build_model, preference_rows
from transformers import AutoModelForCausalLM

from hf_dpo import DPOTrainer, DPOTrainingArguments

TOKEN = "hf_FakeTokenForTests0123456789abcdef"
PACKAGE = Path(__file__).parents[2] / "hf_dpo"


def test_no_token_in_logs_or_in_any_file_a_run_writes(tmp_path, tokenizer, monkeypatch, caplog, capsys):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    caplog.set_level(logging.DEBUG)
    args = DPOTrainingArguments(
        output_dir=str(tmp_path / "out"),
        hub_token=TOKEN,
        model_init_kwargs={"token": TOKEN, "dtype": "float32"},
        per_device_train_batch_size=4,
        max_steps=2,
        logging_steps=1,
        save_strategy="steps",
        save_steps=1,
        eval_strategy="steps",
        eval_steps=2,
        precompute_ref_log_probs=True,
        ref_logps_cache_dir=str(tmp_path / "cache"),
        report_to="none",
        use_cpu=True,
    )
    trainer = DPOTrainer(
        build_model(tokenizer),
        args=args,
        train_dataset=preference_rows(8),
        eval_dataset=preference_rows(4),
        processing_class=tokenizer,
        peft_config=LoraConfig(r=4, target_modules=["q_proj"], task_type="CAUSAL_LM"),
    )
    trainer.train()
    trainer.save_model()
    trainer.save_state()
    trainer.create_model_card()
    logging.getLogger("test").info("arguments: %s %r %s", args, args, args.to_json_string())

    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert any(path.name == "training_args.bin" for path in written) and any(p.suffix == ".pt" for p in written)
    for path in written:
        assert TOKEN.encode() not in path.read_bytes(), path
    captured = capsys.readouterr()
    assert TOKEN not in caplog.text + captured.out + captured.err
    assert args.hub_token == TOKEN and args.model_init_kwargs["token"] == TOKEN  # the run itself keeps them
    loaded = torch.load(tmp_path / "out" / "training_args.bin", weights_only=False)
    assert loaded.hub_token is None and "token" not in loaded.model_init_kwargs and loaded.beta == args.beta


def test_copies_in_memory_keep_the_token(tmp_path):
    args = DPOTrainingArguments(output_dir=str(tmp_path), hub_token=TOKEN, report_to="none")
    assert copy.deepcopy(args).hub_token == TOKEN and copy.copy(args).hub_token == TOKEN
    assert pickle.loads(pickle.dumps(args)).hub_token is None


def test_weights_are_saved_as_safetensors(tmp_path, tokenizer):
    args = DPOTrainingArguments(output_dir=str(tmp_path), max_steps=1, report_to="none", use_cpu=True)
    trainer = DPOTrainer(
        build_model(tokenizer), args=args, train_dataset=preference_rows(8), processing_class=tokenizer
    )
    trainer.train()
    trainer.save_model()
    names = {path.name for path in tmp_path.iterdir()}
    assert "model.safetensors" in names and not names & {"pytorch_model.bin", "adapter_model.bin"}


def test_no_remote_code_unless_asked(tmp_path, tokenizer, monkeypatch):
    calls = []

    def recording_from_pretrained(name, **kwargs):
        calls.append(kwargs)
        return build_model(tokenizer)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", recording_from_pretrained)
    args = DPOTrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    DPOTrainer("some/model", args=args, train_dataset=preference_rows(4), processing_class=tokenizer)
    assert calls and not any(kwargs.get("trust_remote_code") for kwargs in calls)
    assert DPOTrainingArguments(output_dir=str(tmp_path), report_to="none").trust_remote_code is False


def test_torch_load_is_always_restricted_to_weights():
    """Unpickling arbitrary objects runs code: every torch.load in the package passes weights_only=True."""
    calls = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and ast.unparse(node.func) in ("torch.load", "load")
                and "torch" in ast.unparse(node.func)
            ):
                keywords = {keyword.arg: ast.unparse(keyword.value) for keyword in node.keywords}
                calls.append((path.name, keywords.get("weights_only")))
    assert calls and all(value == "True" for _, value in calls), calls
