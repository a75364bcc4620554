"""Rows with images: TRL's shapes (conversational with image parts or plain text, standard text with the processor's
placeholder; images as PIL images, paths, bytes, Arrow's stored dicts; ``images`` or ``image``), tokenized by the
processor with every image token in the prompt, truncation that drops a row rather than cut its image tokens, and a
clear error naming the row for each bad input."""

import io
import logging

import pytest
from datasets import Dataset
from tiny_vision import IMAGE_PLACEHOLDER, build_processor, tiny_image, vision_rows

from hf_dpo import DPOTrainingArguments
from hf_dpo.data import DataFormatError, prepare_dataset
from hf_dpo.data.images import image_digest, image_values, load_image, row_images
from hf_dpo.data.vision import DROPPED_IMAGE_CUT, image_token_span, multimodal_messages, tokenize_vision_row


@pytest.fixture(scope="module")
def qwen():
    return build_processor("qwen2_vl")


def _args(tmp_path, **overrides):
    return DPOTrainingArguments(output_dir=str(tmp_path), report_to="none", **{"max_length": None, **overrides})


def _image_tokens(processor, ids):
    return sum(token == processor.image_token_id for token in ids)


def _png(seed=0, size=(40, 56)):
    buffer = io.BytesIO()
    tiny_image(seed, size).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("family", ["qwen2_vl", "idefics3", "llava", "gemma3"])
def test_conversational_rows_expand_each_image_in_the_prompt(tmp_path, family):
    processor = build_processor(family)
    rows = vision_rows(3, images_per_row=2)
    dataset, stats = prepare_dataset(rows, processor, _args(tmp_path), "train")
    assert stats.kept == 3 and stats.dropped_image_cut == 0
    assert {"images", "prompt_input_ids", "chosen_input_ids", "rejected_input_ids"} <= set(dataset.column_names)
    row = dataset[0]
    expected = processor(
        text=[processor.apply_chat_template(rows[0]["prompt"], tokenize=False, add_generation_prompt=True)],
        images=[rows[0]["images"]],
        add_special_tokens=False,
    )["input_ids"][0]
    assert row["prompt_input_ids"] == list(expected)  # the processor's own expansion, both images
    assert _image_tokens(processor, row["prompt_input_ids"]) > 0
    assert _image_tokens(processor, row["chosen_input_ids"] + row["rejected_input_ids"]) == 0
    tokenizer = processor.tokenizer
    assert row["chosen_input_ids"][-1] == tokenizer.eos_token_id  # exactly one EOS ends each completion
    assert tokenizer.decode(row["chosen_input_ids"]) == "Answer: yes good<|im_end|>"


def test_plain_text_messages_get_one_image_part_per_image_before_the_first_user_text(qwen, tmp_path):
    """TRL's prepare_multimodal_messages: the same ids as image parts written out."""
    row = vision_rows(1, images_per_row=2)[0]
    plain = {**row, "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Is it good?"}]}
    parts = {
        **row,
        "prompt": [
            {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
            {
                "role": "user",
                "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Is it good?"}],
            },
        ],
    }
    prepared = [prepare_dataset([r], qwen, _args(tmp_path), "train")[0][0] for r in (plain, parts)]
    assert prepared[0]["prompt_input_ids"] == prepared[1]["prompt_input_ids"]
    assert multimodal_messages(plain["prompt"], 2, 0)[1]["content"][:2] == [{"type": "image"}, {"type": "image"}]


def test_standard_rows_hold_the_processors_placeholder(qwen, tmp_path):
    placeholder = IMAGE_PLACEHOLDER["qwen2_vl"]
    rows = [
        {"image": tiny_image(1), "prompt": f"{placeholder} Is the fox good?", "chosen": " yes", "rejected": " no"},
        {"image": tiny_image(2), "prompt": f"{placeholder} Is the dog good?", "chosen": " yes", "rejected": " no"},
    ]
    dataset, stats = prepare_dataset(rows, qwen, _args(tmp_path), "train")
    assert stats.kept == 2 and dataset.column_names[0] == "image"
    assert _image_tokens(qwen, dataset[0]["prompt_input_ids"]) == 2  # a 40x56 image: 2 tokens after the merge
    missing = [{**rows[0], "prompt": "Is the fox good?"}]
    with pytest.raises(DataFormatError, match=r"row 0, field 'prompt': .*1 images"):
        prepare_dataset(missing, qwen, _args(tmp_path), "train")


