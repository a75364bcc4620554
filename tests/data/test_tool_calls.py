"""Tool-calling rows (as TRL takes them): assistant ``tool_calls`` with ``content: None``, ``tool`` results, and a
``tools`` column, rendered through the chat template; bad tool rows named by row and field; a tiny run trains."""

import json
import math

import pytest
from datasets import Dataset
from tiny import build_model, build_tokenizer

from hf_dpo import DPOTrainer, DPOTrainingArguments
from hf_dpo.data.errors import DataFormatError
from hf_dpo.data.formats import normalise_row
from hf_dpo.data.preparation import prepare_dataset

# ChatML that writes the tools and each tool call as JSON, so a test can spell out the exact text.
TOOL_CHATML = (
    "{% if tools %}<|im_start|>system\nTools: {{ tools | tojson }}<|im_end|>\n{% endif %}"
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if 'content' in message %}{{ message['content'] }}{% endif %}"
    "{% if 'tool_calls' in message %}{% for call in message['tool_calls'] %}"
    "<tool_call>{{ call['function'] | tojson }}</tool_call>{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "The sum of two numbers.",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    },
}


def _tokenizer():
    tokenizer = build_tokenizer(bos=False)
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.chat_template = TOOL_CHATML
    return tokenizer


def _args(**overrides):
    return DPOTrainingArguments(output_dir="unused", report_to="none", **overrides)


def _decoded(dataset, tokenizer, index=0):
    row = dataset[index]
    return {name: tokenizer.decode(row[f"{name}_input_ids"]) for name in ("prompt", "chosen", "rejected")}


def _user(text):
    return {"role": "user", "content": text}


def _call(name, **arguments):
    """An assistant turn that only calls a tool, in the OpenAI shape (content None)."""
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"type": "function", "function": {"name": name, "arguments": arguments}}],
    }


def _result(name, text):
    return {"role": "tool", "name": name, "content": text}


def _answer(text):
    return {"role": "assistant", "content": text}


def _weather_row(city="Paris", degrees=22):
    return {
        "prompt": [_user(f"Weather in {city}?")],
        "chosen": [_call("get_weather", city=city), _result("get_weather", f"{degrees}C"), _answer(f"{degrees}C.")],
        "rejected": [_answer("No idea.")],
        "tools": [WEATHER],
    }


def _sum_row():
    return {
        "prompt": [_user("2+3?")],
        "chosen": [_call("add", a=2, b=3)],  # the preferred answer is the call itself
        "rejected": [_answer("6")],
        "tools": [ADD, WEATHER],
    }


def _tools_text(tools):
    return f"<|im_start|>system\nTools: {json.dumps(tools)}<|im_end|>\n"


def _call_text(name, **arguments):
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


def test_a_chosen_tool_call_against_a_direct_answer():
    tokenizer = _tokenizer()
    dataset, stats = prepare_dataset([_weather_row(), _sum_row()], tokenizer, _args(), "train")
    assert stats.kept == 2
    assert _decoded(dataset, tokenizer, 0) == {
        "prompt": _tools_text([WEATHER]) + "<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n",
        "chosen": _call_text("get_weather", city="Paris")
        + "<|im_end|>\n<|im_start|>tool\n22C<|im_end|>\n<|im_start|>assistant\n22C.<|im_end|>",
        "rejected": "No idea.<|im_end|>",
    }
    # A list of rows keeps each row's own tools and arguments: as Arrow structs, the add tool would have gained a
    # "city": null parameter and the weather call "a": null, "b": null arguments.
    assert _decoded(dataset, tokenizer, 1) == {
        "prompt": _tools_text([ADD, WEATHER]) + "<|im_start|>user\n2+3?<|im_end|>\n<|im_start|>assistant\n",
        "chosen": _call_text("add", a=2, b=3) + "<|im_end|>",
        "rejected": "6<|im_end|>",
    }


