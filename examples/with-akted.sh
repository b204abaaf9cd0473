#!/usr/bin/env bash
# Runs a command against a live akted: starts akted on a free loopback port with a fresh
# data directory, runs the command with AKTE_TARGET (host:port) and AKTE_ADMIN_TOKEN_FILE
# (the bootstrap admin token) in its environment, then stops akted with SIGTERM and checks
# that it drains and exits 0. Exits with the command's status (or 1 if akted misbehaved).
#
# Environment: AKTED (an akted binary; built with cargo when unset).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
[ $# -gt 0 ] || { echo "usage: $0 COMMAND [ARG...]" >&2; exit 2; }

work=$(mktemp -d)
akted_pid=""
cleanup() {
  if [ -n "$akted_pid" ] && kill -0 "$akted_pid" 2>/dev/null; then
    kill -TERM "$akted_pid" 2>/dev/null || true
    wait "$akted_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
log_tail() {
  echo "--- akted log (last 30 lines)" >&2
  tail -n 30 "$work/akted.log" >&2 || true
}
trap cleanup EXIT

if [ -z "${AKTED:-}" ]; then
  (cd "$root" && cargo build --quiet --locked -p akte-server --bin akted)
  AKTED="${CARGO_TARGET_DIR:-$root/target}/debug/akted"
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
"$AKTED" --data-dir "$work/data" --listen "127.0.0.1:$port" --metrics-listen off \
  >"$work/akted.log" 2>&1 &
akted_pid=$!
for _ in $(seq 1 200); do
  [ -s "$work/data/bootstrap-token" ] && break
  if ! kill -0 "$akted_pid" 2>/dev/null; then
    echo "akted exited at start" >&2
    log_tail
    exit 1
  fi
  sleep 0.05
done
if [ ! -s "$work/data/bootstrap-token" ]; then
  echo "akted wrote no bootstrap token" >&2
  log_tail
  exit 1
fi

status=0
AKTE_TARGET="127.0.0.1:$port" AKTE_ADMIN_TOKEN_FILE="$work/data/bootstrap-token" "$@" || status=$?
if [ "$status" -ne 0 ]; then
  log_tail
  exit "$status"
fi

kill -TERM "$akted_pid"
code=0
wait "$akted_pid" || code=$?
akted_pid=""
if [ "$code" -ne 0 ]; then
  echo "akted exited with $code after SIGTERM" >&2
  log_tail
  exit 1
fi
