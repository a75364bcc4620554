"""hf_dpo.losses.paired against numbers worked out by hand from each paper's formula.

Every test uses the same two pairs, β = 0.5 unless stated:

    pair 0: policy (chosen, rejected) = (-1, -3), reference = (-2, -2), lengths (2, 4) tokens
            a = +1, b = -1, h = a - b = 2, βh = 1, βa = 0.5, βb = -0.5
    pair 1: every log-prob -5, lengths (4, 5): a = b = h = 0 (policy == reference)

σ(1) = 0.7310586, log σ(1) = -0.3132617, log σ(-1) = -1.3132617, log σ(0.5) = -0.4740770,
log σ(-0.5) = -0.9740770, log 2 = 0.6931472.
"""

import math

import pytest
import torch
from torch.testing import assert_close

from hf_dpo.losses import (
    LOSS_TYPES,
    PAIRED_LOSS_TYPES,
    RewardMean,
    dpo_loss,
    kto_kl_estimate,
    kto_loss,
    needs_reference,
    wpo_weights,
)

LOG2 = math.log(2.0)
BETA = 0.5


def _pairs(requires_grad=False):
    policy_chosen = torch.tensor([-1.0, -5.0], requires_grad=requires_grad)
    policy_rejected = torch.tensor([-3.0, -5.0], requires_grad=requires_grad)
    return policy_chosen, policy_rejected, torch.tensor([-2.0, -5.0]), torch.tensor([-2.0, -5.0])


LENGTHS = {"chosen_lengths": torch.tensor([2, 4]), "rejected_lengths": torch.tensor([4, 5])}


def _loss(loss_type, beta=BETA, **kwargs):
    losses, _, _ = dpo_loss(*_pairs(), beta=beta, loss_type=loss_type, **LENGTHS, **kwargs)
    return losses


# Hand-worked values: (loss_type, extra kwargs, [pair 0, pair 1], the arithmetic)
HAND_WORKED = [
    ("sigmoid", {}, [0.3132617, LOG2], "-log σ(βh): -log σ(1); -log σ(0)"),
    ("sigmoid", {"label_smoothing": 0.1}, [0.4132617, LOG2], "0.9·0.3132617 + 0.1·1.3132617; log 2 for any ε"),
    ("robust", {"label_smoothing": 0.1}, [0.1882617, LOG2], "(0.9·0.3132617 - 0.1·1.3132617) / 0.8; (0.8·log 2)/0.8"),
    ("ipo", {}, [0.0625, 1.0], "h̄ = 1/2 - (-1/4) = 0.75, 1/(2β) = 1: (0.75 - 1)²; (0 - 1)²"),
    ("hinge", {}, [0.0, 1.0], "max(0, 1 - 1); max(0, 1 - 0)"),
    ("bco_pair", {}, [0.9481540, 2 * LOG2], "δ = mean(0.5, 0, -0.5, 0) = 0: -log σ(0.5) - log σ(0.5); 2·log 2"),
    ("sppo_hard", {}, [0.0, 2.0], "(1 - 1)² + (-1 + 1)²; (0 - 1)² + (0 + 1)²"),
    ("nca_pair", {}, [1.1981540, 2 * LOG2], "0.4740770 + ½·0.9740770 + ½·0.4740770; log 2 + ½ log 2 + ½ log 2"),
    (
        "exo_pair",
        {},
        [1.2763098, 2.7612307],
        "ε = 1e-3: σ(1)(log σ(1) - log 0.999) + σ(-1)(log σ(-1) - log 0.001); ½(-log 2 - log .999) + ½(-log 2 - log .001)",
    ),
    ("aot_pair", {}, [0.4740770, 0.4740770], "sort(a) = (0, 1), sort(b) = (-1, 0), Δ = (1, 1): -log σ(0.5) twice"),
    ("aot", {}, [LOG2, 0.3132617], "sort(π_w - π_l) = (0, 2), sort(ref margins) = (0, 0): -log σ(0), -log σ(1)"),
    ("apo_zero", {}, [0.7550813, 1.0], "1 - σ(0.5) + σ(-0.5) = 1 - 0.6224593 + 0.3775407; 1 - ½ + ½"),
    ("apo_down", {}, [0.8914008, 1.0], "σ(0.5) + 1 - σ(1) = 0.6224593 + 1 - 0.7310586; ½ + 1 - ½"),
    ("discopop", {}, [0.3678794, 0.8465736], "τ = 0.05: m = σ(20) ≈ 1: e^-1; m = ½: ½·log 2 + ½·1"),
    (
        "simpo",
        {"simpo_gamma": 0.5},
        [0.8981233, 1.0537007],
        "p̄: (-1/2, -3/4) and (-5/4, -1): -log σ(0.5·0.25 - 0.5); -log σ(0.5·(-0.25) - 0.5)",
    ),
    ("aot_unpaired", {}, [0.4740770, 0.4740770], "TRL's name for aot_pair: the same numbers"),
    ("sigmoid_norm", {}, [0.5231233, LOG2], "ā = 1/2, b̄ = -1/4: -log σ(0.5·0.75) = -log σ(0.375); -log σ(0)"),
    ("sft", {}, [1.0, 1.0], "chosen NLL over every chosen token of the batch: -(-1 - 5)/(2 + 4), for each pair"),
    (
        "orpo",
        {"orpo_lambda": 0.1},
        [0.5457913, 1.3395811],
        "log odds(p̄) = m - log(1 - e^m): 0.4327521, -0.1106465: 0.5 + 0.1·(-log σ(0.5433986)); 1.25 + 0.1·…",
    ),
]


