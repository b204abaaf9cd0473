//! The `grpc-scale` part: does a small document cost more, and does the daemon hold more
//! memory, as the store grows? 16 clients file 5 KB documents (one call each: one journal
//! entry per document) into one tenant of a daemon in a child process (as the `memory`
//! part runs it) until the tenant holds each size of `AKTE_BENCH_SCALE` (default
//! `10000,100000`; `2000,10000` with `--quick`; issue 20 asks for `10000,100000,1000000`).
//! At each size: the rate of the last documents before it, the daemon's resident memory,
//! and the data directory's size beside the documents' bytes. The baseline of each row is
//! the same figure at the first size, in the same run. The documents are `text/plain`, so
//! the daemon extracts and indexes their text for full-text search, as it would an
//! agency's letters; `AKTE_BENCH_MEDIA=application/octet-stream` files them as bytes
//! without text, to tell the full-text index's share apart.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bytes::Bytes;

use akte_server::client::{with_first_version, ClientTls, Clients};
use akte_server::pb::akte::v1 as pb;

use crate::memory::{status_field, Daemon};
use crate::peers::tree_size;
use crate::{bench_dir, text_bytes, Row};

const CLIENTS: u64 = 16;
const DOC_BYTES: usize = 5_000;
const MIB: f64 = (1u64 << 20) as f64;

/// What was seen when the tenant reached one size.
struct Checkpoint {
    docs: u64,
    /// Documents per second over the last `window` documents before this size.
    rate: f64,
    window: u64,
    /// Resident memory right after the last document (mid-work: flushes, merges).
    rss: u64,
    /// Resident memory once the daemon has been idle long enough to hand back free heap.
    idle_rss: u64,
    data_bytes: u64,
}

/// How long the daemon is left idle before its memory is read again: two of its
/// idle-trim intervals (`trim_when_idle` in akte-server).
const IDLE: std::time::Duration = std::time::Duration::from_secs(7);

pub(crate) fn bench_grpc_scale(rows: &mut Vec<Row>, quick: bool) -> Result<()> {
    let mut sizes: Vec<u64> = match std::env::var("AKTE_BENCH_SCALE") {
        Ok(list) => list
            .split(',')
            .map(|s| s.trim().parse::<u64>())
            .collect::<Result<_, _>>()
            .context("AKTE_BENCH_SCALE: a comma-separated list of document counts")?,
        Err(_) if quick => vec![2_000, 10_000],
        Err(_) => vec![10_000, 100_000],
    };
    sizes.sort_unstable();
    sizes.dedup();
    if sizes.first().is_none_or(|&n| n < 2 * CLIENTS) {
        bail!(
            "AKTE_BENCH_SCALE: each size must be at least {}",
            2 * CLIENTS
        );
    }
    let media = std::env::var("AKTE_BENCH_MEDIA").unwrap_or_else(|_| "text/plain".into());
    let rt = crate::grpc::runtime()?;
    let dir = tempfile::tempdir_in(bench_dir())?;
    let data = dir.path().join("data");
    let daemon = Daemon::start(&data)?;
    let points = rt.block_on(fill(&daemon, &data, &sizes, &media))?;
    drop(daemon);
    report(rows, &points, &media);
    Ok(())
}

async fn fill(daemon: &Daemon, data: &Path, sizes: &[u64], media: &str) -> Result<Vec<Checkpoint>> {
    let (token, file) = crate::grpc::prepare(&daemon.url, &daemon.admin_token, "scale").await?;
    let next = Arc::new(AtomicU64::new(0));
    let mut points = Vec::new();
    let mut done = 0u64;
    for &size in sizes {
        // The rate is taken over the last 5 % of the way from the previous size (at least
        // the clients' number, at most 5,000 documents), as in the table.
        let window = ((size - done) / 20).clamp(CLIENTS, 5_000);
        let window_start = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..CLIENTS {
            let (url, token, file) = (daemon.url.clone(), token.clone(), file.clone());
            let media = media.to_owned();
            let (next, window_start) = (next.clone(), window_start.clone());
            tasks.push(tokio::spawn(async move {
                let mut c = Clients::connect(&url, Some(&token), &ClientTls::default()).await?;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= size {
                        // Leave the counter at the size for the next phase.
                        next.fetch_min(size, Ordering::Relaxed);
                        return anyhow::Ok(());
                    }
                    if i == size - window {
                        window_start.store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                    }
                    let name = format!("brief-{i}.txt");
                    let body = Bytes::from(text_bytes(DOC_BYTES, i + 1));
                    let req = with_first_version(
                        pb::CreateDocumentRequest {
                            parent: file.clone(),
                            document: Some(pb::Document {
                                subject: format!("Antrag {i} auf Erteilung einer Genehmigung"),
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                        body,
                        &name,
                        &media,
                    );
                    c.documents.create_document(req).await?;
                }
            }));
        }
        for t in tasks {
            t.await??;
        }
        let secs = started.elapsed().as_secs_f64();
        let window_secs = secs - window_start.load(Ordering::Relaxed) as f64 / 1e6;
        let rss = status_field(daemon.pid(), "VmRSS")?;
        let data_bytes = tree_size(data);
        tokio::time::sleep(IDLE).await;
        let idle_rss = status_field(daemon.pid(), "VmRSS")?;
        points.push(Checkpoint {
            docs: size,
            rate: window as f64 / window_secs.max(1e-6),
            window,
            rss,
            idle_rss,
            data_bytes,
        });
        println!(
            "grpc-scale {size} docs: phase {secs:.1} s, last {window} at {:.0}/s, akted RSS {:.0} MiB (idle {:.0} MiB), data {:.0} MiB",
            window as f64 / window_secs.max(1e-6),
            rss as f64 / MIB,
            idle_rss as f64 / MIB,
            data_bytes as f64 / MIB
        );
        done = size;
    }
    Ok(points)
}

fn report(rows: &mut Vec<Row>, points: &[Checkpoint], media: &str) {
    let Some(first) = points.first() else {
        return;
    };
    for p in points {
        rows.push(Row {
            figure: format!(
                "gRPC 5 KB docs ({media}), 16 clients, one call: rate of the last {} docs before {} docs",
                p.window, p.docs
            ),
            value: p.rate,
            unit: "docs/s",
            baseline: format!("the same before {} docs", first.docs),
            baseline_value: first.rate,
        });
        rows.push(Row {
            figure: format!(
                "akted resident memory (VmRSS) at {} docs, under load",
                p.docs
            ),
            value: p.rss as f64 / MIB,
            unit: "MiB",
            baseline: format!("the same at {} docs", first.docs),
            baseline_value: first.rss as f64 / MIB,
        });
        rows.push(Row {
            figure: format!(
                "akted resident memory at {} docs, idle for {} s",
                p.docs,
                IDLE.as_secs()
            ),
            value: p.idle_rss as f64 / MIB,
            unit: "MiB",
            baseline: format!("the same at {} docs", first.docs),
            baseline_value: first.idle_rss as f64 / MIB,
        });
        let docs_bytes = (p.docs as usize * DOC_BYTES) as f64;
        rows.push(Row {
            figure: format!("data directory at {} docs of 5 KB", p.docs),
            value: p.data_bytes as f64 / MIB,
            unit: "MiB",
            baseline: "the documents' bytes".into(),
            baseline_value: docs_bytes / MIB,
        });
    }
}
