#!/usr/bin/env bash
# On the GPU machine (it has torch + transformers): train a tiny gpt2 and a tiny llama with lowp
# on an ASCII text, evaluate them with lowp eval, and check transformers loads each checkpoint
# and gives the same loss. Usage (repo root): bash tests/oracle/run_hf_check_on_gpu.sh TEXT
set -euo pipefail
cd "$(dirname "$0")/../.."
text="$1"
cmake -S . -B build-cpu -DLOWP_CUDA=OFF -DBUILD_TESTING=OFF >/dev/null
cmake --build build-cpu -j"$(nproc)" >/dev/null
work=$(mktemp -d)
head -c 200000 "$text" >"$work/text.txt"
status=0
for model in tiny llama-tiny; do
  ./build-cpu/lowp train --model "$model" --data "$work/text.txt" --steps 30 --batch 4 \
    --eval-every 0 --out "$work/$model" >/dev/null
  loss=$(./build-cpu/lowp eval --ckpt "$work/$model" --data "$work/text.txt" --batch 2 --seq 32 \
    --batches 1 | awk '/^val_loss/ {print $2}')
  python3 tests/oracle/check_hf_load.py "$work/$model" "$work/text.txt" 2 32 "$loss" || status=1
done
exit $status
