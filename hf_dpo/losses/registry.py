"""The loss registry: every loss type by name, what it needs (a reference, its parameters), and the parsing of a
``loss_type`` setting, in one place.

A loss is ``fn(pair, *, beta, <its parameters>) -> losses [B]``: its keyword-only parameters name the fields of
:class:`~hf_dpo.losses.settings.LossSettings` (or ``reward_mean``, the running state of ``bco_pair``) it reads, and
:func:`apply` passes it exactly those. Adding a loss is one decorated function (see :mod:`hf_dpo.losses.paired`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from hf_dpo.losses.pair_logps import PairLogps, logratio_rewards

UNPAIRED_LOSS_TYPES = ("kto", "apo_zero_unpaired")  # losses on rows of one completion and a label (KTO)
# losses on rows of several ranked or scored answers to one prompt (hf_dpo.losses.lists); pairs are lists of 2
LIST_LOSS_TYPES = ("plackett_luce", "all_pairs", "best_vs_rest", "nca")

LossFn = Callable[..., torch.Tensor]
RewardsFn = Callable[[PairLogps, float], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class LossSpec:
    """A registered loss: its function, whether it reads reference log-probs, the implicit rewards it compares,
    and the keyword-only parameters it takes."""

    fn: LossFn
    needs_reference: bool
    rewards: RewardsFn
    parameters: tuple[str, ...]


_REGISTRY: dict[str, LossSpec] = {}


def register_loss(
    name: str, needs_reference: bool = True, rewards: RewardsFn = logratio_rewards
) -> Callable[[LossFn], LossFn]:
    """Register ``fn(pair: PairLogps, *, beta, ...) -> losses [B]`` under ``name``; ``rewards`` gives the implicit
    rewards the loss compares (reported as ``rewards/*``). Every parameter after ``pair`` must be keyword-only."""

    def decorator(fn: LossFn) -> LossFn:
        if name in _REGISTRY:
            raise ValueError(f"loss_type {name!r} is already registered")
        signature = list(inspect.signature(fn).parameters.values())
        loose = [p.name for p in signature[1:] if p.kind is not inspect.Parameter.KEYWORD_ONLY]
        if loose:
            raise TypeError(f"loss {name!r}: parameters after the pair must be keyword-only, not {loose}")
        _REGISTRY[name] = LossSpec(fn, needs_reference, rewards, tuple(p.name for p in signature[1:]))
        return fn

    return decorator


def spec(name: str) -> LossSpec:
    return _REGISTRY[name]


def apply(name: str, pair: PairLogps, values: Mapping[str, Any]) -> torch.Tensor:
    """The per-pair losses of loss ``name``, given the ``values`` its parameters name."""
    loss = _REGISTRY[name]
    return loss.fn(pair, **{parameter: values[parameter] for parameter in loss.parameters})


def registered_loss_types() -> tuple[str, ...]:
    """Every accepted loss: the registered paired ones (including any registered with :func:`register_loss` after
    import), the list ones and the unpaired ones."""
    return (*_REGISTRY, *LIST_LOSS_TYPES, *UNPAIRED_LOSS_TYPES)


def as_loss_types(loss_type: str | Sequence[str]) -> list[str]:
    """``"sigmoid"``, ``"sigmoid,bco_pair"`` or ``["sigmoid", "bco_pair"]`` -> a list of names.

    >>> as_loss_types("sigmoid, bco_pair")
    ['sigmoid', 'bco_pair']
    """
    names = loss_type.split(",") if isinstance(loss_type, str) else list(loss_type)
    return [name.strip() for name in names]


def is_unpaired(loss_type: str | Sequence[str]) -> bool:
    """Whether ``loss_type`` trains on unpaired rows (KTO)."""
    return any(name in UNPAIRED_LOSS_TYPES for name in as_loss_types(loss_type))


def is_list_loss(loss_type: str | Sequence[str]) -> bool:
    """Whether ``loss_type`` names a loss on lists of answers (which also trains on pairs, as lists of 2)."""
    return any(name in LIST_LOSS_TYPES for name in as_loss_types(loss_type))


def needs_reference(loss_type: str | Sequence[str]) -> bool:
    """Whether any of the losses uses reference log-probs (otherwise no reference is built or run)."""
    names = as_loss_types(loss_type)
    return (
        is_unpaired(names)
        or is_list_loss(names)
        or any(_REGISTRY[name].needs_reference for name in names if name in _REGISTRY)
    )


def check_names(names: Sequence[str], paired: bool = False) -> None:
    """A clear error for a name that is no loss type (with ``paired``, no loss on pairs)."""
    known = set(_REGISTRY) if paired else {*_REGISTRY, *LIST_LOSS_TYPES, *UNPAIRED_LOSS_TYPES}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"loss_type={unknown[0]!r} is not one of {', '.join(registered_loss_types())}")
