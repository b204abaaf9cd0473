"""A Python client of akte's gRPC API v1 (proto/akte/v1), generated with grpcio-tools,
plus helpers: connect with a token, akte's error reasons, paging, long-running
operations, resumable uploads, ranged downloads, and checking proofs without akte
(`akte_client.proofs`)."""

from akte_client.client import (  # noqa: F401
    CHUNK,
    DOMAIN,
    Client,
    OperationFailed,
    connect,
    download,
    error_info,
    pages,
    reason,
    rendition_upload,
    unpack,
    wait,
    write_session,
)
