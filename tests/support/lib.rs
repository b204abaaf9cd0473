//! Shared helpers for akte's integration tests.

use akte_core::entry::{EntryDraft, Payload, PayloadKind};
use akte_core::segment::Attachment;
use akte_core::store::{Appended, Tenant};

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
                    size: put.size,
                    digest: put.digest,
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

/// Every byte under a tenant's content store (pack files and object files), as text, for
/// checking that destroyed content is gone.
pub fn content_text(t: &akte_core::records::TenantRecords) -> String {
    let mut all = String::new();
    let mut todo = vec![t.tenant().dir().join("content")];
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
