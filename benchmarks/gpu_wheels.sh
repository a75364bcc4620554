#!/usr/bin/env bash
# Download the wheels the GPU machine lacks (Python 3.12, x86_64) into gpu_wheels/, one call's worth (64 MiB):
#   bash benchmarks/gpu_wheels.sh part1   # pyarrow, datasets and its small dependencies, trl, pytest (~58 MB)
#   bash benchmarks/gpu_wheels.sh part2   # pandas, bitsandbytes (~55 MB)
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf gpu_wheels && mkdir gpu_wheels
case "${1:-}" in
  part1) wanted=(pyarrow datasets==5.2.0 dill multiprocess xxhash trl==1.16.0 pytest pluggy iniconfig) ;;
  part2) wanted=(pandas bitsandbytes==0.50.2) ;;
  *) echo "usage: $0 part1|part2" >&2; exit 2 ;;
esac
pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 -d gpu_wheels \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_28_x86_64 --platform any "${wanted[@]}"
du -sh gpu_wheels
