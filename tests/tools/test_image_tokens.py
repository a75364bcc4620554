"""hf-dpo inspect on rows with images: the processor loaded by the model's name, each image's tokens written once with
their count, where they sit in the prompt, and a row the limits would cut into its image tokens shown as dropped."""

import argparse
import json

from tiny_vision import build_vlm, tiny_image

from hf_dpo.cli.commands import add_commands
from hf_dpo.tools.image_tokens import compressed, image_summary


def _run(argv):
    parser = argparse.ArgumentParser(prog="hf-dpo")
    add_commands(parser.add_subparsers(dest="command", required=True))
    options = parser.parse_args(argv)
    return options.run(options)


def test_inspect_shows_where_the_image_tokens_sit_and_how_many(tmp_path, capsys):
    model, processor = build_vlm("llava")
    model.config.save_pretrained(tmp_path / "llava")  # its type says vision-language: the processor loads
    processor.save_pretrained(tmp_path / "llava")
    paths = []
    for index in range(3):
        paths.append(str(tmp_path / f"{index}.png"))
        tiny_image(index).save(paths[-1])
    rows = [
        {
            "images": [paths[index]],
            "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is it good?"}]}],
            "chosen": [{"role": "assistant", "content": "Answer: yes"}],
            "rejected": [{"role": "assistant", "content": "Answer: no"}],
        }
        for index in range(3)
    ]
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(json.dumps(row) for row in rows))
    argv = ["inspect", str(data), "--tokenizer", str(tmp_path / "llava"), "--rows", "1", "--color", "never"]
    assert _run(argv) == 0
    out = capsys.readouterr().out
    assert "<image>×4Is it good?" in out  # LLaVA's 4 image tokens for a 28x28 crop, written once
    assert "images   │1 image: 4 image tokens in 1 run, prompt positions 3-6 of" in out
    assert "3 rows scanned: 3 kept" in out
    assert _run([*argv, "--max_prompt_length", "5"]) == 0  # a prompt budget ending inside the image
    assert "3 dropped: the limits would cut its image tokens" in capsys.readouterr().out


def test_runs_of_a_special_token_are_written_once():
    _, processor = build_vlm("qwen2_vl")
    tokenizer = processor.tokenizer
    pad = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    ids = tokenizer("a", add_special_tokens=False)["input_ids"] + [pad] * 6
    assert compressed(tokenizer, ids) == "a<|image_pad|>×6"
    assert compressed(tokenizer, [pad] * 3) == "<|image_pad|>" * 3  # short runs stay as they are
    assert image_summary({"images": []}, [300, 301], processor) is None
