#!/usr/bin/env python3
"""A tour of akte's API v1 from Python, run against a live akted by run.sh (and in CI).

As an operator it creates a tenant and a clerk's token; as the clerk it files a document:
plan unit, file, document; uploads a scan with a resumable upload session that breaks off
and resumes; imports it as a version (a long-running operation); downloads a range; reads
the change feed; and finally proves, with the agency's published key and without trusting
akte, that the downloaded bytes are in the signed journal. It also checks the error model
(reasons in google.rpc.ErrorInfo) and that gRPC reflection v1alpha answers.

The blocks between "# [docs:...]" and "# [/docs]" are quoted in docs/API.md; run.sh checks
that the guide quotes them unchanged.

    python example.py --target 127.0.0.1:50051 --admin-token-file DATA_DIR/bootstrap-token
"""

import argparse
import hashlib
import os
import sys
import time

import grpc
from google.longrunning import operations_pb2
from google.protobuf import field_mask_pb2

import akte_client
from akte_client import proofs
from akte.v1 import (
    documents_pb2,
    file_plan_pb2,
    files_pb2,
    journal_pb2,
    retention_pb2,
    tenants_pb2,
    verification_pb2,
)


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", required=True, help="host:port of akted")
    ap.add_argument("--admin-token-file", required=True, help="an admin token for all tenants")
    ap.add_argument("--tenant", default="bauamt-py")
    args = ap.parse_args()
    admin_token = open(args.admin_token_file).read().strip()

    # --- The operator: a tenant and a clerk's token -------------------------------------
    admin = akte_client.connect(args.target, admin_token)
    grpc.channel_ready_future(admin.channel).result(timeout=15)
    tenant = admin.tenants.CreateTenant(tenants_pb2.CreateTenantRequest(tenant_id=args.tenant))
    # The agency publishes these two (letterhead, website, the archive's records): a
    # verifier takes them from there, not from the server it checks.
    published_key, published_origin = tenant.verifier_key, tenant.origin
    made = admin.tenants.CreateToken(tenants_pb2.CreateTokenRequest(
        parent=tenant.name, principal="fachverfahren:bau",
        roles=[tenants_pb2.ROLE_REGISTRAR, tenants_pb2.ROLE_ARCHIVIST]))
    token = made.secret

    # [docs:connect]
    client = akte_client.connect(args.target, token)  # adds "authorization: Bearer <token>"
    parent = "tenants/" + args.tenant
    # [/docs]

    # [docs:create]
    unit = client.plan.CreatePlanUnit(file_plan_pb2.CreatePlanUnitRequest(
        parent=parent,
        plan_unit=file_plan_pb2.PlanUnit(code="632.1", title="Baugenehmigungen"),
        request_id="plan-632.1"))  # repeating the call with this id returns the same unit
    akte = client.files.CreateFile(files_pb2.CreateFileRequest(
        parent=unit.name, file=files_pb2.File(subject="Neubau, Flurstück 12/3")))
    doc = client.documents.CreateDocument(documents_pb2.CreateDocumentRequest(
        parent=akte.name, document=documents_pb2.Document(subject="Bauantrag")))
    print(akte.name, akte.reference, doc.name)  # tenants/…/files/<uuid> 632.1-0001/2026 …
    # [/docs]
    check(akte.reference.startswith("632.1-"), akte.reference)
    # [docs:one-call]
    scan = b"%PDF-1.7 Bauantrag, eingescannt"
    letter = client.documents.CreateDocument(documents_pb2.CreateDocumentRequest(
        parent=akte.name, document=documents_pb2.Document(subject="Eingangsbrief"),
        content=scan, content_file_name="brief.pdf", content_media_type="application/pdf",
        content_sha256=hashlib.sha256(scan).digest()))  # document and version 1: one entry

    def letters():  # many documents over one stream, each recorded once complete
        for i, text in enumerate([b"Stellungnahme", b"Nachforderung"]):
            yield documents_pb2.CreateDocumentsRequest(document=documents_pb2.CreateDocumentsItem(
                document=documents_pb2.CreateDocumentRequest(
                    parent=akte.name, document=documents_pb2.Document(subject="Brief %d" % i),
                    content=text, content_file_name="brief%d.txt" % i,
                    content_media_type="text/plain")))
    made = client.documents.CreateDocuments(letters())
    print(letter.version_count, made.created, [r.name for r in made.results])  # 1 2 [...]
    # [/docs]
    check(letter.version_count == 1 and made.created == 2 and made.failed == 0, made)
    again = client.plan.CreatePlanUnit(file_plan_pb2.CreatePlanUnitRequest(
        parent=parent, plan_unit=file_plan_pb2.PlanUnit(code="632.1", title="Baugenehmigungen"),
        request_id="plan-632.1"))
    check(again.name == unit.name, "a repeated create with its request_id is the first one")

    # [docs:etag]
    changed = client.files.UpdateFile(files_pb2.UpdateFileRequest(
        file=files_pb2.File(name=akte.name, lead_unit="Bauaufsicht"),
        update_mask=field_mask_pb2.FieldMask(paths=["lead_unit"]),
        etag=akte.etag))  # the revision the change is based on
    try:
        client.files.UpdateFile(files_pb2.UpdateFileRequest(
            file=files_pb2.File(name=akte.name, notes="zu spät"),
            update_mask=field_mask_pb2.FieldMask(paths=["notes"]),
            etag=akte.etag))  # stale: someone changed the file since
    except grpc.RpcError as e:
        info = akte_client.error_info(e)  # google.rpc.ErrorInfo from the status details
        print(e.code(), info.reason, info.metadata["current_etag"])  # ABORTED STALE_ETAG …
    # [/docs]
        check(e.code() == grpc.StatusCode.ABORTED and info.reason == "STALE_ETAG", info)
        check(info.domain == "akte.de" and info.metadata["current_etag"] == changed.etag, info)
    else:
        raise AssertionError("a stale etag was accepted")

    # --- A resumable upload that breaks off and resumes ---------------------------------
    scan = os.urandom(3 * akte_client.CHUNK + 12345)
    # [docs:upload]
    session = client.documents.CreateUploadSession(documents_pb2.CreateUploadSessionRequest(
        parent=doc.name,
        upload_session=documents_pb2.UploadSession(rendition=akte_client.rendition_upload(
            scan, "bauantrag.pdf", "application/pdf"))))  # declares SHA-256 and size
    try:  # (here the network breaks after 2 MiB)
        client.documents.WriteUploadSession(
            chunks(client, session.name, scan, 0, breaks_after=2 * akte_client.CHUNK))
    except grpc.RpcError:
        pass  # the server keeps what arrived
    held = client.documents.GetUploadSession(
        documents_pb2.GetUploadSessionRequest(name=session.name)).persisted_size
    client.documents.WriteUploadSession(chunks(client, session.name, scan, held))  # resume
    operation = client.documents.ImportUploadSession(documents_pb2.ImportUploadSessionRequest(
        name=session.name, comment="Eingang per Post, gescannt"))
    version = akte_client.wait(client, operation)  # SHA-256 checked over all bytes
    # [/docs]
    check(held == 2 * akte_client.CHUNK, "the server held what arrived: %d" % held)
    check(version.renditions[0].sha256 == hashlib.sha256(scan).digest(), "digest")
    print("upload resumed at %d of %d bytes, version %s" % (held, len(scan), version.name))

    # [docs:download]
    rendition = version.renditions[0].name
    meta, head = akte_client.download(client, rendition, offset=0, length=1024)
    _, tail = akte_client.download(client, rendition, offset=1024)  # the rest, resumed
    whole = head + tail
    assert hashlib.sha256(whole).digest() == meta.sha256 and len(whole) == meta.size
    # [/docs]
    check(whole == scan, "the downloaded bytes are the uploaded ones")

    # [docs:pagination]
    versions = list(akte_client.pages(
        client.documents.ListVersions,
        documents_pb2.ListVersionsRequest(parent=doc.name, page_size=50), "versions"))
    # [/docs]
    check([v.name for v in versions] == [version.name], versions)

    # [docs:operations]
    operation = client.verification.VerifyTenant(verification_pb2.VerifyTenantRequest(
        name=parent, skip_content=False))
    name = operation.name  # tenants/…/operations/<uuid>: keep it, disconnect, come back
    operation = client.operations.GetOperation(operations_pb2.GetOperationRequest(name=name))
    progress = akte_client.unpack(operation.metadata)  # akte.v1.OperationMetadata
    print(progress.verb, progress.processed, "/", progress.total, progress.unit)
    report = akte_client.wait(client, operation)  # akte.v1.VerificationReport
    # [/docs]
    check(report.clean, report)

    # [docs:feed]
    seen = 0
    for entry in akte_client.pages(client.journal.ListEntries, journal_pb2.ListEntriesRequest(
            parent=parent, start_seq=seen, page_size=500), "entries"):
        print(entry.seq, entry.kind, entry.object)  # e.g. 3 version.add <document uuid>
        seen = entry.seq + 1  # store it: the next run starts here
    # Or follow the journal as it grows (a server stream; reconnect from `seen`):
    stream = client.journal.WatchEntries(journal_pb2.WatchEntriesRequest(
        parent=parent, start_seq=seen - 1))
    first = next(m for m in stream if m.entries)
    stream.cancel()
    # [/docs]
    check(first.entries[0].seq == seen - 1, first)

    # --- Proof, without trusting akte ----------------------------------------------------
    # [docs:proof]
    client.journal.CreateCheckpoint(journal_pb2.CreateCheckpointRequest(parent=parent))
    seq = version.created.journal_seq  # the entry that recorded the version
    entry = client.journal.GetEntry(journal_pb2.GetEntryRequest(name="%s/entries/%d" % (parent, seq)))
    proof = client.journal.GetInclusionProof(journal_pb2.GetInclusionProofRequest(
        parent=parent, seq=seq))  # against the latest signed checkpoint
    entry, checkpoint = proofs.verify_document(
        whole, entry.encoded_entry, list(proof.hashes), proof.checkpoint.signed_note,
        proofs.VerifierKey.parse(published_key), published_origin)
    print("entry %d is in the journal of %d entries signed by %s" % (
        entry.seq, checkpoint.size, published_key.split("+")[0]))
    # [/docs]

    # A forged checkpoint or other bytes fail the same check.
    forged = bytearray(proof.checkpoint.signed_note)
    forged[len(published_origin) + 1] ^= 1
    for bad_content, note in ((whole + b"x", proof.checkpoint.signed_note), (whole, bytes(forged))):
        try:
            proofs.verify_document(bad_content, entry_bytes(client, parent, seq), list(proof.hashes),
                                   note, proofs.VerifierKey.parse(published_key), published_origin)
        except proofs.ProofError:
            continue
        raise AssertionError("a proof of other bytes or a forged checkpoint was accepted")

    contract_checks(args, client, admin, parent, doc, akte)
    print("example: PASS")


