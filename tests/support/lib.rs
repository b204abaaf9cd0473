//! Shared helpers for akte's integration tests, and the conformance suite every storage
//! backend runs ([`conformance`]).

pub mod conformance;
pub mod pg;
pub mod powerloss;
pub mod s3;

use akte_core::entry::Attachment;
use akte_core::entry::{EntryDraft, Payload, PayloadKind};
use akte_core::store::{Appended, Tenant};

/// The backend the records-level integration tests run on, chosen by the environment
/// variable `AKTE_TEST_BACKEND`: `embedded` (the default; a data directory in `dir`) or
/// `memory` (one in-memory backend per `dir`, so that reopening sees what was written) or
/// `postgres` (one database per `dir` on the test process's private PostgreSQL server,
/// see [`pg`]; reopening connects again).
pub fn backend(dir: &std::path::Path) -> std::sync::Arc<dyn akte_core::backend::Backend> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    match std::env::var("AKTE_TEST_BACKEND").as_deref() {
        Ok("memory") => {
            static BACKENDS: OnceLock<
                Mutex<HashMap<std::path::PathBuf, Arc<akte_core::backend::memory::MemoryBackend>>>,
            > = OnceLock::new();
            let mut all = BACKENDS
                .get_or_init(Default::default)
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            all.entry(dir.to_path_buf()).or_default().clone()
        }
        Ok("postgres") => {
            static DATABASES: OnceLock<Mutex<HashMap<std::path::PathBuf, String>>> =
                OnceLock::new();
            let url = DATABASES
                .get_or_init(Default::default)
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(dir.to_path_buf())
                .or_insert_with(|| pg::shared().fresh_database())
                .clone();
            akte_postgres::PgBackend::connect(&url, akte_postgres::PgOptions::default())
                .expect("connect to the test database")
        }
        Ok("embedded") | Err(_) => akte_core::embedded::open(dir).expect("open the data directory"),
        Ok(other) => panic!("AKTE_TEST_BACKEND={other:?} is not a backend these tests know"),
    }
}

/// Whether the tests run on the embedded backend (tests that look at its files).
pub fn embedded_backend() -> bool {
    !matches!(std::env::var("AKTE_TEST_BACKEND").as_deref(), Ok(b) if b != "embedded")
}

/// Copies a directory tree as it is at this moment (without the `LOCK` file).
pub fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for item in std::fs::read_dir(from).unwrap() {
        let item = item.unwrap();
        let target = to.join(item.file_name());
        if item.file_type().unwrap().is_dir() {
            copy_tree(&item.path(), &target);
        } else if item.file_name() != "LOCK" {
            std::fs::copy(item.path(), &target).unwrap();
        }
    }
}

/// The directory of `tenant` in the data directory `data` (docs/FORMAT.md), for tests
/// that look at or damage the embedded backend's files.
pub fn tenant_dir(data: &std::path::Path, tenant: &str) -> std::path::PathBuf {
    data.join("tenants").join(tenant)
}

/// A second view of a tenant's content directory, to find where an object is stored.
pub fn content_view(
    data: &std::path::Path,
    tenant: &str,
) -> akte_core::embedded::content::ContentStore {
    akte_core::embedded::content::ContentStore::open(&tenant_dir(data, tenant).join("content"))
        .expect("open the content directory")
}

/// A small, seedable pseudo-random generator (xorshift64*), so tests need no extra crate
/// and failures can be replayed from the printed seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced by a fixed non-zero value).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// A seed from the clock and process id, printed by callers for replay.
    pub fn seed_from_env() -> u64 {
        if let Ok(s) = std::env::var("AKTE_TEST_SEED") {
            if let Ok(v) = s.parse() {
                return v;
            }
        }
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        t ^ ((std::process::id() as u64) << 32)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo).max(1)
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

/// Stores `content` and appends an entry referring to it plus an inline metadata record.
pub fn append_document(
    tenant: &Tenant,
    actor: &str,
    object: &str,
    content: &[u8],
    meta: &[u8],
) -> Result<Appended, akte_core::store::StoreError> {
    let put = tenant.put_content(content)?;
    append_naming(tenant, actor, object, put.digest, put.size, meta)
}

