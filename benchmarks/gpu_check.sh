#!/usr/bin/env bash
# The GPU check, one command on the lent GPU machine (one H100/H200, no network), results under $OUT:
#
#   bash benchmarks/gpu_check.sh --install-only   # call 1, carrying gpu_wheels/ (part 1: pyarrow, datasets, trl, pytest)
#   bash benchmarks/gpu_check.sh                  # call 2, carrying gpu_wheels/ (part 2: pandas, bitsandbytes): the check
#   bash benchmarks/gpu_check.sh --dry-run        # here, on CPU: the same steps on a tiny model, under a minute (CI)
#
# The machine's Python has torch, transformers, peft, accelerate and triton, not datasets, pyarrow, pandas, trl,
# bitsandbytes or pytest: they travel as wheels (benchmarks/gpu_wheels.sh part1|part2 downloads them into
# gpu_wheels/; 64 MiB per call, pyarrow alone is 55 MB, hence two calls on the same warm machine).
# What it does: installs the carried wheels; runs the gpu-marked tests; times hf_dpo and TRL on a random-weight
# Llama-3-8B-shaped model, LoRA r16, ~2k-token pairs (benchmarks/gpu_bench.py), and QLoRA's peak memory. It writes
# gpu_tests.txt, gpu_results.json and gpu_bench.md to $OUT (default outputs/gpu_check).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-outputs/gpu_check}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1
mode=${1:-}

if compgen -G "gpu_wheels/*.whl" >/dev/null; then
  python -m pip install --quiet --no-index --no-deps gpu_wheels/*.whl 2>&1 | tail -3
fi
[ "$mode" = "--install-only" ] && { python -c "import pyarrow, datasets; print('installed: datasets', datasets.__version__)"; exit 0; }

python - <<'PY' | tee "$OUT/environment.txt"
import importlib.util, torch, transformers, peft
print("torch", torch.__version__, "| cuda", torch.cuda.is_available(), "|", torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU")
print("transformers", transformers.__version__, "| peft", peft.__version__)
print("present:", [name for name in ("datasets", "trl", "bitsandbytes", "flash_attn", "pytest") if importlib.util.find_spec(name)])
PY

status=0
if [ "$mode" = "--dry-run" ]; then
  python -m pytest -m gpu -q -p no:cacheprovider --collect-only tests > "$OUT/gpu_tests.txt" 2>&1 || status=1
  python benchmarks/gpu_bench.py --dry-run --out "$OUT/gpu_results.json" > "$OUT/gpu_bench.md" 2>&1 || status=1
else
  timeout 180 python -m pytest -m gpu -q -p no:cacheprovider tests > "$OUT/gpu_tests.txt" 2>&1 || status=1
  python benchmarks/gpu_bench.py --out "$OUT/gpu_results.json" > "$OUT/gpu_bench.md" 2>&1 || status=1
fi
tail -5 "$OUT/gpu_tests.txt"
tail -15 "$OUT/gpu_bench.md"
exit $status
