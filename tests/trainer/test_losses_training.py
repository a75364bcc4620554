"""Every loss type trains a tiny model end to end; reference-free losses build and run no reference."""

import gc

import pytest
import torch
from tiny import build_model, preference_rows
from transformers import LlamaForCausalLM

from hf_dpo import DPOTrainer, DPOTrainingArguments
from hf_dpo.losses import LOSS_TYPES
from hf_dpo.reference.kinds import FrozenModelReference, NoReference

REFERENCE_FREE = {"simpo", "orpo", "sft"}
# rewards/margins is β·(summed log-ratio of chosen - rejected). ORPO optimises per-token odds, not summed log-probs,
# and DiscoPOP's loss is non-monotone near small positive margins, so neither promises a positive summed margin.
MARGIN_NOT_PROMISED = {"orpo", "discopop", "sft"}  # sft raises the chosen likelihood only


def _train(tmp_path, tokenizer, max_steps=12, **overrides):
    args = DPOTrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        max_steps=max_steps,
        logging_steps=3,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
        **overrides,
    )
    trainer = DPOTrainer(
        model=build_model(tokenizer), args=args, train_dataset=preference_rows(48), processing_class=tokenizer
    )
    forwards = []
    trainer.model.register_forward_pre_hook(lambda module, inputs: forwards.append(1))
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return trainer, losses, len(forwards)


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_every_loss_type_trains(tmp_path, tokenizer, loss_type):
    gc.collect()
    alive_before = {id(obj) for obj in gc.get_objects() if type(obj) is LlamaForCausalLM}
    trainer, losses, forwards = _train(
        tmp_path, tokenizer, loss_type=loss_type, beta=0.5 if loss_type == "ipo" else 0.1
    )
    assert len(losses) == 4 and losses[-1] < losses[0], losses
    last = next(entry for entry in reversed(trainer.state.log_history) if "rewards/margins" in entry)
    assert last["rewards/margins"] > 0 or loss_type in MARGIN_NOT_PROMISED
    if loss_type in REFERENCE_FREE:
        assert isinstance(trainer.reference, NoReference)
        # one policy forward per step, no reference forward; the first shared-prompt batch also checks that the model
        # reads the attention function as separate rows (hf_dpo/logprobs/attention_check.py): two more, once
        assert forwards == 12 + 2
        gc.collect()
        assert len({id(obj) for obj in gc.get_objects() if type(obj) is LlamaForCausalLM} - alive_before) == 1
    else:
        assert isinstance(trainer.reference, FrozenModelReference)


def test_combined_losses_and_rpo_train(tmp_path, tokenizer):
    trainer, losses, _ = _train(
        tmp_path,
        tokenizer,
        loss_type=["sigmoid", "bco_pair"],
        loss_weights=[0.8, 0.2],
        rpo_alpha=1.0,
        bco_pair_running_mean=True,
    )
    assert losses[-1] < losses[0]
    assert (
        trainer.reward_mean.state_dict()["bco_rewards"][1] == 12 * 4 * 2
    )  # every training reward joined the running mean


def test_single_loss_in_a_list_equals_the_plain_loss(tmp_path, tokenizer):
    _, plain, _ = _train(tmp_path / "plain", tokenizer, max_steps=3, loss_type="sigmoid")
    _, listed, _ = _train(tmp_path / "listed", tokenizer, max_steps=3, loss_type=["sigmoid"], loss_weights=[1.0])
    assert listed == pytest.approx(plain, abs=1e-7)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"loss_type": ["sigmoid", "nope"]}, "loss_type='nope' must be one of sigmoid"),
        ({"loss_type": "sigmoid,ipo", "loss_weights": [1.0]}, r"loss_weights=\[1.0\] must have one weight per loss"),
        ({"rpo_alpha": -1.0}, "rpo_alpha=-1.0 must be >= 0"),
        ({"orpo_lambda": -0.1}, "orpo_lambda=-0.1 must be >= 0"),
        ({"discopop_tau": 0.0}, "discopop_tau=0.0 must be > 0"),
        ({"loss_type": "apo_zero", "reference_free": True}, r"reference_free=True with loss_type \['apo_zero'\]"),
    ],
)
def test_loss_arguments_are_validated(overrides, message):
    with pytest.raises(ValueError, match=message):
        DPOTrainingArguments(output_dir="unused", report_to="none", **overrides)


def test_loss_hyper_parameters_reach_the_loss(tmp_path, tokenizer, monkeypatch):
    seen = {}
    import hf_dpo.trainer.step as trainer_module

    real = trainer_module.preference_losses

    def spy(pair, settings, **kwargs):
        seen.update(pair=pair, settings=settings)
        return real(pair, settings, **kwargs)

    monkeypatch.setattr(trainer_module, "preference_losses", spy)
    _train(tmp_path, tokenizer, max_steps=1, loss_type="simpo", simpo_gamma=1.25, orpo_lambda=0.3, discopop_tau=0.2)
    settings = seen["settings"]
    assert (settings.simpo_gamma, settings.orpo_lambda, settings.discopop_tau) == (1.25, 0.3, 0.2)
    assert torch.is_tensor(seen["pair"].chosen_lengths) and seen["pair"].chosen_lengths.shape == (4,)
