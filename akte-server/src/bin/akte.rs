//! `akte`: the command-line tool for operators and archivists.
//!
//! Offline commands work on a data directory directly. `verify` and `stats` open it
//! read-only (nothing is written, cut or locked), so they run beside akted and on copies;
//! the others need akted stopped (the store is locked by whoever opens it for writing).
//! Every offline command but `tenant create` and `demo` refuses a path that is not a data
//! directory (exit 2) and creates nothing there. Client commands (`admin`,
//! `plan-unit`, `file`, `case`, `document`, `upload`, `download`, `history`, `journal`,
//! `verify-remote`, ...) talk to a running akted (`--server`, `--token` or `AKTE_TOKEN`).
//! `verify-package` and `verify-consistency` check transfer packages and checkpoints with
//! no data directory at all (exit 0 verified, 1 problems, 2 cannot check). `archive-sim`
//! plays the archive in a disposal rehearsal, from the message files alone. `witness`
//! makes a witness key and cosigns checkpoints (exit 1 when it refuses one).
//!
//! Exit codes: 0 success; 1 verification found problems; 2 usage error; 3 any other error;
//! 4 server unreachable, unavailable or overloaded; 5 not authenticated or not allowed;
//! 6 not found; 7 request refused (invalid, conflicting, stale etag, closed object);
//! 8 stored data damaged.

#[path = "../cli/archive_sim.rs"]
mod archive_sim;
#[path = "../cli/evidence.rs"]
mod evidence;
#[path = "../cli/remote.rs"]
mod remote;
#[path = "../cli/witness.rs"]
mod witness;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use akte_core::entry::Attachment;
use akte_core::entry::{EntryDraft, Payload, PayloadKind};
use akte_core::merkle;
use akte_core::note::Checkpoint;
use akte_core::records::Records;
use akte_core::store::{Store, StoreOptions};
use akte_core::verify::{verify_store, VerifyOptions};

#[derive(Parser)]
#[command(
    name = "akte",
    version,
    about = "akte: records management for E-Akte, command-line tool"
)]
struct Cli {
    /// The data directory.
    #[arg(long, global = true, env = "AKTE_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// Print results as JSON (for scripts).
    #[arg(long, global = true)]
    json: bool,
    #[command(flatten)]
    remote: remote::Remote,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Tenants (agencies) of the data directory.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Store files as content and record each in the tenant's journal.
    Ingest {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// Who is acting (recorded in the journal).
        #[arg(long, default_value = "operator")]
        actor: String,
        /// Files to store.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Sign a checkpoint of the tenant's journal as it is now.
    Checkpoint {
        /// The tenant.
        #[arg(long)]
        tenant: String,
    },
    /// Print and check an inclusion proof of an entry against the latest checkpoint.
    Prove {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// Sequence number of the entry.
        #[arg(long)]
        seq: u64,
    },
    /// Verify the whole store, read-only: nothing in it is written, cut or locked, so it
    /// runs beside akted and on copies.
    Verify {
        /// Refused (exit 2): a read-only run keeps no record of earlier runs in the store;
        /// `akte verify-remote --incremental` verifies incrementally through akted.
        #[arg(long, hide = true)]
        incremental: bool,
        /// Skip hashing content objects.
        #[arg(long)]
        no_content: bool,
        /// The agency's verifier key as you received it on a separate channel (a file
        /// holding one verifier key): its tenant's checkpoints must verify with it, and
        /// the key stored beside the data must be it. Repeat for several tenants.
        #[arg(long, value_name = "FILE")]
        trusted_key: Vec<PathBuf>,
        /// A signed checkpoint you hold (from a transfer, a witness): its tenant's journal
        /// must extend it. Repeat for several tenants.
        #[arg(long, value_name = "FILE")]
        checkpoint: Vec<PathBuf>,
    },
    /// Recreate the index from the journals.
    RebuildIndex,
    /// Show sizes and counts per tenant.
    Stats,
    /// A first try: create a tenant, store documents, checkpoint, prove and verify.
    Demo,
    /// Act as a witness of an agency's journal: make a key, cosign checkpoints that extend
    /// the last one seen (exit 1 when refused).
    Witness {
        #[command(subcommand)]
        command: witness::Command,
    },
    /// Play the archive in a disposal rehearsal: appraise an offer (0501 → 0504, 0502),
    /// take a transfer (0503 → 0507, 0506). Offline; exit 1 when the transfer has problems.
    ArchiveSim {
        #[command(subcommand)]
        command: archive_sim::Command,
    },
    #[command(flatten)]
    Package(evidence::Command),
    #[command(flatten)]
    Remote(remote::Command),
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant with its own journal, content store and signing key.
    Create {
        /// Tenant id: a-z, 0-9 and '-', at most 63 characters.
        id: String,
    },
    /// List tenants.
    List,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AKTE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            if let Some(s) = e.downcast_ref::<tonic::Status>() {
                eprintln!("akte: error: {}", remote::describe(s));
                return ExitCode::from(remote::exit_code(s.code()));
            }
            eprintln!("akte: error: {e:#}");
            if e.downcast_ref::<UsageError>().is_some() {
                return ExitCode::from(2);
            }
            match e.downcast_ref::<akte_server::client::ClientError>() {
                Some(akte_server::client::ClientError::Connect { .. }) => ExitCode::from(4),
                _ => ExitCode::from(3),
            }
        }
    }
}

