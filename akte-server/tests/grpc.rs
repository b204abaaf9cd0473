//! End-to-end tests of akted through the generated Rust client: every RPC, and the failure
//! paths (no token, wrong role, other tenant, invalid arguments, oversized messages, hash
//! mismatch on upload, writes into closed files, stale etags, overload). Most tests start
//! the server in-process on a free loopback port; the shutdown test runs the `akted`
//! binary and sends it SIGTERM during uploads.

mod support;

use std::path::Path;
use std::time::Duration;

use akte_server::client::{
    add_version_messages, sha256, sha256_hex, unpack, upload_rendition_messages, wait_operation,
    ClientTls, Clients,
};
use akte_server::config::ServerConfig;
use akte_server::error::{error_info, reason};
use akte_server::pb::akte::v1 as pb;
use akte_server::pb::google::rpc;
use akte_server::server::{start, Running, ServerError};
use bytes::Bytes;
use prost::Message;
use tonic::{Code, Status};

type R<T> = Result<T, Box<dyn std::error::Error>>;

struct Env {
    dir: tempfile::TempDir,
    server: Running,
    admin: String,
}

impl Env {
    fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    async fn client(&self, token: Option<&str>) -> Clients {
        Clients::connect(&self.url(), token, &ClientTls::default())
            .await
            .expect("connect")
    }

    async fn admin(&self) -> Clients {
        self.client(Some(&self.admin)).await
    }

    /// Creates a tenant and a token with `roles` in it; returns the token.
    async fn token(&self, tenant: &str, principal: &str, roles: &[pb::Role]) -> String {
        let mut c = self.admin().await;
        let r = c
            .tenants
            .create_token(pb::CreateTokenRequest {
                parent: format!("tenants/{tenant}"),
                principal: principal.into(),
                roles: roles.iter().map(|r| *r as i32).collect(),
                description: String::new(),
                expire_time: None,
                org_units: Vec::new(),
            })
            .await
            .expect("create token");
        r.into_inner().secret
    }
}

fn config(dir: &Path) -> ServerConfig {
    let mut cfg = ServerConfig::new(dir);
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.database = support::database(dir);
    cfg
}

async fn env_with(adjust: impl FnOnce(&mut ServerConfig)) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    adjust(&mut cfg);
    let server = start(cfg).await.expect("start");
    let boot = server.bootstrap_token.clone().expect("bootstrap token");
    let admin = std::fs::read_to_string(boot).unwrap().trim().to_owned();
    Env { dir, server, admin }
}

async fn env() -> Env {
    env_with(|_| {}).await
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
            let info = error_info(&s).expect("ErrorInfo");
            assert_eq!(info.domain, "akte.de");
            s
        }
    }
}

/// Runs VerifyTenant and waits for its report.
async fn verified(
    c: &mut Clients,
    req: pb::VerifyTenantRequest,
) -> Result<pb::VerificationReport, Status> {
    let op = c.verification.verify_tenant(req).await?.into_inner();
    let done = wait_operation(&mut c.operations, op).await?;
    unpack(&done)
}

