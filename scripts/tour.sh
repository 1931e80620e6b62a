#!/usr/bin/env bash
# The main job for a newcomer: build lowp, then a tour of the number formats.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
./build/lowp formats
