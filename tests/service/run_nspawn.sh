#!/usr/bin/env bash
# Boot Debian 12 with systemd as PID 1 in systemd-nspawn, install runtad there with
# scripts/install.sh, and check the service as an operator would use it.
#
# Phases:
#   1. base image: debootstrap of a minimal Debian 12, cached in $RUNTA_NSPAWN_CACHE
#      (default /var/cache/runta-nspawn) and reused when present (about 250 MB).
#   2. install: a copy of the base, with the repository under /opt/runta-src, runs
#      scripts/install.sh twice in a container that shares this machine's network, so
#      apt reaches the Debian mirror and pip reaches PyPI. The second run must change
#      nothing.
#   3. boot: the copy boots with --private-network, so the container has nothing but
#      its own loopback and no packet of the test leaves it.
#   4. checks, run through nsenter into the container's namespaces.
#
# Run as root from anywhere: tests/service/run_nspawn.sh [--keep]
#   --keep                keep the container's directory and print its path
#   RUNTA_NSPAWN_CACHE    cache directory (base image, apt archives, pip cache)
#   RUNTA_NSPAWN_MIRROR   Debian mirror (default: the first one in /etc/apt/sources.list*)
#   RUNTA_UNIT_EXTRA      extra [Service] lines for a drop-in, to try unit settings
# Prints one PASS or FAIL line per check and ends with "N passed, N failed".
set -euo pipefail

keep=no
[ "${1:-}" = "--keep" ] && keep=yes

repo=$(cd "$(dirname "$0")/../.." && pwd)
cache=${RUNTA_NSPAWN_CACHE:-/var/cache/runta-nspawn}
suite=bookworm
clean_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
passed=0
failed=0
nspawn_pid=""
leader=""
started_at=$(date +%s)

say() { echo "== $*"; }
elapsed() { echo "$(( $(date +%s) - started_at )) s"; }

if [ "$(id -u)" != 0 ]; then
    echo "run_nspawn.sh: run as root" >&2
    exit 1
fi
for tool in debootstrap systemd-nspawn nsenter; do
    if ! command -v "$tool" >/dev/null; then
        echo "run_nspawn.sh: $tool is missing: apt-get install debootstrap systemd-container" >&2
        exit 1
    fi
done

default_mirror() {
    # The first Debian mirror that apt on this machine uses, one-line or deb822 format.
    local found
    found=$(grep -hsE '^(deb +(\[[^]]*\] +)?|URIs: *)https?://' /etc/apt/sources.list \
        /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
        | grep -v -- '-security' | grep -oE 'https?://[^ ]+' | head -n 1 || true)
    echo "${found:-http://deb.debian.org/debian}"
}
mirror=${RUNTA_NSPAWN_MIRROR:-$(default_mirror)}

# --- 1. base image ----------------------------------------------------------------------

mkdir -p "$cache/apt-archives/partial" "$cache/pip"
# One run at a time uses the cache: apt in two containers would fight over its lock.
exec 9> "$cache/.lock"
if ! flock -w 900 9; then
    echo "run_nspawn.sh: another run holds $cache/.lock" >&2
    exit 1
fi
if [ ! -e "$cache/base/.runta-base-complete" ]; then
    say "debootstrap $suite from $mirror into $cache/base"
    rm -rf "$cache/base.partial"
    if ! debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,ca-certificates \
        "$suite" "$cache/base.partial" "$mirror"; then
        # 75 (EX_TEMPFAIL): the mirror could not be reached; nothing of runtad was tested.
        echo "run_nspawn.sh: debootstrap could not fetch $suite from $mirror" >&2
        exit 75
    fi
    rm -rf "$cache/base"
    mv "$cache/base.partial" "$cache/base"
    touch "$cache/base/.runta-base-complete"
    say "base image ready after $(elapsed)"
else
    say "reusing the base image $cache/base"
fi

work=$(mktemp -d /var/tmp/runta-nspawn.XXXXXX)
root="$work/root"
machine="runta-test-${work##*.}"
machine=${machine,,}

