//! End-to-end tests of retention, holds and the xdomea disposal flow through akted: the
//! four-stage flow (offer, 0504, 0502, transfer, 0507, 0506, destroy), the two-stage
//! transfer, holds blocking offer and destruction, roles, tenant walls and malformed
//! archive messages; appraisal and import object by object with the archive played by
//! `akte archive-sim` (the binary), the way x-man writes its answers: a file archived with
//! a case and a sub-file destroyed, a file destroyed whole, a failed import, a 0506 without
//! Archivkennung, and a transfer the simulated intake refuses. Every message is validated
//! with xmllint against the xdomea 3.1.0 schema.

mod support;

use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
                org_units: Vec::new(),
            })
            .await
            .expect("create token")
            .into_inner()
            .secret;
        self.client(&secret).await
    }

    /// A tenant with its disposal settings.
    async fn tenant(&self, tenant: &str) {
        self.bare_tenant(tenant).await;
        let mut admin = self.client(&self.admin).await;
        admin
            .disposal
            .update_disposal_settings(pb::UpdateDisposalSettingsRequest {
                settings: Some(settings(tenant)),
            })
            .await
            .expect("disposal settings");
    }

    /// A tenant without disposal settings.
    async fn bare_tenant(&self, tenant: &str) {
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
    cfg.database = support::database(dir.path());
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

const SCHEMA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/xdomea/schemas/3.1.0/xdomea.xsd"
);

