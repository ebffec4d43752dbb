#!/usr/bin/env bash
# Builds and runs the tests under AddressSanitizer + UndefinedBehaviorSanitizer (everything), then under
# ThreadSanitizer (the engines and their conformance suite with ranks as threads, the thread pool, the CANN runtime's
# streams and the end-to-end tests, where threads meet). CI runs this after scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

# The largest end-to-end points (Bs 512: minutes each under a sanitizer), the shared-memory grid and the MPI runs of the
# conformance suite, and the jobs across test hosts (label hosts) run in the dev preset only; every engine, feature
# and fault case still runs here.
export GTEST_FILTER='-*Bs512*'  # the jobs under mpirun run their whole binary; discovered tests pass their own filter
slow='Bs512|ShmGrid|conformance_mpi'

cmake --preset asan >/dev/null
cmake --build --preset asan -j "$(nproc)"
ctest --preset asan -E "$slow" -LE hosts

cmake --preset tsan >/dev/null
cmake --build --preset tsan -j "$(nproc)" --target moedist_unit_comm_tests moedist_unit_util_tests moedist_unit_compat_tests \
  moedist_e2e_tests moedist_unit_comm_conformance_tests
ctest --preset tsan -L 'unit_comm|unit_util|unit_compat|e2e|conformance' -LE mpi -E "$slow"
