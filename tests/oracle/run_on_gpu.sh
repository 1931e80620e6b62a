#!/usr/bin/env bash
# Regenerate the encode oracle vectors in tests/data/oracle on a machine with a GPU, nvcc,
# numpy and ml_dtypes. Run from the repository root:
#
#   bash tests/oracle/run_on_gpu.sh
#
# Steps: inputs (only if missing; they are committed and deterministic), ml_dtypes codes,
# nvcc -arch=sm_90 cuda_casts.cu, CUDA device codes (host codes compared). Writes
# tests/data/oracle/VERSIONS.txt and run.log. If $OUT is set, packs the whole folder into
# $OUT/oracle.tar.gz and copies VERSIONS.txt and run.log to $OUT/oracle/.
# Unpack with: tar xzf oracle.tar.gz -C tests/data
# Exit status: 0 when every step worked and device and host agreed, else 1.
set -u
cd "$(dirname "$0")/../.." || exit 1
D=tests/data/oracle
PY=${PYTHON:-python3}
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
mkdir -p "$D"
LOG="$D/run.log"
: >"$LOG"
fail=0
step() { # step <name> <command...>: run, log, remember a failure, keep going
  local name=$1
  shift
  echo "== $name: $*" | tee -a "$LOG"
  "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  echo "== $name: exit $rc" | tee -a "$LOG"
  [ "$rc" -eq 0 ] || fail=1
}

[ -f "$D/e4m3.in.f32" ] || step inputs "$PY" tests/oracle/gen_inputs.py "$D"
step ml_dtypes "$PY" tests/oracle/gen_ml_dtypes.py "$D"
BIN=$(mktemp -d)/cuda_casts
step nvcc "$NVCC" -O2 -arch=sm_90 -o "$BIN" tests/oracle/cuda_casts.cu
[ -x "$BIN" ] && step cuda "$BIN" "$D"

{
  echo "generated: $(date -u '+%Y-%m-%d %H:%M:%S UTC') by tests/oracle/run_on_gpu.sh"
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
  echo "python: $("$PY" -c 'import sys, numpy, ml_dtypes; print(sys.version.split()[0], "numpy", numpy.__version__, "ml_dtypes", ml_dtypes.__version__)' 2>&1)"
  echo "nvcc: $("$NVCC" --version 2>&1 | grep -i release)"
  echo "gpu: $(nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader 2>&1)"
  echo "cuda_casts: $(grep -m1 '^CUDA toolkit' "$LOG"; grep -m1 '^mode:' "$LOG")"
  echo "steps ok: $([ $fail -eq 0 ] && echo yes || echo NO - see run.log)"
} >"$D/VERSIONS.txt"
cat "$D/VERSIONS.txt"

if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT/oracle"
  tar czf "$OUT/oracle.tar.gz" -C tests/data oracle
  cp "$D/VERSIONS.txt" "$D/run.log" "$OUT/oracle/"
  echo "wrote $OUT/oracle.tar.gz ($(du -h "$OUT/oracle.tar.gz" | cut -f1))"
fi
exit $fail
