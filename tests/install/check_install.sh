#!/usr/bin/env bash
# Installs the build tree into a scratch prefix and builds user programs against it the two documented ways:
# find_package(moedist) with CMake, and g++ with pkg-config. Each program must run and print its success line.
# Usage: check_install.sh <build dir> <source dir> [extra compiler flags, e.g. the sanitizer of the build]
set -euo pipefail
build="$1"
src="$2"
extra="${3:-}"
prefix=$(mktemp -d)
work=$(mktemp -d)
trap 'rm -rf "$prefix" "$work"' EXIT

cmake --install "$build" --prefix "$prefix" >/dev/null

# 1. CMake package.
mkdir -p "$work/cmake"
cp "$src/examples/cpp_api_basic.cpp" "$work/cmake/"
cat > "$work/cmake/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.20)
project(consumer CXX)
set(CMAKE_CXX_STANDARD 20)
find_package(moedist REQUIRED)
add_executable(consumer cpp_api_basic.cpp)
target_link_libraries(consumer PRIVATE moedist::moedist)
CMAKE
cmake -S "$work/cmake" -B "$work/cmake/build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_CXX_FLAGS="$extra" \
  -DCMAKE_EXE_LINKER_FLAGS="$extra" >/dev/null
cmake --build "$work/cmake/build" >/dev/null
LD_LIBRARY_PATH="$prefix/lib:$prefix/lib/x86_64-linux-gnu" "$work/cmake/build/consumer" | tee "$work/out1"
grep -q "rank 0: xOut\[0\] = 0x3F80" "$work/out1"

# 2. pkg-config (the .pc file carries an rpath, so the program runs as built).
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig:$prefix/lib/x86_64-linux-gnu/pkgconfig"
g++ -std=c++20 $extra "$src/examples/cpp_api_basic.cpp" -o "$work/consumer2" $(pkg-config --cflags --libs moedist)
"$work/consumer2" | tee "$work/out2"
grep -q "rank 0: xOut\[0\] = 0x3F80" "$work/out2"
echo "install: ok (find_package and pkg-config)"
