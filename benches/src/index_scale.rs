//! The embedded index as the store grows (issue 20): small documents filed through the
//! records model (create, then a version: two journal entries each) by 16 threads until the
//! tenant holds N entries, for each N in `AKTE_BENCH_ENTRIES` (default `100000`; `20000`
//! with `--quick`); then the index's size on disk beside the journal's and the content's,
//! and `rebuild_index` of the whole store timed per 100,000 entries with its peak RSS.
//!
//! The rebuild runs in a child process (this binary re-executed with [`CHILD_ARG`]), so
//! that its peak RSS (`VmHWM`) is the rebuild's alone, from opening the data directory to
//! the index flushed, not the filling process's. The filling rate of the first and of the
//! last 5% of the documents shows whether a document's cost grows with the store.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use akte_core::records::{NewDocument, NewRendition, NewVersion, Records};
use akte_core::store::StoreOptions;

use crate::{bench_dir, Row};

/// The hidden first argument that makes the benchmark binary rebuild a data directory's
/// index and report on standard output.
pub(crate) const CHILD_ARG: &str = "__rebuild_index";

const TENANT: &str = "amt";

/// The child: opens `data_dir` with the records model and rebuilds its index as
/// `akte rebuild-index` does (`Store::rebuild_index`: per tenant the journal replayed into
/// a cleared index, then the pack location index read again from the packs, then a
/// flush), in those parts, and prints `entries <n> secs <s> hwm_kib <k>` for the whole and
/// `replay_secs`, `replay_hwm_kib`, `open_hwm_kib` for the parts.
pub(crate) fn child_main(data_dir: &Path) -> Result<()> {
    let records = Records::open(
        akte_core::embedded::open(data_dir)?,
        StoreOptions::default(),
    )?;
    let open_hwm = status_kib("VmHWM")?;
    let start = Instant::now();
    let mut n = 0;
    let mut replay_secs = 0.0;
    let mut replay_hwm = 0;
    for t in records.store().tenants() {
        let replay = Instant::now();
        n += t.rebuild_index()?;
        replay_secs += replay.elapsed().as_secs_f64();
        replay_hwm = replay_hwm.max(status_kib("VmHWM")?);
        t.content().reindex()?;
        t.index().flush_pending()?;
    }
    let secs = start.elapsed().as_secs_f64();
    drop(records);
    let hwm = status_kib("VmHWM")?;
    println!(
        "entries {n} secs {secs} hwm_kib {hwm} replay_secs {replay_secs} replay_hwm_kib {replay_hwm} open_hwm_kib {open_hwm}"
    );
    Ok(())
}

/// A field of `/proc/self/status`, in KiB.
fn status_kib(field: &str) -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix(field).and_then(|r| r.strip_prefix(':')) {
            let kib = rest.trim().trim_end_matches("kB").trim();
            return Ok(kib.parse()?);
        }
    }
    bail!("no {field} in /proc/self/status")
}

/// Bytes of the files under `path`.
fn du(path: &Path) -> u64 {
    let mut total = 0;
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    for e in entries.flatten() {
        match e.metadata() {
            Ok(m) if m.is_dir() => total += du(&e.path()),
            Ok(m) => total += m.len(),
            Err(_) => {}
        }
    }
    total
}

pub(crate) fn bench_index_scale(rows: &mut Vec<Row>, quick: bool) -> Result<()> {
    let sizes: Vec<u64> = match std::env::var("AKTE_BENCH_ENTRIES") {
        Ok(list) => list
            .split(',')
            .map(|s| s.trim().parse::<u64>())
            .collect::<Result<_, _>>()
            .context("AKTE_BENCH_ENTRIES: a comma-separated list of entry counts")?,
        Err(_) if quick => vec![20_000],
        Err(_) => vec![100_000],
    };
    for n in sizes {
        one_size(rows, n)?;
    }
    Ok(())
}

