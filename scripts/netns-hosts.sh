#!/usr/bin/env bash
# Test hosts on one machine: each "host" is a Linux network namespace with an address of its own, joined to the others
# by a bridge that lives in a namespace of its own, so the machine's own network is never touched. Open MPI runs
# across them over TCP: mpirun starts its daemons through this script as rsh agent, which enters the host's network
# namespace and a UTS namespace with the host's own name (Open MPI names its shared-memory files after the host, so
# "hosts" sharing a name would share them). Ranks on different hosts therefore share neither a network stack nor
# Open MPI's shared memory, as on separate machines. Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN) and iproute2.
#
#   netns-hosts.sh run [--hosts N] [--slots S] [--] COMMAND...
#       Makes N hosts (default 2) and runs COMMAND on host 1, where mpirun must start. Open MPI's mpirun there
#       uses the hosts without being told (OMPI_MCA_* variables: the hostfile, this script as rsh agent, the hosts'
#       addresses for TCP); COMMAND also gets MOEDIST_HOSTS=N, MOEDIST_HOSTFILE=<the N addresses with slots=S,
#       default 2>, MOEDIST_MPIRUN_FLAGS=<the same settings as mpirun flags> and MOEDIST_NETNS_ID=<this set's id>.
#       Then removes every namespace and process of the set, also when COMMAND fails or the script is interrupted.
#       Exits with COMMAND's status, or 77 (ctest's skip code) when hosts cannot be made here, saying why.
#   netns-hosts.sh link down|up HOST   cuts or restores host HOST's link (HOST: 1..N), from COMMAND.
#   netns-hosts.sh kill HOST           kill -9 every process of host HOST, from COMMAND.
#   netns-hosts.sh agent ADDRESS COMMAND...   the rsh agent (what mpirun calls instead of ssh).
#   netns-hosts.sh clean   removes the sets whose script is gone (run also does this first).
#
# Addresses are 198.18.0.H/24 (the benchmarking range 198.18.0.0/15, RFC 2544); host H of set ID (the process id of
# its `run`) is named moedist-ID-hH, so that what Open MPI names after a host (/dev/shm/vader_segment.*, the session
# folder /tmp/ompi.*) belongs to one set, and is removed with it.
set -euo pipefail

readonly self=$(readlink -f "$0")
readonly subnet=198.18.0
readonly prefix=moedist

usage() {
  sed -n '2,/^set -euo/p' "$self" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
}

die() {
  echo "netns-hosts: $*" >&2
  exit 1
}

# Namespace names of set `id`: ${prefix}-<id>-br (the bridge) and ${prefix}-<id>-h<H>.
ns_of_host() { echo "${prefix}-$1-h$2"; }
namespaces_of_set() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${prefix}-$1-(br|h[0-9]+)$" || true; }