@pytest.mark.parametrize(("loss_type", "kwargs", "expected", "arithmetic"), HAND_WORKED, ids=lambda v: str(v)[:20])
def test_hand_worked_values(loss_type, kwargs, expected, arithmetic):
    assert_close(_loss(loss_type, **kwargs), torch.tensor(expected), atol=1e-6, rtol=0)


def test_every_loss_type_has_a_hand_worked_test():
    assert {row[0] for row in HAND_WORKED} == set(PAIRED_LOSS_TYPES)  # the unpaired ones: the KTO tests below
    # the list losses: tests/losses/test_lists.py
    assert set(LOSS_TYPES) == {
        *PAIRED_LOSS_TYPES,
        "plackett_luce",
        "all_pairs",
        "best_vs_rest",
        "nca",
        "kto",
        "apo_zero_unpaired",
    }


def test_rewards_are_beta_times_log_ratios_and_detached():
    policy_chosen, policy_rejected, ref_chosen, ref_rejected = _pairs(requires_grad=True)
    _, chosen_rewards, rejected_rewards = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=BETA)
    assert_close(chosen_rewards, torch.tensor([0.5, 0.0]))
    assert_close(rejected_rewards, torch.tensor([-0.5, 0.0]))
    assert not chosen_rewards.requires_grad and not rejected_rewards.requires_grad


# Value at policy == reference (h = a = b = 0), for every loss with a reference; β = 0.5 so 1/(2β) = 1.
AT_REFERENCE = {
    "sigmoid": LOG2,
    "robust": LOG2,
    "ipo": 1.0,
    "hinge": 1.0,
    "bco_pair": 2 * LOG2,
    "sppo_hard": 2.0,
    "nca_pair": 2 * LOG2,
    "exo_pair": -LOG2 - 0.5 * (math.log1p(-1e-3) + math.log(1e-3)),
    "aot_pair": LOG2,
    "aot_unpaired": LOG2,
    "aot": LOG2,
    "sigmoid_norm": LOG2,
    "apo_zero": 1.0,
    "apo_down": 1.0,
    "discopop": 0.5 * LOG2 + 0.5,
}


@pytest.mark.parametrize("loss_type", sorted(AT_REFERENCE))
def test_policy_equal_to_reference(loss_type):
    logps = torch.tensor([-12.5, -3.25, -40.0])
    lengths = {"chosen_lengths": torch.tensor([3, 1, 9]), "rejected_lengths": torch.tensor([2, 2, 2])}
    losses, chosen_rewards, rejected_rewards = dpo_loss(
        logps, logps - 1.0, logps, logps - 1.0, beta=BETA, loss_type=loss_type, **lengths
    )
    assert_close(losses, torch.full((3,), AT_REFERENCE[loss_type]))
    assert torch.equal(chosen_rewards, torch.zeros(3)) and torch.equal(rejected_rewards, torch.zeros(3))


def test_label_smoothing_zero_is_plain_dpo_for_cdpo_and_rdpo():
    policy_chosen, policy_rejected, ref_chosen, ref_rejected = torch.randn(4, 16).unbind()
    expected = -torch.nn.functional.logsigmoid(0.2 * ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)))
    for loss_type in ("sigmoid", "robust"):
        losses, _, _ = dpo_loss(
            policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=0.2, loss_type=loss_type
        )
        assert_close(losses, expected)