cleanup() {
    if [ -n "$leader" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
        nsenter -t "$leader" -m -u -i -n -p -- /bin/systemctl poweroff >/dev/null 2>&1 || true
        for _ in $(seq 1 60); do
            kill -0 "$nspawn_pid" 2>/dev/null || break
            sleep 0.5
        done
    fi
    if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
        kill "$nspawn_pid" 2>/dev/null || true
        wait "$nspawn_pid" 2>/dev/null || true
    fi
    if [ "$keep" = yes ]; then
        echo "kept $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

cp -a --reflink=auto "$cache/base" "$root"
# debootstrap writes no /etc/hosts, which every installed Debian has and `ip netns exec`
# bind-mounts the sandbox's copy over.
[ -e "$root/etc/hosts" ] || printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' > "$root/etc/hosts"
mkdir -p "$root/opt/runta-src"
tar -C "$repo" --exclude=.git --exclude=.venv --exclude=node_modules --exclude=__pycache__ \
    --exclude=.mypy_cache --exclude=.ruff_cache --exclude=.pytest_cache --exclude=.hypothesis \
    --exclude=build --exclude=dist --exclude='*.egg-info' -cf - . | tar -C "$root/opt/runta-src" -xf -

# --- 2. install, twice --------------------------------------------------------------------

# From here on a failed command is a failed check, reported by check, not the end of the run.
set +e

# pip in the container trusts what pip here trusts: a machine that reaches PyPI through a
# TLS proxy names that proxy's CA bundle in $PIP_CERT.
pip_options=()
if [ -n "${PIP_CERT:-}" ] && [ -f "$PIP_CERT" ]; then
    pip_options+=(--bind-ro="$PIP_CERT:/run/runta-host-ca.crt" --setenv=PIP_CERT=/run/runta-host-ca.crt)
fi
[ -n "${PIP_INDEX_URL:-}" ] && pip_options+=(--setenv=PIP_INDEX_URL="$PIP_INDEX_URL")

say "install.sh in the container (network shared for apt and pip)"
install_started=$(date +%s)
systemd-nspawn -q -D "$root" --register=no --keep-unit --pipe \
    --bind="$cache/apt-archives:/var/cache/apt/archives" --bind="$cache/pip:/root/.cache/pip" \
    "${pip_options[@]}" --setenv=PATH="$clean_path" /bin/bash -s > "$work/install.log" 2>&1 <<'EOF'
set -u
snapshot() {
    {
        find /opt/runta /etc/runta /etc/systemd/system /usr/local/bin \
            -printf '%p %y %m %s %T@ %l\n' | LC_ALL=C sort
        getent group runta
        dpkg-query -W -f='${Package} ${Version}\n'
    } | sha256sum
}
cd /opt/runta-src
bash scripts/install.sh; echo "first-run-exit=$?"
first=$(snapshot)
bash scripts/install.sh > /tmp/second.log 2>&1; echo "second-run-exit=$?"
cat /tmp/second.log | sed 's/^/second: /'
second=$(snapshot)
[ "$first" = "$second" ] && echo "idempotent=yes" || echo "idempotent=no"
unit_before=$(sha256sum /etc/systemd/system/runtad.service)
bash scripts/install.sh --no-systemd --prefix /opt/alt --venv /opt/alt-venv > /tmp/alt.log 2>&1
echo "alt-run-exit=$?"
/opt/alt/bin/runta --version && /opt/alt/bin/runtad --version && echo "alt-commands=yes"
[ "$(readlink /opt/alt/bin/runtad)" = /opt/alt-venv/bin/runtad ] && echo "alt-link=yes"
[ "$unit_before" = "$(sha256sum /etc/systemd/system/runtad.service)" ] && echo "alt-unit-untouched=yes"
EOF
cat "$work/install.log"
say "install phase took $(( $(date +%s) - install_started )) s"

check() {
    # check NAME CONDITION-EXIT-STATUS [DETAIL]
    local name=$1 status=$2 detail=${3:-}
    if [ "$status" = 0 ]; then
        passed=$((passed + 1))
        echo "PASS $name${detail:+: $detail}"
    else
        failed=$((failed + 1))
        echo "FAIL $name${detail:+: $detail}"
    fi
}

grep -q '^first-run-exit=0$' "$work/install.log"; check "install.sh first run" $?
grep -q '^second-run-exit=0$' "$work/install.log"; check "install.sh second run" $?
grep -q '^idempotent=yes$' "$work/install.log"; check "install.sh twice changes nothing" $?
grep -q '^alt-run-exit=0$' "$work/install.log" && grep -q '^alt-commands=yes$' "$work/install.log" \
    && grep -q '^alt-link=yes$' "$work/install.log"
check "install.sh --prefix --venv --no-systemd" $?
grep -q '^alt-unit-untouched=yes$' "$work/install.log"; check "--no-systemd leaves the unit alone" $?

# The test's settings: an upstream in a documentation range that no route leads to, and
# the TCP metrics listener on loopback.
sed -i -e 's|^#upstream_dns = \[\]|upstream_dns = ["198.51.100.53"]|' \
    -e 's|^#metrics_listen = ""|metrics_listen = "127.0.0.1:9469"|' "$root/etc/runta/runtad.toml"
if [ -n "${RUNTA_UNIT_EXTRA:-}" ]; then
    mkdir -p "$root/etc/systemd/system/runtad.service.d"
    printf '[Service]\n%b\n' "$RUNTA_UNIT_EXTRA" > "$root/etc/systemd/system/runtad.service.d/extra.conf"
    say "unit drop-in:"; cat "$root/etc/systemd/system/runtad.service.d/extra.conf"
fi

# --- 3. boot ------------------------------------------------------------------------------

say "booting $machine with --private-network"
boot_started=$(date +%s)
systemd-nspawn -q -D "$root" --boot --private-network --register=no --keep-unit \
    --machine="$machine" > "$work/console.log" 2>&1 &
nspawn_pid=$!
find_leader() {
    # The container's PID 1 is a child of systemd-nspawn that is PID 1 in its own PID
    # namespace; nspawn's short-lived helper children are not.
    local pid
    for pid in $(ps -o pid= --ppid "$nspawn_pid"); do
        if [ "$(awk '/^NSpid:/ {print $NF}' "/proc/$pid/status" 2>/dev/null)" = 1 ]; then
            echo "$pid"
            return
        fi
    done
}
for _ in $(seq 1 100); do
    leader=$(find_leader)
    [ -n "$leader" ] && break
    sleep 0.1
done
if [ -z "$leader" ]; then
    cat "$work/console.log"
    echo "run_nspawn.sh: the container did not start" >&2
    exit 1
fi

c() {
    nsenter -t "$leader" -m -u -i -n -p -- /usr/bin/env -i PATH="$clean_path" LANG=C.UTF-8 "$@"
}

# systemctl needs the manager's private socket, which appears a moment after PID 1 starts.
for _ in $(seq 1 100); do
    c test -S /run/systemd/private && break
    sleep 0.1
done
state=$(c timeout 90 systemctl is-system-running --wait)
echo "system state: $state after $(( $(date +%s) - boot_started )) s"
[ "$state" = running ] || [ "$state" = degraded ]; check "systemd boots as PID 1" $? "$state"
[ "$state" = degraded ] && c systemctl --failed --no-legend

# --- 4. checks ----------------------------------------------------------------------------

say "systemd-analyze verify"
c systemd-analyze verify runtad.service > "$work/verify.log" 2>&1
status=$?
cat "$work/verify.log"
[ "$status" = 0 ] && [ ! -s "$work/verify.log" ]; check "systemd-analyze verify runtad.service" $?

# install.sh enabled runtad, so it started at boot; stop it to time a start of its own.
c systemctl is-active --quiet runtad; check "runtad started at boot" $?
c systemctl stop runtad
say "systemctl start runtad"
t0=$(date +%s%N)
c timeout 150 systemctl start runtad; status=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
check "systemctl start runtad returns" "$status" "$ms ms"
c systemctl is-active --quiet runtad; check "runtad is active" $?
status_text=$(c systemctl show -P StatusText runtad)
[ "$status_text" = "serving 0 sandboxes" ]; check "READY=1 with STATUS reached systemd" $? "$status_text"

say "runta CLI through the socket"
c runta status; check "runta status" $?
c runta sandbox create w1; check "runta sandbox create w1" $?
c ip netns exec runta-w1 true; check "sandbox netns visible outside runtad" $?

# A web server on a documentation address inside the container, reached from the sandbox
# through its veth pair. With enforcement off the sandbox gets a 200 from it, and with
# enforcement on it must not reach it.
c ip address add 198.51.100.7/32 dev lo
c systemd-run --quiet --unit=runta-test-web --working-directory=/tmp \
    python3 -m http.server --bind 198.51.100.7 80
for _ in $(seq 1 50); do
    c curl -s -o /dev/null http://198.51.100.7/ && break
    sleep 0.1
done

sandbox_curl() {
    # Print "EXIT MILLISECONDS CODE" of one HTTP request from inside the sandbox.
    local t0 out code
    t0=$(date +%s%N)
    out=$(c ip netns exec runta-w1 curl -sS -m 5 -o /dev/null -w '%{http_code}' http://198.51.100.7/ 2>/dev/null)
    code=$?
    echo "$code $(( ($(date +%s%N) - t0) / 1000000 )) $out"
}
expect_denied() {
    local name=$1 exit_code ms http
    read -r exit_code ms http <<< "$(sandbox_curl)"
    # curl exit 56: the egress gateway takes port 80 to an unlisted address and resets it
    # (exit 7, refused, while runtad is down), either way well before the timeout.
    { [ "$exit_code" = 56 ] || [ "$exit_code" = 7 ]; } && [ "$ms" -lt 2000 ]
    check "$name" $? "curl exit $exit_code after $ms ms"
}

read -r exit_code ms http <<< "$(sandbox_curl)"
[ "$exit_code" = 0 ] && [ "$http" = 200 ]
check "sandbox reaches 198.51.100.7 with enforcement off" $? "curl exit $exit_code, HTTP $http"

c runta egress allow w1 pypi.org > "$work/allow.log" 2>&1; check "runta egress allow w1 pypi.org" $?
c runta egress enable w1; check "runta egress enable w1" $?
expect_denied "denied curl fails fast"

say "metrics"
c curl -s --unix-socket /run/runta/runtad.sock http://runtad/metrics > "$work/metrics.txt"
grep -q '^runtad_policy_enabled{runtime="w1"} 1.0$' "$work/metrics.txt"
check "GET /metrics on the API socket" $?
c curl -s http://127.0.0.1:9469/metrics | grep -q '^runtad_sandboxes{enforcement="enabled"} 1.0$'
check "GET /metrics on 127.0.0.1:9469" $?

say "systemctl reload runtad"
sed -i -e 's|^#min_ttl = 30|min_ttl = 60|' -e 's|^#log_rate = 200|log_rate = 300|' \
    "$root/etc/runta/runtad.toml"
c systemctl reload runtad; check "systemctl reload runtad" $?
sleep 1
c systemctl is-active --quiet runtad; check "runtad active after reload" $?
c journalctl -u runtad -o cat | grep -F '"event": "config_reloaded"' | tail -n 1 \
    | grep -qF '"min_ttl": [30, 60]'
check "reload applied min_ttl" $?
c journalctl -u runtad -o cat -p warning | grep -qF '"config_change_needs_restart"'
check "reload warns that log_rate needs a restart (journal priority 4)" $?
expect_denied "denied curl after reload"

sed -i -e 's|^min_ttl = 60|min_ttl = 0|' "$root/etc/runta/runtad.toml"
c systemctl reload runtad
sleep 1
c systemctl is-active --quiet runtad; check "runtad active after an invalid reload" $?
c runta status | grep -q 'rejected: invalid TTL bounds'; check "runta status shows the rejected reload" $?
sed -i -e 's|^min_ttl = 0|min_ttl = 60|' "$root/etc/runta/runtad.toml"
expect_denied "denied curl after invalid reload"

say "systemctl restart runtad"
c systemctl restart runtad; check "systemctl restart runtad" $?
c systemctl is-active --quiet runtad; check "runtad active after restart" $?
expect_denied "denied curl after restart"
c runta egress table w1 | tee "$work/table.txt"
grep -q 'pypi.org' "$work/table.txt"; check "allowlist kept across restart" $?
c runta status

say "logs"
# -u runtad also shows systemd's own lines about the unit; runtad's are in _SYSTEMD_UNIT.
c journalctl _SYSTEMD_UNIT=runtad.service -o cat | grep -v '^[{]' > "$work/non-json.log"
[ ! -s "$work/non-json.log" ]
check "every line runtad logged is JSON" $? "$(head -c 200 "$work/non-json.log")"
c sh -c "journalctl -u runtad -o cat | jq -R 'fromjson? | select(.event==\"runtad_started\") | .version'" \
    | grep -q .
check "journalctl -u runtad -o cat | jq selects runtad_started" $?

say "systemctl stop runtad"
c systemctl stop runtad; check "systemctl stop runtad" $?
c journalctl -u runtad -o cat | tail -n 3
expect_denied "denied curl while runtad is stopped"
c nsenter --net=/run/netns/runta-w1 nft list table inet runta > /dev/null
check "sandbox table stays in the kernel while stopped" $?
c systemctl start runtad; check "systemctl start runtad again" $?

say "adopting /proc/PID/ns/net of a process with all capabilities"
c systemd-run --quiet --unit=runta-test-adopt unshare --net sleep 600
adopt_pid=""
for _ in $(seq 1 50); do
    adopt_pid=$(c systemctl show -P MainPID runta-test-adopt)
    [ -n "$adopt_pid" ] && [ "$adopt_pid" != 0 ] && break
    sleep 0.1
done
c runta sandbox create adopted --netns "/proc/$adopt_pid/ns/net"; check "runta sandbox create --netns /proc/PID/ns/net" $?
c runta sandbox delete adopted > /dev/null 2>&1 || true
c systemctl stop runta-test-adopt || true

say "systemd-analyze security runtad"
c systemd-analyze security --no-pager runtad.service > "$work/security.log" 2>&1 || true
grep -E '✗|Overall' "$work/security.log" || true

c runta sandbox delete w1 > /dev/null; check "runta sandbox delete w1" $?
c journalctl -u runtad -o cat > "$work/runtad-journal.log" 2>&1 || true

say "finished after $(elapsed)"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
