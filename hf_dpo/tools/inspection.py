"""``hf-dpo inspect``: what training will see, before it trains: a few rows tokenized exactly as the trainer
tokenizes them, the mistakes users report, and the lengths of the whole split.

    hf-dpo inspect recipes/demo.yaml --rows 3
    hf-dpo inspect pairs.jsonl --tokenizer HuggingFaceTB/SmolLM2-135M-Instruct --max_length 512

Each shown sequence is ``prompt ⟦trained completion⟧``: BOS/EOS are written out, ``[✂ N tokens]`` marks where
truncation cut (the prompt's start under ``keep_end``, a completion's end). Warnings, each once with its count:
two BOS in a row or a BOS in the data text; a completion without EOS (cut by the length limits), or ending its turn with a special
token that is not the tokenizer's EOS; a chat template that writes text after the assistant's answer (trained as
part of every completion); a text completion that starts without the space or newline that separates it from
its prompt. Then length histograms (prompt, chosen, rejected, before any cut), the share truncated, and the
padding waste of batches drawn as training draws them.

Rows go through :func:`hf_dpo.tokenization.tokenize_row` with the recipe's limits, the function
:func:`hf_dpo.data.prepare_dataset` maps over a split (a test holds the two to the same ids).
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hf_dpo.recipe import UserError
from hf_dpo.tokenization import KEPT, STATUS_COLUMN, TRUNCATED, render, tokenize_row, tokenizer_adds_bos

LIMIT_NAMES = ("max_length", "max_prompt_length", "max_completion_length")
STATUS_WORDS = {KEPT: "kept", TRUNCATED: "truncated", 2: "dropped: no room for a completion", 3: "dropped: identical"}
SIDES = ("chosen", "rejected")
OPEN, CLOSE = "⟦", "⟧"


@dataclass
class TokenizedRow:
    """One pair as training tokenizes it (``prompt``, ``completions``) and as it was before any cut (``full_*``)."""

    index: int
    status: int
    prompt: list[int]
    completions: dict[str, list[int]]
    full_prompt: list[int]
    full_completions: dict[str, list[int]]
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (kind, message)


def _limits(args: Any) -> dict[str, Any]:
    return {**{name: getattr(args, name) for name in LIMIT_NAMES}, "truncation_mode": args.truncation_mode}


def tokenize_for_inspection(row: dict[str, Any], index: int, tokenizer: Any, args: Any) -> TokenizedRow:
    """``row`` tokenized with ``args``' limits (as training does) and without them (to see what was cut)."""
    add_bos = tokenizer_adds_bos(tokenizer)
    trained = tokenize_row(row, index, tokenizer, add_bos, **_limits(args))
    unlimited = dict.fromkeys(LIMIT_NAMES)
    full = tokenize_row(row, index, tokenizer, add_bos, **unlimited, truncation_mode=args.truncation_mode)
    return TokenizedRow(
        index=index,
        status=trained[STATUS_COLUMN],
        prompt=trained["prompt_input_ids"],
        completions={side: trained[f"{side}_input_ids"] for side in SIDES},
        full_prompt=full["prompt_input_ids"],
        full_completions={side: full[f"{side}_input_ids"] for side in SIDES},
    )


# ---- warnings -----------------------------------------------------------------------------------------------------


def special_strings(tokenizer: Any) -> set[str]:
    """Every special token's text (BOS, EOS, end-of-turn markers, ...)."""
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    return {*tokenizer.all_special_tokens, *(token.content for token in added.values() if token.special)}


def _special_ids(tokenizer: Any) -> set[int]:
    return {tokenizer.convert_tokens_to_ids(text) for text in special_strings(tokenizer)}


def _texts(row: dict[str, Any]) -> list[str]:
    """The text the data itself holds: plain strings, or the contents of chat messages."""
    texts = []
    for name in ("prompt", *SIDES):
        value = row.get(name)
        messages = value if isinstance(value, list) else [value]
        texts += [m.get("content") if isinstance(m, dict) else m for m in messages]
    return [text for text in texts if isinstance(text, str)]