def chunks(client, session, data, offset, breaks_after=None):
    """The messages of a WriteUploadSession call from `offset`. With `breaks_after`, the
    stream fails (as a broken connection would) once the server holds that many bytes."""
    yield documents_pb2.WriteUploadSessionRequest(
        header=documents_pb2.WriteUploadSessionHeader(name=session, offset=offset))
    stop = len(data) if breaks_after is None else breaks_after
    for i in range(offset, stop, akte_client.CHUNK):
        yield documents_pb2.WriteUploadSessionRequest(chunk=data[i:min(i + akte_client.CHUNK, stop)])
    if breaks_after is not None:
        for _ in range(600):
            held = client.documents.GetUploadSession(
                documents_pb2.GetUploadSessionRequest(name=session)).persisted_size
            if held >= breaks_after:
                break
            time.sleep(0.05)
        raise ConnectionError("the network went away")


def entry_bytes(client, parent, seq):
    return client.journal.GetEntry(
        journal_pb2.GetEntryRequest(name="%s/entries/%d" % (parent, seq))).encoded_entry


def contract_checks(args, client, admin, parent, doc, akte):
    """What tools/python_client_test.sh checked before, and more of the error model."""
    data = os.urandom(2_500_000)

    def add_version(declared_sha):
        yield documents_pb2.AddVersionRequest(header=documents_pb2.AddVersionHeader(
            parent=doc.name, upload=documents_pb2.RenditionUpload(
                file_name="scan.pdf", media_type="application/pdf",
                sha256=declared_sha, size=len(data))))
        for i in range(0, len(data), akte_client.CHUNK):
            yield documents_pb2.AddVersionRequest(chunk=data[i:i + akte_client.CHUNK])

    v = client.documents.AddVersion(add_version(hashlib.sha256(data).digest()))
    _, back = akte_client.download(client, v.renditions[0].name)
    check(back == data, "AddVersion round trip")
    # [docs:errors]
    try:
        client.documents.AddVersion(add_version(b"\0" * 32))  # a wrong SHA-256
    except grpc.RpcError as e:
        if akte_client.reason(e) == "DIGEST_MISMATCH":  # branch on reasons, not messages
            print("refused, nothing stored:", e.details())
    # [/docs]
        check(e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.code())
        check(akte_client.error_info(e).metadata["actual_sha256"] == hashlib.sha256(data).hexdigest(), e)
    else:
        raise AssertionError("a wrong SHA-256 was accepted")

    nobody = akte_client.Client(grpc.insecure_channel(args.target))
    try:
        nobody.files.GetFile(files_pb2.GetFileRequest(name=akte.name))
        raise AssertionError("a call without a token was accepted")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.UNAUTHENTICATED and akte_client.reason(e) == "UNAUTHENTICATED", e)

    # A page token with one character changed is refused.
    first = client.holds.ListHolds(retention_pb2.ListHoldsRequest(parent=parent, page_size=1))
    client.holds.PlaceHold(retention_pb2.PlaceHoldRequest(object=akte.name, reason="Klage"))
    client.holds.PlaceHold(retention_pb2.PlaceHoldRequest(object=akte.name, reason="Auskunft"))
    page = client.holds.ListHolds(retention_pb2.ListHoldsRequest(
        parent=parent, filter="active = true", page_size=1))
    check(len(first.holds) == 0 and len(page.holds) == 1 and page.next_page_token, page)
    token = page.next_page_token
    tampered = token[:5] + ("A" if token[5] != "A" else "B") + token[6:]
    try:
        client.holds.ListHolds(retention_pb2.ListHoldsRequest(
            parent=parent, filter="active = true", page_size=1, page_token=tampered))
        raise AssertionError("a tampered page token was accepted")
    except grpc.RpcError as e:
        check(akte_client.reason(e) == "INVALID_PAGE_TOKEN", akte_client.error_info(e))

    # gRPC reflection v1alpha, the version Python's grpcio-reflection speaks.
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )
    services = ProtoReflectionDescriptorDatabase(grpc.insecure_channel(args.target)).get_services()
    for want in ("akte.v1.DocumentService", "google.longrunning.Operations"):
        check(want in services, "reflection v1alpha lists %s: %s" % (want, services))
    admin.close()


if __name__ == "__main__":
    try:
        main()
    except (AssertionError, proofs.ProofError, akte_client.OperationFailed) as e:
        print("example: FAIL:", e, file=sys.stderr)
        sys.exit(1)
