"""``hf-dpo env``: the versions and the accelerator a bug report needs, as Markdown ready to paste.

    hf-dpo env

Versions come from the installed packages' metadata, so nothing is imported but torch (for the accelerator and its
CUDA/ROCm build) and accelerate's config path; a package that is not installed says so.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from typing import Any

# (label, distribution name) in the order a report reads them
PACKAGES = (
    ("torch", "torch"),
    ("transformers", "transformers"),
    ("peft", "peft"),
    ("accelerate", "accelerate"),
    ("datasets", "datasets"),
    ("bitsandbytes", "bitsandbytes"),
    ("deepspeed", "deepspeed"),
    ("trl", "trl"),
    ("huggingface_hub", "huggingface_hub"),
)


def package_version(name: str) -> str:
    """``name``'s installed version, or "not installed"."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def accelerator() -> str:
    """The devices torch sees (their names and count, the CUDA or ROCm build it was compiled for), or "CPU only"."""
    try:
        import torch
    except ImportError:
        return "unknown (torch is not installed)"
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())]
        build = f"ROCm {torch.version.hip}" if torch.version.hip else f"CUDA {torch.version.cuda}"
        counted = {name: names.count(name) for name in names}
        return ", ".join(f"{count} x {name}" for name, count in counted.items()) + f" ({build})"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "Apple MPS"
    if hasattr(torch, "xpu") and torch.xpu.is_available():
        return ", ".join(torch.xpu.get_device_name(index) for index in range(torch.xpu.device_count())) + " (XPU)"
    return "CPU only" + (f" (torch built with CUDA {torch.version.cuda})" if torch.version.cuda else "")


def accelerate_default_config() -> str:
    """The path of accelerate's default config (``accelerate config`` writes it; ``accelerate launch`` without
    ``--config_file`` reads it), or "none"."""
    try:
        from accelerate.commands.config.config_args import default_config_file
    except ImportError:
        return "none (accelerate is not installed)"
    return default_config_file if os.path.isfile(default_config_file) else "none"


def environment() -> dict[str, Any]:
    """``{label: value}`` of everything :func:`report` prints."""
    import hf_dpo

    info = {
        "hf_dpo": hf_dpo.__version__,
        "Python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    info |= {label: package_version(name) for label, name in PACKAGES}
    info["accelerator"] = accelerator()
    info["accelerate default config"] = accelerate_default_config()
    return info


def report() -> str:
    """The environment as Markdown list lines, with a line saying what it is for."""
    lines = [f"- {label}: {value}" for label, value in environment().items()]
    return "\n".join(["Paste this into your bug report:", "", *lines])


def run(_options: Any = None) -> int:
    print(report())
    return 0