def test_a_multi_turn_prompt_with_a_tool_call_and_its_result():
    """The prompt ends with the tool's result; the generation prompt opens the assistant's answer to it."""
    tokenizer = _tokenizer()
    prompt = [
        {"role": "system", "content": "Be brief."},
        _user("Weather in Paris?"),
        _call("get_weather", city="Paris"),
        _result("get_weather", "22C"),
    ]
    row = {"prompt": prompt, "chosen": "22C.", "rejected": [_answer("Cold.")], "tools": json.dumps([WEATHER])}
    dataset, _ = prepare_dataset([row], tokenizer, _args(), "train")
    assert _decoded(dataset, tokenizer) == {
        "prompt": _tools_text([WEATHER])
        + "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWeather in Paris?<|im_end|>\n"
        + "<|im_start|>assistant\n"
        + _call_text("get_weather", city="Paris")
        + "<|im_end|>\n<|im_start|>tool\n22C<|im_end|>\n<|im_start|>assistant\n",
        "chosen": "22C.<|im_end|>",
        "rejected": "Cold.<|im_end|>",
    }


def test_an_arrow_dataset_renders_as_its_rows_do():
    """Dataset.from_list gives every message every key, None where it had none (the answer turn gets
    'tool_calls': None); the rows render as the same rows given as a list."""
    tokenizer = _tokenizer()
    rows = [_weather_row("Paris", 22), _weather_row("Rome", 25)]
    arrow = Dataset.from_list(rows)
    assert arrow[0]["chosen"][2]["tool_calls"] is None
    from_arrow, _ = prepare_dataset(arrow, tokenizer, _args(), "train")
    from_list, _ = prepare_dataset(rows, tokenizer, _args(), "train")
    assert from_arrow["chosen_input_ids"] == from_list["chosen_input_ids"]
    assert _decoded(from_arrow, tokenizer, 1)["chosen"].endswith("<|im_start|>assistant\n25C.<|im_end|>")


def test_tools_as_a_json_string_render_as_the_list():
    tokenizer = _tokenizer()
    as_list, _ = prepare_dataset([_weather_row()], tokenizer, _args(), "train")
    as_json, _ = prepare_dataset([{**_weather_row(), "tools": json.dumps([WEATHER])}], tokenizer, _args(), "train")
    assert as_list["prompt_input_ids"] == as_json["prompt_input_ids"]
    no_tools, _ = prepare_dataset([{**_weather_row(), "tools": []}], tokenizer, _args(), "train")
    assert not _decoded(no_tools, tokenizer)["prompt"].startswith("<|im_start|>system")  # [] renders as no tools


def test_unpaired_tool_rows_have_the_ids_of_the_pairs_completions():
    """For KTO: tool-calling completions given as unpaired rows, or unrolled from pairs, tokenize as in the pairs
    (each row keeps its own tools and call arguments in one Arrow table)."""
    tokenizer = _tokenizer()
    pairs, _ = prepare_dataset([_weather_row(), _sum_row()], tokenizer, _args(), "train")
    kto = _args()
    kto.loss_type = "kto"  # set after validation: this test is about the data alone
    unrolled, stats = prepare_dataset([_weather_row(), _sum_row()], tokenizer, kto, "train")
    assert unrolled["completion_input_ids"] == [*pairs["chosen_input_ids"], *pairs["rejected_input_ids"]]
    assert unrolled["label"] == [True, True, False, False] and (stats.desirable, stats.undesirable) == (2, 2)
    rows = [
        {"prompt": pair["prompt"], "completion": pair["chosen"], "label": True, "tools": pair["tools"]}
        for pair in (_weather_row(), _sum_row())
    ]
    unpaired, _ = prepare_dataset(rows, tokenizer, kto, "train")
    assert unpaired["prompt_input_ids"] == pairs["prompt_input_ids"]
    assert unpaired["completion_input_ids"] == pairs["chosen_input_ids"]


def test_an_implicit_prompt_ends_after_the_shared_tool_result():
    shared = [_user("Weather in Paris?"), _call("get_weather", city="Paris"), _result("get_weather", "22C")]
    row = normalise_row({"chosen": [*shared, _answer("22C.")], "rejected": [*shared, _answer("Cold.")]}, 0)
    assert [message["role"] for message in row["prompt"]] == ["user", "assistant", "tool"]
    assert row["prompt"][1]["tool_calls"] == shared[1]["tool_calls"] and row["chosen"] == [_answer("22C.")]