def test_half_smoothing_is_symmetric_in_the_preference():
    """ε = 0.5 means the label carries no information: swapping chosen and rejected changes nothing."""
    policy_chosen, policy_rejected, ref_chosen, ref_rejected = torch.randn(4, 8).unbind()
    forward, _, _ = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, label_smoothing=0.5)
    swapped, _, _ = dpo_loss(policy_rejected, policy_chosen, ref_rejected, ref_chosen, label_smoothing=0.5)
    assert_close(forward, swapped)


def test_reference_free_losses_ignore_the_reference():
    assert not needs_reference("simpo") and not needs_reference(["orpo"]) and needs_reference("simpo,sigmoid")
    policy_chosen, policy_rejected, _, _ = _pairs()
    for loss_type in ("simpo", "orpo"):
        with_ref, _, _ = dpo_loss(policy_chosen, policy_rejected, *torch.randn(2, 2), loss_type=loss_type, **LENGTHS)
        without, _, _ = dpo_loss(policy_chosen, policy_rejected, *torch.zeros(2, 2), loss_type=loss_type, **LENGTHS)
        assert_close(with_ref, without)


def test_combined_losses_are_the_weighted_sum():
    single = {name: _loss(name) for name in ("sigmoid", "bco_pair", "ipo")}
    assert_close(_loss(["sigmoid"], loss_weights=[1.0]), single["sigmoid"])
    assert_close(_loss("sigmoid,ipo"), single["sigmoid"] + single["ipo"])
    combined = _loss(["sigmoid", "bco_pair", "ipo"], loss_weights=[0.8, 0.2, 1.0])
    assert_close(combined, 0.8 * single["sigmoid"] + 0.2 * single["bco_pair"] + single["ipo"])


def test_rpo_adds_the_chosen_nll_per_token():
    """pair 0: 0.3132617 + 1·(1/2); pair 1: log 2 + 1·(5/4)."""
    assert_close(_loss("sigmoid", rpo_alpha=1.0), torch.tensor([0.8132617, LOG2 + 1.25]))


def test_bco_pair_shift_is_zero_by_default_as_trl():
    """No running mean (TRL's bco_pair): δ = 0 whatever the batch. Rewards all +1 (a = b = 2, β = 0.5):
    -log σ(1) - log σ(-1) = 0.3132617 + 1.3132617."""
    shifted = torch.tensor([1.0, 1.0])
    losses, _, _ = dpo_loss(shifted, shifted, shifted - 2, shifted - 2, beta=BETA, loss_type="bco_pair")
    assert_close(losses, torch.full((2,), 1.6265234))


def test_bco_pair_keeps_a_running_mean_of_rewards():
    """Batch 1 rewards (0.5, 0, -0.5, 0) -> δ = 0; batch 2 rewards all +1 (a = b = 2) -> δ = 4/8 = 0.5:
    -log σ(1 - 0.5) - log σ(-(1 - 0.5)) = 0.4740770 + 0.9740770."""
    reward_mean = RewardMean()
    dpo_loss(*_pairs(), beta=BETA, loss_type="bco_pair", reward_mean=reward_mean)
    shifted = torch.tensor([1.0, 1.0])
    losses, _, _ = dpo_loss(
        shifted, shifted, shifted - 2, shifted - 2, beta=BETA, loss_type="bco_pair", reward_mean=reward_mean
    )
    assert_close(losses, torch.full((2,), 1.4481540))
    assert reward_mean.state_dict() == {"bco_rewards": [4.0, 8.0]}  # float64 [sum, count]


def test_bco_pair_running_mean_adds_every_process_rewards():
    """Two processes: this one sees rewards (0.5, 0, -0.5, 0), the other four rewards of +1 (sum 4). The mean's
    reduction sums [sum, count] over both: δ = 4/8 = 0.5 on each, so pair 0 gives -log σ(0.5 - 0.5) -
    log σ(-(-0.5 - 0.5)) = log 2 + 0.3132617, and pair 1 (rewards 0) gives 0.9740770 + 0.4740770."""
    other_process = torch.tensor([4.0, 4.0], dtype=torch.float64)
    reward_mean = RewardMean(reduce=lambda totals: totals + other_process)
    losses, _, _ = dpo_loss(*_pairs(), beta=BETA, loss_type="bco_pair", reward_mean=reward_mean)
    assert reward_mean.state_dict() == {"bco_rewards": [4.0, 8.0]}
    assert_close(losses, torch.tensor([LOG2 + 0.3132617, 0.9740770 + 0.4740770]))


