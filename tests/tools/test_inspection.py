"""hf-dpo inspect: rows shown as training tokenizes them, each warning driven by a crafted row, and the statistics."""

import argparse
import json

import pytest
import yaml
from tiny import build_tokenizer, preference_rows

from hf_dpo import DPOTrainingArguments
from hf_dpo.cli.commands import add_commands
from hf_dpo.data.preparation import prepare_dataset
from hf_dpo.tools.inspection import padding_waste, row_warnings, tokenize_for_inspection

# Llama-2's way: BOS before every user turn, so a multi-turn prompt holds several.
BOS_PER_TURN = (
    "{% for message in messages %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + message['content'] "
    "+ ' [/INST]' }}{% else %}{{ ' ' + message['content'] + ' ' + eos_token }}{% endif %}{% endfor %}"
)
# A template that signs off after the assistant's answer: the sign-off is trained as part of every completion.
SIGN_OFF = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    "{% if messages[-1]['role'] == 'assistant' %}Rate this answer!{% endif %}"
)


def _args(**overrides):
    return DPOTrainingArguments(output_dir="unused", report_to="none", use_cpu=True, **overrides)


def _warnings(row, tokenizer, **overrides):
    tokenized = tokenize_for_inspection(row, 0, tokenizer, _args(**overrides))
    return dict(row_warnings(row, tokenized, tokenizer))


def _chat(prompt, chosen="yes", rejected="no"):
    """A conversation: the prompt's texts from the system, then the user (the last one)."""
    roles = ["system"] * (len(prompt) - 1) + ["user"]
    return {
        "prompt": [{"role": role, "content": text} for role, text in zip(roles, prompt)],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
    }


def _run(argv):
    parser = argparse.ArgumentParser(prog="hf-dpo")
    add_commands(parser.add_subparsers(dest="command", required=True))
    options = parser.parse_args(argv)
    return options.run(options)


@pytest.fixture
def tokenizer_dir(tmp_path):
    build_tokenizer(chat_template=False).save_pretrained(tmp_path / "tokenizer")  # a base model's: text rows fit it
    return str(tmp_path / "tokenizer")


def test_inspect_ids_are_the_trainings_ids(tokenizer):
    rows = [*preference_rows(6), {"prompt": "Question: " * 30, "chosen": " yes " * 20, "rejected": " no"}]
    args = _args(max_length=40, max_prompt_length=24)
    prepared, _ = prepare_dataset(rows, tokenizer, args, "train")
    for index, row in enumerate(rows):
        tokenized = tokenize_for_inspection(row, index, tokenizer, args)
        assert tokenized.prompt == prepared[index]["prompt_input_ids"]
        assert tokenized.completions["chosen"] == prepared[index]["chosen_input_ids"]
        assert tokenized.completions["rejected"] == prepared[index]["rejected_input_ids"]
    assert len(tokenized.full_prompt) > len(tokenized.prompt)  # the last row was cut


def test_a_clean_row_has_no_warning(tokenizer):
    assert _warnings(preference_rows(1)[0], build_tokenizer(chat_template=False)) == {}
    assert _warnings(_chat(["2+2?"]), tokenizer) != {}  # ChatML ends turns with <|im_end|>, not the EOS </s> ...
    tokenizer = build_tokenizer()
    tokenizer.eos_token = "<|im_end|>"  # ... which the warning's own advice fixes
    assert _warnings(_chat(["2+2?"]), tokenizer) == {}


def test_two_bos(tokenizer):
    found = _warnings({"prompt": "Question <s> and <s>?", "chosen": " yes", "rejected": " no"}, tokenizer)
    assert "the data text contains the BOS token '<s>'" in found["two_bos"]
    found = _warnings({"prompt": "Question:<s><s>", "chosen": " yes", "rejected": " no"}, tokenizer)
    assert "two BOS tokens in a row ('<s>' at positions 2 and 3)" in found["two_bos"]


def test_a_template_that_starts_every_turn_with_bos_is_not_flagged(tokenizer):
    tokenizer = build_tokenizer()
    tokenizer.chat_template = BOS_PER_TURN  # Llama-2's design, as ChatML models whose BOS is <|im_start|>
    row = _chat(["2+2?"])
    row["prompt"] = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "2+2?"},
    ]
    tokenized = tokenize_for_inspection(row, 0, tokenizer, _args())
    assert tokenized.prompt.count(tokenizer.bos_token_id) == 2
    assert _warnings(row, tokenizer) == {}


