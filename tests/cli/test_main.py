"""hf-dpo's command line: recipes parse, flags override, unknown keys are named; a tiny run end to end."""

import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from tiny import build_model, build_tokenizer, preference_rows

import hf_dpo.cli.train as cli_train
from hf_dpo.cli.build_trainer import build_trainer, fold_model_init_kwargs
from hf_dpo.cli.dispatch import main
from hf_dpo.cli.summary import print_summary
from hf_dpo.cli.train import check_inputs, train
from hf_dpo.config.recipe import UserError
from hf_dpo.config.run_arguments import DataArguments, ModelArguments, default_recipe, parse_train_args
from hf_dpo.config.training_arguments import DPOTrainingArguments
from hf_dpo.tools.splits import load_splits

# Training recipes (accelerate's own configs ship in hf_dpo/cli/accelerate_configs/: tests/test_recipes_accelerate.py)
RECIPES = sorted(Path(__file__).parents[2].joinpath("recipes").rglob("*.yaml"))


def test_there_are_recipes():
    assert any(path.name == "demo.yaml" for path in RECIPES)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda path: path.name)
def test_every_recipe_parses_into_the_argument_classes(recipe):
    # GPU recipes ask for bf16, which TrainingArguments refuses on a machine without a GPU unless use_cpu is set
    on_cpu = [] if torch.cuda.is_available() else ["--use_cpu", "true"]
    model_args, data_args, _, args = parse_train_args([str(recipe), *on_cpu])
    assert isinstance(args, DPOTrainingArguments)
    assert model_args.model_name_or_path and data_args.dataset_name
    assert recipe.read_text().startswith("#"), "a recipe starts with a header comment"


def test_default_recipe_is_the_demo_and_flags_override_it():
    model_args, _, _, args = parse_train_args(["--beta", "0.25", "--use_peft", "false"])
    assert (args.beta, model_args.use_peft) == (0.25, False)  # flags alone: dataclass defaults, no recipe
    model_args, _, run_args, args = parse_train_args([str(default_recipe()), "--beta", "0.25"])
    assert args.beta == 0.25 and model_args.use_peft is True and run_args.task == "concise_qa"


