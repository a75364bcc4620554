"""The samples callback in a tiny training run, and the doctor driven into each of its conditions."""

import json
import logging
import math
from types import SimpleNamespace

import pytest
from tiny import build_model, preference_rows
from transformers import TrainerCallback

from hf_dpo import DPOTrainer, DPOTrainingArguments
from hf_dpo.monitor import add_tool_callbacks
from hf_dpo.monitor.doctor import DoctorCallback
from hf_dpo.monitor.trackers import send_table

LOG_2 = math.log(2)


def _trainer(tmp_path, tokenizer, **overrides):
    callbacks = overrides.pop("callbacks", None)
    values = {
        "output_dir": str(tmp_path),
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 8,
        "learning_rate": 1e-2,
        "max_steps": 4,
        "logging_steps": 1,
        "report_to": "none",
        "save_strategy": "no",
        "use_cpu": True,
        "disable_tqdm": True,
    }
    return DPOTrainer(
        model=build_model(tokenizer),
        args=DPOTrainingArguments(**{**values, **overrides}),
        train_dataset=preference_rows(16),
        eval_dataset=preference_rows(8),
        processing_class=tokenizer,
        callbacks=callbacks,
    )


# ---- samples ------------------------------------------------------------------------------------------------------


class TensorBoardCallback(TrainerCallback):
    """Stands in for transformers' integration: what the samples callback needs of it is its writer."""

    def __init__(self):
        self.texts = []
        self.tb_writer = SimpleNamespace(add_text=lambda tag, text, step: self.texts.append((tag, text, step)))


class WandbCallback(TrainerCallback):
    def __init__(self):
        self.logged = []
        table = SimpleNamespace  # wandb.Table(columns=..., data=...)
        self._wandb = SimpleNamespace(run=object(), Table=table, log=self.logged.append)


def test_samples_every_evaluation_to_jsonl_integrations_and_the_logs(tmp_path, tokenizer):
    tensorboard, wandb = TensorBoardCallback(), WandbCallback()
    trainer = _trainer(
        tmp_path, tokenizer, callbacks=[tensorboard, wandb], eval_strategy="steps", eval_steps=2, bf16=False
    )
    trainer.args.generate_samples, trainer.args.samples_max_new_tokens = 3, 5  # the fields add_tool_callbacks reads
    add_tool_callbacks(trainer)
    trainer.train()
    samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert [sample["step"] for sample in samples] == [2, 2, 2, 4, 4, 4]
    assert samples[0]["prompt"] == "Question: is the fox good 0?"  # the first evaluation prompt
    assert all(sample["num_tokens"] <= 5 for sample in samples)
    assert [step for _, _, step in tensorboard.texts] == [2, 4]
    assert tensorboard.texts[0][1].startswith("| step | prompt | completion | num_tokens | hit_limit |")
    table = wandb.logged[0]["samples"]
    assert table.columns == ["step", "prompt", "completion", "num_tokens", "hit_limit"] and len(table.data) == 3
    lengths = [entry for entry in trainer.state.log_history if "samples/mean_tokens" in entry]
    assert [entry["step"] for entry in lengths] == [2, 4] and 0.0 <= lengths[0]["samples/hit_limit"] <= 1.0


def test_a_failing_integration_is_reported_not_raised(caplog):
    broken = TensorBoardCallback()
    broken.tb_writer = SimpleNamespace(add_text=lambda *args: 1 / 0)
    with caplog.at_level(logging.WARNING, logger="hf_dpo.doctor"):
        assert send_table([broken, TrainerCallback()], ["a"], [[1]], step=3) == []
    assert "samples table not sent to TensorBoardCallback: ZeroDivisionError" in caplog.text


def test_add_tool_callbacks_follows_the_arguments_and_adds_each_once(tmp_path, tokenizer):
    def names(trainer):
        return [type(callback).__name__ for callback in trainer.callback_handler.callbacks]

    trainer = _trainer(tmp_path, tokenizer)
    for callback in [c for c in trainer.callback_handler.callbacks if isinstance(c, DoctorCallback)]:
        trainer.remove_callback(callback)  # once DPOTrainer adds it itself (doctor=True by default)
    trainer.args.doctor, trainer.args.generate_samples = False, 0
    add_tool_callbacks(trainer)
    assert "DoctorCallback" not in names(trainer) and "SamplesCallback" not in names(trainer)
    trainer.args.doctor, trainer.args.generate_samples = True, 2
    add_tool_callbacks(trainer)
    add_tool_callbacks(trainer)
    assert names(trainer).count("DoctorCallback") == 1 and names(trainer).count("SamplesCallback") == 1


