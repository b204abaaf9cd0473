//! Faults of the storage under akted, made real: verification that writes nothing (of a
//! copy, with torn tails, and beside a running akted), a start on a full disk, and a
//! failing device.
//!
//! The kernel of this sandbox has no device mapper (no dm-error or dm-flakey), so the
//! failing device is `support/faultfs.c`: an LD_PRELOAD shim, built here with the
//! system's C compiler, that makes every write and flush of akted's files under
//! `tenants/` fail with EIO while a trigger file exists. The same shim, in its other
//! mode, refuses and logs every call of `akte verify` that would change anything in the
//! data directory, so "nothing written" is checked call by call, also while akted changes
//! the files itself. The full disk is a real tmpfs mounted by the test (root); where none
//! can be mounted that test says so and passes without checking anything.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use akte_server::client::{ClientTls, Clients};
use akte_server::error::reason;
use akte_server::pb::akte::v1 as pb;
use akte_server::server::start;
use sha2::{Digest as _, Sha256};
use support::{add_version, bytes_of, config, expect_status, R};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

// ------------------------------------------------------------------------------ helpers

/// Every file and directory under `dir`: kind, length, mode, modification time and, for
/// files, the SHA-256 of the bytes. A path that vanishes while it is walked (akted still
/// settling: a full-text merge removing a segment) is left out; callers compare two
/// snapshots, so it shows up as a difference there.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    fn vanished<T>(r: std::io::Result<T>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => panic!("snapshot: {e}"),
        }
    }
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let Some(items) = vanished(std::fs::read_dir(dir)) else {
            return;
        };
        for item in items {
            let Some(item) = vanished(item) else {
                continue;
            };
            let path = item.path();
            let Some(meta) = vanished(std::fs::symlink_metadata(&path)) else {
                continue;
            };
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let head = format!(
                "{:?} len {} mode {:o} mtime {}.{}",
                meta.file_type(),
                meta.len(),
                meta.mode(),
                meta.mtime(),
                meta.mtime_nsec()
            );
            if meta.is_dir() {
                out.insert(rel, head);
                walk(root, &path, out);
            } else if meta.is_file() {
                let Some(bytes) = vanished(std::fs::read(&path)) else {
                    continue;
                };
                out.insert(
                    rel,
                    format!("{head} sha256 {}", hex::encode(Sha256::digest(&bytes))),
                );
            } else {
                out.insert(rel, head);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// What differs between two snapshots, one line per path.
fn differences(a: &BTreeMap<PathBuf, String>, b: &BTreeMap<PathBuf, String>) -> Vec<String> {
    let mut out = Vec::new();
    for (p, v) in a {
        match b.get(p) {
            None => out.push(format!("removed {}", p.display())),
            Some(w) if w != v => out.push(format!("changed {}: {v} -> {w}", p.display())),
            _ => {}
        }
    }
    for p in b.keys().filter(|p| !a.contains_key(*p)) {
        out.push(format!("created {}", p.display()));
    }
    out
}

/// The shim (see the module documentation), compiled once per test run.
fn faultfs() -> &'static Path {
    static SHIM: OnceLock<PathBuf> = OnceLock::new();
    SHIM.get_or_init(|| {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/faultfs.c");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("faultfs-{}.so", std::process::id()));
        let status = Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-Wall", "-o"])
            .arg(&out)
            .arg(&source)
            .arg("-ldl")
            .status()
            .expect("a C compiler (cc) builds the fault shim; install gcc");
        assert!(status.success(), "compiling {}", source.display());
        out
    })
}

/// `akte` with `args`, on `data`, optionally under the shim refusing and logging every
/// change to `data` (into `forbid_log`).
fn akte(data: &Path, args: &[&str], forbid_log: Option<&Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_akte"));
    cmd.arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("AKTE_LOG")
        .env_remove("AKTE_DATA_DIR");
    if let Some(log) = forbid_log {
        cmd.env("LD_PRELOAD", faultfs())
            .env("FAULTFS_PREFIX", data)
            .env("FAULTFS_FORBID_LOG", log);
    }
    cmd.output().expect("running akte")
}

/// Runs `akte --json verify` on `data` under the shim's forbid mode: asserts that it made
/// no call that would change anything there, and returns its exit code and report.
fn verify_read_only(data: &Path) -> (i32, serde_json::Value) {
    let log = tempfile::NamedTempFile::new().unwrap();
    let out = akte(data, &["--json", "verify"], Some(log.path()));
    let attempts = std::fs::read_to_string(log.path()).unwrap();
    assert!(
        attempts.is_empty(),
        "akte verify tried to change the data directory:\n{attempts}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let code = out.status.code().expect("akte killed by a signal");
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}), exit {code}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, report)
}

