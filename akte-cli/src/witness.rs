//! `akte witness`: the archive's side of witnessing an agency's journal.
//!
//! `init` makes a witness key. `cosign` fetches the agency's newest checkpoint from akted
//! (or reads one from a file, offline), checks it against the log key pinned in the state
//! directory and, with a consistency proof, against the checkpoint the witness kept last
//! time; only if the new checkpoint extends the kept one does it add a `cosignature/v1`,
//! hand the cosigned note back (AddCosignature, or a file), and keep the new checkpoint.
//! The decision itself is [`akte_core::witness::WitnessState`]'s.
//!
//! Exit codes: 0 cosigned; 1 refused (the log's history does not extend what the witness
//! saw: it went backwards, forked, or the proof fails); other failures as every `akte`
//! command (2 usage, 3 error, 4 unreachable, 5 not allowed, ...).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use serde_json::json;

use akte_api::pb::akte::v1 as pb;
use akte_core::embedded::fsutil;
use akte_core::evidence::{checkpoint_note_from, parse_proof};
use akte_core::keys::{KeyFile, SigningKeyPair, VerifierKey, PUBLIC_KEY_MODE};
use akte_core::witness::{Plan, WitnessState, WitnessStateError};
use akte_core::Digest;

use super::remote::{self, Remote};

/// The witness commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate a witness key: the private key file (mode 0600) and KEYFILE.pub; prints the
    /// verifier key to give the agency's administrator (AddWitness).
    Init {
        /// The witness's key name, e.g. `archiv.thueringen.de/zeuge` (no spaces, no '+').
        #[arg(long)]
        name: String,
        /// Where to write the private key. An existing file is never overwritten.
        #[arg(long)]
        out: PathBuf,
    },
    /// Check the agency's newest checkpoint against the one kept in --state and cosign it
    /// if it extends it. Remote (default): fetch it and the consistency proof from akted
    /// (--server, --token, --tenant) and store the cosignature there (AddCosignature).
    /// Offline (--checkpoint): read them from files and write the cosigned note.
    Cosign {
        /// The witness's private key file (from `akte witness init`).
        #[arg(long)]
        key: PathBuf,
        /// The witness's state directory for this log: the pinned log key and the kept
        /// checkpoint. One directory per agency log.
        #[arg(long)]
        state: PathBuf,
        /// The log's verifier key (type 0x01) or a file holding it, obtained out of band.
        /// Required on first use (it is pinned then); later it must match the pinned key.
        #[arg(long)]
        trust_log_key: Option<String>,
        /// Remote: ask akted to sign a checkpoint of the journal now and cosign that one
        /// (needs a registrar, archivist or admin token), instead of its newest stored one.
        #[arg(long, conflicts_with = "checkpoint")]
        new_checkpoint: bool,
        /// Offline: the checkpoint to cosign, as a note, an evidence file or a transfer ZIP.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Offline: the consistency proof file from the kept checkpoint's size to the new
        /// one's (one base64 hash per line, as `akte journal consistency --out` writes it).
        #[arg(long, requires = "checkpoint")]
        proof: Option<PathBuf>,
        /// Offline: where to write the cosigned note [default: standard output].
        #[arg(long, requires = "checkpoint")]
        out: Option<PathBuf>,
    },
}