def bos_warning(row: dict[str, Any], tokenized: TokenizedRow, tokenizer: Any) -> str | None:
    """Two BOS side by side, or a BOS the data text writes. A chat template that starts every turn with the BOS
    token (Llama-2's ``<s>[INST]``, ChatML models whose BOS is ``<|im_start|>``) does so by design: not flagged."""
    bos, bos_text = tokenizer.bos_token_id, tokenizer.bos_token
    if bos is None:
        return None
    for side, completion in tokenized.completions.items():
        sequence = [*tokenized.prompt, *completion]
        doubled = [i for i in range(1, len(sequence)) if sequence[i] == sequence[i - 1] == bos]
        if doubled:
            return (
                f"two BOS tokens in a row ({bos_text!r} at positions {doubled[0] - 1} and {doubled[0]}) in the {side} "
                "sequence: the text already starts with BOS and something adds another; remove one"
            )
    if bos_text and any(bos_text in text for text in _texts(row)):
        return (
            f"the data text contains the BOS token {bos_text!r}: it becomes a BOS in the middle of the sequence; "
            "remove it from the rows (the tokenizer or chat template adds the BOS the model expects)"
        )
    return None


def eos_warnings(tokenized: TokenizedRow, tokenizer: Any) -> list[tuple[str, str]]:
    """A completion cut before its EOS, and an end-of-turn special token that is not the EOS."""
    eos, found = tokenizer.eos_token_id, []
    special = _special_ids(tokenizer) - {eos, tokenizer.pad_token_id, tokenizer.bos_token_id}
    for side, completion in tokenized.completions.items():
        if completion and completion[-1] != eos:
            found.append(
                (
                    "no_eos",
                    f"the {side} completion was cut before its EOS ({len(tokenized.full_completions[side])} -> "
                    f"{len(completion)} tokens): the model learns answers that never end; raise max_length or "
                    "max_completion_length, or lower max_prompt_length",
                )
            )
            continue
        position = len(completion) - 2  # the token before the EOS, past whitespace a template writes
        while (
            position >= 0
            and tokenizer.decode([completion[position]]).strip() == ""
            and completion[position] not in special
        ):
            position -= 1
        if position >= 0 and completion[position] in special:
            end_of_turn = tokenizer.convert_ids_to_tokens(completion[position])
            found.append(
                (
                    "end_of_turn",
                    f"the assistant turn ends with {end_of_turn!r}, which is not the tokenizer's EOS "
                    f"{tokenizer.eos_token!r}: training appends {tokenizer.eos_token!r} after it, and generation stops "
                    f"only where it is told to; set tokenizer.eos_token = {end_of_turn!r} (and the model's "
                    "generation_config.eos_token_id) so the model learns to stop where its turn ends",
                )
            )
    return found


def template_suffix(row: dict[str, Any], index: int, tokenizer: Any) -> str | None:
    """Text a chat template writes after the assistant's answer, besides whitespace and special tokens."""
    from hf_dpo.formats import is_conversation, normalise_row

    normalised = normalise_row(dict(row), index)
    if not is_conversation(normalised["prompt"]):
        return None
    _, completions = render(normalised, index, tokenizer, SIDES)
    for side, text in zip(SIDES, completions):
        answer = normalised[side]
        content = answer if isinstance(answer, str) else (answer[-1].get("content") if answer else None)
        if not isinstance(content, str) or not content or content not in text:
            continue
        suffix = text[text.rfind(content) + len(content) :]
        rest = suffix
        for special in special_strings(tokenizer):
            rest = rest.replace(special, "")
        if rest.strip():
            return suffix
    return None