# ---- the doctor ---------------------------------------------------------------------------------------------------


def _log(doctor, step, logs, max_steps=100, loss_type="sigmoid"):
    doctor.on_log(
        SimpleNamespace(loss_type=loss_type), SimpleNamespace(global_step=step, max_steps=max_steps), None, logs
    )


def _train_log(loss=LOG_2, chosen=0.0, rejected=0.0, accuracy=0.0, logps_chosen=-20.0):
    return {
        "loss": loss,
        "rewards/chosen": chosen,
        "rewards/rejected": rejected,
        "rewards/accuracies": accuracy,
        "rewards/margins": chosen - rejected,
        "logps/chosen": logps_chosen,
    }


def test_doctor_loss_stuck_at_log_2(caplog):
    doctor = DoctorCallback(stuck_steps=20)
    with caplog.at_level(logging.WARNING, logger="hf_dpo.doctor"):
        _log(doctor, 10, _train_log())  # too early to say
        assert doctor.fired == {}
        _log(doctor, 20, _train_log())
        _log(doctor, 30, _train_log())  # one warning each
    assert list(doctor.fired) == ["stuck"] and caplog.text.count("hf-dpo doctor") == 1
    assert "still equals its reference" in caplog.text and "learning_rate" in caplog.text


def test_doctor_accuracy_one_at_a_negligible_margin(caplog):
    """Issue 26: LoRA at lr 1e-6 gave reward accuracy 1.0 at a margin of 0.003, which the numbers alone read as a
    win."""
    doctor = DoctorCallback(stuck_steps=20, negligible_margin=0.05)
    tiny = _train_log(loss=0.6916, chosen=0.002, rejected=-0.001, accuracy=1.0)
    with caplog.at_level(logging.WARNING, logger="hf_dpo.doctor"):
        _log(doctor, 10, tiny)  # too early to say
        assert doctor.fired == {}
        _log(doctor, 20, tiny)
    message = doctor.fired["negligible_margin"]
    assert "reward accuracy 1.000 at a mean margin of only 0.0030" in message and "learning_rate" in message
    held_out = DoctorCallback(stuck_steps=20)
    _log(held_out, 40, {"eval_rewards/accuracies": 1.0, "eval_rewards/margins": 0.01, "eval_loss": 0.69})
    assert "held-out reward accuracy 1.000" in held_out.fired["negligible_margin"]
    learned = DoctorCallback(stuck_steps=20)
    _log(learned, 40, _train_log(loss=0.3, chosen=0.5, rejected=-0.5, accuracy=1.0))
    assert learned.fired == {}


def test_doctor_checks_the_margin_at_the_end_of_a_short_run():
    doctor = DoctorCallback(stuck_steps=20)
    history = [{"step": 5, **_train_log(loss=0.692, chosen=0.001, accuracy=1.0)}, {"step": 5, "train_loss": 0.69}]
    doctor.on_train_end(None, SimpleNamespace(log_history=history, global_step=5), None)
    assert "step 5: reward accuracy 1.000" in doctor.fired["negligible_margin"]


def test_doctor_stuck_for_another_loss_looks_at_the_rewards():
    doctor = DoctorCallback(stuck_steps=20)
    _log(doctor, 25, _train_log(loss=6.25), loss_type="ipo")  # IPO starts at (1/(2β))², not log 2
    assert "stuck" in doctor.fired
    moving = DoctorCallback(stuck_steps=20)
    _log(moving, 25, _train_log(loss=5.0, chosen=0.3, rejected=-0.2), loss_type="ipo")
    assert moving.fired == {}


def test_doctor_chosen_log_probs_falling_steadily():
    doctor = DoctorCallback(falling_logs=5, min_drop=1.0)
    for step, logps in enumerate([-20.0, -20.5, -20.4, -21.0, -21.5, -22.0, -22.5, -23.0]):
        _log(doctor, step + 1, _train_log(chosen=0.1, rejected=-0.3, logps_chosen=logps))
        assert ("chosen_falling" in doctor.fired) == (step == 7)  # the bump at -20.4 restarts the count
    assert "rpo_alpha" in doctor.fired["chosen_falling"] and "-20.40 -> -23.00" in doctor.fired["chosen_falling"]


