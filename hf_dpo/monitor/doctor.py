"""The doctor: a callback that watches a DPO run's logs and warns once per known failure, naming its likely cause and
the knob to turn (loss stuck at its start, accuracy 1.0 at a negligible margin, the chosen log-probs falling, a task
too easy, answers growing, a loss scaler skipping steps). Each check is a pure function of the logged numbers."""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

logger = logging.getLogger("hf_dpo.doctor")


LOG_2 = math.log(2)
NEGLIGIBLE_MARGIN = 0.05  # a mean reward margin under this is "barely moved": σ(0.05) = 0.512, near a coin toss


SIGMOID_START = ("sigmoid", "robust", "sigmoid_norm", "aot", "aot_pair", "aot_unpaired")  # losses that start at log 2


def _is_train_log(logs: dict[str, Any]) -> bool:
    return "loss" in logs and not any(key.startswith("eval_") for key in logs)


def stuck_at_start(step: int, logs: dict[str, Any], loss_type: Any, after_steps: int) -> str | None:
    """The policy has not left the reference after ``after_steps`` steps: rewards ≈ 0 (and, for losses that start
    at log 2, the loss still there)."""
    if step < after_steps or not _is_train_log(logs) or "rewards/chosen" not in logs:
        return None
    rewards_still = max(abs(logs["rewards/chosen"]), abs(logs["rewards/rejected"])) < 1e-3
    at_log_2 = str(loss_type) in SIGMOID_START and abs(logs["loss"] - LOG_2) < 1e-3
    if not (rewards_still or at_log_2):
        return None
    return (
        f"step {step}: loss {logs['loss']:.4f} (log 2 = 0.6931) with rewards ≈ 0: after {step} steps the policy still "
        "equals its reference. Likely: a learning rate too small to move it (DPO's default 1e-6 suits full "
        "fine-tunes; LoRA wants ~5e-5 to 1e-4), weights that do not train (check the trainable parameters), or "
        "precomputed reference columns taken from the policy being trained. Knobs: learning_rate, the LoRA "
        "target modules, ref_logps_cache_dir (delete a stale cache)"
    )


def negligible_margin(step: int, logs: dict[str, Any], after_steps: int, max_margin: float) -> str | None:
    """Reward accuracy 1.0 (train or eval) at a mean margin under ``max_margin``: every pair leans the right way by
    almost nothing, which an accuracy alone reads as success."""
    if step < after_steps:
        return None
    for prefix in ("", "eval_"):
        accuracy, margin = logs.get(f"{prefix}rewards/accuracies"), logs.get(f"{prefix}rewards/margins")
        if accuracy is None or margin is None or accuracy < 0.999 or abs(margin) >= max_margin:
            continue
        where = "held-out " if prefix else ""
        return (
            f"step {step}: {where}reward accuracy {accuracy:.3f} at a mean margin of only {margin:.4f} (σ(margin) = "
            f"{1 / (1 + math.exp(-margin)):.3f}; 0.5 is a coin toss): every pair leans the right way by almost "
            "nothing, so the policy has barely moved from its reference and the accuracy overstates what it learned. "
            "Likely: a learning rate too small (DPO's default 1e-6 suits full fine-tunes; LoRA wants ~5e-5 to 1e-4) "
            "or too few steps. Knobs: learning_rate, num_train_epochs or max_steps"
        )
    return None


def chosen_falling(values: Sequence[float], logs_in_a_row: int, min_drop: float) -> str | None:
    """``logps/chosen`` fell at each of the last ``logs_in_a_row`` logs, by ``min_drop`` nats in all."""
    recent = list(values[-(logs_in_a_row + 1) :])
    if len(recent) <= logs_in_a_row or any(later >= earlier for earlier, later in itertools.pairwise(recent)):
        return None
    if recent[0] - recent[-1] < min_drop:
        return None
    return (
        f"log-prob of the chosen answers fell at each of the last {logs_in_a_row} logs ({recent[0]:.2f} -> "
        f"{recent[-1]:.2f}): DPO widens the margin by pushing both completions down, and the answers you prefer get "
        "less likely too. Knobs: rpo_alpha=1.0 (adds the chosen answers' NLL), or loss_type=['sigmoid', 'sft'] with "
        "loss_weights; a lower learning_rate or a higher beta slows the drift"
    )


def too_easy(step: int, max_steps: int, logs: dict[str, Any], early_fraction: float, max_loss: float) -> str | None:
    """Reward accuracy 1.0 with a loss near 0 in the first ``early_fraction`` of training."""
    if not _is_train_log(logs) or logs.get("rewards/accuracies", 0.0) < 0.999 or logs["loss"] > max_loss:
        return None
    if max_steps > 0 and step > early_fraction * max_steps:
        return None
    return (
        f"step {step} of {max_steps}: reward accuracy 1.0 and loss {logs['loss']:.4f} already: the pairs are separated "
        "almost at once, so they are too easy or leak the answer (chosen and rejected differ in something "
        "superficial: length, a template token, a marker, or the prompt gives the answer away). The model learns "
        "that, not the preference. Check the data with `hf-dpo inspect`, make the pairs harder, or slow it with a "
        "higher beta or a lower learning_rate"
    )


