"""``hf-dpo inspect``: what training will see, before it trains: a few rows tokenized exactly as the trainer
tokenizes them, the mistakes users report, and the lengths of the whole split.

    hf-dpo inspect recipes/demo.yaml --rows 3
    hf-dpo inspect pairs.jsonl --tokenizer HuggingFaceTB/SmolLM2-135M-Instruct --max_length 512

Each shown sequence is ``prompt ⟦trained completion⟧``: BOS/EOS are written out, ``[✂ N tokens]`` marks where
truncation cut (the prompt's start under ``keep_end``, a completion's end). Warnings, each once with its count:
plain-text prompts for a tokenizer with a chat template (trained without the chat format); two BOS in a row or a
BOS in the data text; a completion without EOS (cut by the length limits), or ending its turn with a special token
that is not the tokenizer's EOS; a chat template that writes text after the assistant's answer (trained as part of
every completion); a text completion that starts without the space or newline that separates it from its prompt.
``hf-dpo train`` logs the same warnings before it loads the model. Then length histograms (prompt, chosen, rejected, before any cut), the share truncated, and the
padding waste of batches drawn as training draws them.

Rows are tokenized and checked by :mod:`hf_dpo.tools.data_checks`; this module shows them and sums up the split.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Any

from hf_dpo.config.recipe import UserError
from hf_dpo.data.tokenization import KEPT, TRUNCATED
from hf_dpo.data.vision import is_processor, text_tokenizer
from hf_dpo.tools.data_checks import LIMIT_NAMES, SIDES, TokenizedRow, row_warnings, tokenize_for_inspection
from hf_dpo.tools.image_tokens import compressed, image_summary
from hf_dpo.tools.inspection_text import CLOSE, OPEN, STATUS_WORDS, histogram

# ---- showing a row ------------------------------------------------------------------------------------------------


def _text(tokenizer: Any, ids: list[int]) -> str:
    return compressed(tokenizer, ids)  # an image's hundreds of placeholder tokens written once, with their count


def sequence_line(tokenized: TokenizedRow, side: str, tokenizer: Any, mode: str, color: bool = False) -> str:
    """``prompt ⟦completion⟧`` with ``[✂ N tokens]`` where truncation cut."""
    green, red, reset = ("\033[32m", "\033[31m", "\033[0m") if color else ("", "", "")
    prompt_cut = len(tokenized.full_prompt) - len(tokenized.prompt)
    prompt = _text(tokenizer, tokenized.prompt)
    if prompt_cut > 0:
        mark = f"{red}[✂ {prompt_cut} prompt tokens]{reset}"
        if mode == "keep_end":  # the start was cut (a BOS is put back in front)
            keeps_bos = tokenized.prompt[:1] == [tokenizer.bos_token_id] and tokenizer.bos_token_id is not None
            head = _text(tokenizer, tokenized.prompt[:1]) if keeps_bos else ""
            prompt = head + mark + _text(tokenizer, tokenized.prompt[1 if keeps_bos else 0 :])
        else:
            prompt = prompt + mark
    completion = tokenized.completions[side]
    cut = len(tokenized.full_completions[side]) - len(completion)
    tail = f"{red}[✂ {cut} tokens]{reset}" if cut > 0 else ""
    return f"{prompt}{green}{OPEN}{_text(tokenizer, completion)}{CLOSE}{reset}{tail}"


def _token_list(tokenizer: Any, ids: list[int]) -> str:
    return " ".join(repr(tokenizer.decode([token], skip_special_tokens=False)) for token in ids)


def boundary_line(tokenized: TokenizedRow, tokenizer: Any) -> str:
    """BOS/EOS placement and the tokens around the prompt/completion boundary and at the end."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    starts = "starts with BOS" if bos is not None and tokenized.prompt[:1] == [bos] else "no BOS at the start"
    ends = [side for side, ids in tokenized.completions.items() if ids and ids[-1] == eos]
    eos_words = f"EOS ends {' and '.join(ends)}" if ends else "no EOS at the end"
    chosen = tokenized.completions["chosen"]
    return (
        f"{starts} · {eos_words} · boundary {_token_list(tokenizer, tokenized.prompt[-3:])} | "
        f"{_token_list(tokenizer, chosen[:3])} · chosen ends {_token_list(tokenizer, chosen[-2:])}"
    )