def test_doctor_pairs_too_easy_early():
    doctor = DoctorCallback(early_fraction=0.1, easy_loss=0.05)
    _log(doctor, 50, _train_log(loss=0.01, chosen=3.0, accuracy=1.0))  # half-way: separated pairs are expected
    assert doctor.fired == {}
    _log(doctor, 5, _train_log(loss=0.01, chosen=3.0, accuracy=1.0))
    assert "too easy or leak" in doctor.fired["too_easy"] and "hf-dpo inspect" in doctor.fired["too_easy"]


def test_doctor_generated_samples_growing_longer():
    doctor = DoctorCallback(growing_evaluations=3, length_growth=1.5)
    for step, length in zip((10, 20, 30, 40), (12.0, 14.0, 19.0, 25.0)):
        _log(doctor, step, {"samples/mean_tokens": length, "samples/hit_limit": 0.25})
    assert "12.0 -> 25.0 tokens; 25% hit the length limit" in doctor.fired["length_growing"]
    assert "ld_alpha" in doctor.fired["length_growing"]
    steady = DoctorCallback()
    for step, length in zip((10, 20, 30, 40), (12.0, 14.0, 13.0, 25.0)):
        _log(steady, step, {"samples/mean_tokens": length})
    assert steady.fired == {}


def test_doctor_fp16_scaler_skips_after_its_calibration():
    doctor = DoctorCallback(scaler_skips=3, scaler_warmup=10)
    skipped = SimpleNamespace(step_was_skipped=True)
    fp16, bf16 = SimpleNamespace(fp16=True), SimpleNamespace(fp16=False)
    for step in range(1, 11):  # the scaler finds its scale by skipping the first steps: expected
        doctor.on_step_end(fp16, SimpleNamespace(global_step=step), None, optimizer=skipped)
    for step in (11, 12):
        doctor.on_step_end(fp16, SimpleNamespace(global_step=step), None, optimizer=skipped)
        doctor.on_step_end(bf16, SimpleNamespace(global_step=step), None, optimizer=skipped)
    assert doctor.fired == {}
    doctor.on_step_end(fp16, SimpleNamespace(global_step=13), None, optimizer=skipped)
    assert "3 optimizer steps after step 10" in doctor.fired["fp16_skips"] and "bf16" in doctor.fired["fp16_skips"]


def test_doctor_never_raises_and_remembers_what_it_said_across_a_resume():
    doctor = DoctorCallback()
    _log(doctor, 30, {"loss": "not a number", "rewards/chosen": None})  # nothing it can read: it stays quiet
    _log(doctor, 30, _train_log())
    resumed = DoctorCallback()
    state = SimpleNamespace(stateful_callbacks={"DoctorCallback": doctor.state()}, global_step=30, max_steps=100)
    resumed.on_train_begin(None, state, None)
    assert resumed.fired == doctor.fired and "stuck" in resumed.fired


def test_doctor_in_a_run_that_cannot_learn(tmp_path, tokenizer, caplog):
    with caplog.at_level(logging.WARNING, logger="hf_dpo.doctor"):
        _trainer(tmp_path, tokenizer, learning_rate=0.0, callbacks=[DoctorCallback(stuck_steps=3)]).train()
    assert caplog.text.count("hf-dpo doctor") == 1 and "step 3: loss 0.6931" in caplog.text


@pytest.mark.parametrize(
    "condition", ["stuck", "chosen_falling", "too_easy", "length_growing", "fp16_skips", "negligible_margin"]
)
def test_every_message_names_a_knob(condition):
    knobs = ("learning_rate", "rpo_alpha", "beta", "ld_alpha", "bf16")
    doctor = DoctorCallback(stuck_steps=1, falling_logs=2, min_drop=0.1, growing_evaluations=2, scaler_skips=1)
    _log(doctor, 1, {"rewards/accuracies": 1.0, "rewards/margins": 0.001})
    for step, logps in enumerate((-1.0, -2.0, -3.0)):
        _log(doctor, step + 1, _train_log(loss=0.0, accuracy=1.0, logps_chosen=logps))
        _log(doctor, step + 1, {"samples/mean_tokens": 10.0 * (step + 1)})
    doctor.on_step_end(
        SimpleNamespace(fp16=True), SimpleNamespace(global_step=20), None, SimpleNamespace(step_was_skipped=True)
    )
    assert any(knob in doctor.fired[condition] for knob in knobs)
