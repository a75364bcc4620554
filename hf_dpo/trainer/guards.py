"""Bad numbers stop a run where they appear, before they reach the weights.

A NaN or infinite loss is caught before its backward pass, a NaN or infinite gradient before the optimizer step:
by default training stops with :class:`NonFiniteError`, which names the step and the likely causes, so the last
checkpoint written is the last good one. With ``skip_nonfinite_batches=True`` the batch (a non-finite loss: no
backward) or the optimizer step (non-finite gradients: every gradient dropped, so the optimizer moves nothing)
is skipped instead, and the running count is logged as ``skipped_batches``.

Under fp16 mixed precision, infinite gradients are the loss scaler's business (it skips that step and lowers
the scale), so only the loss is checked. Every process takes the same decision: the flags are summed over
processes, so none waits in a collective for a process that stopped.
"""

from __future__ import annotations

import os
import shlex
import sys
from typing import Any

import torch
from transformers import TrainerCallback


class NonFiniteError(FloatingPointError):
    """A NaN or infinite loss or gradient; training stopped before the update."""


def nonfinite_message(what: str, step: int, args: Any) -> str:
    precision = "fp16" if args.fp16 else "bf16" if args.bf16 else "fp32"
    return (
        f"step {step}: the {what} is NaN or infinite; training stopped before the optimizer step, so the weights "
        "and the last checkpoint are untouched. Likely causes: fp16 overflow (this run: "
        f"{precision}; bf16 has fp32's range), a learning rate too high (this run: {args.learning_rate:g}), "
        "completions with no tokens left after truncation or a reference log-prob of -inf (check the data), or "
        f"β too large for the loss type (β = {args.beta:g}). To skip such batches instead, with a logged count, "
        "set skip_nonfinite_batches=True."
    )


def all_finite(tensors: list[torch.Tensor], accelerator: Any) -> bool:
    """Whether every value of every tensor is finite on every process (a collective when there are several)."""
    if tensors:
        bad = torch.stack([(~torch.isfinite(t.detach())).any() for t in tensors]).any().float().reshape(1)
    else:
        bad = torch.zeros(1, device=accelerator.device)
    if accelerator.num_processes > 1:
        bad = accelerator.reduce(bad.to(accelerator.device), reduction="sum")
    return bad.item() == 0


class SkippedBatch(Exception):
    """Raised by compute_loss to leave out a batch whose loss is not finite (caught in training_step)."""


class NonFiniteGradientGuard(TrainerCallback):
    """Checks the gradients before each optimizer step: stops, or drops them all (skip mode) when not finite."""

    def __init__(self, accelerator: Any, counter: dict[str, int]):
        self.accelerator, self.counter = accelerator, counter

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, model: Any = None, **_: Any) -> None:
        if model is None or self.accelerator.scaler is not None:  # fp16: the scaler skips overflowing steps
            return
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if all_finite(grads, self.accelerator):
            return
        if not args.skip_nonfinite_batches:
            raise NonFiniteError(nonfinite_message("gradient", state.global_step + 1, args))
        for parameter in model.parameters():
            parameter.grad = None  # optimizers leave parameters without a gradient alone: no step, no decay
        self.counter["skipped_batches"] = self.counter.get("skipped_batches", 0) + 1


def refuse_data_parallel(trainer: Any) -> None:
    """Several GPUs visible to one process make Trainer wrap the model in ``nn.DataParallel``, whose replicas run a
    forward our step binds to the original model: refused with the command to run instead, as TRL refuses it.
    Checked after ``Trainer.__init__``, which sets ``n_gpu`` to 1 for a model split across GPUs by ``device_map``."""
    gpus = trainer.args.n_gpu
    if gpus > 1:
        command = shlex.join([os.path.basename(sys.argv[0]) or "train.py", *sys.argv[1:]])
        raise ValueError(
            f"{type(trainer).__name__} does not support nn.DataParallel, which Trainer uses when {gpus} GPUs are "
            f"visible to a single process: launch one process per GPU with `accelerate launch --num_processes {gpus} "
            f"{command}` (or `torchrun --nproc_per_node {gpus} {command}`), or make one GPU visible with "
            "CUDA_VISIBLE_DEVICES=0"
        )
