//! Secret blobs (a tenant's checkpoint signing key, the installation's tokens and page-token
//! key) sealed with a key from the instance's configuration before they reach the
//! database: whoever can read the database (a replica, a backup, an administrator) cannot
//! sign a checkpoint or mint a page token without that key as well.
//!
//! A sealed blob is `SEAL_MAGIC || nonce (12 bytes) || ChaCha20-Poly1305 ciphertext and
//! tag`, the associated data the tenant id and blob name (so a sealed blob copied to
//! another name or tenant does not open).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};

/// Marks a sealed blob.
pub const SEAL_MAGIC: &[u8] = b"akte-sealed-v1\n";

/// The key secret blobs are sealed with (32 bytes).
#[derive(Clone)]
pub struct SealKey([u8; 32]);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(<redacted>)")
    }
}

impl SealKey {
    /// A key from 32 bytes.
    pub fn new(bytes: [u8; 32]) -> SealKey {
        SealKey(bytes)
    }

    /// A key from a key file's text: 64 hex digits (whitespace around them ignored).
    pub fn parse(text: &str) -> Result<SealKey, String> {
        let hex = text.trim();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("a key file holds 64 hex digits (32 random bytes)".into());
        }
        let mut key = [0u8; 32];
        for (i, k) in key.iter_mut().enumerate() {
            *k = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
        }
        Ok(SealKey(key))
    }

    fn aad(tenant: &str, name: &str) -> Vec<u8> {
        let mut aad = Vec::with_capacity(tenant.len() + name.len() + 1);
        aad.extend_from_slice(tenant.as_bytes());
        aad.push(0);
        aad.extend_from_slice(name.as_bytes());
        aad
    }

    /// Seals `plain` as blob `name` of `tenant`.
    pub fn seal(&self, tenant: &str, name: &str, plain: &[u8]) -> Result<Vec<u8>, String> {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(|e| format!("no random nonce: {e}"))?;
        let cipher = ChaCha20Poly1305::new(&self.0.into());
        let aad = Self::aad(tenant, name);
        let sealed = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .map_err(|_| "sealing failed".to_owned())?;
        let mut out = Vec::with_capacity(SEAL_MAGIC.len() + 12 + sealed.len());
        out.extend_from_slice(SEAL_MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens a sealed blob (`stored` starts with [`SEAL_MAGIC`]).
    pub fn open(&self, tenant: &str, name: &str, stored: &[u8]) -> Result<Vec<u8>, String> {
        let body = stored
            .strip_prefix(SEAL_MAGIC)
            .ok_or_else(|| "not a sealed blob".to_owned())?;
        if body.len() < 12 + 16 {
            return Err("a sealed blob cut short".into());
        }
        let (nonce, sealed) = body.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| "a sealed blob cut short")?;
        let cipher = ChaCha20Poly1305::new(&self.0.into());
        let aad = Self::aad(tenant, name);
        cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| {
                "it does not open with the configured key (another key, or damaged)".to_owned()
            })
    }
}

/// Whether stored bytes are a sealed blob.
pub fn is_sealed(stored: &[u8]) -> bool {
    stored.starts_with(SEAL_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_blobs_open_only_with_their_key_name_and_tenant() {
        let k = SealKey::new([7; 32]);
        let s = k.seal("bauamt", "keys/checkpoint.key", b"secret").unwrap();
        assert!(is_sealed(&s));
        assert_eq!(
            k.open("bauamt", "keys/checkpoint.key", &s).unwrap(),
            b"secret"
        );
        assert!(k.open("bauamt", "tokens.json", &s).is_err());
        assert!(k.open("kaemmerei", "keys/checkpoint.key", &s).is_err());
        assert!(SealKey::new([8; 32])
            .open("bauamt", "keys/checkpoint.key", &s)
            .is_err());
        let mut bad = s.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(k.open("bauamt", "keys/checkpoint.key", &bad).is_err());
        assert!(SealKey::parse("zz").is_err());
        assert!(SealKey::parse(&"ab".repeat(32)).is_ok());
    }
}
