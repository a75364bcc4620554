"""Tokens never leave the process in a run's arguments: a pickle of them (``training_args.bin``, written with every
save and pushed to the Hub) holds no ``*_token`` field and no token in ``model_init_kwargs``; their dict and text
forms show a placeholder. Copies in memory keep the token, so ``push_to_hub`` still authenticates."""

from __future__ import annotations

import copy
from typing import Any


class TokensRedacted:
    """Mixed into `DPOTrainingArguments` before `TrainingArguments`: its pickled, dict and text forms hide tokens."""

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in [key for key in state if key.endswith("_token")]:
            state[name] = None
        if isinstance(state.get("model_init_kwargs"), dict):
            state["model_init_kwargs"] = without_tokens(state["model_init_kwargs"])
        return state

    def __copy__(self) -> Any:
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        return clone

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        clone = object.__new__(type(self))
        memo[id(self)] = clone
        clone.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return clone

    def to_dict(self) -> dict[str, Any]:
        """As `TrainingArguments.to_dict` (which hides `*_token` fields), hiding a token in `model_init_kwargs` too."""
        values = super().to_dict()
        if isinstance(values.get("model_init_kwargs"), dict):
            values["model_init_kwargs"] = without_tokens(values["model_init_kwargs"], "<TOKEN>")
        return values

    def __str__(self) -> str:
        text = super().__str__()
        token = (self.model_init_kwargs or {}).get("token") if isinstance(self.model_init_kwargs, dict) else None
        return text.replace(token, "<TOKEN>") if isinstance(token, str) and token else text

    __repr__ = __str__


def without_tokens(kwargs: dict[str, Any], placeholder: str | None = None) -> dict[str, Any]:
    """``kwargs`` without the value of its ``token`` key (how ``from_pretrained`` takes a Hub token): the key
    dropped, or its value replaced by ``placeholder``."""
    cleaned = {key: value for key, value in kwargs.items() if key != "token"}
    if placeholder is not None and "token" in kwargs:
        cleaned["token"] = placeholder
    return cleaned