/// Appends a `document.version` entry naming content by digest and size, without storing
/// it (the content must be stored already, or the append is refused).
pub fn append_naming(
    tenant: &Tenant,
    actor: &str,
    object: &str,
    digest: akte_core::Digest,
    size: u64,
    meta: &[u8],
) -> Result<Appended, akte_core::store::StoreError> {
    let attachment = Attachment::new(meta.to_vec());
    tenant.append(
        EntryDraft {
            actor: actor.into(),
            kind: "document.version".into(),
            object: object.into(),
            payloads: vec![
                Payload {
                    kind: PayloadKind::Inline,
                    role: "meta".into(),
                    size: meta.len() as u64,
                    digest: attachment.digest,
                },
                Payload {
                    kind: PayloadKind::Content,
                    role: "rendition".into(),
                    size,
                    digest,
                },
            ],
        },
        vec![attachment],
    )
}

/// Disposal settings for tests: the Stadtverwaltung Erfurt (Behördenschlüssel and Präfix)
/// and the Landesarchiv Thüringen, set on `t`.
pub fn configure_disposal(t: &akte_core::records::TenantRecords) {
    use akte_core::records::{DisposalSettings, ListCode, PartyIdentity};
    let code = |code: &str, name: &str| ListCode {
        code: code.into(),
        name: name.into(),
        ..ListCode::default()
    };
    t.set_disposal_settings(
        "admin:test",
        &DisposalSettings {
            agency: PartyIdentity {
                key: Some(code("16051000", "Stadtverwaltung Erfurt")),
                prefix: Some(code("ags:", "Amtlicher Gemeindeschlüssel")),
                institution: "Stadtverwaltung Erfurt".into(),
                institution_short: "SV Erfurt".into(),
            },
            archive: PartyIdentity {
                key: Some(code("LATh", "Landesarchiv Thüringen")),
                prefix: None,
                institution: "Landesarchiv Thüringen".into(),
                institution_short: "LATh".into(),
            },
        },
    )
    .expect("disposal settings");
}

/// Every key and value of a tenant's index, for comparing a rebuilt index with the live one.
pub fn index_dump(t: &akte_core::records::TenantRecords) -> Vec<(Vec<u8>, Vec<u8>)> {
    t.tenant()
        .index()
        .iter_all()
        .map(|kv| {
            let (k, v) = kv.expect("index entry");
            (k.to_vec(), v.to_vec())
        })
        .collect()
}

/// Every byte of a tenant's stored content, as text, for checking that destroyed content is
/// gone: on the embedded backend every byte under the tenant's content directory in the
/// data directory `data` (pack files and object files, zeroed records included), on
/// others every object the backend still lists.
pub fn content_text(data: &std::path::Path, t: &akte_core::records::TenantRecords) -> String {
    let mut all = String::new();
    if !embedded_backend() {
        let content = t.tenant().content();
        for d in content.list() {
            let mut bytes = Vec::new();
            use std::io::Read;
            content
                .get(&d.expect("listed"))
                .expect("stored")
                .read_to_end(&mut bytes)
                .expect("readable");
            all.push_str(&String::from_utf8_lossy(&bytes));
        }
        return all;
    }
    let mut todo = vec![tenant_dir(data, t.tenant().id()).join("content")];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).expect("content directory") {
            let p = e.expect("directory entry").path();
            if p.is_dir() {
                todo.push(p);
            } else {
                all.push_str(&String::from_utf8_lossy(
                    &std::fs::read(&p).expect("content"),
                ));
            }
        }
    }
    all
}

/// Validates each `(name, xml)` against the official xdomea 3.1.0 schema
/// (`../shared/xdomea`) with `xmllint`; panics with its output if one fails or xmllint is
/// missing (package libxml2-utils).
pub fn xdomea_validate(docs: &[(&str, &[u8])]) {
    let schema = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/xdomea/schemas/3.1.0/xdomea.xsd");
    assert!(schema.is_file(), "no xdomea schema at {}", schema.display());
    let dir = tempfile::tempdir().expect("temp dir");
    let mut paths = Vec::new();
    for (name, xml) in docs {
        let p = dir.path().join(name);
        std::fs::write(&p, xml).expect("write");
        paths.push(p);
    }
    let out = std::process::Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(&schema)
        .args(&paths)
        .output()
        .expect("xmllint (apt-get install libxml2-utils)");
    assert!(
        out.status.success(),
        "XSD validation failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
