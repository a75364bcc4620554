"""The accelerate configs in recipes/accelerate/ load as accelerate reads them, and every multi-GPU recipe's
command names one of them."""

import re
from pathlib import Path

import pytest
from accelerate.commands.config.config_args import ClusterConfig

RECIPES = Path(__file__).parents[1] / "recipes"
EXPECTED = {
    "ddp.yaml": ("MULTI_GPU", None),
    "zero2.yaml": ("DEEPSPEED", 2),
    "zero3.yaml": ("DEEPSPEED", 3),
    "fsdp2.yaml": ("FSDP", 2),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_accelerate_configs_load(name):
    config = ClusterConfig.from_yaml_file(RECIPES / "accelerate" / name)
    kind, level = EXPECTED[name]
    assert config.distributed_type.value == kind and config.mixed_precision == "bf16"
    if kind == "DEEPSPEED":
        assert config.deepspeed_config["zero_stage"] == level
    if kind == "FSDP":
        assert config.fsdp_config["fsdp_version"] == level


@pytest.mark.parametrize("recipe", sorted((RECIPES / "multi_gpu").glob("*.yaml")), ids=lambda path: path.name)
def test_multi_gpu_recipes_say_how_to_launch_them_and_what_memory_they_need(recipe):
    header = recipe.read_text().split("\n\n")[0]
    configs = re.findall(r"--config_file (recipes/accelerate/\S+\.yaml)", header)
    assert configs and all((RECIPES.parent / config).is_file() for config in configs)
    assert "-m hf_dpo.cli train" in header and re.search(r"~[\d.]+ GiB per GPU", header)
