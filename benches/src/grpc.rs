//! End-to-end ingest through akted over loopback, on the agency-like corpus from
//! `../shared/corpus/gen_corpus.py`, beside the bound that hashing plus compression sets on
//! the machine's cores (measured in the same run).
//!
//! The server runs in the benchmark's own process (the same code as `akted`, started
//! through the library), so client and server share the two cores, as they would on one
//! loopback machine.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use sha2::{Digest as _, Sha256};

use akte_server::client::{
    add_version_messages, sha256, unpack, wait_operation, ClientTls, Clients,
};
use akte_server::config::ServerConfig;
use akte_server::pb::akte::v1 as pb;
use akte_server::server::{start, Running};

use crate::{bench_dir, mbps, Row};

pub(crate) fn corpus(dir: &Path, quick: bool) -> Result<Vec<(String, Vec<u8>)>> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/corpus/gen_corpus.py"
    );
    let out = dir.join("corpus");
    let status = Command::new("python3")
        .arg(script)
        .arg(&out)
        .args(["--profile", if quick { "tiny" } else { "small" }])
        .status()
        .context("running gen_corpus.py (python3 and ../shared are needed)")?;
    if !status.success() {
        bail!("gen_corpus.py failed");
    }
    let mut files = Vec::new();
    let mut stack = vec![out];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                files.push((name, std::fs::read(&p)?));
            }
        }
    }
    files.sort();
    Ok(files)
}

struct Server {
    running: Running,
    _dir: tempfile::TempDir,
    url: String,
    token: String,
    file: String,
}

async fn server(tenant: &str) -> Result<Server> {
    let dir = tempfile::tempdir_in(bench_dir())?;
    let mut cfg = ServerConfig::new(dir.path());
    cfg.listen = "127.0.0.1:0".parse()?;
    cfg.metrics_listen = None;
    cfg.max_concurrent_requests = 256;
    cfg.max_concurrent_per_principal = 256;
    let running = start(cfg).await?;
    let url = format!("http://{}", running.addr);
    let boot = running
        .bootstrap_token
        .clone()
        .context("no bootstrap token")?;
    let admin_token = std::fs::read_to_string(boot)?.trim().to_owned();
    let (token, file) = prepare(&url, &admin_token, tenant).await?;
    Ok(Server {
        running,
        _dir: dir,
        url,
        token,
        file,
    })
}