def test_bco_pair_evaluation_reads_the_running_mean_without_moving_it():
    reward_mean = RewardMean()
    reward_mean.load_state_dict({"bco_rewards": [4.0, 8.0]})  # δ = 0.5, as a resumed checkpoint holds it
    shifted = torch.tensor([1.0, 1.0])
    losses, _, _ = dpo_loss(
        shifted, shifted, shifted - 2, shifted - 2, beta=BETA, loss_type="bco_pair", reward_mean=reward_mean.frozen()
    )
    assert_close(losses, torch.full((2,), 1.4481540))  # as in the running-mean test: δ = 0.5
    assert reward_mean.state_dict() == {"bco_rewards": [4.0, 8.0]}


# Losses whose gradient must raise the chosen log-prob and lower the rejected one at a generic point. APO-down
# lowers both (tested below); DiscoPOP is non-monotone for small positive margins, where the exponential part
# takes over (its paper notes the loss is non-convex), so it is checked at a negative margin below.
DIRECTIONAL = sorted(set(PAIRED_LOSS_TYPES) - {"apo_down", "discopop", "sft"})


@pytest.mark.parametrize("loss_type", DIRECTIONAL)
def test_gradient_raises_chosen_and_lowers_rejected(loss_type):
    policy_chosen = torch.tensor([-4.0, -2.5], requires_grad=True)
    policy_rejected = torch.tensor([-3.0, -6.0], requires_grad=True)
    ref_chosen, ref_rejected = torch.tensor([-4.5, -3.0]), torch.tensor([-3.0, -5.0])
    losses, _, _ = dpo_loss(
        policy_chosen, policy_rejected, ref_chosen, ref_rejected, loss_type=loss_type, beta=0.1, **LENGTHS
    )
    losses.sum().backward()
    assert (policy_chosen.grad < 0).all(), policy_chosen.grad  # descent moves against the gradient: chosen up
    assert (policy_rejected.grad > 0).all(), policy_rejected.grad  # rejected down


def test_discopop_gradient_at_a_negative_margin_and_its_non_monotone_region():
    """β = 0.1, h = -5 (z = -0.5, τ = 0.05): m = σ(-10) = 4.5398e-5, m' = m(1-m)/τ = 9.0792e-4,
    dL/dz = -m'·(-log σ(z)) - (1-m)·σ(-z) + m'·e^{-z} - m·e^{-z}
          = -8.8440e-4 - 0.6224310 + 1.4969e-3 - 7.485e-5 = -0.6218933, so dL/dπ_w = β·dL/dz = -0.0621893.
    At h = 0.5 (z = 0.05, m = σ(1)) the modulation's slope makes the chosen log-prob's gradient positive."""
    policy_chosen = torch.tensor([-9.0, -4.0], requires_grad=True)
    policy_rejected = torch.tensor([-4.0, -4.5], requires_grad=True)
    reference = torch.tensor([-4.0, -4.0])
    losses, _, _ = dpo_loss(policy_chosen, policy_rejected, reference, reference, beta=0.1, loss_type="discopop")
    losses.sum().backward()
    assert_close(policy_chosen.grad[0], torch.tensor(-0.0621893), atol=1e-6, rtol=0)
    assert_close(policy_rejected.grad[0], torch.tensor(0.0621893), atol=1e-6, rtol=0)
    assert policy_chosen.grad[1] > 0


def test_apo_down_lowers_the_chosen_likelihood_too():
    """APO-down is for chosen answers worse than the model's own. With β = 1, a = 2, b = -1:
    dL/da = σ'(2) - σ'(3) = 0.1049936 - 0.0451767 > 0 and dL/db = σ'(3) = 0.0451767 > 0: both go down."""
    policy_chosen = torch.tensor([-2.0], requires_grad=True)
    policy_rejected = torch.tensor([-5.0], requires_grad=True)
    reference = torch.tensor([-4.0])
    losses, _, _ = dpo_loss(policy_chosen, policy_rejected, reference, reference, beta=1.0, loss_type="apo_down")
    losses.sum().backward()
    assert_close(policy_chosen.grad, torch.tensor([0.0598169]))
    assert_close(policy_rejected.grad, torch.tensor([0.0451767]))


