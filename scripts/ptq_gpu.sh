#!/usr/bin/env bash
# The PTQ / QAT / mixed-precision tables of docs/ptq.md on a model trained on the GPU, in one run:
#   scripts/ptq_gpu.sh [OUT]              (OUT: default $OUT, else /tmp/lowp-ptq-gpu)
# 1. train   the base model on the GPU (lowp train --device cuda, bf16 recipe; steps: a short
#            probe run measures tokens/s and the steps fill TRAIN_SECONDS, unless BASE_STEPS=N)
# 2. stats   outlier statistics of every linear layer's input (lowp ptq --stats)
# 3. table   every scheme x max/percentile/mse x Hadamard no/128, SmoothQuant 0.5 for W8A8
#            (lowp ptq + lowp eval on the CPU: JOBS processes of THREADS OpenMP threads)
# 4. plan    lowp sensitivity --budget-bits, plan vs uniform quantization at the same bits
# 5. qat     on the GPU while the CPU runs 3 and 4: an FT_RECIPE fine-tune and a QAT fine-tune
#            (--qat S, each STE of QAT_STE: plain, clipped, plain-q, clipped-q; -q: --qat-grad
#            quantized; each may end in -kd: distilled from the base, --distill WORK/base) of
#            every scheme, same steps, once per data-order seed
#            of QAT_SEEDS (GPU_JOBS arms at a time); then PTQ + eval on the CPU (QAT_EVAL_BATCHES)
#            and the share of the gap QAT recovers, mean and spread over the seeds. A QAT scheme
#            written S+hN trains with --qat-hadamard N and every PTQ of its row uses --hadamard N.
# Writes OUT/ptq_gpu.md (every table), OUT/results.tsv, OUT/progress.log, OUT/base_train.log,
# OUT/sensitivity.txt, OUT/sensitivity.svg and OUT/logs.tgz (every log); the checkpoints go to
# WORK (runs/ptq-gpu, ignored by git). A base checkpoint already in WORK/base is reused (delete
# it to retrain). Set DEVICE=cpu and a tiny model to test the script without a GPU (see the
# e2e test tests/e2e/ptq_gpu_script.sh).
set -euo pipefail
SELF="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$SELF")/.." # relative paths (OUT, WORK, LOWP, DATA) are from the repository root