fn run_remote(cli: &Cli, command: &remote::Command) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let code = runtime.block_on(remote::run(&cli.remote, cli.json, command))?;
    Ok(ExitCode::from(code))
}

/// What the archivist trusts, per tenant: each key and checkpoint belongs to the tenant
/// whose checkpoint origin it names.
fn trust_of(
    store: &Store,
    keys: &[PathBuf],
    checkpoints: &[PathBuf],
) -> Result<Vec<akte_core::verify::Trust>> {
    let tenant_of = |origin: &str, what: &Path| -> Result<String> {
        store
            .tenants()
            .iter()
            .find(|t| t.origin() == origin)
            .map(|t| t.id().to_owned())
            .with_context(|| {
                format!(
                    "{}: no tenant of this data directory has the origin {origin:?}",
                    what.display()
                )
            })
    };
    let mut out: Vec<akte_core::verify::Trust> = Vec::new();
    let mut entry = |tenant: String| -> usize {
        match out.iter().position(|t| t.tenant == tenant) {
            Some(i) => i,
            None => {
                out.push(akte_core::verify::Trust {
                    tenant,
                    key: None,
                    checkpoint: None,
                });
                out.len() - 1
            }
        }
    };
    let mut keyed = Vec::new();
    for path in keys {
        let key = akte_core::keys::VerifierKey::load(path)
            .with_context(|| format!("reading the trusted key {}", path.display()))?;
        let i = entry(tenant_of(key.name(), path)?);
        keyed.push((i, key));
    }
    let mut held = Vec::new();
    for path in checkpoints {
        let bytes = std::fs::read(path)
            .with_context(|| format!("reading the checkpoint {}", path.display()))?;
        let note = akte_core::note::SignedNote::parse(&bytes)
            .with_context(|| format!("{} is not a signed note", path.display()))?;
        let cp = akte_core::note::Checkpoint::parse_body(&note.text)
            .with_context(|| format!("{} is not a checkpoint", path.display()))?;
        let i = entry(tenant_of(&cp.origin, path)?);
        held.push((i, bytes));
    }
    for (i, key) in keyed {
        out[i].key = Some(key);
    }
    for (i, bytes) in held {
        out[i].checkpoint = Some(bytes);
    }
    Ok(out)
}

/// The directory of a tenant in the data directory `dir` (docs/FORMAT.md).
fn tenant_dir(dir: &Path, tenant: &str) -> std::path::PathBuf {
    dir.join("tenants").join(tenant)
}

