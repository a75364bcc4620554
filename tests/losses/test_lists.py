"""hf_dpo.losses.lists and hf_dpo.losses.ranking against numbers worked out by hand, β = 0.5 unless stated.

Two lists, the first given out of order, the second padded to three answers:

    list 0: scores (2, 3, 1) [middle, best, worst], log-ratios r = (0, 1, -1), so z = βr = (0, 0.5, -0.5);
            completion lengths (2, 2, 4) tokens
    list 1: scores (1, 0, pad), r = (1, -1): the first pair of tests/losses/test_paired.py (a = 1, b = -1)

    log Σ exp(0.5, 0, -0.5) = log(1.6487213 + 1 + 0.6065307) = 1.1802697
    log σ(0.5) = -0.4740770, log σ(1) = -0.3132617, log σ(0) = -log 2, log σ(-0.5) = -0.9740770
    softmax(3, 2, 1) = (0.6652410, 0.2447285, 0.0900306)
"""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from hf_dpo.losses import LIST_LOSS_TYPES, PAIRED_LOSS_TYPES, ListLogps, LossSettings, dpo_loss, list_losses
from hf_dpo.losses.ranking import ranking_values
from hf_dpo.losses.running_mean import RewardMean

BETA = 0.5
LSE3 = 1.1802697
LOG2 = math.log(2.0)


def _lists(requires_grad=False):
    policy = torch.tensor([[-4.0, -1.0, -6.0], [-1.0, -3.0, 7.0]], requires_grad=requires_grad)
    reference = torch.tensor([[-4.0, -2.0, -5.0], [-2.0, -2.0, 3.0]])  # the padding's values are never read
    scores = torch.tensor([[2.0, 3.0, 1.0], [1.0, 0.0, 9.0]])
    valid = torch.tensor([[True, True, True], [True, True, False]])
    lengths = torch.tensor([[2, 2, 4], [2, 4, 0]])
    return ListLogps.of(policy, reference, scores, valid=valid, lengths=lengths)


def _loss(loss_type, lists=None, **settings):
    losses, _ = list_losses(lists or _lists(), LossSettings(loss_types=(loss_type,), beta=BETA, **settings))
    return losses


# (loss_type, settings, [list 0, list 1], the arithmetic)
HAND_WORKED = [
    (
        "plackett_luce",
        {},
        [1.1543467, 0.3132617],
        "-(0.5 - 1.1802697) - (0 - log(1 + e^-0.5)) - 0 = 0.6802697 + 0.4740770; -log σ(1)",
    ),
    ("best_vs_rest", {}, [0.6802697, 0.3132617], "α = 0: -log softmax(z)_best = 1.1802697 - 0.5; -log σ(1)"),
    (
        "best_vs_rest",
        {"score_temperature": 1.0},
        [0.8926644, 0.5822031],
        "0.6652410·0.6802697 + 0.2447285·1.1802697 + 0.0900306·1.6802697; σ(1)·0.3132617 + σ(-1)·1.3132617",
    ),
    ("nca", {}, [1.1878440, 1.1981540], "0.4740770 + (0.9740770 + log 2 + 0.4740770)/3; nca_pair's 0.4740770 + ½·…"),
    (
        "nca",
        {"score_temperature": 1.0},
        [1.2864721, 1.3326247],
        "Σ p_k(-log σ(z_k)) with p = softmax(3, 2, 1) + 0.7137669; σ(1)·0.4740770 + σ(-1)·0.9740770 + 0.7240770",
    ),
    (
        "all_pairs",
        {},
        [0.4204719, 0.3132617],
        "sigmoid on (best, mid) (best, worst) (mid, worst): (0.474 + 0.313 + 0.474)/3",
    ),
    (
        "all_pairs",
        {"list_pair_loss_type": "ipo"},
        [0.2916667, 0.0625],
        "per-token r̄ = (0, 0.5, -0.25): ((0.5 - 1)² + (0.75 - 1)² + (0.25 - 1)²)/3; (0.75 - 1)²",
    ),
    ("ipo", {}, [0.2916667, 0.0625], "a paired loss_type on lists is all_pairs with it"),
    ("hinge", {}, [0.3333333, 0.0], "max(0, 1 - βh): (0.5 + 0 + 0.5)/3 for h = 1, 2, 1; max(0, 1 - 1)"),
]


@pytest.mark.parametrize(("loss_type", "settings", "expected", "arithmetic"), HAND_WORKED, ids=lambda v: str(v)[:24])
def test_hand_worked_values(loss_type, settings, expected, arithmetic):
    assert_close(_loss(loss_type, **settings), torch.tensor(expected), atol=1e-6, rtol=0)


def test_every_list_loss_has_a_hand_worked_test():
    assert {row[0] for row in HAND_WORKED} >= set(LIST_LOSS_TYPES)


