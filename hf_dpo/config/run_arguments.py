"""What ``hf-dpo train`` takes: the model, data and run fields beside `DPOTrainingArguments`, and the parsing of a
recipe and flags into the four argument classes.

    hf-dpo train recipes/demo.yaml --beta 0.2     # parse_train_args(["recipes/demo.yaml", "--beta", "0.2"])

Recipe keys and flags are checked against the classes' fields by :mod:`hf_dpo.config.recipe`; a field's own validation
that fails (``__post_init__``) is a :class:`~hf_dpo.config.recipe.UserError` too, so ``hf-dpo`` reports it in one line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hf_dpo.config.data_sources import DataSource, data_sources
from hf_dpo.config.recipe import UserError, check_flags, check_recipe, field_types, read_recipe

# Where vision-language families keep their vision tower and projector (module names under the model), and the regex
# peft's exclude_modules full-matches against every module inside them: LoRA leaves them alone unless asked.
VISION_MODULE_NAMES = ("visual", "vision_tower", "vision_model", "multi_modal_projector", "connector")
VISION_MODULES_PATTERN = rf"(.*\.)?({'|'.join(VISION_MODULE_NAMES)})(\..*)?"


@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        default="HuggingFaceTB/SmolLM2-135M-Instruct",
        metadata={
            "help": "Hub id or local folder of the policy (a causal LM or a vision-language model), or a copy shipped "
            "in a Python package, "
            "named explicitly: 'hf_dpo:SmolLM2-135M-Instruct' (the demo's; see hf_dpo.models.loading)."
        },
    )
    ref_model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "A separate reference model, loaded like the policy (same dtype, quantisation, ...); default: "
            "the policy with LoRA disabled, or a frozen copy."
        },
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] | None = field(
        default=None, metadata={"help": "Weights dtype (None: the library default)."}
    )
    attn_implementation: str | None = field(
        default=None, metadata={"help": "Attention kernel, e.g. 'sdpa', 'eager', 'flash_attention_2'."}
    )
    load_in_4bit: bool = field(
        default=False,
        metadata={
            "help": "QLoRA: load the policy in 4-bit NF4 with double quantisation (bitsandbytes); needs use_peft."
        },
    )
    load_in_8bit: bool = field(
        default=False, metadata={"help": "Load the policy in 8-bit (bitsandbytes); needs use_peft."}
    )
    use_peft: bool = field(default=False, metadata={"help": "Train LoRA adapters instead of all weights."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator (scale = alpha / r)."})
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the LoRA input."})
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["all-linear"],
        metadata={
            "help": "Module names to adapt (a YAML list, several flag values, or comma-separated), or 'all-linear'."
        },
    )
    lora_vision_tower: bool = field(
        default=False,
        metadata={
            "help": "A vision-language model: adapt the vision tower and its projector too (default: the "
            "lora_target_modules of the language model only)."
        },
    )

    def __post_init__(self) -> None:
        problems = []
        if self.load_in_4bit and self.load_in_8bit:
            problems.append("load_in_4bit and load_in_8bit are exclusive; choose one")
        if (self.load_in_4bit or self.load_in_8bit) and not self.use_peft:
            problems.append("load_in_4bit/load_in_8bit need use_peft: a quantized model trains through LoRA adapters")
        if self.lora_r <= 0:
            problems.append(f"lora_r={self.lora_r} must be > 0")
        if not self.target_modules():
            problems.append("lora_target_modules is empty; name modules or give 'all-linear'")
        if problems:
            raise ValueError("Invalid ModelArguments: " + "; ".join(problems))

    def target_modules(self) -> list[str] | str:
        """``lora_target_modules`` as peft takes it: ``"all-linear"``, or the names, commas split."""
        names = [name.strip() for item in self.lora_target_modules for name in item.split(",") if name.strip()]
        return "all-linear" if names == ["all-linear"] else names

    def init_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self.dtype is not None:
            kwargs["dtype"] = self.dtype
        if self.attn_implementation is not None:
            kwargs["attn_implementation"] = self.attn_implementation
        if self.load_in_4bit or self.load_in_8bit:
            kwargs.update(load_in_4bit=self.load_in_4bit, load_in_8bit=self.load_in_8bit)
        return kwargs

    def peft_config(self) -> Any:
        if not self.use_peft:
            return None
        from peft import LoraConfig

        return LoraConfig(
            r=self.lora_r,
            lora_alpha=self.lora_alpha,
            lora_dropout=self.lora_dropout,
            target_modules=self.target_modules(),
            exclude_modules=None if self.lora_vision_tower else VISION_MODULES_PATTERN,  # nothing on a text model
            task_type="CAUSAL_LM",
        )


@dataclass
class DataArguments:
    dataset_name: str = field(
        default="hf_dpo:concise_qa",
        metadata={
            "help": "Hub id, local folder or data file (json/jsonl/csv/parquet) of a preference dataset, or "
            "'hf_dpo:concise_qa', the demo data shipped in this package."
        },
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Dataset configuration name."})
    dataset_train_split: str = field(default="train", metadata={"help": "Split to train on."})
    dataset_test_split: str | None = field(
        default="test",
        metadata={
            "help": "Split to evaluate on (None: none). A folder of train.jsonl and test.jsonl (or .json, .csv, "
            ".parquet) has both splits; a single file has only the train split: see eval_split_size."
        },
    )
    eval_split_size: float | None = field(
        default=None,
        metadata={
            "help": "Hold out part of the train split for evaluation, for data without a test split (one JSONL "
            "file): a fraction in (0, 1) or a number of rows (>= 1), drawn at random with the run's seed."
        },
    )
    datasets: list[dict[str, Any]] | None = field(
        default=None,
        metadata={
            "help": "Several datasets mixed into the training set (in a recipe; instead of dataset_name): a list of "
            "entries {path, name, split, data_files, column_mapping, and fraction or rows}, each drawn with the "
            "run's seed, then mixed and shuffled; evaluation rows come from eval_split_size. See "
            "hf_dpo/config/data_sources.py."
        },
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N evaluation rows."})

    def __post_init__(self) -> None:
        if self.datasets is not None:
            data_sources(self.datasets)  # each entry checked now: a mistake is named before anything loads
        if isinstance(self.dataset_test_split, str) and self.dataset_test_split.lower() in ("", "none", "null"):
            self.dataset_test_split = None  # a flag cannot spell YAML's null
        size = self.eval_split_size
        if size is not None and not (0 < size < 1 or (size >= 1 and float(size).is_integer())):
            raise ValueError(
                f"Invalid DataArguments: eval_split_size={size!r} must be a fraction in (0, 1) or a whole number of "
                "rows >= 1"
            )

    def sources(self) -> list[DataSource]:
        """The entries of ``datasets`` (empty: the run reads ``dataset_name``)."""
        return data_sources(self.datasets) if self.datasets is not None else []

    def dataset_names(self) -> list[str]:
        """The datasets the run reads: each source's path, or ``dataset_name``."""
        return [source.path for source in self.sources()] or [self.dataset_name]


