//! Shared helpers of the API tests: an in-process akted on a free loopback port, tokens,
//! a tenant with a plan unit, a file and a document, uploads and error checks.
#![allow(dead_code)]

use std::path::Path;

use akte_server::client::{add_version_messages, sha256, ClientTls, Clients};
use akte_server::config::ServerConfig;
use akte_server::error::{error_info, reason};
use akte_server::pb::akte::v1 as pb;
use akte_server::server::{start, Running};
use bytes::Bytes;
use tonic::{Code, Status};

pub type R<T> = Result<T, Box<dyn std::error::Error>>;

pub struct Env {
    pub dir: tempfile::TempDir,
    pub server: Running,
    pub admin: String,
}

pub fn config(dir: &Path) -> ServerConfig {
    let mut cfg = ServerConfig::new(dir);
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.metrics_listen = None;
    cfg.database = database(dir);
    cfg
}

/// Whether the servers of this test run keep their records in PostgreSQL.
pub fn on_postgres() -> bool {
    std::env::var("AKTE_TEST_BACKEND").as_deref() == Ok("postgres")
}

/// With `AKTE_TEST_BACKEND=postgres` the server keeps its records in a database of its own
/// on the test process's private PostgreSQL server (the same one for every start on
/// `dir`, so a restart finds what was written); otherwise in the data directory.
pub fn database(dir: &Path) -> Option<akte_server::config::DatabaseConfig> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    if std::env::var("AKTE_TEST_BACKEND").as_deref() != Ok("postgres") {
        return None;
    }
    static DATABASES: OnceLock<Mutex<HashMap<std::path::PathBuf, String>>> = OnceLock::new();
    let url = DATABASES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(dir.to_path_buf())
        .or_insert_with(|| akte_tests::pg::shared().fresh_database())
        .clone();
    Some(akte_server::config::DatabaseConfig {
        url,
        password: None,
        ca: None,
        pool_size: 8,
        seal_key: Some(akte_postgres::seal::SealKey::new([3; 32])),
        content: None,
    })
}

impl Env {
    pub async fn new() -> Env {
        // The server's log goes to the test's output (shown when a test fails).
        let _ = tracing_subscriber::fmt()
            .with_env_filter("warn")
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let server = start(config(dir.path())).await.expect("start");
        let boot = server.bootstrap_token.clone().expect("bootstrap token");
        let admin = std::fs::read_to_string(boot).unwrap().trim().to_owned();
        Env { dir, server, admin }
    }

    /// Stops the server and starts it again on the same data directory.
    pub async fn restart(self) -> Env {
        let Env { dir, server, admin } = self;
        server.shutdown().await.expect("shutdown");
        let server = start(config(dir.path())).await.expect("restart");
        Env { dir, server, admin }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    pub async fn client(&self, token: &str) -> Clients {
        Clients::connect(&self.url(), Some(token), &ClientTls::default())
            .await
            .expect("connect")
    }

    pub async fn admin(&self) -> Clients {
        self.client(&self.admin).await
    }

    pub async fn tenant(&self, id: &str) -> pb::Tenant {
        self.admin()
            .await
            .tenants
            .create_tenant(pb::CreateTenantRequest {
                tenant_id: id.into(),
            })
            .await
            .expect("create tenant")
            .into_inner()
    }

    /// A client with a new token of `roles` in `tenant`.
    pub async fn as_role(&self, tenant: &str, principal: &str, roles: &[pb::Role]) -> Clients {
        let secret = self
            .admin()
            .await
            .tenants
            .create_token(pb::CreateTokenRequest {
                parent: format!("tenants/{tenant}"),
                principal: principal.into(),
                roles: roles.iter().map(|r| *r as i32).collect(),
                ..Default::default()
            })
            .await
            .expect("create token")
            .into_inner()
            .secret;
        self.client(&secret).await
    }
}

/// A tenant with a registrar, a clerk, a plan unit, a file and a document.
pub struct Fixture {
    pub tenant: String,
    pub registrar: Clients,
    pub clerk: Clients,
    pub file: pb::File,
    pub doc: pb::Document,
}

pub async fn fixture(env: &Env, tenant: &str) -> Fixture {
    env.tenant(tenant).await;
    let mut registrar = env
        .as_role(tenant, "registrar:weber", &[pb::Role::Registrar])
        .await;
    let mut clerk = env
        .as_role(tenant, "clerk:schmidt", &[pb::Role::Clerk])
        .await;
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
            parent: unit.name,
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
        tenant: format!("tenants/{tenant}"),
        registrar,
        clerk,
        file,
        doc,
    }
}

/// Deterministic pseudo-random bytes that do not compress.
pub fn bytes_of(n: usize, seed: u64) -> Vec<u8> {
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

pub fn rendition(data: &[u8], name: &str) -> pb::RenditionUpload {
    pb::RenditionUpload {
        file_name: name.into(),
        media_type: "application/pdf".into(),
        sha256: sha256(data),
        size: data.len() as u64,
    }
}

/// Adds a version of `data` to `document` with AddVersion.
pub async fn add_version(
    c: &mut Clients,
    document: &str,
    data: &[u8],
) -> Result<pb::Version, Status> {
    let header = pb::AddVersionHeader {
        parent: document.into(),
        upload: Some(rendition(data, "scan.pdf")),
        ..Default::default()
    };
    let msgs = add_version_messages(header, Bytes::copy_from_slice(data), 1 << 20);
    c.documents
        .add_version(tokio_stream::iter(msgs))
        .await
        .map(|r| r.into_inner())
}

/// Checks code, reason and domain of a failed call; returns the status.
#[track_caller]
pub fn expect_err<T: std::fmt::Debug>(
    r: Result<tonic::Response<T>, Status>,
    code: Code,
    why: &str,
) -> Status {
    match r {
        Ok(v) => panic!("expected {code:?}/{why}, got {v:?}"),
        Err(s) => {
            expect_status(&s, code, why);
            s
        }
    }
}

/// Checks code, reason and domain of a status.
#[track_caller]
pub fn expect_status(s: &Status, code: Code, why: &str) {
    assert_eq!(s.code(), code, "status {s:?}");
    assert_eq!(reason(s), why, "status {s:?}");
    let info = error_info(s).expect("ErrorInfo");
    assert_eq!(info.domain, "akte.de");
}