if [ "${1:-}" != __job ]; then # the defaults, exported for the job processes
  set -a
  OUT=${1:-${OUT:-/tmp/lowp-ptq-gpu}}
  WORK=${WORK:-runs/ptq-gpu}
  LOWP=${LOWP:-build-gpu/lowp}
  DATA=${DATA:-data/brown.txt}
  DEVICE=${DEVICE:-cuda}
  PARTS=${PARTS:-"train stats table plan qat"}
  # the base model (GPT-2 architecture, byte-level)
  LAYERS=${LAYERS:-6} HEADS=${HEADS:-6} DIM=${DIM:-384} CTX=${CTX:-256}
  FFN=${FFN:-$((4 * DIM))}
  BATCH=${BATCH:-32} LR=${LR:-1e-3} RECIPE=${RECIPE:-bf16} SEED=${SEED:-1337}
  BASE_STEPS=${BASE_STEPS:-auto} TRAIN_SECONDS=${TRAIN_SECONDS:-150}
  PROBE_STEPS=${PROBE_STEPS:-30} MIN_STEPS=${MIN_STEPS:-500} MAX_STEPS=${MAX_STEPS:-4000}
  # evaluation and calibration (CPU)
  EVAL_BATCHES=${EVAL_BATCHES:-4} EVAL_BATCH=${EVAL_BATCH:-8} CALIB=${CALIB:-4096}
  THREADS=${THREADS:-2}
  JOBS=${JOBS:-$((($(nproc) - 2) / THREADS > 0 ? ($(nproc) - 2) / THREADS : 1))} # 2 cores: the GPU runs
  SCHEMES=${SCHEMES:-"fp8-w8a8 int8-w8a8 int4-g128 nf4 nvfp4 mxfp4"}
  METHODS=${METHODS:-"max percentile mse"}
  HADAMARD=${HADAMARD:-"0 128"}
  SQ_SCHEMES=${SQ_SCHEMES-"fp8-w8a8 int8-w8a8"} # may be empty
  # QAT and the fine-tune-then-quantize arm (GPU)
  QAT_SCHEMES=${QAT_SCHEMES-"bf16 $SCHEMES"} # S+hN: QAT and PTQ with the Hadamard N (nvfp4+h128)
  QAT_STE=${QAT_STE:-"plain clipped"} # one column each; E-q: --qat-ste E --qat-grad quantized;
  # E-kd (plain-kd, clipped-q-kd, ...): E trained by distillation from the base (--distill)
  # data-order seeds: every arm once per seed k, its training data from token k * QAT_DATA_STRIDE
  # on (lowp train --data-offset, modulo the stream); the arms of one seed see the same data
  QAT_SEEDS=${QAT_SEEDS:-0} QAT_DATA_STRIDE=${QAT_DATA_STRIDE:-1000003}
  QAT_EVAL_BATCHES=${QAT_EVAL_BATCHES:-$EVAL_BATCHES} # the evaluations of the QAT table
  GPU_JOBS=${GPU_JOBS:-1}                             # arms trained at once (processes on one GPU)
  QAT_STEPS=${QAT_STEPS:-600} QAT_LR=${QAT_LR:-5e-5} QAT_WARMUP=${QAT_WARMUP:-30}
  QAT_BATCH=${QAT_BATCH:-$BATCH} FT_RECIPE=${FT_RECIPE:-fp32}
  # mixed precision: NAME:SCHEME:SCHEME8:BUDGET:UNIFORM,UNIFORM,...
  PLANS=${PLANS:-"w4a16:int4-g128:int8:4.5:int4-g128,nf4,nvfp4-w4a16,mxfp4-w4a16 w4a4:mxfp4:int8-w8a8:4.5:nvfp4,mxfp4 w8a8:mxfp4:int8-w8a8:8:int8-w8a8"}
  # jobs and GPU arms that have not started DEADLINE s after the start are skipped (n/a in the
  # tables), so that the tables are written before an outer time limit (the device's 600 s)
  DEADLINE=${DEADLINE:-540}
  SENS_BATCHES=${SENS_BATCHES:-1} SENS_BATCH=${SENS_BATCH:-4} SENS_FISHER=${SENS_FISHER:-2}
  export OMP_WAIT_POLICY=passive
  RES=$WORK/res
  LOGS=$WORK/logs
  T0=$(date +%s)
  set +a
fi

ts() { echo "[$(date +%H:%M:%S) +$(($(date +%s) - T0))s] $*" | tee -a "$OUT/progress.log"; }
die() {
  ts "FAILED: $*"
  exit 1
}

evalp() { # checkpoint -> "loss ppl" over NB batches (default EVAL_BATCHES)
  OMP_NUM_THREADS=$THREADS "$LOWP" eval --ckpt "$1" --data "$DATA" --batches "${NB:-$EVAL_BATCHES}" \
    --batch "$EVAL_BATCH" --seq "$CTX" |
    awk '/^val_loss/ {l=$2} /^perplexity/ {p=$2} END {if (l == "") exit 1; printf "%.4f %.3f", l, p}'
}
ptqe() { # key ckpt scheme [ptq args] -> RES/key: "loss ppl bits"; scheme S+hN: --hadamard N
  local key=$1 ck=$2 scheme=$3 bits lp
  shift 3
  if [[ $scheme == *+h* ]]; then
    set -- "$@" --hadamard "${scheme##*+h}"
    scheme=${scheme%%+h*}
  fi
  bits=$(OMP_NUM_THREADS=$THREADS "$LOWP" ptq --ckpt "$ck" --scheme "$scheme" --calib "$DATA" \
    --calib-tokens "$CALIB" --seq "$CTX" --out "$WORK/q/$key" "$@" |
    sed -n 's/.*, \([0-9.]*\) bits per linear weight.*/\1/p')
  lp=$(evalp "$WORK/q/$key")
  echo "$lp $bits" >"$RES/$key"
  rm -rf "${WORK:?}/q/$key" # keep the disk small: only the numbers are needed
}
late() { [ $(($(date +%s) - T0)) -gt "$DEADLINE" ]; }
waitfor() { # a GPU arm's checkpoint
  while [ ! -e "$WORK/$1.done" ]; do
    [ -e "$WORK/$1.failed" ] && return 1
    late && return 1
    sleep 0.2
  done
}

