"""The accelerate configs shipped in hf_dpo/cli/accelerate_configs/ load as accelerate reads them, and every
multi-GPU recipe's command names one of them."""

import re
from pathlib import Path

import pytest
from accelerate.commands.config.config_args import ClusterConfig

from hf_dpo.cli.launch import CONFIGS_DIR, accelerate_config_names

RECIPES = Path(__file__).parents[1] / "recipes"
# name: (distributed_type, ZeRO stage or FSDP version, processes)
EXPECTED = {
    "single_gpu": ("NO", None, 1),
    "multi_gpu": ("MULTI_GPU", None, 8),
    "zero1": ("DEEPSPEED", 1, 8),
    "zero2": ("DEEPSPEED", 2, 8),
    "zero3": ("DEEPSPEED", 3, 8),
    "fsdp2": ("FSDP", 2, 8),
}


def test_the_shipped_configs_are_the_named_ones():
    assert accelerate_config_names() == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_accelerate_configs_load(name):
    config = ClusterConfig.from_yaml_file(CONFIGS_DIR / f"{name}.yaml")
    kind, level, processes = EXPECTED[name]
    assert config.distributed_type.value == kind and config.mixed_precision == "bf16"
    assert config.num_processes == processes and not config.use_cpu
    if kind == "DEEPSPEED":
        assert config.deepspeed_config["zero_stage"] == level
    if kind == "FSDP":
        assert config.fsdp_config["fsdp_version"] == level
    assert f"hf-dpo train --accelerate_config {name} " in (CONFIGS_DIR / f"{name}.yaml").read_text()


@pytest.mark.parametrize("recipe", sorted((RECIPES / "multi_gpu").glob("*.yaml")), ids=lambda path: path.name)
def test_multi_gpu_recipes_say_how_to_launch_them_and_what_memory_they_need(recipe):
    header = recipe.read_text().split("\n\n")[0]
    names = re.findall(r"hf-dpo train --accelerate_config (\S+) ", header)
    assert names and all(name in EXPECTED for name in names)
    assert f"recipes/multi_gpu/{recipe.name}" in header and re.search(r"~[\d.]+ GiB per GPU", header)
