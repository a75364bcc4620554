"""Run by tests/test_engines.py in its own process (a gloo process group of one, on CPU): the FSDP2 reference
path for real. Prints RESULT with the logits difference and the fingerprints of the sharded and plain copies."""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch
import torch.distributed as dist
from tiny import build_model, build_tokenizer

from hf_dpo.reference.cache import weights_fingerprint
from hf_dpo.reference.engines import shard_layers


def main() -> None:
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", sys.argv[1])
    dist.init_process_group("gloo", rank=0, world_size=1)
    from torch.distributed.device_mesh import init_device_mesh

    tokenizer = build_tokenizer()
    plain, sharded = build_model(tokenizer), build_model(tokenizer)
    sharded = shard_layers(sharded, {"mesh": init_device_mesh("cpu", (1,))})
    from torch.distributed.tensor import DTensor

    # Read before any forward: afterwards the root keeps its own parameters gathered (FSDP2 does not reshard the
    # root after forward), while every layer's stay sharded.
    result = {
        "dtensors": sum(isinstance(p, DTensor) for p in sharded.parameters()),
        "parameters": sum(1 for _ in sharded.parameters()),
        "frozen": not any(p.requires_grad for p in sharded.parameters()) and not sharded.training,
        "same_fingerprint": weights_fingerprint(plain) == weights_fingerprint(sharded),
    }
    ids = torch.tensor([[1, 5, 6, 7, 8, 9]])
    with torch.no_grad():
        result["difference"] = (plain(ids).logits - sharded(ids).logits).abs().max().item()
    dist.destroy_process_group()
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