# One CPU job (a line of the job list): runs under xargs -P, records its result or "failed".
job() {
  local kind=$1 key=$2 t=$SECONDS
  shift 2
  if late; then
    echo skipped >"$RES/$key"
    echo "[$(date +%H:%M:%S)] SKIPPED $key: past the deadline (${DEADLINE}s)" >>"$OUT/progress.log"
    return 0
  fi
  echo "[$(date +%H:%M:%S)] start $key" >>"$OUT/progress.log"
  if (
    set -euo pipefail
    case $kind in
    ptq) ptqe "$key" "$@" ;;
    eval) echo "$(evalp "$1") -" >"$RES/$key" ;;
    arm) # ARM SCHEME: PTQ (max, no transform unless S+hN) of a fine-tuned / QAT checkpoint
      waitfor "$1"
      NB=$QAT_EVAL_BATCHES ptqe "$key" "$WORK/$1" "$2"
      ;;
    armeval)
      waitfor "$1"
      echo "$(NB=$QAT_EVAL_BATCHES evalp "$WORK/$1") -" >"$RES/$key"
      ;;
    qptq) # CKPT SCHEME: PTQ of the base for the QAT table (its evaluation set)
      NB=$QAT_EVAL_BATCHES ptqe "$key" "$@"
      ;;
    stats)
      OMP_NUM_THREADS=$THREADS "$LOWP" ptq --ckpt "$WORK/base" --stats --calib "$DATA" \
        --calib-tokens "$CALIB" --seq "$CTX" >"$RES/$key"
      ;;
    plan) # NAME SCHEME SCHEME8 BUDGET: sensitivity, the plan, applied and evaluated
      local name=$1 scheme=$2 s8=$3 budget=$4
      OMP_NUM_THREADS=$THREADS "$LOWP" sensitivity --ckpt "$WORK/base" --scheme "$scheme" \
        --scheme8 "$s8" --data "$DATA" --calib-tokens "$CALIB" --batches "$SENS_BATCHES" \
        --batch "$SENS_BATCH" --seq "$CTX" --fisher-batches "$SENS_FISHER" \
        --budget-bits "$budget" --plan-out "$WORK/plan-$name.txt" \
        --svg "$WORK/sensitivity-$name.svg" >"$WORK/sensitivity-$name.txt"
      OMP_NUM_THREADS=$THREADS "$LOWP" ptq --ckpt "$WORK/base" --plan "$WORK/plan-$name.txt" \
        --calib "$DATA" --calib-tokens "$CALIB" --seq "$CTX" --out "$WORK/q/$key" |
        sed -n 's/.*, \([0-9.]*\) bits per linear weight.*/\1/p' >"$WORK/$key.bits"
      echo "$(evalp "$WORK/q/$key") $(cat "$WORK/$key.bits")" >"$RES/$key"
      ;;
    esac
  ) >"$LOGS/$key.log" 2>&1; then
    echo "[$(date +%H:%M:%S)] done  $key ($((SECONDS - t)) s): $(head -c 60 "$RES/$key" | head -1)" >>"$OUT/progress.log"
  else
    echo failed >"$RES/$key"
    echo "[$(date +%H:%M:%S)] FAILED $key ($((SECONDS - t)) s): see logs.tgz $key.log" >>"$OUT/progress.log"
  fi
}

if [ "${1:-}" = __job ]; then
  shift
  job "$@"
  exit 0
fi

