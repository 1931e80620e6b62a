#!/usr/bin/env bash
# Reproduce the PTQ / QAT / mixed-precision tables of docs/ptq.md.
#   scripts/ptq_table.sh BASE_CKPT [OUT_DIR]
# BASE_CKPT: a model trained by `lowp train --model small --steps 600 --out BASE_CKPT` on the
# default corpus (data/brown.txt). Writes OUT_DIR/ptq_table.md (and the checkpoints it made).
# Environment: LOWP (the CLI, default build/lowp), DATA, BATCHES (eval batches, 16),
# CALIB (calibration tokens, 4096), QAT_STEPS (60), QAT_SCHEMES ("int4-g128 nvfp4"), QAT_STE
# ("plain clipped"),
# BUDGET (4.5), PLAN_BASE, PLAN_SCHEME (int4-g128), PLAN_SCHEME8 (int8), PLAN_UNIFORM, QAT_LR (1e-4), ALPHA (100), PARTS ("table qat plan outliers").
set -euo pipefail
BASE=${1:?usage: scripts/ptq_table.sh BASE_CKPT [OUT_DIR]}
OUT=${2:-/tmp/lowp-ptq-table}
LOWP=${LOWP:-build/lowp}
DATA=${DATA:-data/brown.txt}
BATCHES=${BATCHES:-16}
CALIB=${CALIB:-4096}
QAT_STEPS=${QAT_STEPS:-60}
QAT_SCHEMES=${QAT_SCHEMES:-"int4-g128 nvfp4"}
BUDGET=${BUDGET:-4.5}
PLAN_BASE=${PLAN_BASE:-$BASE}
PLAN_SCHEME=${PLAN_SCHEME:-int4-g128}
PLAN_SCHEME8=${PLAN_SCHEME8:-int8}
PLAN_UNIFORM=${PLAN_UNIFORM:-"int4-g128 nf4 nvfp4-w4a16 mxfp4-w4a16"}
QAT_LR=${QAT_LR:-1e-4}
QAT_STE=${QAT_STE:-"plain clipped"} # --qat-ste of the QAT arms (one column each)
QAT_BASE=${QAT_BASE:-$BASE} # e.g. OUT/outliers (made by the outliers part)
ALPHA=${ALPHA:-100}
OUTLIERS=${OUTLIERS:-build/ptq_outliers}
PARTS=${PARTS:-"table qat plan outliers"}
export OMP_WAIT_POLICY=passive
mkdir -p "$OUT"
MD="$OUT/ptq_table.md"
: >"$MD"

evalp() { # checkpoint -> "loss ppl"
  "$LOWP" eval --ckpt "$1" --data "$DATA" --batches "$BATCHES" |
    awk '/^val_loss/ {l=$2} /^perplexity/ {p=$2} END {printf "%.4f %.3f", l, p}'
}
ptq() { # out scheme [args...] -> "loss ppl"
  local out=$1 scheme=$2
  shift 2
  "$LOWP" ptq --ckpt "$BASE" --scheme "$scheme" --calib "$DATA" --calib-tokens "$CALIB" \
    --out "$out" "$@" >/dev/null
  evalp "$out"
}

read -r L0 P0 <<<"$(evalp "$BASE")"
echo "fp32 baseline: loss $L0 ppl $P0"
if [[ " $PARTS " == *" table "* ]]; then
  {
    echo "| scheme | calibration | Hadamard | val loss | perplexity |"
    echo "|---|---|---|---:|---:|"
    echo "| fp32 (baseline) | - | - | $L0 | $P0 |"
    read -r l p <<<"$(ptq "$OUT/bf16" bf16)"
    echo "| bf16 weights | - | - | $l | $p |"
  } >>"$MD"
  for s in fp8-w8a8 int8-w8a8 int4-g128 nf4 nvfp4 mxfp4; do
    for m in max percentile mse; do
      for h in 0 128; do
        read -r l p <<<"$(ptq "$OUT/$s-$m-h$h" "$s" --method "$m" --hadamard "$h")"
        hs=$([ "$h" = 0 ] && echo no || echo "$h")
        echo "| $s | $m | $hs | $l | $p |" | tee -a "$MD"
      done
    done
  done
  # SmoothQuant on the W8A8 schemes (alpha 0.5), MSE calibration.
  for s in fp8-w8a8 int8-w8a8; do
    read -r l p <<<"$(ptq "$OUT/$s-sq" "$s" --method mse --smoothquant 0.5)"
    echo "| $s + SmoothQuant 0.5 | mse | no | $l | $p |" | tee -a "$MD"
  done
