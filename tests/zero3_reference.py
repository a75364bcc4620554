"""Run by tests/test_engines.py in its own process with DeepSpeed's CPU accelerator (``DS_ACCELERATOR=cpu``, a
gloo group of one): a ZeRO-3 inference engine for the reference, for real. Prints RESULT as JSON."""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch
from tiny import build_model, build_tokenizer


def main() -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[1], RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    import deepspeed

    from hf_dpo.reference.cache import weights_fingerprint
    from hf_dpo.reference.engines import deepspeed_inference_config

    deepspeed.init_distributed(dist_backend="gloo")
    tokenizer = build_tokenizer()
    plain, model = build_model(tokenizer), build_model(tokenizer)
    training = {"zero_optimization": {"stage": 3}, "optimizer": {"type": "AdamW"}, "train_micro_batch_size_per_gpu": 1}
    engine, *_ = deepspeed.initialize(model=model, config=deepspeed_inference_config(training, 32))
    engine.eval()
    ids = torch.tensor([[1, 5, 6, 7, 8, 9]])
    with torch.no_grad():
        difference = (plain(ids).logits - engine(ids).logits).abs().max().item()
    result = {
        "difference": difference,
        "partitioned": all(tuple(p.shape) == (0,) for p in engine.module.parameters()),
        "same_fingerprint": weights_fingerprint(plain) == weights_fingerprint(engine.module),
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
