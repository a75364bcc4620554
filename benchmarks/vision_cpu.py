"""CPU benchmark of vision-language DPO: hf_dpo's DPOTrainer next to TRL's on the same Qwen2-VL-shaped model, rows
with one image each, and settings: seconds per step, how often the vision tower encodes each image, and how many
language-model rows (and tokens) a pair takes.

    python benchmarks/vision_cpu.py --json vision.jsonl      # the small model, 2 rounds: ~15 min on 2 cores
    python benchmarks/vision_cpu.py --quick                 # a tiny model, 1 step, 1 round: a dry run (CI)

Each run is a fresh child process (this script with --child). Runs alternate (hf_dpo, TRL, hf_dpo, TRL, ...) because
step times on a shared machine drift; the table quotes medians over rounds and the ratio of the medians. A run times
W warm-up steps, then N timed steps (``on_step_begin`` to ``on_step_end``: forward, backward, optimizer). The load
average before and after the invocation is printed: other jobs on the cores make every number slower.

Model: Qwen2-VL's architecture with random weights (a model given by its config; nothing is downloaded), in fp32,
LoRA r=16 on the language model's linear layers (``hf-dpo``'s default: the vision tower frozen), the reference the
model with its adapters disabled; its processor is Qwen2-VL's own with a byte-level BPE tokenizer trained here on
the benchmark's words (with torchvision missing, without its video half, which images never use). Data: rows of a
448x448 random image (1024 patches, 256 image tokens), a prompt of ~40 words and two answers of ~30 words, the
same for both trainers, read in order.

Counted per pair and per step, in the timed steps: images the vision tower encodes (a hook on it), rows and tokens
(padding included) the language model reads (a hook on it).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TRAINERS = ("hf_dpo", "trl")
WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "this",
    "are",
    "or",
    "from",
    "at",
    "which",
    "but",
    "have",
    "an",
    "they",
    "you",
    "were",
    "her",
    "she",
    "there",
    "been",
    "one",
    "all",
    "we",
    "their",
    "has",
    "would",
    "when",
    "if",
    "so",
    "no",
    "will",
    "can",
    "more",
    "other",
    "its",
    "into",
    "them",
    "than",
    "then",
    "some",
    "time",
    "two",
    "may",
    "first",
    "only",
    "new",
    "could",
    "people",
    "after",
    "year",
    "work",
    "made",
    "over",
    "also",
    "way",
    "well",
    "even",
    "back",
    "any",
    "good",
    "house",
    "school",
    "country",
    "water",
    "river",
    "mountain",
    "window",
    "morning",
    "evening",
    "letter",
    "teacher",
    "doctor",
    "market",
    "village",
    "kitchen",
    "bottle",
    "picture",
    "weather",
    "journey",
    "garden",
    "forest",
    "island",
    "ocean",
    "valley",
    "meadow",
    "harbour",
    "lantern",
    "blanket",
    "pencil",
    "notebook",
]
SPECIALS = [
    "<pad>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>{% elif part['type'] == 'text' %}"
    "{{ part['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SHAPES = {  # (text hidden, text layers, text heads, vision width, vision depth, image side, words per prompt/answer)
    "small": {"hidden": 512, "layers": 8, "heads": 8, "vision": 512, "depth": 8, "image": 448, "words": (40, 30)},
    "tiny": {"hidden": 64, "layers": 2, "heads": 4, "vision": 64, "depth": 2, "image": 56, "words": (8, 6)},
}


# --- the model, its processor and the rows ------------------------------------------------------------------------


def build_processor() -> Any:
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast, Qwen2VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    backend = ByteLevelBPETokenizer()
    corpus = [" ".join(WORDS), " ".join(word.capitalize() + "." for word in WORDS)]
    backend.train_from_iterator(corpus, vocab_size=1024, min_frequency=1, special_tokens=SPECIALS, show_progress=False)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend._tokenizer, eos_token="<|im_end|>", pad_token="<pad>")
    images = Qwen2VLImageProcessorPil(size={"shortest_edge": 56 * 56, "longest_edge": 448 * 448})
    try:
        from transformers import Qwen2VLVideoProcessor

        return Qwen2VLProcessor(images, tokenizer, Qwen2VLVideoProcessor(), chat_template=CHAT_TEMPLATE)
    except Exception:  # no torchvision: the processor without its video half (images never touch it)

        class ImageOnly(Qwen2VLProcessor):
            @classmethod
            def get_attributes(cls):
                return ["image_processor", "tokenizer"]

            def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
                Qwen2VLProcessor.__init__(self, image_processor, tokenizer, None, chat_template=chat_template)

        return ImageOnly(images, tokenizer, chat_template=CHAT_TEMPLATE)


def build_model(shape: dict[str, Any], tokenizer: Any, seed: int) -> Any:
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    half = shape["hidden"] // shape["heads"] // 2  # rotary frequencies per head, split over time/height/width
    text = {
        "hidden_size": shape["hidden"], "intermediate_size": 3 * shape["hidden"], "num_hidden_layers": shape["layers"],
        "num_attention_heads": shape["heads"], "num_key_value_heads": shape["heads"] // 2, "vocab_size": len(tokenizer),
        "rope_parameters": {"rope_type": "default", "mrope_section": [half // 4, half // 4, half - 2 * (half // 4)],
                            "rope_theta": 1e6},
    }  # fmt: skip
    vision = {"depth": shape["depth"], "embed_dim": shape["vision"], "hidden_size": shape["hidden"], "num_heads": 8,
              "mlp_ratio": 4, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2}  # fmt: skip
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in SPECIALS}
    config = Qwen2VLConfig(
        text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(seed)
    return Qwen2VLForConditionalGeneration(config).float()


def build_rows(shape: dict[str, Any], pairs: int, seed: int) -> list[dict[str, Any]]:
    """``pairs`` conversational rows of one random image, a prompt and two answers (±20% in words)."""
    import numpy as np
    from PIL import Image

    rng = random.Random(seed)
    prompt_words, answer_words = shape["words"]

    def text(mean: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(int(0.8 * mean), int(1.2 * mean))))

    rows = []
    for index in range(pairs):
        pixels = np.random.default_rng(seed + index).integers(0, 256, (shape["image"], shape["image"], 3))
        rows.append(
            {
                "images": [Image.fromarray(pixels.astype(np.uint8))],
                "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text(prompt_words)}]}],
                "chosen": [{"role": "assistant", "content": text(answer_words)}],
                "rejected": [{"role": "assistant", "content": text(answer_words)}],
            }
        )  # fmt: skip
    return rows


# --- one run (the child process) ----------------------------------------------------------------------------------


class Counters:
    """Per call of the vision tower: images encoded; per call of the language model: rows and tokens read."""

    def __init__(self, model: Any) -> None:
        self.images, self.rows, self.tokens, self.timing = [], [], [], False
        model.model.visual.register_forward_hook(self._vision, with_kwargs=True)
        model.model.language_model.register_forward_hook(self._language, with_kwargs=True)

    def _vision(self, module: Any, args: Any, kwargs: dict[str, Any], output: Any) -> None:
        if self.timing:
            self.images.append(kwargs.get("grid_thw", args[1] if len(args) > 1 else None).shape[0])

    def _language(self, module: Any, args: Any, kwargs: dict[str, Any], output: Any) -> None:
        if self.timing:
            embeddings = kwargs["inputs_embeds"]
            self.rows.append(embeddings.shape[0])
            self.tokens.append(embeddings.shape[0] * embeddings.shape[1])


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    import tempfile

    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback

    shape = SHAPES[spec["shape"]]
    processor = build_processor()
    model = build_model(shape, processor.tokenizer, spec["seed"])
    counters = Counters(model)
    steps = spec["warmup"] + spec["steps"]
    rows = build_rows(shape, steps * spec["batch"], spec["seed"])
    step_seconds: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            counters.timing = state.global_step >= spec["warmup"]
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            step_seconds.append(time.perf_counter() - self.started)
            counters.timing = False

    common = {
        "output_dir": tempfile.mkdtemp(prefix="vision_cpu_"), "per_device_train_batch_size": spec["batch"],
        "learning_rate": 1e-5, "max_steps": steps, "logging_steps": 1, "save_strategy": "no", "report_to": "none",
        "use_cpu": True, "bf16": False, "gradient_checkpointing": False, "seed": spec["seed"], "max_length": None,
        "train_sampling_strategy": "sequential", "disable_tqdm": True,
    }  # fmt: skip
    # the language model's linear layers: what hf-dpo's command line adapts by default (the vision tower frozen)
    lora = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", exclude_modules=r".*\.visual(\..*)?")
    if spec["trainer"] == "hf_dpo":
        from hf_dpo import DPOTrainer, DPOTrainingArguments

        args = DPOTrainingArguments(**common, ref_logps_cache=False)
        train = rows
    else:
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(**common)
        train = Dataset.from_list(rows)
    trainer = DPOTrainer(
        model, args=args, train_dataset=train, processing_class=processor, peft_config=lora, callbacks=[Timer()]
    )
    trainer.train()
    timed_pairs = spec["steps"] * spec["batch"]
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {
        **spec,
        "threads": torch.get_num_threads(),
        "step_s": [round(seconds, 4) for seconds in step_seconds],
        "median_step_s": round(statistics.median(step_seconds[spec["warmup"] :]), 4),
        "vision_passes_per_image": sum(counters.images) / timed_pairs,  # one image per pair
        "lm_rows_per_pair": sum(counters.rows) / len(counters.rows) / spec["batch"],  # per forward
        "lm_forwards_per_step": len(counters.rows) / spec["steps"],
        "lm_tokens_per_pair": sum(counters.tokens) / timed_pairs,
        "losses": losses,
    }


# --- the parent: alternate runs, summarise ------------------------------------------------------------------------


def child_result(spec: dict[str, Any]) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{spec['trainer']} run failed:\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def summary(results: list[dict[str, Any]]) -> list[str]:
    """The table: per trainer the median step time over rounds, and the counts (the same in every round)."""
    by_trainer = {name: [r for r in results if r["trainer"] == name] for name in TRAINERS}
    medians = {name: statistics.median(r["median_step_s"] for r in runs) for name, runs in by_trainer.items()}
    lines = [
        "| trainer | s/step (median) | vision-tower passes per image per step | LM forwards per step | LM rows per pair "
        "per forward | LM tokens per pair per step | final loss |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, runs in by_trainer.items():
        run = runs[0]
        lines.append(
            f"| {name} | {medians[name]:.3f} | {run['vision_passes_per_image']:.2f} | {run['lm_forwards_per_step']:.0f} "
            f"| {run['lm_rows_per_pair']:.2f} | {run['lm_tokens_per_pair']:.0f} | {run['losses'][-1]:.6f} |"
        )
    lines.append(f"speed-up (TRL / hf_dpo s/step): {medians['trl'] / medians['hf_dpo']:.2f}x")
    return lines


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny model, 1 warm-up and 1 timed step, 1 round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=2, help="pairs per step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="append each run's result to this JSON-lines file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.quick:
        options.rounds, options.warmup, options.steps = 1, 1, 1
    return options


def main(argv: list[str] | None = None) -> int:
    options = parse(sys.argv[1:] if argv is None else argv)
    if options.child:
        print(json.dumps(run_child(json.loads(options.child))))
        return 0
    shape = "tiny" if options.quick else "small"
    base = {
        "shape": shape,
        "warmup": options.warmup,
        "steps": options.steps,
        "batch": options.batch,
        "seed": options.seed,
    }
    load_before, started, results = os.getloadavg(), time.time(), []
    for _ in range(options.rounds):
        for trainer in TRAINERS:
            results.append(child_result({**base, "trainer": trainer}))
            if options.json:
                with open(options.json, "a", encoding="utf-8") as file:
                    file.write(json.dumps(results[-1]) + "\n")
    print(
        f"model: Qwen2-VL-shaped, {shape} {SHAPES[shape]}; LoRA r=16 on the language model; fp32; batch {options.batch}"
    )
    print("\n".join(summary(results)))
    print(
        f"{len(results)} runs in {(time.time() - started) / 60:.1f} min; load average before "
        f"{load_before[0]:.2f}, after {os.getloadavg()[0]:.2f} (on {os.cpu_count()} cores)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
