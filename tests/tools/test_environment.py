"""``hf-dpo env``: every version a bug report needs, from package metadata, importing only torch."""

import importlib.metadata
import json
import platform
import subprocess
import sys

from hf_dpo.cli.dispatch import main
from hf_dpo.tools.environment import environment, package_version


def test_the_report_names_every_version_and_the_accelerator(capsys):
    assert main(["env"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("Paste this into your bug report:")
    for name in ("torch", "transformers", "peft", "accelerate", "datasets", "bitsandbytes", "deepspeed", "trl"):
        assert f"- {name}: {importlib.metadata.version(name)}\n" in printed, name
    assert f"- Python: {platform.python_version()}\n" in printed and "- hf_dpo: 0." in printed
    assert "- accelerator: CPU only" in printed  # the test machines have no GPU


def test_a_missing_package_says_so():
    assert package_version("no-such-package-hf-dpo") == "not installed"


def test_it_imports_no_library_it_only_names():
    """The versions come from metadata: transformers, peft, datasets, deepspeed and bitsandbytes stay unimported
    (each costs seconds; deepspeed probes the accelerator)."""
    script = (
        "import json, sys; from hf_dpo.tools.environment import environment; environment(); "
        "print(json.dumps(sorted(m for m in ('transformers', 'peft', 'datasets', 'deepspeed', 'bitsandbytes', 'trl') "
        "if m in sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True)
    assert json.loads(result.stdout.splitlines()[-1]) == []
    assert set(environment()) >= {"hf_dpo", "Python", "platform", "torch", "accelerator"}
