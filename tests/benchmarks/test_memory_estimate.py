"""benchmarks/memory_estimate.py's vision-language terms, worked by hand, and the vision recipes quote what it
computes."""

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def memory():
    spec = importlib.util.spec_from_file_location("memory_estimate", ROOT / "benchmarks" / "memory_estimate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["memory_estimate"] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules["memory_estimate"]


def test_the_qwen25_vl_vision_tower_by_hand(memory):
    vision = memory.QWEN25_VL_VISION
    # 32 blocks of qkv + proj (4 x 1280^2) and a SwiGLU MLP (3 x 1280 x 3420); the merger 5120^2 + 5120 x 3584
    assert vision.params == 32 * (4 * 1280**2 + 3 * 1280 * 3420) == 629_964_800
    assert vision.projector_params(3584) == 5120**2 + 5120 * 3584 == 44_564_480
    assert vision.image_tokens(1008) == (1008 // 14) ** 2 // 4 == 1296


def test_the_shared_prompt_needs_less_than_padded_rows_and_4_bit_less_than_bf16(memory):
    qwen = next(shape for shape in memory.SHAPES if shape.name == "Qwen2.5-7B")
    rows = {
        (four_bit, shared): memory.estimate_vision(qwen, memory.QWEN25_VL_VISION, four_bit, shared_prompt=shared)
        for four_bit in (True, False)
        for shared in (True, False)
    }
    for four_bit in (True, False):
        assert rows[four_bit, True]["activations"] < rows[four_bit, False]["activations"]
        assert rows[four_bit, True]["weights"] == rows[four_bit, False]["weights"]
    text = memory.estimate(qwen, False)
    assert rows[False, True]["weights"] - text["weights"] == pytest.approx(674_529_280 * 2 / 2**30)  # bf16 tower


@pytest.mark.parametrize(
    ("recipe", "four_bit"), [("qwen2.5-vl-7b-qlora.yaml", True), ("qwen2.5-vl-7b-lora.yaml", False)]
)
def test_the_vision_recipes_quote_the_computed_memory(memory, recipe, four_bit):
    header = (ROOT / "recipes" / "one_gpu" / recipe).read_text().split("\n\n")[0]
    qwen = next(shape for shape in memory.SHAPES if shape.name == "Qwen2.5-7B")
    shared = memory.estimate_vision(qwen, memory.QWEN25_VL_VISION, four_bit)
    padded = memory.estimate_vision(qwen, memory.QWEN25_VL_VISION, four_bit, shared_prompt=False)
    assert re.search(rf"~{shared['total']:.1f} GiB of GPU memory", header) and "COMPUTED, not measured" in header
    assert f"{padded['total']:.1f} GiB if the prompt were read twice" in header