@dataclass
class RunArguments:
    task: str | None = field(
        default=None,
        metadata={
            "help": "A built-in task whose checker scores greedy answers on the evaluation split before and after "
            "training ('concise_qa' for the demo)."
        },
    )
    task_max_new_tokens: int = field(default=32, metadata={"help": "Greedy answer length for the task check."})
    plot: bool = field(default=True, metadata={"help": "Write OUTPUT_DIR/training.png after training."})
    push_merged: bool = field(
        default=False,
        metadata={
            "help": "With --push_to_hub: push the LoRA adapter merged into its base model (a plain model) instead "
            "of the adapter."
        },
    )
    # the fields the recipe or the flags set (of every argument class), as parse_train_args found them: a default
    # the command chooses for the user (the output folder's name, no duplicate final checkpoint) yields to a choice
    given: set[str] = field(default_factory=set, init=False, repr=False)


ARGUMENT_CLASSES = (ModelArguments, DataArguments, RunArguments)


def default_recipe() -> Path:
    """recipes/demo.yaml: inside the installed wheel, or at the top of a source checkout."""
    for candidate in (
        Path(__file__).parents[1] / "recipes" / "demo.yaml",  # hf_dpo/recipes/ inside the wheel
        Path(__file__).parents[2] / "recipes" / "demo.yaml",  # the top of a source checkout
    ):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("recipes/demo.yaml is missing from this installation")


def argument_parser() -> Any:
    """The ``HfArgumentParser`` of every argument class, whose argparse errors are :class:`UserError`\\ s (one line,
    no usage dump) and which takes no abbreviated flags (``--max_step`` is a typo, named as one, not ``--max_steps``)."""
    from transformers import HfArgumentParser

    from hf_dpo.config.training_arguments import DPOTrainingArguments

    class Parser(HfArgumentParser):
        def error(self, message: str) -> Any:  # argparse's own errors: a bad flag value, a missing one
            raise UserError(message)

    return Parser((*ARGUMENT_CLASSES, DPOTrainingArguments), prog="hf-dpo train", allow_abbrev=False)


