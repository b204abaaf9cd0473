//! akte-cli: the `akte` command-line tool for operators and archivists, as a library so
//! that its commands have unit tests; the `akte` binary (in akte-server, beside `akted`)
//! only calls [`main`].
//!
//! It talks to akted only through the public contract (`akte-api`) and opens data
//! directories through akte-core; it must not depend on akte-server, whose binary target
//! depends on this crate.
//!
//! Offline commands (`tenant`, `ingest`, `import-legacy`, `checkpoint`, ...) work on a
//! data directory directly. `verify`, `stats` and `tenant list` open it read-only (nothing
//! is written, cut or locked), so they run beside akted and on copies; the others need
//! akted stopped (the store is locked by whoever opens it for writing). With
//! `AKTE_DATABASE` they work on a PostgreSQL database instead. Client commands (`admin`,
//! `plan-unit`, `file`, `case`, `document`, `upload`, `download`, `history`, `journal`,
//! `verify-remote`, ...) talk to a running akted (`--server`, `--token` or `AKTE_TOKEN`).
//! `verify-package` and `verify-consistency` check transfer packages and checkpoints with
//! no data directory at all (exit 0 verified, 1 problems, 2 cannot check). `archive-sim`
//! plays the archive in a disposal rehearsal, from the message files alone. `witness`
//! makes a witness key and cosigns checkpoints (exit 1 when it refuses one).
//!
//! Exit codes, for every command (`output.rs` classifies the errors): 0 success;
//! 1 verification found problems; 2 usage error; 3 any other error; 4 server unreachable,
//! unavailable or overloaded (or the storage unavailable or full); 5 not authenticated or
//! not allowed; 6 not found; 7 request refused (invalid, conflicting, stale etag, closed
//! object); 8 stored data damaged. Under `--json` an error is a JSON object on standard
//! error with the gRPC code name, the reason and the message.
#![forbid(unsafe_code)]

mod archive_sim;
mod demo;
mod evidence;
mod legacy;
mod migrate;
mod output;
mod remote;
mod witness;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use akte_core::entry::Attachment;
use akte_core::entry::{EntryDraft, Payload, PayloadKind};
use akte_core::merkle;
use akte_core::note::Checkpoint;
use akte_core::records::Records;
use akte_core::store::{Store, StoreOptions};
use akte_core::verify::VerifyOptions;

