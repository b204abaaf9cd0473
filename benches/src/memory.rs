//! Peak resident memory of the daemon while 64 clients file documents at once (and what it
//! keeps once they are gone), while one client uploads a large document over gRPC, and
//! while it verifies a store of several GiB.
//!
//! The daemon runs in a child process: this benchmark binary re-executes itself with the
//! hidden argument [`CHILD_ARG`], and the child starts the server through
//! `akte_server::server::start`, the entry point `akted`'s `main` calls, on a multi-threaded
//! tokio runtime built as `akted` builds it (only `akted`'s log subscriber is left out). So
//! the one benchmark command needs no separately built `akted`, and the memory read from
//! `/proc/<pid>/status` is the daemon's alone, not the client's. `AKTE_BENCH_DAEMON_WRAP`
//! runs the child under a profiler (e.g. `heaptrack -o /tmp/akted`; the memory figures are
//! then the profiler's process's).
//!
//! Peak RSS is `VmHWM`, reset before each phase by writing `5` to `/proc/<pid>/clear_refs`;
//! where that is refused, `VmRSS` is sampled every 10 ms instead. The baseline is the
//! child's RSS when idle after start and setup, measured in the same run.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use sha2::{Digest as _, Sha256};

use akte_server::client::{unpack, wait_operation, ClientTls, Clients};
use akte_server::config::ServerConfig;
use akte_server::pb::akte::v1 as pb;
use akte_server::server::start;

use crate::{bench_dir, mbps, text_bytes, Row};

/// The hidden first argument that makes the benchmark binary run the daemon.
pub(crate) const CHILD_ARG: &str = "__akted";

const MIB: u64 = 1 << 20;
const CHUNK: usize = 1 << 20;

/// The child: the daemon on `data_dir`, listening on a free loopback port. Prints its
/// address and bootstrap-token file on standard output and stops (gracefully, as on
/// SIGTERM) when standard input is closed.
pub(crate) fn child_main(data_dir: &Path) -> Result<()> {
    // As akted's main does, before the runtime starts its threads.
    akte_server::alloc::limit_arenas();
    let mut cfg = ServerConfig::new(data_dir);
    let runtime = akte_server::server::runtime(&cfg)?;
    let result = runtime.block_on(async {
        cfg.listen = "127.0.0.1:0".parse()?;
        cfg.metrics_listen = None;
        // The 64 clients share one token; the per-principal share must not refuse them.
        cfg.max_concurrent_per_principal = cfg.max_concurrent_requests;
        let running = start(cfg).await?;
        let token = running
            .bootstrap_token
            .clone()
            .context("no bootstrap token")?;
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "addr {}", running.addr)?;
            writeln!(out, "token {}", token.display())?;
            out.flush()?;
        }
        tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        })
        .await?;
        running.shutdown().await?;
        anyhow::Ok(())
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
    result
}

/// The daemon child; closing its stdin stops it, and dropping this waits for that.
pub(crate) struct Daemon {
    child: Child,
    pub(crate) url: String,
    pub(crate) admin_token: String,
}

