#!/usr/bin/env bash
# The CLI's main paths under valgrind memcheck: no invalid reads or writes, no use of
# uninitialized values, no definite, indirect or possible leaks (--leak-check=full). Skips (77) where
# valgrind is missing, and in sanitizer builds (ASan and valgrind do not mix). Memory that
# is still reachable at exit is not counted: libgomp keeps its thread pool until the end.
# usage: valgrind.sh <lowp-cli> <source-dir>
set -uo pipefail
LOWP=$1
command -v valgrind >/dev/null || { echo "valgrind not installed: skipped"; exit 77; }
# grep without -q reads all of nm's output: with pipefail, -q would SIGPIPE nm and fail.
if nm "$LOWP" 2>/dev/null | grep __asan_init >/dev/null; then echo "ASan build: skipped"; exit 77; fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export OMP_NUM_THREADS=1 # one thread: libgomp's thread pool is not torn down at exit
awk 'BEGIN { srand(3); for (i = 0; i < 300; i++) { l = ""; for (j = 0; j < 50; j++)
  l = l sprintf("%c", 97 + int(rand() * 26)); print l } }' >"$T/data.txt"
printf '\x00\x00\x80\x3f\xcd\xcc\xcc\x3d\x00\x00\x00\xc0' >"$T/in.f32" # 1, 0.1, -2
VG=(valgrind -q --error-exitcode=99 --suppressions="$(dirname "$0")/valgrind.supp" --leak-check=full --show-leak-kinds=definite,indirect,possible
    --errors-for-leak-kinds=definite,indirect,possible)
MICRO=(--model tiny --layers 1 --dim 16 --ctx 8 --batch 2 --eval-every 0 --eval-batches 1
       --data "$T/data.txt")
fail=0
run() {
  "${VG[@]}" "$LOWP" "$@" >"$T/out.txt" 2>&1
  local rc=$?
  if [ $rc -ne 0 ]; then
    echo "FAIL (exit $rc): lowp $*"; cat "$T/out.txt"; fail=1
  else
    echo "ok: lowp $*"
  fi
}
run formats
run explain 0.1 --format e4m3 --format e2m1
run cast --to e4m3 --round sr --seed 3 "$T/in.f32" "$T/out.e4m3"
run cast --from e4m3 "$T/out.e4m3" "$T/back.f32"
run train "${MICRO[@]}" --steps 3 --recipe fp8-delayed --out "$T/ck" --log "$T/l.jsonl" \
  --stop-after 2
run train "${MICRO[@]}" --steps 3 --resume "$T/ck" --out "$T/ck" --log "$T/l.jsonl"
run train "${MICRO[@]}" --steps 3 --recipe bf16 --inject nan-grad@2
run compare "${MICRO[@]}" --steps 2 --recipes fp32,nvfp4 --report "$T/rep"
# an error path: a corrupt checkpoint must be reported without leaks
printf 'garbage' >"$T/ck/trainer_state.safetensors"
"${VG[@]}" "$LOWP" train "${MICRO[@]}" --steps 4 --resume "$T/ck" >"$T/out.txt" 2>&1
rc=$?
if [ $rc -ne 1 ]; then echo "FAIL (exit $rc, want 1): resume from a corrupt state"; cat "$T/out.txt"; fail=1; fi
exit $fail