def test_unknown_recipe_key_is_named_with_the_closest_field(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("beta: 0.1\nbetta: 0.2\n")
    with pytest.raises(UserError, match=r"bad.yaml: unknown key 'betta' \(did you mean 'beta'\?\)$"):
        parse_train_args([str(recipe)])


def test_unknown_or_abbreviated_flag_is_named_with_the_closest_field():
    with pytest.raises(UserError, match=r"^--betta: did you mean --beta\?$"):
        parse_train_args(["--betta", "0.2"])
    with pytest.raises(UserError, match=r"^--max_step: did you mean --max_steps\?$"):  # no argparse prefix matching
        parse_train_args(["--max_step", "3"])
    with pytest.raises(UserError, match=r"unexpected argument 'extra\.yaml'"):
        parse_train_args(["--beta", "0.2", "extra.yaml"])


def test_recipe_values_take_the_types_the_fields_declare(tmp_path):
    """Issue 9, item 6: lists where a list makes sense, `1e-4` (a string to PyYAML) as a float, a wrong type named."""
    recipe = tmp_path / "typed.yaml"
    recipe.write_text(
        "use_peft: true\nlora_target_modules: [q_proj, v_proj]\nloss_type: [sigmoid, sft]\nloss_weights: [1, 0.5]\n"
        "report_to: [none]\nlearning_rate: 1e-4\nmax_length: '64'\nsave_strategy: 'no'\noutput_dir: out\n"
    )
    model_args, _, _, args = parse_train_args([str(recipe)])
    assert model_args.target_modules() == ["q_proj", "v_proj"]
    assert model_args.peft_config().target_modules == {"q_proj", "v_proj"}
    assert (args.loss_type, args.loss_weights, args.learning_rate, args.max_length) == (
        "sigmoid,sft",
        [1.0, 0.5],
        1e-4,
        64,
    )
    recipe.write_text("lora_r: sixteen\n")
    with pytest.raises(UserError, match=r"typed.yaml: lora_r: expected an integer, got sixteen \(a string\)$"):
        parse_train_args([str(recipe)])


def test_a_user_error_is_a_value_error_for_python_callers():
    assert issubclass(UserError, ValueError)


def test_test_split_can_be_switched_off_from_a_flag_and_single_files_say_so(tmp_path):
    _, data_args, _, _ = parse_train_args(["--dataset_test_split", "none", "--output_dir", str(tmp_path)])
    assert data_args.dataset_test_split is None
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    with pytest.raises(UserError, match=r"is a single file, which holds only the train split: .* eval_split_size"):
        load_splits(DataArguments(dataset_name=str(data)))
    train, test = load_splits(DataArguments(dataset_name=str(data), dataset_test_split=None))
    assert len(train) == 1 and test is None


def test_bad_value_in_recipe_names_the_field(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("beta: -1\noutput_dir: out\n")
    with pytest.raises(UserError, match="beta=-1"):  # DPOTrainingArguments.__post_init__'s ValueError, as a UserError
        parse_train_args([str(recipe)])
    recipe.write_text("load_in_4bit: true\noutput_dir: out\n")
    with pytest.raises(UserError, match="load_in_4bit/load_in_8bit need use_peft"):
        parse_train_args([str(recipe)])


def test_train_end_to_end_on_a_local_model_and_jsonl(tmp_path, capsys):
    tokenizer = build_tokenizer()
    build_model(tokenizer).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    rows = [{"prompt": f"Question {i}?", "chosen": " yes good", "rejected": " no bad"} for i in range(16)]
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(json.dumps(row) for row in rows))
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(
        f"# tiny\nmodel_name_or_path: {tmp_path / 'model'}\ndataset_name: {data}\ndataset_test_split: null\n"
        f"output_dir: {tmp_path / 'out'}\nmax_steps: 3\nper_device_train_batch_size: 4\nlearning_rate: 0.01\n"
        "logging_steps: 1\nreport_to: none\nuse_cpu: true\nsave_strategy: 'no'\nuse_peft: true\nlora_r: 4\n"
        "lora_target_modules: q_proj,v_proj\n"
    )
    assert main(["train", str(recipe)]) == 0
    out = tmp_path / "out"
    for name in ("adapter_model.safetensors", "trainer_state.json", "README.md", "training.png", "summary.json"):
        assert (out / name).is_file(), name
    printed = capsys.readouterr().out
    # no evaluation split: no empty before/after table, but the last training figures and where the outputs went
    assert "before" not in printed and "training, last logged step (3): loss 0." in printed
    assert ", reward accuracy " in printed and ", reward margin " in printed
    assert (
        f"written to {out}: adapter, trainer_state.json, README.md (model card), training.png, summary.json" in printed
    )
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["seconds"]) == ["loading", "training"] and summary["last_train_log"]["step"] == 3
    assert main(["plot", str(out)]) == 0


def test_the_summary_says_something_when_no_step_was_logged(capsys):
    summary = {"train_loss": 0.6931, "seconds": {"loading": 1.0, "training": 2.0}, "wall_seconds": 3.0}
    print_summary(summary | {"train_steps": 1, "seconds_per_step": 2.0, "last_train_log": {}}, "out")
    printed = capsys.readouterr().out
    assert "training: mean loss over the run 0.6931" in printed
    assert "time: loading 1 s, training 2 s (1 step at 2.00 s/step); 3 s in all" in printed


def _tiny_run(tmp_path, **overrides):
    """A tiny Llama and tokenizer saved to tmp_path/model, 16 pairs in a JSONL file, and the argument classes of a
    recipe naming them (``overrides`` are extra recipe keys)."""
    tokenizer = build_tokenizer()
    # bitsandbytes' CPU 4-bit kernels work in blocks of 64 input features
    build_model(tokenizer, hidden_size=64, intermediate_size=128).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(json.dumps(row) for row in preference_rows(16)))
    recipe = {
        "model_name_or_path": str(tmp_path / "model"),
        "dataset_name": str(data),
        "dataset_test_split": None,
        "output_dir": str(tmp_path / "out"),
        "report_to": "none",
        "use_cpu": True,
        "max_steps": 1,
        **overrides,
    }
    (tmp_path / "tiny.yaml").write_text("# tiny\n" + yaml.safe_dump(recipe))
    return parse_train_args([str(tmp_path / "tiny.yaml")])


