#!/usr/bin/env bash
# lowp ptq / eval / sensitivity / train --qat end to end on a tiny model (a few seconds).
#   bash ptq_cli.sh <lowp> <source-dir>
set -euo pipefail
LOWP=$1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export OMP_NUM_THREADS=1
# A small text corpus (ASCII words), deterministic.
awk 'BEGIN { srand(3); for (i = 0; i < 6000; i++) { w = ""; n = 2 + int(rand() * 6);
  for (j = 0; j < n; j++) w = w sprintf("%c", 97 + int(rand() * 26)); printf "%s ", w } }' >"$T/t.txt"
fail() { echo "FAIL: $*" >&2; exit 1; }
"$LOWP" train --model tiny --steps 4 --batch 2 --seq 32 --data "$T/t.txt" --out "$T/base" >/dev/null
"$LOWP" eval --ckpt "$T/base" --data "$T/t.txt" --batch 2 --seq 32 --batches 2 >"$T/e0"
grep -q "full precision" "$T/e0" || fail "eval of fp32"
"$LOWP" ptq --ckpt "$T/base" --scheme int8-w8a8 --method percentile --hadamard 32 \
  --calib "$T/t.txt" --calib-tokens 256 --batch 2 --seq 32 --out "$T/q" >/dev/null
"$LOWP" eval --ckpt "$T/q" --data "$T/t.txt" --batch 2 --seq 32 --batches 2 >"$T/e1"
grep -q "(quantized)" "$T/e1" || fail "eval of the quantized checkpoint"
# Outlier statistics of the linear-layer inputs (calibration pass, nothing quantized).
"$LOWP" ptq --ckpt "$T/base" --stats --calib "$T/t.txt" --calib-tokens 64 --batch 2 --seq 32 >"$T/st"
[ "$(grep -c '^| transformer.h.[01].' "$T/st")" = 8 ] || fail "stats table: $(cat "$T/st")"
grep -q "over 64 calibration tokens" "$T/st" || fail "stats tokens: $(head -1 "$T/st")"
set +e
"$LOWP" ptq --ckpt "$T/base" --stats --scheme nf4 2>"$T/err"
rc=$?
set -e
[ $rc -eq 2 ] && grep -q "stats quantizes nothing" "$T/err" || fail "--stats with --scheme"
# Sensitivity, a plan under a budget, applied by ptq.
"$LOWP" sensitivity --ckpt "$T/base" --scheme nf4 --data "$T/t.txt" --batch 2 --seq 32 \
  --batches 1 --fisher-batches 1 --budget-bits 7 --plan-out "$T/plan" --svg "$T/s.svg" >"$T/sens"
grep -q "^| 1 | transformer.h" "$T/sens" || fail "sensitivity table"
grep -q "<svg" "$T/s.svg" || fail "svg"
"$LOWP" ptq --ckpt "$T/base" --plan "$T/plan" --out "$T/qp" >"$T/p"
bits=$(sed 's/.*, \([0-9.]*\) bits.*/\1/' "$T/p")
awk -v b="$bits" 'BEGIN { exit !(b <= 7.0) }' || fail "plan bits $bits over the budget"
# A malformed plan: a clear error with the line number, exit status 1.
printf 'transformer.h.0.attn.c_attn.weight = int8\n\nbogus line\n' >"$T/bad"
set +e
"$LOWP" ptq --ckpt "$T/base" --plan "$T/bad" --out "$T/qb" 2>"$T/err"
rc=$?
set -e
[ $rc -eq 1 ] || fail "malformed plan exit status $rc"
grep -q "plan line 3: expected 'name = scheme'" "$T/err" || fail "message: $(cat "$T/err")"
# Usage errors.
set +e
"$LOWP" ptq --ckpt "$T/base" --scheme int3 --out "$T/x" 2>"$T/err"
rc=$?
set -e
[ $rc -eq 2 ] && grep -q "unknown PTQ scheme 'int3'" "$T/err" || fail "unknown scheme"
# QAT: a fake-quantized fine-tune.
"$LOWP" train --init "$T/base" --qat nvfp4 --steps 2 --batch 2 --seq 32 --data "$T/t.txt" \
  --out "$T/qat" >"$T/qatlog"
grep -q "recipe qat-nvfp4" "$T/qatlog" || fail "QAT recipe"
# --data-offset: the training stream from token N on, modulo its length (ASCII text: the first
# size - floor(size / 10) bytes): N and N + length train alike, 0 and N not.
n=$(wc -c <"$T/t.txt")
len=$((n - n / 10))
for o in 0 7 $((7 + len)); do
  "$LOWP" train --init "$T/base" --steps 2 --batch 2 --seq 32 --data "$T/t.txt" --data-offset "$o" \
    --eval-every 0 --log "$T/off$o.jsonl" >/dev/null
done
last() { tail -1 "$1" | sed 's/.*"loss": \([0-9.e+-]*\),.*/\1/'; }
[ "$(last "$T/off7.jsonl")" = "$(last "$T/off$((7 + len)).jsonl")" ] || fail "--data-offset modulo"
[ "$(last "$T/off0.jsonl")" != "$(last "$T/off7.jsonl")" ] || fail "--data-offset changes nothing"
# W4A4 with max calibration calibrates nothing (dynamic scales, no clamp): the data is not read
"$LOWP" ptq --ckpt "$T/base" --scheme nvfp4 --calib "$T/none.txt" --out "$T/qn" >/dev/null ||
  fail "nvfp4 max read the calibration data"
echo ok
