#!/usr/bin/env bash
# Several GPUs against one (run on a machine with 2 GPUs and NCCL, from the repository root):
#     bash tests/gpu/dist_match.sh BUILD_DIR [DATA_FILE]
# (DATA_FILE: a text file, e.g. data/brown.txt; without it a 1 MB text of pseudo-random words is
# made here.)
# 1. Losses: the tiny GPT-2 for 100 steps, same seed and global batch (8 x 64), on one GPU and
#    with --gpus 2 for each recipe (bf16, fp8-current, fp8-delayed) and ZeRO stage; the per-step
#    losses must agree within reordering noise: mean relative difference < 1e-3 (bf16) or 5e-3
#    (fp8: each rank's current-scaling amax sees half the batch), max < 2e-2. --grad-comm bf16 is
#    run too and reported (a looser bound: 1e-2 mean), and --grad-comm fp8 with ZeRO 0 and 1
#    (mean < 5e-3, max < 5e-2: each averaged gradient carries up to 2^-4 of its 128-block's amax,
#    see docs/multi-gpu.md). ZeRO-2 and ZeRO-3 reduce in the same order as ZeRO-1
#    (ncclReduce(avg) onto the owners), so they get the same bounds; --grad-comm bf16 with
#    ZeRO-2/3 (a bf16 ncclReduce onto the owners) gets --grad-comm bf16's, and --grad-comm fp8
#    with ZeRO-2/3 (the same exchange as ZeRO-1's, each block's pieces its parts) ZeRO-1's.
# 1a. ZeRO-3 gathers fp8-current's and fp8-delayed's block linear weights as e4m3 codes
#    (fp8-current: amax all-reduced with max, each owner quantizing its piece with the whole
#    weight's scale; fp8-delayed: each owner quantizing its piece with the weight's delayed
#    scale, known before the step, its piece's amax recorded into the history that the step's
#    amax all-reduce combines): the fp8-current and fp8-delayed ZeRO-3 runs above are that path
#    (same bounds as the other fp8 arms); each summary must report fp8 bytes gathered, and fewer
#    bytes per pass than the bf16 recipe's ZeRO-3 (about half: 1 byte per weight against 2).
# 1b. Memory per GPU (the stages in ZEROS): a deeper tiny model (24 blocks, so that the two blocks
#    of staging of ZeRO-2/3 weigh little) for 3 steps; rank 0's optimizer states must fall to
#    <= 0.6x ZeRO-0's from ZeRO-1 on, its gradients to <= 0.65x from ZeRO-2 on, its weights to
#    <= 0.65x at ZeRO-3 (half of everything, plus the non-block tensors kept whole and two blocks
#    of staging: about 0.6x here), and stay whole below those stages.
# 2. Resume: a 2-GPU run stopped after 50 steps resumes on 1 GPU and on the CPU; steps 51-100
#    must follow the uninterrupted 2-GPU run (mean rel diff < 1e-3 on the GPU, < 1e-2 on the CPU).
# 3. A rank that dies: (a) under the launcher, SIGKILL rank 1: the run must exit non-zero within
#    30 s saying "rank 1 exited with status 137"; (b) torchrun-style (RANK/WORLD_SIZE/MASTER_ADDR,
#    no launcher), SIGKILL rank 1: rank 0 must exit non-zero within LOWP_DIST_TIMEOUT (15 s) + 30 s
#    with a clear message (an NCCL remote error or "no progress for 15 s").
# 4. MPI-style launch: two ranks with only Open MPI's (OMPI_COMM_WORLD_*), then only Slurm's
#    (SLURM_PROCID/NTASKS/LOCALID) variables plus MASTER_ADDR/PORT must reproduce the 2-GPU
#    bf16 run (mean rel diff < 1e-3).
# Env: RECIPES, ZEROS (default "0 1 2 3"), OUT (default /tmp/dist_match). Exit 0 only if all passed.
set -uo pipefail
build=$1
data=${2:-}
recipes=${RECIPES:-bf16 fp8-current fp8-delayed}
zeros=${ZEROS:-0 1 2 3}
out=${OUT:-/tmp}/dist_match
rm -rf "$out"
mkdir -p "$out"
lowp="$build/lowp"
if [ -z "$data" ]; then
  data="$out/words.txt"
  awk 'BEGIN { srand(7); split("the of and to a in is it that was for on with he as at by this had not", w, " ");
    for (i = 0; i < 20000; i++) { l = ""; for (j = 0; j < 9; j++) l = l w[1 + int(rand() * 20)] " ";
    print l } }' >"$data"
