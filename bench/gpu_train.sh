#!/usr/bin/env bash
# The GPU training benchmark of issue 5, lowp and PyTorch in one run on the GPU machine:
#     OUT=/some/dir bash bench/gpu_train.sh [models] [lowp recipes] [torch modes] [batch]
# defaults: gpt2-124m  bf16,fp8-current,fp8-delayed,fp8-block,mxfp8,nvfp4  bf16,fp8  16
# Builds build-gpu/bench_gpu_train, runs build-gpu/bench_gpu_train (lowp) and bench/torch_gpt2.py
# (PyTorch 2.x: bf16 autocast + torch.compile, fp8 tensor-wise torch._scaled_mm linears) on the
# same shapes (T = 1024, vocab 50304, random tokens), then prints the side-by-side table
# (bench/compare_table.py). JSON lines go to $OUT/{lowp,torch}.jsonl, the table to
# $OUT/table.md.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/cuda/bin:$PATH"
models=${1:-gpt2-124m}
recipes=${2:-bf16,fp8-current,fp8-delayed,fp8-block,mxfp8,nvfp4}
modes=${3:-bf16,fp8}
batch=${4:-16}
out=${OUT:-/tmp/lowp-gpu-bench}
mkdir -p "$out"
date -u
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
[ -f build-gpu/CMakeCache.txt ] || cmake -S . -B build-gpu -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DLOWP_WERROR=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null || exit 1
cmake --build build-gpu -j16 --target bench_gpu_train 2>&1 | grep -E "error|warning"
status=0
build-gpu/bench_gpu_train --models "$models" --recipes "$recipes" --batch "$batch" \
  | tee "$out/lowp.jsonl" || status=1
if [ "$modes" != "none" ]; then
  python3 bench/torch_gpt2.py --models "$models" --modes "$modes" --batch "$batch" \
    | tee "$out/torch.jsonl" || status=1
fi
python3 bench/compare_table.py "$out"/*.jsonl | tee "$out/table.md"
exit $status
