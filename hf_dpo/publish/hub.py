"""A LoRA run pushed as a plain model: the trained adapter merged into its base weights.

``trainer.push_to_hub()`` pushes what the run saved (the adapter, its card, the tokenizer: Trainer's own push);
``trainer.push_to_hub(merge_adapter=True)`` pushes instead a model that loads with plain
``AutoModelForCausalLM.from_pretrained``: the adapter folded into a copy of the base weights on the CPU, in the
base model's dtype, saved as safetensors in ``OUTPUT_DIR/merged`` with the tokenizer and a card. The training model
is left untouched.
"""

from __future__ import annotations

import copy
import functools
import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback

from hf_dpo.models.facts import is_peft_model, is_quantized
from hf_dpo.models.loading import load_causal_lm, reload_name
from hf_dpo.publish.model_card import write_model_card

logger = logging.getLogger(__name__)

MERGED_FOLDER = "merged"


def merged_model(peft_model: Any) -> torch.nn.Module:
    """The active adapter of ``peft_model`` merged into a copy of its base model, on the CPU, in the base dtype.

    A 4-bit or 8-bit base has no weights to merge into: the base is loaded again by name in its compute dtype
    and the adapter's weights are set on it first.
    """
    if not is_peft_model(peft_model):
        raise ValueError("merge_adapter=True needs a PEFT model: a full fine-tune is pushed as it is")
    adapter = peft_model.active_adapter
    if is_quantized(peft_model):
        source = _unquantized_twin(peft_model, adapter)
    else:
        source = copy.deepcopy(peft_model).to("cpu")
    return source.merge_and_unload(adapter_names=[adapter])


def _unquantized_twin(peft_model: Any, adapter: str) -> Any:
    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    base = peft_model.get_base_model()
    name = reload_name(peft_model)
    if not name:
        raise ValueError("a quantized base built in code has no name to load it again unquantized for merging")
    dtype = getattr(getattr(base.config, "quantization_config", None), "bnb_4bit_compute_dtype", None)
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype or torch.bfloat16
    logger.info("merging the adapter into %s loaded again in %s (the 4-bit weights cannot take it)", name, dtype)
    twin = get_peft_model(load_causal_lm(name, dtype=dtype), copy.deepcopy(peft_model.peft_config[adapter]))
    set_peft_model_state_dict(twin, get_peft_model_state_dict(peft_model, adapter_name=adapter))
    return twin


def push_merged(
    trainer: Any,
    commit_message: str | None = "End of training (merged model)",
    token: str | None = None,
    revision: str | None = None,
    private: bool | None = None,
    **card_kwargs: Any,
) -> Any:
    """Save the merged model, its tokenizer and card to ``OUTPUT_DIR/merged`` and upload that folder to the run's
    Hub repository (created as Trainer creates it)."""
    token = token if token is not None else trainer.args.hub_token
    if trainer.hub_model_id is None:
        trainer.init_hf_repo(token=token, private=private)
    if not trainer.is_world_process_zero():
        return None
    folder = Path(trainer.args.output_dir) / MERGED_FOLDER
    merged = merged_model(trainer.accelerator.unwrap_model(trainer.model))
    merged.save_pretrained(folder)  # safetensors
    if trainer.processing_class is not None:
        trainer.processing_class.save_pretrained(folder)
    plot = Path(trainer.args.output_dir) / "training.png"
    if plot.is_file():
        shutil.copy(plot, folder / plot.name)
    model_name = card_kwargs.pop("model_name", None) or trainer.hub_model_id.split("/")[-1]
    write_model_card(str(folder / "README.md"), trainer=trainer, model_name=model_name, merged=True, **card_kwargs)
    from huggingface_hub import HfApi

    return HfApi().upload_folder(
        repo_id=trainer.hub_model_id,
        folder_path=str(folder),
        commit_message=commit_message,
        token=token,
        revision=revision or trainer.args.hub_revision,
    )


# ---- when the Hub fails -----------------------------------------------------------------------------------------
# huggingface_hub (2.5) already retries what is safe to retry: a file's preupload and the commit, on 5xx, 408 and
# 429 answers, dropped connections and timeouts, 5 times over about 23 s of backoff (tests/publish/test_hub_faults.py
# shows it). What it leaves is the error that ends a push: it names the HTTP failure, not what is on the Hub and
# what is on disk; and Trainer never looks at the outcome of the checkpoint pushes it starts in the background
# (hub_strategy="every_save" and others), so one that fails was silent. Both are told here.

_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}


def is_transient(error: BaseException) -> bool:
    """A failure that trying again later may mend: a 5xx, 408 or 429 answer, a dropped connection, a timeout."""
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(error, HfHubHTTPError):
        response = getattr(error, "response", None)
        return response is not None and response.status_code in _TRANSIENT_STATUS
    return isinstance(error, _network_errors())


