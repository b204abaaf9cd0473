//! `akte migrate` and `akte export-store`: copying every tenant between a data directory
//! and a PostgreSQL database (either way), and writing any store as a data directory in
//! the documented format (docs/FORMAT.md) for the independent verifier.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use akte_core::backend::Backend;
use akte_core::migrate::copy_store;
use akte_core::records::Records;
use akte_core::store::{Store, StoreOptions};

/// Where a store is: a data directory, or a PostgreSQL database.
#[derive(Debug, Clone)]
pub enum Place {
    /// A data directory.
    Dir(PathBuf),
    /// A connection string (`postgres://…` or `postgresql://…`).
    Database(String),
}

impl Place {
    /// A path, or a connection string if it starts with `postgres://` or `postgresql://`.
    pub fn parse(s: &str) -> Place {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Place::Database(s.to_owned())
        } else {
            Place::Dir(PathBuf::from(s))
        }
    }

    /// For messages: the directory, or the database without credentials.
    pub fn shown(&self) -> String {
        match self {
            Place::Dir(d) => d.display().to_string(),
            Place::Database(url) => match url.split_once('@') {
                Some((_, rest)) => format!("postgres://…@{rest}"),
                None => url.clone(),
            },
        }
    }

    /// Opens the store there with the records model (so the target's index is the
    /// records' index). A data directory is created if it does not exist.
    pub fn open(&self, password: Option<String>) -> Result<Arc<Store>> {
        let backend: Arc<dyn Backend> = match self {
            Place::Dir(dir) => akte_core::embedded::open(dir)
                .with_context(|| format!("opening data directory {}", dir.display()))?,
            Place::Database(url) => {
                let seal_key = match std::env::var("AKTE_DATABASE_KEY_FILE") {
                    Ok(path) => Some(
                        akte_postgres::seal::SealKey::parse(
                            &std::fs::read_to_string(&path)
                                .with_context(|| format!("reading the database key file {path}"))?,
                        )
                        .map_err(|e| anyhow::anyhow!("database key file {path}: {e}"))?,
                    ),
                    Err(_) => None,
                };
                // Content in object storage: AKTE_CONTENT=s3://…, credentials from
                // AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
                let content =
                    std::env::var("AKTE_CONTENT")
                        .ok()
                        .map(|url| akte_postgres::s3::S3Options {
                            url,
                            access_key_id: None,
                            secret_access_key: None,
                        });
                let options = akte_postgres::PgOptions {
                    password,
                    seal_key,
                    content,
                    ..akte_postgres::PgOptions::default()
                };
                akte_postgres::PgBackend::connect(url, options)
                    .with_context(|| format!("opening database {}", self.shown()))?
            }
        };
        let records = Records::open(backend, StoreOptions::default())
            .with_context(|| format!("opening {}", self.shown()))?;
        Ok(records.store().clone())
    }
}

/// The database password from `AKTE_DATABASE_PASSWORD_FILE` or `AKTE_DATABASE_PASSWORD`
/// (the key that seals secret blobs comes from `AKTE_DATABASE_KEY_FILE`).
pub fn password_from_env() -> Result<Option<String>> {
    if let Ok(path) = std::env::var("AKTE_DATABASE_PASSWORD_FILE") {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the database password file {path}"))?;
        return Ok(Some(text.trim_end_matches(['\r', '\n']).to_owned()));
    }
    Ok(std::env::var("AKTE_DATABASE_PASSWORD").ok())
}

/// Copies every tenant from `from` to `to` and checks both sides; prints a line per
/// tenant (or a JSON report).
pub fn migrate(from: &Place, to: &Place, json: bool) -> Result<()> {
    if let (Place::Dir(a), Place::Dir(b)) = (from, to) {
        if a == b {
            bail!("--from and --to are the same data directory");
        }
    }
    let password = password_from_env()?;
    let source = from.open(password.clone())?;
    let target = to.open(password)?;
    let copied = copy_store(&source, &target, &mut |c| {
        if !json {
            println!(
                "tenant {}: {} entries ({} copied now), {} content objects ({} copied now, {} bytes), {} blobs; root {} on both sides",
                c.tenant, c.entries, c.copied_entries, c.objects, c.copied_objects, c.copied_bytes, c.blobs, c.root
            );
        }
    })
    .with_context(|| format!("copying {} to {}", from.shown(), to.shown()))?;
    if json {
        let tenants: Vec<serde_json::Value> = copied
            .iter()
            .map(|c| {
                serde_json::json!({
                    "tenant": c.tenant,
                    "entries": c.entries,
                    "copiedEntries": c.copied_entries,
                    "objects": c.objects,
                    "copiedObjects": c.copied_objects,
                    "copiedBytes": c.copied_bytes,
                    "blobs": c.blobs,
                    "root": c.root.to_string(),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "from": from.shown(),
                "to": to.shown(),
                "tenants": tenants,
                "equal": true,
            }))?
        );
    } else {
        println!(
            "{} tenants copied from {} to {}; tree sizes, roots and content digests are equal",
            copied.len(),
            from.shown(),
            to.shown()
        );
    }
    Ok(())
}

/// Writes the store at `from` as a new data directory `to` (which must not exist or be
/// empty), for `tools/verify_store.py` and archives.
pub fn export_store(from: &Place, to: &std::path::Path, json: bool) -> Result<()> {
    if to.exists()
        && std::fs::read_dir(to)
            .with_context(|| format!("reading {}", to.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} exists and is not empty: export-store writes a new data directory",
            to.display()
        );
    }
    migrate(from, &Place::Dir(to.to_path_buf()), json)
}
