//! akte on PostgreSQL (the Kommunal-Cloud backend) beside PostgreSQL's own commit rate,
//! measured in the same run on a private server with `fsync=on` and
//! `synchronous_commit=on`: small 5 KB documents with 16 clients through one and through
//! three akted instances on one database, the agency corpus through one and three, and
//! the embedded backend beside them. The baseline is pgbench with 16 connections and one
//! single-row insert of 5 KB per transaction.

use anyhow::{bail, Context, Result};

use akte_server::config::ServerConfig;
use akte_server::server::{start, Running};

use crate::grpc::{corpus, ingest_through, ingest_to, prepare, runtime, Target};
use crate::{bench_dir, Row};

/// pgbench: `clients` connections, each transaction one insert of a 5 KB row.
fn pgbench_rate(pg: &akte_tests::pg::PgServer, db: &str, clients: usize, secs: u32) -> Result<f64> {
    pg.psql(
        db,
        "CREATE TABLE IF NOT EXISTS bench_docs (id bigserial PRIMARY KEY, body bytea NOT NULL)",
    )
    .map_err(anyhow::Error::msg)?;
    let work = tempfile::tempdir_in(bench_dir())?;
    let script = work.path().join("insert.sql");
    std::fs::write(&script, "INSERT INTO bench_docs (body) VALUES (convert_to(repeat(md5(random()::text), 157), 'UTF8'));\n")?;
    let out = std::process::Command::new(pg.bin().join("pgbench"))
        .args([
            "-n",
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port().to_string(),
            "-U",
            "postgres",
        ])
        .args([
            "-c",
            &clients.to_string(),
            "-j",
            "2",
            "-T",
            &secs.to_string(),
        ])
        .arg("-f")
        .arg(&script)
        .arg(db)
        .output()
        .context("running pgbench")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "pgbench failed: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    text.lines()
        .find_map(|l| {
            l.strip_prefix("tps = ")
                .and_then(|r| r.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
        })
        .context("pgbench printed no tps line")
}

/// `n` akted instances (in this process) on `database`; returns them, their URLs and a
/// clerk token plus file name for the tenant `tenant`.
async fn instances(
    database: &str,
    n: usize,
    tenant: &str,
) -> Result<(
    Vec<Running>,
    Vec<tempfile::TempDir>,
    Vec<String>,
    String,
    String,
)> {
    let mut running = Vec::new();
    let mut dirs = Vec::new();
    let mut urls = Vec::new();
    for _ in 0..n {
        let dir = tempfile::tempdir_in(bench_dir())?;
        let mut cfg = ServerConfig::new(dir.path());
        cfg.listen = "127.0.0.1:0".parse()?;
        cfg.metrics_listen = None;
        cfg.max_concurrent_requests = 256;
        cfg.max_concurrent_per_principal = 256;
        cfg.database = Some(akte_server::config::DatabaseConfig {
            url: database.to_owned(),
            password: None,
            ca: None,
            pool_size: 24,
            seal_key: Some(akte_postgres::seal::SealKey::new([42; 32])),
            content: None,
        });
        let r = start(cfg).await?;
        urls.push(format!("http://{}", r.addr));
        running.push(r);
        dirs.push(dir);
    }
    let boot = running
        .iter()
        .find_map(|r| r.bootstrap_token.clone())
        .context("no bootstrap token")?;
    let admin = std::fs::read_to_string(boot)?.trim().to_owned();
    let (token, file) = prepare(&urls[0], &admin, tenant).await?;
    // The other instances take the new token from the database within 2 s.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    Ok((running, dirs, urls, token, file))
}

/// Tenants the small documents are spread over in the runs shaped like a Kommunal-Cloud
/// (several municipalities writing at once, two clients each).
const SPREAD_TENANTS: usize = 8;

/// Creates [`SPREAD_TENANTS`] tenants named `{prefix}-{t}`, tenant `t` on instance
/// `urls[t % urls.len()]` (a load balancer that keeps a tenant on one instance while it
/// is up), and returns where client `k` files: `targets[k % SPREAD_TENANTS]`.
async fn spread_targets(urls: &[String], admin: &str, prefix: &str) -> Result<Vec<Target>> {
    let mut targets = Vec::new();
    for t in 0..SPREAD_TENANTS {
        let url = urls[t % urls.len()].clone();
        let (token, file) = prepare(&url, admin, &format!("{prefix}-{t}")).await?;
        targets.push(Target { url, token, file });
    }
    Ok(targets)
}

pub(crate) fn bench_postgres(rows: &mut Vec<Row>, quick: bool) -> Result<()> {
    runtime()?.block_on(run(rows, quick))
}

async fn run(rows: &mut Vec<Row>, quick: bool) -> Result<()> {
    let mode = crate::grpc::Ingest::from_env()?;
    let pg = akte_tests::pg::PgServer::start_with(true);
    let work = tempfile::tempdir_in(bench_dir())?;
    let n = if quick { 1000 } else { 4000 };
    let small: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| {
            (
                format!("brief-{i}.txt"),
                crate::text_bytes(5_000, i as u64 + 1),
            )
        })
        .collect();
    let corpus = corpus(work.path(), quick)?;
    let corpus_bytes: u64 = corpus.iter().map(|(_, b)| b.len() as u64).sum();

    let base_db = pg.fresh_database();
    let base_name = base_db
        .rsplit('/')
        .next()
        .unwrap_or("")
        .split('?')
        .next()
        .unwrap_or("")
        .to_owned();
    let bare = pgbench_rate(&pg, &base_name, 16, if quick { 5 } else { 15 })?;
    rows.push(Row {
        figure: "PostgreSQL alone: 16 connections, one 5 KB row insert per transaction".into(),
        value: bare,
        unit: "/s",
        baseline: "(the baseline of the rows below)".into(),
        baseline_value: bare,
    });

    // The embedded backend, same documents, same run.
    let embedded_corpus;
    {
        let dir = tempfile::tempdir_in(bench_dir())?;
        let mut cfg = ServerConfig::new(dir.path());
        cfg.listen = "127.0.0.1:0".parse()?;
        cfg.metrics_listen = None;
        cfg.max_concurrent_requests = 256;
        cfg.max_concurrent_per_principal = 256;
        let r = start(cfg).await?;
        let url = format!("http://{}", r.addr);
        let boot = r.bootstrap_token.clone().context("no bootstrap token")?;
        let admin = std::fs::read_to_string(boot)?.trim().to_owned();
        let (token, file) = prepare(&url, &admin, "embedded").await?;
        let (secs, busy) =
            ingest_through(std::slice::from_ref(&url), &token, &file, &small, 16, mode).await?;
        rows.push(Row {
            figure: format!("embedded backend: small 5 KB docs, 16 clients ({busy:.1} cores busy)"),
            value: n as f64 / secs,
            unit: "/s",
            baseline: "PostgreSQL alone, 16 connections".into(),
            baseline_value: bare,
        });
        let targets = spread_targets(std::slice::from_ref(&url), &admin, "gemeinde").await?;
        let (secs, busy) = ingest_to(&targets, &small, 16, mode).await?;
        rows.push(Row {
            figure: format!(
                "embedded backend: small 5 KB docs, 16 clients over {SPREAD_TENANTS} tenants ({busy:.1} cores busy)"
            ),
            value: n as f64 / secs,
            unit: "/s",
            baseline: "PostgreSQL alone, 16 connections".into(),
            baseline_value: bare,
        });
        let (secs, _) = ingest_through(&[url], &token, &file, &corpus, 16, mode).await?;
        r.shutdown().await?;
        embedded_corpus = corpus_bytes as f64 / secs / 1e6;
        rows.push(Row {
            figure: format!(
                "embedded backend: corpus ingest, {} docs, 16 clients",
                corpus.len()
            ),
            value: embedded_corpus,
            unit: "MB/s",
            baseline: "(the baseline of the corpus rows below)".into(),
            baseline_value: embedded_corpus,
        });
    }

    for count in [1usize, 3] {
        let db = pg.fresh_database();
        let (running, _dirs, urls, token, file) = instances(&db, count, "klein").await?;
        let calls_before = akte_postgres::ROUND_TRIPS.load(std::sync::atomic::Ordering::Relaxed);
        let by_op_before = akte_postgres::round_trips_by_op();
        let (secs, busy) = ingest_through(&urls, &token, &file, &small, 16, mode).await?;
        let calls =
            akte_postgres::ROUND_TRIPS.load(std::sync::atomic::Ordering::Relaxed) - calls_before;
        let per_op: Vec<String> = akte_postgres::round_trips_by_op()
            .into_iter()
            .map(|(op, k)| (op, k - by_op_before.get(&op).copied().unwrap_or(0)))
            .filter(|(_, k)| *k > 0)
            .map(|((op, held), k)| {
                let held = if held { " (in the append session)" } else { "" };
                format!("{op}{held}: {:.2}", k as f64 / n as f64)
            })
            .collect();
        eprintln!(
            "{count} akted, small documents: database calls per document by operation: {}",
            per_op.join(", ")
        );
        rows.push(Row {
            figure: format!(
                "PostgreSQL backend, {count} akted: small 5 KB docs, 16 clients ({busy:.1} cores busy, {:.1} database calls per doc)",
                calls as f64 / n as f64
            ),
            value: n as f64 / secs,
            unit: "/s",
            baseline: "PostgreSQL alone, 16 connections".into(),
            baseline_value: bare,
        });
        let admin = {
            let boot = running
                .iter()
                .find_map(|r| r.bootstrap_token.clone())
                .context("no bootstrap token")?;
            std::fs::read_to_string(boot)?.trim().to_owned()
        };
        let targets = spread_targets(&urls, &admin, "gemeinde").await?;
        let (secs, busy) = ingest_to(&targets, &small, 16, mode).await?;
        rows.push(Row {
            figure: format!(
                "PostgreSQL backend, {count} akted: small 5 KB docs, 16 clients over {SPREAD_TENANTS} tenants, each tenant on one instance ({busy:.1} cores busy)"
            ),
            value: n as f64 / secs,
            unit: "/s",
            baseline: "PostgreSQL alone, 16 connections".into(),
            baseline_value: bare,
        });
        if count > 1 {
            // The same tenants with every client on an instance of its own choosing (a
            // load balancer without affinity): a tenant's head row travels between them.
            tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
            let anywhere: Vec<Target> = (0..16)
                .map(|k| Target {
                    url: urls[k % urls.len()].clone(),
                    ..targets[k % targets.len()].clone()
                })
                .collect();
            let (secs, busy) = ingest_to(&anywhere, &small, 16, mode).await?;
            rows.push(Row {
                figure: format!(
                    "PostgreSQL backend, {count} akted: small 5 KB docs, 16 clients over {SPREAD_TENANTS} tenants, clients on any instance ({busy:.1} cores busy)"
                ),
                value: n as f64 / secs,
                unit: "/s",
                baseline: "PostgreSQL alone, 16 connections".into(),
                baseline_value: bare,
            });
        }
        let (token2, file2) = {
            let made = prepare(&urls[0], &admin, "korpus").await?;
            tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
            made
        };
        let (secs, busy) = ingest_through(&urls, &token2, &file2, &corpus, 16, mode).await?;
        rows.push(Row {
            figure: format!(
                "PostgreSQL backend, {count} akted: corpus ingest, {} docs, 16 clients ({:.0} docs/s, {busy:.1} cores busy)",
                corpus.len(),
                corpus.len() as f64 / secs
            ),
            value: corpus_bytes as f64 / secs / 1e6,
            unit: "MB/s",
            baseline: "embedded backend, same corpus".into(),
            baseline_value: embedded_corpus,
        });
        for r in running {
            r.shutdown().await?;
        }
    }
    Ok(())
}
