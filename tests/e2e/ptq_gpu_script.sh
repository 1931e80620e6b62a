#!/usr/bin/env bash
# scripts/ptq_gpu.sh end to end on the CPU (DEVICE=cpu), one scheme, a tiny model, a few steps:
# every part runs (train with the speed probe, stats, table, plan, QAT arms: two data-order seeds,
# two arms at a time, a QAT scheme with a Hadamard, its own evaluation set, a distilled STE
# column: plain-kd) and every output file
# is written with no failed entry.
#   bash ptq_gpu_script.sh <lowp> <source-dir>
set -euo pipefail
LOWP=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
SRC=$2
T=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
awk 'BEGIN { srand(5); for (i = 0; i < 6000; i++) { w = ""; n = 2 + int(rand() * 6);
  for (j = 0; j < n; j++) w = w sprintf("%c", 97 + int(rand() * 26)); printf "%s ", w } }' >"$T/t.txt"
DEVICE=cpu LOWP="$LOWP" DATA="$T/t.txt" WORK="$T/w" LAYERS=1 DIM=64 HEADS=4 CTX=32 BATCH=2 \
  PROBE_STEPS=2 TRAIN_SECONDS=1 MIN_STEPS=3 MAX_STEPS=3 EVAL_BATCHES=1 EVAL_BATCH=2 CALIB=64 \
  SCHEMES=nvfp4 METHODS=max HADAMARD=0 SQ_SCHEMES="" QAT_SCHEMES="int4-g128 nvfp4+h32" \
  QAT_SEEDS="1 2" GPU_JOBS=2 QAT_EVAL_BATCHES=2 QAT_STE="plain plain-kd" QAT_STEPS=2 QAT_WARMUP=1 QAT_BATCH=2 SENS_BATCH=2 SENS_FISHER=1 \
  PLANS="p:nvfp4:int8:6:nvfp4" JOBS=2 THREADS=1 \
  bash "$SRC/scripts/ptq_gpu.sh" "$T/out" >"$T/log" 2>&1 || fail "script: $(tail -20 "$T/log")"
for f in ptq_gpu.md results.tsv progress.log base_train.log sensitivity.txt sensitivity.svg logs.tgz; do
  [ -s "$T/out/$f" ] || fail "missing $f"
done
md=$T/out/ptq_gpu.md
grep -q "probe: .* -> 3 steps" "$T/out/progress.log" || fail "probe: $(cat "$T/out/progress.log")"
grep -q '^| transformer.h.0.mlp.c_proj.weight | 256 |' "$md" || fail "stats table"
grep -Eq '^\| nvfp4 \| 4\.[0-9]+ \| [0-9.]+ \([0-9.]+\) \| - \|$' "$md" ||
  fail "PTQ row: $(grep '^| nvfp4' "$md")"
# QAT rows: perplexity (loss) means over the seeds; recovered "mean +- sd % (s1, s2; pooled p %)"
ppl='[0-9.]+ \([0-9.]+\)'
rec='(-?[0-9]+ \+- [0-9]+ % \([-0-9]+, [-0-9]+; pooled (-?[0-9]+ %|-)\)|- \([-, ]+\))'
for s in int4-g128 'nvfp4\+h32'; do
  grep -Eq "^\| $s \| $ppl \| $ppl \| $ppl \| $rec \| $ppl \| $rec \| $ppl \|\$" "$md" ||
    fail "QAT row $s: $(grep "^| ${s//\\/}" "$md")"
done
grep -q "2 at a time" "$T/out/progress.log" || fail "GPU_JOBS: $(grep 'GPU:' "$T/out/progress.log")"
grep -Eq '^\| bf16 / int8 / nvfp4 \| 6 \| [0-9.]+, [0-9.]+ \([0-9.]+\) \| nvfp4 4\.[0-9]+, [0-9.]+ \([0-9.]+\) \|$' "$md" ||
  fail "plan row: $(grep '^| bf16 /' "$md")"
grep -q "QAT (plain-kd STE), then PTQ" "$md" || fail "no plain-kd column: $(grep '^| scheme' "$md")"
grep -q "^STE E-kd: " "$md" || fail "no note on -kd"
[ "$(tar -xzOf "$T/out/logs.tgz" | grep -c "objective: distillation from $T/w/base (T 1, A 1")" = 4 ] ||
  fail "the -kd arms (2 schemes x 2 seeds) did not all distill from the base"
! grep -q failed "$T/out/results.tsv" || fail "failed entries: $(cat "$T/out/results.tsv")"
# per seed: the fine-tune, its PTQ per scheme, QAT per scheme; the QAT table's base
# PTQ (its own evaluation set)
[ "$(grep -c '^qat-.*-s[12]	\|^ft-.*-s[12]	' "$T/out/results.tsv")" = 14 ] ||
  fail "QAT keys: $(cat "$T/out/results.tsv")"
[ "$(grep -c '^qb-int4-g128	\|^qb-nvfp4+h32	' "$T/out/results.tsv")" = 2 ] || fail "qb keys"
# the seeds' fine-tunes read other data: they differ
f1=$(grep '^ft-eval-s1	' "$T/out/results.tsv" | cut -f2)
f2=$(grep '^ft-eval-s2	' "$T/out/results.tsv" | cut -f2)
[ -n "$f1" ] && [ "$f1" != "$f2" ] || fail "seeds: fine-tunes $f1 and $f2"
echo ok