/// Runs a witness command.
pub fn run(remote: &Remote, json: bool, command: &Command) -> Result<ExitCode> {
    match command {
        Command::Init { name, out } => init(name, out, json),
        Command::Cosign {
            key,
            state,
            trust_log_key,
            new_checkpoint,
            checkpoint,
            proof,
            out,
        } => {
            let witness = SigningKeyPair::load(key)
                .with_context(|| format!("loading the witness key {}", key.display()))?;
            let trust = trust_log_key.as_deref().map(parse_trust).transpose()?;
            let state_dir = state;
            let mut state = WitnessState::open(state_dir, trust.as_ref())
                .with_context(|| format!("opening the witness state {}", state_dir.display()))?;
            if json && checkpoint.is_some() && out.is_none() {
                // The cosigned note would go to standard output, which under --json holds
                // one JSON object and never a note.
                return Err(crate::output::usage(
                    "with --json, give --out FILE for the cosigned note",
                ));
            }
            let result = match checkpoint {
                Some(file) => {
                    cosign_offline(&mut state, &witness, file, proof.as_deref(), out.as_deref())
                }
                None => {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .context("starting the runtime")?;
                    runtime.block_on(cosign_remote(&mut state, &witness, remote, *new_checkpoint))
                }
            };
            match result {
                Ok(done) => {
                    report(&done, &witness, json);
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => match e.downcast_ref::<WitnessStateError>() {
                    Some(refusal) if refusal.is_refusal() => {
                        eprintln!("akte: {refusal}");
                        eprintln!(
                            "akte: nothing was cosigned; the kept checkpoint in {} is unchanged. \
                             Keep both checkpoints: they are the agency's signed statements.",
                            state_dir.display()
                        );
                        if json {
                            println!(
                                "{}",
                                serde_json::to_string_pretty(
                                    &json!({"cosigned": false, "refused": refusal.to_string()})
                                )
                                .unwrap_or_default()
                            );
                        }
                        Ok(ExitCode::from(1))
                    }
                    _ => Err(e),
                },
            }
        }
    }
}

/// A log key given as the key string itself or as a file holding it.
fn parse_trust(arg: &str) -> Result<VerifierKey> {
    match VerifierKey::parse(arg.trim_end_matches('\n')) {
        Ok(k) => Ok(k),
        Err(e) if Path::new(arg).is_file() => {
            VerifierKey::load(Path::new(arg)).with_context(|| {
                format!("--trust-log-key {arg:?} is not a key ({e}); reading it as a key file")
            })
        }
        Err(e) => {
            Err(anyhow!(e).context("--trust-log-key is neither a verifier key nor a key file"))
        }
    }
}

fn init(name: &str, out: &Path, json: bool) -> Result<ExitCode> {
    let pub_path = public_path(out);
    for p in [out, pub_path.as_path()] {
        if p.exists() {
            bail!(
                "{} exists; a witness key is never overwritten (its cosignatures would no longer verify against the key the agency registered)",
                p.display()
            );
        }
    }
    let key = SigningKeyPair::generate(name).context("generating the witness key")?;
    key.save(out)
        .with_context(|| format!("writing the key {}", out.display()))?;
    let verifier = key.cosignature_verifier();
    if let Err(e) = fsutil::write_file_atomic(
        &pub_path,
        format!("{verifier}\n").as_bytes(),
        PUBLIC_KEY_MODE,
    ) {
        // A key without its public half would be refused next time ("exists"): nothing
        // of this run stays.
        let _ = std::fs::remove_file(out);
        return Err(anyhow!(e).context(format!("writing {}", pub_path.display())));
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "key_file": out, "verifier_key": verifier.to_string(),
                "fingerprint": verifier.fingerprint(),
            }))
            .unwrap_or_default()
        );
    } else {
        println!("witness key written to {} (mode 0600)", out.display());
        println!(
            "verifier key (give it to the agency's administrator; also in {}):",
            pub_path.display()
        );
        println!("{verifier}");
        println!("fingerprint {}", verifier.fingerprint());
    }
    Ok(ExitCode::SUCCESS)
}

/// `KEYFILE.pub`.
fn public_path(key: &Path) -> PathBuf {
    let mut name = key.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// What one cosigning run did.
struct Done {
    plan: Plan,
    kept_before: Option<(u64, Digest)>,
    stored_by_server: Option<bool>,
    written_to: Option<PathBuf>,
}

fn now() -> Result<u64> {
    Ok(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs())
}

fn kept_of(state: &WitnessState) -> Option<(u64, Digest)> {
    state.kept().map(|k| (k.size, k.root))
}

async fn cosign_remote(
    state: &mut WitnessState,
    witness: &SigningKeyPair,
    remote: &Remote,
    new_checkpoint: bool,
) -> Result<Done> {
    let tenant_id = remote
        .tenant
        .clone()
        .ok_or_else(|| anyhow!("--tenant (or AKTE_TENANT) is required: the agency's tenant"))?;
    let tenant = format!("tenants/{tenant_id}");
    let mut c = remote::connect(remote).await?;
    let cp = if new_checkpoint {
        c.journal
            .create_checkpoint(pb::CreateCheckpointRequest {
                parent: tenant.clone(),
            })
            .await?
    } else {
        c.journal
            .get_latest_checkpoint(pb::GetLatestCheckpointRequest {
                parent: tenant.clone(),
                cosigned: false,
            })
            .await?
    }
    .into_inner();
    let kept_before = kept_of(state);
    let plan = state.plan(&cp.signed_note)?;
    let proof = match plan.proof_needed {
        None => Vec::new(),
        Some((old, new)) => {
            let p = c
                .journal
                .get_consistency_proof(pb::GetConsistencyProofRequest {
                    parent: tenant.clone(),
                    first_tree_size: old,
                    second_tree_size: new,
                })
                .await?
                .into_inner();
            // Only the hashes are used: the roots come from the kept and the new signed
            // checkpoints, never from the server's say-so.
            p.hashes
                .iter()
                .map(|h| {
                    Digest::from_slice(h)
                        .ok_or_else(|| anyhow!("the server sent a proof hash of {} bytes", h.len()))
                })
                .collect::<Result<Vec<_>>>()?
        }
    };
    let note = state.cosign(&plan, &proof, witness, now()?)?;
    let stored = c
        .journal
        .add_cosignature(pb::AddCosignatureRequest {
            parent: tenant,
            cosigned_note: note.to_bytes().into(),
        })
        .await?
        .into_inner();
    let ours = witness.cosignature_verifier().to_string();
    let listed = stored.cosignatures.iter().any(|w| w.verifier_key == ours);
    state
        .keep(&note)
        .with_context(|| format!("keeping the new checkpoint in {}", state.dir().display()))?;
    Ok(Done {
        plan,
        kept_before,
        stored_by_server: Some(listed),
        written_to: None,
    })
}

fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .with_context(|| format!("opening {}", path.display()))?
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > limit {
        bail!("{} is larger than {limit} bytes", path.display());
    }
    Ok(bytes)
}