has() { [[ " $PARTS " == *" $1 "* ]]; }
mkdir -p "$OUT" "$WORK" "$RES" "$LOGS" "$WORK/q"
: >"$OUT/progress.log"
[ -x "$LOWP" ] || die "$LOWP not found: build first (or set LOWP)"
[ -s "$DATA" ] || die "$DATA not found (scripts/fetch-corpus.sh, or carry data/)"
[[ $GPU_JOBS =~ ^[1-9][0-9]*$ ]] || die "GPU_JOBS: '$GPU_JOBS' is not a positive integer"
ts "ptq_gpu.sh: OUT=$OUT WORK=$WORK LOWP=$LOWP DEVICE=$DEVICE PARTS='$PARTS'"
ts "CPU: $(nproc) cores, $JOBS jobs x $THREADS threads; model L=$LAYERS C=$DIM NH=$HEADS T=$CTX"
if [ "$DEVICE" = cuda ] && command -v nvidia-smi >/dev/null; then
  ts "GPU: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1)"
fi

# ---- 1. the base model ----
train() { # out-dir log [args]
  local out=$1 log=$2
  shift 2
  OMP_NUM_THREADS=$THREADS "$LOWP" train --device "$DEVICE" --data "$DATA" --out "$out" "$@" >"$log" 2>&1
}
tpart=$SECONDS
if has train && [ ! -e "$WORK/base/model.safetensors" ]; then
  model=(--layers "$LAYERS" --heads "$HEADS" --dim "$DIM" --ffn "$FFN" --ctx "$CTX")
  steps=$BASE_STEPS
  if [ "$steps" = auto ]; then
    train "$WORK/probe" "$LOGS/probe.log" "${model[@]}" --recipe "$RECIPE" --batch "$BATCH" \
      --steps "$PROBE_STEPS" --eval-every 0 --eval-batches 1 || die "probe run: $(tail -3 "$LOGS/probe.log")"
    tps=$(awk '/^step/ {for (i = 1; i < NF; i++) if ($(i + 1) == "tok/s") v = $i} END {print v + 0}' \
      "$LOGS/probe.log")
    steps=$(awk -v t="$tps" -v s="$TRAIN_SECONDS" -v bt="$((BATCH * CTX))" -v lo="$MIN_STEPS" \
      -v hi="$MAX_STEPS" 'BEGIN {n = int(0.9 * t * s / bt / 100) * 100; n = n < lo ? lo : n;
      print (n > hi ? hi : n)}')
    ts "probe: $tps tokens/s (last step) -> $steps steps of $BATCH x $CTX for ~${TRAIN_SECONDS}s"
    rm -rf "$WORK/probe"
  fi
  ts "training the base model: $steps steps, recipe $RECIPE, lr $LR"
  train "$WORK/base" "$OUT/base_train.log" "${model[@]}" --recipe "$RECIPE" --batch "$BATCH" \
    --steps "$steps" --lr "$LR" --seed "$SEED" --eval-every 250 --eval-batches 16 ||
    die "base training: $(tail -3 "$OUT/base_train.log")"
  echo "$steps" >"$WORK/base.steps"
  ts "base model: $(grep -m1 'final train loss' "$OUT/base_train.log" | sed 's/^ *//') ($((SECONDS - tpart)) s)"
fi
[ -e "$WORK/base/model.safetensors" ] || die "no base model in $WORK/base (PARTS needs train)"
[ -e "$OUT/base_train.log" ] || cp "$WORK/base_train.log" "$OUT/" 2>/dev/null || true
cp "$OUT/base_train.log" "$WORK/base_train.log" 2>/dev/null || true

