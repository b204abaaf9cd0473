//! End-to-end tests of MigrationService through akted and the `akte` CLI: a handover from
//! one tenant to another (0401 out, ImportPackage as an operation with progress, 0403 and
//! 0402 back, the file closed as handed over), re-filing with etag and role, the file plan
//! exchange, tenant walls, and the offline legacy import. Every message is validated with
//! xmllint against the xdomea 3.1.0 schema.

use std::io::{Cursor, Read};
use std::process::{Command, Output};

use akte_core::xdomea::{self, MessageType};
use akte_server::client::{
    add_version_messages, sha256, unpack, wait_operation, ClientTls, Clients,
};
use akte_server::config::ServerConfig;
use akte_server::error::reason;
use akte_server::pb::akte::v1 as pb;
use akte_server::server::{start, Running};
use bytes::Bytes;
use tonic::Code;

type R<T> = Result<T, Box<dyn std::error::Error>>;

struct Env {
    _dir: tempfile::TempDir,
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

    async fn secret(&self, tenant: &str, principal: &str, role: pb::Role) -> String {
        let mut admin = self.client(&self.admin).await;
        admin
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
            .secret
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
    Env {
        _dir: dir,
        server,
        admin,
    }
}

const SCHEMA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/xdomea/schemas/3.1.0/xdomea.xsd"
);

