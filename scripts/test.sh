#!/usr/bin/env bash
# Builds moedist and runs every test (the command CI runs). Extra arguments go to ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh dev
ctest --preset dev "$@"
