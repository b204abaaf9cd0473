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
    add_version_messages, create_documents_messages, sha256, unpack, wait_operation,
    with_first_version, ClientTls, Clients,
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

pub(crate) struct Server {
    pub(crate) running: Running,
    pub(crate) _dir: tempfile::TempDir,
    url: String,
    token: String,
    file: String,
}

pub(crate) async fn server(tenant: &str) -> Result<Server> {
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

/// How the benchmark's clients file a document with its first version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ingest {
    /// CreateDocument, then AddVersion: two calls and two journal entries (before issue 20).
    TwoCalls,
    /// CreateDocument with the bytes inline (CreateDocuments for more than 4 MiB): one call,
    /// one entry.
    OneCall,
    /// One CreateDocuments stream per client for all its documents: one entry each.
    Stream,
}

impl Ingest {
    /// All three, in the order the `ingest` part measures them.
    pub(crate) const ALL: [Ingest; 3] = [Ingest::TwoCalls, Ingest::OneCall, Ingest::Stream];

    /// `AKTE_BENCH_INGEST`: `one-call` (the default), `two-calls` or `stream`; the path the
    /// grpc, small and postgres parts take.
    pub(crate) fn from_env() -> Result<Ingest> {
        match std::env::var("AKTE_BENCH_INGEST").as_deref() {
            Err(_) | Ok("one-call") => Ok(Ingest::OneCall),
            Ok("two-calls") => Ok(Ingest::TwoCalls),
            Ok("stream") => Ok(Ingest::Stream),
            Ok(other) => {
                bail!("AKTE_BENCH_INGEST={other:?}: use one-call, two-calls or stream")
            }
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Ingest::TwoCalls => "two calls",
            Ingest::OneCall => "one call",
            Ingest::Stream => "one stream per client",
        }
    }

    /// Unary round trips a document costs at least (a stream's documents share theirs).
    pub(crate) fn calls_per_document(self) -> f64 {
        match self {
            Ingest::TwoCalls => 2.0,
            Ingest::OneCall | Ingest::Stream => 1.0,
        }
    }
}

/// Files each document (with its first version) with `clients` concurrent clients, the way
/// `mode` says. Returns the seconds it took and the cores busy meanwhile (client and
/// server together).
pub(crate) async fn ingest(
    s: &Server,
    docs: &[(String, Vec<u8>)],
    clients: usize,
    mode: Ingest,
) -> Result<(f64, f64)> {
    ingest_through(
        std::slice::from_ref(&s.url),
        &s.token,
        &s.file,
        docs,
        clients,
        mode,
    )
    .await
}

