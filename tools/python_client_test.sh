#!/usr/bin/env bash
# Python client test: proves the gRPC contract in proto/ works from another language.
#
# Creates a virtual environment with grpcio and grpcio-tools from PyPI, generates Python
# stubs from proto/, starts akted on a free loopback port with a fresh data directory, and
# runs a short scenario with the bootstrap token: create a tenant, a plan unit, a file and
# a document, upload a version in chunks, download it, compare the bytes; then check that a
# wrong SHA-256 is refused with INVALID_ARGUMENT / DIGEST_MISMATCH in google.rpc.ErrorInfo.
#
# Exits non-zero on failure; the last line says PASS or FAIL.
# Environment: PYTHON (default python3), AKTE_PY_VENV (reuse a venv directory), AKTED (path
# to an akted binary; built with cargo when unset).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

work=$(mktemp -d)
akted_pid=""
cleanup() {
  if [ -n "$akted_pid" ] && kill -0 "$akted_pid" 2>/dev/null; then
    kill -TERM "$akted_pid" 2>/dev/null || true
    wait "$akted_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
fail() {
  echo "python client test: $*" >&2
  if [ -f "$work/akted.log" ]; then
    echo "--- akted log (last 30 lines)" >&2
    tail -n 30 "$work/akted.log" >&2 || true
  fi
  echo "python client test: FAIL"
  exit 1
}
trap cleanup EXIT

python=${PYTHON:-python3}
venv=${AKTE_PY_VENV:-$work/venv}
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv" || fail "could not create a virtual environment with $python"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check grpcio grpcio-tools \
  || fail "pip install grpcio grpcio-tools failed"

# Stubs: the well-known types (google/protobuf/*) come with grpcio-tools; google/rpc and
# google/type are vendored in proto/.
stubs="$work/stubs"
mkdir -p "$stubs"
wkt=$("$venv/bin/python" -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')
(cd proto && "$venv/bin/python" -m grpc_tools.protoc -I . -I "$wkt" \
  --python_out="$stubs" --grpc_python_out="$stubs" \
  akte/v1/*.proto google/rpc/status.proto google/rpc/error_details.proto google/type/date.proto) \
  || fail "generating stubs from proto/ failed"

if [ -z "${AKTED:-}" ]; then
  cargo build --quiet --locked -p akte-server --bin akted || fail "building akted failed"
  AKTED="${CARGO_TARGET_DIR:-$root/target}/debug/akted"
fi

port=$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
"$AKTED" --data-dir "$work/data" --listen "127.0.0.1:$port" --metrics-listen off \
  >"$work/akted.log" 2>&1 &
akted_pid=$!
for _ in $(seq 1 200); do
  [ -s "$work/data/bootstrap-token" ] && break
  kill -0 "$akted_pid" 2>/dev/null || fail "akted exited at start"
  sleep 0.05
done
[ -s "$work/data/bootstrap-token" ] || fail "akted wrote no bootstrap token"

cat >"$work/scenario.py" <<'PY'
import hashlib, os, sys, time
import grpc
sys.path.insert(0, os.environ["STUBS"])
from akte.v1 import tenants_pb2, tenants_pb2_grpc, file_plan_pb2, file_plan_pb2_grpc
from akte.v1 import files_pb2, files_pb2_grpc, documents_pb2, documents_pb2_grpc
from google.rpc import status_pb2, error_details_pb2

token = open(os.environ["TOKEN_FILE"]).read().strip()
meta = [("authorization", "Bearer " + token)]
channel = grpc.insecure_channel("127.0.0.1:" + os.environ["PORT"])
grpc.channel_ready_future(channel).result(timeout=15)
tenants = tenants_pb2_grpc.TenantServiceStub(channel)
plan = file_plan_pb2_grpc.FilePlanServiceStub(channel)
files = files_pb2_grpc.FileServiceStub(channel)
docs = documents_pb2_grpc.DocumentServiceStub(channel)

t = tenants.CreateTenant(tenants_pb2.CreateTenantRequest(tenant_id="py-test"), metadata=meta)
unit = plan.CreatePlanUnit(file_plan_pb2.CreatePlanUnitRequest(
    parent=t.name, plan_unit=file_plan_pb2.PlanUnit(code="022.31", title="Python"),
    request_id="py-1"), metadata=meta)
f = files.CreateFile(files_pb2.CreateFileRequest(
    parent=unit.name, file=files_pb2.File(subject="Antrag aus Python")), metadata=meta)
assert f.reference.startswith("022.31-"), f.reference
d = docs.CreateDocument(documents_pb2.CreateDocumentRequest(
    parent=f.name, document=documents_pb2.Document(subject="Scan")), metadata=meta)

data = os.urandom(2_500_000)
sha = hashlib.sha256(data).hexdigest()

def version_stream(declared_sha):
    yield documents_pb2.AddVersionRequest(header=documents_pb2.AddVersionHeader(
        document=d.name, comment="aus Python",
        upload=documents_pb2.RenditionUpload(file_name="scan.pdf", media_type="application/pdf",
                                             sha256=declared_sha, size=len(data))))
    for i in range(0, len(data), 1 << 20):
        yield documents_pb2.AddVersionRequest(chunk=data[i:i + (1 << 20)])

v = docs.AddVersion(version_stream(sha), metadata=meta)
assert v.number == 1 and v.renditions[0].sha256 == sha, v

got, meta_seen = bytearray(), None
for m in docs.DownloadRendition(documents_pb2.DownloadRenditionRequest(name=v.renditions[0].name), metadata=meta):
    if m.HasField("rendition"):
        meta_seen = m.rendition
    else:
        got += m.chunk
assert meta_seen is not None and meta_seen.sha256 == sha
assert bytes(got) == data, "downloaded bytes differ from the uploaded ones"

try:
    docs.AddVersion(version_stream("0" * 64), metadata=meta)
    raise AssertionError("a wrong SHA-256 was accepted")
except grpc.RpcError as e:
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.code()
    raw = dict(e.trailing_metadata() or ()).get("grpc-status-details-bin")
    assert raw, "no grpc-status-details-bin trailer"
    st = status_pb2.Status.FromString(raw)
    info = error_details_pb2.ErrorInfo()
    assert any(a.Unpack(info) for a in st.details), st
    assert info.reason == "DIGEST_MISMATCH" and info.domain == "akte.example", info

try:
    files.GetFile(files_pb2.GetFileRequest(name=f.name))
    raise AssertionError("a call without a token was accepted")
except grpc.RpcError as e:
    assert e.code() == grpc.StatusCode.UNAUTHENTICATED, e.code()

print("scenario: tenant, plan unit %s, file %s, %d bytes up and down, digest mismatch refused"
      % (unit.name.split("/")[-1], f.reference, len(data)))
PY

STUBS="$stubs" TOKEN_FILE="$work/data/bootstrap-token" PORT="$port" \
  "$venv/bin/python" "$work/scenario.py" || fail "scenario failed"

kill -TERM "$akted_pid"
code=0
wait "$akted_pid" || code=$?
akted_pid=""
[ "$code" -eq 0 ] || fail "akted exited with $code after SIGTERM"
echo "python client test: PASS"
