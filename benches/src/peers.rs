//! The `ingest` part: the ways to file a document with its first version over gRPC
//! (two calls, one call, one stream per client), each on a fresh akted, for 5 KB documents
//! and the agency corpus with 16 clients, beside the tools an agency might use instead,
//! measured in the same run on the same corpus: `borg create` (zstd,3) and
//! `restic backup`, where they are on PATH (`tools/bench-peers.sh` installs them from
//! Debian's packages; the benchmark itself installs nothing and says which it skipped).
//!
//! The peers commit once at the end of their run; akte makes every document durable before
//! its answer. The store sizes are compared as well (du of akted's data directory against
//! the peer's repository).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::grpc::{corpus, ingest, runtime, server, Ingest};
use crate::{bench_dir, Row};

/// Bytes under `path` (files only, as allocated blocks are not what the peers report
/// either).
pub(crate) fn tree_size(path: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&p) else {
            continue;
        };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// Whether `tool` runs (`borg --version`, `restic version`).
fn on_path(tool: &str) -> bool {
    let probe = if tool == "restic" {
        "version"
    } else {
        "--version"
    };
    Command::new(tool)
        .arg(probe)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A peer's time for the whole corpus and its repository's size.
struct PeerRun {
    name: &'static str,
    secs: f64,
    size: u64,
}

fn borg(corpus: &Path, work: &Path) -> Result<PeerRun> {
    let repo = work.join("borg-repo");
    let env = |c: &mut Command| {
        c.env("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK", "yes")
            .env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes")
            .env("BORG_BASE_DIR", work.join("borg-base"));
    };
    let mut init = Command::new("borg");
    env(&mut init);
    run(init.args(["init", "--encryption=none"]).arg(&repo))?;
    let mut create = Command::new("borg");
    env(&mut create);
    create
        .args(["create", "--compression", "zstd,3"])
        .arg(format!("{}::bench", repo.display()))
        .arg(corpus);
    let start = Instant::now();
    run(&mut create)?;
    Ok(PeerRun {
        name: "borg create (zstd,3)",
        secs: start.elapsed().as_secs_f64(),
        size: tree_size(&repo),
    })
}

fn restic(corpus: &Path, work: &Path) -> Result<PeerRun> {
    let repo = work.join("restic-repo");
    let env = |c: &mut Command| {
        c.env("RESTIC_PASSWORD", "akte-bench")
            .env("RESTIC_CACHE_DIR", work.join("restic-cache"))
            .arg("--repo")
            .arg(&repo);
    };
    let mut init = Command::new("restic");
    env(&mut init);
    run(init.arg("init"))?;
    let mut backup = Command::new("restic");
    env(&mut backup);
    backup.arg("backup").arg("--quiet").arg(corpus);
    let start = Instant::now();
    run(&mut backup)?;
    Ok(PeerRun {
        name: "restic backup",
        secs: start.elapsed().as_secs_f64(),
        size: tree_size(&repo),
    })
}

pub(crate) fn bench_ingest(rows: &mut Vec<Row>, quick: bool) -> Result<()> {
    runtime()?.block_on(run_ingest(rows, quick))
}

async fn run_ingest(rows: &mut Vec<Row>, quick: bool) -> Result<()> {
    let work = tempfile::tempdir_in(bench_dir())?;
    let docs = corpus(work.path(), quick)?;
    let corpus_dir = work.path().join("corpus");
    let total: u64 = docs.iter().map(|(_, b)| b.len() as u64).sum();
    let n = if quick { 1000 } else { 5000 };
    let small: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| {
            (
                format!("brief-{i}.txt"),
                crate::text_bytes(5_000, i as u64 + 1),
            )
        })
        .collect();

    // akte, each way, on a fresh server each time.
    let mut small_rates = Vec::new();
    let mut corpus_runs = Vec::new();
    for mode in Ingest::ALL {
        let s = server("klein").await?;
        let (secs, busy) = ingest(&s, &small, 16, mode).await?;
        s.running.shutdown().await?;
        small_rates.push((mode, n as f64 / secs, busy));
        let s = server("korpus").await?;
        let (secs, busy) = ingest(&s, &docs, 16, mode).await?;
        s.running.shutdown().await?;
        let size = tree_size(s._dir.path());
        corpus_runs.push((mode, secs, busy, size));
    }
    let two_small = small_rates[0].1;
    for (mode, rate, busy) in &small_rates {
        rows.push(Row {
            figure: format!(
                "ingest: 5 KB docs, 16 clients, {} ({n} docs, {busy:.1} cores busy)",
                mode.name()
            ),
            value: *rate,
            unit: "/s",
            baseline: "two calls, same run".into(),
            baseline_value: two_small,
        });
    }
    let mbps = |secs: f64| total as f64 / secs / 1e6;
    let two_corpus = mbps(corpus_runs[0].1);
    for (mode, secs, busy, _) in &corpus_runs {
        rows.push(Row {
            figure: format!(
                "ingest: corpus, 16 clients, {} ({} docs, {:.0} docs/s, {busy:.1} cores busy)",
                mode.name(),
                docs.len(),
                docs.len() as f64 / secs
            ),
            value: mbps(*secs),
            unit: "MB/s",
            baseline: "two calls, same run".into(),
            baseline_value: two_corpus,
        });
    }

    // The peers on the same corpus (files in a directory, just written: in the page
    // cache, as akte's clients hold them in memory).
    let mut peers = Vec::new();
    for (tool, f) in [
        ("borg", borg as fn(&Path, &Path) -> Result<PeerRun>),
        ("restic", restic),
    ] {
        if !on_path(tool) {
            eprintln!(
                "ingest: {tool} is not on PATH; its comparison is skipped \
                 (tools/bench-peers.sh installs borgbackup and restic from Debian's packages)"
            );
            continue;
        }
        let dir = tempfile::tempdir_in(bench_dir())?;
        match f(&corpus_dir, dir.path()) {
            Ok(p) => peers.push(p),
            Err(e) => eprintln!("ingest: {tool} failed, skipped: {e:#}"),
        }
    }
    for p in &peers {
        for (mode, secs, _, _) in corpus_runs.iter().skip(1) {
            rows.push(Row {
                figure: format!("ingest: corpus, 16 clients, {} vs {}", mode.name(), p.name),
                value: mbps(*secs),
                unit: "MB/s",
                baseline: format!("{}, same corpus", p.name),
                baseline_value: mbps(p.secs),
            });
        }
        let (_, _, _, size) = corpus_runs[1];
        rows.push(Row {
            figure: format!(
                "store size after the corpus ({:.0} MB of documents), one call",
                total as f64 / 1e6
            ),
            value: size as f64 / 1e6,
            unit: "MB",
            baseline: format!("{} repository", p.name),
            baseline_value: p.size as f64 / 1e6,
        });
    }
    Ok(())
}
