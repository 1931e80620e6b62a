#!/usr/bin/env bash
# The QAT forward is the deployed model: the validation loss that `lowp train --qat S` reports
# after its last step (the fake-quantized forward) equals `lowp eval` of `lowp ptq --scheme S`
# (max calibration) of the checkpoint it wrote, on the same batches (B x T, so that a dynamic
# activation tensor scale covers the same rows). Also with --qat-hadamard N and ptq --hadamard N
# (the same rotation); and, as the control that shows the comparison can fail, not with a
# Hadamard recipe whose signs come from the training seed (what --qat-hadamard avoids).
#   bash qat_ptq_match.sh <lowp> <source-dir>
set -euo pipefail
LOWP=$1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export OMP_NUM_THREADS=1
awk 'BEGIN { srand(3); for (i = 0; i < 6000; i++) { w = ""; n = 2 + int(rand() * 6);
  for (j = 0; j < n; j++) w = w sprintf("%c", 97 + int(rand() * 26)); printf "%s ", w } }' >"$T/t.txt"
fail() { echo "FAIL: $*" >&2; exit 1; }
io=(--batch 2 --seq 32 --data "$T/t.txt")
"$LOWP" train --model tiny --steps 20 "${io[@]}" --out "$T/base" >/dev/null
# qat_loss OUT [train args]: the last validation loss of the run (full precision, from --log)
qat_loss() {
  local out=$1
  shift
  "$LOWP" train --init "$T/base" --steps 2 "${io[@]}" --eval-batches 3 --out "$T/$out" \
    --log "$T/$out.jsonl" "$@" >"$T/$out.log"
  sed -n 's/.*"val_loss": \([0-9.e+-]*\).*/\1/p' "$T/$out.jsonl" | tail -1
}
# ptq_loss CKPT SCHEME [ptq args]: lowp eval of its PTQ, 3 batches of 2 x 32
ptq_loss() {
  local ck=$1 s=$2
  shift 2
  "$LOWP" ptq --ckpt "$T/$ck" --scheme "$s" --calib "$T/t.txt" --calib-tokens 256 --batch 2 \
    --seq 32 --out "$T/q-$ck" "$@" >/dev/null
  "$LOWP" eval --ckpt "$T/q-$ck" "${io[@]}" --batches 3 | sed -n 's/^val_loss //p'
}
close() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && b != "" && d <= t) }'; }
for s in nvfp4 mxfp4 int4-g128; do
  a=$(qat_loss "p-$s" --qat "$s" --qat-ste plain)
  b=$(ptq_loss "p-$s" "$s")
  close "$a" "$b" 1.5e-6 || fail "$s: QAT forward $a, PTQ then eval $b"
done
for s in nvfp4 mxfp4; do
  a=$(qat_loss "h-$s" --qat "$s" --qat-ste plain --qat-hadamard 32)
  grep -q "recipe qat-$s-h32-plain" "$T/h-$s.log" || fail "recipe name: $(grep recipe "$T/h-$s.log")"
  b=$(ptq_loss "h-$s" "$s" --hadamard 32)
  close "$a" "$b" 1.5e-6 || fail "$s --qat-hadamard 32: QAT forward $a, PTQ --hadamard 32 then eval $b"
  # the control: the same rotation size with the training seed's signs deploys another model
  printf 'fprop.x = %s hadamard=32\nfprop.w = %s hadamard=32\n' "$s" "$s" >"$T/r-$s.txt"
  a=$(qat_loss "r-$s" --recipe "$T/r-$s.txt")
  b=$(ptq_loss "r-$s" "$s" --hadamard 32)
  ! close "$a" "$b" 2e-5 || fail "$s: a Hadamard with other signs matched PTQ ($a, $b)"
done
# usage errors: exit status 2 and the reason
usage() {
  local want=$1
  shift
  set +e
  "$LOWP" train --init "$T/base" --steps 1 "${io[@]}" --out "$T/x" "$@" >/dev/null 2>"$T/err"
  local rc=$?
  set -e
  [ $rc -eq 2 ] && grep -q -- "$want" "$T/err" || fail "$* -> $rc: $(cat "$T/err")"
}
usage "--qat-hadamard must be 16, 32 or 128" --qat nvfp4 --qat-hadamard 64
usage "--qat-hadamard needs --qat S" --qat-hadamard 32
usage "takes no Hadamard rotation" --qat bf16 --qat-hadamard 32
echo ok