fi
common=(--model tiny --steps 100 --batch 8 --seq 64 --data "$data" --eval-every 50 --seed 5
  --device cuda)
status=0
fail() {
  echo "FAILED: $*"
  status=1
}
nvidia-smi -L || true
ls -l /usr/lib/x86_64-linux-gnu/libnccl.so* 2>/dev/null || true

run() { # name, then lowp train arguments
  local name=$1
  shift
  local t0=$(($(date +%s%N) / 1000000))
  if ! "$lowp" train "$@" --log "$out/$name.jsonl" >"$out/$name.txt" 2>&1; then
    fail "$name: lowp train exited non-zero; its output:"
    cat "$out/$name.txt"
    return 1
  fi
  local ms=$(($(date +%s%N) / 1000000 - t0))
  printf '%-28s %4d.%01d s  %s\n' "$name" $((ms / 1000)) $((ms % 1000 / 100)) \
    "$(grep -E '^summary|optimizer states|block gathers' "$out/$name.txt" | tr -s ' ' | tr '\n' ' ')"
}

compare() { # reference log, candidate log, mean bound, max bound, first step (1-based)
  python3 - "$@" <<'PY'
import json, sys
ref, cand, mean_b, max_b, first = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
def losses(path):
    try:
        return {j["step"]: float("nan") if j["loss"] is None else j["loss"]  # null: not finite
                for j in map(json.loads, filter(str.strip, open(path)))}
    except (OSError, ValueError, KeyError) as e:
        print(f"  cannot read {path}: {e}"); return {}
a, b = losses(ref), losses(cand)
steps = [s for s in sorted(a) if s >= first]
if not steps or any(s not in b for s in steps):
    print(f"  FAIL {cand}: {len(b)} steps logged, {len(steps)} wanted"); sys.exit(1)
rel = [abs(a[s] - b[s]) / abs(a[s]) for s in steps]
bad = [x for x in rel if not x == x]  # NaN never passes
mean, mx = sum(rel) / len(rel), max(rel)
ok = not bad and mean < mean_b and mx < max_b
worst = max(steps, key=lambda s: abs(a[s] - b[s]) / abs(a[s]))
print(f"  {'ok  ' if ok else 'FAIL'} {cand.split('/')[-1]:32s} steps {steps[0]}-{steps[-1]}: "
      f"mean rel diff {mean:.2e} (< {mean_b:g}), max {mx:.2e} (< {max_b:g}) at step {worst} "
      f"({a[worst]:.6f} vs {b[worst]:.6f}); last loss {a[steps[-1]]:.4f} vs {b[steps[-1]]:.4f}")
sys.exit(0 if ok else 1)
PY
}

echo "== 1. losses: 1 GPU against 2 GPUs"
for r in $recipes; do
  run "$r.1gpu" "${common[@]}" --recipe "$r" || continue
  mean=1e-3
  [ "$r" != bf16 ] && mean=5e-3
  for z in $zeros; do
    run "$r.2gpu.zero$z" "${common[@]}" --recipe "$r" --gpus 2 --zero "$z" &&
      { compare "$out/$r.1gpu.jsonl" "$out/$r.2gpu.zero$z.jsonl" $mean 2e-2 1 || fail "$r zero $z"; }
  done
  if [ "$r" = fp8-current ] && [[ " $zeros " == *" 3 "* ]]; then # fp8 gather, bf16 / fp8 reduce
    for c in bf16 fp8; do
      run "$r.2gpu.${c}comm.zero3" "${common[@]}" --recipe "$r" --gpus 2 --zero 3 --grad-comm $c &&
        { compare "$out/$r.1gpu.jsonl" "$out/$r.2gpu.${c}comm.zero3.jsonl" 1e-2 5e-2 1 ||
          fail "$r $c comm zero 3"; }
    done
  fi
  if [ "$r" = bf16 ]; then
    run "$r.2gpu.bf16comm" "${common[@]}" --recipe "$r" --gpus 2 --grad-comm bf16 &&
      { compare "$out/$r.1gpu.jsonl" "$out/$r.2gpu.bf16comm.jsonl" 1e-2 5e-2 1 || fail "$r bf16 comm"; }
    for z in $zeros; do # the bf16 reduction onto the owners
      [ "$z" -ge 2 ] || continue
      run "$r.2gpu.bf16comm.zero$z" "${common[@]}" --recipe "$r" --gpus 2 --zero "$z" \
        --grad-comm bf16 &&
        { compare "$out/$r.1gpu.jsonl" "$out/$r.2gpu.bf16comm.zero$z.jsonl" 1e-2 5e-2 1 ||
          fail "$r bf16 comm zero $z"; }
    done
    # fp8 (e4m3, a scale per 128 values): each gradient carries up to 2^-4 of its block's
    # amax (about 2^-5 relative on average), noise that AdamW's normalization mostly absorbs.
    # Every stage: ZeRO-2/3 exchange each block's pieces as ZeRO-1 its shards.
    for z in $zeros; do
      run "$r.2gpu.fp8comm.zero$z" "${common[@]}" --recipe "$r" --gpus 2 --zero "$z" \
        --grad-comm fp8 &&
        { compare "$out/$r.1gpu.jsonl" "$out/$r.2gpu.fp8comm.zero$z.jsonl" 5e-3 5e-2 1 ||
          fail "$r fp8 comm zero $z"; }
    done
  fi