def test_sigmoid_gradient_value():
    """d/dπ_w [-log σ(βh)] = -β σ(-βh); at h = 0 and β = 0.1: -0.05."""
    policy_chosen = torch.tensor([-4.0], requires_grad=True)
    losses, _, _ = dpo_loss(policy_chosen, torch.tensor([-3.0]), torch.tensor([-4.0]), torch.tensor([-3.0]))
    losses.sum().backward()
    assert_close(policy_chosen.grad, torch.tensor([-0.05]))


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="loss_type='nope' is not one of sigmoid"):
        _loss("nope")
    with pytest.raises(ValueError, match=r"loss_weights=\[1.0\] must give one weight per loss type"):
        _loss("sigmoid,ipo", loss_weights=[1.0])
    with pytest.raises(ValueError, match="pass chosen_lengths and rejected_lengths"):
        dpo_loss(*_pairs(), loss_type="ipo")


@pytest.mark.parametrize(
    ("loss_type", "chosen", "rejected", "arithmetic"),
    [
        ("sigmoid", [0.5, 0.0], [-0.5, 0.0], "β·a, β·b from sums: 0.5·1, 0.5·(-1)"),
        ("ipo", [0.25, 0.0], [-0.125, 0.0], "β·ā, β·b̄ per token: 0.5·(1/2), 0.5·(-1/4)"),
        ("simpo", [-0.25, -0.625], [-0.375, -0.5], "β·p̄: 0.5·(-1/2), 0.5·(-3/4); 0.5·(-5/4), 0.5·(-5/5)"),
        ("orpo", [-0.25, -0.625], [-0.375, -0.5], "as simpo: ORPO compares mean log-probs"),
        (["ipo", "sigmoid"], [0.25, 0.0], [-0.125, 0.0], "a combination reports its first loss's rewards"),
    ],
)
def test_rewards_are_what_each_loss_compares(loss_type, chosen, rejected, arithmetic):
    _, chosen_rewards, rejected_rewards = dpo_loss(*_pairs(), beta=BETA, loss_type=loss_type, **LENGTHS)
    assert_close(chosen_rewards, torch.tensor(chosen))
    assert_close(rejected_rewards, torch.tensor(rejected))


def test_sft_raises_the_chosen_and_leaves_the_rejected_alone():
    policy_chosen, policy_rejected, ref_chosen, ref_rejected = _pairs(requires_grad=True)
    losses, _, _ = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, loss_type="sft", **LENGTHS)
    losses.mean().backward()
    assert (policy_chosen.grad < 0).all()
    assert policy_rejected.grad is None or not policy_rejected.grad.any()


@pytest.mark.parametrize(
    ("divergence", "kwargs", "expected", "arithmetic"),
    [
        ("reverse_kl", {}, 0.3132617, "f'(t) = log t: plain DPO, -log σ(1)"),
        (
            "forward_kl",
            {},
            0.2690777,
            "f'(t) = 1 - 1/t: a -> 1 - e^-1 = 0.6321206, b -> 1 - e = -1.7182818; -log σ(0.5·2.3504024)",
        ),
        ("js_divergence", {}, 0.4740770, "log 2 + log σ(±1) = 0.3798855, -0.6201145: margin 1; -log σ(0.5)"),
        (
            "alpha_divergence",
            {"f_alpha_divergence_coef": 0.5},
            0.3020887,
            "(t^-0.5 - 1)/(-0.5): a -> 0.7869387, b -> -1.2974425; -log σ(0.5·2.0843812)",
        ),
        ("alpha_divergence", {"f_alpha_divergence_coef": 1.0}, 0.3132617, "α = 1 is the log t limit"),
    ],
)
def test_f_divergences_by_hand(divergence, kwargs, expected, arithmetic):
    """Pair 0 (a = 1, b = -1, β = 0.5) under the sigmoid loss; pair 1 (a = b = 0) gives log 2 for every f."""
    losses = _loss("sigmoid", f_divergence_type=divergence, **kwargs)
    assert_close(losses, torch.tensor([expected, LOG2]), atol=1e-6, rtol=0)


def test_f_divergences_are_refused_for_losses_without_a_score_form():
    with pytest.raises(ValueError, match=r"applies only to loss types .*\['bco_pair'\]"):
        _loss(["sigmoid", "bco_pair"], f_divergence_type="forward_kl")
    with pytest.raises(ValueError, match="is not one of"):
        _loss("sigmoid", f_divergence_type="kl")


