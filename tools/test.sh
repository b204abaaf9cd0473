#!/usr/bin/env bash
# The test command (README: "Run the tests"). Runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --workspace --locked "$@"
