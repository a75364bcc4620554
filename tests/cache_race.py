"""Processes sharing the reference log-prob cache, run by tests/reference/test_cache_faults.py.

    python tests/cache_race.py train CACHE_DIR GO_FILE   # builds, prints READY, waits for GO_FILE, precomputes
    python tests/cache_race.py write PATH COUNT          # writes the same cache entry COUNT times
    python tests/cache_race.py read PATH STOP_FILE       # reads that entry until STOP_FILE exists
    python tests/cache_race.py limited CACHE_DIR BYTES   # precomputes with files limited to BYTES (ulimit -f)

``train`` prints the precomputed columns as one JSON line (``COLUMNS {...}``); ``read`` prints what it saw
(``SEEN {"missing": n, "whole": n, "other": n}``): a reader must only ever see no file or the whole one.
"""

from __future__ import annotations

import json
import logging
import resource
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch
from tiny import build_model, build_tokenizer, preference_rows

ROWS = 20_000  # ~160 KB: a write takes long enough for a reader to land in the middle of it
KEY = "a-key"


def entry_values() -> torch.Tensor:
    return -torch.arange(ROWS * 2, dtype=torch.float32).reshape(ROWS, 2) / 7


def precompute_trainer(cache_dir: str | None, rows: int = 24):
    """A tiny DPO run with precomputed reference log-probs, cached in ``cache_dir`` (no cache: None)."""
    from hf_dpo import DPOTrainer, DPOTrainingArguments

    tokenizer = build_tokenizer()
    args = DPOTrainingArguments(
        output_dir=str(Path(cache_dir or ".") / "unused-output"),
        per_device_train_batch_size=4,
        max_steps=1,
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        precompute_ref_log_probs=True,
        ref_logps_cache=cache_dir is not None,
        ref_logps_cache_dir=cache_dir,
    )
    return DPOTrainer(
        build_model(tokenizer), args=args, train_dataset=preference_rows(rows), processing_class=tokenizer
    )


def main() -> None:
    from hf_dpo.reference.cache import load, save

    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    mode, target, other = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode in ("train", "limited"):
        print("READY", flush=True)
        while mode == "train" and not Path(other).exists():  # both runs start the pass together
            time.sleep(0.01)
        if mode == "limited":  # the kernel refuses to grow a file past the limit (EFBIG; SIGXFSZ ignored)
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (int(other), resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        dataset = precompute_trainer(target).train_dataset
        columns = {name: list(dataset[name]) for name in ("ref_chosen_logps", "ref_rejected_logps")}
        print("COLUMNS", json.dumps(columns), flush=True)
    elif mode == "write":
        values = entry_values()
        print("READY", flush=True)
        for _ in range(int(other)):
            assert save(Path(target), KEY, values)
    elif mode == "read":
        expected, seen = entry_values(), {"missing": 0, "whole": 0, "other": 0}
        print("READY", flush=True)
        while not Path(other).exists():
            values = load(Path(target), KEY, ROWS)  # None: no file, or an unusable one (reported in the log)
            seen["missing" if values is None else "whole" if torch.equal(values, expected) else "other"] += 1
        print("SEEN", json.dumps(seen), flush=True)
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
