#!/usr/bin/env bash
# clang-format (check only), clang-tidy and cppcheck over the project's C sources.
# Needs a configured build/ (compile_commands.json). Exit code: 0 only if all are clean.
set -uo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files --cached --others --exclude-standard \
  'include/*.h' 'src/*.c' 'src/*.h' 'src/*.cu' 'src/*.cuh' 'cli/*.c' 'cli/*.h' 'tests/*.c' \
  'tests/*.h' 'bench/*.c' 'bench/*.h')
status=0
echo "clang-format: ${#files[@]} files"
clang-format --dry-run --Werror "${files[@]}" || status=1
echo "clang-tidy"
mapfile -t srcs < <(printf '%s\n' "${files[@]}" | grep '\.c$' | grep -v '^tests/')
tidy=$(printf '%s\n' "${srcs[@]}" | xargs -P "$(nproc)" -n 8 clang-tidy -p build --quiet 2>/dev/null \
  | grep -E "(warning|error):" || true)
if [ -n "$tidy" ]; then
  echo "$tidy"
  status=1
fi
echo "cppcheck"
cppcheck --quiet --error-exitcode=1 --std=c11 --enable=warning,performance,portability \
  --inline-suppr --suppressions-list=.cppcheck-suppressions -I include -I src \
  include src cli || status=1
[ $status -eq 0 ] && echo "lint: clean"
exit $status
