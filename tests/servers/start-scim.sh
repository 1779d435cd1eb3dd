#!/usr/bin/env bash
# start-scim.sh — install and start two throw-away SCIM 2.0 servers (scim2-server from PyPI, in memory) on
# loopback for the integration tests: one announcing everything (PATCH, /Bulk, ETags, filter), one announcing
# the least (no PATCH, no /Bulk, no ETags; tests/servers/scim-minimal-spc.json). Both serve a tenant per first
# request to /TENANT (--dynamic-tenants), so each test works in a tenant of its own.
#
# Usage:
#   start-scim.sh [start]   install if needed, start what is not running, print eval-able env lines:
#                             export SCIM_BASE_URL=http://127.0.0.1:PORT
#                             export SCIM_MINIMAL_URL=http://127.0.0.1:PORT2
#                             export SCIM_TOKEN=...
#   start-scim.sh stop      stop the servers this script started
#
# Settings (environment):
#   SCIM_HOME      state dir (pids, ports, logs)  (default ./target/scim-test)
#   SCIM_VENV      virtualenv                     (default ~/.cache/steward-tests/scim-venv)
#   SCIM_VERSION   scim2-server version           (default 0.8.3)
#   PYTHON         interpreter for the venv       (default python3; needs >= 3.10)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
SCIM_HOME=${SCIM_HOME:-$PWD/target/scim-test}
SCIM_VENV=${SCIM_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/steward-tests/scim-venv}
SCIM_VERSION=${SCIM_VERSION:-0.8.3}
SCIM_TOKEN=${SCIM_TOKEN:-scim-test-bearer-token}
PYTHON=${PYTHON:-python3}

log() { echo "[start-scim] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

install() {
  local installed=""
  [ -x "$SCIM_VENV/bin/scim2-server" ] && installed=$("$SCIM_VENV/bin/pip" show scim2-server 2>/dev/null || true)
  if grep -qx "Version: $SCIM_VERSION" <<< "$installed"; then
    return
  fi
  log "installing scim2-server $SCIM_VERSION into $SCIM_VENV"
  [ -x "$SCIM_VENV/bin/pip" ] || "$PYTHON" -m venv "$SCIM_VENV"
  timeout 600 "$SCIM_VENV/bin/pip" install --disable-pip-version-check -q "scim2-server==$SCIM_VERSION" >&2 \
    || die "pip install scim2-server==$SCIM_VERSION failed"
}

free_port() {
  "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

answers() { # port
  curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $SCIM_TOKEN" \
    "http://127.0.0.1:$1/probe/ServiceProviderConfig" 2>/dev/null | grep -q 200
}

# start NAME [extra args…]: one server, unless the one started before still answers.
start_one() {
  local name=$1; shift
  local portfile=$SCIM_HOME/$name.port pidfile=$SCIM_HOME/$name.pid
  if [ -f "$portfile" ] && [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && answers "$(cat "$portfile")"; then
    return
  fi
  local port; port=$(free_port)
  echo "$port" > "$portfile"
  setsid "$SCIM_VENV/bin/scim2-server" --hostname 127.0.0.1 --port "$port" --bearer-token "$SCIM_TOKEN" \
    --dynamic-tenants "$@" > "$SCIM_HOME/$name.log" 2>&1 < /dev/null &
  echo $! > "$pidfile"
  for _ in $(seq 1 100); do
    answers "$port" && return
    kill -0 "$(cat "$pidfile")" 2>/dev/null || die "scim2-server ($name) exited; see $SCIM_HOME/$name.log"
    sleep 0.1
  done
  die "scim2-server ($name) did not answer on port $port within 10 s; see $SCIM_HOME/$name.log"
}

stop() {
  for name in full minimal; do
    local pidfile=$SCIM_HOME/$name.pid
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
  done
}

case ${1:-start} in
  start)
    command -v curl >/dev/null || die "curl is needed to check the servers answer"
    mkdir -p "$SCIM_HOME"
    install
    start_one full
    start_one minimal --service-provider-config "$here/scim-minimal-spc.json"
    echo "export SCIM_BASE_URL=http://127.0.0.1:$(cat "$SCIM_HOME/full.port")"
    echo "export SCIM_MINIMAL_URL=http://127.0.0.1:$(cat "$SCIM_HOME/minimal.port")"
    echo "export SCIM_TOKEN=$SCIM_TOKEN"
    ;;
  stop) stop ;;
  *) die "usage: $0 [start|stop]" ;;
esac