def _network_errors() -> tuple[type[BaseException], ...]:
    try:  # the exceptions huggingface_hub itself retries (its HTTP client's timeouts and dropped connections)
        from huggingface_hub.utils._http import _DEFAULT_RETRY_ON_EXCEPTIONS

        return (*_DEFAULT_RETRY_ON_EXCEPTIONS, TimeoutError, ConnectionError)
    except ImportError:  # a huggingface_hub without that name
        return (TimeoutError, ConnectionError)


def _explain(error: BaseException, explanation: str) -> None:
    """Add ``explanation`` to ``error``'s own message, keeping its type (callers may catch HfHubHTTPError)."""
    if hasattr(error, "append_to_message"):
        error.append_to_message(explanation)
    elif error.args and isinstance(error.args[0], str):
        error.args = (error.args[0] + explanation, *error.args[1:])
    else:
        logger.error(explanation.strip())


def local_copy(folder: str | Path) -> str:
    names = sorted(path.name for path in Path(folder).iterdir() if not path.name.startswith(("checkpoint-", "_")))
    shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    return f"{folder} ({shown})"


def push_explained(push: Any, repo: Any, folder: str | Path, what: str = "the model") -> Any:
    """``push()`` (one commit of ``folder`` to the repository ``repo()`` names once the push has begun); the error that ends it says what reached the Hub, what
    did not, and where the model is on disk, keeping its type (callers may catch ``HfHubHTTPError``)."""
    try:
        return push()
    except Exception as error:
        repo_id = repo()
        kind = (
            "the Hub kept failing after huggingface_hub's retries"
            if is_transient(error)
            else "the Hub refused it (trying again will not mend that)"
        )
        _explain(
            error,
            f"\n\nhf_dpo: pushing {what} to {repo_id} failed: {kind}. The Hub did not confirm this commit, and a "
            "commit lands whole or not at all: the repository holds none of it, only what earlier pushes put there. "
            f"The model is on local disk in {local_copy(folder)}; push it again with trainer.push_to_hub(), or "
            f"`hf upload {repo_id} {folder}`.",
        )
        raise


def push_run(trainer: Any, merge_adapter: bool, *args: Any, **kwargs: Any) -> Any:
    """``DPOTrainer.push_to_hub``: Trainer's push of what the run saved (``args``: its commit_message, blocking, token,
    revision, private), or the merged model, each through :func:`push_explained`."""
    if merge_adapter:
        commit_message, _, token, revision, private = args
        push = functools.partial(push_merged, trainer, commit_message, token, revision, private, **kwargs)
        folder = Path(trainer.args.output_dir) / MERGED_FOLDER
    else:
        push, folder = functools.partial(Trainer.push_to_hub, trainer, *args, **kwargs), trainer.args.output_dir
    return push_explained(push, lambda: trainer.hub_model_id or trainer.args.hub_model_id, folder)


class CheckpointPushWatch(TrainerCallback):
    """Reports the outcome of the background pushes Trainer starts at each save (``push_to_hub=True`` with a
    ``hub_strategy`` other than "end"): a warning for each that fails, and at the end of training how many failed
    and the last that landed. Training never waits for them."""

    def __init__(self, trainer: Any):
        self.trainer = trainer
        self.watched: set[int] = set()
        self.landed: list[int] = []  # steps whose checkpoint push the Hub confirmed
        self.failed: list[int] = []

    def on_save(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        in_progress = getattr(self.trainer, "push_in_progress", None)
        for job in getattr(in_progress, "jobs", None) or []:
            if id(job) not in self.watched:
                self.watched.add(id(job))
                job.add_done_callback(functools.partial(self._done, state.global_step, args.output_dir))

    def _done(self, step: int, output_dir: str, job: Any) -> None:
        error = None if job.cancelled() else job.exception()
        if error is None:
            self.landed.append(step)
            return
        self.failed.append(step)
        logger.warning(
            "pushing the checkpoint of step %d to %s failed (%s: %s). It is safe on local disk in %s; training goes "
            "on, and the next save pushes the latest model again",
            step, self.trainer.hub_model_id, type(error).__name__, str(error).splitlines()[0],
            f"{output_dir}/checkpoint-{step}",
        )  # fmt: skip

    def on_train_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        if self.failed:
            last = f"the last that landed was step {max(self.landed)}" if self.landed else "none landed"
            logger.warning(
                "%d checkpoint push(es) to %s failed (steps %s); %s. trainer.push_to_hub() pushes the final model",
                len(set(self.failed)), self.trainer.hub_model_id, sorted(set(self.failed)), last,
            )  # fmt: skip
