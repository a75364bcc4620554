"""Images in every layout, exactly: for each vision-language family, the chosen and rejected logits of the padded
rows, the shared prompt and the one-row (padding-free) layout equal those of a separate forward of each full sequence
with its own images (fp32, 1e-5), and the gradients of the layouts agree; the vision tower encodes each image once
per forward in the shared prompt (twice in padded rows, as TRL does); Gemma 3 falls back to padded rows."""

import inspect
import logging

import pytest
import torch
from tiny_vision import FAMILIES, QWEN, build_vlm, vision_rows
from torch.testing import assert_close

import hf_dpo.batch.attention as attention_module
from hf_dpo import DPOTrainingArguments
from hf_dpo.batch import DPODataCollator, ScoredBatch, SharedPromptCollator, default_collator
from hf_dpo.batch.attention import reading_shared_prompt
from hf_dpo.batch.vision import IMAGE_INPUTS, ImageInputs, VisionCollator, per_row_inputs
from hf_dpo.batch.vision_inputs import image_model_inputs, vision_layout_support
from hf_dpo.data import prepare_dataset
from hf_dpo.logprobs import sequence_scores
from hf_dpo.logprobs.scoring import forward
from hf_dpo.models.vision import vision_tower

LAYOUTS = ("padded", "shared", "padding_free")
SHARED = [family for family in FAMILIES if family != "gemma3"]


def _prepared(processor, tmp_path):
    """Three pairs with 2, 1 and 0 images: each pair's own count, and a text-only row among them."""
    rows = vision_rows(3, images_per_row=2)
    rows[1] = {**rows[1], "images": rows[1]["images"][:1]}
    rows[1]["prompt"] = [{"role": "user", "content": rows[1]["prompt"][0]["content"][1:]}]
    rows[2] = {**rows[2], "images": [], "prompt": [{"role": "user", "content": "Is it good?"}]}
    args = DPOTrainingArguments(output_dir=str(tmp_path), report_to="none", max_length=None)
    return list(prepare_dataset(rows, processor, args, "train")[0])


def _collator(layout, processor):
    pad = processor.tokenizer.pad_token_id
    inner = DPODataCollator(pad) if layout == "padded" else SharedPromptCollator(pad, padding_free=layout != "shared")
    return VisionCollator(inner, processor)


def _separate_logits(model, processor, rows):
    """Each sequence prompt + completion in a forward of its own, with its images processed on their own: the
    logits predicting each completion token, per sequence (chosen sequences, then rejected ones)."""
    logits = []
    for side in ("chosen_input_ids", "rejected_input_ids"):
        for row in rows:
            ids = torch.tensor([row["prompt_input_ids"] + row[side]])
            inputs = {"input_ids": ids}
            if row["images"]:
                images = processor(images=[row["images"]], return_tensors="pt", padding=True)
                inputs |= {
                    k: v for k, v in images.items() if k in ("pixel_values", "image_grid_thw", "pixel_attention_mask")
                }
            parameters = inspect.signature(model.forward).parameters
            name = next((name for name in ("mm_token_type_ids", "token_type_ids") if name in parameters), None)
            if name is not None:  # Qwen-VL and Gemma 3 read the processor's token types
                inputs[name] = torch.tensor(processor.create_mm_token_type_ids(ids.tolist()))
            with torch.no_grad():
                out = model(**inputs).logits[0]
            logits.append(out[len(row["prompt_input_ids"]) - 1 : -1])
    return logits


def _layout_logits(model, batch):
    """The logits of ``batch``'s layout at each scored position, split per sequence."""
    with torch.no_grad(), reading_shared_prompt(model) if batch.shared_prompt else torch.enable_grad():
        out = forward(model, batch).logits
    tokens = batch.tokens
    scored = out.reshape(-1, out.shape[-1]).index_select(0, tokens.source)
    return [scored[tokens.sequence == n] for n in range(tokens.num_sequences)]


def _scores_and_grads(model, batch):
    model.zero_grad()
    scores, _ = sequence_scores(model, batch, hidden_states=True)
    (scores.logps * torch.linspace(0.5, 1.5, scores.logps.numel())).sum().backward()
    return scores.logps.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("family", FAMILIES)
def test_every_layout_gives_the_logits_of_separate_forwards(family, tmp_path):
    model, processor = build_vlm(family)
    rows = _prepared(processor, tmp_path)
    expected = _separate_logits(model, processor, rows)
    layouts = LAYOUTS if family in SHARED else ("padded",)
    reference = None
    for layout in layouts:
        batch = ScoredBatch.from_collated(_collator(layout, processor)(rows))
        for got, want in zip(_layout_logits(model, batch), expected):
            assert_close(got, want, atol=1e-5, rtol=1e-5, msg=f"{family} {layout}")
        logps, grads = _scores_and_grads(model, batch)
        if reference is None:
            reference = (logps, grads)
            assert any(n for n in grads if "visual" in n or "vision" in n)  # the vision tower is trained through
            continue
        assert_close(logps, reference[0], atol=1e-5, rtol=1e-5)
        assert grads.keys() == reference[1].keys()
        for name, grad in grads.items():
            assert_close(grad, reference[1][name], atol=1e-5, rtol=1e-5, msg=f"{family} {layout} {name}")


