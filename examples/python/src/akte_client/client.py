"""A thin, typed-enough layer over the generated stubs: a channel with the bearer token,
one stub per service, akte's error details, paging, long-running operations, resumable
uploads and ranged downloads."""

import hashlib
import time

import grpc
from google.longrunning import operations_pb2, operations_pb2_grpc
from google.protobuf import symbol_database
from google.rpc import error_details_pb2, status_pb2

# The messages an operation's response or metadata may hold must be imported, so that
# unpack() finds them by name.
from akte.v1 import disposal_pb2, operations_pb2 as akte_operations_pb2  # noqa: F401
from akte.v1 import verification_pb2  # noqa: F401
from akte.v1 import (
    cases_pb2_grpc,
    disposal_pb2_grpc,
    documents_pb2,
    documents_pb2_grpc,
    file_plan_pb2_grpc,
    files_pb2_grpc,
    history_pb2_grpc,
    journal_pb2_grpc,
    retention_pb2_grpc,
    search_pb2_grpc,
    tenants_pb2_grpc,
    verification_pb2_grpc,
)

#: The domain of akte's google.rpc.ErrorInfo.
DOMAIN = "akte.de"
#: Largest chunk of an upload.
CHUNK = 1 << 20


class _Bearer(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
              grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds `authorization: Bearer <token>` to every call (also over plain text on
    loopback, where call credentials are not allowed)."""

    def __init__(self, token):
        self._meta = ("authorization", "Bearer " + token)

    def _add(self, details):
        meta = list(details.metadata or []) + [self._meta]
        return details._replace(metadata=meta)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._add(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._add(details), request)

    def intercept_stream_unary(self, continuation, details, requests):
        return continuation(self._add(details), requests)

    def intercept_stream_stream(self, continuation, details, requests):
        return continuation(self._add(details), requests)


class Client:
    """One stub per akte service over one channel."""

    def __init__(self, channel):
        self.channel = channel
        self.tenants = tenants_pb2_grpc.TenantServiceStub(channel)
        self.plan = file_plan_pb2_grpc.FilePlanServiceStub(channel)
        self.files = files_pb2_grpc.FileServiceStub(channel)
        self.cases = cases_pb2_grpc.CaseServiceStub(channel)
        self.documents = documents_pb2_grpc.DocumentServiceStub(channel)
        self.history = history_pb2_grpc.HistoryServiceStub(channel)
        self.journal = journal_pb2_grpc.JournalServiceStub(channel)
        self.verification = verification_pb2_grpc.VerificationServiceStub(channel)
        self.retention = retention_pb2_grpc.RetentionServiceStub(channel)
        self.holds = retention_pb2_grpc.HoldServiceStub(channel)
        self.disposal = disposal_pb2_grpc.DisposalServiceStub(channel)
        self.search = search_pb2_grpc.SearchServiceStub(channel)
        self.operations = operations_pb2_grpc.OperationsStub(channel)

    def close(self):
        self.channel.close()


def connect(target, token, root_certificates=None, private_key=None, certificate_chain=None):
    """A client of akted at `target` (`host:port`) acting with `token`. Without
    `root_certificates` the channel is plain text, which akted allows on loopback only."""
    options = [("grpc.max_receive_message_length", 8 << 20)]
    if root_certificates is None:
        channel = grpc.insecure_channel(target, options=options)
    else:
        creds = grpc.ssl_channel_credentials(root_certificates, private_key, certificate_chain)
        channel = grpc.secure_channel(target, creds, options=options)
    return Client(grpc.intercept_channel(channel, _Bearer(token)))


def error_info(error):
    """The google.rpc.ErrorInfo of a failed call (a grpc.RpcError), or None."""
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return info
    return None


def reason(error):
    """The stable reason of a failed call (an akte.v1.ErrorReason name), or ""."""
    info = error_info(error)
    return info.reason if info and info.domain == DOMAIN else ""


def pages(method, request, items):
    """Every item of a List method, page after page: `method` is the stub's method,
    `request` the first page's request, `items` the name of the repeated field."""
    while True:
        page = method(request)
        yield from getattr(page, items)
        if not page.next_page_token:
            return
        request.page_token = page.next_page_token


class OperationFailed(Exception):
    """A long-running operation ended with an error (a google.rpc.Status)."""

    def __init__(self, status):
        super().__init__("%s: %s" % (status.code, status.message))
        self.status = status

    def reason(self):
        for detail in self.status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                return info.reason
        return ""


def unpack(any_message):
    """The message in a google.protobuf.Any, of the type its URL names."""
    name = any_message.type_url.rsplit("/", 1)[-1]
    cls = symbol_database.Default().GetSymbol(name)
    message = cls()
    if not any_message.Unpack(message):
        raise ValueError("cannot unpack %s" % any_message.type_url)
    return message


def wait(client, operation, timeout=None):
    """Waits until a long-running operation is done (WaitOperation in rounds of up to
    60 s, so it survives any connection drop between them) and returns its response;
    raises OperationFailed with its error. `timeout` (seconds) bounds the whole wait."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not operation.done:
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError("operation %s is still running" % operation.name)
        request = operations_pb2.WaitOperationRequest(name=operation.name)
        request.timeout.FromSeconds(60)
        operation = client.operations.WaitOperation(request)
    if operation.HasField("error"):
        raise OperationFailed(operation.error)
    return unpack(operation.response)


def rendition_upload(data, file_name, media_type):
    """The declaration of bytes to upload: name, type, SHA-256 and size."""
    return documents_pb2.RenditionUpload(
        file_name=file_name, media_type=media_type,
        sha256=hashlib.sha256(data).digest(), size=len(data))


def _write_requests(session, data, offset):
    yield documents_pb2.WriteUploadSessionRequest(
        header=documents_pb2.WriteUploadSessionHeader(name=session, offset=offset))
    for i in range(offset, len(data), CHUNK):
        yield documents_pb2.WriteUploadSessionRequest(chunk=data[i:i + CHUNK])


def write_session(client, session, data, attempts=8):
    """Writes `data` (bytes) into an upload session, resuming from the server's
    `persisted_size` whenever the connection breaks. Returns the session."""
    s = client.documents.GetUploadSession(documents_pb2.GetUploadSessionRequest(name=session))
    for attempt in range(attempts):
        try:
            return client.documents.WriteUploadSession(
                _write_requests(session, data, s.persisted_size))
        except grpc.RpcError as e:
            retry = e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED,
                                 grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED,
                                 grpc.StatusCode.ABORTED)
            if not retry or attempt + 1 == attempts:
                raise
            time.sleep(min(2 ** attempt, 30) / 10)
            s = client.documents.GetUploadSession(
                documents_pb2.GetUploadSessionRequest(name=session))
    return s


def download(client, name, offset=0, length=0):
    """Bytes of a rendition (or a range: `offset`, `length`; 0 means to the end), and its
    metadata. The server checks the whole rendition's SHA-256; a damaged one fails."""
    meta, out = None, bytearray()
    request = documents_pb2.DownloadRenditionRequest(name=name, offset=offset, length=length)
    for m in client.documents.DownloadRendition(request):
        if m.HasField("rendition"):
            meta = m.rendition
        else:
            out += m.chunk
    return meta, bytes(out)
