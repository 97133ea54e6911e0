#!/usr/bin/env bash
# Install runtad and the runta CLI on Debian 12 as root: Debian packages, a virtual
# environment with this repository, links into PREFIX/bin, the `runta` group, the
# default settings file and the systemd unit.
#
# Running it again changes nothing that is already in place. After a code change it
# reinstalls the package and restarts runtad if it was running; enforcement stays in the
# kernel during the restart. /etc/runta/runtad.toml is never overwritten.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/install.sh [--no-systemd] [--prefix DIR] [--venv DIR] [--start]

  --no-systemd   do not install or touch the systemd unit (containers, CI)
  --prefix DIR   link runtad and runta into DIR/bin (default /usr/local)
  --venv DIR     virtual environment for the package (default /opt/runta)
  --start        enable runtad and start it now (default: enable only)
EOF
}

prefix=/usr/local
venv=/opt/runta
use_systemd=yes
start_now=no
while (($#)); do
    case "$1" in
        --no-systemd) use_systemd=no ;;
        --prefix) prefix=${2:?--prefix needs a directory}; shift ;;
        --prefix=*) prefix=${1#--prefix=} ;;
        --venv) venv=${2:?--venv needs a directory}; shift ;;
        --venv=*) venv=${1#--venv=} ;;
        --start) start_now=yes ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

if [ "$(id -u)" != 0 ]; then
    echo "install.sh: run as root (sudo scripts/install.sh)" >&2
    exit 1
fi

repo=$(cd "$(dirname "$0")/.." && pwd)
config_dir=/etc/runta
unit_path=/etc/systemd/system/runtad.service
changed_code=no
changed_unit=no

say() { echo "install.sh: $*"; }

# Debian packages. nftables and libnftables1: the kernel rulesets (runtad uses the
# library, operators the nft command). iproute2 and util-linux: `ip netns`, nsenter and
# setpriv for `runta sandbox exec`. bind9-dnsutils, curl and conntrack: looking into a
# sandbox by hand. jq: reading runtad's JSON log lines. kmod: loading nf_tables modules.
# procps: /bin/kill, which the unit's ExecReload runs.
packages=(nftables libnftables1 iproute2 util-linux kmod procps bind9-dnsutils curl conntrack
          jq python3 python3-venv ca-certificates)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if ((${#missing[@]})); then
    say "installing Debian packages ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    say "Debian packages: unchanged"
fi

# The package sources that pip builds from: what pyproject.toml packages, and nothing of
# tests or local state, so that a run changes nothing when none of these files changed.
source_files() {
    local roots=() root
    for root in pyproject.toml README.md LICENSE runtad runta rules; do
        [ -e "$repo/$root" ] && roots+=("$root")
    done
    (cd "$repo" && find "${roots[@]}" -type f -not -path '*/__pycache__/*' -not -name '*.pyc' \
        | LC_ALL=C sort)
}
source_hash=$(cd "$repo" && source_files | xargs -d '\n' sha256sum | sha256sum | cut -d' ' -f1)
stamp="$venv/.runta-source-sha256"

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
    say "creating the virtual environment $venv"
    python3 -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$source_hash" ]; then
    say "installing runta-egress into $venv"
    build=$(mktemp -d)
    trap 'rm -rf "$build"' EXIT
    # Build from a copy: pip writes build/ and *.egg-info next to the sources it builds.
    (cd "$repo" && source_files | xargs -d '\n' cp --parents -t "$build")
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "$build"
    echo "$source_hash" > "$stamp"
    changed_code=yes
else
    say "runta-egress in $venv: unchanged"
fi

install -d -m 0755 "$prefix/bin"
for command in runtad runta; do
    if [ "$(readlink "$prefix/bin/$command" 2>/dev/null)" != "$venv/bin/$command" ]; then
        ln -sfn "$venv/bin/$command" "$prefix/bin/$command"
        say "linked $prefix/bin/$command -> $venv/bin/$command"
    fi
done

# Members of this group may use the API socket without root.
if ! getent group runta >/dev/null; then
    groupadd --system runta
    say "created the system group runta"
fi

install -d -m 0755 "$config_dir"
if [ ! -e "$config_dir/runtad.toml" ]; then
    install -m 0644 "$repo/etc/runtad.toml" "$config_dir/runtad.toml"
    say "installed $config_dir/runtad.toml"
elif ! cmp -s "$repo/etc/runtad.toml" "$config_dir/runtad.toml"; then
    say "kept the edited $config_dir/runtad.toml (the shipped one is $repo/etc/runtad.toml)"
fi

if [ "$use_systemd" = no ]; then
    say "done without systemd: start runtad with $prefix/bin/runtad --config $config_dir/runtad.toml"
    exit 0
fi

unit=$(sed "s|^ExecStart=/usr/local/bin/runtad |ExecStart=$prefix/bin/runtad |" "$repo/systemd/runtad.service")
if [ "$(cat "$unit_path" 2>/dev/null)" != "$unit" ]; then
    printf '%s\n' "$unit" > "$unit_path.tmp"
    chmod 0644 "$unit_path.tmp"
    mv "$unit_path.tmp" "$unit_path"
    say "installed $unit_path"
    changed_unit=yes
fi

# Without a running systemd (a chroot, an image being built) only the files change.
if [ ! -d /run/systemd/system ]; then
    systemctl enable runtad.service >/dev/null 2>&1 || true
    say "done; systemd is not running here, so runtad starts at the next boot"
    exit 0
fi

if [ "$changed_unit" = yes ]; then
    systemctl daemon-reload
fi
if ! systemctl is-enabled --quiet runtad.service; then
    systemctl enable --quiet runtad.service
    say "enabled runtad.service"
fi
if [ "$start_now" = yes ] && ! systemctl is-active --quiet runtad.service; then
    systemctl start runtad.service
    say "started runtad.service"
elif [ "$changed_code" = yes ] || [ "$changed_unit" = yes ]; then
    # Restart only a running runtad, so that it runs the code just installed.
    if systemctl is-active --quiet runtad.service; then
        systemctl restart runtad.service
        say "restarted runtad.service"
    fi
fi
if ! systemctl is-active --quiet runtad.service; then
    say "start runtad with: systemctl start runtad"
fi
say "done"
