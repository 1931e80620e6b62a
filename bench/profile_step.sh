#!/usr/bin/env bash
# Where one GPU training step's time goes, kernel by kernel (Nsight Compute, real clocks):
#     OUT=/some/dir bash bench/profile_step.sh "gpt2-124m:bf16:16 gpt2-774m:fp8-current:8"
# Each MODEL:RECIPE:BATCH runs one step of bench_gpu_train (T = 1024) under ncu, timing every
# kernel; bench/ncu_summary.py folds them by kernel name into $OUT/profile-MODEL-RECIPE.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/cuda/bin:$PATH"
out=${OUT:-/tmp/lowp-profile}
mkdir -p "$out"
[ -f build-gpu/CMakeCache.txt ] || cmake -S . -B build-gpu -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DLOWP_WERROR=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null || exit 1
cmake --build build-gpu -j16 --target bench_gpu_train 2>&1 | grep -E "error|warning"
for spec in ${1:-gpt2-124m:bf16:16}; do
  IFS=: read -r model recipe batch <<<"$spec"
  csv=/tmp/profile-$model-$recipe.csv
  ncu --csv --metrics gpu__time_duration.sum --clock-control none --cache-control none \
    build-gpu/bench_gpu_train --models "$model" --recipes "$recipe" --batch "$batch" \
    --warmup 0 --steps 1 >"$csv" 2>/dev/null
  python3 bench/ncu_summary.py "$csv" --top 45 | tee "$out/profile-$model-$recipe.txt"
  gzip -c "$csv" >"$out/profile-$model-$recipe.csv.gz"
done
