#!/usr/bin/env bash
# Installs the Debian 12 packages moedist builds with. Idempotent: does nothing when they are all present.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git clang-format
  libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev nlohmann-json3-dev libfmt-dev libspdlog-dev
  openmpi-bin libopenmpi-dev
  # the Python package (python/): Debian's /usr/bin/python3, its headers, pybind11, numpy; pytest, torch, mpi4py
  # for the tests (torch and mpi4py are optional at run time); pip, setuptools and wheel for `pip install ./python`
  python3-dev pybind11-dev python3-numpy python3-pytest python3-torch python3-mpi4py
  python3-pip python3-setuptools python3-wheel
  python3-matplotlib  # bench/plot.py
  iproute2            # scripts/netns-hosts.sh: test hosts as network namespaces
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "moedist: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
