#!/bin/bash
# Time `make test` (or another target) as a brand-new machine would run it, beside a running shared stack:
#   tools/infra/scripts/measure-cold.sh [TARGET] [DIR]      (defaults: test, /var/tmp/cold)
# A fresh clone of this repository's HEAD, a fresh HOME (so uv's, Go's, Maven's and ig-mc's caches are all empty and
# uv itself is installed by `make bootstrap`), its own IG_RUN_DIR and ports (PostgreSQL not on 26432: the real-node tests'
# pods use that one, tools/k8s/src/ig_k8s/real_charts.py POD_PG_PORT). Every output line is prefixed with the
# UTC time and the seconds since the start; the load average is sampled every 30 s. Logs: DIR/log/.
# What stays warm: Debian packages already installed (PostgreSQL, slapd, etcd, chromium, Java, Maven) and the Go
# toolchain itself; the machine's Go settings (go env file) are copied into the fresh HOME.
# OPA on 8481, not 8281: region-b's policy service takes 8281 (8081 + 200) when `make up` starts both regions.
set -u
TARGET=${1:-test}
C=${2:-/var/tmp/cold}
REPO=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
if [ -e "$C" ]; then echo "$C exists: remove it first (it holds the previous run's caches)" >&2; exit 2; fi
mkdir -p "$C"/{home,run,log,bin}
git clone -q "$REPO" "$C/repo"
[ -f "$HOME/.config/go/env" ] && mkdir -p "$C/home/.config/go" && cp "$HOME/.config/go/env" "$C/home/.config/go/env"
# The interpreter by its real path, so that no shim or venv of the caller's HOME is used.
ln -s "$(python3 -c 'import os, sys; print(os.path.realpath(sys.executable))')" "$C/bin/python3"
GO_BIN=$(dirname "$(command -v go)")
export HOME=$C/home
unset PIP_FIND_LINKS XDG_CACHE_HOME XDG_CONFIG_HOME XDG_DATA_HOME GOPATH GOMODCACHE GOCACHE UV_CACHE_DIR VIRTUAL_ENV
export PATH=$HOME/.local/bin:$C/bin:$GO_BIN:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export IG_RUN_DIR=$C/run IG_PG_PORT=57432 IG_KAFKA_PORT=60092 IG_KAFKA_CONTROLLER_PORT=60093 IG_OPA_PORT=8481 \
  IG_PROMETHEUS_PORT=9190 IG_DEX_PORT=5656 IG_DEX_LDAP_PORT=5489 IG_DEX_TELEMETRY_PORT=5658 IG_PUSHGATEWAY_PORT=9191
( while sleep 30; do echo "$(date -u +%T) $(cut -d' ' -f1-3 /proc/loadavg)"; done ) > "$C/log/loadavg.log" &
sampler=$!
trap 'kill $sampler 2>/dev/null' EXIT
start=$(date +%s)
cd "$C/repo"
make "$TARGET" 2>&1 | python3 -u -c '
import datetime, sys, time
t0 = time.monotonic()
for line in sys.stdin:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M:%S")
    print(f"{now} +{time.monotonic() - t0:6.0f}s {line}", end="", flush=True)
' | tee "$C/log/make-$TARGET.log"
rc=${PIPESTATUS[0]}
echo "make $TARGET: exit $rc after $(( $(date +%s) - start )) s; load average samples in $C/log/loadavg.log" \
  | tee -a "$C/log/make-$TARGET.log"
exit "$rc"