remove_set() {
  local id=$1 ns
  for ns in $(namespaces_of_set "$id"); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
  done
  for ns in $(namespaces_of_set "$id"); do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "/tmp/${prefix}-netns-$id"
  # What processes killed on the hosts left behind: Open MPI's shared-memory segments and session folders, named
  # after the hosts.
  rm -rf /dev/shm/*".${prefix}-$id-h"[0-9]* "/tmp/ompi.${prefix}-$id-h"[0-9]*
}

# Removes sets whose `run` (the id is its process id) has ended without cleaning up (it was killed). A zombie has no
# command line, and a reused process id another one.
clean_stale() {
  local id
  for id in $(ip netns list 2>/dev/null | awk '{print $1}' | sed -nE "s/^${prefix}-([0-9]+)-(br|h[0-9]+)$/\1/p" |
    sort -u); do
    grep -qs netns-hosts "/proc/$id/cmdline" || remove_set "$id"
  done
}

skip() {
  echo "netns-hosts: SKIPPED: cannot make test hosts here: $*" >&2
  exit 77
}

make_set() {
  local id=$1 hosts=$2 h br ns
  command -v ip >/dev/null || skip "ip (Debian package iproute2) is not installed"
  command -v unshare >/dev/null || skip "unshare (util-linux) is not installed"
  br="${prefix}-${id}-br"
  ip netns add "$br" 2>/dev/null || skip "'ip netns add' failed: this needs root with CAP_SYS_ADMIN (uid $(id -u))"
  ip -n "$br" link add br0 type bridge 2>/dev/null || skip "no bridge support in this kernel or namespace"
  ip -n "$br" link set br0 up
  for ((h = 1; h <= hosts; h++)); do
    ns=$(ns_of_host "$id" "$h")
    ip netns add "$ns"
    ip link add eth0 netns "$ns" type veth peer name "h$h" netns "$br" 2>/dev/null ||
      skip "no veth support in this kernel or namespace"
    ip -n "$br" link set "h$h" master br0
    ip -n "$br" link set "h$h" up
    ip -n "$ns" addr add "${subnet}.$h/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
  done
}

# The subcommands used from inside a set (mpirun's agent, COMMAND) find it by MOEDIST_NETNS_ID.
in_set() {
  [ -n "${MOEDIST_NETNS_ID:-}" ] || die "$1: MOEDIST_NETNS_ID is not set (run it from within 'netns-hosts.sh run')"
}

# Runs COMMAND... on host H of set `id`: its network namespace, a UTS namespace named after it.
on_host() {
  local id=$1 h=$2
  shift 2
  exec ip netns exec "$(ns_of_host "$id" "$h")" unshare --uts \
    sh -c 'hostname "$0" && exec "$@"' "${prefix}-$id-h$h" "$@"
}

cmd_run() {
  local hosts=2 slots=2
  while [ $# -gt 0 ]; do
    case $1 in
      --hosts) hosts=$2; shift 2 ;;
      --slots) slots=$2; shift 2 ;;
      --) shift; break ;;
      -*) usage ;;
      *) break ;;
    esac
  done
  [ $# -gt 0 ] || usage
  [[ $hosts =~ ^[0-9]+$ && $hosts -ge 1 && $hosts -le 32 ]] || die "--hosts: expected 1 to 32, got '$hosts'"
  [[ $slots =~ ^[0-9]+$ && $slots -ge 1 ]] || die "--slots: expected a positive number, got '$slots'"
  [ "$(id -u)" -eq 0 ] || skip "it needs root (uid $(id -u))"
  clean_stale

  local id=$$ dir
  dir="/tmp/${prefix}-netns-$id"
  trap 'remove_set '"$id" EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  make_set "$id" "$hosts"
  mkdir -p "$dir"
  for ((h = 1; h <= hosts; h++)); do echo "${subnet}.$h slots=$slots"; done >"$dir/hostfile"
  # Open MPI splits plm_rsh_agent at colons (alternatives) and spaces (arguments): give it a path of its own.
  printf '#!/bin/sh\nexec "%s" agent "$@"\n' "$self" >"$dir/agent"
  chmod +x "$dir/agent"

  export MOEDIST_HOSTS=$hosts MOEDIST_HOSTFILE="$dir/hostfile" MOEDIST_NETNS_ID=$id
  # Every mpirun started on host 1 uses the hosts, without flags: the hostfile, this script as rsh agent, the
  # hosts' own addresses only (MOEDIST_MPIRUN_FLAGS says the same as mpirun flags).
  export OMPI_MCA_orte_default_hostfile="$dir/hostfile" OMPI_MCA_plm_rsh_agent="$dir/agent" \
    OMPI_MCA_btl_tcp_if_include=${subnet}.0/24 OMPI_MCA_oob_tcp_if_include=${subnet}.0/24
  export MOEDIST_MPIRUN_FLAGS="--hostfile $dir/hostfile --mca plm_rsh_agent $dir/agent --mca btl_tcp_if_include ${subnet}.0/24 --mca oob_tcp_if_include ${subnet}.0/24"
  # Not exec: the trap removes the set when COMMAND ends.
  local rc=0
  (on_host "$id" 1 "$@") || rc=$?
  exit "$rc"
}

# mpirun calls "AGENT ADDRESS COMMAND..." as it would call ssh: the command is shell words, joined as ssh joins them.
cmd_agent() {
  [ $# -ge 2 ] || usage
  local address=$1 h
  shift
  in_set agent
  h=${address##*.}
  [ "$address" = "${subnet}.$h" ] || die "agent: '$address' is not a test host address (${subnet}.H)"
  on_host "$MOEDIST_NETNS_ID" "$h" sh -c "$*"
}

cmd_link() {
  [ $# -eq 2 ] && [[ $1 == up || $1 == down ]] || usage
  in_set link
  ip -n "${prefix}-${MOEDIST_NETNS_ID}-br" link set "h$2" "$1"
}

cmd_kill() {
  [ $# -eq 1 ] || usage
  in_set kill
  ip netns pids "$(ns_of_host "$MOEDIST_NETNS_ID" "$1")" | xargs -r kill -9
}

case ${1:-} in
  run) shift; cmd_run "$@" ;;
  kill) shift; cmd_kill "$@" ;;
  agent) shift; cmd_agent "$@" ;;
  link) shift; cmd_link "$@" ;;
  clean) clean_stale ;;
  *) usage ;;
esac