done

echo "== 1a. ZeRO-3's weight gathers: fp8-current's and fp8-delayed's codes against bf16 (2 GPUs)"
for r in fp8-current fp8-delayed; do
if [ -f "$out/$r.2gpu.zero3.txt" ]; then
  python3 - "$out/$r.2gpu.zero3.txt" "$out/bf16.2gpu.zero3.txt" "$r" <<'PY' || fail "$r ZeRO-3 fp8 gather"
import re, sys
def gathers(path):
    try:
        m = re.search(r"block gathers ([0-9.]+) MiB per pass over the blocks \(fp32 ([0-9.]+), "
                      r"bf16 ([0-9.]+), fp8 ([0-9.]+)", open(path).read())
    except OSError:
        return None
    return tuple(float(x) for x in m.groups()) if m else None
f8, b16 = gathers(sys.argv[1]), gathers(sys.argv[2])
if f8 is None:
    print(f"  FAIL: no 'block gathers' line in {sys.argv[1]}"); sys.exit(1)
ok = f8[3] > 0 and f8[2] == 0
line = f"{sys.argv[3]} ZeRO-3 gathers {f8[0]:.4f} MiB per pass (fp32 {f8[1]:.4f}, fp8 {f8[3]:.4f})"
if b16 is not None:
    ok &= f8[0] <= 0.6 * b16[0]
    line += f"; bf16 ZeRO-3 {b16[0]:.4f} MiB (bf16 {b16[2]:.4f}): {f8[0] / b16[0]:.2f}x (want <= 0.6)"
print(f"  {'ok  ' if ok else 'FAIL'} {line}")
sys.exit(0 if ok else 1)
PY
else
  echo "  (skipped: needs $r in RECIPES and 3 in ZEROS)"
fi
done

echo "== optimizer memory per GPU: ZeRO-1 against ZeRO-0 (bf16, 2 GPUs)"
if [ -f "$out/bf16.2gpu.zero0.txt" ] && [ -f "$out/bf16.2gpu.zero1.txt" ]; then
  python3 - "$out/bf16.2gpu.zero0.txt" "$out/bf16.2gpu.zero1.txt" <<'PY' || fail "ZeRO-1 memory"
import re, sys
def mib(path):
    m = re.search(r"optimizer states on each GPU ([0-9.]+) MiB \(rank 0's\) of ([0-9.]+) MiB", open(path).read())
    return (float(m.group(1)), float(m.group(2))) if m else (None, None)
(z0, t0), (z1, t1) = mib(sys.argv[1]), mib(sys.argv[2])
if z0 is None or z1 is None:
    print("  FAIL: no optimizer memory line in the summaries"); sys.exit(1)
ok = z1 <= 0.6 * z0 and abs(z0 - t0) < 1e-6
print(f"  {'ok  ' if ok else 'FAIL'} optimizer states on rank 0's GPU: ZeRO-0 {z0:.3f} MiB, "
      f"ZeRO-1 {z1:.3f} MiB ({z1 / z0:.2f}x; want about 0.5, at most 0.6) of {t1:.3f} MiB")
sys.exit(0 if ok else 1)
PY
fi

echo "== 1b. memory per GPU: weights, gradients, optimizer states by ZeRO stage (bf16, 2 GPUs)"
deep=(--model tiny --layers 24 --steps 3 --batch 8 --seq 64 --data "$data" --eval-every 0 --seed 5
  --device cuda --recipe bf16 --gpus 2)
