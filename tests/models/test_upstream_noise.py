"""hf_dpo.models.upstream_noise: exactly the known upstream warnings are silenced, bitsandbytes is held back until released, and the
command releases it for the runs that need it. The real command's quiet runs are in tests/test_entry_point.py."""

import importlib.util
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
