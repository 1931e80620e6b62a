#!/usr/bin/env bash
# Determinism on the CPU: the same seed and settings give bit-identical losses (every step's
# training loss and the validation loss, as logged) and bit-identical final weights across
# repeated runs and across OpenMP thread counts 1, 2 and 3, for recipes with round-to-nearest
# and with stochastic rounding. usage: determinism.sh <lowp-cli> <source-dir>
set -uo pipefail
LOWP=$1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
awk 'BEGIN { srand(11); for (i = 0; i < 600; i++) { l = ""; for (j = 0; j < 60; j++)
  l = l sprintf("%c", 97 + int(rand() * 26)); print l } }' >"$T/data.txt"
# an SR recipe of its own: fp8 current scaling with stochastic rounding on every gradient
printf 'base = fp8-current\nname = fp8-sr\nbackward = fp8-tensor sr\n' >"$T/sr.recipe"
fail=0
for recipe in fp32 bf16 fp8-delayed nvfp4 "$T/sr.recipe"; do
  ref=""
  for threads in 1 2 3 3; do
    out="$T/run-$threads"
    rm -rf "$out" "$out.jsonl"
    if ! OMP_NUM_THREADS=$threads "$LOWP" train --model tiny --layers 1 --dim 32 --ctx 32 \
      --batch 3 --steps 6 --eval-every 3 --eval-batches 2 --recipe "$recipe" \
      --data "$T/data.txt" --out "$out" --log "$out.jsonl" >"$T/log.txt" 2>&1; then
      echo "FAIL: $recipe with $threads threads:"; cat "$T/log.txt"; fail=1; continue
    fi
    # the losses as logged (shortest round-trip decimal: equal text = equal bits)
    sig=$( (grep -o '"\(val_\)\?loss": [^,}]*' "$out.jsonl"; md5sum <"$out/model.safetensors") |
      md5sum)
    if [ -z "$ref" ]; then
      ref=$sig
    elif [ "$sig" != "$ref" ]; then
      echo "FAIL: $(basename "$recipe"): $threads threads give other losses or weights"; fail=1
    fi
  done
  [ $fail -eq 0 ] && echo "ok: $(basename "$recipe") identical with 1, 2, 3, 3 threads"
done
exit $fail