def length_growing(lengths: Sequence[float], evaluations: int, growth: float, hit_limit: float | None) -> str | None:
    """The generated samples' mean length grew at each of the last ``evaluations`` evaluations, by ``growth``×."""
    recent = list(lengths[-(evaluations + 1) :])
    if len(recent) <= evaluations or any(later <= earlier for earlier, later in itertools.pairwise(recent)):
        return None
    if recent[-1] < growth * max(recent[0], 1e-9):
        return None
    limit = f"; {hit_limit:.0%} hit the length limit" if hit_limit is not None else ""
    return (
        f"generated samples grew longer at each of the last {evaluations} evaluations ({recent[0]:.1f} -> "
        f"{recent[-1]:.1f} tokens{limit}): DPO is rewarding length, its classic exploit (are chosen answers longer "
        "than rejected ones?). Knobs: ld_alpha (LD-DPO: less weight on tokens past the shorter completion), a "
        "length-normalised loss (loss_type=ipo, sigmoid_norm or simpo), a higher beta, or pairs balanced in length"
    )


def scaler_skipping(skipped: int, after_step: int) -> str:
    return (
        f"{skipped} optimizer steps after step {after_step} were skipped by the fp16 loss scaler (inf/NaN "
        "gradients; the weights did not move on those steps): fp16's range overflows. Knobs: bf16=True where the "
        "hardware has it, a lower learning_rate or max_grad_norm, or skip_nonfinite_batches=True for rare bad batches"
    )


class DoctorCallback(TrainerCallback, ExportableState):
    """Watches the logged metrics and warns once per condition; never stops or changes the run.

    Conditions (each message names the likely cause and a knob): loss stuck at log 2 with rewards ≈ 0 after
    ``stuck_steps`` steps; reward accuracy 1.0 at a mean margin under ``negligible_margin`` after ``stuck_steps``
    steps, or at the end of a shorter run; ``logps/chosen`` falling at each of ``falling_logs`` logs in a row by ``min_drop`` nats
    in all; reward accuracy 1.0 with the loss under ``easy_loss`` within the first ``early_fraction`` of training;
    samples' mean length growing at each of ``growing_evaluations`` evaluations to ``length_growth``× (needs the
    samples callback); ``scaler_skips`` fp16 scaler skips after the first ``scaler_warmup`` steps (the scaler
    calibrates itself by skipping a few at the start).

    The warnings fired so far are saved with the trainer state, so a resumed run does not repeat them.
    """

    def __init__(
        self,
        stuck_steps: int = 20,
        negligible_margin: float = NEGLIGIBLE_MARGIN,
        falling_logs: int = 5,
        min_drop: float = 1.0,
        early_fraction: float = 0.1,
        easy_loss: float = 0.05,
        growing_evaluations: int = 3,
        length_growth: float = 1.5,
        scaler_skips: int = 3,
        scaler_warmup: int = 10,
    ):
        self.settings = {key: value for key, value in locals().items() if key not in ("self", "__class__")}
        self.fired: dict[str, str] = {}  # condition -> the message given
        self._chosen_logps: list[float] = []
        self._sample_lengths: list[float] = []
        self._skipped_steps = 0

    def state(self) -> dict[str, Any]:
        return {"args": self.settings, "attributes": {"fired": self.fired}}

    def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        saved = (getattr(state, "stateful_callbacks", None) or {}).get(type(self).__name__)
        saved = saved[0] if isinstance(saved, list) else saved
        self.fired.update((saved or {}).get("attributes", {}).get("fired", {}))

    def _warn(self, condition: str, message: str | None) -> None:
        if message is not None and condition not in self.fired:
            self.fired[condition] = message
            logger.warning("hf-dpo doctor: %s", message)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **_: Any) -> None:
        try:
            self._check_logs(args, state, logs or {})
        except Exception as error:  # the doctor must never stop a run, whatever the logs hold
            logger.debug("doctor skipped a log: %s: %s", type(error).__name__, error)

    def _check_logs(self, args: Any, state: Any, logs: dict[str, Any]) -> None:
        settings, step = self.settings, state.global_step
        self._warn("stuck", stuck_at_start(step, logs, getattr(args, "loss_type", ""), settings["stuck_steps"]))
        margin = negligible_margin(step, logs, settings["stuck_steps"], settings["negligible_margin"])
        self._warn("negligible_margin", margin)
        if _is_train_log(logs) and "logps/chosen" in logs:
            self._chosen_logps.append(logs["logps/chosen"])
            del self._chosen_logps[: -(settings["falling_logs"] + 1)]  # the check reads no further back: bounded
            self._warn(
                "chosen_falling", chosen_falling(self._chosen_logps, settings["falling_logs"], settings["min_drop"])
            )
        max_steps = getattr(state, "max_steps", 0) or 0
        self._warn("too_easy", too_easy(step, max_steps, logs, settings["early_fraction"], settings["easy_loss"]))
        if "samples/mean_tokens" in logs:
            self._sample_lengths.append(logs["samples/mean_tokens"])
            del self._sample_lengths[: -(settings["growing_evaluations"] + 1)]
            message = length_growing(
                self._sample_lengths,
                settings["growing_evaluations"],
                settings["length_growth"],
                logs.get("samples/hit_limit"),
            )
            self._warn("length_growing", message)

    def on_train_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        """A run shorter than ``stuck_steps`` gets the margin check once, on its last training log."""
        last = next((entry for entry in reversed(state.log_history) if _is_train_log(entry)), None)
        if last is not None and state.global_step < self.settings["stuck_steps"]:
            margin = negligible_margin(state.global_step, last, 0, self.settings["negligible_margin"])
            self._warn("negligible_margin", margin)

    def on_step_end(self, args: Any, state: Any, control: Any, optimizer: Any = None, **_: Any) -> None:
        if not getattr(args, "fp16", False) or not getattr(optimizer, "step_was_skipped", False):
            return
        if state.global_step > self.settings["scaler_warmup"]:
            self._skipped_steps += 1
            if self._skipped_steps >= self.settings["scaler_skips"]:
                self._warn("fp16_skips", scaler_skipping(self._skipped_steps, self.settings["scaler_warmup"]))