def test_a_completion_cut_before_its_eos(tokenizer):
    row = {"prompt": "Question: is it?", "chosen": " yes " * 30, "rejected": " no"}
    found = _warnings(row, tokenizer, max_length=20)
    assert "cut before its EOS" in found["no_eos"] and "max_length" in found["no_eos"]


def test_an_end_of_turn_token_that_is_not_the_eos(tokenizer):
    found = _warnings(_chat(["2+2?"]), tokenizer)
    assert set(found) == {"end_of_turn"}
    assert "'<|im_end|>'" in found["end_of_turn"] and "tokenizer.eos_token" in found["end_of_turn"]


def test_text_a_chat_template_writes_after_the_answer(tokenizer):
    tokenizer = build_tokenizer()
    tokenizer.chat_template = SIGN_OFF
    found = _warnings(_chat(["2+2?"]), tokenizer)
    assert "'<|im_end|>\\nRate this answer!'" in found["text_after_turn"]


def test_a_completion_without_its_separator():
    tokenizer = build_tokenizer(chat_template=False)
    found = _warnings({"prompt": "2+2=", "chosen": "4", "rejected": "5"}, tokenizer)
    assert set(found) == {"no_separator"} and "'2+2=' + '4'" in found["no_separator"]
    assert _warnings({"prompt": "2+2=", "chosen": " 4", "rejected": " 5"}, tokenizer) == {}


def test_plain_text_prompts_for_a_chat_model(tokenizer):
    """Issue 26: text rows on a chat model train without its chat template, silently."""
    found = _warnings(preference_rows(1)[0], tokenizer)
    assert (
        set(found) == {"no_chat_template"}
        and "give prompt, chosen and rejected as chat messages" in found["no_chat_template"]
    )
    assert "no_chat_template" not in _warnings(preference_rows(1)[0], build_tokenizer(chat_template=False))


def test_padding_waste_counts_padded_positions():
    # one batch of two pairs: sequences 4, 2, 2, 2 padded to 4 -> 6 of 16 positions are padding
    assert padding_waste([(4, 2), (2, 2)], batch_size=2, multiple=None, seed=0) == [6 / 16]
    assert padding_waste([(4, 2), (2, 2)], batch_size=2, multiple=8, seed=0) == [1 - 10 / 32]


def test_inspect_a_dataset_shows_rows_warnings_and_statistics(tokenizer_dir, tmp_path, capsys):
    rows = [*preference_rows(10), {"prompt": "Question: is it?", "chosen": " yes " * 30, "rejected": " no"}]
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(json.dumps(row) for row in rows))
    argv = ["inspect", str(data), "--tokenizer", tokenizer_dir, "--rows", "2", "--max_length", "24"]
    assert _run([*argv, "--color", "never"]) == 0
    out = capsys.readouterr().out
    assert "── row 0 · kept · prompt 9 tokens · chosen 8 · rejected 5" in out
    assert "Question: is the fox good 0?⟦ Answer: yes good</s>⟧" in out
    assert "── row 2" not in out  # two rows shown
    assert "WARNING (no_eos, 1 rows, first: row 10)" in out
    assert "no warnings" not in out
    assert "11 rows scanned: 10 kept, 1 truncated" in out and "share truncated: 9.1%" in out
    assert "chosen tokens (before any cut): mean" in out and "│█" in out
    assert "padding waste per batch (8 pairs = 16 sequences" in out


def test_inspect_a_recipe_uses_its_model_tokenizer_and_limits(tokenizer_dir, tmp_path, capsys):
    rows = [{"prompt": "Question: " * 20, "chosen": " yes", "rejected": " no"}]
    data = tmp_path / "pairs.jsonl"
    data.write_text(json.dumps(rows[0]))
    recipe = {"model_name_or_path": tokenizer_dir, "dataset_name": str(data), "dataset_test_split": None}
    recipe |= {"max_length": 64, "max_prompt_length": 8, "use_cpu": True, "output_dir": str(tmp_path / "out")}
    (tmp_path / "r.yaml").write_text("# r\n" + yaml.safe_dump(recipe))
    assert _run(["inspect", str(tmp_path / "r.yaml"), "--rows", "1", "--color", "never"]) == 0
    out = capsys.readouterr().out
    prompt_tokens = len(build_tokenizer()(rows[0]["prompt"])["input_ids"])
    assert "no warnings (checked:" in out
    assert "── row 0 · truncated · prompt 8 tokens" in out and f"[✂ {prompt_tokens - 8} prompt tokens]" in out
