#!/usr/bin/env bash
# lowp train --distill DIR: with the teacher equal to the --init checkpoint and no --qat, the
# first step's loss is the KL of two identical models (0) and the weights do not move (zero
# gradient, weight decay 0); with --qat nvfp4 the fake-quantized student differs from the
# teacher: loss > 0. --distill-alpha 0 trains exactly as without --distill (the same losses and
# weights, bit for bit). Validation stays the plain cross-entropy. And the CLI's errors.
#   bash distill.sh <lowp> <source-dir>
set -euo pipefail
LOWP=$1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export OMP_NUM_THREADS=1
awk 'BEGIN { srand(5); for (i = 0; i < 6000; i++) { w = ""; n = 2 + int(rand() * 6);
  for (j = 0; j < n; j++) w = w sprintf("%c", 97 + int(rand() * 26)); printf "%s ", w } }' >"$T/t.txt"
fail() { echo "FAIL: $*" >&2; exit 1; }
io=(--batch 2 --seq 32 --data "$T/t.txt" --eval-batches 2)
"$LOWP" train --model tiny --steps 20 "${io[@]}" --out "$T/base" >/dev/null
key() { sed -n "s/.*\"$2\": \\([0-9.e+-]*\\).*/\\1/p" "$1"; }
# teacher = student, no --qat: loss 0, weights unchanged after one step
"$LOWP" train --init "$T/base" --distill "$T/base" --steps 1 --weight-decay 0 "${io[@]}" \
  --log "$T/a.jsonl" --out "$T/a" >/dev/null
l=$(key "$T/a.jsonl" loss | head -1)
awk -v l="$l" 'BEGIN { exit !(l != "" && l >= 0 && l <= 1e-6) }' || fail "identical teacher: loss $l, not ~0"
grep -q '"distill": {"temp": 1, "alpha": 1}' "$T/a.jsonl" || fail "no distill field: $(cat "$T/a.jsonl")"
v=$(key "$T/a.jsonl" val_loss | tail -1)
awk -v v="$v" 'BEGIN { exit !(v > 1) }' || fail "validation is not the plain cross-entropy: $v"
cmp -s "$T/base/model.safetensors" "$T/a/model.safetensors" || fail "the weights moved on a zero gradient"
# the control: the same run without --distill moves the weights
"$LOWP" train --init "$T/base" --steps 1 --weight-decay 0 "${io[@]}" --out "$T/c" >/dev/null
! cmp -s "$T/base/model.safetensors" "$T/c/model.safetensors" || fail "control: weights did not move"
# --qat nvfp4: the quantized student is not the teacher
"$LOWP" train --init "$T/base" --distill "$T/base" --qat nvfp4 --steps 2 "${io[@]}" \
  --log "$T/q.jsonl" --out "$T/q" >/dev/null
l=$(key "$T/q.jsonl" loss | head -1)
awk -v l="$l" 'BEGIN { exit !(l > 1e-7 && l < 5) }' || fail "--qat nvfp4 --distill: first loss $l, want > 0"
# --distill-alpha 0 is the plain cross-entropy, bit for bit
"$LOWP" train --init "$T/base" --distill "$T/base" --distill-alpha 0 --distill-temp 2 --steps 3 \
  "${io[@]}" --log "$T/z.jsonl" --out "$T/z" >/dev/null
"$LOWP" train --init "$T/base" --steps 3 "${io[@]}" --log "$T/p.jsonl" --out "$T/p" >/dev/null
[ "$(key "$T/z.jsonl" loss)" = "$(key "$T/p.jsonl" loss)" ] ||
  fail "alpha 0: losses $(key "$T/z.jsonl" loss | tr '\n' ' ') vs $(key "$T/p.jsonl" loss | tr '\n' ' ')"
cmp -s "$T/z/model.safetensors" "$T/p/model.safetensors" || fail "alpha 0: other weights than plain CE"
# errors: usage (exit 2) and the library's (a teacher of another shape)
err() {
  local rc_want=$1 want=$2
  shift 2
  set +e
  "$LOWP" train --init "$T/base" --steps 1 "${io[@]}" --out "$T/x" "$@" >/dev/null 2>"$T/err"
  local rc=$?
  set -e
  [ $rc -eq "$rc_want" ] && grep -q -- "$want" "$T/err" || fail "$* -> $rc: $(cat "$T/err")"
}
err 2 "no such directory" --distill "$T/nowhere"
err 2 "--distill-temp must be > 0" --distill "$T/base" --distill-temp 0
err 2 "--distill-temp must be between" --distill "$T/base" --distill-temp -1
err 2 "--distill-alpha must be between 0 and 1" --distill "$T/base" --distill-alpha 1.5
err 2 "--distill-alpha needs --distill DIR" --distill-alpha 0.5
"$LOWP" train --model tiny --dim 32 --steps 1 "${io[@]}" --out "$T/other" >/dev/null
err 1 "the teacher's dim differs from the student's" --distill "$T/other"
echo ok