def default_output_dir(model_name: str, dataset_name: str) -> str:
    """Where a run goes when neither recipe nor flags say: ``outputs/<model>-<data>``, named from both, so two runs
    on different models or data do not overwrite each other (TrainingArguments' own default is ``trainer_output``).

    >>> default_output_dir("HuggingFaceTB/SmolLM2-135M-Instruct", "data/pairs.jsonl")
    'outputs/SmolLM2-135M-Instruct-pairs'
    >>> default_output_dir("hf_dpo:SmolLM2-135M-Instruct", "trl-lib/ultrafeedback_binarized")
    'outputs/SmolLM2-135M-Instruct-ultrafeedback_binarized'
    """

    def short(name: str) -> str:
        base = Path(name.removeprefix("hf_dpo:").rstrip("/")).name
        for suffix in (".jsonl", ".json", ".csv", ".parquet", ".arrow", ".txt"):
            base = base.removesuffix(suffix)
        return re.sub(r"[^\w.-]+", "_", base) or "run"

    return f"outputs/{short(model_name)}-{short(dataset_name)}"


def _given_names(values: dict[str, Any], flags: list[str]) -> set[str]:
    """The fields a recipe's ``values`` and the ``flags`` set."""
    return set(values) | {flag.split("=", 1)[0].removeprefix("--") for flag in flags if flag.startswith("--")}


def parse_train_args(argv: list[str]) -> tuple[Any, ...]:
    """``[RECIPE.yaml] [--field value ...]`` -> (ModelArguments, DataArguments, RunArguments, DPOTrainingArguments).

    Recipe keys are checked and converted to their fields' types (:mod:`hf_dpo.config.recipe`), flags are checked for
    unknown names, and a field's own validation (``__post_init__``) that fails is a :class:`UserError` too. Without an
    ``output_dir`` from either, the run goes to :func:`default_output_dir`. ``RunArguments.given`` lists the fields
    that were set.
    """
    recipe = Path(argv[0]) if argv and not argv[0].startswith("-") else None
    flags = argv[1:] if recipe else argv
    if recipe is None and not flags:
        recipe = default_recipe()
    values = read_recipe(recipe) if recipe is not None else {}
    if isinstance(values.get("resume_from_checkpoint"), bool):  # a path field that Trainer.train also takes as a bool
        values["resume_from_checkpoint"] = str(values["resume_from_checkpoint"]).lower()  # the word, as a flag gives
    parser = argument_parser()
    values = check_recipe(values, parser.dataclass_types, source=str(recipe))
    parser.set_defaults(**values)
    _, leftover = parser.parse_known_args(flags)
    check_flags(leftover, [f"--{name}" for name in field_types(parser.dataclass_types)])
    parsed = _parse(parser, flags)
    given = _given_names(values, flags)
    if "output_dir" not in given:
        model_args, data_args = parsed[0], parsed[1]
        data = data_args.dataset_name if data_args.datasets is None else "mix"
        parser.set_defaults(output_dir=default_output_dir(model_args.model_name_or_path, data))
        parsed = _parse(parser, flags)
    if parsed[1].datasets is not None:
        _check_mixture(parsed[1], given)
    parsed[2].given = given
    return parsed


def _check_mixture(data_args: DataArguments, given: set[str]) -> None:
    """``datasets`` replaces ``dataset_name`` and its splits: both given is a mistake; the test split's default
    ("test") does not apply to a mixture, whose evaluation rows come from ``eval_split_size``."""
    for name in ("dataset_name", "dataset_config", "dataset_train_split"):
        if name in given:
            raise UserError(
                f"datasets and {name} are exclusive: each entry of datasets names its path, name and split"
            )
    if "dataset_test_split" in given and data_args.dataset_test_split is not None:
        raise UserError(
            "datasets: the evaluation rows of a mixture are held out of it with eval_split_size (e.g. 0.05); "
            "dataset_test_split does not apply"
        )
    data_args.dataset_test_split = None


def _parse(parser: Any, flags: list[str]) -> tuple[Any, ...]:
    try:
        return parser.parse_args_into_dataclasses(args=flags, look_for_args_file=False)
    except UserError:
        raise
    except ValueError as error:  # a field's validation in __post_init__: a bad setting
        raise UserError(str(error)) from error
