#!/usr/bin/env bash
# Produce the PyTorch parity reference files (issue 4) on the machine that has torch +
# transformers (the GPU machine; the reference itself runs in float64 on its CPU).
# Usage (from the repo root): bash tests/oracle/run_parity_on_gpu.sh
# Writes tests/data/parity/{gpt2,llama}.bin and, if $OUT is set, copies them (and the log) there.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p tests/data/parity
python3 tests/oracle/torch_parity.py --out tests/data/parity 2>&1 | tee tests/data/parity/torch_parity.log
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  cp tests/data/parity/gpt2.bin tests/data/parity/llama.bin tests/data/parity/torch_parity.log "$OUT/"
fi
