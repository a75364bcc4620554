"""Lists of answers in one batch (hf_dpo/batch/lists.py): each list one group of the shared-prompt layout, lists of
different lengths side by side, read exactly as each answer in a padded row of its own (fp32, 1e-5), values and
gradients; the padded list layout gives the same numbers; sequences are slot-major with empty ones in the gaps."""

import pytest
import torch
from architectures import FAMILIES, MOE, build
from torch.testing import assert_close

from hf_dpo.batch import DPODataCollator, ListDataCollator, ScoredBatch, SharedPromptCollator
from hf_dpo.batch.lists import MASK_COLUMN
from hf_dpo.logprobs import sequence_scores

VOCAB = 300
# (prompt length, answer lengths): 4 answers, a pair, 3 answers with a one-token answer
SHAPES = [(7, (4, 6, 3, 5)), (3, (8, 2)), (5, (1, 7, 2))]


def _rows(shapes=SHAPES, seed=0):
    generator = torch.Generator().manual_seed(seed)

    def ids(n):
        return torch.randint(5, VOCAB, (n,), generator=generator).tolist()

    rows = []
    for prompt, answers in shapes:
        completions = [ids(n) for n in answers]
        if len(answers) == 2:  # a pair, as a list of 2
            rows.append(
                {
                    "prompt_input_ids": ids(prompt),
                    "chosen_input_ids": completions[0],
                    "rejected_input_ids": completions[1],
                }
            )
        else:
            scores = [float(len(answers) - k) for k in range(len(answers))]
            rows.append(
                {"prompt_input_ids": ids(prompt), "completions_input_ids": completions, "completion_scores": scores}
            )
    return rows


def _answers(rows):
    """Every (prompt, answer) of the rows, slot-major, as padded pairs of a DPODataCollator (chosen = the answer)."""
    answers = [r.get("completions_input_ids") or [r["chosen_input_ids"], r["rejected_input_ids"]] for r in rows]
    width = max(map(len, answers))
    return [
        (
            slot,
            group,
            {"prompt_input_ids": row["prompt_input_ids"], "chosen_input_ids": answer[slot], "rejected_input_ids": [1]},
        )
        for slot in range(width)
        for group, (row, answer) in enumerate(zip(rows, answers))
        if slot < len(answer)
    ]


def _scores(model, columns, hidden_states=False):
    model.zero_grad()
    batch = ScoredBatch.from_collated(columns)
    scores, _ = sequence_scores(model, batch, hidden_states=hidden_states)
    (scores.logps * torch.linspace(0.5, 1.5, scores.logps.numel())).sum().backward()
    return scores, {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}, batch


@pytest.mark.parametrize("family", [family for family in FAMILIES if family not in MOE])
@pytest.mark.parametrize("layout", ["shared", "padding_free", "padded"])
def test_lists_read_as_each_answer_in_a_row_of_its_own(family, layout):
    model = build(family, VOCAB)
    rows = _rows()
    collator = (
        ListDataCollator(0)
        if layout == "padded"
        else SharedPromptCollator(0, lists=True, padding_free=layout == "padding_free")
    )
    scores, grads, batch = _scores(model, collator(rows))
    assert batch.num_sequences == 3 * 4 and batch.columns[MASK_COLUMN].sum() == 9

    singles = _answers(rows)
    expected, _, _ = _scores(model, DPODataCollator(0)([row for _, _, row in singles]))
    index = torch.tensor([group + 3 * slot for slot, group, _ in singles])  # slot-major: group + G·(slot - 1)
    assert_close(scores.logps[index], expected.logps[: len(singles)], atol=1e-5, rtol=1e-5)
    assert_close(scores.stats[index], expected.stats[: len(singles)], atol=1e-5, rtol=1e-5)
    missing = torch.ones(12, dtype=torch.bool)
    missing[index] = False
    assert scores.num_tokens[missing].eq(0).all() and scores.logps[missing].eq(0).all()  # the gaps score nothing
    # gradients: the shared layout against the padded one (both weigh the same sequences the same way)
    if layout != "padded":
        _, padded_grads, _ = _scores(model, ListDataCollator(0)(rows))
        for name, grad in grads.items():
            assert_close(grad, padded_grads[name], atol=1e-5, rtol=1e-5, msg=name)


def test_hidden_state_scoring_equals_the_logits_on_lists():
    model = build("llama", VOCAB)
    columns = SharedPromptCollator(0, lists=True)(_rows())
    from_logits, logit_grads, _ = _scores(model, columns)
    from_hidden, hidden_grads, _ = _scores(model, columns, hidden_states=True)
    assert_close(from_hidden.logps, from_logits.logps, atol=1e-5, rtol=1e-5)
    for name, grad in hidden_grads.items():
        assert_close(grad, logit_grads[name], atol=1e-5, rtol=1e-5, msg=name)


def test_the_collators_carry_mask_scores_reference_and_number_columns():
    rows = _rows()
    rows[0] |= {"ref_completion_logps": [-1.0, -2.0, -3.0, -4.0], "weight": 2}
    rows[1] |= {"ref_completion_logps": [-5.0, -6.0], "weight": 3}
    rows[2] |= {"ref_completion_logps": [-7.0, -8.0, -9.0], "weight": 4}
    for collator in (ListDataCollator(0), SharedPromptCollator(0, lists=True)):
        batch = collator(rows)
        assert batch[MASK_COLUMN].tolist() == [[True] * 4, [True, True, False, False], [True, True, True, False]]
        assert batch["completion_scores"].tolist() == [[4, 3, 2, 1], [1, 0, 0, 0], [3, 2, 1, 0]]
        assert batch["ref_completion_logps"][1].tolist() == [-5, -6, 0, 0] and batch["weight"].tolist() == [2, 3, 4]
    padded = ListDataCollator(0)(rows)
    assert padded["input_ids"].shape[0] == 12 and padded["attention_mask"][7].sum() == 1  # list 1's 3rd slot


def test_a_list_of_two_is_a_pair_in_both_layouts():
    """The pair layouts' sequence order is the list layouts' with K = 2: [chosen...; rejected...]."""
    model = build("llama", VOCAB)
    rows = _rows([(4, (3, 5)), (6, (2, 2))])
    for list_collator, pair_collator in (
        (ListDataCollator(0), DPODataCollator(0)),
        (SharedPromptCollator(0, lists=True), SharedPromptCollator(0)),
    ):
        as_lists, _, _ = _scores(model, list_collator(rows))
        as_pairs, _, _ = _scores(model, pair_collator(rows))
        assert torch.equal(as_lists.logps, as_pairs.logps)