/// Creates `tenant`, a registrar/clerk token for it, a plan unit and a file; returns the
/// token and the file's name.
pub(crate) async fn prepare(
    url: &str,
    admin_token: &str,
    tenant: &str,
) -> Result<(String, String)> {
    let mut admin = Clients::connect(url, Some(admin_token), &ClientTls::default()).await?;
    admin
        .tenants
        .create_tenant(pb::CreateTenantRequest {
            tenant_id: tenant.into(),
            ..Default::default()
        })
        .await?;
    let token = admin
        .tenants
        .create_token(pb::CreateTokenRequest {
            parent: format!("tenants/{tenant}"),
            principal: "bench:clerk".into(),
            roles: vec![
                pb::Role::Registrar as i32,
                pb::Role::Clerk as i32,
                pb::Role::Archivist as i32,
            ],
            description: String::new(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .secret;
    let mut c = Clients::connect(url, Some(&token), &ClientTls::default()).await?;
    let unit = c
        .plan
        .create_plan_unit(pb::CreatePlanUnitRequest {
            parent: format!("tenants/{tenant}"),
            plan_unit: Some(pb::PlanUnit {
                code: "1".into(),
                title: "Benchmark".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    let file = c
        .files
        .create_file(pb::CreateFileRequest {
            parent: unit.name,
            file: Some(pb::File {
                subject: "Benchmark".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner()
        .name;
    Ok((token, file))
}

/// Files each document (create + streamed version) with `clients` concurrent clients.
/// Returns the seconds it took and the cores busy meanwhile (client and server together).
async fn ingest(s: &Server, docs: &[(String, Vec<u8>)], clients: usize) -> Result<(f64, f64)> {
    ingest_through(
        std::slice::from_ref(&s.url),
        &s.token,
        &s.file,
        docs,
        clients,
    )
    .await
}

/// As [`ingest`], client `k` talking to `urls[k % urls.len()]` (instances of one
/// installation).
pub(crate) async fn ingest_through(
    urls: &[String],
    token: &str,
    file: &str,
    docs: &[(String, Vec<u8>)],
    clients: usize,
) -> Result<(f64, f64)> {
    let cpu = crate::process_cpu_seconds();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..clients {
        let mine: Vec<(String, Bytes)> = docs
            .iter()
            .skip(k)
            .step_by(clients)
            .map(|(n, b)| (n.clone(), Bytes::copy_from_slice(b)))
            .collect();
        let (url, token, file) = (
            urls[k % urls.len()].clone(),
            token.to_owned(),
            file.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            let mut c = Clients::connect(&url, Some(&token), &ClientTls::default()).await?;
            for (name, data) in mine {
                let doc = c
                    .documents
                    .create_document(pb::CreateDocumentRequest {
                        parent: file.clone(),
                        document: Some(pb::Document {
                            subject: name.clone(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                let header = pb::AddVersionHeader {
                    parent: doc.name,
                    comment: String::new(),
                    upload: Some(pb::RenditionUpload {
                        file_name: name,
                        media_type: "application/octet-stream".into(),
                        sha256: sha256(&data),
                        size: data.len() as u64,
                    }),
                    staged_renditions: vec![],
                    request_id: String::new(),
                    ..Default::default()
                };
                let msgs = add_version_messages(header, data, 1 << 20);
                c.documents.add_version(tokio_stream::iter(msgs)).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = start.elapsed().as_secs_f64();
    Ok((secs, (crate::process_cpu_seconds() - cpu) / secs))
}

/// The runtime client and server share: two workers, as on the machines the targets are for.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

pub(crate) fn bench_grpc(rows: &mut Vec<Row>, quick: bool) -> Result<()> {
    runtime()?.block_on(run(rows, quick))
}

async fn run(rows: &mut Vec<Row>, quick: bool) -> Result<()> {
    let work = tempfile::tempdir_in(bench_dir())?;
    let docs = corpus(work.path(), quick)?;
    let total: u64 = docs.iter().map(|(_, b)| b.len() as u64).sum();
    // The bound: every byte is hashed and zstd-compressed (akte skips compression for
    // incompressible data, so this bound is conservative), on all cores.
    let start = Instant::now();
    for (_, b) in &docs {
        std::hint::black_box(Sha256::digest(b));
    }
    let sha = mbps(total, start.elapsed());
    let start = Instant::now();
    for (_, b) in &docs {
        std::hint::black_box(zstd::bulk::compress(b, 3)?);
    }
    let zstd_rate = mbps(total, start.elapsed());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as f64;
    let bound = cores / (1.0 / sha + 1.0 / zstd_rate);
    // AKTE_BENCH_CLIENTS=16 runs one client count only (for profiling one phase).
    let counts: Vec<usize> = match std::env::var("AKTE_BENCH_CLIENTS") {
        Ok(v) => v
            .split(',')
            .map(|c| c.trim().parse())
            .collect::<Result<_, _>>()
            .context("AKTE_BENCH_CLIENTS: a comma-separated list of client counts")?,
        Err(_) => vec![1, 4, 16],
    };
    for clients in counts {
        let s = server(&format!("c{clients}")).await?;
        let (secs, busy) = ingest(&s, &docs, clients).await?;
        let mut verify_row = None;
        if clients == 16 {
            // A full verification of this records-model store, run by the server.
            let mut c = Clients::connect(&s.url, Some(&s.token), &ClientTls::default()).await?;
            let start = Instant::now();
            let op = c
                .verification
                .verify_tenant(pb::VerifyTenantRequest {
                    name: format!("tenants/c{clients}"),
                    incremental: false,
                    skip_content: false,
                })
                .await?
                .into_inner();
            let done = wait_operation(&mut c.operations, op).await?;
            let report: pb::VerificationReport = unpack(&done)?;
            let verify_secs = start.elapsed().as_secs_f64();
            if !report.clean {
                bail!(
                    "verify of the ingested store found problems: {:?}",
                    report.problems
                );
            }
            verify_row = Some(Row {
                figure: format!(
                    "gRPC full verify of that store ({} entries, {} objects)",
                    report.entries_checked, report.content_objects
                ),
                value: report.content_bytes as f64 / verify_secs / 1e6,
                unit: "MB/s",
                baseline: "sha2 crate, same corpus, 1 core".into(),
                baseline_value: sha,
            });
        }
        s.running.shutdown().await?;
        rows.push(Row {
            figure: format!(
                "gRPC ingest, {} docs, {clients} clients ({:.0} docs/s, {busy:.1} cores busy)",
                docs.len(),
                docs.len() as f64 / secs
            ),
            value: total as f64 / secs / 1e6,
            unit: "MB/s",
            baseline: format!("hash+zstd bound on {cores} cores"),
            baseline_value: bound,
        });
        rows.extend(verify_row);
    }
    Ok(())
}

/// Small durable documents: 5 KB each, 16 clients, beside one writer's bare
/// write + fdatasync loop.
pub(crate) fn bench_small(rows: &mut Vec<Row>, quick: bool) -> Result<()> {
    runtime()?.block_on(run_small(rows, quick))
}

async fn run_small(rows: &mut Vec<Row>, quick: bool) -> Result<()> {
    let work = tempfile::tempdir_in(bench_dir())?;
    let n = if quick { 1000 } else { 5000 };
    let small: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| {
            (
                format!("brief-{i}.txt"),
                crate::text_bytes(5_000, i as u64 + 1),
            )
        })
        .collect();
    let raw = raw_fsync_rate(work.path(), 2000)?;
    let s = server("small").await?;
    let (secs, busy) = ingest(&s, &small, 16).await?;
    let tenant = s.running.records().tenant("small")?;
    let stats = tenant.tenant().journal().stats();
    let per_flush = stats.entries.load(std::sync::atomic::Ordering::Relaxed) as f64
        / stats
            .flushes
            .load(std::sync::atomic::Ordering::Relaxed)
            .max(1) as f64;
    let reads = read_rate(&s, 16, if quick { 1000 } else { 5000 }).await?;
    s.running.shutdown().await?;
    rows.push(Row {
        figure: format!(
            "gRPC small 5 KB docs, 16 clients ({n} docs, {busy:.1} cores busy, {per_flush:.1} entries/flush)"
        ),
        value: n as f64 / secs,
        unit: "/s",
        baseline: "write+fdatasync of 5 KB, 1 writer".into(),
        baseline_value: raw,
    });
    // What the RPC machinery alone allows: a document's two calls cost at least two
    // round trips through tonic, HTTP/2 and a worker thread.
    rows.push(Row {
        figure: "gRPC small 5 KB docs (2 calls each), 16 clients".into(),
        value: n as f64 / secs,
        unit: "/s",
        baseline: "half the rate of GetDocument calls, 16 clients".into(),
        baseline_value: reads / 2.0,
    });
    Ok(())
}

/// GetDocument calls per second with `clients` concurrent clients (`total` calls in all):
/// one unary round trip each, with a blocking read of the index and nothing to flush.
async fn read_rate(s: &Server, clients: usize, total: usize) -> Result<f64> {
    let mut c = Clients::connect(&s.url, Some(&s.token), &ClientTls::default()).await?;
    let doc = c
        .documents
        .create_document(pb::CreateDocumentRequest {
            parent: s.file.clone(),
            document: Some(pb::Document {
                subject: "read me".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner()
        .name;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (url, token, doc) = (s.url.clone(), s.token.clone(), doc.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = Clients::connect(&url, Some(&token), &ClientTls::default()).await?;
            for _ in 0..total / clients {
                c.documents
                    .get_document(pb::GetDocumentRequest {
                        name: doc.clone(),
                        ..Default::default()
                    })
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok((total / clients * clients) as f64 / start.elapsed().as_secs_f64())
}

fn raw_fsync_rate(dir: &Path, n: usize) -> Result<f64> {
    use std::io::Write;
    let p: PathBuf = dir.join("raw-fsync");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)?;
    let buf = vec![7u8; 5_000];
    let start = Instant::now();
    for _ in 0..n {
        f.write_all(&buf)?;
        f.sync_data()?;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}
