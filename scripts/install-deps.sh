#!/usr/bin/env bash
# Installs what building and testing lowp needs on a fresh Debian 12 machine (run as root or
# with sudo). Idempotent: packages already present are left alone.
set -euo pipefail
pkgs=(cmake make gcc clang clang-format clang-tidy cppcheck valgrind libcmocka-dev libomp-14-dev
      libclang-rt-14-dev python3)
# node and npm (for the default corpus) usually come with the machine's own Node.js; Debian's
# npm conflicts with that, so install Debian's only when there is no npm at all.
command -v npm >/dev/null 2>&1 || pkgs+=(nodejs npm)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "install-deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
