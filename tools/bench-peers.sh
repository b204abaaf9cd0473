#!/usr/bin/env bash
# The ingest benchmark beside its peers (issue 20): installs borg and restic from Debian's
# packages where they are missing (the benchmark itself installs nothing and skips a peer
# it cannot find), then runs `akte-bench ingest` ROUNDS times (default 3): 5 KB documents
# and the agency corpus over gRPC with 16 clients, by two calls, one call and one stream
# per client, each on a fresh akted, beside `borg create` (zstd,3) and `restic backup` of
# the same corpus in the same run. Arguments go to akte-bench (e.g. --quick).
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v borg >/dev/null 2>&1 || missing+=(borgbackup)
command -v restic >/dev/null 2>&1 || missing+=(restic)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null || echo "could not install ${missing[*]}; the bench skips them" >&2
  else
    echo "not root: cannot install ${missing[*]}; the bench skips them" >&2
  fi
fi
cargo build --release --locked -p akte-bench
bench="${CARGO_TARGET_DIR:-target}/release/akte-bench"
for round in $(seq 1 "${ROUNDS:-3}"); do
  echo "== round $round"
  "$bench" ingest "$@"
done