def test_images_as_paths_bytes_and_stored_dicts_give_the_same_ids(qwen, tmp_path):
    path = tmp_path / "fox.png"
    path.write_bytes(_png(5))
    row = vision_rows(1)[0]
    forms = [
        load_image(_png(5), "x"),
        str(path),
        _png(5),
        {"bytes": _png(5), "path": None},
        {"bytes": None, "path": str(path)},
    ]
    ids = [prepare_dataset([{**row, "images": [form]}], qwen, _args(tmp_path), "train")[0][0] for form in forms]
    assert all(entry["prompt_input_ids"] == ids[0]["prompt_input_ids"] for entry in ids)
    as_dataset = Dataset.from_list([{**row, "images": [str(path)]}])  # a Hub-style dataset with a path column
    assert (
        prepare_dataset(as_dataset, qwen, _args(tmp_path), "train")[0][0]["prompt_input_ids"]
        == ids[0]["prompt_input_ids"]
    )


def test_an_in_memory_jpeg_keeps_its_pixels_in_the_table(qwen, tmp_path):
    """Arrow would re-save a decoded JPEG as JPEG (new pixels); it is stored as PNG, exactly."""
    buffer = io.BytesIO()
    tiny_image(3).save(buffer, format="JPEG")
    jpeg = load_image(buffer.getvalue(), "x")
    dataset, _ = prepare_dataset([{**vision_rows(1)[0], "images": [jpeg]}], qwen, _args(tmp_path), "train")
    assert dataset[0]["images"][0].tobytes() == jpeg.tobytes()
    assert image_values([[jpeg]])[0][0].format is None


def test_rows_may_hold_no_image_among_rows_that_do(qwen, tmp_path):
    rows = vision_rows(2)
    rows[1] = {**rows[1], "images": [], "prompt": [{"role": "user", "content": "Is it good?"}]}
    dataset, stats = prepare_dataset(rows, qwen, _args(tmp_path), "train")
    assert stats.kept == 2 and _image_tokens(qwen, dataset[1]["prompt_input_ids"]) == 0


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"images": ["/nonexistent/cat.png"]}, r"row 0, field 'images'\[0\]: cannot read the image \(FileNotFoundError"),
        ({"images": [b"not an image"]}, r"row 0, field 'images'\[0\]: cannot read the image \(UnidentifiedImageError"),
        ({"images": [_png()[:200]]}, r"row 0, field 'images'\[0\]: cannot decode the image"),
        ({"images": [3]}, r"row 0, field 'images'\[0\]: expected an image .* got int"),
        ({"images": "cat.png"}, r"row 0, field 'images': expected a list of images, got str"),
        ({"images": [tiny_image(0), tiny_image(1)]}, r"row 0, field 'prompt': 2 image\(s\) in the row and 1 image placeholder"),
        ({"images": []}, r"row 0, field 'prompt': 0 image\(s\) in the row and 1 image placeholder"),
        (
            {"chosen": [{"role": "assistant", "content": [{"type": "image"}, {"type": "text", "text": "a"}]}]},
            r"row 0, field 'chosen': holds an image part; images go in the prompt",
        ),
        (
            {"prompt": [{"role": "user", "content": [{"type": "video"}]}]},
            r"row 0, field 'prompt', message 0: a content part must be",
        ),
    ],
    ids=["missing file", "not an image", "truncated file", "a number", "not a list", "too many", "too few",
         "image in a completion", "unknown part"],
)  # fmt: skip
def test_bad_image_rows_are_refused_naming_the_row(qwen, tmp_path, change, match):
    with pytest.raises(DataFormatError, match=match):
        prepare_dataset([{**vision_rows(1)[0], **change}], qwen, _args(tmp_path), "train")


def test_a_row_with_images_needs_a_prompt_and_an_unpaired_loss_takes_no_images(qwen, tmp_path):
    row = vision_rows(1)[0]
    implicit = {
        "images": row["images"],
        "chosen": row["prompt"] + row["chosen"],
        "rejected": row["prompt"] + row["rejected"],
    }
    with pytest.raises(DataFormatError, match="row 0: a row with images needs a 'prompt' column"):
        prepare_dataset([implicit], qwen, _args(tmp_path), "train")
    both = {**row, "image": row["images"][0]}
    with pytest.raises(DataFormatError, match="both 'images' and 'image' columns"):
        prepare_dataset([both], qwen, _args(tmp_path), "train")
    unpaired = {"images": row["images"], "prompt": row["prompt"], "completion": row["chosen"], "label": True}
    with pytest.raises(DataFormatError, match="images train with the paired losses only"):
        prepare_dataset([unpaired], qwen, _args(tmp_path, loss_type="kto"), "train")