#[derive(Parser)]
#[command(
    name = "akte",
    version,
    about = "akte: records management for E-Akte, command-line tool"
)]
struct Cli {
    /// The data directory of the offline commands. There is no default, so that no
    /// signing key lands in whatever directory the command happens to run in.
    #[arg(
        long,
        global = true,
        env = "AKTE_DATA_DIR",
        value_name = "DIR",
        help_heading = output::GLOBAL
    )]
    data_dir: Option<PathBuf>,
    /// Print results as JSON: API objects in the proto3 JSON mapping (as grpcurl), other
    /// results as JSON objects; errors as a JSON object on standard error.
    #[arg(long, global = true, help_heading = output::GLOBAL)]
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
    /// Sign a checkpoint of the tenant's journal as it is now; prints the signed note.
    Checkpoint {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// Also write the signed note to this file (a checkpoint to hold, for `verify
        /// --checkpoint`).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
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
    /// Verify the whole store. A data directory is opened read-only: nothing in it is
    /// written, cut or locked, so it runs beside akted and on copies.
    Verify {
        /// Only what is new since the last clean run; on a database (AKTE_DATABASE) only. A
        /// data directory is verified read-only, which keeps no record of earlier runs in
        /// it (`akte verify-remote --incremental` verifies incrementally through akted).
        #[arg(long)]
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
        /// The full-text indexes to check (akted's `fulltext_dir`) [default: the data
        /// directory's index/; with AKTE_DATABASE none unless given]. No destroyed
        /// document may be in them.
        #[arg(long, value_name = "DIR")]
        fulltext_dir: Option<PathBuf>,
    },
    /// Import records of another system with their original references, dates, actors
    /// and history, from an export in JSON lines (docs/MIGRATION.md). Offline; rerunning
    /// skips what was imported. Exit 7 when objects were refused (each listed).
    ImportLegacy(legacy::ImportLegacy),
    /// Recreate the index from the journals, and the full-text indexes.
    RebuildIndex {
        /// On a database (AKTE_DATABASE): confirms that no akted instance uses it. The
        /// index is emptied and refilled; instances running meanwhile would answer from a
        /// partial index (collections of content wait for it, but reads do not).
        #[arg(long)]
        instances_stopped: bool,
        /// The full-text indexes (akted's `fulltext_dir`) [default: the data directory's
        /// index/; with AKTE_DATABASE none unless given: each akted rebuilds its own when
        /// it finds none].
        #[arg(long, value_name = "DIR")]
        fulltext_dir: Option<PathBuf>,
    },
    /// Collect content that no entry refers to (uploads never recorded). A run marks what
    /// it finds unreferenced; a later run removes what was marked at least the grace
    /// period before and is still unreferenced, checked inside the tenant's append
    /// session, so referenced content is never removed. akted runs this by itself
    /// (`content_gc_interval_hours`); on a database it runs beside akted.
    Gc {
        /// Only this tenant; all when omitted.
        #[arg(long)]
        tenant: Option<String>,
        /// Hours an object must have been seen unreferenced before it is removed (at
        /// least 1: uploads and imports being recorded must not be collected).
        #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u64).range(1..=87_600))]
        grace_hours: u64,
        /// Report what would be collected; mark and remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Copy every tenant between a data directory and a PostgreSQL database (either way),
    /// resumably, and check that both sides hold the same entries, roots and content.
    /// The password comes from AKTE_DATABASE_PASSWORD(_FILE) or the connection string.
    Migrate {
        /// Source: a data directory or postgres://user@host:port/db.
        #[arg(long)]
        from: String,
        /// Target: a data directory or postgres://user@host:port/db.
        #[arg(long)]
        to: String,
    },
    /// Write any store (a data directory or postgres://…) as a new data directory in the
    /// documented format, for tools/verify_store.py.
    ExportStore {
        /// Source: a data directory or postgres://user@host:port/db.
        #[arg(long)]
        from: String,
        /// The new data directory.
        #[arg(long)]
        to: PathBuf,
    },
    /// Show sizes and counts per tenant.
    Stats,
    /// A first try: what akte is for, in short steps, in a new data directory.
    ///
    /// In --data-dir, or else a new directory under the temporary directory: a file plan, a file with cases, documents and versions, closing,
    /// history, a signed checkpoint and a proof, retention, a disposal to the archive
    /// simulator ending in a destruction record, and a clean verify.
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

/// Runs the `akte` command line: parses the arguments, runs the command, prints, and
/// returns the documented exit code (the `akte` binary is only this call).
pub fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AKTE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = match parse(std::env::args_os()) {
        Ok(cli) => cli,
        Err((e, json)) => return usage_failed(e, json),
    };
    match run(&cli) {
        Ok(code) => code,
        Err(e) => output::report(&e, cli.json),
    }
}

/// Parses the arguments. Every subcommand's help lists its own options first and the
/// global ones (data directory, server, token, ...) after them under their own heading.
/// On failure also says whether `--json` was asked for, so the error can be JSON too.
fn parse<I, T>(args: I) -> std::result::Result<Cli, (clap::Error, bool)>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    let json = args.iter().any(|a| a == "--json");
    Cli::command()
        .try_get_matches_from(args)
        .and_then(|m| Cli::from_arg_matches(&m))
        .map_err(|e| (e, json))
}

