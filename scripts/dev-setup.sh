#!/usr/bin/env bash
# Install what runtad, its tests and the demo need on a fresh Debian 12 machine, as root:
# Debian packages, then a virtual environment at .venv with runta-egress and its test
# dependencies. Running it again changes nothing that is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."

# iperf3, dnsperf and dnsmasq are for the benchmarks (bench/), whose smoke run is a test.
packages=(nftables libnftables1 iproute2 util-linux bind9-dnsutils curl openssl conntrack
          iputils-ping python3-venv procps iperf3 dnsperf dnsmasq)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "dev-setup: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
echo "dev-setup: ready (.venv/bin/runtad, .venv/bin/runta)"