fn problems(report: &serde_json::Value) -> Vec<String> {
    report["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| {
            t["problems"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.to_string())
        })
        .collect()
}

fn entries(report: &serde_json::Value, tenant: &str) -> u64 {
    report["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tenant"] == tenant)
        .and_then(|t| t["entries"].as_u64())
        .unwrap_or_else(|| panic!("no tenant {tenant} in {report}"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// An akted child process, killed if a test fails before stopping it.
struct Daemon(std::process::Child);

impl Daemon {
    /// akted on `data` at `port`, with extra environment variables.
    fn spawn(data: &Path, port: u16, env: &[(&str, &std::ffi::OsStr)]) -> Daemon {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_akted"));
        cmd.arg("--data-dir")
            .arg(data)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-listen", "off", "--drain-timeout-secs", "20"])
            .env("AKTED_LOG", "warn")
            .stderr(std::process::Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Daemon(cmd.spawn().expect("spawn akted"))
    }

    /// Sends SIGTERM and waits for the exit code.
    fn terminate(&mut self) -> Option<i32> {
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        let rc = unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        assert_eq!(rc, 0, "SIGTERM delivered");
        tokio::task::block_in_place(|| self.0.wait()).ok()?.code()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The admin token a first start wrote, once akted accepts calls.
async fn admin_of(data: &Path, url: &str) -> (String, Clients) {
    let boot = data.join("bootstrap-token");
    for _ in 0..600 {
        if let Ok(t) = std::fs::read_to_string(&boot) {
            if let Ok(c) = Clients::connect(url, Some(t.trim()), &ClientTls::default()).await {
                return (t.trim().to_owned(), c);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("akted did not come up at {url}");
}

/// A tenant with a plan unit and a file; returns the file's name.
async fn tenant_with_file(c: &mut Clients, tenant: &str) -> R<String> {
    c.tenants
        .create_tenant(pb::CreateTenantRequest {
            tenant_id: tenant.into(),
        })
        .await?;
    let unit = c
        .plan
        .create_plan_unit(pb::CreatePlanUnitRequest {
            parent: format!("tenants/{tenant}"),
            plan_unit: Some(pb::PlanUnit {
                code: "1".into(),
                title: "Allgemein".into(),
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
                subject: "Fehlerfälle".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(file.name)
}

/// One write of each kind: a document (journal) and a version of it (content and journal).
/// Returns the document's name and the version's bytes.
async fn write_document(
    c: &mut Clients,
    file: &str,
    n: u64,
) -> Result<(String, Vec<u8>), tonic::Status> {
    let doc = c
        .documents
        .create_document(pb::CreateDocumentRequest {
            parent: file.into(),
            document: Some(pb::Document {
                subject: format!("Schreiben {n}"),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    let data = bytes_of(3_000 + (n as usize % 7) * 1_000, n);
    add_version(c, &doc.name, &data).await?;
    Ok((doc.name, data))
}

/// The first rendition of version 1 of `doc`.
async fn download(c: &mut Clients, doc: &str) -> Result<Vec<u8>, tonic::Status> {
    let mut s = c
        .documents
        .download_rendition(pb::DownloadRenditionRequest {
            name: format!("{doc}/versions/1"),
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(m) = s.message().await? {
        if let Some(pb::download_rendition_response::Message::Chunk(b)) = m.message {
            out.extend_from_slice(&b);
        }
    }
    Ok(out)
}

async fn writes_health(url: &str) -> Option<i32> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .ok()?
        .connect()
        .await
        .ok()?;
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: akte_server::server::WRITES_HEALTH.into(),
        })
        .await
        .ok()
        .map(|r| r.into_inner().status)
}

/// Waits (polling, at most `tries` × 100 ms) until akted reports `want` for writes.
async fn await_writes_health(url: &str, want: ServingStatus, tries: u32) {
    let mut last = None;
    for _ in 0..tries {
        last = writes_health(url).await;
        if last == Some(want as i32) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("health akte.writes stayed {last:?}, expected {want:?}");
}

// --------------------------------------------------------------------- verify, read-only

/// A path that is not a data directory is refused with exit 2 by every offline command
/// that needs one, and nothing is created or changed there.
#[test]
fn offline_commands_refuse_what_is_not_a_data_directory_and_create_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing");
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "not a store").unwrap();
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let future = tmp.path().join("future");
    std::fs::create_dir(&future).unwrap();
    std::fs::write(future.join("FORMAT"), "akte-store 9\n").unwrap();
    let some_file = tmp.path().join("a-file").display().to_string();
    let commands: [&[&str]; 8] = [
        &["verify"],
        &["--json", "verify"],
        &["stats"],
        &["tenant", "list"],
        &["checkpoint", "--tenant", "t"],
        &["prove", "--tenant", "t", "--seq", "0"],
        &["ingest", "--tenant", "t", &some_file],
        &["rebuild-index"],
    ];
    let before = snapshot(tmp.path());
    for path in [&missing, &empty, &other, &file, &future] {
        for args in commands {
            let out = akte(path, args, None);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(2),
                "akte {args:?} on {}: {stderr}",
                path.display()
            );
            assert!(
                stderr.contains("not an akte data store")
                    || stderr.contains("not a data directory")
                    || stderr.contains("holds format"),
                "akte {args:?} on {}: {stderr}",
                path.display()
            );
        }
    }
    assert!(!missing.exists(), "a missing data directory was created");
    let changed = differences(&before, &snapshot(tmp.path()));
    assert!(changed.is_empty(), "{changed:#?}");
}

/// `akte verify` of a copy with torn tails (journal and pack) and a crash's leftovers
/// changes no byte, name, mode or time in it, makes no call that would, reports the torn
/// tails where they are, and finds the store clean.
#[test]
fn verify_of_a_copy_with_torn_tails_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let small = tmp.path().join("brief.txt");
    std::fs::write(&small, "Sehr geehrte Damen und Herren,\n".repeat(40)).unwrap();
    let large = tmp.path().join("plan.bin");
    std::fs::write(&large, bytes_of(1_500_000, 3)).unwrap();
    for args in [
        &["tenant", "create", "amt-a"][..],
        &[
            "ingest",
            "--tenant",
            "amt-a",
            small.to_str().unwrap(),
            large.to_str().unwrap(),
        ],
        &["checkpoint", "--tenant", "amt-a"],
        &["ingest", "--tenant", "amt-a", small.to_str().unwrap()],
    ] {
        let out = akte(&data, args, None);
        assert!(out.status.success(), "akte {args:?}: {out:?}");
    }
    // What a crash leaves: torn tails, an upload's temporary file, a tenant never made.
    let tenant = data.join("tenants/amt-a");
    let last = |dir: &Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .max()
            .unwrap()
    };
    let segment = last(&tenant.join("journal"));
    let pack = last(&tenant.join("content/packs"));
    let append = |p: &Path, bytes: &[u8]| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(p).unwrap();
        f.write_all(bytes).unwrap();
    };
    let segment_len = std::fs::metadata(&segment).unwrap().len();
    let pack_len = std::fs::metadata(&pack).unwrap().len();
    append(&segment, &[0xA5; 7]);
    append(&pack, &[0x5A; 20]);
    std::fs::write(tenant.join("content/tmp/put-1-2-3"), b"half an upload").unwrap();
    std::fs::create_dir_all(data.join("tenants/.new-amt-b/keys")).unwrap();

    let before = snapshot(&data);
    let (code, report) = verify_read_only(&data);
    assert_eq!(code, 0, "{report:#}");
    assert!(problems(&report).is_empty(), "{report:#}");
    assert_eq!(entries(&report, "amt-a"), 3);
    let torn = report["torn_tails"].as_array().unwrap();
    assert_eq!(torn.len(), 2, "{report:#}");
    assert_eq!(torn[0]["segment"], segment.display().to_string());
    assert_eq!(torn[0]["offset"], segment_len);
    assert_eq!(torn[0]["bytes"], 7);
    assert_eq!(torn[1]["pack"], pack.display().to_string());
    assert_eq!(torn[1]["offset"], pack_len);
    assert_eq!(torn[1]["bytes"], 20);
    // The same without the shim, in text: still nothing changed.
    let out = akte(&data, &["verify"], None);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("TORN TAIL") && text.contains("verify: clean"),
        "{text}"
    );
    let changed = differences(&before, &snapshot(&data));
    assert!(
        changed.is_empty(),
        "akte verify changed the copy: {changed:#?}"
    );
}

/// `akte verify` while akted runs on the same directory and clients write: it is not
/// locked out, finds every run clean, and never tries to change anything (checked call
/// by call while akted writes, and byte by byte while akted idles).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_beside_a_running_akted_is_clean_and_changes_nothing() -> R<()> {
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("data");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut daemon = Daemon::spawn(&data, port, &[]);
    let (_, mut c) = admin_of(&data, &url).await;
    let file = tenant_with_file(&mut c, "amt-live").await?;

    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, written, mut c, file) = (stop.clone(), written.clone(), c.clone(), file.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                write_document(&mut c, &file, n).await.expect("write");
                if n.is_multiple_of(5) {
                    c.journal
                        .create_checkpoint(pb::CreateCheckpointRequest {
                            parent: "tenants/amt-live".into(),
                        })
                        .await
                        .expect("checkpoint");
                }
                n += 1;
                written.store(n, Ordering::Relaxed);
            }
        })
    };
    // Verify runs while the writer appends.
    let mut checked = Vec::new();
    for _ in 0..4 {
        while written.load(Ordering::Relaxed) < 3 + 3 * checked.len() as u64 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let data = data.clone();
        let (code, report) = tokio::task::spawn_blocking(move || verify_read_only(&data)).await?;
        assert_eq!(code, 0, "{report:#}");
        assert!(problems(&report).is_empty(), "{report:#}");
        checked.push(entries(&report, "amt-live"));
    }
    stop.store(true, Ordering::Relaxed);
    writer.await?;
    assert!(checked.windows(2).all(|w| w[0] <= w[1]), "{checked:?}");
    assert!(
        checked[3] > checked[0],
        "the runs saw the journal grow: {checked:?}"
    );

    // akted idles: the directory is still, and verify leaves it so, byte by byte.
    let mut before = snapshot(&data);
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let again = snapshot(&data);
        if again == before {
            break;
        }
        before = again;
    }
    let out = tokio::task::spawn_blocking({
        let data = data.clone();
        move || akte(&data, &["verify"], None)
    })
    .await?;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let changed = differences(&before, &snapshot(&data));
    assert!(
        changed.is_empty(),
        "verify beside akted changed: {changed:#?}"
    );

    assert_eq!(daemon.terminate(), Some(0));
    let (code, report) = verify_read_only(&data);
    assert_eq!(code, 0, "{report:#}");
    // The plan unit and the file are entries 0 and 1; each document makes two more.
    let n = written.load(Ordering::Relaxed);
    assert_eq!(entries(&report, "amt-live"), 2 + 2 * n, "{report:#}");
    Ok(())
}

// --------------------------------------------------------------------------- full disk

/// A tmpfs of `size`, mounted for the test and unmounted after it (needs root; `None`
/// where it cannot be mounted).
struct SmallDisk {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallDisk { path, _dir: dir })
    }

    /// Writes a file until the disk is full; returns it.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let junk = self.path.join("junk");
        let mut f = std::fs::File::create(&junk).unwrap();
        let block = vec![0u8; 16 << 10];
        while f.write_all(&block).is_ok() {}
        let mut byte = [0u8; 1];
        while f.write_all(&byte[..]).is_ok() {
            byte[0] = byte[0].wrapping_add(1);
        }
        junk
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// akted starts on a disk that is already full: it opens without damaging anything,
/// serves reads, answers writes RESOURCE_EXHAUSTED / STORAGE_FULL with health
/// `akte.writes` NOT_SERVING, and writes again once space is freed, without a restart;
/// nothing acknowledged is lost and a read-only verify is clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn akted_starts_on_a_full_disk_serves_reads_and_writes_once_space_is_freed() -> R<()> {
    // The server's log goes to the test's output (shown when the test fails).
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_test_writer()
        .try_init();
    let Some(disk) = SmallDisk::mount("16m") else {
        eprintln!("skipped: no tmpfs can be mounted here (needs root)");
        return Ok(());
    };
    let data = disk.path.join("data");
    let server = start(config(&data)).await?;
    let admin = std::fs::read_to_string(server.bootstrap_token.clone().expect("token"))?;
    let url = format!("http://{}", server.addr);
    let mut c = Clients::connect(&url, Some(admin.trim()), &ClientTls::default()).await?;
    let file = tenant_with_file(&mut c, "amt-voll").await?;
    let mut acked = Vec::new();
    for n in 0..20 {
        acked.push(write_document(&mut c, &file, n).await?);
    }
    server.shutdown().await?;

    let junk = disk.fill();
    let server = start(config(&data)).await?;
    let url = format!("http://{}", server.addr);
    let mut c = Clients::connect(&url, Some(admin.trim()), &ClientTls::default()).await?;
    // Reads.
    for (doc, bytes) in &acked {
        assert_eq!(&download(&mut c, doc).await?, bytes, "{doc}");
    }
    // Writes: refused as a full disk, and health says so.
    let mut n = 100;
    let refused = loop {
        match write_document(&mut c, &file, n).await {
            Ok(done) => acked.push(done),
            Err(s) => break s,
        }
        n += 1;
        assert!(n < 200, "a full disk took 100 more documents");
    };
    expect_status(&refused, Code::ResourceExhausted, "STORAGE_FULL");
    await_writes_health(&url, ServingStatus::NotServing, 300).await;
    for (doc, bytes) in &acked {
        assert_eq!(&download(&mut c, doc).await?, bytes, "{doc}");
    }
    // Space again: writes resume on the same process.
    std::fs::remove_file(&junk)?;
    let mut resumed = None;
    for attempt in 0..100 {
        match write_document(&mut c, &file, 1000 + attempt).await {
            Ok(done) => {
                resumed = Some(done);
                break;
            }
            Err(s) => {
                assert!(
                    matches!(reason(&s).as_str(), "STORAGE_FULL" | "TENANT_FENCED"),
                    "{s:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    acked.push(resumed.expect("writes resumed once space was freed"));
    await_writes_health(&url, ServingStatus::Serving, 300).await;
    server.shutdown().await?;

    let (code, report) = verify_read_only(&data);
    assert_eq!(code, 0, "{report:#}");
    let server = start(config(&data)).await?;
    let url = format!("http://{}", server.addr);
    let mut c = Clients::connect(&url, Some(admin.trim()), &ClientTls::default()).await?;
    for (doc, bytes) in &acked {
        assert_eq!(&download(&mut c, doc).await?, bytes, "{doc}");
    }
    server.shutdown().await?;
    Ok(())
}

// ------------------------------------------------------------------------ failing device

/// The files of akted's tenants fail every write and flush with EIO (the shim's trigger),
/// then recover. akted reports UNAVAILABLE / STORAGE_UNAVAILABLE and health NOT_SERVING
/// for writes, keeps serving reads, writes again on the same process once the device
/// works, drains and exits 0 on SIGTERM (given while the device fails again), and has
/// lost nothing it acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_device_is_reported_and_writes_heal_without_a_restart() -> R<()> {
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("data");
    let trigger = tmp.path().join("device-fails");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let tenants = data.join("tenants");
    let mut daemon = Daemon::spawn(
        &data,
        port,
        &[
            ("LD_PRELOAD", faultfs().as_os_str()),
            ("FAULTFS_PREFIX", tenants.as_os_str()),
            ("FAULTFS_EIO_WHILE", trigger.as_os_str()),
        ],
    );
    let (_, mut c) = admin_of(&data, &url).await;
    let file = tenant_with_file(&mut c, "amt-eio").await?;
    let mut acked = Vec::new();
    for n in 0..10 {
        acked.push(write_document(&mut c, &file, n).await?);
    }

    std::fs::write(&trigger, b"")?;
    for n in 10..13 {
        let s = write_document(&mut c, &file, n)
            .await
            .expect_err("a write to a failing device");
        expect_status(&s, Code::Unavailable, "STORAGE_UNAVAILABLE");
        assert!(
            s.message().contains("Input/output error") && s.message().contains("amt-eio"),
            "{s:?}"
        );
    }
    await_writes_health(&url, ServingStatus::NotServing, 300).await;
    for (doc, bytes) in &acked {
        assert_eq!(&download(&mut c, doc).await?, bytes, "{doc}");
    }

    std::fs::remove_file(&trigger)?;
    let mut resumed = None;
    for attempt in 0..100 {
        match write_document(&mut c, &file, 100 + attempt).await {
            Ok(done) => {
                resumed = Some(done);
                break;
            }
            Err(s) => {
                assert_eq!(s.code(), Code::Unavailable, "{s:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    acked.push(resumed.expect("writes resumed once the device worked again"));
    await_writes_health(&url, ServingStatus::Serving, 300).await;
    for n in 200..205 {
        acked.push(write_document(&mut c, &file, n).await?);
    }
    // The device fails again: SIGTERM after the failed write still drains and exits 0.
    std::fs::write(&trigger, b"")?;
    let s = write_document(&mut c, &file, 300)
        .await
        .expect_err("a write to a failing device");
    expect_status(&s, Code::Unavailable, "STORAGE_UNAVAILABLE");
    assert_eq!(daemon.terminate(), Some(0), "akted drains and exits 0");
    std::fs::remove_file(&trigger)?;

    let (code, report) = verify_read_only(&data);
    assert_eq!(code, 0, "{report:#}");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut daemon = Daemon::spawn(&data, port, &[]);
    let (_, mut c) = admin_of(&data, &url).await;
    for (doc, bytes) in &acked {
        assert_eq!(&download(&mut c, doc).await?, bytes, "{doc}");
    }
    assert_eq!(daemon.terminate(), Some(0));
    Ok(())
}