/// Prints a parse failure (help and version are not failures) and returns its exit code:
/// 2 for every usage error.
fn usage_failed(e: clap::Error, json: bool) -> ExitCode {
    use clap::error::ErrorKind;
    let informational = matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if json && !informational {
        // clap's text without the usage and help hints, on one line.
        let full = e.to_string();
        let message = full
            .lines()
            .take_while(|l| !l.starts_with("Usage:"))
            .map(|l| l.trim().trim_start_matches("error: "))
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        output::report(&anyhow::anyhow!(output::Usage(message)), true);
        return ExitCode::from(2);
    }
    let _ = e.print();
    if informational && e.kind() != ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

impl Cli {
    /// The data directory, which offline commands need.
    /// With `AKTE_DATABASE` set and no data directory given, the commands work on the
    /// database (see [`open`]), and the path is empty.
    fn data_dir(&self) -> Result<&Path> {
        if self.data_dir.is_none() && std::env::var_os("AKTE_DATABASE").is_some() {
            return Ok(Path::new(""));
        }
        self.data_dir.as_deref().ok_or_else(|| {
            output::usage("--data-dir DIR (or AKTE_DATA_DIR) is required for this command")
        })
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

/// Opens the data directory with the records model, so that index rebuilds and
/// verification keep (and check) the records' derived state too. With `AKTE_DATABASE` set (a postgres:// connection string), offline commands work on
/// that database, the distributed backend, instead of the data directory.
fn open(dir: &Path) -> Result<Arc<Store>> {
    if let Ok(url) = std::env::var("AKTE_DATABASE") {
        return migrate::Place::Database(url).open(migrate::password_from_env()?);
    }
    let backend = akte_core::embedded::open(dir)
        .with_context(|| format!("opening data directory {}", dir.display()))?;
    let records = Records::open(backend, StoreOptions::default())
        .with_context(|| format!("opening data directory {}", dir.display()))?;
    Ok(records.store().clone())
}

use output::print_json;

/// Where the full-text indexes are: the given directory, else the data directory's
/// `index/` (a database has no data directory, and each akted keeps its own indexes).
fn fulltext_root(cli: &Cli, given: Option<&Path>) -> Result<Option<PathBuf>> {
    if let Some(d) = given {
        return Ok(Some(d.to_path_buf()));
    }
    if cli.data_dir.is_none() && std::env::var_os("AKTE_DATABASE").is_some() {
        return Ok(None);
    }
    Ok(Some(cli.data_dir()?.join("index")))
}

/// The full-text check of every tenant that has an index under `root`.
fn fulltext_check(
    store: &Store,
    root: &Path,
) -> Result<Vec<(String, akte_fulltext::verify::Report)>> {
    let mut out = Vec::new();
    for t in store.tenants() {
        let records = akte_core::records::TenantRecords::over(t.clone());
        let r = akte_fulltext::verify::check(&records, root)
            .with_context(|| format!("checking the full-text index of tenant {}", t.id()))?;
        if r.present {
            out.push((t.id().to_owned(), r));
        }
    }
    Ok(out)
}

/// Opens an existing data directory read-only with the records model's projection, for
/// `verify`, `stats` and `tenant list`: nothing in it is written, cut or locked, so akted
/// may be running on it, and a copy stays as it is. A path that is not a data directory
/// is refused (exit 2) and nothing is created. A database (`AKTE_DATABASE`) is opened as
/// by [`open`]: it has no read-only mode.
fn open_read_only(dir: &Path) -> Result<Arc<Store>> {
    if std::env::var_os("AKTE_DATABASE").is_some() {
        return open(dir);
    }
    // NotAStore and UnsupportedFormat are usage errors (exit 2, NOT_A_DATA_DIRECTORY).
    let backend = akte_core::embedded::open_read_only(dir)?;
    let options = StoreOptions {
        projection: Arc::new(akte_core::records::RecordsProjection),
        ..StoreOptions::default()
    };
    let store = Store::open(backend, options)
        .with_context(|| format!("opening data directory {} read-only", dir.display()))?;
    Ok(Arc::new(store))
}

/// Opens an existing data directory: every offline command but `tenant create` and
/// `demo` refuses a directory that is not one (exit 2) instead of creating it.
fn open_existing(dir: &Path) -> Result<Arc<Store>> {
    if std::env::var_os("AKTE_DATABASE").is_some() {
        return open(dir);
    }
    if !dir.join("FORMAT").is_file() {
        return Err(output::usage(format!(
            "{} is not a data directory (it has no FORMAT file); `akte --data-dir DIR \
             tenant create ID` makes one",
            dir.display()
        )));
    }
    open(dir)
}

/// Creates a tenant. A data directory that this command created is removed again when
/// the tenant cannot be created, so a failure leaves nothing behind.
fn create_tenant(dir: &Path, id: &str) -> Result<Arc<akte_core::store::Tenant>> {
    let fresh = std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none());
    let existed = dir.exists();
    let created = open(dir).and_then(|store| Ok(store.create_tenant(id)?));
    if created.is_err() && fresh {
        // The store (and its lock) is dropped by now. Only what this command made goes.
        if existed {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    let p = e.path();
                    let _ = if p.is_dir() {
                        std::fs::remove_dir_all(&p)
                    } else {
                        std::fs::remove_file(&p)
                    };
                }
            }
        } else {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    created
}

fn run(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::Tenant { command } => match command {
            TenantCommand::Create { id } => {
                let t = create_tenant(cli.data_dir()?, id)?;
                if cli.json {
                    print_json(&serde_json::json!({
                        "tenant": t.id(), "origin": t.origin(),
                        "verifier_key": t.verifier().to_string(),
                    }));
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
                let store = open_read_only(cli.data_dir()?)?;
                let mut list = Vec::new();
                for t in store.tenants() {
                    list.push(serde_json::json!({
                        "tenant": t.id(), "entries": t.size()?, "origin": t.origin(),
                    }));
                }
                if cli.json {
                    print_json(&serde_json::json!({ "tenants": list }));
                } else if list.is_empty() {
                    println!("no tenants yet (`akte tenant create ID` makes one)");
                } else {
                    for t in store.tenants() {
                        println!("{}\t{} entries\t{}", t.id(), t.size()?, t.origin());
                    }
                }
            }
        },
        Command::Ingest {
            tenant,
            actor,
            files,
        } => {
            let store = open_existing(cli.data_dir()?)?;
            let t = store.tenant(tenant)?;
            let mut out = Vec::new();
            for f in files {
                let rec = ingest_file(&t, actor, f)?;
                if !cli.json {
                    println!("{}\tentry {}\tsha256 {}", f.display(), rec.0, rec.1);
                }
                out.push(serde_json::json!({"file": f, "seq": rec.0, "sha256": rec.1.to_hex()}));
            }
            if cli.json {
                print_json(&serde_json::json!({ "ingested": out }));
            }
        }
        Command::Checkpoint { tenant, out } => {
            let store = open_existing(cli.data_dir()?)?;
            let t = store.tenant(tenant)?;
            let note = t.checkpoint()?;
            let bytes = note.to_bytes();
            let (cp, _) = Checkpoint::open(&bytes, &t.verifier())?;
            if let Some(path) = out {
                akte_core::embedded::fsutil::write_file_atomic(path, &bytes, 0o644)
                    .with_context(|| format!("writing the checkpoint {}", path.display()))?;
            }
            if cli.json {
                print_json(&serde_json::json!({
                    "origin": cp.origin, "tree_size": cp.size, "root_hash": cp.root.to_hex(),
                    "verifier_key": t.verifier().to_string(), "written_to": out,
                }));
            } else {
                print!("{}", String::from_utf8_lossy(&bytes));
                if let Some(path) = out {
                    eprintln!("akte: the signed checkpoint is also in {}", path.display());
                }
            }
        }
        Command::Prove { tenant, seq } => {
            let store = open_existing(cli.data_dir()?)?;
            let t = store.tenant(tenant)?;
            let size = t.size()?;
            if *seq >= size {
                let range = match size {
                    0 => "no entries yet".to_owned(),
                    n => format!("entries 0 to {}", n - 1),
                };
                return Err(output::NotFound(format!(
                    "no such entry: the journal of {tenant} has {range}"
                ))
                .into());
            }
            let (cp, _) = t.latest_checkpoint().map_err(|e| match e {
                akte_core::store::StoreError::NoCheckpoint(_) => {
                    anyhow::anyhow!(e).context(format!(
                        "entry {seq} exists, but there is no checkpoint to prove it against; \
                     `akte checkpoint --tenant {tenant}` signs one"
                    ))
                }
                e => e.into(),
            })?;
            if *seq >= cp.size {
                bail!(
                    "entry {seq} is newer than the latest checkpoint (size {}); `akte checkpoint \
                     --tenant {tenant}` signs one that covers it",
                    cp.size
                );
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
            fulltext_dir,
        } => {
            let database = std::env::var_os("AKTE_DATABASE").is_some();
            if *incremental && !database {
                // Where the last clean run ended is a record in the store, and a read-only
                // verification writes none.
                return Err(output::usage(
                    "--incremental: akte verify opens a data directory read-only and keeps no \
                     record of earlier runs in it; run it without --incremental, or let akted \
                     verify incrementally (akte verify-remote --incremental)",
                ));
            }
            let store = open_read_only(cli.data_dir()?)?;
            let trust = trust_of(&store, trusted_key, checkpoint)?;
            // A torn tail is left as it is and verification ends before it; say where,
            // since the report can only show a loss through a checkpoint that covers it.
            let torn = torn_tails(&store);
            let report = akte_core::verify::verify_store_trusting(
                &store,
                VerifyOptions {
                    incremental: *incremental,
                    content: !*no_content,
                    index: true,
                },
                &trust,
            )?;
            let fulltext = match fulltext_root(cli, fulltext_dir.as_deref())? {
                Some(root) => fulltext_check(&store, &root)?,
                None => Vec::new(),
            };
            let fulltext_clean = fulltext.iter().all(|(_, r)| r.destroyed_indexed.is_empty());
            if cli.json {
                let mut value = serde_json::to_value(&report)?;
                value["torn_tails"] = serde_json::to_value(&torn)?;
                value["fulltext"] = fulltext
                    .iter()
                    .map(|(t, r)| {
                        serde_json::json!({
                            "tenant": t, "documents": r.documents,
                            "destroyed_indexed": r.destroyed_indexed.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                print_json(&value);
            } else {
                if !database {
                    println!(
                        "verify: {} opened read-only (nothing written; the derived index is rebuilt here, not compared)",
                        cli.data_dir()?.display()
                    );
                }
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
                for (t, r) in &fulltext {
                    println!(
                        "tenant {t}: full-text index: {} documents, {} destroyed documents indexed",
                        r.documents,
                        r.destroyed_indexed.len()
                    );
                    for id in &r.destroyed_indexed {
                        println!(
                            "  PROBLEM destroyed document {id} is in the full-text index (`akte rebuild-index` with akted stopped, or removing the index, rebuilds it)"
                        );
                    }
                }
                println!(
                    "{}",
                    if report.is_clean() && fulltext_clean {
                        "verify: clean"
                    } else {
                        "verify: PROBLEMS FOUND"
                    }
                );
            }
            if !report.is_clean() || !fulltext_clean {
                return Ok(ExitCode::from(1));
            }
        }
        Command::RebuildIndex {
            instances_stopped,
            fulltext_dir,
        } => {
            if std::env::var_os("AKTE_DATABASE").is_some() && !instances_stopped {
                return Err(output::usage(
                    "rebuilding the index of a database empties and refills it, and running \
                     akted instances would answer from the partial index meanwhile: stop \
                     them, then run `akte rebuild-index --instances-stopped`"
                        .to_owned(),
                ));
            }
            let store = open_existing(cli.data_dir()?)?;
            let n = store.rebuild_index()?;
            let mut documents = serde_json::Map::new();
            if let Some(root) = fulltext_root(cli, fulltext_dir.as_deref())? {
                for t in store.tenants() {
                    let records = akte_core::records::TenantRecords::over(t.clone());
                    let d = akte_fulltext::service::rebuild(&records, &root)?;
                    documents.insert(t.id().to_owned(), d.into());
                }
            }
            if cli.json {
                print_json(
                    &serde_json::json!({ "rebuilt_from_entries": n, "fulltext_documents": documents }),
                );
            } else {
                println!("index rebuilt from {n} journal entries");
                for (t, d) in &documents {
                    println!("tenant {t}: full-text index rebuilt with {d} documents");
                }
            }
        }
        Command::Gc {
            tenant,
            grace_hours,
            dry_run,
        } => {
            let store = open_existing(cli.data_dir()?)?;
            let tenants = match tenant {
                Some(id) => vec![store.tenant(id)?],
                None => store.tenants(),
            };
            let options = akte_core::content_gc::CollectOptions {
                grace: std::time::Duration::from_secs(grace_hours * 3600),
                dry_run: *dry_run,
            };
            let mut reports = Vec::new();
            for t in tenants {
                let r = akte_core::content_gc::collect_tenant(&t, chrono::Utc::now(), options)?;
                if !cli.json {
                    println!(
                        "{}: {} objects, {} unreferenced ({} newly marked, {} within the grace \
                         period), {} {} ({} bytes), {} upload leftovers removed, {} problems",
                        r.tenant,
                        r.listed,
                        r.unreferenced,
                        r.newly_marked,
                        r.waiting,
                        r.removed,
                        if *dry_run {
                            "due for removal"
                        } else {
                            "removed"
                        },
                        r.removed_bytes,
                        r.leftovers_removed,
                        r.problems.len()
                    );
                    for p in &r.problems {
                        println!("  problem: {p}");
                    }
                }
                reports.push(r);
            }
            if cli.json {
                print_json(&serde_json::json!({ "tenants": reports }));
            }
            if reports.iter().any(|r| !r.problems.is_empty()) {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Stats => {
            let dir = cli.data_dir()?;
            let store = open_read_only(dir)?;
            let mut out = Vec::new();
            for t in store.tenants() {
                let objects = t.content().list().filter(|r| r.is_ok()).count();
                let checkpoints = t.checkpoint_files()?.len();
                let segs = akte_core::embedded::journal::list_segments(
                    &tenant_dir(dir, t.id()).join("journal"),
                )?;
                let journal_bytes: u64 = segs
                    .iter()
                    .filter_map(|(_, p)| std::fs::metadata(p).ok())
                    .map(|m| m.len())
                    .sum();
                if !cli.json {
                    println!(
                        "{}: {} entries in {} segments ({journal_bytes} bytes), {objects} content \
                         objects, {checkpoints} checkpoints",
                        t.id(),
                        t.size()?,
                        segs.len()
                    );
                }
                out.push(serde_json::json!({
                    "tenant": t.id(), "entries": t.size()?, "segments": segs.len(),
                    "journal_bytes": journal_bytes, "content_objects": objects, "checkpoints": checkpoints,
                }));
            }
            if cli.json {
                print_json(&serde_json::json!({ "tenants": out }));
            } else if out.is_empty() {
                println!("no tenants yet");
            }
        }
        Command::Demo => demo::run(cli.data_dir.as_deref())?,
        Command::Migrate { from, to } => migrate::migrate(
            &migrate::Place::parse(from),
            &migrate::Place::parse(to),
            cli.json,
        )?,
        Command::ExportStore { from, to } => {
            migrate::export_store(&migrate::Place::parse(from), to, cli.json)?
        }
        Command::ImportLegacy(args) => {
            let r = legacy::run(cli.data_dir()?, args)?;
            let items: Vec<serde_json::Value> = r
                .items
                .iter()
                .map(|i| serde_json::to_value(i).unwrap_or_default())
                .collect();
            if cli.json {
                print_json(&serde_json::json!({
                    "imported": r.imported, "already_imported": r.already_imported,
                    "failed": r.failed, "warned": r.warned, "items": items,
                    "truncated": r.truncated,
                }));
            } else {
                println!(
                    "{} imported, {} imported before, {} refused, {} with warnings",
                    r.imported, r.already_imported, r.failed, r.warned
                );
                for i in &r.items {
                    if let Some(e) = &i.error {
                        println!(
                            "refused {} {} [{}]: {e}",
                            i.kind,
                            i.source_id,
                            i.rule.as_deref().unwrap_or("")
                        );
                    }
                    for w in &i.warnings {
                        println!("warning {} {}: {w}", i.kind, i.source_id);
                    }
                }
            }
            if r.failed > 0 {
                return Ok(ExitCode::from(7));
            }
        }
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