fn assert_valid(zip: &[u8], message: MessageType) {
    let xml = xdomea::read_received_zip(Cursor::new(zip), &[message], 1 << 26)
        .expect("a message ZIP")
        .xml;
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("m.xml");
    std::fs::write(&p, &xml).expect("write");
    let out = Command::new("xmllint")
        .args(["--noout", "--schema", SCHEMA])
        .arg(&p)
        .output()
        .expect("xmllint is needed (apt-get install libxml2-utils)");
    assert!(
        out.status.success(),
        "{} does not validate: {}",
        message.code(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A plan unit, a file with a case and a document with one version, over gRPC.
async fn stock(c: &mut Clients, tenant: &str) -> R<(String, String, String, String)> {
    let unit = c
        .plan
        .create_plan_unit(pb::CreatePlanUnitRequest {
            parent: format!("tenants/{tenant}"),
            plan_unit: Some(pb::PlanUnit {
                code: "632.1".into(),
                title: "Baugenehmigungen".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    let file = c
        .files
        .create_file(pb::CreateFileRequest {
            parent: unit.name.clone(),
            file: Some(pb::File {
                subject: "Neubau Gartenstraße 4".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    let case = c
        .cases
        .create_case(pb::CreateCaseRequest {
            parent: file.name.clone(),
            case: Some(pb::Case {
                subject: "Bauantrag".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    let doc = c
        .documents
        .create_document(pb::CreateDocumentRequest {
            parent: case.name.clone(),
            document: Some(pb::Document {
                subject: "Antrag Müller".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    let data = b"%PDF-1.7 Antrag".to_vec();
    let header = pb::AddVersionHeader {
        parent: doc.name.clone(),
        comment: "eingescannt".into(),
        upload: Some(pb::RenditionUpload {
            file_name: "Antrag Müller.pdf".into(),
            media_type: "application/pdf".into(),
            sha256: sha256(&data),
            size: data.len() as u64,
        }),
        staged_renditions: vec![],
        request_id: String::new(),
    };
    c.documents
        .add_version(tokio_stream::iter(add_version_messages(
            header,
            Bytes::from(data),
            1 << 20,
        )))
        .await?;
    Ok((unit.name, file.name, case.name, doc.name))
}

async fn zip_of(s: tonic::Streaming<pb::MessageChunk>) -> R<(pb::MessageInfo, Vec<u8>)> {
    let mut s = s;
    let mut info = None;
    let mut bytes = Vec::new();
    while let Some(m) = s.message().await? {
        match m.message {
            Some(pb::message_chunk::Message::Info(i)) => info = Some(i),
            Some(pb::message_chunk::Message::Chunk(b)) => bytes.extend_from_slice(&b),
            None => {}
        }
    }
    Ok((info.ok_or("no info")?, bytes))
}

fn import_requests(parent: &str, zip: &[u8]) -> Vec<pb::ImportPackageRequest> {
    let mut out = vec![pb::ImportPackageRequest {
        message: Some(pb::import_package_request::Message::Options(
            pb::ImportPackageOptions {
                parent: parent.into(),
                create_plan_units: true,
                ..Default::default()
            },
        )),
    }];
    for c in zip.chunks(1000) {
        out.push(pb::ImportPackageRequest {
            message: Some(pb::import_package_request::Message::Chunk(
                Bytes::copy_from_slice(c),
            )),
        });
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handover_between_tenants_through_akted() -> R<()> {
    let env = env().await;
    env.tenant("stadt").await;
    env.tenant("kreis").await;
    let mut a = env
        .client(
            &env.secret("stadt", "registrar:weber", pb::Role::Registrar)
                .await,
        )
        .await;
    let mut b = env
        .client(
            &env.secret("kreis", "registrar:koch", pb::Role::Registrar)
                .await,
        )
        .await;
    let mut clerk_b = env
        .client(&env.secret("kreis", "clerk:mai", pb::Role::Clerk).await)
        .await;
    let (_, file, case, doc) = stock(&mut a, "stadt").await?;

    let s = a
        .migration
        .export_handover(pb::ExportHandoverRequest {
            parent: "tenants/stadt".into(),
            files: vec![file.clone()],
            sender: Some(pb::Agency {
                code: "16051000".into(),
                name: "Stadt Erfurt".into(),
                ..Default::default()
            }),
            receiver: Some(pb::Agency {
                code: "16055000".into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    let (info, zip) = zip_of(s).await?;
    assert!(info.process.starts_with("tenants/stadt/handoverProcesses/"));
    assert!(info.file_name.ends_with("_Abgabe.Abgabe.0401.zip"));
    assert_eq!(info.size, zip.len() as u64);
    assert_valid(&zip, MessageType::Handover);

    // A clerk may not take it over; another tenant's name is NOT_FOUND.
    let refused = clerk_b
        .migration
        .import_package(tokio_stream::iter(import_requests("tenants/kreis", &zip)))
        .await;
    assert_eq!(refused.unwrap_err().code(), Code::PermissionDenied);
    let walled = b
        .migration
        .import_package(tokio_stream::iter(import_requests("tenants/stadt", &zip)))
        .await;
    assert_eq!(walled.unwrap_err().code(), Code::NotFound);

    let op = b
        .migration
        .import_package(tokio_stream::iter(import_requests("tenants/kreis", &zip)))
        .await?
        .into_inner();
    let any = wait_operation(&mut b.operations, op.clone()).await?;
    let r: pb::ImportPackageResult = unpack(&any)?;
    assert_eq!((r.imported, r.failed), (4, 0), "{r:?}");
    assert_eq!(r.message_type, "0401");
    let done = b
        .operations
        .get_operation(akte_server::pb::google::longrunning::GetOperationRequest {
            name: op.name.clone(),
        })
        .await?
        .into_inner();
    let meta: pb::OperationMetadata = unpack(done.metadata.as_ref().ok_or("metadata")?)?;
    assert_eq!((meta.verb.as_str(), meta.processed), ("import_package", 4));
    assert_valid(&r.receipt_zip, MessageType::HandoverReceipt);
    assert_valid(&r.confirmation_zip, MessageType::HandoverImportConfirmation);
    // Same id, reference and origin on the receiving side.
    let id = file.rsplit('/').next().ok_or("id")?;
    let fb = b
        .files
        .get_file(pb::GetFileRequest {
            name: format!("tenants/kreis/files/{id}"),
        })
        .await?
        .into_inner();
    let fa = a
        .files
        .get_file(pb::GetFileRequest { name: file.clone() })
        .await?
        .into_inner();
    assert_eq!(fb.reference, fa.reference);
    let origin = fb.origin.clone().ok_or("origin")?;
    assert_eq!(origin.source_system, "xdomea:16051000");
    assert_eq!(origin.package_sha256, sha256(&zip));
    // A's history of the file is B's original history of it; the case has its origin too.
    let original = b
        .migration
        .list_original_history(pb::ListOriginalHistoryRequest {
            name: fb.name.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(original.entries[0].action, "file.create");
    assert_eq!(original.entries[0].actor, "registrar:weber");
    let case_b = b
        .cases
        .get_case(pb::GetCaseRequest {
            name: format!(
                "tenants/kreis/cases/{}",
                case.rsplit('/').next().ok_or("id")?
            ),
        })
        .await?
        .into_inner();
    assert_eq!(
        case_b.origin.ok_or("case origin")?.source_system,
        "xdomea:16051000"
    );

    // Answers back: the file is closed as handed over, with the receiving reference.
    a.migration
        .receive_handover_answer(pb::ReceiveHandoverAnswerRequest {
            parent: "tenants/stadt".into(),
            message: r.receipt_zip.clone(),
            receiving_references: Default::default(),
        })
        .await?;
    let mut refs = std::collections::HashMap::new();
    refs.insert(file.clone(), "WL-17/2026".to_owned());
    let p = a
        .migration
        .receive_handover_answer(pb::ReceiveHandoverAnswerRequest {
            parent: "tenants/stadt".into(),
            message: r.confirmation_zip.clone(),
            receiving_references: refs,
        })
        .await?
        .into_inner();
    assert!(p.confirmed_date.is_some() && p.failed.is_empty());
    let fa = a
        .files
        .get_file(pb::GetFileRequest { name: file.clone() })
        .await?
        .into_inner();
    assert_eq!(fa.state, pb::State::Closed as i32);
    let h = fa.handover.ok_or("handover")?;
    assert_eq!(
        (h.receiver.as_str(), h.receiving_reference.as_str()),
        ("16055000", "WL-17/2026")
    );

    // Re-filing on the receiving side: etag required, a clerk refused, history from/to.
    let unit2 = b
        .plan
        .create_plan_unit(pb::CreatePlanUnitRequest {
            parent: "tenants/kreis".into(),
            plan_unit: Some(pb::PlanUnit {
                code: "632.2".into(),
                title: "Abbruch".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    let no_etag = b
        .migration
        .refile_file(pb::RefileFileRequest {
            name: fb.name.clone(),
            etag: String::new(),
            plan_unit: unit2.name.clone(),
            reason: String::new(),
        })
        .await;
    assert_eq!(no_etag.unwrap_err().code(), Code::InvalidArgument);
    let by_clerk = clerk_b
        .migration
        .refile_file(pb::RefileFileRequest {
            name: fb.name.clone(),
            etag: fb.etag.clone(),
            plan_unit: unit2.name.clone(),
            reason: String::new(),
        })
        .await;
    assert_eq!(by_clerk.unwrap_err().code(), Code::PermissionDenied);
    let stale = b
        .migration
        .refile_file(pb::RefileFileRequest {
            name: fb.name.clone(),
            etag: "999".into(),
            plan_unit: unit2.name.clone(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    let moved = b
        .migration
        .refile_file(pb::RefileFileRequest {
            name: fb.name.clone(),
            etag: fb.etag.clone(),
            plan_unit: unit2.name.clone(),
            reason: "Zuständigkeit".into(),
        })
        .await?
        .into_inner();
    assert!(moved.reference.starts_with("632.2-"));
    assert_eq!(moved.previous_references, vec![fb.reference.clone()]);
    // A document into a case of another file; the handed-over file refuses (closed).
    let case_id = case.rsplit('/').next().ok_or("id")?;
    let doc_id = doc.rsplit('/').next().ok_or("id")?;
    let d = b
        .documents
        .get_document(pb::GetDocumentRequest {
            name: format!("tenants/kreis/documents/{doc_id}"),
        })
        .await?
        .into_inner();
    let moved_doc = b
        .migration
        .refile_document(pb::RefileDocumentRequest {
            name: d.name.clone(),
            etag: d.etag.clone(),
            target: fb.name.clone(),
            reason: String::new(),
        })
        .await?
        .into_inner();
    assert_eq!(moved_doc.parent, fb.name);
    let da = a
        .documents
        .get_document(pb::GetDocumentRequest { name: doc.clone() })
        .await?
        .into_inner();
    let closed = a
        .migration
        .refile_document(pb::RefileDocumentRequest {
            name: doc.clone(),
            etag: da.etag,
            target: file.clone(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(closed.code(), Code::FailedPrecondition, "{closed:?}");
    assert_eq!(reason(&closed), "OBJECT_CLOSED");
    let _ = case_id;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_plan_exchange_through_akted() -> R<()> {
    let env = env().await;
    env.tenant("stadt").await;
    env.tenant("kreis").await;
    let mut a = env
        .client(
            &env.secret("stadt", "registrar:weber", pb::Role::Registrar)
                .await,
        )
        .await;
    let mut b = env
        .client(
            &env.secret("kreis", "registrar:koch", pb::Role::Registrar)
                .await,
        )
        .await;
    stock(&mut a, "stadt").await?;
    // Without a sender and without disposal settings: a clear refusal.
    let no_sender = a
        .migration
        .export_file_plan(pb::ExportFilePlanRequest {
            parent: "tenants/stadt".into(),
            plan_name: "Aktenplan".into(),
            version: "1".into(),
            sender: None,
            receiver: Some(pb::Agency {
                code: "16055000".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(no_sender.code(), Code::InvalidArgument);
    let out = a
        .migration
        .export_file_plan(pb::ExportFilePlanRequest {
            parent: "tenants/stadt".into(),
            plan_name: "Aktenplan".into(),
            version: "1".into(),
            sender: Some(pb::Agency {
                code: "16051000".into(),
                ..Default::default()
            }),
            receiver: Some(pb::Agency {
                code: "16055000".into(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    assert!(out.file_name.ends_with("_Aktenplan.Aktenplan.0301.zip"));
    assert_valid(&out.zip, MessageType::Plan);
    let r = b
        .migration
        .import_file_plan(pb::ImportFilePlanRequest {
            parent: "tenants/kreis".into(),
            message: out.zip.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(r.created, vec!["632.1"]);
    assert_valid(&r.receipt_zip, MessageType::PlanReceipt);
    let bad = b
        .migration
        .import_file_plan(pb::ImportFilePlanRequest {
            parent: "tenants/kreis".into(),
            message: Bytes::from_static(b"not a zip"),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument, "{bad:?}");
    Ok(())
}

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

#[test]
fn offline_legacy_import_reports_and_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let d = data.to_str().expect("utf-8");
    assert!(akte(&["--data-dir", d, "tenant", "create", "gemeinde"])
        .status
        .success());
    let export = dir.path().join("export");
    std::fs::create_dir_all(export.join("dateien")).expect("mkdir");
    std::fs::write(export.join("dateien/bescheid.pdf"), b"%PDF-1.4 Bescheid").expect("write");
    let lines = [
        r#"{"id":null,"source_id":"AP-632","parent":null,"created_on":null,"created_by":"","actors":[],"history":[],"object":{"kind":"plan_unit","code":"632","title":"Bauordnung","description":"","retention":{"years":10},"disposal":"V"}}"#,
        r#"{"id":null,"source_id":"AKTE-1","parent":{"source":"AP-632"},"created_on":"2009-03-02","created_by":"Müller","actors":[],"history":[{"at":"2009-03-02T08:00:00Z","actor":"Müller","action":"angelegt"}],"object":{"kind":"file","reference":"632-12/2009","previous_references":[],"subject":"Neubau","begin":"2009-03-02","end":"2014-06-30","confidentiality":"003","medium":"001","lead_unit":"","notes":"","closed_on":"2014-06-30","retention":null,"disposal":null}}"#,
        r#"{"id":null,"source_id":"DOK-1","parent":{"source":"AKTE-1"},"created_on":"2010-01-04","created_by":"Müller","actors":[],"history":[],"object":{"kind":"document","reference":"","subject":"Bescheid","letter_date":"2010-01-04","received_on":null,"sent_on":null,"sender":"","recipients":[],"clerk":"","external_reference":"","confidentiality":"003","versions":[{"comment":"","created_on":"2010-01-04","created_by":"Müller","renditions":[{"file_name":"bescheid.pdf","media_type":"application/pdf","path":"dateien/bescheid.pdf"}]}]}}"#,
        r#"{"source_id":"AKTE-2","parent":{"source":"AP-999"},"object":{"kind":"file","reference":"999-1","subject":"Verwaist"}}"#,
        "this is not JSON",
    ];
    let items = export.join("export.jsonl");
    std::fs::write(&items, lines.join("\n")).expect("write");
    let i = items.to_str().expect("utf-8");
    let args = [
        "--data-dir",
        d,
        "--json",
        "import-legacy",
        "--tenant",
        "gemeinde",
        "--source-system",
        "dms-alt",
        i,
    ];
    let out = akte(&args);
    assert_eq!(out.status.code(), Some(7));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["imported"], 3);
    assert_eq!(report["failed"], 2);
    let again = akte(&args);
    let report: serde_json::Value = serde_json::from_slice(&again.stdout).expect("json");
    assert_eq!(
        (
            report["imported"].clone(),
            report["already_imported"].clone()
        ),
        (serde_json::json!(0), serde_json::json!(3))
    );
    let verify = akte(&["--data-dir", d, "verify"]);
    assert!(verify.status.success());
    let mut s = String::new();
    std::fs::File::open(&items)
        .expect("open")
        .read_to_string(&mut s)
        .expect("read");
    assert!(s.contains("AKTE-1"));
}

/// Bytes of a tenant's journal segments in a data directory.
fn journal_bytes(data: &std::path::Path, tenant: &str) -> u64 {
    std::fs::read_dir(data.join("tenants").join(tenant).join("journal"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn a_killed_legacy_import_resumes_with_nothing_twice_and_nothing_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let d = data.to_str().expect("utf-8");
    assert!(akte(&["--data-dir", d, "tenant", "create", "gemeinde"])
        .status
        .success());
    let start = journal_bytes(&data, "gemeinde");
    let export = dir.path().join("export");
    std::fs::create_dir_all(export.join("f")).expect("mkdir");
    let n = 1500;
    let mut lines = vec![
        r#"{"source_id":"AP","object":{"kind":"plan_unit","code":"1","title":"Alt"}}"#.to_owned(),
        r#"{"source_id":"AKTE","parent":{"source":"AP"},"object":{"kind":"file","reference":"1-1/2010","subject":"Altakte","closed_on":"2012-01-31"}}"#.to_owned(),
    ];
    for i in 0..n {
        std::fs::write(export.join(format!("f/{i}.txt")), format!("Dokument {i}")).expect("write");
        lines.push(format!(
            r#"{{"source_id":"D{i}","parent":{{"source":"AKTE"}},"object":{{"kind":"document","subject":"Schreiben {i}","versions":[{{"renditions":[{{"file_name":"{i}.txt","media_type":"text/plain","path":"f/{i}.txt"}}]}}]}}}}"#
        ));
    }
    let items = export.join("export.jsonl");
    std::fs::write(&items, lines.join("\n")).expect("write");
    let i = items.to_str().expect("utf-8");
    let args = [
        "--data-dir",
        d,
        "--json",
        "import-legacy",
        "--tenant",
        "gemeinde",
        "--source-system",
        "dms",
        i,
    ];
    // Killed (SIGKILL) once some entries are durable, in the middle of the import.
    let mut child = Command::new(env!("CARGO_BIN_EXE_akte"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let mut killed = false;
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if journal_bytes(&data, "gemeinde") > start + 20_000 {
            child.kill().expect("SIGKILL");
            killed = true;
            break;
        }
        std::thread::yield_now();
    }
    child.wait().expect("reap");
    assert!(
        killed,
        "the import finished before it could be killed; raise n"
    );
    let out = akte(&args);
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let (imported, before) = (
        report["imported"].as_u64().expect("n"),
        report["already_imported"].as_u64().expect("n"),
    );
    assert!(before > 0 && imported > 0, "{report}");
    assert_eq!(imported + before, n as u64 + 2, "{report}");
    // Nothing twice: one journal entry per object (and the store verifies clean).
    let list = akte(&["--data-dir", d, "--json", "tenant", "list"]);
    let tenants: serde_json::Value = serde_json::from_slice(&list.stdout).expect("json");
    assert_eq!(tenants["tenants"][0]["entries"], n as u64 + 2, "{tenants}");
    assert!(akte(&["--data-dir", d, "verify"]).status.success());
}
