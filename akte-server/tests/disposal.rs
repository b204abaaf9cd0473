//! End-to-end tests of retention, holds and the xdomea disposal flow through akted: the
//! four-stage flow (offer, 0504, 0502, transfer, 0507, 0506, destroy), the two-stage
//! transfer, holds blocking offer and destruction, roles, tenant walls and malformed
//! archive messages. The archive's side is simulated with akte-core's xdomea writers.

use std::io::Cursor;

use akte_core::xdomea::{self, AppraisalDecision, ImportResult, MessageHeader, MessageType, Party};
use akte_server::client::{
    add_version_messages, sha256, unpack, wait_operation, ClientTls, Clients,
};
use akte_server::config::ServerConfig;
use akte_server::error::{error_info, reason};
use akte_server::pb::akte::v1 as pb;
use akte_server::pb::google::r#type::Date;
use akte_server::server::{start, Running};
use bytes::Bytes;
use tonic::{Code, Status};
use uuid::Uuid;

type R<T> = Result<T, Box<dyn std::error::Error>>;

struct Env {
    dir: tempfile::TempDir,
    server: Running,
    admin: String,
}

impl Env {
    async fn client(&self, token: &str) -> Clients {
        Clients::connect(
            &format!("http://{}", self.server.addr),
            Some(token),
            &ClientTls::default(),
        )
        .await
        .expect("connect")
    }

    async fn token(&self, tenant: &str, principal: &str, role: pb::Role) -> Clients {
        let mut admin = self.client(&self.admin).await;
        let secret = admin
            .tenants
            .create_token(pb::CreateTokenRequest {
                parent: format!("tenants/{tenant}"),
                principal: principal.into(),
                roles: vec![role as i32],
                description: String::new(),
                expire_time: None,
            })
            .await
            .expect("create token")
            .into_inner()
            .secret;
        self.client(&secret).await
    }

    async fn tenant(&self, tenant: &str) {
        let mut admin = self.client(&self.admin).await;
        admin
            .tenants
            .create_tenant(pb::CreateTenantRequest {
                tenant_id: tenant.into(),
            })
            .await
            .expect("create tenant");
    }

    fn temp_files(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("tmp"))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

async fn env() -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = ServerConfig::new(dir.path());
    cfg.listen = "127.0.0.1:0".parse().expect("addr");
    cfg.metrics_listen = None;
    let server = start(cfg).await.expect("start");
    let boot = server.bootstrap_token.clone().expect("bootstrap token");
    let admin = std::fs::read_to_string(boot)
        .expect("token")
        .trim()
        .to_owned();
    Env { dir, server, admin }
}

#[track_caller]
fn expect_err<T: std::fmt::Debug>(
    r: Result<tonic::Response<T>, Status>,
    code: Code,
    why: &str,
) -> Status {
    match r {
        Ok(v) => panic!("expected {code:?}/{why}, got {v:?}"),
        Err(s) => {
            assert_eq!(s.code(), code, "status {s:?}");
            assert_eq!(reason(&s), why, "status {s:?}");
            assert!(error_info(&s).is_some(), "ErrorInfo in {s:?}");
            s
        }
    }
}

fn party(code: &str, name: &str) -> pb::Party {
    pb::Party {
        agency_code: code.into(),
        agency_name: name.into(),
        institution: String::new(),
    }
}

fn parties() -> pb::Parties {
    pb::Parties {
        agency: Some(party("STADT-ERFURT", "Stadtverwaltung Erfurt")),
        archive: Some(party("STAAT-ARCHIV", "Landesarchiv Thüringen")),
    }
}

fn archive_header(process: Uuid) -> MessageHeader {
    MessageHeader {
        process_id: process,
        created: chrono::Utc::now().fixed_offset(),
        sender: Party::agency("STAAT-ARCHIV", "Landesarchiv Thüringen"),
        receiver: Party::agency("STADT-ERFURT", "Stadtverwaltung Erfurt"),
        system: None,
        note: None,
        receipt_requested: true,
        archive_id_requested: false,
    }
}

fn id_of(name: &str) -> Uuid {
    name.rsplit('/')
        .next()
        .and_then(|s| Uuid::parse_str(s).ok())
        .expect("a name ending in a UUID")
}

