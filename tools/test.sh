#!/usr/bin/env bash
# The test command (README: "Run the tests"). Runs every test of the workspace, then the
# records-level integration tests again on the in-memory backend (they run on any backend
# chosen with AKTE_TEST_BACKEND), and closes with one line adding up cargo's per-binary
# summaries.
set -euo pipefail
cd "$(dirname "$0")/.."
# moto's standalone S3 server (pinned) for the tests of content in object storage, in a
# virtual environment of its own in the target directory (installed once).
moto_venv="${CARGO_TARGET_DIR:-target}/moto-venv"
if [ ! -x "$moto_venv/bin/moto_server" ]; then
  python3 -m venv "$moto_venv"
  "$moto_venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==5.2.6"
fi
AKTE_MOTO_SERVER="$(cd "$moto_venv/bin" && pwd)/moto_server"
export AKTE_MOTO_SERVER
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked "$@" 2>&1 | tee "$log" || status=$?
# The reruns select their test binaries from the whole workspace (not `-p akte-tests`):
# a package on its own resolves other features for shared dependencies (hyper, rustls,
# tower, ...), which rebuilt half the dependency tree twice on a cold machine. Selecting
# by name from the workspace also runs akte-server's `disposal` and `access` on the
# embedded backend in the in-memory pass (its servers know no in-memory backend).
echo "== records-level tests on the in-memory backend"
AKTE_TEST_BACKEND=memory cargo test --workspace --locked \
  --test records --test retention --test disposal --test destruction --test access \
  --test custom_fields --test one_call "$@" 2>&1 | tee -a "$log" || status=$?
echo "== records-level and gRPC end-to-end tests on PostgreSQL"
AKTE_TEST_BACKEND=postgres cargo test --workspace --locked \
  --test records --test retention --test disposal --test destruction --test access \
  --test grpc --test pagination --test feed --test operations --test transfers \
  --test roles --test custom_fields --test fulltext --test one_call "$@" 2>&1 | tee -a "$log" || status=$?
read -r passed failed < <(awk '/^test result:/ {
    for (i = 2; i <= NF; i++) {
      if ($i == "passed;") p += $(i - 1)
      if ($i == "failed;") f += $(i - 1)
    }
  } END { print p + 0, f + 0 }' "$log")
echo
echo "workspace: $passed passed, $failed failed"
exit "$status"
