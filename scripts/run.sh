#!/usr/bin/env bash
# The main job: builds moedist and runs a dispatch -> expert -> combine pipeline on in-process ranks, checked
# against the reference model. Extra arguments go to `moedist run` (see `moedist run --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh release >&2
exec build/release/tools/moedist run "$@"