def _reference_model(trainer):
    return getattr(trainer, "ref_model", None) or trainer.reference.model


def test_model_arguments_reach_model_init_kwargs_where_the_users_own_win():
    model_args = ModelArguments(dtype="bfloat16", attn_implementation="eager", load_in_4bit=True, use_peft=True)
    args = DPOTrainingArguments(output_dir="out", model_init_kwargs={"dtype": "float32", "device_map": "cpu"})
    assert fold_model_init_kwargs(model_args, args) == {
        "dtype": "float32",  # model_init_kwargs, given explicitly, win over ModelArguments.dtype
        "attn_implementation": "eager",
        "load_in_4bit": True,
        "load_in_8bit": False,
        "device_map": "cpu",
    }
    assert args.model_init_kwargs["attn_implementation"] == "eager"


def test_a_named_reference_gets_the_policys_dtype(tmp_path):
    model_args, data_args, _, args = _tiny_run(
        tmp_path, ref_model_name_or_path=str(tmp_path / "model"), dtype="bfloat16", attn_implementation="eager"
    )
    trainer = build_trainer(model_args, args, *load_splits(data_args))
    reference = _reference_model(trainer)
    assert reference is not trainer.model
    assert trainer.model.dtype == reference.dtype == torch.bfloat16
    assert trainer.model.config._attn_implementation == reference.config._attn_implementation == "eager"


def test_a_named_reference_is_quantized_like_a_qlora_policy(tmp_path):
    bnb = pytest.importorskip("bitsandbytes")
    model_args, data_args, _, args = _tiny_run(
        tmp_path,
        ref_model_name_or_path=str(tmp_path / "model"),
        load_in_4bit=True,
        dtype="float32",  # also the 4-bit compute dtype: CPU tests run in float32
        use_peft=True,
        lora_r=4,
    )
    trainer = build_trainer(model_args, args, *load_splits(data_args))
    reference = _reference_model(trainer)
    assert reference.is_loaded_in_4bit and trainer.model.get_base_model().is_loaded_in_4bit
    assert isinstance(reference.model.layers[0].self_attn.q_proj, bnb.nn.Linear4bit)
    assert isinstance(reference.model.layers[0].mlp.down_proj, bnb.nn.Linear4bit)
    trainer.train()  # and the 4-bit reference scores the batch next to the 4-bit policy


def test_a_task_run_writes_the_demo_summary(tmp_path, capsys):
    """The demo's path through the CLI, on a tiny model: packaged data, both checks (format and fact) before and
    after, every answer in demo_answers.jsonl, the table in the summary and in the card."""
    model_args, data_args, run_args, args = _tiny_run(
        tmp_path,
        dataset_name="hf_dpo:concise_qa",
        dataset_test_split="test",
        max_train_samples=8,
        max_eval_samples=4,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        task="concise_qa",
        task_max_new_tokens=2,
        plot=False,
    )
    summary = train(model_args, data_args, run_args, args)
    assert set(summary["task_before"]) == set(summary["task_after"]) == {"format", "fact"}
    assert summary["task_before"]["fact"] == 0  # a random model answers nonsense
    assert summary["reward_accuracy_before"] == 0 and summary["reward_margin_before"] == 0
    assert "reward_margin_after" in summary and len(summary["task_examples_after"]) == 4
    out = tmp_path / "out"
    written = json.loads((out / "demo_summary.json").read_text())
    assert written["train_rows"] == 8 and not (out / "summary.json").exists()
    assert "task_answers_after" not in written and written["task"]["checks"]["fact"].startswith("an accepted")
    answers = [json.loads(line) for line in (out / "demo_answers.jsonl").read_text().splitlines()]
    assert len(answers) == 4 and {"answer_before", "answer_after", "format_before", "fact_after"} <= set(answers[0])
    printed = capsys.readouterr().out
    assert "reward margin (mean)" in printed and "format, greedy answers (held-out)" in printed
    assert "fact, greedy answers (held-out)" in printed and "  Q: " in printed and " fact x" in printed
    card = (out / "README.md").read_text()
    assert "## Results" in card and "| fact, greedy answers (held-out) |" in card
    assert "format: one sentence of at most 16 words" in card.lower()