# ---- 5 (GPU part, in the background): the fine-tune and QAT arms ----
# Arm names: ft-sSEED, qat-STE-SCHEME-sSEED; their checkpoints are WORK/NAME.
arms=() gpu_pids=()
declare -A arm_args=() arm_scheme=()
if has qat; then
  for seed in $QAT_SEEDS; do
    [[ $seed =~ ^[0-9]+$ ]] || die "QAT_SEEDS: '$seed' is not a non-negative integer"
    arms+=("ft-s$seed")
    off="--data-offset $((seed * QAT_DATA_STRIDE))"
    arm_args[ft-s$seed]="--recipe $FT_RECIPE $off"
    for s in $QAT_SCHEMES; do
      for e in $QAT_STE; do
        [ "$s" = bf16 ] && [ "$e" != "${QAT_STE%% *}" ] && continue # bf16: one STE (nothing clips)
        a=qat-$e-$s-s$seed
        arms+=("$a")
        arm_scheme[$a]=$s
        ee=${e%-kd} # E-kd: E, distilled from the base (the teacher is the --init checkpoint)
        case $ee in plain | clipped | plain-q | clipped-q) ;; *) die "QAT_STE: '$e' is not plain, clipped, plain-q or clipped-q, optionally with -kd" ;; esac
        arm_args[$a]="--qat ${s%%+h*} --qat-ste ${ee%-q} $off"
        [[ $ee == *-q ]] && arm_args[$a]+=" --qat-grad quantized"
        [[ $e == *-kd ]] && arm_args[$a]+=" --distill $WORK/base"
        [[ $s == *+h* ]] && arm_args[$a]+=" --qat-hadamard ${s##*+h}"
      done
    done
  done
  rm -f "$WORK"/*.done "$WORK"/*.failed
  for ((lane = 0; lane < GPU_JOBS; lane++)); do # lane k trains arms k, k + GPU_JOBS, ...
    (
      for ((i = lane; i < ${#arms[@]}; i += GPU_JOBS)); do
        a=${arms[$i]}
        t=$SECONDS
        if late; then
          touch "$WORK/$a.failed"
          ts "GPU arm $a SKIPPED: past the deadline (${DEADLINE}s)"
          continue
        fi
        read -r -a args <<<"${arm_args[$a]}"
        if train "$WORK/$a" "$LOGS/train-$a.log" --init "$WORK/base" --steps "$QAT_STEPS" \
          --batch "$QAT_BATCH" --seq "$CTX" --lr "$QAT_LR" --warmup "$QAT_WARMUP" --eval-every 0 \
          --eval-batches 4 "${args[@]}"; then
          touch "$WORK/$a.done"
          ts "GPU arm $a done ($((SECONDS - t)) s): $(grep -m1 'final train loss' "$LOGS/train-$a.log" | sed 's/^ *//')"
        else
          touch "$WORK/$a.failed"
          ts "GPU arm $a FAILED: $(tail -2 "$LOGS/train-$a.log" | tr '\n' ' ')"
        fi
      done
    ) &
    gpu_pids+=($!)
  done
  ts "GPU: ${#arms[@]} fine-tune arms of $QAT_STEPS steps queued, $GPU_JOBS at a time (pids ${gpu_pids[*]})"
fi

# ---- 2, 3, 4, 5 (CPU part): one job list, longest first, run JOBS at a time ----
jobs_file=$WORK/jobs.txt
: >"$jobs_file"
if has plan; then
  for p in $PLANS; do
    IFS=: read -r name scheme s8 budget uni <<<"$p"
    echo "plan plan-$name $name $scheme $s8 $budget" >>"$jobs_file"
  done
fi
has stats && echo "stats stats" >>"$jobs_file"
echo "eval base $WORK/base" >>"$jobs_file"
if has table; then
  echo "ptq t-bf16 $WORK/base bf16" >>"$jobs_file"
  for s in $SCHEMES; do
    for m in $METHODS; do
      for h in $HADAMARD; do
        echo "ptq t-$s-$m-h$h $WORK/base $s --method $m --hadamard $h" >>"$jobs_file"
      done
    done
  done
  for s in $SQ_SCHEMES; do
    echo "ptq t-$s-sq $WORK/base $s --method mse --smoothquant 0.5" >>"$jobs_file"
  done
