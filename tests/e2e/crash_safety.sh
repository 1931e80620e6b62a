#!/usr/bin/env bash
# Crash safety: training with a checkpoint every step is killed with SIGKILL at pseudo-random
# moments (a fixed seed) many times, most of them during a checkpoint write, and resumed each
# time; the final model.safetensors and the metrics log must be byte-identical to an
# uninterrupted run's. usage: crash_safety.sh <lowp-cli> <source-dir>
set -uo pipefail
LOWP=$1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export OMP_NUM_THREADS=1
# ~40 KB of text: letters in a fixed pseudo-random order
awk 'BEGIN { srand(7); for (i = 0; i < 800; i++) { l = ""; for (j = 0; j < 50; j++)
  l = l sprintf("%c", 97 + int(rand() * 26)); print l } }' >"$T/data.txt"
STEPS=${CRASH_STEPS:-180}
args=(--model tiny --layers 1 --dim 32 --ctx 16 --batch 2 --steps "$STEPS" --eval-every 0
      --recipe fp8-delayed --data "$T/data.txt" --save-every 1)

"$LOWP" train "${args[@]}" --out "$T/ref" --log "$T/ref.jsonl" >/dev/null || {
  echo "FAIL: the uninterrupted run failed"; exit 1; }

# Steps logged so far, with builtins only: the poll must be fast next to a step.
logged() {
  local lines=()
  [ -f "$T/run.jsonl" ] && mapfile -t lines <"$T/run.jsonl"
  echo ${#lines[@]}
}
mkfifo "$T/fifo"
RANDOM=20261122 # the kill times are pseudo-random but the same every run
kills=0 torn=0 prev_used=0 runs=0
while :; do
  runs=$((runs + 1))
  if [ -f "$T/run/trainer_state.safetensors" ]; then
    "$LOWP" train --resume "$T/run" "${args[@]}" --out "$T/run" --log "$T/run.jsonl" \
      >"$T/out.txt" 2>&1 &
  else
    "$LOWP" train "${args[@]}" --out "$T/run" --log "$T/run.jsonl" >"$T/out.txt" 2>&1 &
  fi
  pid=$!
  # Let it log 1..4 more steps (each one followed by a checkpoint write), then kill it
  # 0..29 ms later: tied to progress, not to the machine's speed.
  target=$(($(logged) + 1 + RANDOM % 3))
  delay=$(printf '0.%03d' $((RANDOM % 30)))
  while kill -0 "$pid" 2>/dev/null && [ "$(logged)" -lt "$target" ]; do
    read -r -t 0.003 <>"$T/fifo" || true # a 3 ms sleep without a fork
  done
  sleep "$delay"
  if kill -9 "$pid" 2>/dev/null; then
    wait "$pid" 2>/dev/null
    kills=$((kills + 1))
    # a temporary file left behind: the kill came during a checkpoint write
    ls "$T/run" 2>/dev/null | grep -q '\.tmp' && torn=$((torn + 1))
    continue
  fi
  wait "$pid"
  rc=$?
  if [ $rc -ne 0 ]; then
    echo "FAIL: run $runs exited $rc after $kills kills:"; cat "$T/out.txt"; exit 1
  fi
  break
done
echo "$kills kills ($torn during a checkpoint write), $runs runs"
if [ "$kills" -lt 20 ]; then
  echo "FAIL: only $kills kills (want >= 20): the schedule no longer interrupts the run enough"
  exit 1
fi
if [ "$torn" -lt 1 ]; then
  echo "FAIL: no kill landed during a checkpoint write"; exit 1
fi
cmp "$T/ref/model.safetensors" "$T/run/model.safetensors" || {
  echo "FAIL: the final weights differ from the uninterrupted run's"; exit 1; }
cmp "$T/ref.jsonl" "$T/run.jsonl" >/dev/null 2>&1 ||
  diff <(grep -o '"step": [0-9]*, "loss": [^,]*' "$T/ref.jsonl") \
       <(grep -o '"step": [0-9]*, "loss": [^,]*' "$T/run.jsonl") || {
  echo "FAIL: the metrics log differs from the uninterrupted run's"; exit 1; }
ls "$T/run" | grep -q '\.tmp' && { echo "FAIL: temporary files left after the last run"; exit 1; }

# Corruption: a flipped byte or a truncation of either file gives a clear message.
cp -r "$T/run" "$T/c1"
printf '\x55' | dd of="$T/c1/model.safetensors" bs=1 seek=5000 conv=notrunc 2>/dev/null
rm -f "$T/c1/model.safetensors.prev"
out=$("$LOWP" train --resume "$T/c1" "${args[@]}" --steps $((STEPS + 1)) 2>&1)
echo "$out" | grep -q "the checkpoint is corrupt" || {
  echo "FAIL: flipped model byte: $out"; exit 1; }
cp -r "$T/run" "$T/c2"
sz=$(stat -c %s "$T/c2/trainer_state.safetensors")
printf '\x55' | dd of="$T/c2/trainer_state.safetensors" bs=1 seek=$((sz - 100)) conv=notrunc \
  2>/dev/null
out=$("$LOWP" train --resume "$T/c2" "${args[@]}" --steps $((STEPS + 1)) 2>&1)
echo "$out" | grep -q "is corrupt" || { echo "FAIL: flipped state byte: $out"; exit 1; }
cp -r "$T/run" "$T/c3"
truncate -s 1000 "$T/c3/trainer_state.safetensors"
out=$("$LOWP" train --resume "$T/c3" "${args[@]}" --steps $((STEPS + 1)) 2>&1)
echo "$out" | grep -q "trainer_state.safetensors" || { echo "FAIL: truncated state: $out"; exit 1; }
echo "PASS"
