"""hf_dpo.models.upstream_noise: exactly the known upstream warnings are silenced, bitsandbytes is held back until released, and the
command releases it for the runs that need it, and the log lines of upstream libraries nobody can act on are dropped.
The real command's quiet runs are in tests/cli/test_entry_point.py."""

import importlib.util
import logging
import sys
import warnings

import pytest

from hf_dpo.cli.build_trainer import needs_bitsandbytes
from hf_dpo.config.run_arguments import ModelArguments
from hf_dpo.config.training_arguments import DPOTrainingArguments
from hf_dpo.models.held_back import bitsandbytes_held_back, release_bitsandbytes
from hf_dpo.models.upstream_noise import PEFT_OFFLINE_BASE_CONFIG, PEFT_READS_DEPRECATED_CHECKPOINTING, silenced


@pytest.mark.parametrize("known", [PEFT_READS_DEPRECATED_CHECKPOINTING, PEFT_OFFLINE_BASE_CONFIG])
def test_silenced_hides_exactly_the_known_warning(known):
    samples = {
        PEFT_READS_DEPRECATED_CHECKPOINTING: "`is_gradient_checkpointing` is deprecated and will be removed in v6.",
        PEFT_OFFLINE_BASE_CONFIG: "Could not find a config file in org/model - will assume that the vocabulary was "
        "not modified.",
    }
    _, category = known
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with silenced(known):
            warnings.warn(samples[known], category, stacklevel=1)
            warnings.warn("something else " + samples[known], category, stacklevel=1)  # same category, other text
            warnings.warn(samples[known], DeprecationWarning, stacklevel=1)  # same text, other category
    assert [str(warning.message) for warning in caught] == ["something else " + samples[known], samples[known]]


def test_bitsandbytes_is_held_back_until_released(monkeypatch):
    """While held back, ``import bitsandbytes`` fails and the availability checks of peft and transformers say no;
    released, they say yes again (their cached answers forgotten)."""
    from peft.import_utils import is_bnb_available
    from transformers.utils.import_utils import is_bitsandbytes_available

    installed = importlib.util.find_spec("bitsandbytes") is not None
    monkeypatch.delitem(sys.modules, "bitsandbytes", raising=False)  # as in a fresh interpreter; restored after
    with bitsandbytes_held_back():
        assert importlib.util.find_spec("bitsandbytes") is None
        with pytest.raises(ModuleNotFoundError):
            import bitsandbytes  # noqa: F401
        assert not is_bnb_available() and not is_bitsandbytes_available()
        release_bitsandbytes()
        assert is_bnb_available() is installed and is_bitsandbytes_available() is installed
    assert "bitsandbytes" not in sys.modules  # nothing left behind (monkeypatch puts the real module back)


def test_what_needs_bitsandbytes(tmp_path):
    args = DPOTrainingArguments(output_dir=str(tmp_path), report_to="none")
    plain = ModelArguments(model_name_or_path="hf_dpo:SmolLM2-135M-Instruct")
    assert not needs_bitsandbytes(plain, args)
    assert needs_bitsandbytes(ModelArguments(load_in_4bit=True, use_peft=True), args)
    assert needs_bitsandbytes(plain, DPOTrainingArguments(output_dir=str(tmp_path), optim="paged_adamw_8bit"))
    kwargs = DPOTrainingArguments(output_dir=str(tmp_path), model_init_kwargs={"quantization_config": {}})
    assert needs_bitsandbytes(plain, kwargs)
    (tmp_path / "saved_4bit").mkdir()  # a checkpoint saved quantized: its config.json says so
    (tmp_path / "saved_4bit" / "config.json").write_text('{"quantization_config": {"quant_method": "bitsandbytes"}}')
    assert needs_bitsandbytes(ModelArguments(model_name_or_path=str(tmp_path / "saved_4bit")), args)


@pytest.mark.parametrize(
    ("logger_name", "message"),
    [
        ("DeepSpeed", "Setting accelerator to CPU. If you have GPU or other accelerator, we were unable to detect it."),
        ("bitsandbytes.backends.cpu.ops", "Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please "
                                          "make sure you already `pip install kernels`"),
        ("kernels._internals.hf_hub", "Skipping publisher trust check for 'kernels-community/quantization-bitsandbytes' "
                                      "because Hugging Face Hub is in offline mode."),
        ("matplotlib.font_manager", "Matplotlib is building the font cache; this may take a moment."),
    ],
)  # fmt: skip
def test_upstream_log_lines_nobody_can_act_on_are_dropped_and_nothing_else(logger_name, message, caplog):
    """The filters sit on the library's own logger, so they hold however the library configures it later (DeepSpeed
    sets its level and handler when imported); other lines of the same logger still show."""
    from hf_dpo.models.upstream_noise import QUIET_LOG_LINES, quiet_upstream_logs

    quiet_upstream_logs()
    quiet_upstream_logs()  # once is enough; twice adds nothing
    logger = logging.getLogger(logger_name)
    assert len([f for f in logger.filters if type(f).__name__ == "_DropLines"]) == 1
    assert logger_name in QUIET_LOG_LINES
    with caplog.at_level(logging.INFO, logger=logger_name):
        logger.propagate, propagate = True, logger.propagate  # DeepSpeed's logger does not propagate to caplog
        try:
            logger.warning(message, "detail")
            logger.warning("a different line from the same library")
        finally:
            logger.propagate = propagate
    said = {record.getMessage() for record in caplog.records}  # an earlier test may leave a second handler on it
    assert said == {"a different line from the same library"}
