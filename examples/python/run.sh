#!/usr/bin/env bash
# Runs the Python example against a live akted (../with-akted.sh): creates a virtual
# environment, installs this package (its stubs are generated from proto/ while it is
# built) with the exact versions of requirements.txt, runs example.py, and checks that the
# Python snippets of docs/API.md are quoted unchanged from example.py.
#
# The last line says PASS or FAIL. Environment: PYTHON (default python3), AKTE_PY_VENV
# (reuse a venv directory), AKTED (an akted binary; built with cargo when unset).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
fail() {
  echo "python example: $*" >&2
  echo "python example: FAIL"
  exit 1
}

python=${PYTHON:-python3}
if [ -n "${AKTE_PY_VENV:-}" ]; then
  venv=$AKTE_PY_VENV
else
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  venv=$scratch/venv
fi
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv" || fail "could not create a virtual environment with $python"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  -c "$here/requirements.txt" "$here[reflection]" || fail "installing the client package failed"

"$python" "$root/tools/check_api_snippets.py" "$root/docs/API.md" "$here/example.py" \
  || fail "docs/API.md quotes example.py wrongly"
"$here/../with-akted.sh" sh -c '"$0" "$1" --target "$AKTE_TARGET" --admin-token-file "$AKTE_ADMIN_TOKEN_FILE"' \
  "$venv/bin/python" "$here/example.py" || fail "the example failed"
echo "python example: PASS"
