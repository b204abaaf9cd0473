//! Resumable uploads (upload sessions) and ranged downloads: a broken upload resumes from
//! what the server holds, also after a restart; the SHA-256 is checked over all bytes at
//! import; a download can ask for any range and is still checked over the whole.

mod support;

use akte_server::client::{sha256, unpack, wait_operation, Clients};
use akte_server::error::error_info;
use akte_server::pb::akte::v1 as pb;
use bytes::Bytes;
use support::{bytes_of, expect_err, expect_status, fixture, rendition, Env, R};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

const MIB: usize = 1 << 20;

fn header(name: &str, offset: u64) -> pb::WriteUploadSessionRequest {
    pb::WriteUploadSessionRequest {
        message: Some(pb::write_upload_session_request::Message::Header(
            pb::WriteUploadSessionHeader {
                name: name.into(),
                offset,
            },
        )),
    }
}

fn chunk(b: &[u8]) -> pb::WriteUploadSessionRequest {
    pb::WriteUploadSessionRequest {
        message: Some(pb::write_upload_session_request::Message::Chunk(
            Bytes::copy_from_slice(b),
        )),
    }
}

/// Writes `data` from `offset` in one call, in chunks of 1 MiB.
async fn write(
    c: &mut Clients,
    name: &str,
    offset: u64,
    data: &[u8],
) -> Result<pb::UploadSession, Status> {
    let msgs: Vec<_> = std::iter::once(header(name, offset))
        .chain(data.chunks(MIB).map(chunk))
        .collect();
    c.documents
        .write_upload_session(tokio_stream::iter(msgs))
        .await
        .map(|r| r.into_inner())
}