/// Collects a streamed ZIP: the info of the first message and the bytes.
async fn collect(
    r: Result<tonic::Response<tonic::Streaming<pb::MessageChunk>>, Status>,
) -> Result<(pb::MessageInfo, Vec<u8>), Status> {
    let (info, bytes) = collect_range(r).await?;
    assert_eq!(info.size, bytes.len() as u64);
    assert_eq!(info.sha256, sha256(&bytes));
    Ok((info, bytes))
}

/// The description and the bytes of a streamed ZIP, whole or a range.
async fn collect_range(
    r: Result<tonic::Response<tonic::Streaming<pb::MessageChunk>>, Status>,
) -> Result<(pb::MessageInfo, Vec<u8>), Status> {
    let mut s = r?.into_inner();
    let mut info = None;
    let mut bytes = Vec::new();
    while let Some(m) = s.message().await? {
        match m.message {
            Some(pb::message_chunk::Message::Info(i)) => {
                assert!(info.is_none() && bytes.is_empty(), "info comes first, once");
                info = Some(i);
            }
            Some(pb::message_chunk::Message::Chunk(c)) => {
                assert!(c.len() <= 1 << 20, "chunks of at most 1 MiB");
                bytes.extend_from_slice(&c);
            }
            None => panic!("empty stream message"),
        }
    }
    Ok((info.expect("info message"), bytes))
}

/// Waits for a transfer operation and downloads its package, in ranges of at most 1 MiB
/// that are put together and checked against the package's size and SHA-256.
async fn transferred(
    c: &mut Clients,
    r: Result<tonic::Response<akte_server::pb::google::longrunning::Operation>, Status>,
) -> Result<(pb::MessageInfo, Vec<u8>), Status> {
    let done = wait_operation(&mut c.operations, r?.into_inner()).await?;
    let package: pb::TransferPackage = unpack(&done)?;
    let mut whole = Vec::new();
    let info = loop {
        let (i, part) = collect_range(
            c.disposal
                .download_transfer_package(pb::DownloadTransferPackageRequest {
                    name: package.name.clone(),
                    offset: whole.len() as u64,
                    length: 1 << 20,
                })
                .await,
        )
        .await?;
        whole.extend_from_slice(&part);
        if part.is_empty() || whole.len() as u64 == package.size {
            break i;
        }
    };
    assert_eq!(info.size, whole.len() as u64);
    assert_eq!(
        info.sha256,
        sha256(&whole),
        "the package hashes as described"
    );
    Ok((info, whole))
}

/// Waits for a destruction operation and returns its record.
async fn destroyed(
    c: &mut Clients,
    r: Result<tonic::Response<akte_server::pb::google::longrunning::Operation>, Status>,
) -> Result<pb::DestructionRecord, Status> {
    let done = wait_operation(&mut c.operations, r?.into_inner()).await?;
    unpack(&done)
}

