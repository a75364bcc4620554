"""Shared fixtures; the builders live in tests/tiny.py so test modules can import them."""

import os
import tempfile

import pytest
from tiny import build_tokenizer
from transformers import PreTrainedTokenizerFast

# Precomputed reference log-probs are cached on disk; keep the tests' cache out of the user's home.
os.environ.setdefault("HF_DPO_CACHE", tempfile.mkdtemp(prefix="hf_dpo_test_cache_"))


@pytest.fixture(scope="session")
def tokenizer() -> PreTrainedTokenizerFast:
    return build_tokenizer()
