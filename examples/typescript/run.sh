#!/usr/bin/env bash
# Runs the TypeScript example against a live akted (../with-akted.sh): installs the pinned
# packages with `npm ci` (package-lock.json), generates the types from proto/, compiles,
# and runs dist/example.js. The last line says PASS or FAIL.
# Environment: AKTED (an akted binary; built with cargo when unset).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
fail() {
  echo "typescript example: $*" >&2
  echo "typescript example: FAIL"
  exit 1
}
cd "$here"
npm ci --no-audit --no-fund --loglevel=error || fail "npm ci failed"
npm run --silent build || fail "generating or compiling failed"
"$here/../with-akted.sh" sh -c 'node "$0" "$AKTE_TARGET" "$AKTE_ADMIN_TOKEN_FILE"' \
  "$here/dist/example.js" || fail "the example failed"
echo "typescript example: PASS"
