#!/usr/bin/env bash
# The whole test suite, as a newcomer and CI run it: installs what it needs, builds with
# -Werror, runs every CPU test, then the static checks and an ASan+UBSan build of the tests.
# GPU tests skip (exit 77) where there is no GPU. Exit code: 0 only if everything passed.
set -euo pipefail
cd "$(dirname "$0")/.."
# Spinning OpenMP threads steal the cores of a shared machine; waiting threads should sleep.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
scripts/install-deps.sh
jobs=$(nproc)

echo "== build (Release, -Werror)"
cmake -S . -B build -DLOWP_WERROR=ON >/dev/null
cmake --build build -j"$jobs"

echo "== tests"
ctest --test-dir build --output-on-failure -j"$jobs" --timeout 900

echo "== static checks"
scripts/lint.sh

echo "== ASan + UBSan"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLOWP_SANITIZE=ON -DLOWP_WERROR=ON \
  -DLOWP_CUDA=OFF >/dev/null
cmake --build build-asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j"$jobs" -LE slow --timeout 900
echo "== all tests passed"
