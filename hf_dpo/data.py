"""Preference rows -> tokenized rows: validation, chat templates, EOS/BOS handling and counted truncation.

A row has ``prompt``, ``chosen`` and ``rejected``, either as strings or as chat messages (lists of
``{"role", "content"}``, tool calls and tool results included; the prompt is rendered with the tokenizer's chat
template and ``add_generation_prompt``, prompt + completion without, each with the row's ``tools`` and
``chat_template_kwargs``).
The prompt and each completion are tokenized apart and joined as ids, so the prompt is byte-for-byte the same
prefix of both sequences. The output row holds ``prompt_input_ids``, ``chosen_input_ids`` and
``rejected_input_ids``; the raw text columns are removed, other columns stay.

Rules:
- exactly one EOS ends each completion: it is appended unless the text (as a chat template renders an assistant
  turn) already ends with it, and whitespace a template writes after it is dropped;
- one BOS starts the prompt if the tokenizer adds one to plain text, never two;
- a prompt longer than ``max_prompt_length`` keeps its end (``truncation_mode="keep_end"``) or its start; then each
  completion keeps its first ``max_completion_length`` tokens and is cut to fit ``max_length``;
- a prompt cut by ``keep_end`` keeps its BOS (it replaces the first kept token);
- a row whose prompt leaves no room for a completion within ``max_length``, or whose chosen and rejected
  completions are identical (no preference to learn), also after truncation, is dropped; the counts are logged
  and returned.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from datasets import Dataset, IterableDataset
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from hf_dpo.columns import ID_COLUMNS
from hf_dpo.formats import (
    TEXT_COLUMNS,
    DataFormatError,
    apply_column_mapping,
    check_columns,
    is_conversation,
    normalise_row,
    rows_from_list,
    select_split,
)

logger = logging.getLogger(__name__)

KEPT, TRUNCATED, DROPPED_NO_ROOM, DROPPED_IDENTICAL = 0, 1, 2, 3
_STATUS_COLUMN = "_hf_dpo_status"


@dataclass
class PreparationStats:
    """What preparing one split did to its rows."""

    split: str
    rows_in: int
    kept: int
    truncated: int
    dropped_no_room: int
    dropped_identical: int

    def summary(self) -> str:
        return (
            f"{self.split} set: {self.kept} of {self.rows_in} rows kept ({self.truncated} of them truncated); "
            f"dropped {self.dropped_no_room} whose prompt leaves no room for a completion within max_length, "
            f"{self.dropped_identical} whose chosen and rejected completions are identical"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def render_pair(row: dict[str, Any], index: int, tokenizer: Any) -> tuple[str, str, str]:
    """The row's prompt and completions as text (chat messages rendered with the tokenizer's chat template)."""
    row = normalise_row(row, index)
    prompt, chosen, rejected = row["prompt"], row["chosen"], row["rejected"]
    if not is_conversation(prompt):
        return prompt, chosen, rejected

    if getattr(tokenizer, "chat_template", None) is None:
        raise DataFormatError(
            f"row {index}: the prompt is a list of chat messages but the tokenizer has no chat_template; set "
            "tokenizer.chat_template or give the rows as text"
        )
    # TRL's order: a row's chat_template_kwargs may override its tools
    template_kwargs = {"tools": row.get("tools"), **(row.get("chat_template_kwargs") or {})}
    prompt_text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True, **template_kwargs)
    completions = []
    for name, completion in (("chosen", chosen), ("rejected", rejected)):
        if isinstance(completion, str):  # a bare answer to a chat prompt is the assistant's turn
            completion = [{"role": "assistant", "content": completion}]
        full_text = tokenizer.apply_chat_template(prompt + completion, tokenize=False, **template_kwargs)
        if not full_text.startswith(prompt_text):
            raise DataFormatError(
                f"row {index}, field {name!r}: the chat template renders prompt+{name} with a different start than "
                f"the prompt alone, so the prompt cannot be masked; rendered prompt ends {prompt_text[-60:]!r}"
            )
        completions.append(full_text[len(prompt_text) :])
    return prompt_text, completions[0], completions[1]


def _tokenize_completion(text: str, tokenizer: Any) -> list[int]:
    eos_token, eos_id = tokenizer.eos_token, tokenizer.eos_token_id
    stripped = text.rstrip()
    if eos_token and stripped.endswith(eos_token):
        text = stripped  # a template's newline after the end-of-turn token is not part of the answer
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids or ids[-1] != eos_id:
        ids = [*ids, eos_id]
    return ids


def _tokenize_prompt(text: str, tokenizer: Any, add_bos: bool) -> list[int]:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    bos_id = tokenizer.bos_token_id
    if add_bos and (not ids or ids[0] != bos_id):
        ids = [bos_id, *ids]
    while len(ids) > 1 and bos_id is not None and ids[0] == ids[1] == bos_id:
        ids = ids[1:]
    return ids


def tokenizer_adds_bos(tokenizer: Any) -> bool:
    """Whether the tokenizer starts plain text with BOS when asked for special tokens."""
    bos_id = tokenizer.bos_token_id
    if bos_id is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return len(ids) > 0 and ids[0] == bos_id


def truncate_pair(
    prompt_ids: Sequence[int],
    chosen_ids: Sequence[int],
    rejected_ids: Sequence[int],
    max_length: int | None,
    max_prompt_length: int | None,
    max_completion_length: int | None,
    truncation_mode: str,
) -> tuple[list[int], list[int], list[int], int]:
    """Apply the prompt budget, then the completion budgets; returns the ids and a status (KEPT, TRUNCATED, ...).

    >>> truncate_pair([1, 2, 3, 4], [5, 6, 7], [8], max_length=5, max_prompt_length=2,
    ...               max_completion_length=None, truncation_mode="keep_end")
    ([3, 4], [5, 6, 7], [8], 1)
    """
    prompt, chosen, rejected = list(prompt_ids), list(chosen_ids), list(rejected_ids)
    original_lengths = (len(prompt), len(chosen), len(rejected))
    if max_prompt_length is not None and len(prompt) > max_prompt_length:
        prompt = prompt[-max_prompt_length:] if truncation_mode == "keep_end" else prompt[:max_prompt_length]
    budgets = [max_completion_length] if max_completion_length is not None else []
    if max_length is not None:
        if len(prompt) >= max_length:
            return prompt, chosen, rejected, DROPPED_NO_ROOM
        budgets.append(max_length - len(prompt))
    if budgets:
        chosen, rejected = chosen[: min(budgets)], rejected[: min(budgets)]
    status = KEPT if (len(prompt), len(chosen), len(rejected)) == original_lengths else TRUNCATED
    return prompt, chosen, rejected, status


def tokenize_row(row: dict[str, Any], index: int, tokenizer: Any, add_bos: bool, **limits: Any) -> dict[str, Any]:
    """One raw row -> ``prompt_input_ids``, ``chosen_input_ids``, ``rejected_input_ids`` and a status column."""
    prompt_text, chosen_text, rejected_text = render_pair(row, index, tokenizer)
    prompt_ids = _tokenize_prompt(prompt_text, tokenizer, add_bos)
    if not prompt_ids:
        # nothing precedes the completion, so its first token has no position to be predicted from
        raise DataFormatError(
            f"row {index}, field 'prompt': empty, and the tokenizer adds no BOS token to start the sequence; "
            "give a prompt of at least one token"
        )
    chosen_ids = _tokenize_completion(chosen_text, tokenizer)
    rejected_ids = _tokenize_completion(rejected_text, tokenizer)
    status = DROPPED_IDENTICAL
    if chosen_ids != rejected_ids:
        starts_with_bos = prompt_ids[0] == tokenizer.bos_token_id
        prompt_ids, chosen_ids, rejected_ids, status = truncate_pair(prompt_ids, chosen_ids, rejected_ids, **limits)
        if starts_with_bos and prompt_ids and prompt_ids[0] != tokenizer.bos_token_id:
            prompt_ids = [tokenizer.bos_token_id, *prompt_ids[1:]]  # keep_end cut the BOS off: put it back
        if chosen_ids == rejected_ids:  # they differed only past the cut
            status = DROPPED_IDENTICAL
    return {
        "prompt_input_ids": prompt_ids,
        "chosen_input_ids": chosen_ids,
        "rejected_input_ids": rejected_ids,
        _STATUS_COLUMN: status,
    }


def _keep_streamed_row(row: dict[str, Any], index: int, split: str) -> bool:
    status = row[_STATUS_COLUMN]
    if status in (DROPPED_NO_ROOM, DROPPED_IDENTICAL):
        reason = "no room for a completion within max_length" if status == DROPPED_NO_ROOM else "identical pair"
        logger.warning("%s set: dropped streamed row %d (%s)", split, index, reason)
    return status in (KEPT, TRUNCATED)


def prepare_dataset(
    dataset: Dataset | IterableDataset | list[dict[str, Any]],
    tokenizer: Any,
    args: Any,
    split: str = "train",
) -> tuple[Dataset | IterableDataset, PreparationStats | None]:
    """Tokenize a preference dataset for :class:`~hf_dpo.DPODataCollator` (see the module docstring and
    :mod:`hf_dpo.formats` for the accepted shapes).

    Already tokenized datasets (with ``prompt_input_ids``, ``chosen_input_ids``, ``rejected_input_ids``) pass
    through unchanged. Returns the dataset and its :class:`PreparationStats` (``None`` for a streamed dataset,
    whose rows are prepared lazily).
    """
    column_mapping = getattr(args, "column_mapping", None)
    if isinstance(dataset, list):
        dataset = rows_from_list(dataset, split, column_mapping)
    else:
        dataset = apply_column_mapping(select_split(dataset, split), column_mapping, split)
    columns = dataset.column_names
    if columns is None and isinstance(dataset, IterableDataset):
        columns = list(next(iter(dataset), {}))  # a stream without declared features: look at its first row
    if set(ID_COLUMNS) <= set(columns or ()):
        return dataset, None
    check_columns(columns, split)
    if isinstance(dataset, Dataset) and len(dataset) == 0:
        raise DataFormatError(f"the {split} dataset has no rows")
    if tokenizer.eos_token_id is None:
        raise DataFormatError("the tokenizer has no eos_token: set tokenizer.eos_token so completions can end")

    fn_kwargs = {
        "tokenizer": tokenizer,
        "add_bos": tokenizer_adds_bos(tokenizer),
        "max_length": args.max_length,
        "max_prompt_length": args.max_prompt_length,
        "max_completion_length": args.max_completion_length,
        "truncation_mode": args.truncation_mode,
    }
    text_columns = [name for name in TEXT_COLUMNS if columns is None or name in columns]
    map_kwargs: dict[str, Any] = {"fn_kwargs": fn_kwargs, "with_indices": True, "remove_columns": text_columns}
    if isinstance(dataset, IterableDataset):
        tokenized = dataset.map(tokenize_row, **map_kwargs)
        # A stream has no end to count at, so each dropped row is logged as it passes.
        tokenized = tokenized.filter(_keep_streamed_row, with_indices=True, fn_kwargs={"split": split})
        return tokenized.remove_columns(_STATUS_COLUMN), None

    tokenized = dataset.map(tokenize_row, num_proc=args.dataset_num_proc, desc=f"Tokenizing {split} set", **map_kwargs)
    statuses = list(tokenized[_STATUS_COLUMN])
    stats = PreparationStats(
        split=split,
        rows_in=len(statuses),
        kept=sum(status in (KEPT, TRUNCATED) for status in statuses),
        truncated=statuses.count(TRUNCATED),
        dropped_no_room=statuses.count(DROPPED_NO_ROOM),
        dropped_identical=statuses.count(DROPPED_IDENTICAL),
    )
    if stats.kept < stats.rows_in:
        tokenized = tokenized.filter(lambda status: status in (KEPT, TRUNCATED), input_columns=_STATUS_COLUMN)
    (logger.warning if stats.kept < stats.rows_in or stats.truncated else logger.info)(stats.summary())
    if stats.kept == 0:
        raise DataFormatError(f"no usable rows in the {split} set: {stats.summary()}")
    return tokenized.remove_columns(_STATUS_COLUMN), stats


def check_vocabulary(model: Any, tokenizer: Any, dataset: Any) -> None:
    """Token ids the model has no embedding for would index out of range deep inside the forward pass."""
    embeddings = model.get_input_embeddings().num_embeddings
    if len(tokenizer) <= embeddings or not isinstance(dataset, Dataset):
        return
    for index, row in enumerate(dataset.select_columns(list(ID_COLUMNS))):
        for name in ID_COLUMNS:
            if row[name] and max(row[name]) >= embeddings:
                raise ValueError(
                    f"row {index}, field {name!r}: token id {max(row[name])} is past the model's {embeddings} "
                    f"embeddings (the tokenizer has {len(tokenizer)} tokens); call "
                    "model.resize_token_embeddings(len(tokenizer)) before training"
                )


class DataStatsCallback(TrainerCallback, ExportableState):
    """Carries the data-preparation counts into trainer_state.json (under ``stateful_callbacks``), where they
    survive checkpoints and the model card can find them."""

    def __init__(self, stats: dict[str, dict[str, Any]]):
        self.stats = stats

    def state(self) -> dict[str, Any]:
        return {"args": {"stats": self.stats}, "attributes": {}}