def test_an_implicit_prompt_is_found_across_differently_padded_arrow_columns():
    """In Arrow the chosen column's user turn has 'tool_calls': None and 'name': None, the rejected column's not:
    still the same message."""
    chosen = [_user("Weather in Paris?"), _call("get_weather", city="Paris"), _result("get_weather", "22C")]
    arrow = Dataset.from_list(
        [{"chosen": [*chosen, _answer("22C.")], "rejected": [_user("Weather in Paris?"), _answer("No idea.")]}]
    )
    assert arrow[0]["chosen"][0] != arrow[0]["rejected"][0]
    row = normalise_row(arrow[0], 0)
    assert row["prompt"] == [_user("Weather in Paris?")] and row["rejected"] == [_answer("No idea.")]


def _with(**changes):
    return {**_weather_row(), **changes}


BAD_TOOL_ROWS = [
    (
        "user message without content",
        _with(prompt=[{"role": "user", "content": None}]),
        "row 1, field 'prompt', message 0: expected string 'content', got NoneType",
    ),
    (
        "assistant message with neither content nor tool calls",
        _with(rejected=[{"role": "assistant", "content": None}]),
        "row 1, field 'rejected', message 0: expected string 'content' or 'tool_calls', got NoneType",
    ),
    (
        "empty tool_calls",
        _with(rejected=[{"role": "assistant", "content": None, "tool_calls": []}]),
        "row 1, field 'rejected', message 0: expected 'tool_calls' as a non-empty list of calls",
    ),
    (
        "tool call without a function name",
        _with(rejected=[{"role": "assistant", "tool_calls": [{"type": "function", "function": {"arguments": {}}}]}]),
        "row 1, field 'rejected', message 0, tool call 0: expected {'type': 'function', 'function': {'name'",
    ),
    (
        "tool call arguments as a list",
        _with(rejected=[{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": [1]}}]}]),
        "row 1, field 'rejected', message 0, tool call 0: expected .*'arguments': <dict or JSON string>",
    ),
    (
        "a user message calling a tool",
        _with(prompt=[{**_user("hi"), "tool_calls": [{"function": {"name": "f", "arguments": {}}}]}]),
        "row 1, field 'prompt', message 0: a 'user' message has 'tool_calls'; only assistant messages call tools",
    ),
    (
        "tool result without content",
        _with(chosen=[_call("get_weather", city="Paris"), {"role": "tool"}, _answer("22C.")]),
        "row 1, field 'chosen', message 1: expected string 'content', got NoneType",
    ),
    (
        "completion ending with a tool result",
        _with(chosen=[_call("get_weather", city="Paris"), _result("get_weather", "22C")]),
        "row 1, field 'chosen': the completion ends with a 'tool' message",
    ),
    (
        "tools not a list",
        _with(tools=WEATHER),
        "row 1, field 'tools': expected a list of JSON-schema function specs",
    ),
    (
        "tools a string that is not JSON",
        _with(tools="[{'name': 'get_weather'}]"),
        "row 1, field 'tools': a string that is not JSON",
    ),
    (
        "tools with text rows",
        {"prompt": "Weather in Paris?", "chosen": " 22C", "rejected": " no idea", "tools": [WEATHER]},
        "row 1, field 'tools': tools are given to a chat template, and this row is text",
    ),
]


@pytest.mark.parametrize(("kind", "row", "message"), BAD_TOOL_ROWS, ids=[kind for kind, _, _ in BAD_TOOL_ROWS])
def test_bad_tool_rows_are_named(kind, row, message):
    good = _weather_row() if isinstance(row["prompt"], list) else {**row, "tools": None}
    with pytest.raises(DataFormatError, match=message):
        prepare_dataset([good, row], _tokenizer(), _args(), "train")


def test_dpo_trains_on_tool_calling_rows(tmp_path):
    """The tiny model learns to prefer calling the tool over answering at once; at step 0 the loss is log 2."""
    tokenizer = _tokenizer()
    cities = ["Paris", "Rome", "Oslo", "Lima", "Cairo", "Quito", "Bern", "Riga"]
    rows = [_weather_row(city, 10 + i) for i, city in enumerate(cities)]
    args = DPOTrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        max_steps=8,
        logging_steps=2,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = DPOTrainer(
        build_model(tokenizer), args=args, train_dataset=rows, eval_dataset=rows[:4], processing_class=tokenizer
    )
    assert trainer.evaluate()["eval_loss"] == pytest.approx(math.log(2), abs=1e-6)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 4 and losses[-1] < losses[0], losses
    assert trainer.evaluate()["eval_rewards/accuracies"] > 0.5