fn one_size(rows: &mut Vec<Row>, entries: u64) -> Result<()> {
    let dir = tempfile::tempdir_in(bench_dir())?;
    let data = dir.path().join("data");
    let records = Records::open(akte_core::embedded::open(&data)?, StoreOptions::default())?;
    let t = records.create_tenant(TENANT)?;
    let file = crate::sample_file(&t)?;
    // Two entries per document.
    let docs = entries.saturating_sub(t.tenant().size()?) / 2;
    let window = (docs / 20).max(1);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let (first_done, last_start) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let writers = 16;
    let handles: Vec<_> = (0..writers)
        .map(|_| {
            let (t, next) = (t.clone(), next.clone());
            let (first_done, last_start) = (first_done.clone(), last_start.clone());
            let parent = file.id;
            std::thread::spawn(move || -> Result<()> {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= docs {
                        return Ok(());
                    }
                    if i == docs - window {
                        last_start.store(start.elapsed().as_micros() as u64, Ordering::Relaxed);
                    }
                    let doc = t.create_document(
                        "bench",
                        NewDocument {
                            parent,
                            subject: format!("Antrag {i} auf Erteilung einer Genehmigung"),
                            sender: "Musterfirma GmbH".into(),
                            ..NewDocument::default()
                        },
                        None,
                    )?;
                    let body = format!("Sehr geehrte Damen und Herren, Vorgang {i}. ").repeat(6);
                    let put = t.put_content(body.as_bytes())?;
                    t.add_version(
                        "bench",
                        doc.id,
                        NewVersion {
                            comment: String::new(),
                            renditions: vec![NewRendition {
                                file_name: "brief.txt".into(),
                                media_type: "text/plain".into(),
                                sha256: put.digest,
                                size: put.size,
                            }],
                        },
                        None,
                    )?;
                    if i + 1 == window {
                        first_done.store(start.elapsed().as_micros() as u64, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| anyhow::anyhow!("writer panicked"))??;
    }
    let fill = start.elapsed().as_secs_f64();
    let held = t.tenant().size()?;
    let rss_filled = status_kib("VmRSS")?;
    let first_rate = window as f64 / (first_done.load(Ordering::Relaxed).max(1) as f64 / 1e6);
    let last_rate =
        window as f64 / ((fill * 1e6 - last_start.load(Ordering::Relaxed) as f64).max(1.0) / 1e6);
    drop(t);
    drop(records);
    let index_bytes = du(&data.join("index").join(TENANT));
    let tenant_bytes = du(&data.join("tenants").join(TENANT));

    let out = Command::new(std::env::current_exe()?)
        .arg(CHILD_ARG)
        .arg(&data)
        .output()?;
    if !out.status.success() {
        bail!(
            "the rebuild child failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> Result<f64> {
        let mut words = text.split_whitespace();
        while let Some(w) = words.next() {
            if w == name {
                return Ok(words.next().context("value")?.parse()?);
            }
        }
        bail!("the rebuild child did not report {name}: {text}")
    };
    let (rebuilt, secs, hwm) = (field("entries")?, field("secs")?, field("hwm_kib")?);
    let (replay_secs, replay_hwm, open_hwm) = (
        field("replay_secs")?,
        field("replay_hwm_kib")?,
        field("open_hwm_kib")?,
    );
    let mib = |b: f64| b / (1u64 << 20) as f64;
    rows.push(Row {
        figure: format!("filling {held} entries ({docs} docs, 16 threads): docs/s in the last 5%"),
        value: last_rate,
        unit: "docs/s",
        baseline: "docs/s in the first 5%".into(),
        baseline_value: first_rate,
    });
    rows.push(Row {
        figure: format!(
            "index on disk at {held} entries (filling took {fill:.0} s, RSS then {:.0} MiB)",
            rss_filled as f64 / 1024.0
        ),
        value: mib(index_bytes as f64),
        unit: "MiB",
        baseline: "journal + content".into(),
        baseline_value: mib(tenant_bytes as f64),
    });
    rows.push(Row {
        figure: format!("index rebuild per 100,000 entries (of {rebuilt})"),
        value: secs * 100_000.0 / rebuilt.max(1.0),
        unit: "s",
        baseline: "whole rebuild".into(),
        baseline_value: secs,
    });
    rows.push(Row {
        figure: format!("index replay (without the pack index) per 100,000 entries (of {rebuilt})"),
        value: replay_secs * 100_000.0 / rebuilt.max(1.0),
        unit: "s",
        baseline: "whole rebuild per 100,000".into(),
        baseline_value: secs * 100_000.0 / rebuilt.max(1.0),
    });
    rows.push(Row {
        figure: format!("peak RSS of the rebuild process ({rebuilt} entries)"),
        value: hwm / 1024.0,
        unit: "MiB",
        baseline: "peak until the replay's end".into(),
        baseline_value: replay_hwm / 1024.0,
    });
    eprintln!(
        "index-scale {held}: fill {fill:.1} s, first5% {first_rate:.0}/s, last5% {last_rate:.0}/s, index {:.1} MiB, tenant {:.1} MiB, rebuild {secs:.1} s ({:.2} s/100k; replay {replay_secs:.1} s), rebuild peak RSS {:.0} MiB (after open {:.0}, after replay {:.0}), filled RSS {:.0} MiB",
        mib(index_bytes as f64),
        mib(tenant_bytes as f64),
        secs * 100_000.0 / rebuilt.max(1.0),
        hwm / 1024.0,
        open_hwm / 1024.0,
        replay_hwm / 1024.0,
        rss_filled as f64 / 1024.0
    );
    Ok(())
}
