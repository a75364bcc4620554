"""Run by tests/publish/test_hub_faults.py in a subprocess with HF_ENDPOINT pointing at a test Hub that fails on cue
(tests/hub_server.py): trains a tiny LoRA policy and pushes it.

    python tests/hub_fault_push.py OUTPUT_DIR REPO final        # 3 steps, then trainer.push_to_hub()
    python tests/hub_fault_push.py OUTPUT_DIR REPO every_save   # 6 steps pushed at each save (2, 4, 6), then the same
    python tests/hub_fault_push.py OUTPUT_DIR REPO merged       # 3 steps, then trainer.push_to_hub(merge_adapter=True)

Prints ``PUSHED`` or ``PUSH FAILED <type>: <message>``, then ``TRAINED <steps>`` and ``ON DISK <files>``. The waits
between huggingface_hub's tries (its backoff of 1, 2, 4, 8, 8 s) are cut to 0.05 s to keep the test short; how many
tries it makes is untouched.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import huggingface_hub.utils._http as hub_http
from peft import LoraConfig
from tiny import build_model, build_tokenizer, preference_rows

from hf_dpo import DPOTrainer, DPOTrainingArguments

TOKEN = "hf_FakeTokenForPushTests0123456789"


class _ShortWaits:
    """huggingface_hub's ``time`` module, with its backoff sleeps cut short."""

    def __getattr__(self, name):
        import time

        return (lambda seconds: time.sleep(min(seconds, 0.05))) if name == "sleep" else getattr(time, name)


def main() -> None:
    output_dir, repo, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    hub_http.time = _ShortWaits()
    every_save = mode == "every_save"
    tokenizer = build_tokenizer()
    args = DPOTrainingArguments(
        output_dir=output_dir,
        hub_model_id=repo,
        hub_token=TOKEN,
        per_device_train_batch_size=4,
        learning_rate=5e-2,
        max_steps=6 if every_save else 3,
        logging_steps=1,
        report_to="none",
        save_strategy="steps" if every_save else "no",
        save_steps=2,
        push_to_hub=every_save,
        hub_strategy="every_save",
        hub_always_push=True,  # each save pushes, even while the last push runs: a fixed order of commits
        use_cpu=True,
        disable_tqdm=True,
    )
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer = DPOTrainer(
        build_model(tokenizer),
        args=args,
        train_dataset=preference_rows(24),
        processing_class=tokenizer,
        peft_config=lora,
    )
    trainer.train()
    print("TRAINED", trainer.state.global_step, flush=True)
    try:
        trainer.push_to_hub(merge_adapter=mode == "merged")
        print("PUSHED", flush=True)
    except Exception as error:
        print(f"PUSH FAILED {type(error).__name__}: {error}".replace("\n", " | "), flush=True)
    print("ON DISK", " ".join(sorted(path.name for path in Path(output_dir).iterdir())), flush=True)


if __name__ == "__main__":
    main()
