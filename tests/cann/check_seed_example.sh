#!/usr/bin/env bash
# Installs the build tree into a scratch prefix, builds the CANN document's example program unchanged with
# `g++ seed_example.cpp $(pkg-config --cflags --libs moedist)`, runs it, and checks that it exits 0 and prints its
# success line on ranks 0, 1, 6 and 7 (ranks 2-5 are the ones its scale-in removes).
# Usage: check_seed_example.sh <build dir> <source dir> [extra compiler flags, e.g. the sanitizer of the build]
set -euo pipefail
build="$1"
src="$2"
extra="${3:-}"
prefix=$(mktemp -d)
work=$(mktemp -d)
trap 'rm -rf "$prefix" "$work"' EXIT

cmake --install "$build" --prefix "$prefix" >/dev/null
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
g++ $extra "$src/tests/cann/seed_example.cpp" -o "$work/seed_example" $(pkg-config --cflags --libs moedist)
"$work/seed_example" > "$work/out" 2>&1 || { cat "$work/out"; echo "seed example: exit code $?"; exit 1; }
cat "$work/out"
for rank in 0 1 6 7; do
  grep -Eq "device_${rank} aclnnMoeDistributeDispatchV3 and aclnnMoeDistributeCombineAddRmsNormV2 +execute successfully" \
    "$work/out" || { echo "seed example: no success line for device ${rank}"; exit 1; }
done
for rank in 2 3 4 5; do
  if grep -Eq "device_${rank} aclnnMoeDistributeDispatchV3 and" "$work/out"; then
    echo "seed example: device ${rank} was removed by the scale-in but reports success"
    exit 1
  fi
done
echo "seed example: ok"