memfiles=()
for z in $zeros; do
  run "mem.zero$z" "${deep[@]}" --zero "$z" && memfiles+=("$z:$out/mem.zero$z.txt")
done
python3 - "${memfiles[@]}" <<'PY' || fail "memory per GPU"
import re, sys
ok = True
rows = {}
for arg in sys.argv[1:]:
    z, path = arg.split(":", 1)
    text = open(path).read()
    o = re.search(r"optimizer states on each GPU ([0-9.]+) MiB \(rank 0's\) of ([0-9.]+) MiB", text)
    w = re.search(r"weights on each GPU ([0-9.]+) MiB \(rank 0's\) of ([0-9.]+) MiB in all; "
                  r"gradients on each GPU ([0-9.]+) MiB \(rank 0's\) of ([0-9.]+) MiB", text)
    if not o or not w:
        print(f"  FAIL ZeRO-{z}: no memory lines in {path}"); ok = False; continue
    rows[int(z)] = {"optim": (float(o.group(1)), float(o.group(2))),
                    "weights": (float(w.group(1)), float(w.group(2))),
                    "grads": (float(w.group(3)), float(w.group(4)))}
bound = {"optim": (1, 0.6), "grads": (2, 0.65), "weights": (3, 0.65)}  # (from stage, at most)
for z in sorted(rows):
    parts = []
    for k, (stage, most) in bound.items():
        mine, total = rows[z][k]
        r = mine / total if total else float("nan")
        good = r <= most if z >= stage else abs(r - 1) < 0.02
        ok &= good
        parts.append(f"{k} {mine:.3f}/{total:.3f} MiB ({r:.2f}x{'' if good else ' FAIL'})")
    print(f"  ZeRO-{z}: " + ", ".join(parts))
sys.exit(0 if ok and rows else 1)
PY

echo "== 2. resume: 2 GPUs -> 1 GPU, 2 GPUs -> CPU"
for z in $zeros; do
  run "resume.full.zero$z" "${common[@]}" --recipe bf16 --gpus 2 --zero "$z" || continue
  run "resume.first.zero$z" "${common[@]}" --recipe bf16 --gpus 2 --zero "$z" --stop-after 50 \
    --out "$out/ckpt$z" || continue
  cp -r "$out/ckpt$z" "$out/ckpt$z.cpu"
  cp "$out/resume.first.zero$z.jsonl" "$out/resume.gpu1.zero$z.jsonl"
  cp "$out/resume.first.zero$z.jsonl" "$out/resume.cpu.zero$z.jsonl"
  "$lowp" train --resume "$out/ckpt$z" --data "$data" --steps 100 --eval-every 50 --seed 5 \
    --device cuda --log "$out/resume.gpu1.zero$z.jsonl" >"$out/resume.gpu1.zero$z.txt" 2>&1 ||
    { fail "resume on 1 GPU"; cat "$out/resume.gpu1.zero$z.txt"; }
  "$lowp" train --resume "$out/ckpt$z.cpu" --data "$data" --steps 100 --eval-every 50 --seed 5 \
    --device cpu --log "$out/resume.cpu.zero$z.jsonl" >"$out/resume.cpu.zero$z.txt" 2>&1 ||
    { fail "resume on the CPU"; cat "$out/resume.cpu.zero$z.txt"; }
  compare "$out/resume.full.zero$z.jsonl" "$out/resume.gpu1.zero$z.jsonl" 1e-3 2e-2 51 ||
    fail "resume on 1 GPU (zero $z)"
  compare "$out/resume.full.zero$z.jsonl" "$out/resume.cpu.zero$z.jsonl" 1e-2 5e-2 51 ||
    fail "resume on the CPU (zero $z)"
done

echo "== 3a. rank death under the launcher"
long=(--model tiny --steps 100000 --batch 8 --seq 64 --data "$data" --eval-every 0 --seed 5
  --device cuda --recipe bf16)
LOWP_DIST_TIMEOUT=20 "$lowp" train "${long[@]}" --gpus 2 --log "$out/death.jsonl" >"$out/death.txt" 2>&1 &
launcher=$!
for _ in $(seq 600); do [ "$(wc -l <"$out/death.jsonl" 2>/dev/null || echo 0)" -ge 20 ] && break; sleep 0.1; done
victim=""
for p in $(pgrep -P $launcher); do
  tr '\0' '\n' <"/proc/$p/environ" | grep -qx 'RANK=1' && victim=$p
done
if [ -z "$victim" ]; then
  fail "rank death: no rank 1 worker found under the launcher ($launcher)"
  kill $launcher 2>/dev/null