def separator_warning(row: dict[str, Any]) -> str | None:
    """Text rows: prompt and completion are tokenized apart, so a completion that starts right after the prompt's
    last character (no space, no newline) is learned glued to it."""
    prompt = row.get("prompt")
    if not isinstance(prompt, str) or not prompt or prompt[-1].isspace():
        return None
    for side in SIDES:
        completion = row.get(side)
        if isinstance(completion, str) and completion and not completion[0].isspace():
            return (
                f"the {side} completion starts without a separator: {prompt[-12:]!r} + {completion[:12]!r}; the model "
                "learns to answer glued to the prompt (and TRL, which joins the strings first, tokenizes it "
                "differently); start completions with a space or end prompts with a newline"
            )
    return None


def row_warnings(row: dict[str, Any], tokenized: TokenizedRow, tokenizer: Any) -> list[tuple[str, str]]:
    """Every warning of one row, as ``(kind, message)``."""
    found = []
    if message := bos_warning(row, tokenized, tokenizer):
        found.append(("two_bos", message))
    found += eos_warnings(tokenized, tokenizer)
    if (suffix := template_suffix(row, tokenized.index, tokenizer)) is not None:
        found.append(
            (
                "text_after_turn",
                f"the chat template writes {suffix!r} after the assistant's answer: it is trained as part of every "
                "completion; fix the template (nothing but the end-of-turn token after the answer)",
            )
        )
    if message := separator_warning(row):
        found.append(("no_separator", message))
    return found


# ---- showing a row ------------------------------------------------------------------------------------------------


def _text(tokenizer: Any, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=False)


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
    lines += [f"  ! {message}" for _, message in tokenized.warnings]
    return lines


# ---- the whole split ----------------------------------------------------------------------------------------------


def histogram(values: list[int], bins: int = 8, width: int = 32) -> list[str]:
    """A text histogram: one line per bin, ``low-high │bar count``.

    >>> print("\\n".join(histogram([1, 2, 2, 3, 8], bins=2, width=6)))
      1-4 │██████ 4
      5-8 │█▌ 1
    """
    if not values:
        return ["  (no rows)"]
    low, high = min(values), max(values)
    step = max(1, -(-(high - low + 1) // bins))
    counts = Counter((value - low) // step for value in values)
    most = max(counts.values())
    buckets = range(-(-(high - low + 1) // step))
    labels = [
        f"{low + bucket * step}" + (f"-{low + (bucket + 1) * step - 1}" if step > 1 else "") for bucket in buckets
    ]
    lines = []
    for bucket, label in zip(buckets, labels):
        count = counts.get(bucket, 0)
        eighths = round(8 * width * count / most)
        bar = "█" * (eighths // 8) + ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")[eighths % 8]
        lines.append(f"  {label:>{max(map(len, labels))}} │{bar} {count}")
    return lines


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
        lines.append("no warnings (checked: BOS, EOS and end-of-turn tokens, text after the answer, separators)")
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

    from hf_dpo.arguments import DataArguments, parse_train_args
    from hf_dpo.config import DPOTrainingArguments
    from hf_dpo.loading import load_tokenizer
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
    tokenizer = load_tokenizer(tokenizer_name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    split, _ = load_splits(data_args)
    from hf_dpo.formats import apply_column_mapping

    split = apply_column_mapping(split, args.column_mapping, split_name)
    return (
        tokenizer,
        args,
        split,
        f"{data_args.dataset_name} (split {split_name}) with the tokenizer of {tokenizer_name}",
    )


def inspect_lines(options: argparse.Namespace) -> list[str]:
    tokenizer, args, split, words = load_target(options)
    color = options.color == "always" or (options.color == "auto" and sys.stdout.isatty())
    report, views = scan(split, tokenizer, args, max(options.scan, options.rows))
    lines = [
        f"hf-dpo inspect: {words}",
        f"trained tokens are inside {OPEN} {CLOSE}; special tokens are written out",
        "",
    ]
    for tokenized in views[: options.rows]:
        lines += [*show_row(tokenized, tokenizer, args.truncation_mode, color), ""]
    batch_size = options.batch_size or args.per_device_train_batch_size
    return lines + report_lines(report, args, batch_size)


def run(options: argparse.Namespace) -> int:
    print("\n".join(inspect_lines(options)))
    return 0