fi
base_key() { # the table's key of "scheme, max, no Hadamard" (S+hN: Hadamard N) if the table has
  # it, else its own job
  local s=${1%%+h*} h=0
  [[ $1 == *+h* ]] && h=${1##*+h}
  if has table && [[ " $SCHEMES " == *" $s "* && " $METHODS " == *" max "* && " $HADAMARD " == *" $h "* ]]; then
    echo "t-$s-max-h$h"
  elif [ "$1" = bf16 ] && has table; then
    echo t-bf16
  else
    echo "u-$1"
  fi
}
qat_base_key() { # the QAT table's "PTQ of base": the PTQ table's cell if it has the same evaluation
  if [ "$QAT_EVAL_BATCHES" = "$EVAL_BATCHES" ]; then base_key "$1"; else echo "qb-$1"; fi
}
declare -A extra=()
if has plan; then
  for p in $PLANS; do
    IFS=: read -r name scheme s8 budget uni <<<"$p"
    for u in ${uni//,/ }; do
      k=$(base_key "$u")
      [[ $k == u-* ]] && extra[$k]="ptq $k $WORK/base $u"
    done
  done
fi
if has qat; then
  for s in $QAT_SCHEMES; do
    k=$(qat_base_key "$s")
    [[ $k == u-* ]] && extra[$k]="ptq $k $WORK/base $s"
    [[ $k == qb-* ]] && extra[$k]="qptq $k $WORK/base $s"
  done
fi
for k in "${!extra[@]}"; do echo "${extra[$k]}" >>"$jobs_file"; done
if has qat; then # last, in the GPU's order: they wait for their arm
  for a in "${arms[@]}"; do
    if [[ $a == ft-s* ]]; then # ft-sSEED: the fine-tune itself and its PTQ for every QAT scheme
      echo "armeval ft-eval-${a#ft-} $a" >>"$jobs_file"
      for s in $QAT_SCHEMES; do echo "arm ft-$s-${a#ft-} $a $s" >>"$jobs_file"; done
    else
      echo "arm $a $a ${arm_scheme[$a]}" >>"$jobs_file"
    fi
  done
fi
ts "CPU: $(wc -l <"$jobs_file") jobs (ptq + eval: $EVAL_BATCHES x $EVAL_BATCH x $CTX tokens," \
  "QAT table $QAT_EVAL_BATCHES x $EVAL_BATCH x $CTX; calibration $CALIB tokens)"
tpart=$SECONDS
xargs -P "$JOBS" -L 1 bash "$SELF" __job <"$jobs_file" || ts "some job exited non-zero"
ts "CPU jobs done ($((SECONDS - tpart)) s)"
for p in "${gpu_pids[@]}"; do wait "$p" || true; done

# ---- the tables ----
get() { # key field(1 loss, 2 ppl, 3 bits) -> value or "n/a"
  local v=(n/a n/a n/a)
  [ -s "$RES/$1" ] && read -r -a v <"$RES/$1"
  [[ ${v[0]} =~ ^[0-9.]+$ ]] || v=(n/a n/a n/a) # failed, skipped
  echo "${v[$(($2 - 1))]:-n/a}"
}
cell() { echo "$(get "$1" 2) ($(get "$1" 1))"; }
nseeds=$(echo "$QAT_SEEDS" | wc -w)
mcell() { # KEY: "ppl (loss)", the means over the seeds of KEY-sSEED (and how many, if not all)
  local vals="" x
  for x in $QAT_SEEDS; do vals="$vals $(get "$1-s$x" 2) $(get "$1-s$x" 1)"; done
  awk -v v="$vals" -v n="$nseeds" 'BEGIN {k = split(v, a, " "); m = 0; p = 0; l = 0;
    for (i = 1; i < k; i += 2) if (a[i] != "n/a") {m++; p += a[i]; l += a[i + 1]}
    if (m == 0) {print "n/a (n/a)"; exit}
    printf "%.3f (%.4f)%s", p / m, l / m, m < n ? sprintf(" [%d of %d seeds]", m, n) : ""}'
}
# The share of the fine-tune-then-quantize perplexity gap (to the fine-tune itself) that QAT
# recovers, 1 - (ppl_qat - ppl_ft) / (ppl_ftptq - ppl_ft), per seed (the arms of one seed share
# their data order); with several seeds: mean +- standard deviation (the per-seed values; pooled:
# the share of the mean gap, steadier where a seed's gap is tiny). "-": no gap to recover.
recovered() { # SCHEME QATKEY
  local vals="" x
  for x in $QAT_SEEDS; do vals="$vals $(get "ft-$1-s$x" 2) $(get "$2-s$x" 2) $(get "ft-eval-s$x" 2)"; done
  awk -v v="$vals" 'BEGIN {k = split(v, a, " "); m = 0; s = 0; ss = 0; list = ""; A = 0; Q = 0; F = 0;
    for (i = 1; i < k; i += 3) {
      if (a[i] == "n/a" || a[i + 1] == "n/a" || a[i + 2] == "n/a") {list = list (list == "" ? "" : ", ") "n/a"; continue}
      A += a[i]; Q += a[i + 1]; F += a[i + 2]
      if (a[i] - a[i + 2] <= 0) {list = list (list == "" ? "" : ", ") "-"; continue}
      r = 100 * (1 - (a[i + 1] - a[i + 2]) / (a[i] - a[i + 2])); m++; s += r; ss += r * r
      list = list (list == "" ? "" : ", ") sprintf("%.0f", r)}
    if (k <= 3) {if (m) printf "%.0f %%", s; else print "-"; exit}
    if (m == 0) {print "- (" list ")"; exit}
    mean = s / m; sd = m > 1 ? sqrt((ss - m * mean * mean) / (m - 1) > 0 ? (ss - m * mean * mean) / (m - 1) : 0) : 0
    pooled = (A - F > 0) ? sprintf("%.0f %%", 100 * (1 - (Q - F) / (A - F))) : "-"
    printf "%.0f +- %.0f %% (%s; pooled %s)", mean, sd, list, pooled}'
}
MD=$OUT/ptq_gpu.md
{
  steps=$(cat "$WORK/base.steps" 2>/dev/null || echo "?")
  echo "## PTQ / QAT on a GPU-trained model (scripts/ptq_gpu.sh)"
  echo
  echo "Base model: GPT-2 architecture, $LAYERS layers, C = $DIM, $HEADS heads, FFN $FFN, T = $CTX," \
    "byte-level $DATA, trained with \`lowp train --device $DEVICE --recipe $RECIPE\`" \
    "($steps steps of $BATCH x $CTX tokens, lr $LR, seed $SEED):" \
    "$(grep -m1 'final train loss' "$OUT/base_train.log" 2>/dev/null | sed 's/^ *//' || true)" \
    "$(grep -m1 'steps (.*skipped) of recipe' "$OUT/base_train.log" 2>/dev/null | sed 's/^summary: //' || true)."
  echo "Evaluation: \`lowp eval\` on the CPU, $EVAL_BATCHES batches of $EVAL_BATCH x $CTX tokens of" \
    "the validation split (last 10 %); calibration: the first $CALIB tokens of the training split." \
    "Cells: perplexity (val loss, nats per byte)."
  echo
  echo "fp32 base: $(cell base)"
  if has stats && [ -s "$RES/stats" ]; then
    echo
    echo "### Linear-layer inputs of the base model (\`lowp ptq --stats\`)"
    echo
    grep '^|' "$RES/stats"
  fi
  if has table; then
    echo
    echo "### Every scheme x calibration x Hadamard (and QAT)"
    echo
    hdr="| scheme | bits |"
    sep="|---|---:|"
    for h in $HADAMARD; do
      for m in $METHODS; do
        hdr="$hdr $m$([ "$h" = 0 ] || echo ", H$h") |"
        sep="$sep---:|"
      done
    done
    hdr="$hdr SmoothQuant 0.5 (mse) |"
    sep="$sep---:|"
    echo "$hdr"
    echo "$sep"
    row="| bf16 | 16 | $(cell t-bf16) |"
    for ((i = 1; i < $(echo "$METHODS" | wc -w) * $(echo "$HADAMARD" | wc -w) + 1; i++)); do row="$row - |"; done
    echo "$row"
    for s in $SCHEMES; do
      row="| $s | $(get "t-$s-max-h0" 3) |"
      for h in $HADAMARD; do
        for m in $METHODS; do row="$row $(cell "t-$s-$m-h$h") |"; done
      done
      if [[ " $SQ_SCHEMES " == *" $s "* ]]; then row="$row $(cell "t-$s-sq") |"; else row="$row - |"; fi
      echo "$row"
    done
  fi
  if has qat; then
    echo
    echo "### QAT versus fine-tune-then-quantize ($QAT_STEPS steps of $QAT_BATCH x $CTX, lr $QAT_LR," \
      "warmup $QAT_WARMUP, on $DEVICE; PTQ after: max calibration, no transform (S+hN: Hadamard N);" \
      "seeds $QAT_SEEDS; evaluation $QAT_EVAL_BATCHES batches of $EVAL_BATCH x $CTX)"
    echo
    if [[ " $QAT_STE " == *-q\ * ]]; then
      echo "STE E-q: \`--qat-ste E --qat-grad quantized\` (the backward GEMMs take the forward's" \
        "quantized W and X: dX = dY Q(W), dW = dY^T Q(X)); plain / clipped: the fp32 W and X."
      echo
    fi
    if [[ " $QAT_STE " == *-kd\ * ]]; then
      echo "STE E-kd: E trained by distillation from the base checkpoint (\`--distill\`, T 1, A 1:" \
        "the student matches the full-precision base's output distribution, QAD). Its control" \
        "needs no arm: distilling the unquantized model from itself is a no-op (zero gradient)."
      echo
    fi
    if [ "$nseeds" -gt 1 ]; then
      echo "Perplexity cells: means over the seeds. Recovered: mean +- standard deviation over" \
        "the seeds (each seed's share; pooled: the share of the mean gap)."
      echo
    fi
    hdr="| scheme | PTQ of base | $FT_RECIPE fine-tune, then PTQ |"
    sep="|---|---:|---:|"
    for e in $QAT_STE; do
      hdr="$hdr QAT ($e STE), then PTQ | recovered ($e) |"
      sep="$sep---:|---:|"
    done
    echo "$hdr $FT_RECIPE fine-tune itself |"
    echo "$sep---:|"
    for s in $QAT_SCHEMES; do
      row="| $s | $(cell "$(qat_base_key "$s")") | $(mcell "ft-$s") |"
      for e in $QAT_STE; do
        k=qat-$e-$s
        [ "$s" = bf16 ] && k=qat-${QAT_STE%% *}-$s
        row="$row $(mcell "$k") | $(recovered "$s" "$k") |"
      done
      echo "$row $(mcell ft-eval) |"
    done
  fi
  if has plan; then
    echo
    echo "### Mixed precision under a budget versus uniform (\`lowp sensitivity\`, $SENS_BATCHES" \
      "batch(es) of $SENS_BATCH x $CTX per measurement)"
    echo
    echo "| menu | budget | plan: bits, perplexity (loss) | uniform: bits, perplexity (loss) |"
    echo "|---|---:|---|---|"
    for p in $PLANS; do
      IFS=: read -r name scheme s8 budget uni <<<"$p"
      u=""
      for x in ${uni//,/ }; do
        k=$(base_key "$x")
        u="$u${u:+; }$x $(get "$k" 3), $(cell "$k")"
      done
      echo "| bf16 / $s8 / $scheme | $budget | $(get "plan-$name" 3), $(cell "plan-$name") | $u |"
    done
  fi
} >"$MD"
# every number, one line per key
{
  printf "key\tloss\tperplexity\tbits\n"
  for f in "$RES"/*; do
    [ "$(basename "$f")" = stats ] && continue
    printf "%s\t%s\n" "$(basename "$f")" "$(tr ' ' '\t' <"$f")"
  done
} >"$OUT/results.tsv"
if has plan; then
  for p in $PLANS; do
    name=${p%%:*}
    echo "==== $name: $p"
    cat "$WORK/sensitivity-$name.txt" 2>/dev/null || echo "(missing)"
    echo
  done >"$OUT/sensitivity.txt"
  first=${PLANS%% *}
  cp "$WORK/sensitivity-${first%%:*}.svg" "$OUT/sensitivity.svg" 2>/dev/null || true
fi
cp "$WORK/jobs.txt" "$LOGS/" 2>/dev/null || true
tar -czf "$OUT/logs.tgz" -C "$WORK" logs
nfail=$( (grep -lx failed "$RES"/* 2>/dev/null || true) | wc -l)
nskip=$( (grep -lx skipped "$RES"/* 2>/dev/null || true) | wc -l)
ts "wrote $MD, $OUT/results.tsv ($nfail failed, $nskip skipped); total $((SECONDS)) s"
cat "$MD"
[ "$nfail" = 0 ] && [ "$nskip" = 0 ]
