//! One call per document (issue 20) over gRPC: CreateDocument with its first version
//! inline, and CreateDocuments for many documents over one stream, with their failure
//! paths (too large, digest mismatch, refused documents amid good ones, a broken stream,
//! another tenant, a role without the right to file).

mod support;

use akte_server::client::{create_documents_messages, sha256, with_first_version, Clients};
use akte_server::pb::akte::v1 as pb;
use bytes::Bytes;
use support::{bytes_of, expect_err, fixture, rendition, Env, R};
use tonic::Code;

fn request(parent: &str, subject: &str) -> pb::CreateDocumentRequest {
    pb::CreateDocumentRequest {
        parent: parent.into(),
        document: Some(pb::Document {
            subject: subject.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn download(c: &mut Clients, version: &str) -> R<(pb::Rendition, Vec<u8>)> {
    let mut s = c
        .documents
        .download_rendition(pb::DownloadRenditionRequest {
            name: version.into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let (mut meta, mut out) = (None, Vec::new());
    while let Some(m) = s.message().await? {
        match m.message {
            Some(pb::download_rendition_response::Message::Rendition(r)) => meta = Some(r),
            Some(pb::download_rendition_response::Message::Chunk(b)) => out.extend_from_slice(&b),
            None => {}
        }
    }
    Ok((meta.expect("rendition first"), out))
}

async fn children(c: &mut Clients, parent: &str) -> R<Vec<pb::Document>> {
    Ok(c.documents
        .list_documents(pb::ListDocumentsRequest {
            parent: parent.into(),
            page_size: 1000,
            ..Default::default()
        })
        .await?
        .into_inner()
        .documents)
}

/// The document's first version holds `data`, recorded in the document's own entry.
async fn assert_first_version(c: &mut Clients, tenant: &str, name: &str, data: &[u8]) -> R<()> {
    let doc = c
        .documents
        .get_document(pb::GetDocumentRequest { name: name.into() })
        .await?
        .into_inner();
    assert_eq!(doc.version_count, 1, "{name}");
    let v = c
        .documents
        .get_version(pb::GetVersionRequest {
            name: format!("{name}/versions/1"),
        })
        .await?
        .into_inner();
    let seq = v.created.as_ref().unwrap().journal_seq;
    assert_eq!(seq, doc.created.as_ref().unwrap().journal_seq);
    let (meta, bytes) = download(c, &v.name).await?;
    assert_eq!(bytes, data);
    assert_eq!(meta.sha256, sha256(data));
    let entry = c
        .journal
        .get_entry(pb::GetEntryRequest {
            name: format!("{tenant}/entries/{seq}"),
        })
        .await?
        .into_inner();
    assert_eq!(entry.kind, "document.create");
    assert!(entry
        .payloads
        .iter()
        .any(|p| p.kind == "content" && p.sha256 == sha256(data)));
    Ok(())
}

#[tokio::test]
async fn create_document_with_its_first_version_inline() -> R<()> {
    let env = Env::new().await;
    let mut f = fixture(&env, "bauamt").await;
    let data = b"%PDF-1.7 Bauantrag".to_vec();
    let req = with_first_version(
        request(&f.file.name, "Bauantrag"),
        Bytes::from(data.clone()),
        "antrag.pdf",
        "application/pdf",
    );
    let doc = f
        .clerk
        .documents
        .create_document(pb::CreateDocumentRequest {
            request_id: "req-1".into(),
            ..req.clone()
        })
        .await?
        .into_inner();
    assert_eq!(doc.version_count, 1);
    assert_first_version(&mut f.clerk, &f.tenant, &doc.name, &data).await?;
    // A retry with the same key is the same document.
    let again = f
        .clerk
        .documents
        .create_document(pb::CreateDocumentRequest {
            request_id: "req-1".into(),
            ..req.clone()
        })
        .await?
        .into_inner();
    assert_eq!(again.name, doc.name);
    // An empty first version is a version of zero bytes.
    let empty = f
        .clerk
        .documents
        .create_document(with_first_version(
            request(&f.file.name, "Leer"),
            Bytes::new(),
            "leer.txt",
            "text/plain",
        ))
        .await?
        .into_inner();
    assert_first_version(&mut f.clerk, &f.tenant, &empty.name, b"").await?;
    let count = children(&mut f.clerk, &f.file.name).await?.len();

    // Refused, and nothing recorded.
    let too_large = with_first_version(
        request(&f.file.name, "Groß"),
        Bytes::from(vec![7u8; (4 << 20) + 1]),
        "gross.bin",
        "application/octet-stream",
    );
    let s = expect_err(
        f.clerk.documents.create_document(too_large).await,
        Code::InvalidArgument,
        "INVALID_FIELD",
    );
    assert!(s.message().contains("4194304"), "{s:?}");
    let mut wrong = req.clone();
    wrong.content_sha256 = sha256(b"other bytes");
    expect_err(
        f.clerk.documents.create_document(wrong).await,
        Code::InvalidArgument,
        "DIGEST_MISMATCH",
    );
    let mut stray = request(&f.file.name, "x");
    stray.content = Bytes::from_static(b"bytes without a name");
    let s = expect_err(
        f.clerk.documents.create_document(stray).await,
        Code::InvalidArgument,
        "INVALID_FIELD",
    );
    assert!(s.message().contains("content_file_name"), "{s:?}");
    let mut bad_type = req.clone();
    bad_type.content_media_type = "pdf".into();
    let s = expect_err(
        f.clerk.documents.create_document(bad_type).await,
        Code::InvalidArgument,
        "INVALID_FIELD",
    );
    assert!(s.message().contains("content_media_type"), "{s:?}");
    let mut no_subject = req.clone();
    no_subject.document = None;
    expect_err(
        f.clerk.documents.create_document(no_subject).await,
        Code::InvalidArgument,
        "INVALID_FIELD",
    );
    // A reader may not file.
    let mut reader = env
        .as_role("bauamt", "reader:meier", &[pb::Role::Reader])
        .await;
    expect_err(
        reader.documents.create_document(req.clone()).await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    assert_eq!(children(&mut f.clerk, &f.file.name).await?.len(), count);
    Ok(())
}

#[tokio::test]
async fn create_documents_records_each_and_reports_the_refused_by_index() -> R<()> {
    let env = Env::new().await;
    let mut f = fixture(&env, "bauamt").await;
    let other = fixture(&env, "sozialamt").await;
    let small = b"kleiner Brief".to_vec();
    let chunked = bytes_of(300_000, 1);
    let large = bytes_of((1 << 20) + 4321, 2);
    let refused_bytes = bytes_of(100_000, 3);
    let mut msgs = Vec::new();
    // 0: inline.
    msgs.extend(create_documents_messages(
        with_first_version(
            request(&f.file.name, "Inline"),
            Bytes::from(small.clone()),
            "a.txt",
            "text/plain",
        ),
        None,
        Bytes::new(),
        0,
    ));
    // 1: small, in chunks of 64 KiB, with a comment.
    let mut one = request(&f.file.name, "Gestückelt");
    one.version_comment = "Eingang per Post".into();
    msgs.extend(create_documents_messages(
        one,
        Some(rendition(&chunked, "scan.pdf")),
        Bytes::from(chunked.clone()),
        64 << 10,
    ));
    // 2: refused (no subject); its bytes are read past.
    msgs.extend(create_documents_messages(
        request(&f.file.name, ""),
        Some(rendition(&refused_bytes, "x.pdf")),
        Bytes::from(refused_bytes.clone()),
        1 << 20,
    ));
    // 3: large, streamed into the content store.
    msgs.extend(create_documents_messages(
        request(&f.file.name, "Groß"),
        Some(rendition(&large, "plan.pdf")),
        Bytes::from(large.clone()),
        1 << 20,
    ));
    // 4: digest mismatch.
    let mut lying = rendition(&refused_bytes, "y.pdf");
    lying.sha256 = sha256(b"something else");
    msgs.extend(create_documents_messages(
        request(&f.file.name, "Falsch"),
        Some(lying),
        Bytes::from(refused_bytes.clone()),
        1 << 20,
    ));
    // 5: another tenant's file: not found.
    msgs.extend(create_documents_messages(
        request(&other.file.name, "Fremd"),
        Some(rendition(&small, "z.txt")),
        Bytes::from(small.clone()),
        1 << 20,
    ));
    // 6: an attachment without a version, under the document of the fixture.
    msgs.extend(create_documents_messages(
        request(&f.doc.name, "Anlage"),
        None,
        Bytes::new(),
        0,
    ));
    let before = children(&mut f.clerk, &f.file.name).await?.len();
    let r = f
        .clerk
        .documents
        .create_documents(tokio_stream::iter(msgs))
        .await?
        .into_inner();
    assert_eq!(r.results.len(), 7, "{r:?}");
    assert_eq!((r.created, r.failed), (4, 3));
    use pb::create_documents_result::Result as Out;
    let name = |i: usize| match &r.results[i].result {
        Some(Out::Name(n)) => n.clone(),
        other => panic!("document {i}: {other:?}"),
    };
    let error = |i: usize| match &r.results[i].result {
        Some(Out::Error(e)) => e.clone(),
        other => panic!("document {i} should be refused: {other:?}"),
    };
    for (i, res) in r.results.iter().enumerate() {
        assert_eq!(res.index as usize, i);
    }
    assert_first_version(&mut f.clerk, &f.tenant, &name(0), &small).await?;
    assert_first_version(&mut f.clerk, &f.tenant, &name(1), &chunked).await?;
    assert_first_version(&mut f.clerk, &f.tenant, &name(3), &large).await?;
    let v = f
        .clerk
        .documents
        .get_version(pb::GetVersionRequest {
            name: format!("{}/versions/1", name(1)),
        })
        .await?
        .into_inner();
    assert_eq!(v.comment, "Eingang per Post");
    assert_eq!(v.renditions[0].file_name, "scan.pdf");
    assert_eq!(error(2).code, Code::InvalidArgument as i32);
    assert!(error(2).message.contains("subject"), "{:?}", error(2));
    assert_eq!(error(4).code, Code::InvalidArgument as i32);
    assert_eq!(error(5).code, Code::NotFound as i32);
    let attachment = f
        .clerk
        .documents
        .get_document(pb::GetDocumentRequest { name: name(6) })
        .await?
        .into_inner();
    assert_eq!(attachment.version_count, 0);
    assert_eq!(attachment.parent, f.doc.name);
    assert_eq!(
        children(&mut f.clerk, &f.file.name).await?.len(),
        before + 3
    );
    Ok(())
}

#[tokio::test]
async fn a_broken_stream_keeps_what_was_recorded_and_says_where_it_broke() -> R<()> {
    let env = Env::new().await;
    let mut f = fixture(&env, "bauamt").await;
    let data = bytes_of(2000, 5);
    let mut msgs = create_documents_messages(
        request(&f.file.name, "Erster"),
        Some(rendition(&data, "a.pdf")),
        Bytes::from(data.clone()),
        1 << 20,
    );
    // The second declares 10 bytes and sends 2000.
    let mut short = rendition(&data, "b.pdf");
    short.size = 10;
    msgs.extend(create_documents_messages(
        request(&f.file.name, "Zweiter"),
        Some(short),
        Bytes::from(data.clone()),
        1 << 20,
    ));
    // Never read.
    msgs.extend(create_documents_messages(
        request(&f.file.name, "Dritter"),
        None,
        Bytes::new(),
        0,
    ));
    let r = f
        .clerk
        .documents
        .create_documents(tokio_stream::iter(msgs))
        .await?
        .into_inner();
    assert_eq!(r.results.len(), 2, "{r:?}");
    assert_eq!((r.created, r.failed), (1, 1));
    let Some(pb::create_documents_result::Result::Name(first)) = &r.results[0].result else {
        panic!("{r:?}");
    };
    assert_first_version(&mut f.clerk, &f.tenant, first, &data).await?;
    let Some(pb::create_documents_result::Result::Error(e)) = &r.results[1].result else {
        panic!("{r:?}");
    };
    assert_eq!(r.results[1].index, 1);
    assert_eq!(e.code, Code::InvalidArgument as i32);
    // A chunk first: the call is refused as a whole.
    let r = f
        .clerk
        .documents
        .create_documents(tokio_stream::iter(vec![pb::CreateDocumentsRequest {
            message: Some(pb::create_documents_request::Message::Chunk(
                Bytes::from_static(b"x"),
            )),
        }]))
        .await;
    expect_err(r, Code::InvalidArgument, "UPLOAD_PROTOCOL");
    // A reader is refused outright: no right to file anywhere in the stream's tenant.
    let mut reader = env
        .as_role("bauamt", "reader:meier", &[pb::Role::Reader])
        .await;
    let r = reader
        .documents
        .create_documents(tokio_stream::iter(create_documents_messages(
            request(&f.file.name, "Leser"),
            None,
            Bytes::new(),
            0,
        )))
        .await?
        .into_inner();
    let Some(pb::create_documents_result::Result::Error(e)) = &r.results[0].result else {
        panic!("{r:?}");
    };
    assert_eq!(e.code, Code::PermissionDenied as i32);
    Ok(())
}

/// A stream of more inline bytes than the server's upload budget holds goes through: each
/// document's share of the budget ends when its worker has stored it, not when the stream
/// next looks at it (a stream waiting for budget that its own finished documents held ran
/// into OVERLOADED before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_larger_than_the_upload_budget_goes_through() -> R<()> {
    let dir = tempfile::tempdir()?;
    let mut cfg = support::config(dir.path());
    // The smallest budget (one streamed upload's worth, 6 MiB) and a short wait for it.
    cfg.upload_memory_bytes = 0;
    cfg.upload_idle_timeout = std::time::Duration::from_secs(3);
    let server = akte_server::server::start(cfg).await?;
    let boot = server.bootstrap_token.clone().ok_or("bootstrap token")?;
    let admin = std::fs::read_to_string(boot)?.trim().to_owned();
    let env = Env { dir, server, admin };
    let mut f = fixture(&env, "bauamt").await;
    // 64 documents of 768 KiB: 48 MiB through a 6 MiB budget, 32 at a time in flight.
    let docs: Vec<Vec<u8>> = (0..64).map(|i| bytes_of(768 << 10, 100 + i)).collect();
    let msgs: Vec<_> = docs
        .iter()
        .enumerate()
        .flat_map(|(i, d)| {
            create_documents_messages(
                with_first_version(
                    request(&f.file.name, &format!("Scan {i}")),
                    Bytes::from(d.clone()),
                    "scan.pdf",
                    "application/pdf",
                ),
                None,
                Bytes::new(),
                0,
            )
        })
        .collect();
    let r = f
        .clerk
        .documents
        .create_documents(tokio_stream::iter(msgs))
        .await?
        .into_inner();
    assert_eq!((r.created, r.failed), (64, 0), "{:?}", r.results.first());
    let Some(pb::create_documents_result::Result::Name(last)) = &r.results[63].result else {
        panic!("{:?}", r.results[63]);
    };
    assert_first_version(&mut f.clerk, &f.tenant, last, &docs[63]).await?;
    Ok(())
}
