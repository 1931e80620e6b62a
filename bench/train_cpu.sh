#!/usr/bin/env bash
# CPU training speed: lowp's fp32 trainer side by side with llm.c's train_gpt2.c on the same
# GPT-2-shaped model, data and thread count, then lowp's overhead per precision recipe over fp32.
# Prints Markdown tables (for bench/RESULTS.md).
#
#   bench/train_cpu.sh [LLMC_SRC]
#
# LLMC_SRC: a directory holding llm.c's sources (train_gpt2.c and llmc/), e.g. extracted from
# github.com/karpathy/llm.c; without it the llm.c comparison is skipped. llm.c is built here in a
# scratch directory, twice: with lowp's optimization flags (-O3, no fast-math) and with llm.c's
# own Makefile flags (-Ofast -march=native). It is patched by bench/llmc_patch.sed only to take
# its inputs, B, T and step count from the command line and to skip validation and sampling.
#
# The machine is shared, so the programs run alternately (A B C A B C ...) for ROUNDS rounds and
# the tables give medians of per-step times, the first WARM steps of each run left out.
# Environment (defaults): BUILD=build ROUNDS=3 STEPS=6 WARM=2 (llm.c comparison; shape
# L=4 NH=4 C=256 ctx 256, V 50257, B=4 T=64), RROUNDS=2 RSTEPS=15 RWARM=3 (recipes: preset small,
# B 8, T 128), THREADS=2.
set -euo pipefail
cd "$(dirname "$0")/.."
LLMC_SRC=${1:-}
BUILD=${BUILD:-build}
ROUNDS=${ROUNDS:-3} STEPS=${STEPS:-6} WARM=${WARM:-2}
RROUNDS=${RROUNDS:-2} RSTEPS=${RSTEPS:-15} RWARM=${RWARM:-3}
L=4 NH=4 C=256 CTX=256 B=4 T=64
RECIPES="fp32 bf16 fp16 fp8-delayed fp8-current fp8-block mxfp8 nvfp4 mxfp4-quartet int8"
export OMP_NUM_THREADS=${THREADS:-2} OMP_WAIT_POLICY=passive
LOWP=$BUILD/lowp
if [ ! -x "$LOWP" ] || [ ! -x "$BUILD/llmc_fixture" ]; then
  echo "build lowp first (cmake -B $BUILD && cmake --build $BUILD)" >&2
  exit 1
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

