"""Shared fixtures; the builders live in tests/tiny.py so test modules can import them."""

import pytest
from tiny import build_tokenizer
from transformers import PreTrainedTokenizerFast


@pytest.fixture(scope="session")
def tokenizer() -> PreTrainedTokenizerFast:
    return build_tokenizer()