/// A usage error (exit 2): a path given as the data directory that is not one, an
/// option that cannot apply.
#[derive(Debug)]
struct UsageError(String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Refuses a path that is not a data directory of this version, creating nothing.
fn require_data_dir(dir: &Path) -> Result<()> {
    use akte_core::backend::BackendError;
    match akte_core::embedded::check_data_dir(dir) {
        Ok(()) => Ok(()),
        Err(e @ (BackendError::NotAStore { .. } | BackendError::UnsupportedFormat { .. })) => {
            Err(UsageError(format!(
                "{e}; give the data directory with --data-dir or AKTE_DATA_DIR"
            ))
            .into())
        }
        Err(e) => {
            Err(anyhow::Error::new(e).context(format!("opening data directory {}", dir.display())))
        }
    }
}

/// Opens an existing data directory read-only with the records model's projection, for
/// verification: nothing in it is written, cut or locked, so akted may be running on it.
fn open_read_only(dir: &Path) -> Result<Arc<Store>> {
    require_data_dir(dir)?;
    let backend = akte_core::embedded::open_read_only(dir)
        .with_context(|| format!("opening data directory {} read-only", dir.display()))?;
    let options = StoreOptions {
        projection: Arc::new(akte_core::records::RecordsProjection),
        ..StoreOptions::default()
    };
    let store = Store::open(backend, options)
        .with_context(|| format!("opening data directory {} read-only", dir.display()))?;
    Ok(Arc::new(store))
}

/// Opens an existing data directory with the records model, so that index rebuilds and
/// verification keep (and check) the records' derived state too.
fn open(dir: &Path) -> Result<Arc<Store>> {
    require_data_dir(dir)?;
    open_or_create(dir)
}

/// As [`open`], but makes a new data directory where there is none (or an empty one).
fn open_or_create(dir: &Path) -> Result<Arc<Store>> {
    let backend = akte_core::embedded::open(dir)
        .with_context(|| format!("opening data directory {}", dir.display()))?;
    let records = Records::open(backend, StoreOptions::default())
        .with_context(|| format!("opening data directory {}", dir.display()))?;
    Ok(records.store().clone())
}

fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

fn run(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::Tenant { command } => {
            let store = match command {
                TenantCommand::Create { .. } => open_or_create(&cli.data_dir)?,
                TenantCommand::List => open_read_only(&cli.data_dir)?,
            };
            match command {
                TenantCommand::Create { id } => {
                    let t = store.create_tenant(id)?;
                    if cli.json {
                        print_json(
                            &serde_json::json!({"tenant": t.id(), "origin": t.origin(), "verifier_key": t.verifier().to_string()}),
                        );
                    } else {
                        println!(
                            "created tenant {}\norigin {}\nverifier key {}",
                            t.id(),
                            t.origin(),
                            t.verifier()
                        );
                    }
                }
                TenantCommand::List => {
                    let list: Vec<_> = store
                        .tenants()
                        .iter()
                        .map(|t| Ok(serde_json::json!({"tenant": t.id(), "entries": t.size()?, "origin": t.origin()})))
                        .collect::<Result<_>>()?;
                    if cli.json {
                        print_json(&serde_json::Value::Array(list));
                    } else {
                        for t in store.tenants() {
                            println!("{}\t{} entries\t{}", t.id(), t.size()?, t.origin());
                        }
                    }
                }
            }
        }
        Command::Ingest {
            tenant,
            actor,
            files,
        } => {
            let store = open(&cli.data_dir)?;
            let t = store.tenant(tenant)?;
            let mut out = Vec::new();
            for f in files {
                let rec = ingest_file(&t, actor, f)?;
                if !cli.json {
                    println!("{}\tentry {}\t{}", f.display(), rec.0, rec.1);
                }
                out.push(serde_json::json!({"file": f, "seq": rec.0, "sha256": rec.1.to_hex()}));
            }
            if cli.json {
                print_json(&serde_json::Value::Array(out));
            }
        }
        Command::Checkpoint { tenant } => {
            let store = open(&cli.data_dir)?;
            let note = store.tenant(tenant)?.checkpoint()?;
            print!("{}", String::from_utf8_lossy(&note.to_bytes()));
        }
        Command::Prove { tenant, seq } => {
            let store = open(&cli.data_dir)?;
            let t = store.tenant(tenant)?;
            let (cp, _) = t.latest_checkpoint()?;
            if *seq >= cp.size {
                bail!("entry {seq} is not covered by the latest checkpoint (size {}); run `akte checkpoint` first", cp.size);
            }
            let rec = t.entry(*seq)?;
            let proof = t.inclusion_proof(*seq, cp.size)?;
            merkle::verify_inclusion(&rec.leaf, *seq, cp.size, &proof, &cp.root)?;
            let hashes: Vec<String> = proof.iter().map(|d| d.to_hex()).collect();
            if cli.json {
                print_json(
                    &serde_json::json!({"seq": seq, "leaf": rec.leaf.to_hex(), "tree_size": cp.size, "root": cp.root.to_hex(), "proof": hashes, "verified": true}),
                );
            } else {
                println!(
                    "entry {seq} leaf {}\ntree size {} root {}\nproof ({} hashes):",
                    rec.leaf,
                    cp.size,
                    cp.root,
                    hashes.len()
                );
                for h in hashes {
                    println!("  {h}");
                }
                println!("inclusion proof verified");
            }
        }
        Command::Verify {
            incremental,
            no_content,
            trusted_key,
            checkpoint,
        } => {
            if *incremental {
                // Where the last clean run ended is a record in the store, and a read-only
                // verification writes none.
                return Err(UsageError(
                    "--incremental: akte verify opens the store read-only and keeps no record of \
                     earlier runs in it; run it without --incremental, or let akted verify \
                     incrementally (akte verify-remote --incremental)"
                        .into(),
                )
                .into());
            }
            let store = open_read_only(&cli.data_dir)?;
            let trust = trust_of(&store, trusted_key, checkpoint)?;
            // A torn tail is left as it is and verification ends before it; say where,
            // since the report can only show a loss through a checkpoint that covers it.
            let torn = torn_tails(&store);
            let report = akte_core::verify::verify_store_trusting(
                &store,
                VerifyOptions {
                    incremental: false,
                    content: !*no_content,
                    index: true,
                },
                &trust,
            )?;
            if cli.json {
                let mut value = serde_json::to_value(&report)?;
                value["torn_tails"] = serde_json::to_value(&torn)?;
                print_json(&value);
            } else {
                println!(
                    "verify: {} opened read-only (nothing written; the derived index is rebuilt here, not compared)",
                    cli.data_dir.display()
                );
                for r in &torn {
                    println!("  TORN TAIL {}", r["message"].as_str().unwrap_or_default());
                }
                for t in &report.tenants {
                    println!(
                        "tenant {}: entries {}..{} checked, {} checkpoints, {} content objects ({} bytes), {} destroyed records, {} unreferenced objects, {} problems",
                        t.tenant, t.from_seq, t.from_seq + t.entries, t.checkpoints, t.content_objects,
                        t.content_bytes, t.destroyed_records, t.unreferenced_objects, t.problems.len()
                    );
                    for p in &t.problems {
                        println!("  PROBLEM {p}");
                    }
                }
                println!(
                    "{}",
                    if report.is_clean() {
                        "verify: clean"
                    } else {
                        "verify: PROBLEMS FOUND"
                    }
                );
            }
            if !report.is_clean() {
                return Ok(ExitCode::from(1));
            }
        }
        Command::RebuildIndex => {
            let store = open(&cli.data_dir)?;
            let n = store.rebuild_index()?;
            println!("index rebuilt from {n} journal entries");
        }
        Command::Stats => {
            let store = open_read_only(&cli.data_dir)?;
            let mut out = Vec::new();
            for t in store.tenants() {
                let objects = t.content().list().filter(|r| r.is_ok()).count();
                let checkpoints = t.checkpoint_files()?.len();
                let segs = akte_core::embedded::journal::list_segments(
                    &tenant_dir(&cli.data_dir, t.id()).join("journal"),
                )?;
                let journal_bytes: u64 = segs
                    .iter()
                    .filter_map(|(_, p)| std::fs::metadata(p).ok())
                    .map(|m| m.len())
                    .sum();
                out.push(serde_json::json!({
                    "tenant": t.id(), "entries": t.size()?, "segments": segs.len(),
                    "journal_bytes": journal_bytes, "content_objects": objects, "checkpoints": checkpoints,
                }));
            }
            if cli.json {
                print_json(&serde_json::Value::Array(out));
            } else {
                for s in out {
                    println!("{s}");
                }
            }
        }
        Command::Demo => demo(&cli.data_dir)?,
        Command::Witness { command } => return witness::run(&cli.remote, cli.json, command),
        Command::Package(command) => return Ok(evidence::run(command, cli.json)),
        Command::ArchiveSim { command } => return Ok(archive_sim::run(command, cli.json)),
        Command::Remote(command) => return run_remote(cli, command),
    }
    Ok(ExitCode::SUCCESS)
}