def test_plackett_luce_with_ties_follows_breslow_whatever_the_order():
    """Scores (2, 1, 1), z = (0.5, 0, -0.5): the tied answers share the denominator exp(0) + exp(-0.5):
    0.6802697 + (0 + 0.4740770) + (0.5 + 0.4740770) = 2.1284237, in either order of the tied pair."""
    policy = torch.tensor([[-1.0, -2.0, -3.0]])
    reference = torch.tensor([[-2.0, -2.0, -2.0]])
    tied = ListLogps.of(policy, reference, torch.tensor([[2.0, 1.0, 1.0]]))
    swapped = ListLogps.of(policy[:, [0, 2, 1]], reference, torch.tensor([[2.0, 1.0, 1.0]]))
    assert_close(_loss("plackett_luce", tied), torch.tensor([2.1284237]))
    assert_close(_loss("plackett_luce", swapped), torch.tensor([2.1284237]))


def _pairs_as_lists(count=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    chosen, rejected, ref_chosen, ref_rejected = -10 * torch.rand(4, count, generator=generator)
    lengths = torch.randint(1, 9, (2, count), generator=generator)
    lists = ListLogps.of(
        torch.stack([chosen, rejected], 1),
        torch.stack([ref_chosen, ref_rejected], 1),
        torch.tensor([[1.0, 0.0]]).expand(count, 2),
        lengths=lengths.T,
    )
    return (
        lists,
        (chosen, rejected, ref_chosen, ref_rejected),
        {"chosen_lengths": lengths[0], "rejected_lengths": lengths[1]},
    )


@pytest.mark.parametrize("loss_type", PAIRED_LOSS_TYPES)
def test_every_paired_loss_on_lists_of_two_is_that_loss_on_the_pairs(loss_type):
    """A paired dataset is a list of 2: the same numbers, batch-level losses (aot, sft) included."""
    lists, pairs, lengths = _pairs_as_lists()
    expected, chosen_rewards, rejected_rewards = dpo_loss(*pairs, beta=0.3, loss_type=loss_type, **lengths)
    for settings in ({"loss_types": (loss_type,)}, {"loss_types": ("all_pairs",), "list_pair_loss_type": loss_type}):
        losses, rewards = list_losses(lists, LossSettings(beta=0.3, **settings))
        assert_close(losses, expected, atol=1e-6, rtol=1e-6)
        assert_close(rewards, torch.stack([chosen_rewards, rejected_rewards], 1))


def test_bco_pair_running_mean_sees_every_pair_of_the_lists():
    lists, pairs, _ = _pairs_as_lists()
    expected, _, _ = dpo_loss(*pairs, beta=0.3, loss_type="bco_pair", reward_mean=RewardMean())
    mean = RewardMean()
    losses, _ = list_losses(lists, LossSettings(loss_types=("bco_pair",), beta=0.3), reward_mean=mean)
    assert_close(losses, expected)
    assert mean.state_dict()["bco_rewards"][1] == 10  # 5 pairs x 2 rewards


@pytest.mark.parametrize(
    ("loss_type", "paired"), [("plackett_luce", "sigmoid"), ("best_vs_rest", "sigmoid"), ("nca", "nca_pair")]
)
def test_list_losses_on_lists_of_two_are_their_paired_forms(loss_type, paired):
    lists, pairs, _ = _pairs_as_lists()
    expected, _, _ = dpo_loss(*pairs, beta=0.3, loss_type=paired)
    losses, _ = list_losses(lists, LossSettings(loss_types=(loss_type,), beta=0.3))
    assert_close(losses, expected, atol=1e-6, rtol=1e-6)


def test_all_pairs_is_the_mean_over_the_expanded_pairs_for_lists_of_one_size():
    """3 lists of 4 answers = 18 pairs: the mean of the per-list losses is the mean over the expanded pairs."""
    generator = torch.Generator().manual_seed(1)
    policy, reference = -10 * torch.rand(2, 3, 4, generator=generator)
    scores = torch.tensor([[4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0], [0.5, 2.5, 1.5, 3.5]])
    losses, _ = list_losses(ListLogps.of(policy, reference, scores), LossSettings(loss_types=("all_pairs",), beta=0.2))
    expanded = [
        (policy[g, i], policy[g, j], reference[g, i], reference[g, j])
        for g in range(3)
        for i in range(4)
        for j in range(4)
        if scores[g, i] > scores[g, j]
    ]
    pair_losses, _, _ = dpo_loss(*map(torch.stack, zip(*expanded)), beta=0.2)
    assert len(expanded) == 18
    assert_close(losses.mean(), pair_losses.mean())


@pytest.mark.parametrize("loss_type", [*LIST_LOSS_TYPES, "ipo"])
def test_the_padding_changes_nothing_and_gets_no_gradient(loss_type):
    """A list padded with garbage (even NaN-free huge values) gives the loss of the list alone, finite gradients,
    and none on the padding."""
    lists = _lists(requires_grad=True)
    settings = {"score_temperature": 0.7} if loss_type in ("best_vs_rest", "nca") else {}
    padded_loss = _loss(loss_type, lists, **settings)
    alone = ListLogps.of(
        lists.policy[1:, :2].detach(), lists.reference[1:, :2], lists.scores[1:, :2], lengths=lists.lengths[1:, :2]
    )
    assert_close(padded_loss[1:], _loss(loss_type, alone, **settings))
    padded_loss.sum().backward()
    assert torch.isfinite(lists.policy.grad).all() and lists.policy.grad[1, 2] == 0


def test_plackett_luce_raises_the_best_and_lowers_the_worst():
    lists = _lists(requires_grad=True)
    _loss("plackett_luce", lists).sum().backward()
    assert lists.policy.grad[0, 1] < 0 and lists.policy.grad[0, 2] > 0  # best up, worst down (descent)


@pytest.mark.parametrize(
    ("loss_type", "expected"),
    [("plackett_luce", math.log(3) + LOG2), ("best_vs_rest", math.log(3)), ("nca", LOG2 + LOG2), ("all_pairs", LOG2)],
)
def test_policy_equal_to_reference(loss_type, expected):
    """Every z = 0: Plackett-Luce sums log 3 + log 2 + log 1, InfoNCA is log K, NCA log 2 + K·log 2/K, each pair log 2."""
    logps = torch.tensor([[-3.0, -7.5, -1.0]])
    losses, rewards = list_losses(
        ListLogps.of(logps, logps, torch.tensor([[1.0, 3.0, 2.0]])), LossSettings(loss_types=(loss_type,), beta=BETA)
    )
    assert_close(losses, torch.tensor([expected]))
    assert torch.equal(rewards, torch.zeros(1, 3))


def test_rpo_adds_the_best_answers_nll_per_token():
    """list 0's best answer: log-prob -1 over 2 tokens; list 1's: -1 over 2: 0.2 · 0.5 added to each."""
    with_rpo = _loss("plackett_luce", rpo_alpha=0.2)
    assert_close(with_rpo, torch.tensor([1.1543467 + 0.1, 0.3132617 + 0.1]))


def test_settings_refuse_a_list_loss_as_the_pair_loss_and_a_negative_temperature():
    with pytest.raises(ValueError, match="list_pair_loss_type='plackett_luce' must be a loss on pairs"):
        LossSettings(loss_types=("all_pairs",), list_pair_loss_type="plackett_luce")
    with pytest.raises(ValueError, match="not one of"):
        LossSettings(loss_types=("all_pairs",), list_pair_loss_type="sigmoidd")
    with pytest.raises(ValueError, match="score_temperature=-1"):
        LossSettings(loss_types=("nca",), score_temperature=-1.0)


# ---- ranking metrics ------------------------------------------------------------------------------------------


def test_ranking_values_hand_worked():
    """List 0: scores (3, 2, 1, 0), rewards (0.2, 0.5, 0.1, -1): pairs right 5 of 6 (only (0, 1) wrong); the best
    answer is not on top; τ_b = (5 - 1)/6. List 1 (3 answers and padding): scores (1, 1, 0) tied at the top,
    rewards (0, 2, 1): ordered pairs (0, 2) wrong and (1, 2) right; top-1 (answer 1 beats answer 2);
    τ_b = (0·… - 1 + 1)/sqrt(2 · 3) = 0. List 2: every reward equal: nothing right, τ_b 0."""
    rewards = torch.tensor([[0.2, 0.5, 0.1, -1.0], [0.0, 2.0, 1.0, 5.0], [0.0, 0.0, 0.0, 0.0]])
    scores = torch.tensor([[3.0, 2.0, 1.0, 0.0], [1.0, 1.0, 0.0, 9.0], [3.0, 2.0, 1.0, 0.0]])
    valid = torch.tensor([[True] * 4, [True, True, True, False], [True] * 4])
    values = ranking_values(rewards, scores, valid)
    assert_close(values["pair_accuracy"], torch.tensor([5 / 6, 0.5, 0.0]))
    assert_close(values["top1"], torch.tensor([0.0, 1.0, 0.0]))
    assert_close(values["kendall_tau"], torch.tensor([4 / 6, 0.0, 0.0]))


def test_ranking_values_on_pairs_are_trls_accuracy():
    rewards = torch.tensor([[0.5, -0.5], [0.0, 0.0], [-1.0, 2.0]])
    values = ranking_values(rewards, torch.tensor([[1.0, 0.0]]).expand(3, 2), torch.ones(3, 2, dtype=torch.bool))
    assert values["pair_accuracy"].tolist() == [1.0, 0.0, 0.0] == values["top1"].tolist()
    assert values["kendall_tau"].tolist() == [1.0, 0.0, -1.0]


def test_sigmoid_loss_matches_the_formula_on_a_random_list():
    """all_pairs written out: the mean of -log σ(β(r_i - r_j)) over s_i > s_j."""
    policy, reference = torch.randn(2, 1, 5)
    scores = torch.tensor([[0.3, 2.0, -1.0, 2.0, 0.5]])
    losses, _ = list_losses(ListLogps.of(policy, reference, scores), LossSettings(loss_types=("sigmoid",), beta=0.4))
    r = (policy - reference)[0]
    terms = [-F.logsigmoid(0.4 * (r[i] - r[j])) for i in range(5) for j in range(5) if scores[0, i] > scores[0, j]]
    assert len(terms) == 9
    assert_close(losses[0], torch.stack(terms).mean())