/// Validates XML with xmllint against the xdomea schema; fails if xmllint is missing.
fn assert_valid(xml: &[u8], what: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("m.xml");
    std::fs::write(&p, xml).expect("write");
    let out = Command::new("xmllint")
        .args(["--noout", "--schema", SCHEMA])
        .arg(&p)
        .output()
        .expect("xmllint is needed (apt-get install libxml2-utils)");
    assert!(
        out.status.success(),
        "{what} does not validate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The XML of a message ZIP, checked against its xdomea name and the schema.
fn xml_of(zip: &[u8], process: Uuid, message: MessageType) -> Vec<u8> {
    let mut a = zip::ZipArchive::new(Cursor::new(zip)).expect("a ZIP");
    let mut f = a
        .by_name(&xdomea::message_xml_name(process, message))
        .expect("the message under its xdomea name");
    let mut xml = Vec::new();
    f.read_to_end(&mut xml).expect("read");
    assert_valid(&xml, message.code());
    xml
}

/// The tenant's disposal settings as an admin sets them.
fn settings(tenant: &str) -> pb::DisposalSettings {
    let code = |code: &str, name: &str| pb::ListCode {
        code: code.into(),
        name: name.into(),
        ..Default::default()
    };
    pb::DisposalSettings {
        name: format!("tenants/{tenant}/disposalSettings"),
        agency: Some(pb::PartyIdentity {
            key: Some(code("16051000", "Stadtverwaltung Erfurt")),
            prefix: Some(code("ags:", "Amtlicher Gemeindeschlüssel")),
            institution: "Stadtverwaltung Erfurt".into(),
            institution_short: "SV Erfurt".into(),
        }),
        archive: Some(pb::PartyIdentity {
            institution: "Landesarchiv Thüringen".into(),
            institution_short: "LATh".into(),
            ..Default::default()
        }),
    }
}

fn archive_header(process: Uuid) -> MessageHeader {
    MessageHeader {
        process_id: process,
        created: chrono::Utc::now().fixed_offset(),
        sender: Party {
            institution: Some("Landesarchiv Thüringen".into()),
            ..Party::default()
        },
        receiver: Party::agency("16051000", "Stadtverwaltung Erfurt"),
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
    let info = info.expect("info message");
    assert_eq!(info.size, bytes.len() as u64);
    Ok((info, bytes))
}

/// A transfer as the API makes it: an operation, then its package downloaded in ranges of
/// at most 1 MiB, put together and checked against the package's size and SHA-256.
async fn transferred(
    c: &mut Clients,
    r: Result<tonic::Response<akte_server::pb::google::longrunning::Operation>, Status>,
) -> Result<(pb::MessageInfo, Vec<u8>), Status> {
    let done = wait_operation(&mut c.operations, r?.into_inner()).await?;
    let package: pb::TransferPackage = unpack(&done)?;
    let mut whole = Vec::new();
    let info = loop {
        let (i, part) = collect_parts(
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

/// Transfer of a process, waited for and downloaded.
async fn transfer(
    c: &mut Clients,
    r: pb::TransferRequest,
) -> Result<(pb::MessageInfo, Vec<u8>), Status> {
    let call = c.disposal.transfer(r).await;
    transferred(c, call).await
}

/// A two-stage transfer, waited for and downloaded.
async fn transfer_two_stage(
    c: &mut Clients,
    r: pb::TransferTwoStageRequest,
) -> Result<(pb::MessageInfo, Vec<u8>), Status> {
    let call = c.disposal.transfer_two_stage(r).await;
    transferred(c, call).await
}

/// A destruction, waited for.
async fn destroy_op(
    c: &mut Clients,
    r: pb::DestroyRequest,
) -> Result<pb::DestructionRecord, Status> {
    let call = c.disposal.destroy(r).await;
    let done = wait_operation(&mut c.operations, call?.into_inner()).await?;
    unpack(&done)
}

/// The description and the bytes of a streamed part of a ZIP.
async fn collect_parts(
    r: Result<tonic::Response<tonic::Streaming<pb::MessageChunk>>, Status>,
) -> Result<(pb::MessageInfo, Vec<u8>), Status> {
    let mut s = r?.into_inner();
    let mut info = None;
    let mut bytes = Vec::new();
    while let Some(m) = s.message().await? {
        match m.message {
            Some(pb::message_chunk::Message::Info(i)) => info = Some(i),
            Some(pb::message_chunk::Message::Chunk(c)) => bytes.extend_from_slice(&c),
            None => panic!("empty stream message"),
        }
    }
    Ok((info.expect("info message"), bytes))
}

/// Saves a downloaded ZIP under its name in `dir`.
fn save_zip(
    dir: &Path,
    r: Result<(pb::MessageInfo, Vec<u8>), Status>,
) -> R<(Uuid, PathBuf, Vec<u8>)> {
    let (info, zip) = r?;
    let p = dir.join(&info.file_name);
    std::fs::write(&p, &zip)?;
    Ok((id_of(&info.process), p, zip))
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
            parties: None,
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
    document(&mut clerk, &keep.name, "Bauantrag").await?;
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
        parties: None,
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
                parties: None,
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
    let s = transfer(
        &mut other,
        pb::TransferRequest {
            name: info.process.clone(),
            parties: None,
            resend: false,
        },
    )
    .await
    .expect_err("another tenant's process");
    assert_eq!(s.code(), Code::NotFound, "{s:?}");

    // Transfer: the 0503 with the file appraised A and its primary file.
    let (tinfo, tzip) = transfer(
        &mut reg,
        pb::TransferRequest {
            name: info.process.clone(),
            parties: None,
            resend: false,
        },
    )
    .await?;
    assert_eq!(tinfo.process, info.process);
    assert_eq!(tinfo.file_name, xdomea::transfer_zip_name(process));
    let xml = xdomea::read_message_zip(Cursor::new(&tzip), MessageType::Transfer, 16 << 20)?;
    assert!(String::from_utf8_lossy(&xml).contains(&id_of(&keep.name).to_string()));
    assert_eq!(env.temp_files(), 0, "the temporary 0503 is deleted");

    // The download was lost: transferring again needs `resend`, which writes the package
    // again with the same primary files.
    let request = |resend| pb::TransferRequest {
        name: info.process.clone(),
        parties: None,
        resend,
    };
    let s = transfer(&mut reg, request(false))
        .await
        .expect_err("a second transfer without resend");
    assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
    assert_eq!(reason(&s), "INVALID_STATE", "{s:?}");
    assert!(s.message().contains("--resend"), "{s:?}");
    assert!(
        !s.message().contains("TransferSent"),
        "no Rust names: {s:?}"
    );
    let (_, again) = transfer(&mut reg, request(true)).await?;
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
    let s = destroy_op(
        &mut reg,
        destroy(vec![
            keep.name.clone(),
            toss.name.clone(),
            held.name.clone(),
        ]),
    )
    .await
    .expect_err("held");
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
    let rec = destroy_op(
        &mut reg,
        destroy(vec![keep.name.clone(), toss.name.clone()]),
    )
    .await?;
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
    let (info, zip) = transfer_two_stage(
        &mut reg,
        pb::TransferTwoStageRequest {
            parent: format!("tenants/{t}"),
            files: vec![a.name.clone()],
            parties: None,
        },
    )
    .await?;
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

// ------------------------------------------------------------------------------------
// Object by object, with the archive played by `akte archive-sim`.
// ------------------------------------------------------------------------------------

/// Runs the `akte` binary (offline commands need no server).
fn akte(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_akte"))
        .args(args)
        .env_remove("AKTE_TOKEN")
        .env_remove("AKTE_TENANT")
        .env_remove("AKTE_SERVER")
        .env_remove("AKTE_LOG")
        .output()
        .expect("running akte");
    println!(
        "$ akte {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// A due file made over gRPC: a loose document, case 1 with a document, case 2 with a
/// document, a sub-file with a case and a document.
struct Rich {
    file: String,
    c1: String,
    c1_doc: String,
    c2: String,
    c2_doc: String,
    sub: String,
    sub_case: String,
}

async fn document(clerk: &mut Clients, parent: &str, subject: &str) -> R<String> {
    let doc = clerk
        .documents
        .create_document(pb::CreateDocumentRequest {
            parent: parent.into(),
            document: Some(pb::Document {
                subject: subject.into(),
                letter_date: Some(Date {
                    year: 2012,
                    month: 3,
                    day: 1,
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    let data = format!("%PDF-1.7 {subject} {}", doc.name).into_bytes();
    let header = pb::AddVersionHeader {
        parent: doc.name.clone(),
        comment: String::new(),
        upload: Some(pb::RenditionUpload {
            file_name: format!("{subject}.pdf"),
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
    Ok(doc.name)
}

async fn case(clerk: &mut Clients, parent: &str, subject: &str) -> R<String> {
    Ok(clerk
        .cases
        .create_case(pb::CreateCaseRequest {
            parent: parent.into(),
            case: Some(pb::Case {
                subject: subject.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner()
        .name)
}

async fn rich(reg: &mut Clients, clerk: &mut Clients, file: &pb::File) -> R<Rich> {
    document(clerk, &file.name, "Deckblatt").await?;
    let c1 = case(clerk, &file.name, "Baugenehmigung").await?;
    let c1_doc = document(clerk, &c1, "Bauantrag").await?;
    let c2 = case(clerk, &file.name, "Nachbarbeschwerde").await?;
    let c2_doc = document(clerk, &c2, "Beschwerde").await?;
    let sub = reg
        .files
        .create_file(pb::CreateFileRequest {
            parent: file.name.clone(),
            file: Some(pb::File {
                subject: "Statik".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner()
        .name;
    let sub_case = case(clerk, &sub, "Prüfstatik").await?;
    document(clerk, &sub_case, "Gutachten").await?;
    close(reg, file).await;
    Ok(Rich {
        file: file.name.clone(),
        c1,
        c1_doc,
        c2,
        c2_doc,
        sub,
        sub_case,
    })
}

/// Saves a streamed ZIP under its xdomea name in `dir`.
async fn save(
    dir: &Path,
    r: Result<tonic::Response<tonic::Streaming<pb::MessageChunk>>, Status>,
) -> R<(Uuid, PathBuf, Vec<u8>)> {
    let (info, zip) = collect(r).await?;
    let p = dir.join(&info.file_name);
    std::fs::write(&p, &zip)?;
    Ok((id_of(&info.process), p, zip))
}

fn answer(dir: &Path, process: Uuid, message: MessageType) -> PathBuf {
    dir.join(xdomea::message_zip_name(process, message))
}

async fn receive_file(c: &mut Clients, tenant: &str, p: &Path) -> R<pb::ReceiveMessageResponse> {
    Ok(receive(c, tenant, std::fs::read(p)?).await?)
}

async fn verifier_key(env: &Env, tenant: &str) -> String {
    env.client(&env.admin)
        .await
        .tenants
        .get_tenant(pb::GetTenantRequest {
            name: format!("tenants/{tenant}"),
        })
        .await
        .expect("tenant")
        .into_inner()
        .verifier_key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_archived_with_a_case_and_a_sub_file_destroyed_with_the_archive_simulator() -> R<()>
{
    let env = env().await;
    let t = "amt";
    env.tenant(t).await;
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let mut reg = env.token(t, "registrar:weber", pb::Role::Registrar).await;
    let mut arch = env.token(t, "archivist:roth", pb::Role::Archivist).await;
    let mut clerk = env.token(t, "clerk:schmidt", pb::Role::Clerk).await;
    let mut reader = env.token(t, "reader:klein", pb::Role::Reader).await;

    // The settings: any role reads them, only an admin changes them.
    let got = reader
        .disposal
        .get_disposal_settings(pb::GetDisposalSettingsRequest {
            name: format!("tenants/{t}/disposalSettings"),
        })
        .await?
        .into_inner();
    assert_eq!(got, settings(t));
    expect_err(
        reg.disposal
            .update_disposal_settings(pb::UpdateDisposalSettingsRequest {
                settings: Some(settings(t)),
            })
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );

    // A file decided V is destroyed, not offered.
    let v = closed_files(&mut reg, t, "100", pb::DisposalDecision::Destroy, 1).await;
    close(&mut reg, &v[0]).await;
    let offer = |files: Vec<String>| pb::OfferRequest {
        parent: format!("tenants/{t}"),
        files,
        parties: None,
    };
    let s = collect(reg.disposal.offer(offer(vec![v[0].name.clone()])).await)
        .await
        .expect_err("a V file");
    assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
    assert!(s.message().contains("decision V"), "{s:?}");

    let files = closed_files(&mut reg, t, "632.1", pb::DisposalDecision::Appraise, 2).await;
    let a = rich(&mut reg, &mut clerk, &files[0]).await?;
    let b = rich(&mut reg, &mut clerk, &files[1]).await?;
    let (process, offer_zip, zip) = save(
        d,
        reg.disposal
            .offer(offer(vec![a.file.clone(), b.file.clone()]))
            .await,
    )
    .await?;
    let text = String::from_utf8(xml_of(&zip, process, MessageType::Offer))?;
    assert!(text.contains("<code>ags:</code>") && text.contains("<code>16051000</code>"));

    // The archive: everything A but a's second case and sub-file, and b as a whole.
    let set = |name: &str| format!("{name}=V");
    let out = akte(&[
        "archive-sim",
        "appraise",
        path(&offer_zip),
        "--set",
        &set(&a.c2),
        "--set",
        &set(&a.sub),
        "--set",
        &set(&b.file),
        "--out-dir",
        path(d),
    ]);
    assert!(out.status.success());
    let r = receive_file(&mut arch, t, &answer(d, process, MessageType::OfferReceipt)).await?;
    assert_eq!(r.message_type, "0504");
    let appraisal = answer(d, process, MessageType::Appraisal);
    xml_of(&std::fs::read(&appraisal)?, process, MessageType::Appraisal);
    let r = receive_file(&mut arch, t, &appraisal).await?;
    assert_eq!(
        r.receipt_file_name,
        format!("{process}_Aussonderung.BewertungEmpfangBestaetigen.0505.zip")
    );
    let receipt = xml_of(&r.receipt_zip, process, MessageType::AppraisalReceipt);
    assert_eq!(receipt, r.receipt.to_vec());
    let p = r.process.expect("process");
    assert!(p.object_decisions.contains(&pb::ObjectDecision {
        object: a.c2.clone(),
        decision: pb::DisposalDecision::Destroy as i32
    }));
    assert!(p.decisions.contains(&pb::FileDecision {
        file: b.file.clone(),
        decision: pb::DisposalDecision::Destroy as i32
    }));
    let s = state(&mut reader, &a.file).await;
    assert_eq!(s.parts.len(), 4, "{s:?}");
    let s = state(&mut reader, &a.c2_doc).await;
    assert_eq!(s.decision, pb::DisposalDecision::Destroy as i32);
    assert!(
        s.explanation.contains("once the archive has confirmed"),
        "{s:?}"
    );

    // The 0503: a's A parts, nothing V, nothing of b.
    let (_, transfer_zip, zip) = save_zip(
        d,
        transfer(
            &mut reg,
            pb::TransferRequest {
                name: p.name.clone(),
                parties: None,
                resend: false,
            },
        )
        .await,
    )?;
    let sent = xdomea::read_0503(&xml_of(&zip, process, MessageType::Transfer))?;
    let ids: Vec<Uuid> = sent.walk().iter().map(|(o, _)| o.id).collect();
    assert!(ids.contains(&id_of(&a.c1_doc)));
    for gone in [&a.c2, &a.c2_doc, &a.sub, &b.file] {
        assert!(!ids.contains(&id_of(gone)), "{gone} is not sent");
    }

    // The archive takes it: checked against offer, appraisal and evidence.
    let key = verifier_key(&env, t).await;
    let out = akte(&[
        "archive-sim",
        "import",
        path(&transfer_zip),
        "--offer",
        path(&offer_zip),
        "--appraisal",
        path(&appraisal),
        "--key",
        &key,
        "--out-dir",
        path(d),
    ]);
    assert!(out.status.success());
    for m in [
        MessageType::TransferReceipt,
        MessageType::ImportConfirmation,
    ] {
        let r = receive_file(&mut arch, t, &answer(d, process, m)).await?;
        assert_eq!(r.message_type, m.code());
    }
    let p = reader
        .disposal
        .get_process(pb::GetProcessRequest {
            name: p.name.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(p.stage, pb::ProcessStage::Confirmed as i32);
    assert!(!p.import_results.is_empty());
    assert!(
        !p.import_results.iter().any(|r| r.object == a.file),
        "packaged per case, the file's own id is not named"
    );
    let s = state(&mut reader, &a.file).await;
    assert_eq!(s.state, pb::DisposalState::Transferred as i32, "{s:?}");
    let c2 = s.parts.iter().find(|x| x.object == a.c2).expect("c2");
    assert_eq!(c2.state, pb::DisposalState::Due as i32, "{c2:?}");
    assert_eq!(c2.decision, pb::DisposalDecision::Destroy as i32);
    assert!(state(&mut reader, &a.c1)
        .await
        .archive_id
        .starts_with("SIM-"));

    // Destroy the V parts at object level, then the rest.
    let destroy = |files: Vec<String>| pb::DestroyRequest {
        parent: format!("tenants/{t}"),
        files,
        legal_basis: "§ 18 ThürEGovG".into(),
        authorised_by: "Amtsleitung".into(),
    };
    let s = destroy_op(&mut reg, destroy(vec![a.c1.clone()]))
        .await
        .expect_err("an A case goes with its file");
    assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
    let rec = destroy_op(
        &mut reg,
        destroy(vec![a.c2.clone(), a.sub.clone(), b.file.clone()]),
    )
    .await?;
    assert_eq!(rec.files.len(), 3);
    assert_eq!(rec.files[0].object, a.c2);
    assert_eq!(rec.files[0].file, a.file);
    assert_eq!(rec.files[1].object, a.sub);
    assert_eq!(rec.files[2].object, b.file);
    expect_err(
        reader
            .retention
            .get_disposal_status(pb::GetDisposalStatusRequest {
                name: a.sub_case.clone(),
            })
            .await,
        Code::NotFound,
        "OBJECT_DESTROYED",
    );
    let s = state(&mut reader, &a.file).await;
    let c2 = s.parts.iter().find(|x| x.object == a.c2).expect("c2");
    assert_eq!(c2.state, pb::DisposalState::Destroyed as i32, "{c2:?}");
    destroy_op(&mut reg, destroy(vec![a.file.clone(), v[0].name.clone()])).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_import_a_0506_without_archive_ids_and_an_intake_that_refuses() -> R<()> {
    let env = env().await;
    let t = "amt";
    env.tenant(t).await;
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let mut reg = env.token(t, "registrar:weber", pb::Role::Registrar).await;
    let mut arch = env.token(t, "archivist:roth", pb::Role::Archivist).await;
    let mut clerk = env.token(t, "clerk:schmidt", pb::Role::Clerk).await;
    let files = closed_files(&mut reg, t, "632.1", pb::DisposalDecision::Appraise, 3).await;
    let a = rich(&mut reg, &mut clerk, &files[0]).await?;
    let b = rich(&mut reg, &mut clerk, &files[1]).await?;
    let c = rich(&mut reg, &mut clerk, &files[2]).await?;
    let offer = |files: Vec<String>| pb::OfferRequest {
        parent: format!("tenants/{t}"),
        files,
        parties: None,
    };

    // a and b: one object of a fails, no Archivkennung at all, one package per file.
    let (process, offer_zip, _) = save(
        d,
        reg.disposal
            .offer(offer(vec![a.file.clone(), b.file.clone()]))
            .await,
    )
    .await?;
    assert!(akte(&["archive-sim", "appraise", path(&offer_zip)])
        .status
        .success());
    let appraisal = answer(d, process, MessageType::Appraisal);
    receive_file(&mut arch, t, &appraisal).await?;
    let name = format!("tenants/{t}/disposalProcesses/{process}");
    let request = |process: &str, resend| pb::TransferRequest {
        name: process.into(),
        parties: None,
        resend,
    };
    let (_, transfer_zip, _) = save_zip(d, transfer(&mut reg, request(&name, false)).await)?;
    let failing = format!("{}=Primärdatei nicht lesbar", a.c1_doc);
    let out = akte(&[
        "archive-sim",
        "import",
        path(&transfer_zip),
        "--offer",
        path(&offer_zip),
        "--appraisal",
        path(&appraisal),
        "--packaging",
        "per-file",
        "--no-archive-ids",
        "--fail",
        &failing,
    ]);
    assert!(out.status.success());
    receive_file(
        &mut arch,
        t,
        &answer(d, process, MessageType::ImportConfirmation),
    )
    .await?;
    let mut reader = env.token(t, "reader:klein", pb::Role::Reader).await;
    let s = state(&mut reader, &a.file).await;
    assert_eq!(s.state, pb::DisposalState::ImportFailed as i32, "{s:?}");
    assert!(
        s.explanation.contains("Primärdatei nicht lesbar") && s.explanation.contains("Bauantrag"),
        "{s:?}"
    );
    let s = state(&mut reader, &b.file).await;
    assert_eq!(s.state, pb::DisposalState::Transferred as i32, "{s:?}");
    assert!(s.archive_id.is_empty());
    assert!(s.explanation.contains("gave no archive id"), "{s:?}");
    let s = destroy_op(
        &mut reg,
        pb::DestroyRequest {
            parent: format!("tenants/{t}"),
            files: vec![a.file.clone()],
            legal_basis: "§ 18".into(),
            authorised_by: "Amtsleitung".into(),
        },
    )
    .await
    .expect_err("not imported");
    assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
    // Offered again.
    collect(reg.disposal.offer(offer(vec![a.file.clone()])).await).await?;

    // c: the archive checks the transfer against another appraisal than the one the
    // agency received: the intake reports the surplus, answers with a 0507 and no 0506.
    let other = tempfile::tempdir()?;
    let (process, offer_zip, _) =
        save(d, reg.disposal.offer(offer(vec![c.file.clone()])).await).await?;
    assert!(akte(&["archive-sim", "appraise", path(&offer_zip)])
        .status
        .success());
    receive_file(&mut arch, t, &answer(d, process, MessageType::Appraisal)).await?;
    let set = format!("{}=V", c.c2);
    let out = akte(&[
        "archive-sim",
        "appraise",
        path(&offer_zip),
        "--set",
        &set,
        "--out-dir",
        path(other.path()),
    ]);
    assert!(out.status.success());
    let name = format!("tenants/{t}/disposalProcesses/{process}");
    let (_, transfer_zip, _) = save_zip(d, transfer(&mut reg, request(&name, false)).await)?;
    let out = akte(&[
        "archive-sim",
        "import",
        path(&transfer_zip),
        "--offer",
        path(&offer_zip),
        "--appraisal",
        path(&answer(other.path(), process, MessageType::Appraisal)),
        "--out-dir",
        path(other.path()),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("surplus"));
    assert!(answer(other.path(), process, MessageType::TransferReceipt).exists());
    assert!(!answer(other.path(), process, MessageType::ImportConfirmation).exists());
    // A re-send, and the note for the archive.
    let (_, again, _) = save_zip(other.path(), transfer(&mut reg, request(&name, true)).await)?;
    assert_eq!(again.file_name(), transfer_zip.file_name());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_what_the_api_documents() -> R<()> {
    let env = env().await;
    let t = "amt";
    env.tenant(t).await;
    env.tenant("andere").await;
    env.bare_tenant("ohne").await;
    let mut reg = env.token(t, "registrar:weber", pb::Role::Registrar).await;
    let mut arch = env.token(t, "archivist:roth", pb::Role::Archivist).await;
    let mut other = env
        .token("andere", "registrar:x", pb::Role::Registrar)
        .await;
    let files = closed_files(&mut reg, t, "632.1", pb::DisposalDecision::Archive, 2).await;
    for f in &files {
        close(&mut reg, f).await;
    }
    let mine = vec![files[0].name.clone()];

    // Another tenant's file: NOT_FOUND, for Offer, TransferTwoStage and Destroy alike.
    let s = collect(
        other
            .disposal
            .offer(pb::OfferRequest {
                parent: "tenants/andere".into(),
                files: mine.clone(),
                parties: None,
            })
            .await,
    )
    .await
    .expect_err("another tenant's file");
    assert_eq!(s.code(), Code::NotFound, "{s:?}");
    let s = transfer_two_stage(
        &mut other,
        pb::TransferTwoStageRequest {
            parent: "tenants/andere".into(),
            files: mine.clone(),
            parties: None,
        },
    )
    .await
    .expect_err("another tenant's file");
    assert_eq!(s.code(), Code::NotFound, "{s:?}");
    expect_err(
        other
            .disposal
            .destroy(pb::DestroyRequest {
                parent: "tenants/andere".into(),
                files: mine.clone(),
                legal_basis: "x".into(),
                authorised_by: "y".into(),
            })
            .await,
        Code::NotFound,
        "NOT_FOUND",
    );

    // Parties in a request: refused, they are the tenant's settings now.
    let s = collect(
        reg.disposal
            .offer(pb::OfferRequest {
                parent: format!("tenants/{t}"),
                files: mine.clone(),
                parties: Some(pb::Parties::default()),
            })
            .await,
    )
    .await
    .expect_err("parties");
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(s.message().contains("disposal settings"), "{s:?}");

    // A tenant without settings: the offer names the missing setting.
    let mut admin = env.client(&env.admin).await;
    let bare = closed_files(&mut admin, "ohne", "1", pb::DisposalDecision::Archive, 1).await;
    close(&mut admin, &bare[0]).await;
    let s = collect(
        admin
            .disposal
            .offer(pb::OfferRequest {
                parent: "tenants/ohne".into(),
                files: vec![bare[0].name.clone()],
                parties: None,
            })
            .await,
    )
    .await
    .expect_err("no settings");
    assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
    assert_eq!(reason(&s), "INVALID_STATE");
    assert_eq!(
        error_info(&s).and_then(|i| i.metadata.get("setting").cloned()),
        Some("agency.key".to_owned())
    );
    let mut bad = settings("ohne");
    if let Some(a) = bad.agency.as_mut() {
        a.institution = "zwei\nZeilen".into();
    }
    expect_err(
        admin
            .disposal
            .update_disposal_settings(pb::UpdateDisposalSettingsRequest {
                settings: Some(bad),
            })
            .await,
        Code::InvalidArgument,
        "INVALID_FIELD",
    );

    // Wrong stage: FAILED_PRECONDITION, in words, saying what to do.
    let (info, _) = transfer_two_stage(
        &mut reg,
        pb::TransferTwoStageRequest {
            parent: format!("tenants/{t}"),
            files: mine.clone(),
            parties: None,
        },
    )
    .await?;
    let process = id_of(&info.process);
    let s = transfer(
        &mut reg,
        pb::TransferRequest {
            name: info.process.clone(),
            parties: None,
            resend: false,
        },
    )
    .await
    .expect_err("transferred already");
    assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
    assert_eq!(reason(&s), "INVALID_STATE");
    assert!(s.message().contains("--resend"), "{s:?}");
    receive(&mut arch, t, xdomea::write_0507(&archive_header(process))?).await?;
    let s = receive(&mut arch, t, xdomea::write_0507(&archive_header(process))?)
        .await
        .expect_err("a second 0507");
    assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
    assert!(!s.message().contains("Some("), "{s:?}");

    // Refused messages name element and rule.
    let stranger = Uuid::new_v4();
    let conf = xdomea::write_0506(
        &archive_header(process),
        &[ImportResult {
            id: stranger,
            success: true,
            archive_id: None,
            error_messages: vec![],
            error_codes: vec![],
        }],
    )?;
    let s = receive(&mut arch, t, conf).await.expect_err("unknown id");
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    let info = error_info(&s).expect("ErrorInfo");
    assert_eq!(
        info.metadata.get("rule").map(String::as_str),
        Some("unknown-object")
    );
    assert!(info
        .metadata
        .get("element")
        .is_some_and(|e| e.ends_with("AusgesondertesSGO[1]/IDSGO")));
    // An XML beyond the limit, in a small ZIP: the real reason.
    let mut xml = xdomea::write_0507(&archive_header(process))?;
    let at = xml.len() - 2;
    xml.splice(at..at, std::iter::repeat_n(b' ', 17 << 20));
    let zip = xdomea::write_message_zip(
        Cursor::new(Vec::new()),
        &archive_header(process),
        MessageType::TransferReceipt,
        &xml,
    )?
    .into_inner();
    assert!(zip.len() < akte_server::service::MAX_RECEIVED_MESSAGE);
    let s = receive(&mut arch, t, zip).await.expect_err("too large");
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(s.message().contains("limit of 16777216 bytes"), "{s:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_sets_the_metadata_an_appraiser_sees_in_the_offer() -> R<()> {
    let env = env().await;
    let t = "amt";
    env.tenant(t).await;
    let mut reg = env.token(t, "registrar:weber", pb::Role::Registrar).await;
    let unit = closed_files(&mut reg, t, "632.1", pb::DisposalDecision::Archive, 0).await;
    assert!(unit.is_empty());
    let units = reg
        .plan
        .list_plan_units(pb::ListPlanUnitsRequest {
            parent: format!("tenants/{t}"),
            ..Default::default()
        })
        .await?
        .into_inner()
        .plan_units;
    let url = format!("http://{}", env.server.addr);
    let cli = |args: &[&str]| -> serde_json::Value {
        let mut all = vec![
            "--server", &url, "--token", &env.admin, "--tenant", t, "--json",
        ];
        all.extend_from_slice(args);
        let out = akte(&all);
        assert!(out.status.success(), "akte {args:?}");
        serde_json::from_slice(&out.stdout).expect("JSON")
    };
    let f = cli(&[
        "file",
        "create",
        "--parent",
        &units[0].name,
        "--subject",
        "Kita",
        "--begin",
        "2012-03-01",
        "--end",
        "2013-06-30",
        "--confidentiality",
        "nfd",
        "--medium",
        "hybrid",
        "--lead-unit",
        "Bauordnungsamt",
        "--notes",
        "Altakte",
    ]);
    let file = f["name"].as_str().expect("name").to_owned();
    let c = cli(&[
        "case",
        "create",
        "--parent",
        &file,
        "--subject",
        "Antrag",
        "--begin",
        "2012-03-02",
    ]);
    let case = c["name"].as_str().expect("name").to_owned();
    cli(&[
        "document",
        "create",
        "--parent",
        &case,
        "--subject",
        "Bescheid",
        "--sent-on",
        "2012-04-01",
        "--recipient",
        "Kita gGmbH",
        "--recipient",
        "Bauherr Meier",
        "--clerk",
        "Schmidt",
        "--external-reference",
        "KG 7/12",
    ]);
    cli(&[
        "file",
        "update",
        &file,
        "--end",
        "2015-06-30",
        "--reason",
        "Laufzeit berichtigt",
    ]);
    cli(&[
        "case",
        "update",
        &case,
        "--end",
        "2013-01-31",
        "--notes",
        "erledigt",
    ]);
    let got = reg
        .files
        .get_file(pb::GetFileRequest { name: file.clone() })
        .await?
        .into_inner();
    assert_eq!(
        (got.begin, got.end, got.confidentiality, got.medium),
        (
            Some(Date {
                year: 2012,
                month: 3,
                day: 1
            }),
            Some(Date {
                year: 2015,
                month: 6,
                day: 30
            }),
            pb::Confidentiality::Restricted as i32,
            pb::Medium::Hybrid as i32
        )
    );
    let out = akte(&[
        "--server", &url, "--token", &env.admin, "--tenant", t, "file", "update", &file,
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "nothing to change is a usage error"
    );
    close(&mut reg, &got).await;
    let (info, zip) = collect(
        reg.disposal
            .offer(pb::OfferRequest {
                parent: format!("tenants/{t}"),
                files: vec![file.clone()],
                parties: None,
            })
            .await,
    )
    .await?;
    let xml = String::from_utf8(xml_of(&zip, id_of(&info.process), MessageType::Offer))?;
    for seen in [
        "<xdomea:Beginn>2012-03-01</xdomea:Beginn>",
        "<xdomea:Ende>2015-06-30</xdomea:Ende>",
        "<xdomea:Ende>2013-01-31</xdomea:Ende>",
        "<xdomea:Federfuehrung>Bauordnungsamt</xdomea:Federfuehrung>",
        "<xdomea:Bemerkung>erledigt</xdomea:Bemerkung>",
        "<xdomea:FremdesGeschaeftszeichen>KG 7/12</xdomea:FremdesGeschaeftszeichen>",
        "<xdomea:Zeile1>Bauherr Meier</xdomea:Zeile1>",
    ] {
        assert!(xml.contains(seen), "{seen} in the 0501");
    }
    Ok(())
}