impl Daemon {
    pub(crate) fn start(data_dir: &Path) -> Result<Daemon> {
        let exe = std::env::current_exe().context("locating the benchmark binary")?;
        // A profiler to run the daemon under (e.g. `heaptrack -o /tmp/akted`), if asked.
        let wrap = std::env::var("AKTE_BENCH_DAEMON_WRAP").unwrap_or_default();
        let mut words = wrap.split_whitespace();
        let mut command = match words.next() {
            Some(program) => {
                let mut c = Command::new(program);
                c.args(words).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        let mut child = command
            .arg(CHILD_ARG)
            .arg(data_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the daemon child")?;
        let mut lines = BufReader::new(child.stdout.take().context("child stdout")?).lines();
        let mut addr = None;
        let mut token = None;
        while addr.is_none() || token.is_none() {
            let Some(line) = lines.next() else {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the daemon child exited before it was ready");
            };
            let line = line?;
            if let Some(a) = line.strip_prefix("addr ") {
                addr = Some(a.to_owned());
            } else if let Some(t) = line.strip_prefix("token ") {
                token = Some(std::fs::read_to_string(t)?.trim().to_owned());
            }
        }
        Ok(Daemon {
            child,
            url: format!("http://{}", addr.unwrap_or_default()),
            admin_token: token.unwrap_or_default(),
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `kB` field of `/proc/<pid>/status`, in bytes.
pub(crate) fn status_field(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix(field).and_then(|r| r.strip_prefix(':')) {
            let kb: u64 = rest
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .with_context(|| format!("parsing {field} of process {pid}"))?;
            return Ok(kb * 1024);
        }
    }
    bail!("no {field} in /proc/{pid}/status")
}

/// Peak RSS of a process during a phase: `VmHWM` after a reset, or the highest sampled
/// `VmRSS` where the reset is refused.
struct PeakRss {
    pid: u32,
    reset: bool,
    stop: Arc<AtomicBool>,
    sampled: Arc<AtomicU64>,
    sampler: Option<std::thread::JoinHandle<()>>,
}

impl PeakRss {
    fn begin(pid: u32) -> PeakRss {
        let reset = std::fs::write(format!("/proc/{pid}/clear_refs"), b"5").is_ok();
        let stop = Arc::new(AtomicBool::new(false));
        let sampled = Arc::new(AtomicU64::new(0));
        let sampler = {
            let (stop, sampled) = (stop.clone(), sampled.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(rss) = status_field(pid, "VmRSS") {
                        sampled.fetch_max(rss, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        PeakRss {
            pid,
            reset,
            stop,
            sampled,
            sampler: Some(sampler),
        }
    }

    /// The peak in bytes, and how it was taken.
    fn end(mut self) -> Result<(u64, &'static str)> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.sampler.take() {
            let _ = h.join();
        }
        let sampled = self.sampled.load(Ordering::Relaxed);
        if self.reset {
            Ok((status_field(self.pid, "VmHWM")?.max(sampled), "VmHWM"))
        } else {
            Ok((sampled, "sampled VmRSS"))
        }
    }
}

/// Deterministic document bytes, produced chunk by chunk so that neither side holds them.
#[derive(Clone)]
enum Source {
    /// Administrative text (zstd-compressible): chunks from a pool, each made unique.
    Text(Arc<Vec<Vec<u8>>>),
    /// Incompressible bytes.
    Random(u64),
}

impl Source {
    fn chunk(&self, i: u64, len: usize) -> Vec<u8> {
        match self {
            Source::Text(pool) => {
                let mut c = pool[(i as usize) % pool.len()][..len].to_vec();
                let tag = format!(" {i:012} ");
                let n = tag.len().min(len);
                c[..n].copy_from_slice(&tag.as_bytes()[..n]);
                c
            }
            Source::Random(seed) => {
                let mut x = (seed << 32) ^ i ^ 0x9e37_79b9_7f4a_7c15;
                let mut v = Vec::with_capacity(len + 8);
                while v.len() < len {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    v.extend_from_slice(&x.to_le_bytes());
                }
                v.truncate(len);
                v
            }
        }
    }

    fn chunks(&self, size: u64) -> impl Iterator<Item = Vec<u8>> + Send + 'static {
        let me = self.clone();
        let n = size.div_ceil(CHUNK as u64);
        (0..n).map(move |i| {
            let len = (size - i * CHUNK as u64).min(CHUNK as u64) as usize;
            me.chunk(i, len)
        })
    }
}

/// Creates a document in `file` and streams `size` bytes of `src` into it as its first
/// version. Returns the seconds the upload took.
async fn upload(
    c: &mut Clients,
    file: &str,
    name: &str,
    src: &Source,
    size: u64,
    sha256: Vec<u8>,
) -> Result<f64> {
    let doc = c
        .documents
        .create_document(pb::CreateDocumentRequest {
            parent: file.to_owned(),
            document: Some(pb::Document {
                subject: name.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    let header = pb::AddVersionRequest {
        message: Some(pb::add_version_request::Message::Header(
            pb::AddVersionHeader {
                parent: doc.name,
                comment: String::new(),
                upload: Some(pb::RenditionUpload {
                    file_name: name.to_owned(),
                    media_type: "application/octet-stream".into(),
                    sha256: sha256.into(),
                    size,
                    ..Default::default()
                }),
                staged_renditions: vec![],
                request_id: String::new(),
                ..Default::default()
            },
        )),
    };
    let chunks = src.chunks(size).map(|c| pb::AddVersionRequest {
        message: Some(pb::add_version_request::Message::Chunk(Bytes::from(c))),
    });
    let start = Instant::now();
    c.documents
        .add_version(tokio_stream::iter(std::iter::once(header).chain(chunks)))
        .await?;
    Ok(start.elapsed().as_secs_f64())
}

/// `clients` clients, each on a connection of its own, each filing `per_client` documents
/// (create + one version) of 5 KB, 40 KB, 300 KB and 1.5 MiB in turn. Returns the
/// documents and bytes filed and the seconds it took.
async fn many_clients(
    url: &str,
    token: &str,
    file: &str,
    clients: usize,
    per_client: usize,
) -> Result<(usize, u64, f64)> {
    const SIZES: [usize; 4] = [5_000, 40_000, 300_000, 1_536 << 10];
    let start = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..clients {
        let (url, token, file) = (url.to_owned(), token.to_owned(), file.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut c = Clients::connect(&url, Some(&token), &ClientTls::default()).await?;
            let mut bytes = 0u64;
            for i in 0..per_client {
                let size = SIZES[(k + i) % SIZES.len()];
                let data = text_bytes(size, (k * 1000 + i) as u64);
                bytes += size as u64;
                let doc = c
                    .documents
                    .create_document(pb::CreateDocumentRequest {
                        parent: file.clone(),
                        document: Some(pb::Document {
                            subject: format!("Brief {k}-{i}"),
                            ..Default::default()
                        }),
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                let header = pb::AddVersionHeader {
                    parent: doc.name,
                    upload: Some(pb::RenditionUpload {
                        file_name: format!("brief-{k}-{i}.txt"),
                        media_type: "text/plain".into(),
                        sha256: akte_server::client::sha256(&data),
                        size: size as u64,
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                let msgs =
                    akte_server::client::add_version_messages(header, Bytes::from(data), CHUNK);
                c.documents.add_version(tokio_stream::iter(msgs)).await?;
            }
            anyhow::Ok(bytes)
        }));
    }
    let mut bytes = 0;
    for t in tasks {
        bytes += t.await??;
    }
    Ok((clients * per_client, bytes, start.elapsed().as_secs_f64()))
}

/// SHA-256 of a document's bytes, and the seconds hashing took (generation excluded).
fn digest_of(src: &Source, size: u64) -> (Vec<u8>, f64) {
    let mut h = Sha256::new();
    let mut hashing = Duration::ZERO;
    for c in src.chunks(size) {
        let t = Instant::now();
        h.update(&c);
        hashing += t.elapsed();
    }
    (h.finalize().to_vec(), hashing.as_secs_f64())
}

pub(crate) fn bench_memory(rows: &mut Vec<Row>, quick: bool) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(run(rows, quick))
}

async fn run(rows: &mut Vec<Row>, quick: bool) -> Result<()> {
    let dir = tempfile::tempdir_in(bench_dir())?;
    let daemon = Daemon::start(&dir.path().join("data"))?;
    let pid = daemon.pid();
    let (token, file) = crate::grpc::prepare(&daemon.url, &daemon.admin_token, "mem").await?;
    let mut c = Clients::connect(&daemon.url, Some(&token), &ClientTls::default()).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = status_field(pid, "VmRSS")?;

    // One client uploads one large document (compressible: the zstd path).
    let big: u64 = if quick { 256 * MIB } else { 2048 * MIB };
    let pool: Vec<Vec<u8>> = (0..64).map(|i| text_bytes(CHUNK, 1000 + i)).collect();
    let text = Source::Text(Arc::new(pool));
    let (sha, mut hash_secs) = digest_of(&text, big);
    let peak = PeakRss::begin(pid);
    let secs = upload(&mut c, &file, "big.txt", &text, big, sha).await?;
    let (upload_peak, how) = peak.end()?;
    let label = if big >= 1 << 30 {
        format!("{} GiB", big >> 30)
    } else {
        format!("{} MiB", big >> 20)
    };

    // More documents (incompressible: the raw path) for a store of several GiB.
    let (count, each): (u64, u64) = if quick {
        (2, 128 * MIB)
    } else {
        (4, 512 * MIB)
    };
    for k in 0..count {
        let src = Source::Random(k + 1);
        let (sha, s) = digest_of(&src, each);
        hash_secs += s;
        upload(&mut c, &file, &format!("scan-{k}.bin"), &src, each, sha).await?;
    }
    let total = big + count * each;

    // A full verification of the tenant, run by the daemon.
    let peak = PeakRss::begin(pid);
    let start = Instant::now();
    let op = c
        .verification
        .verify_tenant(pb::VerifyTenantRequest {
            name: "tenants/mem".into(),
            incremental: false,
            skip_content: false,
            ..Default::default()
        })
        .await?
        .into_inner();
    let done = wait_operation(&mut c.operations, op).await?;
    let report: pb::VerificationReport = unpack(&done)?;
    let verify_secs = start.elapsed().as_secs_f64();
    let (verify_peak, _) = peak.end()?;
    if !report.clean {
        bail!(
            "verify of the memory benchmark store found problems: {:?}",
            report.problems
        );
    }
    drop(c);
    drop(daemon);

    // 64 clients, each on its own connection, file documents of mixed sizes at once, on a
    // daemon of their own (so that the figures above stay comparable with earlier runs).
    let dir = tempfile::tempdir_in(bench_dir())?;
    let daemon = Daemon::start(&dir.path().join("data"))?;
    let pid = daemon.pid();
    let (token, file) = crate::grpc::prepare(&daemon.url, &daemon.admin_token, "many").await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_many = status_field(pid, "VmRSS")?;
    let per_client = if quick { 4 } else { 16 };
    let peak = PeakRss::begin(pid);
    let (docs, bytes, many_secs) = many_clients(&daemon.url, &token, &file, 64, per_client).await?;
    let (many_peak, _) = peak.end()?;
    tokio::time::sleep(Duration::from_secs(15)).await;
    let after_many = status_field(pid, "VmRSS")?;
    drop(daemon);

    let mib = |b: u64| b as f64 / MIB as f64;
    rows.push(Row {
        figure: format!(
            "akted peak RSS, 64 clients filing {docs} docs of 5 KB to 1.5 MiB ({:.0} MB/s)",
            mbps(bytes, Duration::from_secs_f64(many_secs))
        ),
        value: mib(many_peak),
        unit: "MiB",
        baseline: "akted RSS idle after start".into(),
        baseline_value: mib(idle_many),
    });
    rows.push(Row {
        figure: "akted RSS 15 s after the 64 clients left".into(),
        value: mib(after_many),
        unit: "MiB",
        baseline: "akted RSS idle after start".into(),
        baseline_value: mib(idle_many),
    });
    rows.push(Row {
        figure: format!(
            "akted peak RSS ({how}), 1 client uploading {label} ({:.0} MB/s)",
            mbps(big, Duration::from_secs_f64(secs))
        ),
        value: mib(upload_peak),
        unit: "MiB",
        baseline: "akted RSS idle after start".into(),
        baseline_value: mib(idle),
    });
    rows.push(Row {
        figure: format!(
            "akted peak RSS, full verify of {:.1} GiB store",
            total as f64 / (1u64 << 30) as f64
        ),
        value: mib(verify_peak),
        unit: "MiB",
        baseline: "akted RSS idle after start".into(),
        baseline_value: mib(idle),
    });
    rows.push(Row {
        figure: format!(
            "akted full verify of {:.1} GiB ({} objects)",
            total as f64 / (1u64 << 30) as f64,
            report.content_objects
        ),
        value: mbps(report.content_bytes, Duration::from_secs_f64(verify_secs)),
        unit: "MB/s",
        baseline: "sha2 crate, same bytes, 1 core".into(),
        baseline_value: mbps(total, Duration::from_secs_f64(hash_secs)),
    });
    Ok(())
}