def test_a_tokenizer_keeps_refusing_images_for_a_text_only_model(tmp_path, tokenizer):
    with pytest.raises(
        DataFormatError, match=r"has an 'images' column, and the processing class is a tokenizer.*remove_columns"
    ):
        prepare_dataset(vision_rows(1), tokenizer, _args(tmp_path), "train")


# ---- truncation never cuts an image's tokens ----------------------------------------------------------------------


def test_the_image_block_spans_the_image_tokens_and_their_markers(qwen):
    ids = qwen(
        text=["a <|vision_start|><|image_pad|><|vision_end|> b"], images=[[tiny_image(0)]], add_special_tokens=False
    )["input_ids"][0]
    start, end = image_token_span(list(ids), qwen)
    assert qwen.tokenizer.convert_ids_to_tokens(ids[start:end]) == [
        "<|vision_start|>", "<|image_pad|>", "<|image_pad|>", "<|vision_end|>"
    ]  # fmt: skip
    assert image_token_span([300, 301], qwen) is None


@pytest.mark.parametrize("mode", ["keep_start", "keep_end"])
def test_a_cut_into_the_image_tokens_drops_the_row_and_counts_it(qwen, tmp_path, mode, caplog):
    row = vision_rows(1)[0]
    full = tokenize_vision_row(row, 0, qwen, False, max_length=None, max_prompt_length=None,
                               max_completion_length=None, truncation_mode=mode)["prompt_input_ids"]  # fmt: skip
    start, end = image_token_span(full, qwen)
    # keep_start keeps the prompt's first tokens: a budget ending inside the image block cuts it; keep_end keeps the
    # last ones: a budget starting inside it does
    inside = end - 1 if mode == "keep_start" else len(full) - start - 1
    outside = end if mode == "keep_start" else len(full) - start
    limits = {"max_length": None, "max_completion_length": None, "truncation_mode": mode}
    assert (
        tokenize_vision_row(row, 0, qwen, False, max_prompt_length=inside, **limits)["_hf_dpo_status"]
        == DROPPED_IMAGE_CUT
    )
    kept = tokenize_vision_row(row, 0, qwen, False, max_prompt_length=outside, **limits)
    assert kept["_hf_dpo_status"] == 1 and _image_tokens(qwen, kept["prompt_input_ids"]) == _image_tokens(qwen, full)
    rows = [row, {**vision_rows(2)[1], "images": [], "prompt": [{"role": "user", "content": "Is it good?"}]}]
    with caplog.at_level(logging.WARNING, logger="hf_dpo.data.preparation"):
        _, stats = prepare_dataset(
            rows, qwen, _args(tmp_path, max_prompt_length=inside, truncation_mode=mode), "train"
        )
    assert stats.dropped_image_cut >= 1 and stats.kept == 2 - stats.dropped_image_cut
    assert f"{stats.dropped_image_cut} whose image tokens the length limits would cut" in caplog.text


def test_keep_end_without_a_prompt_budget_drops_a_row_whose_image_would_be_cut(qwen, tmp_path):
    row = vision_rows(1)[0]
    prompt = tokenize_vision_row(row, 0, qwen, False, max_length=None, max_prompt_length=None,
                                 max_completion_length=None, truncation_mode="keep_end")["prompt_input_ids"]  # fmt: skip
    # room for the longer completion leaves fewer prompt tokens than the prompt has: its start (the image) goes
    args = _args(tmp_path, max_length=len(prompt) + 2, truncation_mode="keep_end")
    with pytest.raises(DataFormatError, match="no usable rows"):
        prepare_dataset([row], qwen, args, "train")


def test_row_images_reads_either_column():
    assert len(row_images({"images": [_png(), _png(1)]}, 0)) == 2
    assert len(row_images({"image": _png()}, 0)) == 1
    assert row_images({"images": None}, 0) == [] and row_images({}, 0) == []


def test_the_image_digest_follows_the_bytes_not_the_path(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(_png(0))
    first = image_digest([[str(path)], [{"bytes": _png(1), "path": None}]])
    assert first == image_digest([[str(path)], [{"bytes": _png(1), "path": None}]])
    path.write_bytes(_png(7))  # the same name, another image
    assert image_digest([[str(path)], [{"bytes": _png(1), "path": None}]]) != first
