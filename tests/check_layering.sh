#!/usr/bin/env bash
# DESIGN.md's dependency rule, checked: each folder may include only the folders listed for it.
# Arrows point down only: api -> core -> {comm interface, kernels interface} -> util; compat and the Python
# package's extensions (python/src) use only the public API (include/moedist), python/src/reference only the reference.
set -euo pipefail
root="${1:-$(dirname "$0")/..}"
cd "$root"

allowed() {
  case "$1" in
    src/util) echo "util moedist" ;;
    src/kernels*) echo "kernels util" ;;
    src/comm*) echo "comm util moedist" ;;
    src/core) echo "core comm/engine.h kernels/kernels.h util moedist" ;;
    src/api) echo "api core comm/registry.h comm/engine.h kernels/kernels.h util moedist" ;;
    src/api/mpi) echo "api core comm/engine.h comm/mpi/mpi_engine.h util moedist" ;;  # the MPI engine's factory
    src/compat) echo "compat util moedist acl aclnn hccl aclnnop" ;;
    src/compat/mpi) echo "compat util moedist hccl" ;;
    reference*) echo "moedist_ref" ;;  # the reference model includes only itself (no src/, no moedist/)
    python/src) echo "moedist" ;;
    python/src/reference) echo "moedist_ref" ;;
    tests/support) echo "support moedist" ;;
    tests/harness*) echo "harness support moedist acl aclnn aclnnop hccl" ;;
    *) echo "*" ;;
  esac
}

status=0
while IFS= read -r -d '' file; do
  dir=$(dirname "$file")
  rules=$(allowed "$dir")
  [ "$rules" = "*" ] && continue
  while IFS= read -r inc; do
    ok=0
    case "$inc" in */*) ;; *) ok=1 ;; esac  # a header beside the file
    for rule in $rules; do
      case "$inc" in
        "$rule"|"$rule"/*) ok=1 ;;
      esac
    done
    if [ $ok -eq 0 ]; then
      echo "layering: $file includes \"$inc\", but $dir may include only: $rules"
      status=1
    fi
  done < <(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$file")
done < <(find src reference python/src tests/support tests/harness \( -name '*.h' -o -name '*.cpp' \) -print0)

[ $status -eq 0 ] && echo "layering: ok"
exit $status
