"""hf_dpo.losses against numbers worked out by hand from the formulas."""

import math

import pytest
import torch
from torch.testing import assert_close

from hf_dpo.losses import LOSS_TYPES, dpo_loss


def _pairs():
    """Two pairs (policy_chosen, policy_rejected, ref_chosen, ref_rejected):

    pair 0: (-1, -3, -2, -2): chosen log-ratio +1, rejected log-ratio -1, h = 2
    pair 1: (-5, -5, -5, -5): policy == reference, h = 0
    """
    return (
        torch.tensor([-1.0, -5.0]),
        torch.tensor([-3.0, -5.0]),
        torch.tensor([-2.0, -5.0]),
        torch.tensor([-2.0, -5.0]),
    )


def test_sigmoid_hand_worked():
    """β = 0.5, pair 0: βh = 1, loss = -log σ(1) = log(1 + e^-1) = 0.3132617;
    rewards 0.5·(+1) = 0.5 and 0.5·(-1) = -0.5. Pair 1: loss = log 2 = 0.6931472, rewards 0."""
    losses, chosen_rewards, rejected_rewards = dpo_loss(*_pairs(), beta=0.5)
    assert_close(losses, torch.tensor([0.3132617, 0.6931472]))
    assert_close(chosen_rewards, torch.tensor([0.5, 0.0]))
    assert_close(rejected_rewards, torch.tensor([-0.5, 0.0]))


def test_policy_equal_to_reference_gives_log2_and_zero_rewards():
    logps = torch.tensor([-12.5, -3.25, -40.0])
    losses, chosen_rewards, rejected_rewards = dpo_loss(logps, logps - 1.0, logps, logps - 1.0, beta=0.3)
    assert_close(losses, torch.full((3,), math.log(2.0)))
    assert torch.equal(chosen_rewards, torch.zeros(3))
    assert torch.equal(rejected_rewards, torch.zeros(3))


def test_conservative_dpo_hand_worked():
    """ε = 0.1, β = 0.5, pair 0 (βh = 1): 0.9·log(1+e^-1) + 0.1·log(1+e^1) = 0.9·0.3132617 + 0.1·1.3132617
    = 0.4132617. At h = 0 every ε gives log 2."""
    losses, _, _ = dpo_loss(*_pairs(), beta=0.5, label_smoothing=0.1)
    assert_close(losses, torch.tensor([0.4132617, 0.6931472]))


def test_label_smoothing_zero_is_plain_dpo():
    policy_chosen, policy_rejected, ref_chosen, ref_rejected = torch.randn(4, 16).unbind()
    plain, _, _ = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=0.2)
    smoothed, _, _ = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=0.2, label_smoothing=0.0)
    expected = -torch.nn.functional.logsigmoid(0.2 * ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)))
    assert_close(plain, expected)
    assert_close(smoothed, plain)


def test_half_smoothing_is_symmetric_in_the_preference():
    """ε = 0.5 means the label carries no information: swapping chosen and rejected changes nothing."""
    policy_chosen, policy_rejected, ref_chosen, ref_rejected = torch.randn(4, 8).unbind()
    forward, _, _ = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, label_smoothing=0.5)
    swapped, _, _ = dpo_loss(policy_rejected, policy_chosen, ref_rejected, ref_chosen, label_smoothing=0.5)
    assert_close(forward, swapped)


def test_gradient_raises_chosen_and_lowers_rejected():
    policy_chosen = torch.tensor([-4.0, -2.0], requires_grad=True)
    policy_rejected = torch.tensor([-3.0, -6.0], requires_grad=True)
    losses, _, _ = dpo_loss(policy_chosen, policy_rejected, torch.tensor([-4.0, -3.0]), torch.tensor([-3.0, -5.0]))
    losses.sum().backward()
    # gradient descent moves against the gradient: chosen log-probs up, rejected down
    assert (policy_chosen.grad < 0).all()
    assert (policy_rejected.grad > 0).all()
    # d/dπ_w [-log σ(βh)] = -β σ(-βh); pair 0 has h = 0: -0.1 · 0.5
    assert_close(policy_chosen.grad[0], torch.tensor(-0.05))


def test_rewards_are_detached():
    policy_chosen = torch.tensor([-1.0], requires_grad=True)
    _, chosen_rewards, rejected_rewards = dpo_loss(policy_chosen, torch.tensor([-2.0]), torch.zeros(1), torch.zeros(1))
    assert not chosen_rewards.requires_grad and not rejected_rewards.requires_grad


def test_unknown_loss_type_names_the_choices():
    with pytest.raises(ValueError, match="loss_type='nope' is not one of sigmoid"):
        dpo_loss(*_pairs(), loss_type="nope")
    assert "sigmoid" in LOSS_TYPES
