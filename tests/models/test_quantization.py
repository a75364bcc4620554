"""QLoRA on CPU: tiny Llama and Qwen2 models saved to disk load in 4-bit NF4, train LoRA adapters with DPO, and the
loss falls, also after an eval-mode pass (which bitsandbytes' CPU repacking would otherwise break)."""

import math

import pytest
import torch
from peft import LoraConfig
from tiny import build_model, build_tokenizer, preference_rows
from transformers import Qwen2Config, Qwen2ForCausalLM

from hf_dpo import DPOTrainer, DPOTrainingArguments
from hf_dpo.models.loading import load_causal_lm, quantization_kwargs
from hf_dpo.models.quantization import keep_4bit_layers_trainable
from hf_dpo.reference.kinds import DisabledAdapterReference

bnb = pytest.importorskip("bitsandbytes")


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = build_tokenizer()
    # bitsandbytes' CPU kernels work in blocks of 64 input features
    build_model(tokenizer, hidden_size=64, intermediate_size=128).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def tiny_qwen2_path(tmp_path_factory):
    """Qwen2's q/k/v projections have biases, the case bitsandbytes' CPU repacking breaks outright."""
    path = tmp_path_factory.mktemp("tiny-qwen2")
    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,  # bitsandbytes' CPU kernels work in blocks of 64 input features
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # k/v projections of 32 outputs: the repacking needs multiples of 32
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    Qwen2ForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def test_load_in_4bit_builds_an_nf4_double_quant_config():
    kwargs = quantization_kwargs({"load_in_4bit": True, "dtype": "float32"})
    config = kwargs["quantization_config"]
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4" and config.bnb_4bit_use_double_quant
    assert config.bnb_4bit_compute_dtype == torch.float32 and kwargs["device_map"] == {"": "cpu"}
    assert quantization_kwargs({"dtype": "bfloat16"}) == {"dtype": "bfloat16"}
    with pytest.raises(ValueError, match="exclusive"):
        quantization_kwargs({"load_in_4bit": True, "load_in_8bit": True})


def test_qlora_trains_a_4bit_model_and_the_loss_falls(tmp_path, tiny_path):
    model = load_causal_lm(tiny_path, load_in_4bit=True, bnb_4bit_compute_dtype="float32")
    assert model.is_loaded_in_4bit
    assert isinstance(model.model.layers[0].self_attn.q_proj, bnb.nn.Linear4bit)
    args = DPOTrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        learning_rate=2e-2,
        max_steps=12,
        logging_steps=3,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        optim="adamw_8bit",  # bitsandbytes' 8-bit optimizer, as QLoRA recipes use on GPU
        activation_checkpointing=True,
    )
    lora = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = DPOTrainer(
        model=model,
        args=args,
        train_dataset=preference_rows(48),
        eval_dataset=preference_rows(8),
        peft_config=lora,
        processing_class=build_tokenizer(),
    )
    assert isinstance(trainer.reference, DisabledAdapterReference)  # no second 4-bit copy
    assert trainer.evaluate()["eval_loss"] == pytest.approx(math.log(2), abs=1e-6)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert losses[-1] < losses[0], losses
    assert trainer.evaluate()["eval_rewards/accuracies"] > 0.5


def test_quantized_model_without_peft_is_refused(tmp_path, tiny_path):
    args = DPOTrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    with pytest.raises(ValueError, match="cannot be trained itself; pass a peft_config"):
        DPOTrainer(
            model=load_causal_lm(tiny_path, load_in_4bit=True),
            args=args,
            train_dataset=preference_rows(4),
            processing_class=build_tokenizer(),
        )