def test_wpo_weights_scale_each_pair():
    """Weights: pair 0 e^(-1)·e^(-1) = 0.1353353, pair 1 e^0·e^0 = 1; losses 0.3132617·0.1353353 and log 2."""
    weights = wpo_weights(
        torch.tensor([-2.0, 0.0]), torch.tensor([2, 4]), torch.tensor([-4.0, 0.0]), torch.tensor([4, 5])
    )
    assert_close(weights, torch.tensor([0.1353353, 1.0]))
    assert_close(_loss("sigmoid", pair_weights=weights), torch.tensor([0.3132617 * 0.1353353, LOG2]))


# ---- KTO (unpaired) --------------------------------------------------------------------------------------------
# Four completions, β = 0.5: policy (-1, -5, -2, -4), reference (-2, -5, -2, -3), so r = (1, 0, 0, -1); the first
# two desirable. Mismatched KL pairs: policy (-3, -5), reference (-4, -5): z₀ = max(0, mean(1, 0)) = 0.5.
# σ(0.25) = 0.5621765, σ(0.75) = 0.6791787, σ(0.5) = 0.6224593.
KTO_POLICY, KTO_REFERENCE = torch.tensor([-1.0, -5.0, -2.0, -4.0]), torch.tensor([-2.0, -5.0, -2.0, -3.0])
KTO_DESIRABLE = torch.tensor([True, True, False, False])


def test_kto_reference_point_is_the_clamped_mean_kl_over_mismatched_pairs():
    assert_close(kto_kl_estimate(torch.tensor([-3.0, -5.0]), torch.tensor([-4.0, -5.0])), torch.tensor(0.5))
    assert kto_kl_estimate(torch.tensor([-6.0]), torch.tensor([-4.0])).item() == 0.0  # mean -2, clamped at 0
    # another process holds rows whose differences sum to 3 over 2 rows: (1 + 0 + 3) / 4 = 1
    other = torch.tensor([3.0, 2.0], dtype=torch.float64)
    estimate = kto_kl_estimate(torch.tensor([-3.0, -5.0]), torch.tensor([-4.0, -5.0]), lambda t: t + other)
    assert_close(estimate, torch.tensor(1.0))


@pytest.mark.parametrize(
    ("loss_type", "weights", "expected", "arithmetic"),
    [
        (
            "kto",
            (1.0, 1.0),
            [0.4378235, 0.5621765, 0.4378235, 0.3208213],
            "1-σ(0.5(1-0.5)), 1-σ(0.5(0-0.5)); undesirable 1-σ(0.5(0.5-0)), 1-σ(0.5(0.5+1))",
        ),
        ("kto", (2.0, 1.0), [0.8756470, 1.1243530, 0.4378235, 0.3208213], "λ_D = 2 doubles the desirable rows"),
        (
            "apo_zero_unpaired",
            (1.0, 1.0),
            [0.3775407, 0.5, 0.5, 0.3775407],
            "no z₀: 1-σ(0.5), 1-σ(0); undesirable σ(0), σ(-0.5)",
        ),
    ],
)
def test_kto_by_hand(loss_type, weights, expected, arithmetic):
    losses, rewards = kto_loss(
        KTO_POLICY, KTO_REFERENCE, KTO_DESIRABLE, torch.tensor(0.5), beta=0.5,
        desirable_weight=weights[0], undesirable_weight=weights[1], loss_type=loss_type,
    )  # fmt: skip
    assert_close(losses, torch.tensor(expected), atol=1e-6, rtol=0)
    assert_close(rewards, torch.tensor([0.5, 0.0, 0.0, -0.5]))


def test_kto_at_the_reference_is_one_half_per_completion():
    logps = torch.tensor([-7.0, -2.5, -40.0])
    losses, _ = kto_loss(logps, logps, torch.tensor([True, False, True]), kl=0.0)
    assert_close(losses, torch.full((3,), 0.5))


def test_kto_gradient_raises_desirable_and_lowers_undesirable_and_none_flows_through_the_reference_point():
    policy = KTO_POLICY.clone().requires_grad_(True)
    kl_policy = torch.tensor([-3.0, -5.0], requires_grad=True)
    kl = kto_kl_estimate(kl_policy, torch.tensor([-4.0, -5.0]))
    losses, _ = kto_loss(policy, KTO_REFERENCE, KTO_DESIRABLE, kl, beta=0.5)
    losses.sum().backward()
    assert (policy.grad[:2] < 0).all() and (policy.grad[2:] > 0).all()
    assert kl_policy.grad is None
