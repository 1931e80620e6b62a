#!/usr/bin/env bash
# The main job on a fresh machine: install what lowp needs, build it, fetch the default corpus
# (the Brown corpus) when it is missing, then `lowp train` on it. Arguments go to lowp train,
# e.g. scripts/train.sh --recipe fp8-delayed --steps 1000.
set -euo pipefail
cd "$(dirname "$0")/.."
# Spinning OpenMP threads steal the cores of a shared machine; waiting threads should sleep.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
scripts/install-deps.sh
cmake -S . -B build >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
[ -f data/brown.txt ] || scripts/fetch-corpus.sh
mkdir -p runs/default
exec ./build/lowp train --data data/brown.txt --log runs/default/metrics.jsonl --out runs/default "$@"