/// A plan unit with `retention` years and `disposal`, and closed files under it (closed
/// on 1 January 2000, so their retention has ended).
async fn closed_files(
    registrar: &mut Clients,
    tenant: &str,
    code: &str,
    disposal: pb::DisposalDecision,
    n: usize,
) -> Vec<pb::File> {
    let unit = registrar
        .plan
        .create_plan_unit(pb::CreatePlanUnitRequest {
            parent: format!("tenants/{tenant}"),
            plan_unit: Some(pb::PlanUnit {
                code: code.into(),
                title: "Baugenehmigungen".into(),
                retention: Some(pb::Retention {
                    period: Some(pb::retention::Period::Years(5)),
                }),
                disposal: disposal as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("plan unit")
        .into_inner();
    let mut out = Vec::new();
    for i in 0..n {
        let f = registrar
            .files
            .create_file(pb::CreateFileRequest {
                parent: unit.name.clone(),
                file: Some(pb::File {
                    subject: format!("Vorgang {i}"),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .expect("file")
            .into_inner();
        out.push(f);
    }
    out
}

async fn close(registrar: &mut Clients, file: &pb::File) {
    registrar
        .files
        .close_file(pb::CloseFileRequest {
            name: file.name.clone(),
            etag: String::new(),
            close_date: Some(Date {
                year: 2000,
                month: 1,
                day: 1,
            }),
        })
        .await
        .expect("close");
}

async fn receive(
    c: &mut Clients,
    tenant: &str,
    message: Vec<u8>,
) -> Result<pb::ReceiveMessageResponse, Status> {
    c.disposal
        .receive_message(pb::ReceiveMessageRequest {
            parent: format!("tenants/{tenant}"),
            message: Bytes::from(message),
            parties: Some(parties()),
        })
        .await
        .map(|r| r.into_inner())
}

async fn state(c: &mut Clients, name: &str) -> pb::DisposalStatus {
    c.retention
        .get_disposal_status(pb::GetDisposalStatusRequest { name: name.into() })
        .await
        .expect("disposal status")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_stage_disposal_with_holds_roles_and_tenant_walls() -> R<()> {
    let env = env().await;
    let t = "amt";
    env.tenant(t).await;
    let mut reg = env.token(t, "registrar:weber", pb::Role::Registrar).await;
    let mut arch = env.token(t, "archivist:roth", pb::Role::Archivist).await;
    let mut reader = env.token(t, "reader:klein", pb::Role::Reader).await;
    let mut clerk = env.token(t, "clerk:schmidt", pb::Role::Clerk).await;
    let files = closed_files(&mut reg, t, "632.1", pb::DisposalDecision::Appraise, 3).await;
    let (keep, toss, held) = (&files[0], &files[1], &files[2]);

    // One document with a version in the file that will be transferred.
    let doc = clerk
        .documents
        .create_document(pb::CreateDocumentRequest {
            parent: keep.name.clone(),
            document: Some(pb::Document {
                subject: "Bauantrag".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    let data = b"%PDF-1.7 Bauantrag".to_vec();
    let header = pb::AddVersionHeader {
        parent: doc.name.clone(),
        comment: String::new(),
        upload: Some(pb::RenditionUpload {
            file_name: "antrag.pdf".into(),
            media_type: "application/pdf".into(),
            sha256: sha256(&data),
            size: data.len() as u64,
        }),
        staged_renditions: vec![],
        request_id: String::new(),
    };
    clerk
        .documents
        .add_version(tokio_stream::iter(add_version_messages(
            header,
            Bytes::from(data),
            1 << 20,
        )))
        .await?;
    for f in &files {
        close(&mut reg, f).await;
    }

    // Due list and status; a reader may read them.
    let due = reader
        .retention
        .list_due_files(pb::ListDueFilesRequest {
            parent: format!("tenants/{t}"),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(due.files.len(), 3, "{due:?}");
    assert!(due
        .files
        .iter()
        .all(|s| s.state == pb::DisposalState::Due as i32));
    assert!(due.next_page_token.is_empty());
    // The same three, two per page.
    let page = |token: String| pb::ListDueFilesRequest {
        parent: format!("tenants/{t}"),
        page_size: 2,
        page_token: token,
        ..Default::default()
    };
    let first = reader
        .retention
        .list_due_files(page(String::new()))
        .await?
        .into_inner();
    assert_eq!(first.files.len(), 2);
    assert!(!first.next_page_token.is_empty());
    let second = reader
        .retention
        .list_due_files(page(first.next_page_token))
        .await?
        .into_inner();
    assert_eq!(second.files.len(), 1);
    assert!(second.next_page_token.is_empty());
    let mut paged: Vec<String> = first
        .files
        .iter()
        .chain(&second.files)
        .map(|s| s.file.clone())
        .collect();
    let mut whole: Vec<String> = due.files.iter().map(|s| s.file.clone()).collect();
    paged.sort();
    whole.sort();
    assert_eq!(paged, whole);
    expect_err(
        reader.retention.list_due_files(page("bogus".into())).await,
        Code::InvalidArgument,
        "INVALID_PAGE_TOKEN",
    );

    // Holds: archivist only.
    let hold_req = pb::PlaceHoldRequest {
        object: held.name.clone(),
        reason: "Klage anhängig".into(),
        reference: "VG Weimar 1 K 12/26".into(),
    };
    expect_err(
        reg.holds.place_hold(hold_req.clone()).await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    let hold = arch.holds.place_hold(hold_req).await?.into_inner();
    assert!(hold.active);
    assert_eq!(hold.object, held.name);
    let s = state(&mut reader, &held.name).await;
    assert_eq!(s.state, pb::DisposalState::Held as i32);
    assert_eq!(s.holds.len(), 1);
    let listed = reader
        .holds
        .list_holds(pb::ListHoldsRequest {
            parent: format!("tenants/{t}"),
            filter: "active = true".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(listed.holds, vec![hold.clone()]);

    // Offer: registrar only; a held file blocks the whole offer.
    let offer = |files: Vec<String>| pb::OfferRequest {
        parent: format!("tenants/{t}"),
        files,
        parties: Some(parties()),
    };
    let all: Vec<String> = files.iter().map(|f| f.name.clone()).collect();
    for c in [&mut arch, &mut reader] {
        expect_err(
            c.disposal.offer(offer(all.clone())).await,
            Code::PermissionDenied,
            "PERMISSION_DENIED",
        );
    }
    let refused = collect(reg.disposal.offer(offer(all.clone())).await)
        .await
        .expect_err("a held file cannot be offered");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert_eq!(env.temp_files(), 0, "no temporary ZIP is left");
    let (info, zip) = collect(
        reg.disposal
            .offer(offer(vec![keep.name.clone(), toss.name.clone()]))
            .await,
    )
    .await?;
    let process = id_of(&info.process);
    assert_eq!(info.file_name, xdomea::offer_zip_name(process));
    let xml = xdomea::read_message_zip(Cursor::new(&zip), MessageType::Offer, 16 << 20)?;
    assert_eq!(xdomea::identify(&xml)?.0, MessageType::Offer);
    assert_eq!(env.temp_files(), 0);
    let p = reader
        .disposal
        .get_process(pb::GetProcessRequest {
            name: info.process.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(p.stage, pb::ProcessStage::Offered as i32);
    assert_eq!(
        state(&mut reader, &keep.name).await.state,
        pb::DisposalState::Offered as i32
    );

    // Archive messages: archivist only; malformed ones are refused and record nothing.
    let r0504 = xdomea::write_0504(&archive_header(process))?;
    let zip0504 = xdomea::write_message_zip(
        Cursor::new(Vec::new()),
        &archive_header(process),
        MessageType::OfferReceipt,
        &r0504,
    )?
    .into_inner();
    expect_err(
        reg.disposal
            .receive_message(pb::ReceiveMessageRequest {
                parent: format!("tenants/{t}"),
                message: Bytes::from(zip0504.clone()),
                parties: Some(parties()),
            })
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    let journal_before = p.steps.len();
    for bad in [
        b"<not xml".to_vec(),
        b"PK\x03\x04garbage".to_vec(),
        xdomea::write_0502(
            &archive_header(process),
            &[xdomea::Appraisal {
                id: held
                    .name
                    .rsplit('/')
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("id"),
                decision: AppraisalDecision::Archive,
            }],
        )?,
    ] {
        let s = receive(&mut arch, t, bad).await.expect_err("malformed");
        assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    }
    let p = arch
        .disposal
        .get_process(pb::GetProcessRequest {
            name: info.process.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(p.stage, pb::ProcessStage::Offered as i32);
    assert_eq!(p.steps.len(), journal_before, "nothing recorded");

    // 0504 (as ZIP), then 0502 (as XML): keep A, toss V; the answer carries the 0505.
    let r = receive(&mut arch, t, zip0504).await?;
    assert_eq!(r.message_type, "0504");
    assert_eq!(
        r.process.as_ref().map(|p| p.stage),
        Some(pb::ProcessStage::OfferReceived as i32)
    );
    let appraisal = xdomea::write_0502(
        &archive_header(process),
        &[
            xdomea::Appraisal {
                id: id_of(&keep.name),
                decision: AppraisalDecision::Archive,
            },
            xdomea::Appraisal {
                id: id_of(&toss.name),
                decision: AppraisalDecision::Destroy,
            },
        ],
    )?;
    let r = receive(&mut arch, t, appraisal).await?;
    assert_eq!(r.message_type, "0502");
    assert_eq!(
        xdomea::identify(&r.receipt)?.0,
        MessageType::AppraisalReceipt
    );
    assert_eq!(
        r.process.as_ref().map(|p| p.stage),
        Some(pb::ProcessStage::Appraised as i32)
    );

    // Another tenant sees no such process, whichever way it asks.
    env.tenant("andere").await;
    let mut other = env.token("andere", "admin:x", pb::Role::Admin).await;
    expect_err(
        other
            .disposal
            .get_process(pb::GetProcessRequest {
                name: info.process.clone(),
            })
            .await,
        Code::NotFound,
        "NOT_FOUND",
    );
    expect_err(
        other
            .disposal
            .get_process(pb::GetProcessRequest {
                name: format!("tenants/andere/disposalProcesses/{process}"),
            })
            .await,
        Code::NotFound,
        "NOT_FOUND",
    );
    let s = receive(
        &mut other,
        "andere",
        xdomea::write_0507(&archive_header(process))?,
    )
    .await
    .expect_err("another tenant's process");
    assert_eq!(s.code(), Code::NotFound, "{s:?}");
    let transfer = |resend| pb::TransferRequest {
        name: info.process.clone(),
        parties: Some(parties()),
        resend,
    };
    let call = other.disposal.transfer(transfer(false)).await;
    let s = transferred(&mut other, call)
        .await
        .expect_err("another tenant's process");
    assert_eq!(s.code(), Code::NotFound, "{s:?}");

    // Transfer: the 0503 with the file appraised A and its primary file.
    let call = reg.disposal.transfer(transfer(false)).await;
    let (tinfo, tzip) = transferred(&mut reg, call).await?;
    assert_eq!(tinfo.process, info.process);
    assert_eq!(tinfo.file_name, xdomea::transfer_zip_name(process));
    let xml = xdomea::read_message_zip(Cursor::new(&tzip), MessageType::Transfer, 16 << 20)?;
    assert!(String::from_utf8_lossy(&xml).contains(&id_of(&keep.name).to_string()));
    assert_eq!(env.temp_files(), 0, "the temporary 0503 is deleted");

    // The download was lost: transferring again needs `resend`, which writes the package
    // again with the same primary files.
    let call = reg.disposal.transfer(transfer(false)).await;
    let s = transferred(&mut reg, call)
        .await
        .expect_err("a second transfer without resend");
    assert!(s.message().contains("TransferSent"), "{s:?}");
    let call = reg.disposal.transfer(transfer(true)).await;
    let (_, again) = transferred(&mut reg, call).await?;
    let primaries = |zip: &[u8]| -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        let mut a = zip::ZipArchive::new(Cursor::new(zip))?;
        let mut out = Vec::new();
        for i in 0..a.len() {
            let mut f = a.by_index(i)?;
            let name = f.name().to_owned();
            if name.ends_with(".xml") || name.ends_with("_akte-evidence.json") {
                continue;
            }
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut bytes)?;
            out.push((name, bytes));
        }
        Ok(out)
    };
    assert_eq!(primaries(&again)?, primaries(&tzip)?);
    assert!(!primaries(&tzip)?.is_empty());
    // The package goes with its operation.
    let ops = reg
        .operations
        .list_operations(
            akte_server::pb::google::longrunning::ListOperationsRequest {
                name: format!("tenants/{t}"),
                filter: "verb = transfer".into(),
                ..Default::default()
            },
        )
        .await?
        .into_inner()
        .operations;
    assert_eq!(ops.len(), 3, "two transfers and the refused second one");
    let done: pb::TransferPackage = match &ops[0].result {
        Some(akte_server::pb::google::longrunning::operation::Result::Response(a)) => unpack(a)?,
        other => panic!("the first transfer succeeded: {other:?}"),
    };
    reg.operations
        .delete_operation(
            akte_server::pb::google::longrunning::DeleteOperationRequest {
                name: ops[0].name.clone(),
            },
        )
        .await?;
    expect_err(
        reg.disposal
            .download_transfer_package(pb::DownloadTransferPackageRequest {
                name: done.name,
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "NOT_FOUND",
    );

    // 0507 and 0506.
    let r = receive(&mut arch, t, xdomea::write_0507(&archive_header(process))?).await?;
    assert_eq!(r.message_type, "0507");
    let conf = xdomea::write_0506(
        &archive_header(process),
        &[ImportResult {
            id: id_of(&keep.name),
            success: true,
            archive_id: Some("LATh 5-12/2026".into()),
            error_messages: vec![],
            error_codes: vec![],
        }],
    )?;
    let r = receive(&mut arch, t, conf).await?;
    assert_eq!(r.message_type, "0506");
    assert_eq!(
        r.process.as_ref().map(|p| p.stage),
        Some(pb::ProcessStage::Confirmed as i32)
    );
    let s = state(&mut reader, &keep.name).await;
    assert_eq!(s.state, pb::DisposalState::Transferred as i32);
    assert_eq!(s.archive_id, "LATh 5-12/2026");

    // Destroy: registrar or admin; the held file blocks the whole run.
    let destroy = |files: Vec<String>| pb::DestroyRequest {
        parent: format!("tenants/{t}"),
        files,
        legal_basis: "§ 13 ThürArchivG".into(),
        authorised_by: "Amtsleitung".into(),
    };
    for c in [&mut arch, &mut reader, &mut clerk] {
        expect_err(
            c.disposal.destroy(destroy(all.clone())).await,
            Code::PermissionDenied,
            "PERMISSION_DENIED",
        );
    }
    let call = reg
        .disposal
        .destroy(destroy(vec![
            keep.name.clone(),
            toss.name.clone(),
            held.name.clone(),
        ]))
        .await;
    let s = destroyed(&mut reg, call).await.expect_err("held");
    assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
    assert_eq!(
        state(&mut reader, &keep.name).await.state,
        pb::DisposalState::Transferred as i32,
        "nothing destroyed"
    );
    let released = arch
        .holds
        .release_hold(pb::ReleaseHoldRequest {
            name: hold.name.clone(),
            reason: "Verfahren abgeschlossen".into(),
        })
        .await?
        .into_inner();
    assert!(!released.active);
    assert_eq!(released.released_by, "archivist:roth");
    assert_eq!(
        state(&mut reader, &held.name).await.state,
        pb::DisposalState::Due as i32
    );
    let call = reg
        .disposal
        .destroy(destroy(vec![keep.name.clone(), toss.name.clone()]))
        .await;
    let rec = destroyed(&mut reg, call).await?;
    assert_eq!(rec.files.len(), 2);
    assert_eq!(rec.actor, "registrar:weber");
    assert!(
        rec.signed_note.contains("\n\u{2014} "),
        "{}",
        rec.signed_note
    );
    let got = reader
        .disposal
        .get_destruction_record(pb::GetDestructionRecordRequest {
            name: rec.name.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(got, rec);
    let list = reader
        .disposal
        .list_destruction_records(pb::ListDestructionRecordsRequest {
            parent: format!("tenants/{t}"),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(list.destruction_records, vec![rec.clone()]);
    let s = expect_err(
        reader
            .retention
            .get_disposal_status(pb::GetDisposalStatusRequest {
                name: toss.name.clone(),
            })
            .await,
        Code::NotFound,
        "OBJECT_DESTROYED",
    );
    assert!(s.message().contains("destroyed"), "{s:?}");
    expect_err(
        other
            .disposal
            .get_destruction_record(pb::GetDestructionRecordRequest {
                name: rec.name.clone(),
            })
            .await,
        Code::NotFound,
        "NOT_FOUND",
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_settings_and_two_stage_transfer() -> R<()> {
    let env = env().await;
    let t = "amt";
    env.tenant(t).await;
    let mut reg = env.token(t, "registrar:weber", pb::Role::Registrar).await;
    let mut reader = env.token(t, "reader:klein", pb::Role::Reader).await;
    let mut arch = env.token(t, "archivist:roth", pb::Role::Archivist).await;
    let files = closed_files(&mut reg, t, "100", pb::DisposalDecision::Appraise, 2).await;
    for f in &files {
        close(&mut reg, f).await;
    }
    let (a, b) = (&files[0], &files[1]);

    // Search: any role; closed files of the tenant by reference prefix and subject.
    let found = reader
        .search
        .search(pb::SearchRequest {
            parent: format!("tenants/{t}"),
            r#type: pb::ObjectType::File as i32,
            reference_prefix: "100-".into(),
            subject_words: "vorgang".into(),
            state: pb::State::Closed as i32,
            ..Default::default()
        })
        .await?
        .into_inner();
    let names: Vec<String> = found
        .results
        .iter()
        .filter_map(|r| match &r.object {
            Some(pb::search_result::Object::File(f)) => Some(f.name.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(names.len(), 2, "{found:?}");
    assert!(names.contains(&a.name) && names.contains(&b.name));
    expect_err(
        reader
            .search
            .search(pb::SearchRequest {
                parent: format!("tenants/{t}"),
                page_size: -1,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "INVALID_FIELD",
    );

    // The rule: registrar only.
    let rule = pb::SetRetentionRuleRequest {
        name: format!("tenants/{t}"),
        rule: pb::RetentionRule::ClosingDate as i32,
    };
    expect_err(
        reader.retention.set_retention_rule(rule.clone()).await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    let r = reg.retention.set_retention_rule(rule).await?.into_inner();
    assert_eq!(r.rule, pb::RetentionRule::ClosingDate as i32);
    let s = state(&mut reader, &a.name).await;
    assert_eq!(
        s.retention_end,
        Some(Date {
            year: 2005,
            month: 1,
            day: 1
        })
    );
    expect_err(
        reg.retention
            .set_retention_rule(pb::SetRetentionRuleRequest {
                name: format!("tenants/{t}"),
                rule: 0,
            })
            .await,
        Code::InvalidArgument,
        "INVALID_FIELD",
    );

    // Retention of one file: decision A for a direct transfer, another one unlimited.
    let set = |file: &str, retention: Option<pb::Retention>, d: pb::DisposalDecision| {
        pb::SetRetentionRequest {
            name: file.into(),
            retention,
            disposal: d as i32,
            reason: "Bewertungskatalog 2026".into(),
        }
    };
    expect_err(
        arch.retention
            .set_retention(set(&a.name, None, pb::DisposalDecision::Archive))
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    let s = reg
        .retention
        .set_retention(set(&a.name, None, pb::DisposalDecision::Archive))
        .await?
        .into_inner();
    assert_eq!(s.decision, pb::DisposalDecision::Archive as i32);
    assert_eq!(s.state, pb::DisposalState::Due as i32);
    assert!(s.source.starts_with("set on the file"), "{s:?}");
    let s = reg
        .retention
        .set_retention(set(
            &b.name,
            Some(pb::Retention {
                period: Some(pb::retention::Period::Unlimited(true)),
            }),
            pb::DisposalDecision::Archive,
        ))
        .await?
        .into_inner();
    assert_eq!(s.state, pb::DisposalState::Unlimited as i32);
    let due = reader
        .retention
        .list_due_files(pb::ListDueFilesRequest {
            parent: format!("tenants/{t}"),
            decision: pb::DisposalDecision::Archive as i32,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(due.files.len(), 1);
    assert_eq!(due.files[0].file, a.name);

    // Two-stage transfer.
    let call = reg
        .disposal
        .transfer_two_stage(pb::TransferTwoStageRequest {
            parent: format!("tenants/{t}"),
            files: vec![a.name.clone()],
            parties: Some(parties()),
        })
        .await;
    let (info, zip) = transferred(&mut reg, call).await?;
    xdomea::read_message_zip(Cursor::new(&zip), MessageType::Transfer, 16 << 20)?;
    let p = reader
        .disposal
        .get_process(pb::GetProcessRequest {
            name: info.process.clone(),
        })
        .await?
        .into_inner();
    assert!(p.two_stage);
    assert_eq!(p.stage, pb::ProcessStage::TransferSent as i32);
    assert_eq!(p.files, vec![a.name.clone()]);
    assert_eq!(env.temp_files(), 0);

    // Retention can no longer change once in a process; invalid names are refused.
    let s = reg
        .retention
        .set_retention(set(&a.name, None, pb::DisposalDecision::Destroy))
        .await
        .expect_err("in disposal");
    assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
    expect_err(
        reader
            .disposal
            .get_process(pb::GetProcessRequest {
                name: format!("tenants/{t}/disposalProcesses/nope"),
            })
            .await,
        Code::InvalidArgument,
        "INVALID_NAME",
    );
    expect_err(
        reader
            .holds
            .get_hold(pb::GetHoldRequest {
                name: format!("tenants/{t}/holds/{}", Uuid::new_v4()),
            })
            .await,
        Code::NotFound,
        "NOT_FOUND",
    );
    Ok(())
}