fn bytes_of(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

fn header(document: &str, data: &[u8], name: &str) -> pb::AddVersionHeader {
    pb::AddVersionHeader {
        parent: document.into(),
        comment: String::new(),
        upload: Some(pb::RenditionUpload {
            file_name: name.into(),
            media_type: "application/pdf".into(),
            sha256: sha256(data),
            size: data.len() as u64,
        }),
        staged_renditions: vec![],
        request_id: String::new(),
    }
}

async fn upload(
    c: &mut Clients,
    h: pb::AddVersionHeader,
    data: &[u8],
) -> Result<pb::Version, Status> {
    let msgs = add_version_messages(h, Bytes::copy_from_slice(data), 1 << 20);
    c.documents
        .add_version(tokio_stream::iter(msgs))
        .await
        .map(|r| r.into_inner())
}

async fn download(c: &mut Clients, name: &str) -> Result<(pb::Rendition, Vec<u8>), Status> {
    let mut s = c
        .documents
        .download_rendition(pb::DownloadRenditionRequest {
            name: name.into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut meta = None;
    let mut out = Vec::new();
    while let Some(m) = s.message().await? {
        match m.message {
            Some(pb::download_rendition_response::Message::Rendition(r)) => meta = Some(r),
            Some(pb::download_rendition_response::Message::Chunk(b)) => {
                assert!(b.len() <= 1 << 20);
                out.extend_from_slice(&b)
            }
            None => {}
        }
    }
    Ok((meta.expect("rendition first"), out))
}

/// A tenant with a plan unit, a file and a document, made by a registrar and a clerk.
struct Fixture {
    registrar: Clients,
    clerk: Clients,
    unit: pb::PlanUnit,
    file: pb::File,
    doc: pb::Document,
}

async fn fixture(env: &Env, tenant: &str) -> Fixture {
    let mut admin = env.admin().await;
    admin
        .tenants
        .create_tenant(pb::CreateTenantRequest {
            tenant_id: tenant.into(),
        })
        .await
        .expect("create tenant");
    let reg = env
        .token(tenant, "registrar:weber", &[pb::Role::Registrar])
        .await;
    let clerk = env.token(tenant, "clerk:schmidt", &[pb::Role::Clerk]).await;
    let mut registrar = env.client(Some(&reg)).await;
    let mut clerk = env.client(Some(&clerk)).await;
    let unit = registrar
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
        .await
        .expect("plan unit")
        .into_inner();
    let file = registrar
        .files
        .create_file(pb::CreateFileRequest {
            parent: unit.name.clone(),
            file: Some(pb::File {
                subject: "Neubau Einfamilienhaus".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("file")
        .into_inner();
    let doc = clerk
        .documents
        .create_document(pb::CreateDocumentRequest {
            parent: file.name.clone(),
            document: Some(pb::Document {
                subject: "Bauantrag".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("document")
        .into_inner();
    Fixture {
        registrar,
        clerk,
        unit,
        file,
        doc,
    }
}

fn content_objects(server: &Running, tenant: &str) -> usize {
    server
        .records()
        .tenant(tenant)
        .unwrap()
        .tenant()
        .content()
        .list()
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_lifecycle_through_every_rpc() -> R<()> {
    let env = env().await;
    let t = "bauamt";
    let Fixture {
        mut registrar,
        mut clerk,
        unit,
        file,
        doc,
    } = fixture(&env, t).await;
    let tenant = format!("tenants/{t}");

    // Tenants.
    let mut admin = env.admin().await;
    let got = admin
        .tenants
        .get_tenant(pb::GetTenantRequest {
            name: tenant.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(got.tenant_id, t);
    assert!(got.verifier_key.contains('+'));
    let list = admin
        .tenants
        .list_tenants(pb::ListTenantsRequest::default())
        .await?
        .into_inner();
    assert_eq!(list.tenants.len(), 1);

    // Plan units: idempotent create with a client id, sub-units, list, update, stale etag.
    let id = "7d9f0c1e-4b1a-4c3e-9f00-2b6c3d4e5f60";
    let req = pb::CreatePlanUnitRequest {
        parent: unit.name.clone(),
        plan_unit: Some(pb::PlanUnit {
            code: "632.11".into(),
            title: "Wohngebäude".into(),
            retention: Some(pb::Retention {
                period: Some(pb::retention::Period::Years(30)),
            }),
            disposal: pb::DisposalDecision::Archive as i32,
            ..Default::default()
        }),
        plan_unit_id: id.into(),
        request_id: "req-1".into(),
    };
    let sub = registrar
        .plan
        .create_plan_unit(req.clone())
        .await?
        .into_inner();
    assert_eq!(sub.name, format!("{tenant}/planUnits/{id}"));
    assert_eq!(sub.parent, unit.name);
    let again = registrar
        .plan
        .create_plan_unit(req.clone())
        .await?
        .into_inner();
    assert_eq!(again, sub, "a repeated request returns the first result");
    let mut other = req.clone();
    other.plan_unit.as_mut().unwrap().title = "Anders".into();
    expect_err(
        registrar.plan.create_plan_unit(other).await,
        Code::InvalidArgument,
        "REQUEST_ID_REUSED",
    );
    let mut dup = req.clone();
    dup.request_id = String::new();
    dup.plan_unit_id = String::new();
    expect_err(
        registrar.plan.create_plan_unit(dup).await,
        Code::AlreadyExists,
        "DUPLICATE_CODE",
    );
    let subs = registrar
        .plan
        .list_plan_units(pb::ListPlanUnitsRequest {
            parent: unit.name.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(subs.plan_units, vec![sub.clone()]);
    let got = registrar
        .plan
        .get_plan_unit(pb::GetPlanUnitRequest {
            name: sub.name.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(got, sub);
    let updated = registrar
        .plan
        .update_plan_unit(pb::UpdatePlanUnitRequest {
            plan_unit: Some(pb::PlanUnit {
                name: sub.name.clone(),
                title: "Wohngebäude und Garagen".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["title".into()],
            }),
            etag: sub.etag.clone(),
            reason: "Zuschnitt".into(),
        })
        .await?
        .into_inner();
    assert_eq!(updated.title, "Wohngebäude und Garagen");
    assert_ne!(updated.etag, sub.etag);
    let s = expect_err(
        registrar
            .plan
            .update_plan_unit(pb::UpdatePlanUnitRequest {
                plan_unit: Some(pb::PlanUnit {
                    name: sub.name.clone(),
                    title: "Veraltet".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["title".into()],
                }),
                etag: sub.etag.clone(),
                reason: String::new(),
            })
            .await,
        Code::Aborted,
        "STALE_ETAG",
    );
    assert_eq!(
        error_info(&s).unwrap().metadata["current_etag"],
        updated.etag
    );
    registrar
        .plan
        .delete_plan_unit(pb::DeletePlanUnitRequest {
            name: sub.name.clone(),
            etag: updated.etag.clone(),
        })
        .await?;
    expect_err(
        registrar
            .plan
            .get_plan_unit(pb::GetPlanUnitRequest {
                name: sub.name.clone(),
            })
            .await,
        Code::NotFound,
        "NOT_FOUND",
    );

    // Files: lookup by reference, list, update, sub-file.
    assert!(
        file.reference.starts_with("632.1-0001/"),
        "{}",
        file.reference
    );
    assert_eq!(file.state, pb::State::Open as i32);
    let found = registrar
        .files
        .lookup_file(pb::LookupFileRequest {
            parent: tenant.clone(),
            reference: file.reference.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(found, file);
    let subfile = registrar
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
        .into_inner();
    assert_eq!(subfile.parent_file, file.name);
    assert_eq!(subfile.plan_unit, unit.name);
    let in_unit = registrar
        .files
        .list_files(pb::ListFilesRequest {
            parent: unit.name.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(in_unit.files.len(), 2);
    let subs = registrar
        .files
        .list_files(pb::ListFilesRequest {
            parent: file.name.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(subs.files, vec![subfile.clone()]);
    let file = registrar
        .files
        .update_file(pb::UpdateFileRequest {
            file: Some(pb::File {
                name: file.name.clone(),
                subject: "Neubau Einfamilienhaus, Flurstück 12/3".into(),
                begin: Some(akte_server::pb::google::r#type::Date {
                    year: 2026,
                    month: 1,
                    day: 15,
                }),
                confidentiality: pb::Confidentiality::Restricted as i32,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec![
                    "subject".into(),
                    "file.begin".into(),
                    "confidentiality".into(),
                ],
            }),
            etag: String::new(),
            reason: String::new(),
        })
        .await?
        .into_inner();
    assert_eq!(file.confidentiality, pb::Confidentiality::Restricted as i32);
    assert_eq!(file.begin.unwrap().day, 15);
    let got = registrar
        .files
        .get_file(pb::GetFileRequest {
            name: file.name.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(got, file);

    // Cases.
    let case = clerk
        .cases
        .create_case(pb::CreateCaseRequest {
            parent: file.name.clone(),
            case: Some(pb::Case {
                subject: "Beteiligung Nachbarn".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(case.number, 1);
    let subcase = clerk
        .cases
        .create_case(pb::CreateCaseRequest {
            parent: case.name.clone(),
            case: Some(pb::Case {
                subject: "Einwendung".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(subcase.parent_case, case.name);
    let cases = clerk
        .cases
        .list_cases(pb::ListCasesRequest {
            parent: file.name.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(cases.cases, vec![case.clone()]);
    let case = clerk
        .cases
        .update_case(pb::UpdateCaseRequest {
            case: Some(pb::Case {
                name: case.name.clone(),
                notes: "Frist 4 Wochen".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["notes".into()],
            }),
            etag: case.etag.clone(),
            reason: String::new(),
        })
        .await?
        .into_inner();
    assert_eq!(case.notes, "Frist 4 Wochen");
    let closed = clerk
        .cases
        .close_case(pb::CloseCaseRequest {
            name: case.name.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(closed.state, pb::State::Closed as i32);
    let got = clerk
        .cases
        .get_case(pb::GetCaseRequest {
            name: subcase.name.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(got.state, pb::State::Closed as i32, "closing cascades");
    let reopened = clerk
        .cases
        .reopen_case(pb::ReopenCaseRequest {
            name: case.name.clone(),
            etag: closed.etag.clone(),
            reason: "Nachtrag".into(),
        })
        .await?
        .into_inner();
    assert_eq!(reopened.state, pb::State::Open as i32);

    // Documents: in a case, attachments, update.
    let in_case = clerk
        .documents
        .create_document(pb::CreateDocumentRequest {
            parent: case.name.clone(),
            document: Some(pb::Document {
                subject: "Stellungnahme".into(),
                recipients: vec!["Bauamt".into()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(in_case.parent, case.name);
    assert_eq!(in_case.file, file.name);
    let docs = clerk
        .documents
        .list_documents(pb::ListDocumentsRequest {
            parent: case.name.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(docs.documents, vec![in_case.clone()]);
    let doc = clerk
        .documents
        .update_document(pb::UpdateDocumentRequest {
            document: Some(pb::Document {
                name: doc.name.clone(),
                sender: "Familie Müller".into(),
                received_on: Some(akte_server::pb::google::r#type::Date {
                    year: 2026,
                    month: 2,
                    day: 1,
                }),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["sender".into(), "received_on".into()],
            }),
            etag: doc.etag.clone(),
            reason: String::new(),
        })
        .await?
        .into_inner();
    assert_eq!(doc.sender, "Familie Müller");

    // Versions: streamed upload of 2.5 MiB, download, a staged second rendition.
    let data = bytes_of(5 << 19, 1);
    let v1 = upload(&mut clerk, header(&doc.name, &data, "bauantrag.pdf"), &data).await?;
    assert_eq!(v1.number, 1);
    assert_eq!(v1.renditions[0].sha256, sha256(&data));
    let (meta, back) = download(&mut clerk, &v1.renditions[0].name).await?;
    assert_eq!(meta, v1.renditions[0]);
    assert!(back == data, "downloaded bytes equal the uploaded ones");
    let (_, back) = download(&mut clerk, &v1.name).await?;
    assert!(back == data, "a version name downloads its first rendition");

    let pdfa = bytes_of(300_000, 2);
    let staged = clerk
        .documents
        .upload_rendition(tokio_stream::iter(upload_rendition_messages(
            pb::UploadRenditionHeader {
                parent: doc.name.clone(),
                sha256: sha256(&pdfa),
                size: pdfa.len() as u64,
            },
            Bytes::from(pdfa.clone()),
            100_000,
        )))
        .await?
        .into_inner();
    assert_eq!(staged.sha256, sha256(&pdfa));
    let docx = b"PK\x03\x04 docx".to_vec();
    let mut h = header(&doc.name, &docx, "bauantrag.docx");
    h.upload.as_mut().unwrap().media_type =
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document".into();
    h.comment = "mit PDF/A".into();
    h.staged_renditions = vec![pb::RenditionUpload {
        file_name: "bauantrag.pdf".into(),
        media_type: "application/pdf".into(),
        sha256: staged.sha256.clone(),
        size: staged.size,
    }];
    let v2 = upload(&mut clerk, h, &docx).await?;
    assert_eq!(v2.number, 2);
    assert_eq!(v2.renditions.len(), 2);
    let (_, back) = download(&mut clerk, &v2.renditions[1].name).await?;
    assert!(back == pdfa);
    let got = clerk
        .documents
        .get_version(pb::GetVersionRequest {
            name: v2.name.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(got, v2);
    let versions = clerk
        .documents
        .list_versions(pb::ListVersionsRequest {
            parent: doc.name.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(versions.versions, vec![v1.clone(), v2.clone()]);
    let got = clerk
        .documents
        .get_document(pb::GetDocumentRequest {
            name: doc.name.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(got.version_count, 2);

    // An empty rendition is a valid upload.
    let v3 = upload(&mut clerk, header(&doc.name, b"", "leer.txt"), b"").await?;
    let (_, back) = download(&mut clerk, &v3.name).await?;
    assert!(back.is_empty());

    // History.
    let hist = clerk
        .history
        .list_history(pb::ListHistoryRequest {
            parent: file.name.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(hist.entries[0].action, "file.create");
    assert_eq!(hist.entries[0].actor, "registrar:weber");
    let upd = &hist.entries[1];
    assert_eq!(upd.action, "file.update");
    assert!(upd
        .changes
        .iter()
        .any(|c| c.field == "subject" && c.old_value == "\"Neubau Einfamilienhaus\""));

    // Closing the file: nothing new goes in until it is reopened.
    let closed = registrar
        .files
        .close_file(pb::CloseFileRequest {
            name: file.name.clone(),
            etag: file.etag.clone(),
            close_date: None,
        })
        .await?
        .into_inner();
    assert_eq!(closed.state, pb::State::Closed as i32);
    assert!(closed.close_date.is_some());
    let before = content_objects(&env.server, t);
    let fresh = bytes_of(1000, 3);
    expect_err(
        upload(&mut clerk, header(&doc.name, &fresh, "spät.pdf"), &fresh)
            .await
            .map(tonic::Response::new),
        Code::FailedPrecondition,
        "OBJECT_CLOSED",
    );
    assert_eq!(
        content_objects(&env.server, t),
        before,
        "no bytes stored for a closed file"
    );
    expect_err(
        clerk
            .cases
            .create_case(pb::CreateCaseRequest {
                parent: file.name.clone(),
                case: Some(pb::Case {
                    subject: "Zu spät".into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
        "OBJECT_CLOSED",
    );
    expect_err(
        clerk
            .documents
            .update_document(pb::UpdateDocumentRequest {
                document: Some(pb::Document {
                    name: doc.name.clone(),
                    subject: "Geändert".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["subject".into()],
                }),
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
        "OBJECT_CLOSED",
    );
    expect_err(
        registrar
            .files
            .close_file(pb::CloseFileRequest {
                name: file.name.clone(),
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
        "INVALID_STATE",
    );
    expect_err(
        registrar
            .files
            .reopen_file(pb::ReopenFileRequest {
                name: file.name.clone(),
                etag: file.etag.clone(),
                reason: String::new(),
            })
            .await,
        Code::Aborted,
        "STALE_ETAG",
    );
    let reopened = registrar
        .files
        .reopen_file(pb::ReopenFileRequest {
            name: file.name.clone(),
            etag: closed.etag.clone(),
            reason: "Widerspruch".into(),
        })
        .await?
        .into_inner();
    assert_eq!(reopened.state, pb::State::Open as i32);
    upload(&mut clerk, header(&doc.name, &fresh, "spät.pdf"), &fresh).await?;

    // Journal: checkpoint, entry, inclusion and consistency proofs, checked here.
    let first = registrar
        .journal
        .create_checkpoint(pb::CreateCheckpointRequest {
            parent: tenant.clone(),
        })
        .await?
        .into_inner();
    let verifier = akte_core::keys::VerifierKey::parse(&first.verifier_key)?;
    let (cp, _) = akte_core::note::Checkpoint::open(&first.signed_note, &verifier)?;
    assert_eq!(cp.size, first.tree_size);
    upload(
        &mut clerk,
        header(&doc.name, b"noch eine", "n.txt"),
        b"noch eine",
    )
    .await?;
    let second = registrar
        .journal
        .create_checkpoint(pb::CreateCheckpointRequest {
            parent: tenant.clone(),
        })
        .await?
        .into_inner();
    let latest = clerk
        .journal
        .get_latest_checkpoint(pb::GetLatestCheckpointRequest {
            parent: tenant.clone(),
            cosigned: false,
        })
        .await?
        .into_inner();
    assert_eq!(latest, second);
    let entry = clerk
        .journal
        .get_entry(pb::GetEntryRequest {
            name: format!(
                "{tenant}/entries/{}",
                v1.created.as_ref().unwrap().journal_seq
            ),
        })
        .await?
        .into_inner();
    assert_eq!(entry.kind, "version.add");
    assert_eq!(entry.actor, "clerk:schmidt");
    let leaf = akte_core::merkle::leaf_hash(&entry.encoded_entry);
    assert_eq!(leaf.as_bytes().as_slice(), &entry.leaf_hash[..]);
    assert!(entry
        .payloads
        .iter()
        .any(|p| p.kind == "content" && hex::encode(&p.sha256) == sha256_hex(&data)));
    let proof = clerk
        .journal
        .get_inclusion_proof(pb::GetInclusionProofRequest {
            parent: tenant.clone(),
            seq: entry.seq,
            tree_size: 0,
        })
        .await?
        .into_inner();
    assert_eq!(proof.tree_size, second.tree_size);
    let digest = |b: &[u8]| akte_core::Digest::from_slice(b).unwrap();
    akte_core::merkle::verify_inclusion(
        &leaf,
        entry.seq,
        proof.tree_size,
        &proof.hashes.iter().map(|h| digest(h)).collect::<Vec<_>>(),
        &digest(&second.root_hash),
    )?;
    let cons = clerk
        .journal
        .get_consistency_proof(pb::GetConsistencyProofRequest {
            parent: tenant.clone(),
            first_tree_size: first.tree_size,
            second_tree_size: second.tree_size,
        })
        .await?
        .into_inner();
    akte_core::merkle::verify_consistency(
        first.tree_size,
        second.tree_size,
        &digest(&first.root_hash),
        &digest(&second.root_hash),
        &cons.hashes.iter().map(|h| digest(h)).collect::<Vec<_>>(),
    )?;
    expect_err(
        clerk
            .journal
            .get_inclusion_proof(pb::GetInclusionProofRequest {
                parent: tenant.clone(),
                seq: 0,
                tree_size: second.tree_size + 100,
            })
            .await,
        Code::OutOfRange,
        "BEYOND_JOURNAL",
    );
    expect_err(
        clerk
            .journal
            .get_entry(pb::GetEntryRequest {
                name: format!("{tenant}/entries/999999"),
            })
            .await,
        Code::OutOfRange,
        "BEYOND_JOURNAL",
    );
    expect_err(
        clerk
            .journal
            .create_checkpoint(pb::CreateCheckpointRequest {
                parent: tenant.clone(),
            })
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );

    // Verification by an archivist.
    let arch = env.token(t, "archiv:stadt", &[pb::Role::Archivist]).await;
    let mut archivist = env.client(Some(&arch)).await;
    let report = verified(
        &mut archivist,
        pb::VerifyTenantRequest {
            name: tenant.clone(),
            incremental: false,
            skip_content: false,
        },
    )
    .await?;
    assert!(report.clean, "{:?}", report.problems);
    assert!(report.content_objects >= 4);
    let again = verified(
        &mut archivist,
        pb::VerifyTenantRequest {
            name: tenant.clone(),
            incremental: true,
            skip_content: false,
        },
    )
    .await?;
    assert!(again.clean);
    expect_err(
        clerk
            .verification
            .verify_tenant(pb::VerifyTenantRequest {
                name: tenant.clone(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );

    // Metrics saw the calls, per method and status.
    let m = env.server.metrics();
    assert!(m.count("/akte.v1.DocumentService/AddVersion", Code::Ok) >= 4);
    assert!(m.count("/akte.v1.FileService/CloseFile", Code::FailedPrecondition) >= 1);
    env.server.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_roles_and_tenant_walls() -> R<()> {
    let env = env().await;
    let a = fixture(&env, "stadt-a").await;
    let mut b = fixture(&env, "stadt-b").await;
    let file_a = a.file.name.clone();

    // No token, a malformed one, an unknown one.
    let mut anon = env.client(None).await;
    expect_err(
        anon.files
            .get_file(pb::GetFileRequest {
                name: file_a.clone(),
            })
            .await,
        Code::Unauthenticated,
        "UNAUTHENTICATED",
    );
    let mut wrong = env.client(Some("akte_0000")).await;
    expect_err(
        wrong
            .files
            .get_file(pb::GetFileRequest {
                name: file_a.clone(),
            })
            .await,
        Code::Unauthenticated,
        "UNAUTHENTICATED",
    );

    // Another tenant's file is NOT_FOUND, exactly like one that does not exist.
    let s1 = expect_err(
        b.clerk
            .files
            .get_file(pb::GetFileRequest {
                name: file_a.clone(),
            })
            .await,
        Code::NotFound,
        "NOT_FOUND",
    );
    let missing = format!("tenants/stadt-a/files/{}", uuid::Uuid::new_v4());
    let s2 = expect_err(
        b.clerk
            .files
            .get_file(pb::GetFileRequest {
                name: missing.clone(),
            })
            .await,
        Code::NotFound,
        "NOT_FOUND",
    );
    assert_eq!(
        s1.message().replace(&file_a, "X"),
        s2.message().replace(&missing, "X")
    );
    let s3 = expect_err(
        b.clerk
            .files
            .get_file(pb::GetFileRequest {
                name: file_a.replace("stadt-a", "no-such-tenant"),
            })
            .await,
        Code::NotFound,
        "NOT_FOUND",
    );
    assert_eq!(reason(&s3), "NOT_FOUND");
    expect_err(
        b.registrar
            .files
            .close_file(pb::CloseFileRequest {
                name: file_a.clone(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "NOT_FOUND",
    );
    let data = b"fremd".to_vec();
    expect_err(
        upload(&mut b.clerk, header(&a.doc.name, &data, "x.pdf"), &data)
            .await
            .map(tonic::Response::new),
        Code::NotFound,
        "NOT_FOUND",
    );
    expect_err(
        b.clerk
            .journal
            .get_latest_checkpoint(pb::GetLatestCheckpointRequest {
                parent: "tenants/stadt-a".into(),
                cosigned: false,
            })
            .await,
        Code::NotFound,
        "NOT_FOUND",
    );
    // Within its own tenant, a name of the wrong kind is no such object either.
    expect_err(
        b.clerk
            .cases
            .get_case(pb::GetCaseRequest {
                name: b.file.name.replace("/files/", "/cases/"),
            })
            .await,
        Code::NotFound,
        "NOT_FOUND",
    );

    // Roles: a reader reads but writes nothing; a clerk keeps no file plan.
    let reader = env
        .token("stadt-b", "reader:lesend", &[pb::Role::Reader])
        .await;
    let mut reader = env.client(Some(&reader)).await;
    reader
        .files
        .get_file(pb::GetFileRequest {
            name: b.file.name.clone(),
        })
        .await?;
    let (_, back) = download(
        &mut reader,
        &upload(&mut b.clerk, header(&b.doc.name, b"abc", "a.txt"), b"abc")
            .await?
            .name,
    )
    .await?;
    assert_eq!(back, b"abc");
    let s = expect_err(
        reader
            .documents
            .create_document(pb::CreateDocumentRequest {
                parent: b.file.name.clone(),
                document: Some(pb::Document {
                    subject: "Nein".into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    assert!(error_info(&s).unwrap().metadata["required"].contains("clerk"));
    expect_err(
        b.clerk
            .plan
            .create_plan_unit(pb::CreatePlanUnitRequest {
                parent: "tenants/stadt-b".into(),
                plan_unit: Some(pb::PlanUnit {
                    code: "1".into(),
                    title: "Nein".into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    expect_err(
        b.clerk
            .files
            .close_file(pb::CloseFileRequest {
                name: b.file.name.clone(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    expect_err(
        b.clerk
            .tenants
            .create_tenant(pb::CreateTenantRequest {
                tenant_id: "neu".into(),
            })
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    expect_err(
        b.clerk
            .tenants
            .list_tenants(pb::ListTenantsRequest::default())
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );

    // Tenant admins manage their own tenant's tokens, not another's and not global ones.
    let tadmin = env.token("stadt-b", "admin:b", &[pb::Role::Admin]).await;
    let mut tadmin = env.client(Some(&tadmin)).await;
    let created = tadmin
        .tenants
        .create_token(pb::CreateTokenRequest {
            parent: "tenants/stadt-b".into(),
            principal: "reader:temp".into(),
            roles: vec![pb::Role::Reader as i32],
            description: "befristet".into(),
            expire_time: None,
            org_units: Vec::new(),
        })
        .await?
        .into_inner();
    let token = created.token.unwrap();
    assert!(created.secret.starts_with("akte_"));

    // Expiry: a past moment is refused; a token expiring soon works until then and is
    // refused as expired afterwards.
    let expiring = |at: chrono::DateTime<chrono::Utc>| pb::CreateTokenRequest {
        parent: "tenants/stadt-b".into(),
        principal: "reader:kurz".into(),
        roles: vec![pb::Role::Reader as i32],
        description: String::new(),
        expire_time: Some(prost_types::Timestamp {
            seconds: at.timestamp(),
            nanos: 0,
        }),
        org_units: Vec::new(),
    };
    let now = chrono::Utc::now();
    expect_err(
        tadmin
            .tenants
            .create_token(expiring(now - chrono::Duration::seconds(5)))
            .await,
        Code::InvalidArgument,
        "INVALID_FIELD",
    );
    let short = tadmin
        .tenants
        .create_token(expiring(now + chrono::Duration::seconds(2)))
        .await?
        .into_inner();
    assert!(short.token.as_ref().unwrap().expire_time.is_some());
    let mut short_client = env.client(Some(&short.secret)).await;
    short_client
        .tenants
        .get_tenant(pb::GetTenantRequest {
            name: "tenants/stadt-b".into(),
        })
        .await?;
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let s = expect_err(
        short_client
            .tenants
            .get_tenant(pb::GetTenantRequest {
                name: "tenants/stadt-b".into(),
            })
            .await,
        Code::Unauthenticated,
        "UNAUTHENTICATED",
    );
    assert!(s.message().contains("expired"), "{s:?}");
    let listed = tadmin
        .tenants
        .list_tokens(pb::ListTokensRequest {
            parent: "tenants/stadt-b".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(listed.tokens.contains(&token));
    let mut temp = env.client(Some(&created.secret)).await;
    temp.files
        .get_file(pb::GetFileRequest {
            name: b.file.name.clone(),
        })
        .await?;
    tadmin
        .tenants
        .delete_token(pb::DeleteTokenRequest {
            name: token.name.clone(),
        })
        .await?;
    expect_err(
        temp.files
            .get_file(pb::GetFileRequest {
                name: b.file.name.clone(),
            })
            .await,
        Code::Unauthenticated,
        "UNAUTHENTICATED",
    );
    expect_err(
        tadmin
            .tenants
            .create_token(pb::CreateTokenRequest {
                parent: "tenants/stadt-a".into(),
                principal: "x".into(),
                roles: vec![pb::Role::Admin as i32],
                description: String::new(),
                expire_time: None,
                org_units: Vec::new(),
            })
            .await,
        Code::NotFound,
        "NOT_FOUND",
    );
    expect_err(
        tadmin
            .tenants
            .create_token(pb::CreateTokenRequest {
                parent: "tenants/-".into(),
                principal: "x".into(),
                roles: vec![pb::Role::Admin as i32],
                description: String::new(),
                expire_time: None,
                org_units: Vec::new(),
            })
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    // Tokens are stored hashed, the file is private (in the data directory; in the
    // database the blob is sealed, see tests/postgres.rs).
    if support::on_postgres() {
        env.server.shutdown().await?;
        return Ok(());
    }
    let stored = std::fs::read_to_string(env.dir.path().join("tokens.json"))?;
    assert!(!stored.contains(&created.secret) && !stored.contains(&env.admin));
    use std::os::unix::fs::PermissionsExt;
    for f in ["tokens.json", "bootstrap-token"] {
        let mode = std::fs::metadata(env.dir.path().join(f))?
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    env.server.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_arguments_and_pagination() -> R<()> {
    let env = env().await;
    let mut f = fixture(&env, "bauamt").await;
    for name in [
        "",
        "files/x",
        "tenants/bauamt/files/not-a-uuid",
        "tenants/Bauamt/files/7d9f0c1e-4b1a-4c3e-9f00-2b6c3d4e5f60",
        "tenants/bauamt/planUnits/7d9f0c1e-4b1a-4c3e-9f00-2b6c3d4e5f60",
    ] {
        expect_err(
            f.clerk
                .files
                .get_file(pb::GetFileRequest { name: name.into() })
                .await,
            Code::InvalidArgument,
            "INVALID_NAME",
        );
    }
    let s = expect_err(
        f.registrar
            .files
            .create_file(pb::CreateFileRequest {
                parent: f.unit.name.clone(),
                file: Some(pb::File {
                    subject: "   ".into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "INVALID_FIELD",
    );
    assert_eq!(error_info(&s).unwrap().metadata["field"], "subject");
    let st = rpc::Status::decode(s.details())?;
    let bad = st
        .details
        .iter()
        .find(|a| a.type_url.ends_with("google.rpc.BadRequest"))
        .expect("BadRequest detail");
    let bad = rpc::BadRequest::decode(&bad.value[..])?;
    assert_eq!(bad.field_violations[0].field, "subject");
    expect_err(
        f.registrar
            .files
            .create_file(pb::CreateFileRequest {
                parent: f.unit.name.clone(),
                file: Some(pb::File {
                    subject: "Datum".into(),
                    begin: Some(akte_server::pb::google::r#type::Date {
                        year: 2026,
                        month: 2,
                        day: 30,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "INVALID_FIELD",
    );
    expect_err(
        f.registrar
            .files
            .create_file(pb::CreateFileRequest {
                parent: f.unit.name.clone(),
                file: Some(pb::File {
                    subject: "Id".into(),
                    ..Default::default()
                }),
                file_id: "nicht-uuid".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "INVALID_FIELD",
    );
    expect_err(
        f.registrar
            .files
            .create_file(pb::CreateFileRequest {
                parent: f.unit.name.clone(),
                file: Some(pb::File {
                    subject: "Id".into(),
                    ..Default::default()
                }),
                file_id: f.file.name.rsplit('/').next().unwrap().into(),
                ..Default::default()
            })
            .await,
        Code::AlreadyExists,
        "ALREADY_EXISTS",
    );
    expect_err(
        f.clerk
            .cases
            .create_case(pb::CreateCaseRequest {
                parent: f.doc.name.clone(),
                case: Some(pb::Case {
                    subject: "x".into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "INVALID_NAME",
    );
    expect_err(
        f.registrar
            .files
            .update_file(pb::UpdateFileRequest {
                file: Some(pb::File {
                    name: f.file.name.clone(),
                    reference: "gefälscht".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["reference".into()],
                }),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "INVALID_FIELD",
    );
    expect_err(
        f.registrar
            .files
            .update_file(pb::UpdateFileRequest {
                file: Some(pb::File {
                    name: f.file.name.clone(),
                    ..Default::default()
                }),
                update_mask: None,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "INVALID_FIELD",
    );
    expect_err(
        f.registrar
            .files
            .update_file(pb::UpdateFileRequest {
                file: Some(pb::File {
                    name: f.file.name.clone(),
                    subject: "x".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["subject".into()],
                }),
                etag: "abc".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "INVALID_FIELD",
    );
    expect_err(
        f.registrar
            .plan
            .list_plan_units(pb::ListPlanUnitsRequest {
                parent: "tenants/bauamt".into(),
                page_size: -1,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "INVALID_FIELD",
    );
    expect_err(
        f.registrar
            .plan
            .list_plan_units(pb::ListPlanUnitsRequest {
                parent: "tenants/bauamt".into(),
                page_token: "bogus".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "INVALID_PAGE_TOKEN",
    );
    expect_err(
        f.registrar
            .plan
            .delete_plan_unit(pb::DeletePlanUnitRequest {
                name: f.unit.name.clone(),
                etag: f.unit.etag.clone(),
            })
            .await,
        Code::FailedPrecondition,
        "PLAN_UNIT_IN_USE",
    );

    // Pagination over 5 more top-level units, 2 per page.
    for i in 0..5 {
        f.registrar
            .plan
            .create_plan_unit(pb::CreatePlanUnitRequest {
                parent: "tenants/bauamt".into(),
                plan_unit: Some(pb::PlanUnit {
                    code: format!("70{i}"),
                    title: format!("Einheit {i}"),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await?;
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = f
            .registrar
            .plan
            .list_plan_units(pb::ListPlanUnitsRequest {
                parent: "tenants/bauamt".into(),
                page_size: 2,
                page_token: token.clone(),
            })
            .await?
            .into_inner();
        assert!(page.plan_units.len() <= 2);
        seen.extend(page.plan_units.into_iter().map(|u| u.code));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 6);
    env.server.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_uploads_store_nothing() -> R<()> {
    let env = env().await;
    let mut f = fixture(&env, "bauamt").await;
    let t = "bauamt";
    let data = bytes_of(700_000, 7);
    let before = content_objects(&env.server, t);

    // Declared digest differs.
    let mut h = header(&f.doc.name, &data, "a.pdf");
    h.upload.as_mut().unwrap().sha256 = sha256(b"something else");
    let s = expect_err(
        upload(&mut f.clerk, h, &data)
            .await
            .map(tonic::Response::new),
        Code::InvalidArgument,
        "DIGEST_MISMATCH",
    );
    assert_eq!(
        error_info(&s).unwrap().metadata["actual_sha256"],
        sha256_hex(&data)
    );
    // Fewer bytes than declared, more bytes than declared.
    let mut h = header(&f.doc.name, &data, "a.pdf");
    h.upload.as_mut().unwrap().size += 1;
    expect_err(
        upload(&mut f.clerk, h, &data)
            .await
            .map(tonic::Response::new),
        Code::InvalidArgument,
        "SIZE_MISMATCH",
    );
    let mut h = header(&f.doc.name, &data, "a.pdf");
    h.upload.as_mut().unwrap().size -= 1;
    expect_err(
        upload(&mut f.clerk, h, &data)
            .await
            .map(tonic::Response::new),
        Code::InvalidArgument,
        "SIZE_MISMATCH",
    );
    // A chunk over 1 MiB (within the message limit).
    let big = bytes_of((1 << 20) + 10, 8);
    let msgs = vec![
        pb::AddVersionRequest {
            message: Some(pb::add_version_request::Message::Header(header(
                &f.doc.name,
                &big,
                "b.pdf",
            ))),
        },
        pb::AddVersionRequest {
            message: Some(pb::add_version_request::Message::Chunk(Bytes::from(
                big.clone(),
            ))),
        },
    ];
    expect_err(
        f.clerk
            .documents
            .add_version(tokio_stream::iter(msgs))
            .await,
        Code::InvalidArgument,
        "UPLOAD_PROTOCOL",
    );
    // A message over the 4 MiB limit is refused by the transport.
    let huge = bytes_of((4 << 20) + 100, 9);
    let msgs = vec![
        pb::AddVersionRequest {
            message: Some(pb::add_version_request::Message::Header(header(
                &f.doc.name,
                &huge,
                "c.pdf",
            ))),
        },
        pb::AddVersionRequest {
            message: Some(pb::add_version_request::Message::Chunk(Bytes::from(huge))),
        },
    ];
    let s = f
        .clerk
        .documents
        .add_version(tokio_stream::iter(msgs))
        .await
        .expect_err("oversized message");
    eprintln!("oversized stream message: {:?} {}", s.code(), s.message());
    assert!(
        matches!(
            s.code(),
            Code::ResourceExhausted | Code::OutOfRange | Code::InvalidArgument
        ),
        "{s:?}"
    );
    let s = f
        .clerk
        .files
        .get_file(pb::GetFileRequest {
            name: "x".repeat(5 << 20),
        })
        .await
        .expect_err("oversized unary message");
    eprintln!("oversized unary message: {:?} {}", s.code(), s.message());
    assert!(
        matches!(
            s.code(),
            Code::ResourceExhausted | Code::OutOfRange | Code::InvalidArgument
        ),
        "{s:?}"
    );
    // Chunks before the header; a header without any rendition; staged content never sent.
    let msgs = vec![pb::AddVersionRequest {
        message: Some(pb::add_version_request::Message::Chunk(Bytes::from_static(
            b"x",
        ))),
    }];
    expect_err(
        f.clerk
            .documents
            .add_version(tokio_stream::iter(msgs))
            .await,
        Code::InvalidArgument,
        "UPLOAD_PROTOCOL",
    );
    let mut h = header(&f.doc.name, &data, "a.pdf");
    h.upload = None;
    expect_err(
        upload(&mut f.clerk, h, &[]).await.map(tonic::Response::new),
        Code::InvalidArgument,
        "INVALID_FIELD",
    );
    let mut h = header(&f.doc.name, &data, "a.pdf");
    h.upload = None;
    h.staged_renditions = vec![pb::RenditionUpload {
        file_name: "nie.pdf".into(),
        media_type: "application/pdf".into(),
        sha256: sha256(b"never uploaded"),
        size: 14,
    }];
    expect_err(
        upload(&mut f.clerk, h, &[]).await.map(tonic::Response::new),
        Code::FailedPrecondition,
        "CONTENT_NOT_UPLOADED",
    );
    let mut h = header(&f.doc.name, &data, "../etc/passwd");
    h.upload.as_mut().unwrap().media_type = "pdf".into();
    expect_err(
        upload(&mut f.clerk, h, &data)
            .await
            .map(tonic::Response::new),
        Code::InvalidArgument,
        "INVALID_FIELD",
    );

    assert_eq!(
        content_objects(&env.server, t),
        before,
        "no failed upload left bytes behind"
    );
    let doc = f
        .clerk
        .documents
        .get_document(pb::GetDocumentRequest {
            name: f.doc.name.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(doc.version_count, 0, "no failed upload recorded a version");
    // The same bytes with the right declaration go through.
    upload(&mut f.clerk, header(&f.doc.name, &data, "a.pdf"), &data).await?;
    env.server.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_refused_with_resource_exhausted() -> R<()> {
    let env = env_with(|c| c.max_concurrent_requests = 1).await;
    let mut f = fixture(&env, "bauamt").await;
    // Let the fixture's calls finish their bookkeeping, then hold the only slot with an
    // upload that has sent its header and waits.
    for _ in 0..500 {
        if env.server.metrics().in_flight() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let data = bytes_of(10, 1);
    tx.send(pb::AddVersionRequest {
        message: Some(pb::add_version_request::Message::Header(header(
            &f.doc.name,
            &data,
            "a.pdf",
        ))),
    })
    .await?;
    let mut docs = f.clerk.documents.clone();
    let held = tokio::spawn(async move {
        docs.add_version(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    // Probe only once the upload holds the slot (a probe could take it first otherwise).
    for _ in 0..500 {
        if env.server.metrics().in_flight() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        env.server.metrics().in_flight(),
        1,
        "the upload is in flight"
    );
    let mut refused = None;
    for _ in 0..100 {
        match f
            .clerk
            .files
            .get_file(pb::GetFileRequest {
                name: f.file.name.clone(),
            })
            .await
        {
            Err(s) => {
                refused = Some(s);
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let s = refused.expect("a call beyond the limit is refused");
    assert_eq!(s.code(), Code::ResourceExhausted);
    assert_eq!(reason(&s), "OVERLOADED");
    tx.send(pb::AddVersionRequest {
        message: Some(pb::add_version_request::Message::Chunk(Bytes::from(data))),
    })
    .await?;
    drop(tx);
    held.await??;
    f.clerk
        .files
        .get_file(pb::GetFileRequest {
            name: f.file.name.clone(),
        })
        .await?;
    env.server.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reflection_and_metrics_endpoint() -> R<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tonic_health::pb::health_client::HealthClient;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let env = env().await;
    let channel = tonic::transport::Endpoint::from_shared(env.url())?
        .connect()
        .await?;
    let mut health = HealthClient::new(channel.clone());
    let r = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "akte.v1.DocumentService".into(),
        })
        .await?
        .into_inner();
    assert_eq!(
        r.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    // Whether tenants accept writes: overall and per tenant, checked once a second.
    let mut admin = env.admin().await;
    admin
        .tenants
        .create_tenant(pb::CreateTenantRequest {
            tenant_id: "health".into(),
        })
        .await?;
    let mut writes = None;
    for _ in 0..50 {
        let per_tenant = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: "akte.writes/health".into(),
            })
            .await;
        if let Ok(r) = per_tenant {
            writes = Some(r.into_inner().status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        writes,
        Some(tonic_health::pb::health_check_response::ServingStatus::Serving as i32)
    );
    let all = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "akte.writes".into(),
        })
        .await?
        .into_inner();
    assert_eq!(
        all.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let mut refl = ServerReflectionClient::new(channel);
    let mut s = refl
        .server_reflection_info(tokio_stream::iter(vec![ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        }]))
        .await?
        .into_inner();
    let mut names = Vec::new();
    while let Some(m) = s.message().await? {
        if let Some(MessageResponse::ListServicesResponse(l)) = m.message_response {
            names.extend(l.service.into_iter().map(|s| s.name));
        }
    }
    for svc in [
        "akte.v1.TenantService",
        "akte.v1.FilePlanService",
        "akte.v1.FileService",
        "akte.v1.CaseService",
        "akte.v1.DocumentService",
        "akte.v1.HistoryService",
        "akte.v1.JournalService",
        "akte.v1.VerificationService",
    ] {
        assert!(names.iter().any(|n| n == svc), "{svc} in {names:?}");
    }
    fixture(&env, "bauamt").await;
    let addr = env.server.metrics_addr.expect("metrics");
    let mut conn = tokio::net::TcpStream::connect(addr).await?;
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await?;
    let mut text = String::new();
    conn.read_to_string(&mut text).await?;
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(text.contains(
        "akted_requests_total{method=\"/akte.v1.FileService/CreateFile\",code=\"OK\"} 1"
    ));
    assert!(text.contains("akted_request_duration_seconds_bucket"));
    assert!(text.contains("akted_journal_size{tenant=\"bauamt\"}"));
    assert!(text.contains("akted_journal_flushes_total{tenant=\"bauamt\"}"));
    assert!(text.contains("akted_received_bytes_total"));
    env.server.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_text_only_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.listen = "0.0.0.0:0".parse().unwrap();
    match start(cfg).await {
        Err(ServerError::PlainTextNotLoopback(_)) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// An akted child process, killed if a test fails before stopping it.
struct Daemon(std::process::Child);

impl Daemon {
    /// Sends SIGTERM and waits for the exit code.
    fn terminate(&mut self) -> Option<i32> {
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        let rc = unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        assert_eq!(rc, 0, "SIGTERM delivered");
        tokio::task::block_in_place(|| self.0.wait()).ok()?.code()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_akted(dir: &Path, port: u16) -> Daemon {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_akted"))
        .args([
            "--data-dir",
            dir.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--metrics-listen",
            "off",
            "--drain-timeout-secs",
            "20",
        ])
        .env("AKTED_LOG", "warn")
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn akted");
    Daemon(child)
}

async fn connect_retry(url: &str, token: &str) -> Clients {
    for _ in 0..300 {
        if let Ok(c) = Clients::connect(url, Some(token), &ClientTls::default()).await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("akted did not come up at {url}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_uploads_loses_no_acknowledged_upload() -> R<()> {
    let dir = tempfile::tempdir()?;
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut child = spawn_akted(dir.path(), port);
    let boot = dir.path().join("bootstrap-token");
    for _ in 0..300 {
        if boot.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let admin = std::fs::read_to_string(&boot)?.trim().to_owned();
    let mut c = connect_retry(&url, &admin).await;
    c.tenants
        .create_tenant(pb::CreateTenantRequest {
            tenant_id: "bauamt".into(),
        })
        .await?;
    let unit = c
        .plan
        .create_plan_unit(pb::CreatePlanUnitRequest {
            parent: "tenants/bauamt".into(),
            plan_unit: Some(pb::PlanUnit {
                code: "1".into(),
                title: "Allgemein".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    let file = c
        .files
        .create_file(pb::CreateFileRequest {
            parent: unit.name,
            file: Some(pb::File {
                subject: "Last".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut writers = Vec::new();
    for w in 0..6u64 {
        let doc = c
            .documents
            .create_document(pb::CreateDocumentRequest {
                parent: file.name.clone(),
                document: Some(pb::Document {
                    subject: format!("Dokument {w}"),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await?
            .into_inner();
        let mut c = c.clone();
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..10_000u64 {
                let data = bytes_of(
                    20_000 + ((w * 7919 + i * 104_729) % 400_000) as usize,
                    w * 100_000 + i,
                );
                match upload(&mut c, header(&doc.name, &data, "scan.pdf"), &data).await {
                    Ok(v) => acked.push((v.name, sha256(&data))),
                    Err(_) => break,
                }
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let code = child.terminate();
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await?);
    }
    assert_eq!(code, Some(0), "akted exits 0 after SIGTERM");
    eprintln!("{} uploads acknowledged before SIGTERM", acked.len());
    assert!(
        acked.len() >= 6,
        "uploads were acknowledged before the signal: {}",
        acked.len()
    );

    // Restart: every acknowledged version is there, byte for byte, and the store verifies.
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut child = spawn_akted(dir.path(), port);
    let mut c = connect_retry(&url, &admin).await;
    for (name, sha) in &acked {
        let (meta, bytes) = download(&mut c, name).await?;
        assert_eq!(&meta.sha256, sha, "{name}");
        assert_eq!(&sha256(&bytes), sha, "{name}");
    }
    let report = verified(
        &mut c,
        pb::VerifyTenantRequest {
            name: "tenants/bauamt".into(),
            incremental: false,
            skip_content: false,
        },
    )
    .await?;
    assert!(report.clean, "{:?}", report.problems);
    assert_eq!(child.terminate(), Some(0));
    Ok(())
}

/// Writes a CA, a server certificate for localhost and a client certificate (PEM files).
fn tls_files(dir: &Path) -> R<()> {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let server_key = KeyPair::generate()?;
    let mut server_params = CertificateParams::new(vec!["localhost".to_owned()])?;
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = server_params.signed_by(&server_key, &issuer)?;
    let client_key = KeyPair::generate()?;
    let mut client_params = CertificateParams::new(vec!["fachverfahren".to_owned()])?;
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = client_params.signed_by(&client_key, &issuer)?;
    for (name, pem) in [
        ("ca.pem", ca.pem()),
        ("server.pem", server.pem()),
        ("server.key", server_key.serialize_pem()),
        ("client.pem", client.pem()),
        ("client.key", client_key.serialize_pem()),
    ] {
        std::fs::write(dir.join(name), pem)?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls() -> R<()> {
    let certs = tempfile::tempdir()?;
    tls_files(certs.path())?;
    let p = |n: &str| certs.path().join(n);
    let env = env_with(|c| {
        c.tls = Some(akte_server::config::TlsFiles {
            cert: p("server.pem"),
            key: p("server.key"),
            client_ca: Some(p("ca.pem")),
        })
    })
    .await;
    let url = format!("https://{}", env.server.addr);
    let tls = ClientTls {
        ca: Some(p("ca.pem")),
        cert: Some(p("client.pem")),
        key: Some(p("client.key")),
        domain: Some("localhost".into()),
    };
    let mut c = Clients::connect(&url, Some(&env.admin), &tls).await?;
    let t = c
        .tenants
        .create_tenant(pb::CreateTenantRequest {
            tenant_id: "tls".into(),
        })
        .await?
        .into_inner();
    assert_eq!(t.tenant_id, "tls");
    // Without a client certificate the handshake fails: no call gets through.
    let no_cert = ClientTls {
        cert: None,
        key: None,
        ..tls.clone()
    };
    let refused = match Clients::connect(&url, Some(&env.admin), &no_cert).await {
        Err(_) => true,
        Ok(mut c) => c
            .tenants
            .list_tenants(pb::ListTenantsRequest::default())
            .await
            .is_err(),
    };
    assert!(refused, "a client without a certificate is refused");
    // Plain text to a TLS port fails too.
    let plain = Clients::connect(
        &format!("http://{}", env.server.addr),
        Some(&env.admin),
        &ClientTls::default(),
    )
    .await;
    let refused = match plain {
        Err(_) => true,
        Ok(mut c) => c
            .tenants
            .list_tenants(pb::ListTenantsRequest::default())
            .await
            .is_err(),
    };
    assert!(refused, "plain text is refused on a TLS port");
    env.server.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_content_ends_the_download_with_data_loss() -> R<()> {
    if support::on_postgres() {
        return Ok(()); // damages a pack file of the data directory
    }
    let env = env().await;
    let mut f = fixture(&env, "bauamt").await;
    let data = bytes_of(600_000, 11);
    let v = upload(&mut f.clerk, header(&f.doc.name, &data, "a.pdf"), &data).await?;
    // Flip one byte of the stored (incompressible, so raw) object near its end: the last
    // bytes of its pack record.
    let digest = akte_core::Digest::from_slice(&v.renditions[0].sha256).expect("32 bytes");
    let place = akte_core::embedded::content::ContentStore::open(
        &env.dir.path().join("tenants/bauamt/content"),
    )?
    .place(&digest)?
    .expect("the object is stored");
    let mut stored = std::fs::read(&place.path)?;
    let last = (place.offset + place.len - 10) as usize;
    stored[last] ^= 0xff;
    std::fs::write(&place.path, stored)?;
    let s = download(&mut f.clerk, &v.name)
        .await
        .expect_err("damaged bytes are not delivered as complete");
    assert_eq!(s.code(), Code::DataLoss, "{s:?}");
    assert_eq!(reason(&s), "CONTENT_CORRUPT");
    // A range far from the damage is not delivered as complete either: the whole rendition
    // is checked whatever range is asked for.
    let mut range = f
        .clerk
        .documents
        .download_rendition(pb::DownloadRenditionRequest {
            name: v.name.clone(),
            offset: 0,
            length: 100,
        })
        .await?
        .into_inner();
    let ended = loop {
        match range.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => break Ok(()),
            Err(s) => break Err(s),
        }
    };
    let s = ended.expect_err("the range of a damaged rendition ends with an error");
    assert_eq!(s.code(), Code::DataLoss, "{s:?}");
    assert_eq!(reason(&s), "CONTENT_CORRUPT");
    env.server.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_times_out_and_stores_nothing() -> R<()> {
    let env = env_with(|c| c.upload_idle_timeout = Duration::from_secs(1)).await;
    let mut f = fixture(&env, "bauamt").await;
    let before = content_objects(&env.server, "bauamt");
    let data = bytes_of(2000, 12);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(pb::AddVersionRequest {
        message: Some(pb::add_version_request::Message::Header(header(
            &f.doc.name,
            &data,
            "a.pdf",
        ))),
    })
    .await?;
    tx.send(pb::AddVersionRequest {
        message: Some(pb::add_version_request::Message::Chunk(
            Bytes::copy_from_slice(&data[..1000]),
        )),
    })
    .await?;
    let r = f
        .clerk
        .documents
        .add_version(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await;
    expect_err(r, Code::DeadlineExceeded, "UPLOAD_IDLE");
    drop(tx);
    assert_eq!(content_objects(&env.server, "bauamt"), before);
    env.server.shutdown().await?;
    Ok(())
}