median() { sort -g | awk '{a[NR] = $1} END {if (NR == 0) print "nan"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
# Per-step milliseconds of a lowp --log file, the first $2 steps left out.
lowp_ms() { grep -o '"tokens_per_s": [0-9.e+-]*' "$1" | awk -v n="$3" -v w="$2" 'NR > w {print n / $2 * 1000}'; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs visible, $OMP_NUM_THREADS threads"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'), lowp $(git rev-parse --short HEAD)"

# --- 1. fp32 vs llm.c --------------------------------------------------------------------
"$BUILD/llmc_fixture" "$TMP" $L $NH $C $CTX >/dev/null
progs="lowp"
if [ -n "$LLMC_SRC" ] && [ -f "$LLMC_SRC/train_gpt2.c" ]; then
  sed -f bench/llmc_patch.sed "$LLMC_SRC/train_gpt2.c" >"$TMP/train_gpt2_bench.c"
  gcc -O3 -DNDEBUG -ffp-contract=off -fno-fast-math -fopenmp -DOMP -Wno-unused-result \
    -I"$LLMC_SRC" "$TMP/train_gpt2_bench.c" -lm -o "$TMP/llmc_o3"
  gcc -Ofast -march=native -fopenmp -DOMP -Wno-unused-result -Wno-ignored-pragmas \
    -Wno-unknown-attributes -I"$LLMC_SRC" "$TMP/train_gpt2_bench.c" -lm -o "$TMP/llmc_ofast"
  progs="llmc_o3 llmc_ofast lowp"
fi
echo "load before part 1: $(load)"
for _ in $(seq "$ROUNDS"); do
  for p in $progs; do
    if [ "$p" = lowp ]; then
      "$LOWP" train --arch gpt2 --layers $L --heads $NH --dim $C --ctx $CTX --vocab 50257 \
        --data "$TMP/train.bin" --val-data "$TMP/val.bin" --batch $B --seq $T --steps "$STEPS" \
        --eval-every 0 --eval-batches 1 --clip 0 --weight-decay 0 --log "$TMP/l.jsonl" >/dev/null
      lowp_ms "$TMP/l.jsonl" "$WARM" $((B * T)) >>"$TMP/ms_$p"
    else
      "$TMP/$p" "$TMP/model.bin" "$TMP/train.bin" "$TMP/val.bin" $B $T "$STEPS" |
        sed -n 's/^step \([0-9]*\):.*took \([0-9.]*\) ms.*/\1 \2/p' |
        awk -v w="$WARM" '$1 >= w {print $2}' >>"$TMP/ms_$p"
    fi
  done
done
echo "load after part 1: $(load)"
echo
echo "GPT-2 shape L=$L, NH=$NH, C=$C, V=50257 (llm.c pads its logits to 50304), B=$B, T=$T;" \
  "$ROUNDS rounds x $STEPS steps, first $WARM of each run left out."
echo
echo "| program | build | steps timed | median ms/step | tokens/s | tokens/s relative to lowp fp32 |"
echo "|---|---|---:|---:|---:|---:|"
lowp_med=$(median <"$TMP/ms_lowp")
for p in $progs; do
  med=$(median <"$TMP/ms_$p")
  case $p in
  lowp) name="lowp train --recipe fp32" build="CMake Release: -O3 -ffp-contract=off -fno-fast-math -fopenmp" ;;
  llmc_o3) name="llm.c train_gpt2.c" build="-O3 -ffp-contract=off -fno-fast-math -fopenmp" ;;
  llmc_ofast) name="llm.c train_gpt2.c" build="llm.c Makefile: -Ofast -march=native -fopenmp" ;;
  esac
  awk -v n="$(wc -l <"$TMP/ms_$p")" -v m="$med" -v l="$lowp_med" -v tok=$((B * T)) -v a="$name" -v b="$build" \
    'BEGIN {printf "| %s | %s | %d | %.0f | %.1f | %.2fx |\n", a, b, n, m, tok / m * 1000, l / m}'
done

# --- 2. recipes on the small preset --------------------------------------------------------
echo
echo "load before part 2: $(load)"
for _ in $(seq "$RROUNDS"); do
  for rc in $RECIPES; do
    "$LOWP" train --model small --batch 8 --seq 128 --steps "$RSTEPS" --eval-every 0 \
      --eval-batches 1 --recipe "$rc" --log "$TMP/r.jsonl" >/dev/null
    lowp_ms "$TMP/r.jsonl" "$RWARM" 1024 >>"$TMP/r_$rc"
  done
done
echo "load after part 2: $(load)"
echo
echo "lowp train --model small (L 4, C 128, V 256) --batch 8 --seq 128 on data/brown.txt;" \
  "$RROUNDS rounds x $RSTEPS steps per recipe, recipes alternating, first $RWARM of each run left out."
echo
echo "| recipe | steps timed | median ms/step | tokens/s | overhead over fp32 |"
echo "|---|---:|---:|---:|---:|"
fp32_med=$(median <"$TMP/r_fp32")
for rc in $RECIPES; do
  med=$(median <"$TMP/r_$rc")
  awk -v n="$(wc -l <"$TMP/r_$rc")" -v m="$med" -v f="$fp32_med" -v a="$rc" \
    'BEGIN {printf "| %s | %d | %.0f | %.0f | %.2fx |\n", a, n, m, 1024 / m * 1000, m / f}'
done