@pytest.mark.parametrize("eval_pass_first", [False, True], ids=["fresh", "after-eval-pass"])
def test_4bit_lora_gradients_equal_those_of_the_dequantized_model(tiny_path, eval_pass_first):
    """bitsandbytes' CPU kernels warn that they have no autograd kernel; check the LoRA gradients match those of
    the same weights dequantized to float32, including layer 0's, which flow back through layer 1's 4-bit weights.
    The CPU kernel keeps its block scales in bfloat16, so they agree to ~0.1-0.4% (measured), not bit for bit; a
    gradient that did not flow through the 4-bit matmuls would be off by order 1.

    After an eval-mode pass without grad (as the reference pass is), bitsandbytes had repacked the 4-bit weights for
    an inference kernel no gradient flows back through, even in Llama's bias-free layers, where nothing fails:
    ``keep_4bit_layers_trainable`` (what DPOTrainer applies) keeps the gradients right."""
    from peft import get_peft_model

    quantized = load_causal_lm(tiny_path, load_in_4bit=True, bnb_4bit_compute_dtype="float32")
    assert keep_4bit_layers_trainable(quantized) == 14  # 2 layers x (q, k, v, o, gate, up, down)
    weights = {
        name: value
        for name, value in quantized.state_dict().items()
        if not any(part in name for part in ("absmax", "quant_map", "quant_state", "nested"))
    }
    for name, module in quantized.named_modules():
        if isinstance(module, bnb.nn.Linear4bit):
            weights[f"{name}.weight"] = bnb.functional.dequantize_4bit(module.weight.data, module.weight.quant_state)
    dequantized = build_model(build_tokenizer(), hidden_size=64, intermediate_size=128)
    dequantized.load_state_dict({name: value.float() for name, value in weights.items()})

    grads = []
    for model in (quantized, dequantized):
        torch.manual_seed(0)
        lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM", init_lora_weights=False)
        peft_model = get_peft_model(model, lora)
        input_ids = torch.randint(5, 300, (2, 12), generator=torch.Generator().manual_seed(0))
        if eval_pass_first:
            with torch.no_grad():
                peft_model.eval()(input_ids=input_ids)
            peft_model.train()
        peft_model(input_ids=input_ids, labels=input_ids).loss.backward()
        grads.append({n: p.grad for n, p in peft_model.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) == 8
    assert not [name for name, grad in grads[0].items() if grad is None], "no gradient reached these adapters"
    for name in grads[0]:
        relative_error = (grads[0][name] - grads[1][name]).norm() / grads[1][name].norm()
        assert relative_error < 0.02, (name, relative_error)


def test_qlora_with_biases_trains_after_an_eval_mode_pass(tmp_path, tiny_qwen2_path):
    """On a CPU with AVX-512 BF16, bitsandbytes repacks a 4-bit layer for inference the first time it runs in eval
    mode; a training forward through a repacked layer with a bias then failed ("a view of a leaf Variable that
    requires grad is being used in an in-place operation", Qwen2's q/k/v), at the latest at step 2 after the
    reference pass of step 1. With repacking off (hf_dpo.models.quantization), evaluate() then train() works, and the first
    step, policy == reference, scores exactly log 2 (repacked layers compute in bfloat16 and missed it)."""
    model = load_causal_lm(tiny_qwen2_path, load_in_4bit=True, bnb_4bit_compute_dtype="float32")
    assert model.model.layers[0].self_attn.q_proj.bias is not None
    args = DPOTrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        learning_rate=2e-2,
        max_steps=4,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = DPOTrainer(
        model=model,
        args=args,
        train_dataset=preference_rows(16),
        eval_dataset=preference_rows(4),
        peft_config=LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"),
        processing_class=build_tokenizer(),
    )
    assert isinstance(trainer.reference, DisabledAdapterReference)
    assert trainer.evaluate()["eval_loss"] == pytest.approx(math.log(2), abs=1e-6)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 4 and losses[0] == pytest.approx(math.log(2), abs=1e-6)
    assert losses[-1] < losses[0], losses


@pytest.mark.parametrize("logging_steps", [1, 10], ids=["every-step", "closing-log"])
def test_qlora_logs_trls_metric_names_on_every_log(tmp_path, tiny_path, logging_steps):
    """A 4-bit model with LoRA logs every name TRL's DPOTrainer logs, on each step's log and on the run's closing
    summary (what TRL's own QLoRA test reads: log_history[-1]["mean_token_accuracy"]). Names, not values: after
    TRL's eval-mode reference pass bitsandbytes runs its repacked bfloat16 CPU kernel, which hf_dpo keeps off
    (hf_dpo.models.quantization), so the numbers part after the first update."""
    trl = pytest.importorskip("trl")
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    quantization = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_use_double_quant=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.float32,
    )
    histories = {}
    for name, config_class, trainer_class in (
        ("trl", trl.DPOConfig, trl.DPOTrainer),
        ("ours", DPOTrainingArguments, DPOTrainer),
    ):
        model = AutoModelForCausalLM.from_pretrained(tiny_path, dtype="float32", quantization_config=quantization)
        args = config_class(
            output_dir=str(tmp_path / name),
            per_device_train_batch_size=4,
            max_steps=2,
            logging_steps=logging_steps,
            learning_rate=0.1,
            report_to="none",
            save_strategy="no",
            use_cpu=True,
            bf16=False,
            activation_checkpointing=False,
            disable_tqdm=True,
        )
        trainer = trainer_class(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(preference_rows(8)),
            processing_class=build_tokenizer(),
            peft_config=LoraConfig(r=8, target_modules="all-linear", task_type="CAUSAL_LM"),
        )
        trainer.train()
        histories[name] = trainer.state.log_history
    assert len(histories["ours"]) == len(histories["trl"])
    for ours, theirs in zip(histories["ours"], histories["trl"]):
        assert not set(theirs) - set(ours), set(theirs) - set(ours)
    with_metrics = [entry for entry in histories["ours"] if "mean_token_accuracy" in entry]
    assert len(with_metrics) == (2 if logging_steps == 1 else 1)  # each step, or the closing summary