/// Torn tails a read-only open found in each tenant's last journal segment or last pack
/// (docs/FORMAT.md, "Crash recovery", "Crash safety of packs"), left in place. Not a
/// problem in itself: a crash leaves one before anything is acknowledged, and on a live
/// store it may be a record still being written; akted cuts a crash's tail at its next
/// start. Entries a checkpoint covers beyond it are reported missing, and this names where.
fn torn_tails(store: &Store) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for t in store.tenants() {
        if let Some((segment, offset, bytes)) = &t.journal().recovery().torn_tail {
            out.push(serde_json::json!({
                "tenant": t.id(),
                "segment": segment,
                "offset": offset,
                "bytes": bytes,
                "message": format!(
                    "tenant {}: {bytes} bytes at byte offset {offset} of {segment} are not a \
                     complete record (a write interrupted by a crash, or one in progress); \
                     left in place, verification ends before them",
                    t.id(),
                ),
            }));
        }
        if let Some((pack, offset, bytes)) = &t.content().torn_tail() {
            out.push(serde_json::json!({
                "tenant": t.id(),
                "pack": pack,
                "offset": offset,
                "bytes": bytes,
                "message": format!(
                    "tenant {}: {bytes} bytes at byte offset {offset} of {pack} are not a \
                     complete record (an upload interrupted before it was acknowledged, or \
                     one in progress); left in place",
                    t.id(),
                ),
            }));
        }
    }
    out
}

