#!/usr/bin/env bash
# Builds and runs the tests under AddressSanitizer + UndefinedBehaviorSanitizer (everything), then under
# ThreadSanitizer (the engines and their conformance suite with ranks as threads, the thread pool, the CANN runtime's
# streams and the end-to-end tests, where threads meet). CI runs this after scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

cmake --preset asan >/dev/null
cmake --build --preset asan -j "$(nproc)"
ctest --preset asan

cmake --preset tsan >/dev/null
cmake --build --preset tsan -j "$(nproc)" --target moedist_unit_comm_tests moedist_unit_util_tests moedist_unit_compat_tests \
  moedist_e2e_tests moedist_unit_comm_conformance_tests
ctest --preset tsan -L 'unit_comm|unit_util|unit_compat|e2e|conformance' -LE mpi