async fn session(c: &mut Clients, document: &str, declared: pb::RenditionUpload) -> R<String> {
    Ok(c.documents
        .create_upload_session(pb::CreateUploadSessionRequest {
            parent: document.into(),
            upload_session: Some(pb::UploadSession {
                rendition: Some(declared),
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .name)
}

async fn persisted(c: &mut Clients, name: &str) -> Result<u64, Status> {
    Ok(c.documents
        .get_upload_session(pb::GetUploadSessionRequest { name: name.into() })
        .await?
        .into_inner()
        .persisted_size)
}

/// Waits (bounded) until the server holds `n` bytes of the session.
async fn until_persisted(c: &mut Clients, name: &str, n: u64) -> R<()> {
    for _ in 0..3000 {
        if persisted(c, name).await? >= n {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    Err(format!("the server never held {n} bytes of {name}").into())
}

async fn import(c: &mut Clients, name: &str) -> Result<pb::Version, Status> {
    let op = c
        .documents
        .import_upload_session(pb::ImportUploadSessionRequest {
            name: name.into(),
            comment: "aus einer Upload-Sitzung".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let done = wait_operation(&mut c.operations, op).await?;
    unpack(&done)
}

async fn download(
    c: &mut Clients,
    name: &str,
    offset: u64,
    length: u64,
) -> Result<Vec<u8>, Status> {
    let mut s = c
        .documents
        .download_rendition(pb::DownloadRenditionRequest {
            name: name.into(),
            offset,
            length,
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    let mut first = true;
    while let Some(m) = s.message().await? {
        match m.message {
            Some(pb::download_rendition_response::Message::Rendition(_)) => assert!(first),
            Some(pb::download_rendition_response::Message::Chunk(b)) => {
                assert!(!first && b.len() <= MIB);
                out.extend_from_slice(&b);
            }
            None => panic!("empty message"),
        }
        first = false;
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_upload_resumes_and_is_checked_over_all_its_bytes() -> R<()> {
    let env = Env::new().await;
    let mut f = fixture(&env, "bauamt").await;
    let data = bytes_of(3 * MIB + 4321, 1);
    let name = session(&mut f.clerk, &f.doc.name, rendition(&data, "plan.pdf")).await?;
    assert!(name.starts_with(&format!("{}/uploadSessions/", f.doc.name)));
    assert_eq!(persisted(&mut f.clerk, &name).await?, 0);

    // Two chunks arrive, then the connection breaks (the call is dropped mid-stream).
    let (tx, rx) = mpsc::channel(4);
    tx.send(header(&name, 0)).await?;
    tx.send(chunk(&data[..MIB])).await?;
    tx.send(chunk(&data[MIB..2 * MIB])).await?;
    let mut writer = f.clerk.clone();
    let call = tokio::spawn(async move {
        writer
            .documents
            .write_upload_session(ReceiverStream::new(rx))
            .await
    });
    until_persisted(&mut f.clerk, &name, 2 * MIB as u64).await?;
    call.abort();
    let _ = call.await;
    drop(tx);
    assert_eq!(persisted(&mut f.clerk, &name).await?, 2 * MIB as u64);

    // Resuming at the wrong offset is refused, with the right one in the details.
    let s = write(&mut f.clerk, &name, 0, &data)
        .await
        .expect_err("offset 0");
    expect_status(&s, Code::Aborted, "UPLOAD_OFFSET_MISMATCH");
    assert_eq!(
        error_info(&s).unwrap().metadata["persisted_size"],
        (2 * MIB).to_string()
    );
    // Import before all bytes are there is refused at once.
    expect_err(
        f.clerk
            .documents
            .import_upload_session(pb::ImportUploadSessionRequest {
                name: name.clone(),
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
        "UPLOAD_INCOMPLETE",
    );
    // The rest, from where the server's bytes end.
    let done = write(&mut f.clerk, &name, 2 * MIB as u64, &data[2 * MIB..]).await?;
    assert_eq!(done.persisted_size, data.len() as u64);
    // More than declared is refused and changes nothing.
    let s = write(&mut f.clerk, &name, data.len() as u64, b"x")
        .await
        .expect_err("beyond the size");
    expect_status(&s, Code::InvalidArgument, "SIZE_MISMATCH");
    assert_eq!(persisted(&mut f.clerk, &name).await?, data.len() as u64);

    let v = import(&mut f.clerk, &name).await?;
    assert_eq!(v.number, 1);
    assert_eq!(v.comment, "aus einer Upload-Sitzung");
    assert_eq!(v.renditions[0].sha256, sha256(&data));
    assert_eq!(download(&mut f.clerk, &v.name, 0, 0).await?, data);
    // The session is gone with its bytes.
    expect_err(
        f.clerk
            .documents
            .get_upload_session(pb::GetUploadSessionRequest { name: name.clone() })
            .await,
        Code::NotFound,
        "NOT_FOUND",
    );

    // Bytes that do not hash to the declared SHA-256: the import fails, nothing is
    // recorded, the session stays until deleted.
    let other = bytes_of(200_000, 2);
    let mut declared = rendition(&other, "falsch.pdf");
    declared.sha256 = sha256(b"something else");
    let wrong = session(&mut f.clerk, &f.doc.name, declared).await?;
    write(&mut f.clerk, &wrong, 0, &other).await?;
    let s = import(&mut f.clerk, &wrong).await.expect_err("digest");
    expect_status(&s, Code::InvalidArgument, "DIGEST_MISMATCH");
    assert_eq!(
        error_info(&s).unwrap().metadata["actual_sha256"],
        hex::encode(sha256(&other))
    );
    let doc = f
        .clerk
        .documents
        .get_document(pb::GetDocumentRequest {
            name: f.doc.name.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(doc.version_count, 1, "nothing recorded");
    assert_eq!(persisted(&mut f.clerk, &wrong).await?, other.len() as u64);
    f.clerk
        .documents
        .delete_upload_session(pb::DeleteUploadSessionRequest {
            name: wrong.clone(),
        })
        .await?;
    expect_err(
        f.clerk
            .documents
            .get_upload_session(pb::GetUploadSessionRequest { name: wrong })
            .await,
        Code::NotFound,
        "NOT_FOUND",
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_restart_and_a_second_writer_takes_over() -> R<()> {
    let env = Env::new().await;
    let mut f = fixture(&env, "bauamt").await;
    let data = bytes_of(2 * MIB + 10, 3);
    let name = session(&mut f.clerk, &f.doc.name, rendition(&data, "a.pdf")).await?;

    // Writer A sends a chunk and keeps its stream open.
    let (tx, rx) = mpsc::channel(4);
    tx.send(header(&name, 0)).await?;
    tx.send(chunk(&data[..MIB])).await?;
    let mut a = f.clerk.clone();
    let call = tokio::spawn(async move {
        a.documents
            .write_upload_session(ReceiverStream::new(rx))
            .await
    });
    until_persisted(&mut f.clerk, &name, MIB as u64).await?;
    // Writer B takes over from what the server holds; A's next chunk is refused.
    let b = write(&mut f.clerk, &name, MIB as u64, &data[MIB..2 * MIB]).await?;
    assert_eq!(b.persisted_size, 2 * MIB as u64);
    tx.send(chunk(&data[2 * MIB..])).await?;
    drop(tx);
    let s = call.await?.expect_err("taken over");
    expect_status(&s, Code::Aborted, "UPLOAD_OFFSET_MISMATCH");
    assert_eq!(persisted(&mut f.clerk, &name).await?, 2 * MIB as u64);

    // A restart keeps the session and its bytes.
    let env = env.restart().await;
    let mut clerk = env.client(&clerk_token(&env, "bauamt").await).await;
    assert_eq!(persisted(&mut clerk, &name).await?, 2 * MIB as u64);
    write(&mut clerk, &name, 2 * MIB as u64, &data[2 * MIB..]).await?;
    let v = import(&mut clerk, &name).await?;
    assert_eq!(download(&mut clerk, &v.name, 0, 0).await?, data);

    // Walls: a reader may not upload, another tenant sees no such session.
    let mut reader = env.as_role("bauamt", "reader:x", &[pb::Role::Reader]).await;
    expect_err(
        reader
            .documents
            .create_upload_session(pb::CreateUploadSessionRequest {
                parent: f.doc.name.clone(),
                upload_session: Some(pb::UploadSession {
                    rendition: Some(rendition(&data, "a.pdf")),
                    ..Default::default()
                }),
            })
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    let again = session(&mut clerk, &f.doc.name, rendition(&data, "b.pdf")).await?;
    env.tenant("andere").await;
    let mut other = env.as_role("andere", "admin:x", &[pb::Role::Admin]).await;
    expect_err(
        other
            .documents
            .get_upload_session(pb::GetUploadSessionRequest {
                name: again.clone(),
            })
            .await,
        Code::NotFound,
        "NOT_FOUND",
    );
    // Declared facts are checked at creation.
    let mut bad = rendition(&data, "a.pdf");
    bad.sha256 = Bytes::from_static(b"short");
    expect_err(
        clerk
            .documents
            .create_upload_session(pb::CreateUploadSessionRequest {
                parent: f.doc.name.clone(),
                upload_session: Some(pb::UploadSession {
                    rendition: Some(bad),
                    ..Default::default()
                }),
            })
            .await,
        Code::InvalidArgument,
        "INVALID_FIELD",
    );
    Ok(())
}

/// A clerk token of `tenant` (tokens survive restarts).
async fn clerk_token(env: &Env, tenant: &str) -> String {
    env.admin()
        .await
        .tenants
        .create_token(pb::CreateTokenRequest {
            parent: format!("tenants/{tenant}"),
            principal: "clerk:neu".into(),
            roles: vec![pb::Role::Clerk as i32],
            ..Default::default()
        })
        .await
        .expect("token")
        .into_inner()
        .secret
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_serve_any_range() -> R<()> {
    let env = Env::new().await;
    let mut f = fixture(&env, "bauamt").await;
    // One packed object below 1 MiB and one stored as a file of its own.
    for size in [700_000, 3 * MIB + 77] {
        let data = bytes_of(size, size as u64);
        let v = support::add_version(&mut f.clerk, &f.doc.name, &data).await?;
        let r = &v.renditions[0].name;
        let n = data.len() as u64;
        for (offset, length) in [
            (0, 0),
            (0, 1),
            (1000, 5000),
            (n / 2 - 3, 7),
            (n - 10, 0),
            (n - 10, 100),
            (n, 0),
        ] {
            let end = if length == 0 {
                n
            } else {
                (offset + length).min(n)
            };
            let got = download(&mut f.clerk, r, offset, length).await?;
            assert!(
                got == data[offset as usize..end as usize],
                "range {offset}+{length} of {n}"
            );
        }
        let s = expect_err(
            f.clerk
                .documents
                .download_rendition(pb::DownloadRenditionRequest {
                    name: r.clone(),
                    offset: n + 1,
                    length: 0,
                })
                .await,
            Code::OutOfRange,
            "INVALID_RANGE",
        );
        assert_eq!(error_info(&s).unwrap().metadata["size"], n.to_string());
    }
    Ok(())
}
