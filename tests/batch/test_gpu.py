"""On a CUDA device (pytest -m gpu; benchmarks/gpu_check.sh runs these on the lent GPU machine): the shared-prompt
attention function on the GPU kernels, the hidden-state head, and a short QLoRA run."""

import importlib.util

import pytest
import torch
from architectures import FAMILIES, build
from tiny import build_tokenizer, preference_rows
from torch.testing import assert_close

from hf_dpo import DPOTrainer, DPOTrainingArguments
from hf_dpo.batch import DPODataCollator, ScoredBatch, SharedPromptCollator
from hf_dpo.logprobs import sequence_scores

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
VOCAB = 300
SHAPES = [(70, 40, 60), (30, 80, 20), (0, 30, 30), (50, 10, 70)]


def _rows():
    generator = torch.Generator().manual_seed(0)
    return [
        {
            part: torch.randint(5, VOCAB, (n,), generator=generator).tolist()
            for part, n in zip(("prompt_input_ids", "chosen_input_ids", "rejected_input_ids"), shape)
        }
        for shape in SHAPES
    ]


def _logps(model, collator, hidden_states=True):
    columns = {name: value.cuda() for name, value in collator(_rows()).items()}
    with torch.no_grad():
        scores, _ = sequence_scores(model, ScoredBatch.from_collated(columns), hidden_states=hidden_states)
    return scores.logps


@pytest.fixture(autouse=True)
def exact_matmuls():
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = previous


@pytest.mark.parametrize("family", list(FAMILIES))
def test_sdpa_on_the_gpu_reads_the_shared_prompt_exactly(family):
    model = build(family, VOCAB).cuda()
    expected = _logps(model, DPODataCollator(0), hidden_states=False)
    assert_close(_logps(model, SharedPromptCollator(0)), expected, atol=1e-4, rtol=1e-4)
    assert_close(_logps(model, SharedPromptCollator(0, padding_free=True)), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is None, reason="flash-attn is not installed")
@pytest.mark.parametrize("family", ["llama", "mistral", "qwen2"])
def test_flash_attention_varlen_reads_the_shared_prompt(family):
    """bf16 (FlashAttention has no fp32): the varlen shared layout against the same kernel on padded rows."""
    model = build(family, VOCAB, attention="flash_attention_2").cuda().to(torch.bfloat16)
    expected = _logps(model, DPODataCollator(0), hidden_states=False)
    for padding_free in (False, True):
        got = _logps(model, SharedPromptCollator(0, padding_free=padding_free))
        assert_close(got, expected, atol=0.1, rtol=2e-2)  # bf16 sums over ~100 tokens


def test_a_short_qlora_run_on_the_gpu(tmp_path):
    pytest.importorskip("bitsandbytes")
    from peft import LoraConfig
    from transformers import BitsAndBytesConfig

    tokenizer = build_tokenizer()
    folder = tmp_path / "tiny"
    build("llama", len(tokenizer)).save_pretrained(folder)
    quantization = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
    )
    args = DPOTrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=3,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        ref_logps_cache=False,
        model_init_kwargs={"quantization_config": quantization, "dtype": torch.bfloat16},
    )
    trainer = DPOTrainer(
        str(folder),
        args=args,
        train_dataset=preference_rows(12),
        processing_class=tokenizer,
        peft_config=LoraConfig(r=8, target_modules="all-linear"),
    )
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 3 and abs(losses[0] - 0.6931) < 5e-3
