#!/usr/bin/env bash
# The /dev/shm check around the shared-memory tests (label shm): `record FILE` lists the entries named moedist* before
# the first test; `check FILE` runs after the last one and fails when an entry that was not there before is still
# there 15 seconds later (a communicator being set up by a test running beside the suite has names for a few seconds
# at most; a leftover stays).
set -euo pipefail
mode=$1 file=$2
list() { find /dev/shm -maxdepth 1 -name 'moedist*' -printf '%f\n' 2>/dev/null | sort; }
case "$mode" in
  record)
    list >"$file"
    echo "/dev/shm before the shm tests: $(wc -l <"$file") moedist* entries"
    ;;
  check)
    [ -f "$file" ] || : >"$file"
    left=$(comm -13 "$file" <(list))
    for _ in $(seq 15); do
      [ -z "$left" ] && { echo "/dev/shm after the shm tests: no moedist* entry left"; exit 0; }
      sleep 1
      left=$(comm -12 <(echo "$left") <(comm -13 "$file" <(list)))
    done
    if [ -n "$left" ]; then
      echo "/dev/shm after the shm tests: left behind:"
      ls -l /dev/shm | grep moedist || true
      exit 1
    fi
    echo "/dev/shm after the shm tests: no moedist* entry left"
    ;;
  *)
    echo "usage: $0 record|check FILE" >&2
    exit 2
    ;;
esac