fi
if [[ " $PARTS " == *" plan "* ]]; then
  "$LOWP" sensitivity --ckpt "$PLAN_BASE" --scheme "$PLAN_SCHEME" --scheme8 "$PLAN_SCHEME8" \
    --data "$DATA" --calib-tokens "$CALIB" --budget-bits "$BUDGET" --plan-out "$OUT/plan.txt" \
    --svg "$OUT/sensitivity.svg" >"$OUT/sensitivity.txt"
  bp=$("$LOWP" ptq --ckpt "$PLAN_BASE" --plan "$OUT/plan.txt" --calib "$DATA" \
    --calib-tokens "$CALIB" --out "$OUT/q-plan" | sed 's/.*, \([0-9.]*\) bits.*/\1/')
  read -r lp pp <<<"$(evalp "$OUT/q-plan")"
  {
    echo
    echo "Mixed precision on $PLAN_BASE (menu bf16 / $PLAN_SCHEME8 / $PLAN_SCHEME, budget" \
      "$BUDGET bits) vs uniform:"
    echo
    echo "| quantization | bits per weight | val loss | perplexity |"
    echo "|---|---:|---:|---:|"
    echo "| plan (budget $BUDGET) | $bp | $lp | $pp |"
  } >>"$MD"
  for s in $PLAN_UNIFORM; do
    b=$("$LOWP" ptq --ckpt "$PLAN_BASE" --scheme "$s" --calib "$DATA" --calib-tokens "$CALIB" \
      --out "$OUT/u-$s" | sed 's/.*, \([0-9.]*\) bits.*/\1/')
    read -r l p <<<"$(evalp "$OUT/u-$s")"
    echo "| uniform $s | $b | $l | $p |" | tee -a "$MD"
  done
fi
if [[ " $PARTS " == *" outliers "* ]]; then
  # The same model with function-preserving outlier channels (bench/ptq_outliers.c): x ALPHA on
  # 2 input channels of c_attn and c_fc per block, folded back into their weights.
  "$OUTLIERS" "$BASE" "$OUT/outliers" "$ALPHA" 2 >/dev/null
  read -r lo po <<<"$(evalp "$OUT/outliers")"
  {
    echo
    echo "Outlier-channel model (x$ALPHA channels, same function; fp32 loss $lo, ppl $po):"
    echo
    echo "| scheme | calibration | transform | val loss | perplexity |"
    echo "|---|---|---|---:|---:|"
  } >>"$MD"
  for s in int8-w8a8 fp8-w8a8 nvfp4 mxfp4; do
    for m in max percentile mse; do
      for tr in none hadamard smoothquant; do
        case $tr in
        none) args=() ;;
        hadamard) args=(--hadamard 128) ;;
        smoothquant) args=(--smoothquant 0.5) ;;
        esac
        "$LOWP" ptq --ckpt "$OUT/outliers" --scheme "$s" --calib "$DATA" --calib-tokens "$CALIB" \
          --method "$m" "${args[@]}" --out "$OUT/o-$s-$m-$tr" >/dev/null
        read -r l p <<<"$(evalp "$OUT/o-$s-$m-$tr")"
        echo "| $s | $m | $tr | $l | $p |" | tee -a "$MD"
      done
    done
  done
fi
if [[ " $PARTS " == *" qat "* ]]; then
  hdr="| scheme | PTQ of base | fp32 fine-tune, then PTQ |"
  sep="|---|---:|---:|"
  for e in $QAT_STE; do
    hdr="$hdr QAT ($e STE), then PTQ |"
    sep="$sep---:|"
  done
  {
    echo
    echo "QAT ($QAT_STEPS steps, lr $QAT_LR, from $QAT_BASE) versus fine-tune-then-quantize:"
    echo
    echo "$hdr fp32 fine-tune itself |"
    echo "$sep---:|"
  } >>"$MD"
  "$LOWP" train --init "$QAT_BASE" --steps "$QAT_STEPS" --lr "$QAT_LR" --warmup 5 --out "$OUT/ft-fp32" \
    --data "$DATA" >/dev/null
  read -r lf pf <<<"$(evalp "$OUT/ft-fp32")"
  for s in $QAT_SCHEMES; do
    "$LOWP" ptq --ckpt "$QAT_BASE" --scheme "$s" --calib "$DATA" --calib-tokens "$CALIB" \
      --out "$OUT/q-base-$s" >/dev/null
    read -r l1 p1 <<<"$(evalp "$OUT/q-base-$s")"
    "$LOWP" ptq --ckpt "$OUT/ft-fp32" --scheme "$s" --calib "$DATA" --calib-tokens "$CALIB" \
      --out "$OUT/q-ft-$s" >/dev/null
    read -r l2 p2 <<<"$(evalp "$OUT/q-ft-$s")"
    row="| $s | $l1 ($p1) | $l2 ($p2) |"
    for e in $QAT_STE; do
      "$LOWP" train --init "$QAT_BASE" --qat "$s" --qat-ste "$e" --steps "$QAT_STEPS" \
        --lr "$QAT_LR" --warmup 5 --out "$OUT/qat-$e-$s" --data "$DATA" >/dev/null
      "$LOWP" ptq --ckpt "$OUT/qat-$e-$s" --scheme "$s" --calib "$DATA" --calib-tokens "$CALIB" \
        --out "$OUT/q-qat-$e-$s" >/dev/null
      read -r l3 p3 <<<"$(evalp "$OUT/q-qat-$e-$s")"
      row="$row $l3 ($p3) |"
    done
    echo "$row $lf ($pf) |" | tee -a "$MD"
  done
fi

cat "$MD"