fn cosign_offline(
    state: &mut WitnessState,
    witness: &SigningKeyPair,
    checkpoint: &Path,
    proof: Option<&Path>,
    out: Option<&Path>,
) -> Result<Done> {
    // A transfer ZIP may be large; its evidence entry is found through its directory.
    let bytes = read_limited(checkpoint, akte_core::evidence::MAX_EVIDENCE_BYTES)?;
    let note_bytes = checkpoint_note_from(&bytes)
        .with_context(|| format!("reading the checkpoint from {}", checkpoint.display()))?;
    let kept_before = kept_of(state);
    let plan = state.plan(&note_bytes)?;
    let hashes = match (plan.proof_needed, proof) {
        (Some(_), Some(p)) => parse_proof(&read_limited(p, 1 << 16)?)
            .with_context(|| format!("reading the proof file {}", p.display()))?,
        (Some((old, new)), None) => bail!(
            "a consistency proof from size {old} (the kept checkpoint) to size {new} is needed: \
             give it with --proof (the agency makes it with `akte journal consistency {old} {new} --out FILE`)"
        ),
        (None, Some(p)) => {
            eprintln!(
                "akte: {} not used: no proof is needed ({})",
                p.display(),
                match kept_before {
                    None => "first checkpoint for this witness state",
                    Some(_) => "same size as the kept checkpoint",
                }
            );
            Vec::new()
        }
        (None, None) => Vec::new(),
    };
    let note = state.cosign(&plan, &hashes, witness, now()?)?;
    match out {
        Some(path) => fsutil::write_file_atomic(path, &note.to_bytes(), 0o644)
            .with_context(|| format!("writing {}", path.display()))?,
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&note.to_bytes())?;
            stdout.flush()?;
        }
    }
    state
        .keep(&note)
        .with_context(|| format!("keeping the new checkpoint in {}", state.dir().display()))?;
    Ok(Done {
        plan,
        kept_before,
        stored_by_server: None,
        written_to: out.map(Path::to_path_buf),
    })
}

fn report(done: &Done, witness: &SigningKeyPair, json: bool) {
    let cp = &done.plan.checkpoint;
    // Hashes in hex, as everywhere in akte's output (the note itself keeps base64).
    let hex = |d: &Digest| d.to_hex();
    if json {
        let v = json!({
            "cosigned": true,
            "origin": cp.origin,
            "tree_size": cp.size,
            "root_hash": hex(&cp.root),
            "kept_size": done.kept_before.map(|k| k.0),
            "kept_root_hash": done.kept_before.map(|k| hex(&k.1)),
            "witness": witness.name(),
            "stored_by_server": done.stored_by_server,
            "written_to": done.written_to,
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return;
    }
    let since = match done.kept_before {
        None => "first checkpoint kept for this log".to_owned(),
        Some((size, root)) if size == cp.size => {
            format!("same as the kept checkpoint (root {})", hex(&root))
        }
        Some((size, root)) => format!(
            "consistent with the kept checkpoint of size {size} (root {})",
            hex(&root)
        ),
    };
    let line = format!(
        "cosigned {} at size {} (root {}) as {}: {since}",
        cp.origin,
        cp.size,
        hex(&cp.root),
        witness.name()
    );
    // Offline without --out the note is on standard output: the summary goes to stderr.
    if done.stored_by_server.is_none() && done.written_to.is_none() {
        eprintln!("akte: {line}");
        return;
    }
    println!("{line}");
    match (done.stored_by_server, &done.written_to) {
        (Some(true), _) => println!("the server stored the cosignature"),
        (Some(false), _) => println!(
            "WARNING: the server accepted the note but does not list this witness's cosignature"
        ),
        (None, Some(p)) => println!("cosigned note written to {}", p.display()),
        (None, None) => {}
    }
}
