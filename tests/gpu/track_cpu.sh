#!/usr/bin/env bash
# Does a GPU run track the CPU reference? For every recipe, `lowp train` the tiny model for 200
# steps on the CPU and on the GPU (same seed, data and batches) and compare the losses step by
# step: the run passes when the mean relative difference over the 200 steps is below 1% and the
# mean of the last 20 losses agree within 1%.
#     bash tests/gpu/track_cpu.sh BUILD_DIR DATA_FILE [recipes]
# The CPU runs go in parallel (--jobs of the machine's cores); exit 0 only if every recipe passed.
set -uo pipefail
build=$1
data=$2
recipes=${3:-fp32 bf16 fp16 fp8-delayed fp8-current fp8-block mxfp8 nvfp4 mxfp4-quartet int8}
out=${OUT:-/tmp}/track
mkdir -p "$out"
common=(--model tiny --steps 200 --batch 8 --seq 64 --data "$data" --eval-every 0 --seed 5)
ncpu=$(nproc)
per=$((ncpu / 4 > 0 ? ncpu / 4 : 1))
for r in $recipes; do
  OMP_NUM_THREADS=$per "$build/lowp" train "${common[@]}" --recipe "$r" --log "$out/$r.cpu.jsonl" \
    >"$out/$r.cpu.txt" 2>&1 &
  while [ "$(jobs -r | wc -l)" -ge 4 ]; do sleep 0.2; done
done
for r in $recipes; do
  "$build/lowp" train "${common[@]}" --recipe "$r" --device cuda --log "$out/$r.gpu.jsonl" \
    >"$out/$r.gpu.txt" 2>&1 || { echo "$r: GPU run failed:"; tail -3 "$out/$r.gpu.txt"; }
done
wait
python3 - "$out" $recipes <<'PY'
import json, sys
out, recipes = sys.argv[1], sys.argv[2:]
ok = True
def losses(path):
    try:
        return [json.loads(l)["loss"] for l in open(path) if l.strip()]
    except (OSError, ValueError, KeyError):
        return []
for r in recipes:
    c, g = losses(f"{out}/{r}.cpu.jsonl"), losses(f"{out}/{r}.gpu.jsonl")
    if len(c) != 200 or len(g) != 200:
        print(f"{r:14s} FAIL: {len(c)} CPU and {len(g)} GPU steps logged"); ok = False; continue
    rel = [abs(a - b) / abs(a) for a, b in zip(c, g)]
    mean_rel, max_rel = sum(rel) / len(rel), max(rel)
    tail = abs(sum(g[-20:]) - sum(c[-20:])) / abs(sum(c[-20:]))
    good = mean_rel < 0.01 and tail < 0.01
    ok &= good
    print(f"{r:14s} {'ok  ' if good else 'FAIL'} loss cpu {c[-1]:.4f} gpu {g[-1]:.4f}  "
          f"mean rel diff {mean_rel:.2e}  max {max_rel:.2e}  last-20 mean diff {tail:.2e}")
sys.exit(0 if ok else 1)
PY