fn ingest_file(
    t: &akte_core::store::Tenant,
    actor: &str,
    path: &Path,
) -> Result<(u64, akte_core::Digest)> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let put = t.put_content(std::io::BufReader::new(file))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // The file name is metadata: it goes into a salted record, not into the entry.
    let salt = salt()?;
    let meta =
        serde_json::to_vec(&serde_json::json!({"salt": hex::encode(salt), "file_name": name}))?;
    let att = Attachment::new(meta);
    let appended = t.append(
        EntryDraft {
            actor: actor.into(),
            kind: "content.ingest".into(),
            object: String::new(),
            payloads: vec![
                Payload {
                    kind: PayloadKind::Inline,
                    role: "meta".into(),
                    size: att.bytes.as_ref().map_or(0, |b| b.len() as u64),
                    digest: att.digest,
                },
                Payload {
                    kind: PayloadKind::Content,
                    role: "content".into(),
                    size: put.size,
                    digest: put.digest,
                },
            ],
        },
        vec![att],
    )?;
    Ok((appended.ticket.entry.seq, put.digest))
}

fn salt() -> Result<[u8; 16]> {
    use std::io::Read;
    let mut s = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut s))
        .context("reading /dev/urandom for a salt")?;
    Ok(s)
}

fn demo(dir: &Path) -> Result<()> {
    let store = open_or_create(dir)?;
    let tenant = match store.tenant("demo") {
        Ok(t) => t,
        Err(_) => store.create_tenant("demo")?,
    };
    println!(
        "data directory {}, tenant {} (origin {})",
        dir.display(),
        tenant.id(),
        tenant.origin()
    );
    println!("verifier key {}", tenant.verifier());
    let samples: [(&str, Vec<u8>); 3] = [
        (
            "antrag.txt",
            "Antrag auf Baugenehmigung, Flurstück 12/3, Gemarkung Erfurt\n"
                .repeat(200)
                .into_bytes(),
        ),
        (
            "bescheid.txt",
            "Bescheid: Die Baugenehmigung wird erteilt.\n"
                .repeat(100)
                .into_bytes(),
        ),
        ("scan.jpg", pseudo_random_bytes(200_000)),
    ];
    let work = std::env::temp_dir().join(format!("akte-demo-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let mut seqs = Vec::new();
    for (name, bytes) in &samples {
        let p = work.join(name);
        std::fs::write(&p, bytes)?;
        let (seq, digest) = ingest_file(&tenant, "demo:registrar", &p)?;
        let info = tenant.content().stat(&digest)?;
        println!(
            "stored {name}: entry {seq}, sha256 {digest}, {} bytes, {} on disk",
            info.size, info.stored_size
        );
        seqs.push(seq);
    }
    std::fs::remove_dir_all(&work).ok();
    let note = tenant.checkpoint()?;
    println!(
        "\nsigned checkpoint:\n{}",
        String::from_utf8_lossy(&note.to_bytes())
    );
    let (cp, _) = Checkpoint::open(&note.to_bytes(), &tenant.verifier())?;
    for seq in seqs {
        let rec = tenant.entry(seq)?;
        let proof = tenant.inclusion_proof(seq, cp.size)?;
        merkle::verify_inclusion(&rec.leaf, seq, cp.size, &proof, &cp.root)?;
        println!(
            "entry {seq}: inclusion proof of {} hashes verifies against the checkpoint",
            proof.len()
        );
    }
    let report = verify_store(&store, VerifyOptions::default())?;
    for t in &report.tenants {
        println!(
            "verify tenant {}: {} entries, {} checkpoints, {} content objects, {} problems",
            t.tenant,
            t.entries,
            t.checkpoints,
            t.content_objects,
            t.problems.len()
        );
    }
    if !report.is_clean() {
        bail!("verification found problems");
    }
    println!(
        "\ndemo done: run it again to add to the same journal, or `akte --data-dir {} verify`",
        dir.display()
    );
    Ok(())
}

/// Incompressible bytes standing in for a scanned page (xorshift64).
fn pseudo_random_bytes(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}