fn new_document(file: &str, name: &str) -> pb::CreateDocumentRequest {
    pb::CreateDocumentRequest {
        parent: file.to_owned(),
        document: Some(pb::Document {
            subject: name.to_owned(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The messages of one document in a CreateDocuments stream: inline up to 1 MiB, else
/// declared and chunked.
fn stream_messages(file: &str, name: &str, data: Bytes) -> Vec<pb::CreateDocumentsRequest> {
    const MEDIA: &str = "application/octet-stream";
    if data.len() <= akte_server::upload::MAX_CHUNK {
        let req = with_first_version(new_document(file, name), data, name, MEDIA);
        return create_documents_messages(req, None, Bytes::new(), 0);
    }
    let upload = pb::RenditionUpload {
        file_name: name.to_owned(),
        media_type: MEDIA.into(),
        sha256: sha256(&data),
        size: data.len() as u64,
    };
    create_documents_messages(new_document(file, name), Some(upload), data, 1 << 20)
}

/// Checks a CreateDocuments answer: every document recorded.
fn all_created(r: &pb::CreateDocumentsResponse) -> Result<()> {
    if r.failed > 0 {
        let first = r.results.iter().find_map(|x| match &x.result {
            Some(pb::create_documents_result::Result::Error(e)) => Some(e.message.clone()),
            _ => None,
        });
        bail!("{} documents refused, first: {first:?}", r.failed);
    }
    Ok(())
}

/// Files one document with its first version the way `mode` says (not `Stream`).
async fn file_one(
    c: &mut Clients,
    file: &str,
    name: String,
    data: Bytes,
    mode: Ingest,
) -> Result<()> {
    if mode == Ingest::OneCall {
        if data.len() <= akte_server::upload::MAX_INLINE_CONTENT {
            let req = with_first_version(
                new_document(file, &name),
                data,
                &name,
                "application/octet-stream",
            );
            c.documents.create_document(req).await?;
        } else {
            let msgs = stream_messages(file, &name, data);
            let r = c
                .documents
                .create_documents(tokio_stream::iter(msgs))
                .await?
                .into_inner();
            all_created(&r)?;
        }
        return Ok(());
    }
    let doc = c
        .documents
        .create_document(new_document(file, &name))
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
    Ok(())
}

/// As [`ingest`], client `k` talking to `urls[k % urls.len()]` (instances of one
/// installation).
pub(crate) async fn ingest_through(
    urls: &[String],
    token: &str,
    file: &str,
    docs: &[(String, Vec<u8>)],
    clients: usize,
    mode: Ingest,
) -> Result<(f64, f64)> {
    let targets: Vec<Target> = urls
        .iter()
        .map(|url| Target {
            url: url.clone(),
            token: token.to_owned(),
            file: file.to_owned(),
        })
        .collect();
    ingest_to(&targets, docs, clients, mode).await
}

/// Where a client files its documents: an instance, a token and a file (of some tenant).
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) url: String,
    pub(crate) token: String,
    pub(crate) file: String,
}

/// As [`ingest_through`], client `k` filing into `targets[k % targets.len()]`.
pub(crate) async fn ingest_to(
    targets: &[Target],
    docs: &[(String, Vec<u8>)],
    clients: usize,
    mode: Ingest,
) -> Result<(f64, f64)> {
    if targets.is_empty() {
        bail!("no instance to file into");
    }
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
        let Target { url, token, file } = targets[k % targets.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut c = Clients::connect(&url, Some(&token), &ClientTls::default()).await?;
            if mode == Ingest::Stream {
                let f = file.clone();
                let msgs = mine
                    .into_iter()
                    .flat_map(move |(name, data)| stream_messages(&f, &name, data));
                let r = c
                    .documents
                    .create_documents(tokio_stream::iter(msgs))
                    .await?
                    .into_inner();
                return all_created(&r);
            }
            for (name, data) in mine {
                file_one(&mut c, &file, name, data, mode).await?;
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
    let mode = Ingest::from_env()?;
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
        let (secs, busy) = ingest(&s, &docs, clients, mode).await?;
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
                "gRPC ingest ({}), {} docs, {clients} clients ({:.0} docs/s, {busy:.1} cores busy)",
                mode.name(),
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
    let mode = Ingest::from_env()?;
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
    let (secs, busy) = ingest(&s, &small, 16, mode).await?;
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
            "gRPC small 5 KB docs ({}), 16 clients ({n} docs, {busy:.1} cores busy, {per_flush:.1} entries/flush)",
            mode.name()
        ),
        value: n as f64 / secs,
        unit: "/s",
        baseline: "write+fdatasync of 5 KB, 1 writer".into(),
        baseline_value: raw,
    });
    // What the RPC machinery alone allows: a document costs at least one round trip
    // through tonic, HTTP/2 and a worker thread per call (two calls on the old path).
    let calls = mode.calls_per_document();
    rows.push(Row {
        figure: format!("gRPC small 5 KB docs ({}), 16 clients", mode.name()),
        value: n as f64 / secs,
        unit: "/s",
        baseline: format!("the rate of GetDocument calls / {calls}, 16 clients"),
        baseline_value: reads / calls,
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

/// Taking over the small corpus packaged as a handover (0401): one tenant files every
/// document (library), writes the 0401, and a second data directory imports it (library,
/// streaming each primary file from the ZIP into its content store); beside the gRPC ingest
/// of the same corpus with 16 clients, in the same run.
pub(crate) fn bench_handover(rows: &mut Vec<Row>, quick: bool) -> Result<()> {
    use akte_core::records::{NewDocument, NewFile, NewPlanUnit, NewRendition, NewVersion};
    use akte_core::records::{PackageOptions, Records};
    use akte_core::store::StoreOptions;
    use akte_core::xdomea::Party;

    let work = tempfile::tempdir_in(bench_dir())?;
    let docs = corpus(work.path(), quick)?;
    let total: u64 = docs.iter().map(|(_, b)| b.len() as u64).sum();
    let a_dir = tempfile::tempdir_in(bench_dir())?;
    let a = Records::open(
        akte_core::embedded::open(a_dir.path())?,
        StoreOptions::default(),
    )?;
    let ta = a.create_tenant("a")?;
    let unit = ta.create_plan_unit(
        "bench",
        NewPlanUnit {
            code: "1".into(),
            title: "Benchmark".into(),
            ..NewPlanUnit::default()
        },
        None,
    )?;
    let file = ta.create_file(
        "bench",
        NewFile {
            plan_unit: unit.id,
            subject: "Benchmark".into(),
            ..NewFile::default()
        },
        None,
    )?;
    for (name, bytes) in &docs {
        let put = ta.put_content(&bytes[..])?;
        ta.create_document_with_version(
            "bench",
            NewDocument {
                parent: file.id,
                subject: name.clone(),
                ..NewDocument::default()
            },
            NewVersion {
                comment: String::new(),
                renditions: vec![NewRendition {
                    file_name: name.clone(),
                    media_type: "application/octet-stream".into(),
                    sha256: put.digest,
                    size: put.size,
                }],
            },
            None,
        )?;
    }
    let package = work.path().join("abgabe-0401.zip");
    let start = Instant::now();
    let out = std::fs::File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&package)?;
    ta.export_handover(
        "bench",
        &[file.id],
        Party::agency("1", "A"),
        Party::agency("2", "B"),
        out,
    )?;
    let export_secs = start.elapsed().as_secs_f64();
    let zip_size = std::fs::metadata(&package)?.len();
    drop(a);
    let b_dir = tempfile::tempdir_in(bench_dir())?;
    let b = Records::open(
        akte_core::embedded::open(b_dir.path())?,
        StoreOptions::default(),
    )?;
    let tb = b.create_tenant("b")?;
    let cpu = crate::process_cpu_seconds();
    let start = Instant::now();
    let done = tb.import_package(
        "bench",
        std::fs::File::open(&package)?,
        &PackageOptions {
            create_plan_units: true,
            ..PackageOptions::default()
        },
        &mut |_| {},
    )?;
    let secs = start.elapsed().as_secs_f64();
    let busy = (crate::process_cpu_seconds() - cpu) / secs;
    if done.report.failed > 0 || done.report.imported != docs.len() as u64 + 2 {
        bail!("the benchmark import failed: {:?}", done.report);
    }
    drop(b);
    let ingest = runtime()?.block_on(async {
        let s = server("m16").await?;
        let r = ingest(&s, &docs, 16, Ingest::from_env()?).await?;
        s.running.shutdown().await?;
        anyhow::Ok(r)
    })?;
    rows.push(Row {
        figure: format!(
            "0401 export of {} docs ({:.0} docs/s, ZIP {:.0} MB)",
            docs.len(),
            docs.len() as f64 / export_secs,
            zip_size as f64 / 1e6
        ),
        value: total as f64 / export_secs / 1e6,
        unit: "MB/s",
        baseline: "gRPC ingest, same corpus, 16 clients".into(),
        baseline_value: total as f64 / ingest.0 / 1e6,
    });
    rows.push(Row {
        figure: format!(
            "0401 import of {} docs ({:.0} docs/s, {busy:.1} cores busy)",
            docs.len(),
            docs.len() as f64 / secs
        ),
        value: total as f64 / secs / 1e6,
        unit: "MB/s",
        baseline: format!(
            "gRPC ingest, same corpus, 16 clients ({:.0} docs/s)",
            docs.len() as f64 / ingest.0
        ),
        baseline_value: total as f64 / ingest.0 / 1e6,
    });
    Ok(())
}
