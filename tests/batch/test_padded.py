"""hf_dpo.DPODataCollator: exact tensors (the docstring's doctest shows the base case)."""

import pytest
import torch

from hf_dpo import DPODataCollator

ROWS = [
    {"prompt_input_ids": [5, 6], "chosen_input_ids": [7, 2], "rejected_input_ids": [8, 9, 2]},
    {"prompt_input_ids": [5], "chosen_input_ids": [3, 2], "rejected_input_ids": [4, 2]},
]


def test_chosen_rows_first_then_rejected_with_prompt_and_padding_masked():
    batch = DPODataCollator(pad_token_id=0)(ROWS)
    assert batch["input_ids"].shape == (4, 5)
    assert batch["input_ids"][:2].tolist() == [[5, 6, 7, 2, 0], [5, 3, 2, 0, 0]]
    assert batch["input_ids"][2:].tolist() == [[5, 6, 8, 9, 2], [5, 4, 2, 0, 0]]
    assert batch["labels"].tolist() == [
        [-100, -100, 7, 2, -100],
        [-100, 3, 2, -100, -100],
        [-100, -100, 8, 9, 2],
        [-100, 4, 2, -100, -100],
    ]
    assert batch["attention_mask"].sum(-1).tolist() == [4, 3, 5, 3]


def test_pad_to_multiple_of_rounds_the_length_up():
    batch = DPODataCollator(pad_token_id=1, pad_to_multiple_of=8)(ROWS)
    assert batch["input_ids"].shape == (4, 8)
    assert (batch["input_ids"][:, 5:] == 1).all() and (batch["labels"][:, 5:] == -100).all()
    assert (batch["attention_mask"][:, 5:] == 0).all()


def test_numeric_columns_pass_through_and_text_is_left_out():
    rows = [
        {**row, "ref_chosen_logps": -1.5 * (i + 1), "ref_rejected_logps": -2.0, "id": i, "prompt": "text"}
        for i, row in enumerate(ROWS)
    ]
    batch = DPODataCollator(pad_token_id=0)(rows)
    assert torch.equal(batch["ref_chosen_logps"], torch.tensor([-1.5, -3.0]))
    assert batch["ref_chosen_logps"].dtype == torch.float32
    assert batch["id"].tolist() == [0, 1]
    assert "prompt" not in batch


def test_missing_pad_token_is_a_clear_error():
    with pytest.raises(ValueError, match="pad_token_id"):
        DPODataCollator(pad_token_id=None)(ROWS)
