"""The samples callback: at every evaluation, answers to a few fixed prompts, written to ``samples.jsonl`` and sent
as a table to every tracker that takes one (:mod:`hf_dpo.monitor.trackers`), with their length statistics logged."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers import TrainerCallback

from hf_dpo.data.images import image_column
from hf_dpo.data.vision import text_tokenizer
from hf_dpo.monitor.generation import SamplingSettings, generate
from hf_dpo.monitor.pair_metrics import length_stats
from hf_dpo.monitor.trackers import send_table

logger = logging.getLogger("hf_dpo.doctor")

SAMPLES_FILE = "samples.jsonl"
SAMPLE_COLUMNS = ("step", "prompt", "completion", "num_tokens", "hit_limit")


# ---- samples ------------------------------------------------------------------------------------------------------


def refuse_images(trainer: Any) -> None:
    """Samples are generated from prompt ids alone: a vision-language model would answer without its images."""
    dataset = trainer.eval_dataset if trainer.eval_dataset is not None else trainer.train_dataset
    splits = dataset.values() if isinstance(dataset, dict) else [dataset]
    if any(image_column(getattr(split, "column_names", None)) for split in splits):
        raise ValueError(
            "generate_samples > 0 generates answers from the prompts' token ids alone, and these rows hold images: "
            "the model would answer without seeing them; set generate_samples=0 for a run with images"
        )


def eval_prompts(trainer: Any, count: int) -> list[list[int]]:
    """The first ``count`` prompts of the trainer's evaluation set (the first named set of several, else the
    training set), as the token ids training tokenized."""
    dataset = trainer.eval_dataset if trainer.eval_dataset is not None else trainer.train_dataset
    if isinstance(dataset, dict):
        dataset = next(iter(dataset.values()))
    prompts = []
    for row in dataset:
        if len(prompts) == count:
            break
        prompts.append(list(row["prompt_input_ids"]))
    return prompts


class SamplesCallback(TrainerCallback):
    """At every evaluation, answers a few fixed prompts and records them in ``OUTPUT_DIR/samples.jsonl`` (always)
    and as a table in every ``report_to`` integration that takes one (W&B, Comet, MLflow, TensorBoard as Markdown
    text, Trackio). Logs ``samples/mean_tokens`` and ``samples/hit_limit`` so the doctor and the plots see the
    answers' length.

    Every process generates (a sharded model needs them all); the main process writes.

    Args:
        prompts: token ids of each prompt, as training tokenized them (see :func:`eval_prompts`).
        tokenizer: decodes prompts and answers.
        settings: greedy by default, ``SamplingSettings(do_sample=True, seed=...)`` to sample.
        integrations: returns the trainer's callbacks (where the integrations are); ``None``: none.
        log: the trainer's ``log``, for the length metrics; ``None``: not logged.
    """

    def __init__(
        self,
        prompts: list[list[int]],
        tokenizer: Any,
        settings: SamplingSettings | None = None,
        integrations: Callable[[], Sequence[Any]] | None = None,
        log: Callable[[dict[str, float]], None] | None = None,
    ):
        self.prompts, self.tokenizer, self.settings = prompts, tokenizer, settings or SamplingSettings()
        self.integrations, self.log = integrations, log
        self.texts = [tokenizer.decode(prompt, skip_special_tokens=True).strip() for prompt in prompts]

    @classmethod
    def attach(cls, trainer: Any, count: int, max_new_tokens: int = 64) -> SamplesCallback:
        """Add a samples callback on the first ``count`` evaluation prompts to ``trainer``."""
        refuse_images(trainer)
        callback = cls(
            eval_prompts(trainer, count),
            text_tokenizer(trainer.processing_class),
            SamplingSettings(max_new_tokens=max_new_tokens, seed=trainer.args.seed),
            integrations=lambda: trainer.callback_handler.callbacks,
            log=trainer.log,
        )
        trainer.add_callback(callback)
        return callback

    def on_evaluate(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if not self.prompts or model is None:
            return
        dtype = (
            torch.bfloat16 if getattr(args, "bf16", False) else torch.float16 if getattr(args, "fp16", False) else None
        )
        answers = generate(model, self.tokenizer, self.prompts, self.settings, autocast_dtype=dtype)
        rows = [
            [state.global_step, prompt, answer.text, answer.num_tokens, answer.hit_limit]
            for prompt, answer in zip(self.texts, answers)
        ]
        if state.is_world_process_zero:
            os.makedirs(args.output_dir, exist_ok=True)
            with open(os.path.join(args.output_dir, SAMPLES_FILE), "a", encoding="utf-8") as file:
                for row in rows:
                    file.write(json.dumps(dict(zip(SAMPLE_COLUMNS, row))) + "\n")
            if self.integrations is not None:
                send_table(self.integrations(), list(SAMPLE_COLUMNS), rows, state.global_step)
        if self.log is not None:  # every process: Trainer.log reports from the main one
            stats = length_stats([answer.num_tokens for answer in answers], [answer.hit_limit for answer in answers])
            self.log({f"samples/{name}": value for name, value in stats.items()})


# ---- the doctor ---------------------------------------------------------------------------------------------------