def test_an_unknown_task_or_packaged_dataset_fails_before_loading_a_model(tmp_path, monkeypatch):
    model_args, data_args, run_args, args = _tiny_run(tmp_path, task="nope")
    monkeypatch.setattr(cli_train, "build_trainer", lambda *_: pytest.fail("a model was loaded"))
    with pytest.raises(ValueError, match="task='nope' is not one of concise_qa, bare_qa"):
        train(model_args, data_args, run_args, args)
    with pytest.raises(ValueError, match="'hf_dpo:nope' is not a packaged dataset; hf_dpo ships: hf_dpo:concise_qa, "):
        load_splits(DataArguments(dataset_name="hf_dpo:nope"))


def test_missing_local_inputs_are_named_before_anything_loads(tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    with pytest.raises(UserError, match=r"^model_name_or_path='\./no_model': no such folder$"):
        check_inputs(ModelArguments(model_name_or_path="./no_model"), DataArguments(dataset_name=str(data)))
    with pytest.raises(UserError, match=r"^ref_model_name_or_path='/no/ref': no such folder$"):
        check_inputs(
            ModelArguments(model_name_or_path=str(tmp_path), ref_model_name_or_path="/no/ref"),
            DataArguments(dataset_name=str(data)),
        )
    local = ModelArguments(model_name_or_path=str(tmp_path))
    for name in ("missing.parquet", "./data_folder"):
        with pytest.raises(UserError, match=rf"^dataset_name='{re.escape(name)}': no such file or folder$"):
            check_inputs(local, DataArguments(dataset_name=name))
    check_inputs(local, DataArguments(dataset_name="org/hub-dataset"))  # a Hub dataset id: loading says


def test_without_an_output_dir_the_run_is_named_after_model_and_data(tmp_path):
    _, _, run_args, args = parse_train_args(
        ["--model_name_or_path", "org/My-Model", "--dataset_name", "d/pairs.jsonl"]
    )
    assert args.output_dir == "outputs/My-Model-pairs" and {"model_name_or_path", "dataset_name"} == run_args.given
    _, _, run_args, args = parse_train_args(["--output_dir", str(tmp_path), "--save_strategy", "steps"])
    assert args.output_dir == str(tmp_path) and {"output_dir", "save_strategy"} == run_args.given


def test_a_hub_model_offline_is_one_line_before_anything_loads(tmp_path, monkeypatch):
    """HF_HUB_OFFLINE=1 (the tests' setting) and a Hub id that is not in the local cache: said at once, not after
    minutes of download retries."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    with pytest.raises(
        UserError, match=r"^model_name_or_path='org/not-cached' is not a local path, and HF_HUB_OFFLINE"
    ):
        check_inputs(ModelArguments(model_name_or_path="org/not-cached"), DataArguments(dataset_name=str(data)))
    with pytest.raises(UserError, match="neither a local path nor a valid Hub id"):
        check_inputs(ModelArguments(model_name_or_path="not a/valid id!"), DataArguments(dataset_name=str(data)))


def test_the_hub_unreachable_is_said_in_one_line(monkeypatch):
    import huggingface_hub
    import huggingface_hub.constants

    from hf_dpo.models.loading import hub_problem

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)

    def unreachable(self, *args, **kwargs):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", unreachable)
    problem = hub_problem("org/not-cached")
    assert problem.startswith("'org/not-cached': the Hub (") and "cannot be reached (ConnectionError" in problem


@pytest.mark.parametrize(("size", "expected"), [(0.25, 4), (3, 3)])
def test_eval_split_size_holds_out_rows_of_a_single_file_with_the_seed(tmp_path, size, expected):
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(json.dumps(row) for row in preference_rows(16)))
    data_args = DataArguments(dataset_name=str(data), eval_split_size=size)
    train_split, test_split = load_splits(data_args, seed=3)
    assert (len(train_split), len(test_split)) == (16 - expected, expected)
    assert not {row["prompt"] for row in train_split} & {row["prompt"] for row in test_split}
    again = load_splits(data_args, seed=3)[1]
    assert [row["prompt"] for row in again] == [row["prompt"] for row in test_split]  # seeded
    assert [row["prompt"] for row in load_splits(data_args, seed=4)[1]] != [row["prompt"] for row in test_split]


def test_eval_split_size_is_checked(tmp_path):
    with pytest.raises(UserError, match=r"eval_split_size=1.5 must be a fraction in \(0, 1\) or a whole number"):
        parse_train_args(["--eval_split_size", "1.5", "--output_dir", str(tmp_path)])
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(json.dumps(row) for row in preference_rows(4)))
    with pytest.raises(UserError, match="holds out 4 of the 4 training rows"):
        load_splits(DataArguments(dataset_name=str(data), eval_split_size=4))


def _bad_data_run(tmp_path, rows, **overrides):
    model_args, data_args, run_args, args = _tiny_run(tmp_path, **overrides)
    Path(data_args.dataset_name).write_text("\n".join(json.dumps(row) for row in rows))
    return model_args, data_args, run_args, args


@pytest.mark.parametrize(
    ("rows", "overrides", "message"),
    [
        (
            [{"prompt": "p", "chosen": " a", "rejected": " b"}, {"prompt": "q", "rejected": " b"}],
            {},
            r"pairs.jsonl, train split: row 1 \(rows counted from 0\) has no 'chosen' \(the key is missing or null",
        ),
        (
            [{"prompt": "p", "chosen": 3, "rejected": " b"}],
            {},
            r"pairs.jsonl, train split \(rows counted from 0\): row 0, field 'chosen': expected a string",
        ),
        (
            [{"question": "p", "good": " a", "bad": " b"}],
            {},
            "no 'chosen' and 'rejected' columns; .* --column_mapping "
            + re.escape("""'{"question": "prompt", "good": "chosen", "bad": "rejected"}'"""),
        ),
        (  # lists of answers are checked as lists, not asked for chosen and rejected
            [{"prompt": "p", "completions": [" a", " b"], "scores": [1, 0]}, {"prompt": "q", "completions": [" a"]}],
            {},
            r"pairs.jsonl, train split \(rows counted from 0\): row 1: give each answer's quality one way",
        ),
        (
            [{"prompt": "p", "completions": [" a", " b"], "scores": [1, 0]}],
            {"use_weighting": True},
            "use_weighting weighs the two answers of a pair against each other; the train dataset holds lists",
        ),
    ],
)
def test_bad_rows_are_named_before_the_model_loads(tmp_path, monkeypatch, rows, overrides, message):
    run = _bad_data_run(tmp_path, rows, **overrides)
    monkeypatch.setattr(cli_train, "build_trainer", lambda *_: pytest.fail("a model was loaded"))
    with pytest.raises(UserError, match=message):
        train(*run)


def test_lists_of_answers_pass_the_check_before_the_model_loads(tmp_path, monkeypatch):
    rows = [{"prompt": f"q{i}", "completions": [" a", " b", " c"], "ranking": [2, 1, 3]} for i in range(4)]
    run = _bad_data_run(tmp_path, rows)

    def loaded(*_):
        raise RuntimeError("the model would load now")

    monkeypatch.setattr(cli_train, "build_trainer", loaded)
    with pytest.raises(RuntimeError, match="the model would load now"):
        train(*run)


def test_plain_text_prompts_for_a_chat_model_are_warned_before_training(tmp_path, caplog, monkeypatch):
    model_args, data_args, run_args, args = _tiny_run(tmp_path)
    tokenizer = build_tokenizer()
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    monkeypatch.setattr(cli_train, "load_run_tokenizer", lambda *_: tokenizer)
    monkeypatch.setattr(cli_train, "build_trainer", lambda *_: pytest.fail("stop here"))
    with caplog.at_level("WARNING", logger="hf_dpo"), pytest.raises(pytest.fail.Exception, match="stop here"):
        train(model_args, data_args, run_args, args)
    warned = [record.getMessage() for record in caplog.records if "[no_chat_template;" in record.getMessage()]
    assert len(warned) == 1 and "train data, 16 of the first 16 rows (first: row 0, counted from 0)" in warned[0]


def test_a_run_says_what_trains_and_leaves_no_duplicate_final_checkpoint(tmp_path, caplog):
    model_args, data_args, run_args, args = _tiny_run(tmp_path, use_peft=True, lora_r=4, save_steps=1)
    assert "save_strategy" not in run_args.given  # Trainer's default: a checkpoint at save_steps and at the end
    with caplog.at_level("INFO", logger="hf_dpo"):
        summary = train(model_args, data_args, run_args, args)
    said = [record.getMessage() for record in caplog.records if record.getMessage().startswith("training LoRA")]
    assert len(said) == 1 and "M parameters train (" in said[0] and f"output: {tmp_path / 'out'}" in said[0]
    assert summary["removed_checkpoint"] == str(tmp_path / "out" / "checkpoint-1")
    assert (
        not (tmp_path / "out" / "checkpoint-1").exists() and (tmp_path / "out" / "adapter_model.safetensors").exists()
    )


def test_a_chosen_save_strategy_keeps_its_checkpoints(tmp_path):
    model_args, data_args, run_args, args = _tiny_run(tmp_path, save_strategy="steps", save_steps=1)
    summary = train(model_args, data_args, run_args, args)
    assert "removed_checkpoint" not in summary and (tmp_path / "out" / "checkpoint-1").is_dir()


def test_an_accuracy_of_one_at_a_negligible_margin_is_said_beside_the_table(capsys):
    summary = {"reward_accuracy_before": 0.0, "reward_accuracy_after": 1.0, "reward_margin_before": 0.0}
    summary |= {"reward_margin_after": 0.003, "train_loss": 0.69, "train_steps": 10, "seconds_per_step": 1.0}
    print_summary(summary | {"last_train_log": {}, "seconds": {}, "wall_seconds": 1.0}, "out")
    printed = capsys.readouterr().out
    assert re.search(r"reward margin \(mean\)\s+0\.000\s+0\.003", printed)
    assert "the margin after training is only 0.0030: the pairs lean the right way by almost nothing" in printed


def test_a_mistyped_loss_type_gets_a_suggestion_and_a_yaml_error_names_its_file(tmp_path):
    with pytest.raises(UserError, match=r"loss_type='sigmod' must be one of .*; did you mean 'sigmoid'\?"):
        parse_train_args(["--loss_type", "sigmod", "--output_dir", str(tmp_path)])
    with pytest.raises(UserError, match="did you mean 'sigmoid'"):
        parse_train_args(["--loss_type", "dpo", "--output_dir", str(tmp_path)])
    recipe = tmp_path / "broken.yaml"
    recipe.write_text("beta: 0.1\nlr: [1, 2\n")
    with pytest.raises(UserError, match=f'broken.yaml: not valid YAML: .* in "{re.escape(str(recipe))}", line 2'):
        parse_train_args([str(recipe)])


def test_the_evaluation_at_the_last_step_is_not_run_again_for_the_summary(tmp_path, monkeypatch):
    from hf_dpo.trainer.trainer import DPOTrainer

    rows = preference_rows(24)
    model_args, data_args, run_args, args = _tiny_run(
        tmp_path, max_steps=2, eval_strategy="steps", eval_steps=1, per_device_train_batch_size=4
    )
    folder = tmp_path / "split"
    folder.mkdir()
    (folder / "train.jsonl").write_text("\n".join(json.dumps(row) for row in rows[:16]))
    (folder / "test.jsonl").write_text("\n".join(json.dumps(row) for row in rows[16:]))
    data_args.dataset_name, data_args.dataset_test_split = str(folder), "test"
    calls = []
    evaluate = DPOTrainer.evaluate
    monkeypatch.setattr(DPOTrainer, "evaluate", lambda self, *a, **k: calls.append(1) or evaluate(self, *a, **k))
    summary = train(model_args, data_args, run_args, args)
    assert len(calls) == 3  # before training, at steps 1 and 2; the summary reads the one at step 2
    last = [entry for entry in json.loads((tmp_path / "out" / "trainer_state.json").read_text())["log_history"]
            if "eval_rewards/accuracies" in entry][-1]  # fmt: skip
    assert summary["reward_accuracy_after"] == last["eval_rewards/accuracies"]
    assert summary["reward_margin_after"] == last["eval_rewards/margins"]
