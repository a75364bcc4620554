"""Bad numbers stop the run before they reach the weights, or are skipped with a count when asked."""

import math

import pytest
import torch
from tiny import build_model, preference_rows
from transformers import TrainerCallback

from hf_dpo import DPOTrainer, DPOTrainingArguments
from hf_dpo.trainer.guards import NonFiniteError


def _args(tmp_path, **overrides):
    values = {
        "output_dir": str(tmp_path),
        "per_device_train_batch_size": 4,
        "learning_rate": 1e-2,
        "max_steps": 6,
        "logging_steps": 1,
        "report_to": "none",
        "save_strategy": "steps",
        "save_steps": 2,
        "use_cpu": True,
        "disable_tqdm": True,
        "seed": 0,
    }
    return DPOTrainingArguments(**{**values, **overrides})


def _trainer(tmp_path, tokenizer, callbacks=(), **overrides):
    return DPOTrainer(
        build_model(tokenizer),
        args=_args(tmp_path, **overrides),
        train_dataset=preference_rows(24),
        processing_class=tokenizer,
        callbacks=list(callbacks),
    )


class PoisonAtStep(TrainerCallback):
    """From step ``step`` on (once), the reference log-probs of one batch are NaN (``target="loss"``), or every
    gradient of one backward pass is (``target="gradient"``)."""

    def __init__(self, trainer_box, step, target):
        self.trainer_box, self.step, self.target, self.done = trainer_box, step, target, False

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step + 1 != self.step or self.done:
            return
        self.done = True
        trainer = self.trainer_box[0]
        if self.target == "loss":
            real = trainer.reference

            def nan_once(model, batch):
                trainer.reference = real
                return real(model, batch) * float("nan")

            trainer.reference = nan_once
        else:
            parameter = next(p for p in model.parameters() if p.requires_grad)
            handle = parameter.register_hook(lambda grad: (handle.remove(), grad * float("nan"))[1])


def _poisoned(tmp_path, tokenizer, step, target, **overrides):
    box = []
    trainer = _trainer(tmp_path, tokenizer, callbacks=[PoisonAtStep(box, step, target)], **overrides)
    box.append(trainer)
    return trainer


def _weights(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


class Snapshots(TrainerCallback):
    """The weights as each step begins and ends, by step number (1-based, as in the error messages)."""

    def __init__(self):
        self.begin, self.end = {}, {}

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        self.begin[state.global_step + 1] = _weights(model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.end[state.global_step] = _weights(model)


@pytest.mark.parametrize("target", ["loss", "gradient"])
def test_a_nonfinite_number_stops_the_run_naming_the_step_before_the_weights_move(tmp_path, tokenizer, target):
    trainer = _poisoned(tmp_path, tokenizer, step=3, target=target)
    snapshots = Snapshots()
    trainer.add_callback(snapshots)
    message = rf"step 3: the {target} is NaN or infinite.*learning rate.*skip_nonfinite_batches=True"
    with pytest.raises(NonFiniteError, match=message):
        trainer.train()
    for name, value in trainer.model.named_parameters():  # the bad step changed nothing
        assert torch.equal(value, snapshots.begin[3][name]), name
    assert (tmp_path / "checkpoint-2").is_dir() and not (tmp_path / "checkpoint-4").exists()


@pytest.mark.parametrize("target", ["loss", "gradient"])
def test_skip_mode_leaves_the_batch_out_and_counts_it(tmp_path, tokenizer, target):
    trainer = _poisoned(tmp_path, tokenizer, step=3, target=target, skip_nonfinite_batches=True)
    snapshots = Snapshots()
    trainer.add_callback(snapshots)
    trainer.train()
    assert trainer.state.global_step == 6
    for name, value in snapshots.begin[3].items():  # step 3 moved nothing: no backward, or no optimizer update
        assert torch.equal(snapshots.end[3][name], value), name
    assert not torch.equal(snapshots.end[4]["model.norm.weight"], snapshots.begin[4]["model.norm.weight"])
    logs = [entry for entry in trainer.state.log_history if "skipped_batches" in entry]
    assert [entry["skipped_batches"] for entry in logs] == [0, 0, 1, 1, 1, 1]
    # the loss logged is the mean over the pairs that trained; a window with none has no loss
    losses = [entry.get("loss") for entry in logs]
    assert all(math.isfinite(loss) and loss > 0 for loss in losses if loss is not None)
    assert (losses[2] is None) is (target == "loss")
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
