//! `akte import-legacy`: imports records from another system's export, given as JSON
//! lines, offline into a data directory, with their original metadata.
//!
//! Each line is one object as the library's `ImportItem` (see docs/MIGRATION.md), parents
//! before what they contain; a rendition names its bytes by `path` (relative to the JSON
//! file) instead of `sha256` and `size`. Lines are read and imported one at a time, so
//! memory does not grow with the export. Running it again after an interruption skips what
//! was imported (per source system and source id).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};

use akte_core::records::{ImportItem, ImportReport, ImportSource, Records};
use akte_core::store::StoreOptions;

/// Arguments of `import-legacy`.
#[derive(Args, Debug)]
pub struct ImportLegacy {
    /// The tenant.
    #[arg(long)]
    pub tenant: String,
    /// The source system (recorded on every object; with the source ids, what makes a
    /// rerun skip what is done).
    #[arg(long)]
    pub source_system: String,
    /// Who is acting (recorded in the journal).
    #[arg(long, default_value = "import:legacy")]
    pub actor: String,
    /// The export: one JSON object per line.
    pub items: PathBuf,
}

/// Replaces each rendition's `path` by the `sha256` and `size` of its bytes, stored in
/// the tenant's content store.
fn store_renditions(
    t: &akte_core::records::TenantRecords,
    base: &Path,
    item: &mut Value,
) -> Result<()> {
    let Some(versions) = item
        .get_mut("object")
        .and_then(|o| o.get_mut("versions"))
        .and_then(Value::as_array_mut)
    else {
        return Ok(());
    };
    for v in versions {
        let Some(renditions) = v.get_mut("renditions").and_then(Value::as_array_mut) else {
            continue;
        };
        for r in renditions {
            let Some(path) = r.get("path").and_then(Value::as_str).map(str::to_owned) else {
                continue;
            };
            let p = Path::new(&path);
            if p.is_absolute() || p.components().any(|c| c == std::path::Component::ParentDir) {
                bail!("rendition path {path:?} must be relative and stay below the export");
            }
            let full = base.join(p);
            let f = std::fs::File::open(&full)
                .with_context(|| format!("opening {}", full.display()))?;
            let put = t.put_content(f)?;
            if let Some(o) = r.as_object_mut() {
                o.remove("path");
                o.insert("sha256".into(), json!(put.digest.to_hex()));
                o.insert("size".into(), json!(put.size));
            }
        }
    }
    Ok(())
}

/// Runs the import; returns the report.
pub fn run(data_dir: &Path, a: &ImportLegacy) -> Result<ImportReport> {
    if !data_dir.join("FORMAT").is_file() {
        return Err(crate::output::usage(format!(
            "{} is not a data directory (it has no FORMAT file); `akte --data-dir DIR tenant \
             create ID` makes one",
            data_dir.display()
        )));
    }
    let backend = akte_core::embedded::open(data_dir)
        .with_context(|| format!("opening data directory {}", data_dir.display()))?;
    let records = Records::open(backend, StoreOptions::default())?;
    let t = records.tenant(&a.tenant)?;
    let file =
        std::fs::File::open(&a.items).with_context(|| format!("opening {}", a.items.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let base = a
        .items
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let source = ImportSource {
        system: a.source_system.clone(),
        package: None,
    };
    let bar = {
        use std::io::IsTerminal;
        std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(size);
            if let Ok(s) =
                indicatif::ProgressStyle::with_template("{wide_bar} {bytes}/{total_bytes} {msg}")
            {
                b.set_style(s);
            }
            b
        })
    };
    let mut read = 0u64;
    let mut lines = BufReader::new(file).lines().enumerate();
    // Lines that do not parse are reported like refused objects; the rest goes on.
    let mut bad = Vec::new();
    let items = std::iter::from_fn(|| loop {
        let (n, line) = lines.next()?;
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                bad.push(format!("line {}: {e}", n + 1));
                return None;
            }
        };
        read += line.len() as u64 + 1;
        if let Some(b) = &bar {
            b.set_position(read);
        }
        if line.trim().is_empty() {
            continue;
        }
        let parsed = serde_json::from_str::<Value>(&line)
            .map_err(anyhow::Error::from)
            .and_then(|mut v| {
                store_renditions(&t, &base, &mut v)?;
                Ok(serde_json::from_value::<ImportItem>(v)?)
            });
        match parsed {
            Ok(item) => return Some(item),
            Err(e) => bad.push(format!("line {}: {e:#}", n + 1)),
        }
    });
    let mut report = t.import_objects(&a.actor, &source, items, &mut |r| {
        if let Some(b) = &bar {
            b.set_message(format!(
                "{} imported, {} before, {} refused",
                r.imported, r.already_imported, r.failed
            ));
        }
    })?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    for e in bad {
        report.failed += 1;
        report.items.push(akte_core::records::ItemReport {
            source_id: String::new(),
            kind: akte_core::records::ObjectKind::File,
            status: akte_core::records::ItemStatus::Failed,
            id: None,
            rule: Some("unreadable-line".into()),
            error: Some(e),
            warnings: vec![],
        });
    }
    Ok(report)
}
