#!/usr/bin/env bash
# A host fails during a call; run on test hosts: scripts/netns-hosts.sh run --hosts 3 -- tests/hosts/host_fault.sh
#   PROGRAM MPIEXEC MODE. Processes 0-5 on 3 hosts (2 slots each); host 2 (processes 2 and 3) fails, in MODE:
#   link   its link is cut (ip link set down): the survivors' calls fail at their deadline, naming processes 2 and 3,
#          and their elastic scale-in without them is bit-exact (tests/hosts/host_fault.cpp checks it);
#   ranks  its MPI processes are killed (kill -9), its Open MPI daemon lives on; mpirun --enable-recovery keeps the
#          job alive: the same as for link;
#   host   every process of it is killed, Open MPI's daemon included: Open MPI 4.1 ends the whole job (its launcher
#          cannot run without a daemon); checked: mpirun and every process of the job end, none hangs.
# Prints each process's time from the fault to its error. Exit status 0 when every check holds.
set -euo pipefail
program=$1 mpiexec=$2 mode=$3
readonly timeout_ms=2000
here=$(cd "$(dirname "$0")" && pwd)
hosts=$here/../../scripts/netns-hosts.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

flags=(-np 6 --oversubscribe --map-by slot)
[ "$(id -u)" -eq 0 ] && flags+=(--allow-run-as-root)
[ "$mode" = ranks ] && flags+=(--enable-recovery)
"$mpiexec" "${flags[@]}" "$program" --ready "$work/ready" --report "$work/report" --lost 2,3 \
  --timeout-ms $timeout_ms --max-seconds 60 >"$work/log" 2>&1 &
job=$!

fail() {
  echo "host_fault ($mode): FAILED: $*"
  echo "--- the job's output:"
  grep -v "PMIX ERROR" "$work/log" | head -60 || true
  kill -9 "$job" 2>/dev/null || true
  exit 1
}

for ((i = 0; i < 600; ++i)); do
  [ -s "$work/ready" ] && break
  kill -0 "$job" 2>/dev/null || fail "the job ended before the fault"
  sleep 0.1
done
[ -s "$work/ready" ] || fail "the job was not ready within 60 s"
sleep 1  # layers are running
fault_ns=$(date +%s%N)
case $mode in
  link) "$hosts" link down 2 ;;
  ranks)
    for p in $(ip netns pids "moedist-$MOEDIST_NETNS_ID-h2"); do
      grep -qs host_fault "/proc/$p/cmdline" && kill -9 "$p"
    done
    ;;
  host) "$hosts" kill 2 ;;
  *) fail "unknown mode $mode" ;;
esac

if [ "$mode" = host ]; then
  # Open MPI ends the job; every process of it must be gone soon after.
  for ((i = 0; i < 300; ++i)); do kill -0 "$job" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$job" 2>/dev/null && fail "mpirun still runs 30 s after the host was killed"
  end_ms=$((($(date +%s%N) - fault_ns) / 1000000))
  sleep 1
  left=$(pgrep -f "^$program" || true)
  [ -z "$left" ] || fail "processes of the job are left: $left"
  echo "host_fault (host): Open MPI ended the whole job ${end_ms} ms after the host was killed; no process is left"
  exit 0
fi

survivors() { cat "$work/report" 2>/dev/null | awk '$2 == "survivor" { n++ } END { print n + 0 }'; }
# Every survivor reports within the deadline, plus slack for its scale-in and a loaded machine.
for ((i = 0; i < 200; ++i)); do
  [ "$(survivors)" -ge 4 ] && break
  sleep 0.1
done
kill -9 "$job" 2>/dev/null || true  # mpirun cannot end a job with a host it lost: the application ends it
wait "$job" 2>/dev/null || true
[ "$(survivors)" -eq 4 ] || fail "not every survivor reported"
status=0
echo "host_fault ($mode): deadline $timeout_ms ms; from the fault to each process's error:"
while read -r process role error_at awaited scale_in message; do
  ms=$(((${error_at#error_at=} - fault_ns) / 1000000))
  echo "  process $process ($role): $ms ms, $awaited, ${scale_in}: ${message:0:160}"
  [ "$role" = survivor ] || continue
  if [ "$ms" -gt $((timeout_ms + 1000)) ] || [ "$ms" -lt 0 ]; then
    echo "  process $process: its error came $ms ms after the fault, more than the deadline plus 1 s"
    status=1
  fi
  case ${awaited#awaited=} in
    2 | 3 | 2,3) ;;
    *) echo "  process $process: its error names ${awaited#awaited=}, not lost processes 2 and 3 alone"; status=1 ;;
  esac
  [ "$scale_in" = scale_in=pass ] || { echo "  process $process: the scale-in without 2 and 3 failed"; status=1; }
done <"$work/report"
[ $status -eq 0 ] || fail "see above"
echo "host_fault ($mode): every survivor failed within the deadline plus 1 s and passed the scale-in"
