#!/usr/bin/env bash
# Build the libFuzzer targets (clang-14, -fsanitize=fuzzer,address,undefined) and run each for
# SECONDS (default 60) on a copy of its seed corpus, JOBS targets at a time (default 2).
#   fuzz/run.sh [seconds] [target...]
# Targets: safetensors tokens recipe json checkpoint trainer_state. Builds go to build-fuzz/,
# grown corpora to build-fuzz/corpus/<target>/, logs to build-fuzz/<target>.log, crashes to
# build-fuzz/crash-<target>-*. Exit code 1 if any target found a crash.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(safetensors tokens recipe json checkpoint trainer_state)
jobs=${JOBS:-2}
CC=${CC:-clang-14}
out=build-fuzz
mkdir -p "$out"
srcs=$(find src -name '*.c' -not -path 'src/cuda/*' | sort)
flags=(-g -O1 -std=c11 -D_POSIX_C_SOURCE=200809L -Iinclude -Isrc -ffp-contract=off
       -Wno-unknown-pragmas -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined)
# The library once (objects without main), then each target against it.
if [ ! -f "$out/liblowp_fuzz.a" ] || [ -n "$(find src include -newer "$out/liblowp_fuzz.a" -name '*.[ch]' | head -1)" ]; then
  rm -rf "$out/obj" && mkdir -p "$out/obj"
  for s in $srcs; do
    o="$out/obj/$(echo "$s" | tr / _).o"
    "$CC" "${flags[@]/-fsanitize=fuzzer,/-fsanitize=fuzzer-no-link,}" -c "$s" -o "$o" &
    while [ "$(jobs -r | wc -l)" -ge "$jobs" ]; do sleep 0.2; done
  done
  wait
  rm -f "$out/liblowp_fuzz.a"
  ar rcs "$out/liblowp_fuzz.a" "$out"/obj/*.o
fi
for t in "${targets[@]}"; do
  "$CC" "${flags[@]}" "fuzz/fuzz_$t.c" "$out/liblowp_fuzz.a" -lm -o "$out/fuzz_$t"
done
status=0
run_one() {
  local t=$1
  mkdir -p "$out/corpus/$t"
  cp -n fuzz/corpus/"$t"/* "$out/corpus/$t/" 2>/dev/null || true
  # -rss_limit_mb / -malloc_limit_mb: an allocation over 512 MB is a finding (absurd sizes
  # must be rejected before any allocation).
  "./$out/fuzz_$t" -max_total_time="$secs" -rss_limit_mb=1024 -malloc_limit_mb=512 \
    -max_len=65536 -timeout=10 -print_final_stats=1 -artifact_prefix="$out/crash-$t-" \
    "$out/corpus/$t" >"$out/$t.log" 2>&1
}
pids=()
names=()
for t in "${targets[@]}"; do
  run_one "$t" &
  pids+=($!)
  names+=("$t")
  while [ "$(jobs -r | wc -l)" -ge "$jobs" ]; do sleep 1; done
done
for i in "${!pids[@]}"; do
  if wait "${pids[$i]}"; then r=0; else r=$?; fi
  t=${names[$i]}
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$out/$t.log" | grep -o '[0-9]*$' || echo ?)
  cov=$(grep -o 'cov: [0-9]*' "$out/$t.log" | tail -1 | grep -o '[0-9]*' || echo ?)
  ft=$(grep -o 'ft: [0-9]*' "$out/$t.log" | tail -1 | grep -o '[0-9]*' || echo ?)
  ncorp=$(ls "$out/corpus/$t" | wc -l)
  echo "$t: exit $r, executions $execs, coverage $cov edges, features $ft, corpus $ncorp files"
  [ "$r" -ne 0 ] && status=1
done
exit $status