def show_row(tokenized: TokenizedRow, tokenizer: Any, mode: str, color: bool = False) -> list[str]:
    lengths = " · ".join(f"{side} {len(ids)}" for side, ids in tokenized.completions.items())
    head = f"── row {tokenized.index} · {STATUS_WORDS[tokenized.status]} · prompt {len(tokenized.prompt)} tokens · {lengths}"
    lines = [head]
    for side in SIDES:
        text = sequence_line(tokenized, side, tokenizer, mode, color).replace("\n", "↵\n" + " " * 11 + "│")
        lines.append(f"  {side:8} │{text}")
    lines.append(f"  {'':8} │{boundary_line(tokenized, tokenizer)}")
    if tokenized.images:
        lines.append(f"  {'images':8} │{tokenized.images}")
    lines += [f"  ! {message}" for _, message in tokenized.warnings]
    return lines


# ---- the whole split ----------------------------------------------------------------------------------------------


def padding_waste(lengths: list[tuple[int, int]], batch_size: int, multiple: int | None, seed: int) -> list[float]:
    """Per batch of ``batch_size`` pairs drawn at random (as training shuffles), the share of the padded ``[2B, T]``
    batch that is padding; ``lengths`` are each pair's (prompt + chosen, prompt + rejected) token counts.

    >>> padding_waste([(4, 2), (2, 2)], batch_size=2, multiple=None, seed=0)
    [0.375]
    """
    order = list(range(len(lengths)))
    random.Random(seed).shuffle(order)
    wastes = []
    for start in range(0, len(order), batch_size):
        sequences = [length for index in order[start : start + batch_size] for length in lengths[index]]
        longest = max(sequences)
        if multiple:
            longest = -(-longest // multiple) * multiple
        wastes.append(1 - sum(sequences) / (len(sequences) * longest))
    return wastes


@dataclass
class Report:
    rows: int
    statuses: Counter
    lengths: dict[str, list[int]]  # before any cut
    trained_lengths: list[tuple[int, int]]
    warnings: dict[str, tuple[int, int, str]]  # kind -> (rows, first row, first message)


def scan(dataset: Any, tokenizer: Any, args: Any, limit: int) -> tuple[Report, list[TokenizedRow]]:
    """Tokenize the first ``limit`` rows both ways and collect lengths, statuses and warnings."""
    lengths: dict[str, list[int]] = {"prompt": [], "chosen": [], "rejected": []}
    trained, statuses, warnings, views = [], Counter(), {}, []
    for index in range(min(limit, len(dataset))):
        row = dataset[index]
        tokenized = tokenize_for_inspection(row, index, tokenizer, args)
        tokenized.warnings = row_warnings(row, tokenized, tokenizer)
        if is_processor(tokenizer):
            tokenized.images = image_summary(row, tokenized.prompt, tokenizer)  # where training sees them
        views.append(tokenized)
        statuses[tokenized.status] += 1
        lengths["prompt"].append(len(tokenized.full_prompt))
        for side in SIDES:
            lengths[side].append(len(tokenized.full_completions[side]))
        if tokenized.status in (KEPT, TRUNCATED):
            trained.append(tuple(len(tokenized.prompt) + len(tokenized.completions[side]) for side in SIDES))
        for kind, message in dict(tokenized.warnings).items():
            count, first, text = warnings.get(kind, (0, index, message))
            warnings[kind] = (count + 1, first, text)
    return Report(len(views), statuses, lengths, trained, warnings), views


def report_lines(report: Report, args: Any, batch_size: int) -> list[str]:
    lines = [
        f"{report.rows} rows scanned: "
        + ", ".join(f"{count} {STATUS_WORDS[s]}" for s, count in sorted(report.statuses.items()))
    ]
    truncated = report.statuses.get(TRUNCATED, 0)
    lines.append(
        f"share truncated: {truncated / max(report.rows, 1):.1%} "
        + ", ".join(f"{name}={getattr(args, name)}" for name in LIMIT_NAMES)
        + f", truncation_mode={args.truncation_mode}"
    )
    for kind, (count, first, message) in report.warnings.items():
        lines.append(f"WARNING ({kind}, {count} rows, first: row {first}): {message}")
    if not report.warnings:
        lines.append(
            "no warnings (checked: chat format, BOS, EOS and end-of-turn tokens, text after the answer, separators)"
        )
    for name, values in report.lengths.items():
        mean = sum(values) / max(len(values), 1)
        lines += ["", f"{name} tokens (before any cut): mean {mean:.1f}, max {max(values, default=0)}"]
        lines += histogram(values)
    if report.trained_lengths:
        wastes = padding_waste(report.trained_lengths, batch_size, args.pad_to_multiple_of, args.seed)
        lines += [
            "",
            f"padding waste per batch ({batch_size} pairs = {2 * batch_size} sequences, drawn at random as training "
            f"draws them): mean {sum(wastes) / len(wastes):.1%}, min {min(wastes):.1%}, max {max(wastes):.1%}",
        ]
    return lines


# ---- the command --------------------------------------------------------------------------------------------------


def is_recipe(target: str) -> bool:
    return target.endswith((".yaml", ".yml"))


def load_target(options: argparse.Namespace) -> tuple[Any, Any, Any, str]:
    """``(tokenizer, DPOTrainingArguments, split, words)`` of a recipe, or of a dataset with ``--tokenizer``."""
    import torch

    from hf_dpo.config.run_arguments import DataArguments, parse_train_args
    from hf_dpo.config.training_arguments import DPOTrainingArguments
    from hf_dpo.models.loading import load_tokenizer
    from hf_dpo.tools.splits import load_splits

    overrides = {
        name: getattr(options, name)
        for name in (*LIMIT_NAMES, "truncation_mode")
        if getattr(options, name) is not None
    }
    if is_recipe(options.target):
        flags = [] if torch.cuda.is_available() else ["--use_cpu=true"]  # GPU recipes' bf16 parses on a CPU
        flags += [f"--{name}={value}" for name, value in overrides.items()]
        model_args, data_args, _, args = parse_train_args([options.target, *flags])
        tokenizer_name = options.tokenizer or model_args.model_name_or_path
        split_name = options.split or data_args.dataset_train_split
        data_args.dataset_train_split, data_args.dataset_test_split = split_name, None
    else:
        if not options.tokenizer:
            raise UserError("inspecting a dataset needs --tokenizer (a model name or folder); a recipe names its own")
        args = DPOTrainingArguments(
            output_dir="inspect", report_to="none", use_cpu=not torch.cuda.is_available(), **overrides
        )
        tokenizer_name, split_name = options.tokenizer, options.split or "train"
        data_args = DataArguments(dataset_name=options.target, dataset_train_split=split_name, dataset_test_split=None)
    from hf_dpo.models.loading import hub_problem

    if problem := hub_problem(tokenizer_name):
        raise UserError(f"tokenizer: {problem}")
    tokenizer = load_tokenizer(tokenizer_name)  # a vision-language model's processor
    text = text_tokenizer(tokenizer)
    if text.pad_token is None:
        text.pad_token = text.eos_token
    split, _ = load_splits(data_args)
    from hf_dpo.data.dataset_checks import apply_column_mapping

    split = apply_column_mapping(split, args.column_mapping, split_name)
    return (
        tokenizer,
        args,
        split,
        f"{data_args.dataset_name} (split {split_name}) with the tokenizer of {tokenizer_name}",
    )


def inspect_lines(options: argparse.Namespace) -> list[str]:
    tokenizer, args, split, words = load_target(options)
    if "completions" in split.column_names:  # several answers per prompt: each list with its scores
        from hf_dpo.tools.list_inspection import list_inspect_lines

        return list_inspect_lines(split, tokenizer, args, words, options)
    color = options.color == "always" or (options.color == "auto" and sys.stdout.isatty())
    report, views = scan(split, tokenizer, args, max(options.scan, options.rows))
    lines = [
        f"hf-dpo inspect: {words}",
        f"trained tokens are inside {OPEN} {CLOSE}; special tokens are written out",
        "",
    ]
    for tokenized in views[: options.rows]:
        lines += [*show_row(tokenized, text_tokenizer(tokenizer), args.truncation_mode, color), ""]
    batch_size = options.batch_size or args.per_device_train_batch_size
    return lines + report_lines(report, args, batch_size)


def run(options: argparse.Namespace) -> int:
    print("\n".join(inspect_lines(options)))
    return 0
