"""The ``hf-dpo`` command.

    hf-dpo train [RECIPE.yaml] [--field value ...]   # no recipe: the embedded CPU demo (recipes/demo.yaml)
    hf-dpo plot OUTPUT_DIR                            # loss / reward accuracy / margins as OUTPUT_DIR/training.png

Every field of `DPOTrainingArguments`, `ModelArguments`, `DataArguments` and `RunArguments` can be set in the
recipe or as a flag; flags override the recipe, and an unknown key in either is an error that names it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger("hf_dpo")

PACKAGED_PREFIX = "hf_dpo:"  # names of models and data shipped with hf_dpo (the demo's)


@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        default="HuggingFaceTB/SmolLM2-135M-Instruct",
        metadata={
            "help": "Hub id or local folder of the policy (a causal LM), or a copy shipped in a Python package, "
            "named explicitly: 'hf_dpo:SmolLM2-135M-Instruct' (the demo's; see hf_dpo.loading)."
        },
    )
    ref_model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "A separate reference model, loaded like the policy (same dtype, quantisation, ...); default: "
            "the policy with LoRA disabled, or a frozen copy."
        },
    )
    dtype: str | None = field(
        default=None,
        metadata={"help": "Weights dtype: 'auto', 'float32', 'bfloat16' or 'float16' (None: the library default)."},
    )
    attn_implementation: str | None = field(
        default=None, metadata={"help": "Attention kernel, e.g. 'sdpa', 'eager', 'flash_attention_2'."}
    )
    load_in_4bit: bool = field(
        default=False,
        metadata={
            "help": "QLoRA: load the policy in 4-bit NF4 with double quantisation (bitsandbytes); needs use_peft."
        },
    )
    load_in_8bit: bool = field(
        default=False, metadata={"help": "Load the policy in 8-bit (bitsandbytes); needs use_peft."}
    )
    use_peft: bool = field(default=False, metadata={"help": "Train LoRA adapters instead of all weights."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator (scale = alpha / r)."})
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the LoRA input."})
    lora_target_modules: str = field(
        default="all-linear",
        metadata={"help": "Comma-separated module names to adapt, or 'all-linear'."},
    )

    def init_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self.dtype is not None:
            kwargs["dtype"] = self.dtype
        if self.attn_implementation is not None:
            kwargs["attn_implementation"] = self.attn_implementation
        if self.load_in_4bit or self.load_in_8bit:
            kwargs.update(load_in_4bit=self.load_in_4bit, load_in_8bit=self.load_in_8bit)
        return kwargs

    def peft_config(self) -> Any:
        if not self.use_peft:
            return None
        from peft import LoraConfig

        targets = self.lora_target_modules
        return LoraConfig(
            r=self.lora_r,
            lora_alpha=self.lora_alpha,
            lora_dropout=self.lora_dropout,
            target_modules=targets if targets == "all-linear" else [name.strip() for name in targets.split(",")],
            task_type="CAUSAL_LM",
        )


@dataclass
class DataArguments:
    dataset_name: str = field(
        default="hf_dpo:concise_qa",
        metadata={
            "help": "Hub id, local folder or data file (json/jsonl/csv/parquet) of a preference dataset, or "
            "'hf_dpo:concise_qa', the demo data shipped in this package."
        },
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Dataset configuration name."})
    dataset_train_split: str = field(default="train", metadata={"help": "Split to train on."})
    dataset_test_split: str | None = field(default="test", metadata={"help": "Split to evaluate on (None: none)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N evaluation rows."})

    def __post_init__(self) -> None:
        if isinstance(self.dataset_test_split, str) and self.dataset_test_split.lower() in ("", "none", "null"):
            self.dataset_test_split = None  # a flag cannot spell YAML's null


@dataclass
class RunArguments:
    task: str | None = field(
        default=None,
        metadata={
            "help": "A built-in task whose checker scores greedy answers on the evaluation split before and after "
            "training ('concise_qa' for the demo)."
        },
    )
    task_max_new_tokens: int = field(default=32, metadata={"help": "Greedy answer length for the task check."})
    plot: bool = field(default=True, metadata={"help": "Write OUTPUT_DIR/training.png after training."})


ARGUMENT_CLASSES = (ModelArguments, DataArguments, RunArguments)


def default_recipe() -> Path:
    """recipes/demo.yaml: inside the installed wheel, or at the top of a source checkout."""
    for candidate in (
        Path(__file__).parent / "recipes" / "demo.yaml",
        Path(__file__).parents[1] / "recipes" / "demo.yaml",
    ):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("recipes/demo.yaml is missing from this installation")


def parse_train_args(argv: list[str]) -> tuple[Any, ...]:
    """``[RECIPE.yaml] [--field value ...]`` -> (ModelArguments, DataArguments, RunArguments, DPOTrainingArguments)."""
    from transformers import HfArgumentParser

    from hf_dpo.config import DPOTrainingArguments

    classes = (*ARGUMENT_CLASSES, DPOTrainingArguments)
    recipe = Path(argv[0]) if argv and not argv[0].startswith("-") else None
    flags = argv[1:] if recipe else argv
    if recipe is None and not flags:
        recipe = default_recipe()
    values: dict[str, Any] = {}
    if recipe is not None:
        with open(recipe, encoding="utf-8") as file:
            values = yaml.safe_load(file) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{recipe}: expected a mapping of field: value, got {type(values).__name__}")
    known = {f.name for cls in classes for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{recipe}: unknown key(s) {unknown}; see `hf-dpo train --help` for the fields")
    parser = HfArgumentParser(classes)
    parser.set_defaults(**values)
    return parser.parse_args_into_dataclasses(args=flags, look_for_args_file=False)


def load_splits(data_args: DataArguments) -> tuple[Any, Any]:
    """The train and evaluation splits named by ``data_args`` (evaluation may be ``None``)."""
    splits = _dataset_dict(data_args)
    for split in filter(None, (data_args.dataset_train_split, data_args.dataset_test_split)):
        if split not in splits:
            raise ValueError(f"dataset {data_args.dataset_name!r} has no split {split!r}; it has {list(splits)}")
    train = splits[data_args.dataset_train_split]
    test = splits[data_args.dataset_test_split] if data_args.dataset_test_split else None
    if data_args.max_train_samples is not None:
        train = train.select(range(min(data_args.max_train_samples, len(train))))
    if test is not None and data_args.max_eval_samples is not None:
        test = test.select(range(min(data_args.max_eval_samples, len(test))))
    return train, test


def _dataset_dict(data_args: DataArguments) -> Any:
    """All splits of the dataset: packaged with hf_dpo (``hf_dpo:`` names), one local file, or a Hub id/folder."""
    from datasets import load_dataset

    name = data_args.dataset_name
    if name.startswith(PACKAGED_PREFIX):
        from hf_dpo.demo.packaged import load_packaged_splits  # the demo's data; the core never needs it

        return load_packaged_splits(name)
    if os.path.isfile(name):
        if data_args.dataset_test_split is not None:
            raise ValueError(
                f"dataset_name={name!r} is a single file, which holds only the train split; set "
                "dataset_test_split to null (--dataset_test_split none) or give a folder or Hub id with both splits"
            )
        extension = name.rsplit(".", 1)[-1].replace("jsonl", "json")
        return load_dataset(extension, data_files={data_args.dataset_train_split: name})
    return load_dataset(name, data_args.dataset_config)


def fold_model_init_kwargs(model_args: ModelArguments, args: Any) -> dict[str, Any]:
    """Put ``model_args``' loading switches (dtype, attention, remote code, 4/8-bit) into ``args.model_init_kwargs``,
    where the user's own ``model_init_kwargs`` win on conflicts, and return them.

    The policy is loaded here and a reference given by name is loaded by the trainer from
    ``args.model_init_kwargs``: with one set of kwargs both go through the same ``load_causal_lm`` call, so a QLoRA
    recipe's named reference is 4-bit too.
    """
    remote_code = {"trust_remote_code": True} if args.trust_remote_code else {}  # a DPOTrainingArguments field (TRL's)
    args.model_init_kwargs = {**remote_code, **model_args.init_kwargs(), **(args.model_init_kwargs or {})}
    return args.model_init_kwargs


def build_trainer(model_args: ModelArguments, args: Any, train_split: Any, eval_split: Any) -> Any:
    """A `DPOTrainer` (not yet trained) on the policy, tokenizer and reference that ``model_args`` name."""
    from hf_dpo.loading import load_causal_lm, load_tokenizer
    from hf_dpo.trainer import DPOTrainer

    init_kwargs = fold_model_init_kwargs(model_args, args)
    name = model_args.model_name_or_path
    tokenizer = load_tokenizer(name, trust_remote_code=args.trust_remote_code)
    return DPOTrainer(
        model=load_causal_lm(name, role="policy", **init_kwargs),
        ref_model=model_args.ref_model_name_or_path,  # a name: loaded by the trainer with the same init_kwargs
        args=args,
        train_dataset=train_split,
        eval_dataset=eval_split,
        processing_class=tokenizer,
        peft_config=model_args.peft_config(),
    )


def check_task(run_args: RunArguments, eval_split: Any) -> None:
    """Fail before any model loads if the task is unknown or has nothing to score."""
    if run_args.task is None:
        return
    from hf_dpo.demo.tasks import get_checker  # the demo's tasks; the core never needs them

    get_checker(run_args.task)
    if eval_split is None:
        raise ValueError("task scoring needs an evaluation split (dataset_test_split)")


def held_out_scores(trainer: Any, eval_split: Any, run_args: RunArguments, stage: str) -> dict[str, Any]:
    """Reward accuracy (and, after training, margin) on the evaluation split, plus the task's accuracy if any;
    ``stage`` is "before" or "after" and ends each key."""
    if eval_split is None:
        return {}
    metrics = trainer.evaluate()
    scores: dict[str, Any] = {f"reward_accuracy_{stage}": metrics["eval_rewards/accuracies"]}
    if stage == "after":
        scores["reward_margin_after"] = metrics["eval_rewards/margins"]
    if run_args.task is not None:
        from hf_dpo.demo.summary import task_scores

        model, tokenizer = trainer.model, trainer.processing_class
        bf16 = trainer.args.bf16  # generate under the precision training used
        scores |= task_scores(stage, run_args.task, model, tokenizer, eval_split, run_args.task_max_new_tokens, bf16)
    return scores


def fit(trainer: Any) -> dict[str, float]:
    """Train (resuming if asked), save the model and trainer state, and return the timings."""
    result = trainer.train(resume_from_checkpoint=trainer.args.resume_from_checkpoint)
    trainer.save_model()
    trainer.save_state()
    seconds = result.metrics["train_runtime"]
    return {"train_seconds": seconds, "seconds_per_step": seconds / max(trainer.state.global_step, 1)}


def summary_file(run_args: RunArguments) -> str:
    if run_args.task is None:
        return "summary.json"
    from hf_dpo.demo.summary import SUMMARY_FILE

    return SUMMARY_FILE


def write_outputs(trainer: Any, summary: dict[str, Any], dataset: str, run_args: RunArguments) -> None:
    """Model card, training.png (adding its path to ``summary``) and the summary JSON, in the output folder."""
    output_dir = trainer.args.output_dir
    trainer.create_model_card(dataset=dataset)
    if run_args.plot:
        from hf_dpo.plotting import plot_training

        summary["plot"] = plot_training(trainer.state.log_history, os.path.join(output_dir, "training.png"))
    with open(os.path.join(output_dir, summary_file(run_args)), "w", encoding="utf-8") as file:
        json.dump(summary, file, indent=2)


def train(model_args: ModelArguments, data_args: DataArguments, run_args: RunArguments, args: Any) -> dict[str, Any]:
    """Score, train, score again; write the model, card, plot and summary; print the summary and return it."""
    started = time.time()
    train_split, eval_split = load_splits(data_args)
    check_task(run_args, eval_split)
    trainer = build_trainer(model_args, args, train_split, eval_split)
    summary: dict[str, Any] = {"model": model_args.model_name_or_path, "train_rows": len(train_split)}
    summary |= held_out_scores(trainer, eval_split, run_args, "before")
    summary |= fit(trainer)
    summary |= held_out_scores(trainer, eval_split, run_args, "after")
    if trainer.is_world_process_zero():
        summary["wall_seconds"] = time.time() - started
        write_outputs(trainer, summary, data_args.dataset_name, run_args)
        print_summary(summary, args.output_dir)
    return summary


REWARD_ROW = ("reward accuracy (held-out)", "reward_accuracy_before", "reward_accuracy_after")


def print_summary(summary: dict[str, Any], output_dir: str) -> None:
    """The before/after table, the demo's task rows and example answers when a task was scored, and timings."""
    rows, notes = [REWARD_ROW], []
    if "task_accuracy_before" in summary:
        from hf_dpo.demo.summary import SUMMARY_ROWS, example_lines

        rows += SUMMARY_ROWS
        notes = example_lines(summary)
    print("\n" + "=" * 72)
    print(f"{'':36}{'before':>12}{'after':>12}")
    for label, before, after in rows:
        if before in summary or after in summary:
            print(f"{label:36}{summary.get(before, float('nan')):>12.3f}{summary.get(after, float('nan')):>12.3f}")
    if summary.get("reward_accuracy_before") == 0:
        print("  (before training the policy is the reference: every reward is 0, so no pair is ranked right yet)")
    for line in notes:
        print(line)
    print(
        f"train: {summary['train_seconds']:.0f} s ({summary['seconds_per_step']:.2f} s/step); "
        f"all: {summary['wall_seconds']:.0f} s"
    )
    print(
        f"written to {output_dir}: adapter/model, trainer_state.json, README.md"
        + (", training.png" if "plot" in summary else "")
    )
    print("=" * 72)


def plot(output_dir: str) -> str:
    """OUTPUT_DIR/training.png from OUTPUT_DIR/trainer_state.json."""
    from hf_dpo.plotting import plot_training

    with open(os.path.join(output_dir, "trainer_state.json"), encoding="utf-8") as file:
        history = json.load(file)["log_history"]
    return plot_training(history, os.path.join(output_dir, "training.png"))


def print_train_help() -> None:
    from transformers import HfArgumentParser

    from hf_dpo.config import DPOTrainingArguments

    HfArgumentParser((*ARGUMENT_CLASSES, DPOTrainingArguments), prog="hf-dpo train").print_help()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="hf-dpo", description="Direct Preference Optimization on transformers.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("train", help="train from a recipe (none: the CPU demo) and flags", add_help=False)
    plot_parser = commands.add_parser("plot", help="plot loss, reward accuracy and margins of a finished run")
    plot_parser.add_argument("output_dir")
    known, rest = parser.parse_known_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if known.command == "plot":
        print(plot(known.output_dir))
    elif "-h" in rest or "--help" in rest:
        print_train_help()
    else:
        train(*parse_train_args(rest))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
