#!/usr/bin/env bash
# The multi-GPU benchmark of issue 7 (on a machine with 2 GPUs, NCCL and PyTorch):
#     OUT=/some/dir bash bench/dist_train.sh [batch per GPU (8)] [steps (30)] [model (gpt2-350m)]
# GPT-2 350M, T = 1024, vocab 50304, random tokens, bf16, weak scaling (the same batch per GPU):
#   lowp:    `lowp train --device cuda` on 1 GPU (batch B) and `--gpus 2` (global batch 2B) with
#            ZeRO 0 and ZeRO 1, and --grad-comm bf16 / fp8, on a random-token shard; tokens/s = the median of the per-step
#            figures of the metrics log after 5 warm-up steps (rank 0's step time, the whole
#            global batch);
#   PyTorch: bench/torch_ddp.py under torchrun --nproc_per_node 1 and 2 (DDP + torch.compile,
#            bf16 autocast), the same model as bench/torch_gpt2.py.
# Then a table: tokens/s, the 2-GPU scaling factor, lowp against DDP. JSON lines and logs in $OUT.
# A few minutes (mostly torch.compile). Exit 0 only if every run worked.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
export PATH="/usr/local/cuda/bin:$PATH"
B=${1:-8}
steps=${2:-30}
model=${3:-gpt2-350m}
out=${OUT:-/tmp/lowp-dist-bench}
mkdir -p "$out"
status=0
date -u
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
nvidia-smi topo -m 2>/dev/null | head -4 || true
[ -f build-gpu/CMakeCache.txt ] || cmake -S . -B build-gpu -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DLOWP_WERROR=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null || exit 1
cmake --build build-gpu -j16 --target lowp_cli 2>&1 | grep -E "error|warning"

# Random tokens in llm.c's shard format (header: magic 20240520, version 1, count; uint16 tokens).
python3 - "$out" <<'PY'
import random, struct, sys
out = sys.argv[1]
for name, n in (("train.bin", 2_000_000), ("val.bin", 200_000)):
    rng = random.Random(name)
    with open(f"{out}/{name}", "wb") as f:
        f.write(struct.pack("<256i", 20240520, 1, n, *([0] * 253)))
        f.write(struct.pack(f"<{n}H", *(rng.randrange(50257) for _ in range(n))))
PY

lowp_run() { # name, gpus, global batch, extra options
  local name=$1 gpus=$2 batch=$3
  shift 3
  local g=()
  [ "$gpus" -gt 1 ] && g=(--gpus "$gpus")
  echo "lowp $name: $gpus GPU(s), global batch $batch"
  if ! build-gpu/lowp train --model "$model" --vocab 50304 --seq 1024 --recipe bf16 \
    --device cuda "${g[@]}" --batch "$batch" --steps "$steps" --warmup 0 --eval-every 0 \
    --eval-batches 1 --data "$out/train.bin" --val-data "$out/val.bin" --log "$out/$name.jsonl" \
    "$@" >"$out/$name.txt" 2>&1; then
    echo "  FAILED:"
    tail -5 "$out/$name.txt"
    status=1
  fi
  grep -E "GPU memory|optimizer states on each" "$out/$name.txt" | sed 's/^/  /'
}
lowp_run lowp1 1 "$B"
lowp_run lowp2 2 $((2 * B))
lowp_run lowp2z1 2 $((2 * B)) --zero 1
lowp_run lowp2bf16 2 $((2 * B)) --grad-comm bf16
lowp_run lowp2fp8 2 $((2 * B)) --grad-comm fp8
lowp_run lowp2z1fp8 2 $((2 * B)) --zero 1 --grad-comm fp8

: >"$out/ddp.jsonl"
for n in 1 2; do
  echo "pytorch DDP: $n GPU(s), batch $B per GPU"
  torchrun --standalone --nproc_per_node "$n" bench/torch_ddp.py --model "$model" --batch "$B" \
    --steps 20 --warmup 5 >>"$out/ddp.jsonl" 2>"$out/ddp$n.txt" || {
    echo "  FAILED:"
    tail -5 "$out/ddp$n.txt"
    status=1
  }
done

python3 - "$out" "$B" "$model" <<'PY' | tee "$out/table.md"
import json, statistics, sys
out, B, model = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def lowp(name):
    try:
        rows = [json.loads(l) for l in open(f"{out}/{name}.jsonl") if l.strip()]
        return statistics.median(r["tokens_per_s"] for r in rows[5:-1]) if len(rows) > 7 else None
    except (OSError, ValueError, KeyError):
        return None
ddp = {}
for l in open(f"{out}/ddp.jsonl"):
    try:
        r = json.loads(l)
        ddp[r["gpus"]] = r["tokens_per_s"]
    except (ValueError, KeyError):
        pass
rows = [("lowp", "ZeRO-0", 1, lowp("lowp1")), ("lowp", "ZeRO-0", 2, lowp("lowp2")),
        ("lowp", "ZeRO-1", 2, lowp("lowp2z1")),
        ("lowp", "ZeRO-0, grad-comm bf16", 2, lowp("lowp2bf16")),
        ("lowp", "ZeRO-0, grad-comm fp8", 2, lowp("lowp2fp8")),
        ("lowp", "ZeRO-1, grad-comm fp8", 2, lowp("lowp2z1fp8")),
        ("PyTorch DDP", "compile", 1, ddp.get(1)), ("PyTorch DDP", "compile", 2, ddp.get(2))]
one = {"lowp": lowp("lowp1"), "PyTorch DDP": ddp.get(1)}
f = lambda x: "failed" if x is None else f"{x:,.0f}"
print(f"\n{model}, bf16, T 1024, batch {B} per GPU, random tokens\n")
print("| impl | variant | GPUs | tokens/s | scaling vs 1 GPU | vs PyTorch DDP (same GPUs) |")
print("|---|---|---|---|---|---|")
for impl, var, g, tps in rows:
    base = one[impl]
    scale = f"{tps / base:.2f}x" if tps and base else "-"
    d = ddp.get(g)
    vs = f"{tps / d:.2f}x" if tps and d else "-"
    print(f"| {impl} | {var} | {g} | {f(tps)} | {scale} | {vs} |")
PY
exit $status