@pytest.mark.parametrize("family", SHARED)
def test_the_shared_prompt_runs_the_attention_function_with_each_image_once(family, tmp_path, monkeypatch):
    model, processor = build_vlm(family)
    rows = _prepared(processor, tmp_path)
    calls, encoded = [], []
    real = attention_module.shared_prompt_attention
    monkeypatch.setitem(
        attention_module.ALL_ATTENTION_FUNCTIONS._global_mapping,
        attention_module.ATTENTION,
        lambda *a, **k: calls.append(k.get("hf_dpo_shared_prompt") is not None) or real(*a, **k),
    )
    tower = vision_tower(model)
    tower.register_forward_hook(
        lambda module, args, kwargs, out: encoded.append(_images_in(family, args, kwargs)), with_kwargs=True
    )
    batches = {
        layout: ScoredBatch.from_collated(_collator(layout, processor)(rows)) for layout in ("shared", "padded")
    }
    with torch.no_grad():
        sequence_scores(model, batches["shared"])  # the model's first shared batch is also checked as separate rows
        per_layout = {}
        for layout, batch in batches.items():
            encoded.clear()
            sequence_scores(model, batch)
            per_layout[layout] = list(encoded)
    assert calls and all(calls)
    images = batches["shared"].columns[IMAGE_INPUTS].images
    own = [processor(images=[row["images"]], return_tensors="pt", padding=True) for row in rows if row["images"]]
    crops = [
        o["pixel_values"].shape[1]
        if family in ("idefics3", "smolvlm")
        else len(o.get("image_grid_thw", o["pixel_values"]))
        for o in own
    ]
    assert images == sum(crops) >= 3  # 3 images (Idefics3 splits each into crops and a global view)
    assert per_layout == {"shared": [images], "padded": [2 * images]}  # one pass per forward, each image once


def _images_in(family, args, kwargs):
    """How many images (or crops) one vision-tower call encodes."""
    if family in QWEN:
        return kwargs.get("grid_thw", args[1] if len(args) > 1 else None).shape[0]
    return (args[0] if args else kwargs["pixel_values"]).shape[0]


def test_image_inputs_lay_out_per_row_and_per_image_inputs():
    per_image = torch.arange(5.0)[:, None]  # pair 0: 2 entries, pair 1: 0, pair 2: 3
    per_row = torch.arange(4.0)[:, None]  # pair 0: 1 image, pair 1: 0, pair 2: 3
    inputs = ImageInputs({"grid": per_image, "pixels": per_row}, {"grid": (2, 0, 3), "pixels": (1, 0, 3)}, ("pixels",))
    padded = inputs.for_rows([[0], [1], [2], [0], [1], [2]])
    assert padded["grid"][:, 0].tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]
    assert padded["pixels"].shape == (6, 3, 1) and padded["pixels"][2, :, 0].tolist() == [1, 2, 3]
    assert padded["pixels"][0, :, 0].tolist() == [0, 0, 0] and padded["pixels"][1].abs().sum() == 0  # zero padding
    one_row = inputs.for_rows([[0, 1, 2]])
    assert one_row["pixels"][0, :, 0].tolist() == [0, 1, 2, 3] and one_row["grid"].shape == (5, 1)
    assert inputs.images == 4


def test_which_inputs_are_per_row_is_asked_of_the_processor():
    assert per_row_inputs(build_vlm("idefics3")[1]) == ("pixel_attention_mask", "pixel_values")
    for family in ("qwen2_vl", "llava", "gemma3"):
        assert per_row_inputs(build_vlm(family)[1]) == (), family


def test_the_collator_matches_the_processors_own_batching(tmp_path):
    """Idefics3 pads each row's images: our rows equal the processor's own output for the same rows."""
    _, processor = build_vlm("idefics3")
    rows = _prepared(processor, tmp_path)[:2]
    batch = _collator("shared", processor)(rows)
    own = processor(images=[row["images"] for row in rows], return_tensors="pt")
    laid_out = batch[IMAGE_INPUTS].for_rows([[0], [1]])
    assert_close(laid_out["pixel_values"], own["pixel_values"], atol=0, rtol=0)
    assert torch.equal(laid_out["pixel_attention_mask"], own["pixel_attention_mask"])


def test_gemma3_reads_images_in_padded_rows_and_says_why(tmp_path, caplog):
    model, processor = build_vlm("gemma3")
    assert "bidirectionally within each image" in vision_layout_support(model)
    args = DPOTrainingArguments(output_dir=str(tmp_path), report_to="none")
    with caplog.at_level(logging.INFO, logger="hf_dpo.batch.choice"):
        collator = default_collator([model], 0, args, False, True, False, processor=processor)
    assert isinstance(collator.layout, DPODataCollator)
    assert "batches are padded, one row per sequence: gemma3 attends bidirectionally" in caplog.text
    for family in SHARED:
        assert vision_layout_support(build_vlm(family)[0]) is None
    shared = ScoredBatch.from_collated(_collator("shared", processor)(_prepared(processor, tmp_path)))
    with pytest.raises(ValueError, match="cannot read it with images: gemma3 attends bidirectionally"):
        image_model_inputs(model, shared)


def test_checkpointing_outside_a_held_block_reads_the_dense_mask_with_3d_positions(tmp_path, caplog):
    """The dense-mask fallback of the shared prompt keeps Qwen's per-sequence 3-D positions."""
    model, processor = build_vlm("qwen2_vl")
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    rows = _prepared(processor, tmp_path)
    expected, _ = _scores_and_grads(model, ScoredBatch.from_collated(_collator("padded", processor)(rows)))
    with caplog.at_level(logging.INFO, logger="hf_dpo.logprobs.scoring"):
        got, _ = _scores_and_grads(model, ScoredBatch.from_collated(_collator("shared", processor)(rows)))
    assert "read through the dense 4D mask" in caplog.text
    assert_close(got, expected, atol=1e-5, rtol=1e-5)
