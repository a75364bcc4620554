"""The settings of a run's loss as one frozen value, built once from the run's arguments and checked there."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from hf_dpo.losses.pair_logps import F_DIVERGENCES
from hf_dpo.losses.registry import LIST_LOSS_TYPES, as_loss_types, check_names, is_list_loss, is_unpaired

# Losses built on the chosen-rejected score difference: the only ones a non-default f-divergence applies to (TRL).
F_DIVERGENCE_LOSS_TYPES = ("sigmoid", "sigmoid_norm", "hinge", "ipo", "exo_pair", "robust", "discopop", "sft")


@dataclass(frozen=True)
class LossSettings:
    """What the losses read, with the names of `DPOTrainingArguments` where they come from it.

    Attributes:
        loss_types: the loss names (several are summed with ``loss_weights``, MPO style).
        loss_weights: one weight per loss type.
        beta: β, the KL strength.
        label_smoothing: ε (cDPO, rDPO, EXO, AOT, SimPO).
        rpo_alpha: RPO's weight of the chosen NLL per token; ``None``: off.
        simpo_gamma, orpo_lambda, discopop_tau: the hyper-parameters of single losses.
        f_divergence_type, f_alpha_divergence_coef: f-DPO's divergence and its α.
        use_weighting: WPO's pair weights.
        bco_pair_running_mean: ``bco_pair``'s δ is the running mean of the rewards (the paper) instead of 0 (TRL).
        desirable_weight, undesirable_weight: KTO's λ_D and λ_U.
        router_aux_loss_coef: the weight of a mixture-of-experts router's load-balancing loss (0: none); resolved
            for the model by the trainer (``None`` in the arguments means the model config's own).
        list_pair_loss_type: the paired loss ``all_pairs`` applies to every ordered pair of a list.
        score_temperature: α of ``best_vs_rest`` and ``nca``: their targets are ``softmax(scores / α)``; 0: the
            best answer(s) alone.
    """

    loss_types: tuple[str, ...] = ("sigmoid",)
    loss_weights: tuple[float, ...] | None = None
    beta: float = 0.1
    label_smoothing: float = 0.0
    rpo_alpha: float | None = None
    simpo_gamma: float = 0.5
    orpo_lambda: float = 0.1
    discopop_tau: float = 0.05
    f_divergence_type: str = "reverse_kl"
    f_alpha_divergence_coef: float = 0.5
    use_weighting: bool = False
    bco_pair_running_mean: bool = False
    desirable_weight: float = 1.0
    undesirable_weight: float = 1.0
    router_aux_loss_coef: float = 0.0
    list_pair_loss_type: str = "sigmoid"
    score_temperature: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "loss_types", tuple(as_loss_types(self.loss_types)))
        check_names(self.loss_types)
        check_list_settings(self.list_pair_loss_type, self.score_temperature)
        if self.loss_weights is not None:
            object.__setattr__(self, "loss_weights", tuple(self.loss_weights))
            if len(self.loss_weights) != len(self.loss_types):
                raise ValueError(
                    f"loss_weights={list(self.loss_weights)} must give one weight per loss type in "
                    f"{list(self.loss_types)}"
                )
        check_f_divergence(self.f_divergence_type or "reverse_kl", self.loss_types)

    @classmethod
    def from_args(cls, args: Any, **resolved: Any) -> LossSettings:
        """The settings a run's `DPOTrainingArguments` (or any object with those attributes) give; ``resolved``:
        values settled elsewhere (the router's coefficient, which depends on the model)."""
        values = {field.name: getattr(args, field.name) for field in fields(cls) if hasattr(args, field.name)}
        values = {**values, "router_aux_loss_coef": 0.0, "loss_types": tuple(as_loss_types(args.loss_type))}
        return cls(**{**values, **resolved})

    @property
    def weights(self) -> tuple[float, ...]:
        return self.loss_weights or (1.0,) * len(self.loss_types)

    @property
    def unpaired(self) -> bool:
        """Whether the rows are KTO's (one completion and a label each)."""
        return is_unpaired(self.loss_types)

    @property
    def lists(self) -> bool:
        """A loss on lists of answers (pairs train as lists of 2)."""
        return is_list_loss(self.loss_types)

    @property
    def kl_estimate(self) -> bool:
        """KTO's reference point needs each row's mismatched KL counterpart (``apo_zero_unpaired`` needs none)."""
        return "kto" in self.loss_types


def check_f_divergence(divergence: str, loss_types: Any) -> None:
    """A non-default f-divergence only for the losses built on the chosen-rejected score difference (as TRL)."""
    if divergence not in F_DIVERGENCES:
        raise ValueError(f"f_divergence_type={divergence!r} is not one of {', '.join(F_DIVERGENCES)}")
    others = [name for name in loss_types if name not in F_DIVERGENCE_LOSS_TYPES]
    if divergence != "reverse_kl" and others:
        raise ValueError(
            f"f_divergence_type={divergence!r} applies only to loss types {', '.join(F_DIVERGENCE_LOSS_TYPES)}; "
            f"{others} use the log-ratios themselves: use f_divergence_type='reverse_kl' with them"
        )


def check_list_settings(list_pair_loss_type: str, score_temperature: float) -> None:
    """``all_pairs`` applies one paired loss; the score temperature is a temperature (0: the best answer alone)."""
    if list_pair_loss_type in LIST_LOSS_TYPES or is_unpaired(list_pair_loss_type):
        raise ValueError(
            f"list_pair_loss_type={list_pair_loss_type!r} must be a loss on pairs (sigmoid, ipo, hinge, ...), which "
            "all_pairs applies to every ordered pair of a list"
        )
    check_names([list_pair_loss_type], paired=True)
    if not score_temperature >= 0:
        raise ValueError(f"score_temperature={score_temperature!r} must be >= 0 (0: the best answer takes the target)")