else
  t0=$(date +%s)
  kill -9 "$victim"
  for _ in $(seq 300); do kill -0 $launcher 2>/dev/null || break; sleep 0.1; done
  if kill -0 $launcher 2>/dev/null; then
    fail "rank death: the launcher still runs 30 s after rank 1 was killed"
    kill -9 $launcher
  fi
  wait $launcher
  rc=$?
  echo "  launcher exit status $rc after $(($(date +%s) - t0)) s; its last lines:"
  tail -4 "$out/death.txt" | sed 's/^/    /'
  [ $rc -ne 0 ] || fail "rank death: the launcher exited 0"
  grep -q "rank 1 exited with status 137 (killed by signal 9); stopping the other ranks" \
    "$out/death.txt" || fail "rank death: no 'rank 1 exited with status 137' message"
fi
pgrep -f "$out/death.jsonl" && fail "rank death: workers left running"

echo "== 3b. rank death without the launcher (torchrun variables, TCP bootstrap, watchdog)"
port=$((20000 + RANDOM % 20000))
pids=()
for rank in 0 1; do
  RANK=$rank WORLD_SIZE=2 LOCAL_RANK=$rank MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
    LOWP_DIST_TIMEOUT=15 "$lowp" train "${long[@]}" --log "$out/watchdog$rank.jsonl" \
    >"$out/watchdog$rank.txt" 2>&1 &
  pids+=($!)
done
pid0=${pids[0]}
pid1=${pids[1]}
for _ in $(seq 600); do [ "$(wc -l <"$out/watchdog0.jsonl" 2>/dev/null || echo 0)" -ge 20 ] && break; sleep 0.1; done
t0=$(date +%s)
kill -9 "$pid1"
for _ in $(seq 450); do kill -0 "$pid0" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid0" 2>/dev/null; then
  fail "watchdog: rank 0 still runs 45 s after rank 1 was killed"
  kill -9 "$pid0"
fi
wait "$pid0"
rc=$?
echo "  rank 0 exit status $rc after $(($(date +%s) - t0)) s; its last lines:"
tail -3 "$out/watchdog0.txt" | sed 's/^/    /'
[ $rc -ne 0 ] || fail "watchdog: rank 0 exited 0"
grep -qE "rank 0 of 2: .*(peer rank|NCCL reports)" "$out/watchdog0.txt" ||
  fail "watchdog: no clear message from rank 0"
wait 2>/dev/null

echo "== 4. MPI-style launch: Open MPI's and Slurm's rank variables instead of RANK/WORLD_SIZE"
# What mpirun / srun set (without linking MPI); the losses must follow the launcher's 2-GPU run.
if [ -f "$out/bf16.2gpu.zero0.jsonl" ]; then
  for style in openmpi slurm; do
    port=$((20000 + RANDOM % 20000))
    pids=()
    for rank in 0 1; do
      if [ $style = openmpi ]; then
        vars=(OMPI_COMM_WORLD_RANK=$rank OMPI_COMM_WORLD_SIZE=2 OMPI_COMM_WORLD_LOCAL_RANK=$rank)
      else
        vars=(SLURM_PROCID=$rank SLURM_NTASKS=2 SLURM_LOCALID=$rank)
      fi
      env -u RANK -u WORLD_SIZE -u LOCAL_RANK "${vars[@]}" MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
        LOWP_DIST_TIMEOUT=60 "$lowp" train "${common[@]}" --recipe bf16 \
        --log "$out/mpi.$style.$rank.jsonl" >"$out/mpi.$style.$rank.txt" 2>&1 &
      pids+=($!)
    done
    ok=1
    for p in "${pids[@]}"; do wait "$p" || ok=0; done
    if [ $ok = 1 ]; then
      [ -s "$out/mpi.$style.1.jsonl" ] && fail "$style-style: rank 1 wrote a metrics log"
      compare "$out/bf16.2gpu.zero0.jsonl" "$out/mpi.$style.0.jsonl" 1e-3 2e-2 1 ||
        fail "$style-style launch"
    else
      fail "$style-style launch: a rank exited non-zero; rank 0's output:"
      tail -5 "$out/mpi.$style.0.txt"
    fi
  done
else
  echo "  (skipped: needs bf16 in RECIPES and 0 in ZEROS)"
fi

echo
[ $status -eq 0 ] && echo "dist_match: ALL PASSED" || echo "dist_match: SOME CHECKS FAILED"
exit $status
