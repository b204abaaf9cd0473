#!/usr/bin/env bash
# The test command (README: "Run the tests"). Runs every test of the workspace, then the
# records-level integration tests again on the in-memory backend (they run on any backend
# chosen with AKTE_TEST_BACKEND), and closes with one line adding up cargo's per-binary
# summaries.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked "$@" 2>&1 | tee "$log" || status=$?
echo "== records-level tests on the in-memory backend"
AKTE_TEST_BACKEND=memory cargo test -p akte-tests --locked \
  --test records --test retention --test disposal --test destruction "$@" 2>&1 | tee -a "$log" || status=$?
echo "== records-level and gRPC end-to-end tests on PostgreSQL"
AKTE_TEST_BACKEND=postgres cargo test -p akte-tests --locked \
  --test records --test retention --test disposal --test destruction "$@" 2>&1 | tee -a "$log" || status=$?
AKTE_TEST_BACKEND=postgres cargo test -p akte-server --locked \
  --test grpc --test disposal --test pagination --test feed --test operations --test transfers \
  --test roles "$@" 2>&1 | tee -a "$log" || status=$?
read -r passed failed < <(awk '/^test result:/ {
    for (i = 2; i <= NF; i++) {
      if ($i == "passed;") p += $(i - 1)
      if ($i == "failed;") f += $(i - 1)
    }
  } END { print p + 0, f + 0 }' "$log")
echo
echo "workspace: $passed passed, $failed failed"
exit "$status"
