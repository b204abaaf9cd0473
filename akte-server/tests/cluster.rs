//! The Kommunal-Cloud: several akted processes on one PostgreSQL database, clients
//! writing through all of them, instances killed (SIGKILL) at random moments and started
//! again. Nothing acknowledged may be lost, the journal must stay one gapless chain that
//! verifies, and the instances that were not killed must keep serving.
//!
//! `three_instances_lose_nothing_when_one_is_killed` runs in the normal suite (a few
//! kills, once with content in PostgreSQL and once in S3); `kill_campaign` is the long
//! campaign (16 clients, 50 kills; `AKTE_CAMPAIGN_S3=1` puts content in S3):
//! `cargo test -p akte-server --test cluster -- --ignored --nocapture`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;

use akte_server::client::{sha256, unpack, wait_operation, ClientTls, Clients};
use akte_server::pb::akte::v1 as pb;
use akte_server::pb::google::longrunning as lro_op;
use bytes::Bytes;
use support::{add_version, bytes_of, expect_status, rendition};
use tonic::{Code, Status};

type R<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const ADMIN: &str = "akte_cluster_admin_token_for_tests_only";
const WRITER: &str = "akte_cluster_writer_token_for_tests_only";
const TENANT: &str = "stadt";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The configuration every instance shares: the database (and the bucket, if content
/// goes to object storage) and two tokens.
fn write_config(dir: &Path, database: &str, content: Option<&str>) -> PathBuf {
    let hash = |t: &str| akte_server::client::sha256_hex(t.as_bytes());
    let text = format!(
        r#"database = "{database}"
database_pool_size = 16
operation_heartbeat_ms = 100
database_key_file = "{}"
{}

[[tokens]]
sha256 = "{}"
principal = "ops:admin"
tenant = "*"
roles = ["admin"]

[[tokens]]
sha256 = "{}"
principal = "fachverfahren:buergerbuero"
tenant = "{TENANT}"
roles = ["registrar", "clerk"]
"#,
        dir.join("seal.key").display(),
        match content {
            Some(c) => format!(
                "content = \"{c}\"\ncontent_credentials_file = \"{}\"",
                dir.join("s3-credentials").display()
            ),
            None => String::new(),
        },
        hash(ADMIN),
        hash(WRITER)
    );
    std::fs::write(dir.join("seal.key"), "5e".repeat(32)).expect("write the seal key");
    if content.is_some() {
        let (key_id, secret) = akte_tests::s3::shared().credentials();
        std::fs::write(dir.join("s3-credentials"), format!("{key_id}\n{secret}\n"))
            .expect("write the credentials");
    }
    let path = dir.join("akted.toml");
    std::fs::write(&path, text).expect("write the configuration");
    path
}

/// One akted process of the installation, with its own data directory and port.
struct Instance {
    config: PathBuf,
    dir: PathBuf,
    port: u16,
    child: Option<std::process::Child>,
}

impl Instance {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn start(&mut self) {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_akted"))
            .arg("--config")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(&self.dir)
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--metrics-listen", "off"])
            .env("AKTED_LOG", "error")
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn akted");
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn connect(url: &str, token: &str, patience: Duration) -> Option<Clients> {
    let start = Instant::now();
    loop {
        if let Ok(c) = Clients::connect(url, Some(token), &ClientTls::default()).await {
            return Some(c);
        }
        if start.elapsed() > patience {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn download(c: &mut Clients, name: &str) -> Result<Vec<u8>, Status> {
    let mut s = c
        .documents
        .download_rendition(pb::DownloadRenditionRequest {
            name: name.into(),
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

/// What the campaign saw.
#[derive(Debug, Default)]
struct Figures {
    acknowledged: u64,
    errors: u64,
    kills: u64,
    acknowledged_by_instance: [u64; 3],
}

/// Runs `clients` writers through three instances for as long as `kills` kills take.
async fn campaign(clients: usize, kills: u64, seed: u64, s3: bool) -> R<Figures> {
    let pg = akte_tests::pg::PgServer::start();
    let database = pg.fresh_database();
    let bucket = s3.then(|| akte_tests::s3::shared().fresh_bucket());
    let root = tempfile::tempdir()?;
    let config = write_config(root.path(), &database, bucket.as_deref());
    let mut instances: Vec<Instance> = (0..3)
        .map(|i| Instance {
            config: config.clone(),
            dir: root.path().join(format!("instance-{i}")),
            port: free_port(),
            child: None,
        })
        .collect();
    for i in &mut instances {
        i.start();
    }
    let urls: Vec<String> = instances.iter().map(Instance::url).collect();
    let patience = Duration::from_secs(30);

    // The tenant and what the writers write into, made through instance 0 and used
    // through all three (each instance learns of the tenant from the database).
    let mut admin = connect(&urls[0], ADMIN, patience)
        .await
        .ok_or("no instance 0")?;
    admin
        .tenants
        .create_tenant(pb::CreateTenantRequest {
            tenant_id: TENANT.into(),
        })
        .await?;
    let mut w = connect(&urls[1], WRITER, patience)
        .await
        .ok_or("no instance 1")?;
    let unit = w
        .plan
        .create_plan_unit(pb::CreatePlanUnitRequest {
            parent: format!("tenants/{TENANT}"),
            plan_unit: Some(pb::PlanUnit {
                code: "1".into(),
                title: "Bürgerbüro".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut w = connect(&urls[2], WRITER, patience)
        .await
        .ok_or("no instance 2")?;
    let file = w
        .files
        .create_file(pb::CreateFileRequest {
            parent: unit.name,
            file: Some(pb::File {
                subject: "Anträge".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut docs = Vec::new();
    for i in 0..clients {
        let d = w
            .documents
            .create_document(pb::CreateDocumentRequest {
                parent: file.name.clone(),
                document: Some(pb::Document {
                    subject: format!("Antrag {i}"),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await?
            .into_inner();
        docs.push(d.name);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for (n, doc) in docs.into_iter().enumerate() {
        let (stop, errors, urls) = (stop.clone(), errors.clone(), urls.clone());
        writers.push(tokio::spawn(async move {
            let mut conns: Vec<Option<Clients>> = vec![None, None, None];
            let mut acked: Vec<(String, Bytes, usize)> = Vec::new();
            let mut i = n as u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let k = (i % 3) as usize;
                if conns[k].is_none() {
                    conns[k] = connect(&urls[k], WRITER, Duration::ZERO).await;
                }
                let Some(c) = conns[k].as_mut() else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let data = bytes_of(2_000 + (i as usize * 7919) % 6_000, (n as u64) << 32 | i);
                match add_version(c, &doc, &data).await {
                    Ok(v) => acked.push((v.name, sha256(&data), k)),
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        conns[k] = None;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            acked
        }));
    }

    // Kill one instance at a random moment, again and again, starting it again each time.
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut figures = Figures::default();
    for _ in 0..kills {
        tokio::time::sleep(Duration::from_millis(150 + next() % 500)).await;
        let victim = (next() % 3) as usize;
        instances[victim].kill();
        figures.kills += 1;
        tokio::time::sleep(Duration::from_millis(next() % 300)).await;
        instances[victim].start();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await?);
    }
    figures.errors = errors.load(Ordering::Relaxed);
    figures.acknowledged = acked.len() as u64;
    for (_, _, k) in &acked {
        figures.acknowledged_by_instance[*k] += 1;
    }

    // Every acknowledged version is there, byte for byte, read through any instance.
    let mut readers = Vec::new();
    for url in &urls {
        readers.push(
            connect(url, WRITER, patience)
                .await
                .ok_or("an instance did not come back")?,
        );
    }
    for (j, (name, sha, k)) in acked.iter().enumerate() {
        let bytes = match download(&mut readers[j % 3], name).await {
            Ok(b) => b,
            Err(e) => {
                // What each instance answers, to tell a lost write from a stale instance.
                let mut all = Vec::new();
                for r in readers.iter_mut() {
                    all.push(
                        download(r, name)
                            .await
                            .map(|b| b.len())
                            .map_err(|e| e.code()),
                    );
                }
                return Err(format!("{name} (acknowledged by instance {k}): {e}; {all:?}").into());
            }
        };
        assert_eq!(
            &sha256(&bytes),
            sha,
            "acknowledged version {name} differs or is lost"
        );
    }
    // The journal is one chain and verifies, content included.
    let mut admin = connect(&urls[0], ADMIN, patience)
        .await
        .ok_or("no instance 0")?;
    let op = admin
        .verification
        .verify_tenant(pb::VerifyTenantRequest {
            name: format!("tenants/{TENANT}"),
            incremental: false,
            skip_content: false,
        })
        .await?
        .into_inner();
    let done = wait_operation(&mut admin.operations, op).await?;
    let report: pb::VerificationReport = unpack(&done)?;
    assert!(
        report.clean,
        "verification found problems: {:?}",
        report.problems
    );
    drop(pg);
    Ok(figures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_lose_nothing_when_one_is_killed() -> R<()> {
    let f = campaign(6, 4, 0x5eed_0001, false).await?;
    eprintln!("{f:?}");
    assert_eq!(f.kills, 4);
    assert!(f.acknowledged > 20, "writes were acknowledged: {f:?}");
    for (k, n) in f.acknowledged_by_instance.iter().enumerate() {
        assert!(*n > 0, "instance {k} acknowledged writes: {f:?}");
    }
    Ok(())
}

/// The same with document content in S3-compatible object storage (moto).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_content_in_object_storage_nothing_is_lost_either() -> R<()> {
    let f = campaign(6, 3, 0x5eed_0002, true).await?;
    eprintln!("{f:?}");
    assert!(f.acknowledged > 20, "writes were acknowledged: {f:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "long campaign: 16 clients, 50 kills (run with --ignored)"]
async fn kill_campaign() -> R<()> {
    let seed = std::env::var("AKTE_CAMPAIGN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!("seed {seed}");
    let started = Instant::now();
    let s3 = std::env::var("AKTE_CAMPAIGN_S3").is_ok();
    let f = campaign(16, 50, seed, s3).await?;
    eprintln!("{f:?} in {:.0} s", started.elapsed().as_secs_f64());
    assert_eq!(f.kills, 50);
    Ok(())
}

fn upload_header(name: &str, offset: u64) -> pb::WriteUploadSessionRequest {
    pb::WriteUploadSessionRequest {
        message: Some(pb::write_upload_session_request::Message::Header(
            pb::WriteUploadSessionHeader {
                name: name.into(),
                offset,
            },
        )),
    }
}

/// Writes `data` into an upload session from `offset`, in chunks of 1 MiB.
async fn write_session(
    c: &mut Clients,
    name: &str,
    offset: u64,
    data: &[u8],
) -> Result<pb::UploadSession, Status> {
    let msgs: Vec<_> = std::iter::once(upload_header(name, offset))
        .chain(data.chunks(1 << 20).map(|b| pb::WriteUploadSessionRequest {
            message: Some(pb::write_upload_session_request::Message::Chunk(
                Bytes::copy_from_slice(b),
            )),
        }))
        .collect();
    c.documents
        .write_upload_session(tokio_stream::iter(msgs))
        .await
        .map(|r| r.into_inner())
}

async fn new_session(c: &mut Clients, document: &str, data: &[u8]) -> R<String> {
    Ok(c.documents
        .create_upload_session(pb::CreateUploadSessionRequest {
            parent: document.into(),
            upload_session: Some(pb::UploadSession {
                rendition: Some(rendition(data, "akte.pdf")),
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .name)
}

async fn start_import(c: &mut Clients, name: &str) -> R<lro_op::Operation> {
    Ok(c.documents
        .import_upload_session(pb::ImportUploadSessionRequest {
            name: name.into(),
            comment: "aus einer Upload-Sitzung".into(),
            ..Default::default()
        })
        .await?
        .into_inner())
}

/// Two instances on one database: an upload session written on one is continued on the
/// other and imported on the first; an operation started on one is followed, cancelled
/// and found interrupted (its instance killed) on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_and_upload_sessions_work_across_instances() -> R<()> {
    let pg = akte_tests::pg::PgServer::start();
    let database = pg.fresh_database();
    let root = tempfile::tempdir()?;
    let config = write_config(root.path(), &database, None);
    let mut instances: Vec<Instance> = (0..2)
        .map(|i| Instance {
            config: config.clone(),
            dir: root.path().join(format!("instance-{i}")),
            port: free_port(),
            child: None,
        })
        .collect();
    for i in &mut instances {
        i.start();
    }
    let patience = Duration::from_secs(30);
    let mut admin1 = connect(&instances[0].url(), ADMIN, patience)
        .await
        .ok_or("no instance 1")?;
    let mut admin2 = connect(&instances[1].url(), ADMIN, patience)
        .await
        .ok_or("no instance 2")?;
    admin1
        .tenants
        .create_tenant(pb::CreateTenantRequest {
            tenant_id: TENANT.into(),
        })
        .await?;
    let mut c1 = connect(&instances[0].url(), WRITER, patience)
        .await
        .ok_or("no instance 1")?;
    let mut c2 = connect(&instances[1].url(), WRITER, patience)
        .await
        .ok_or("no instance 2")?;
    let unit = c1
        .plan
        .create_plan_unit(pb::CreatePlanUnitRequest {
            parent: format!("tenants/{TENANT}"),
            plan_unit: Some(pb::PlanUnit {
                code: "1".into(),
                title: "Bürgerbüro".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    let file = c1
        .files
        .create_file(pb::CreateFileRequest {
            parent: unit.name,
            file: Some(pb::File {
                subject: "Anträge".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    let document = c1
        .documents
        .create_document(pb::CreateDocumentRequest {
            parent: file.name.clone(),
            document: Some(pb::Document {
                subject: "Bauantrag".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner()
        .name;

    // An upload session: created and partly written on instance 1, continued on instance
    // 2, imported on instance 1, the operation followed on instance 2.
    let data = bytes_of(3 * (1 << 20) + 4321, 0xc15);
    let name = new_session(&mut c1, &document, &data).await?;
    let first = write_session(&mut c1, &name, 0, &data[..(1 << 20) + 17]).await?;
    assert_eq!(first.persisted_size, (1 << 20) + 17);
    let seen = c2
        .documents
        .get_upload_session(pb::GetUploadSessionRequest { name: name.clone() })
        .await?
        .into_inner();
    assert_eq!(seen.persisted_size, first.persisted_size);
    // A write from another offset is refused on either instance, telling what is held.
    let stale = write_session(&mut c2, &name, 5, &data[5..10])
        .await
        .unwrap_err();
    expect_status(&stale, Code::Aborted, "UPLOAD_OFFSET_MISMATCH");
    let rest = write_session(
        &mut c2,
        &name,
        first.persisted_size,
        &data[(1 << 20) + 17..],
    )
    .await?;
    assert_eq!(rest.persisted_size, data.len() as u64);
    let op = start_import(&mut c1, &name).await?;
    let done = wait_operation(&mut c2.operations, op).await?;
    let version: pb::Version = unpack(&done)?;
    let rendition_name = version
        .renditions
        .first()
        .map(|r| r.name.clone())
        .ok_or("no rendition")?;
    assert_eq!(
        sha256(&download(&mut c2, &rendition_name).await?),
        sha256(&data)
    );
    // Imported: the session is gone on both instances.
    for c in [&mut c1, &mut c2] {
        let gone = c
            .documents
            .get_upload_session(pb::GetUploadSessionRequest { name: name.clone() })
            .await
            .unwrap_err();
        assert_eq!(gone.code(), Code::NotFound);
    }

    // A verification started on instance 1, followed to its end on instance 2.
    let op = admin1
        .verification
        .verify_tenant(pb::VerifyTenantRequest {
            name: format!("tenants/{TENANT}"),
            incremental: false,
            skip_content: false,
        })
        .await?
        .into_inner();
    let done = wait_operation(&mut admin2.operations, op.clone()).await?;
    let report: pb::VerificationReport = unpack(&done)?;
    assert!(report.clean, "{:?}", report.problems);
    let listed = admin2
        .operations
        .list_operations(lro_op::ListOperationsRequest {
            name: format!("tenants/{TENANT}"),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(listed
        .operations
        .iter()
        .any(|o| o.name == op.name && o.done));

    // A long import started on instance 1 and cancelled on instance 2: the work on
    // instance 1 stops (it sees the request at its next heartbeat).
    let big = bytes_of(48 << 20, 0xb16);
    let name = new_session(&mut c2, &document, &big).await?;
    write_session(&mut c2, &name, 0, &big).await?;
    let op = start_import(&mut c1, &name).await?;
    c2.operations
        .cancel_operation(lro_op::CancelOperationRequest {
            name: op.name.clone(),
        })
        .await?;
    let cancelled = wait_operation(&mut c2.operations, op).await.unwrap_err();
    expect_status(&cancelled, Code::Cancelled, "OPERATION_CANCELLED");

    // The session was kept: imported again on instance 1, which is killed at once;
    // instance 2 reports the operation interrupted once its heartbeats stop.
    let op = start_import(&mut c1, &name).await?;
    instances[0].kill();
    let interrupted = wait_operation(&mut c2.operations, op).await.unwrap_err();
    expect_status(&interrupted, Code::Aborted, "OPERATION_INTERRUPTED");
    assert!(
        interrupted.message().contains("stopped writing"),
        "{}",
        interrupted.message()
    );
    drop(pg);
    Ok(())
}
