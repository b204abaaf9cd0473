//! Archivists' offline commands: check a transfer package or a consistency proof with no
//! data directory and no running akted.
//!
//! Exit codes follow `tools/verify_transfer.py`: 0 verified, 1 problems found, 2 the check
//! could not run (unreadable input, malformed key).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use akte_core::evidence::{self, ConsistencyError};

/// The offline verification commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Verify a 0503 transfer ZIP (or a document evidence package) offline: every file's
    /// hash, every inclusion proof, the checkpoint signature.
    VerifyPackage {
        /// The ZIP; with --evidence, the directory holding the unpacked files.
        package: PathBuf,
        /// The tenant's verifier key (`name+keyid+base64`), obtained out of band; without
        /// it the key in the package is used and only integrity is shown.
        #[arg(long)]
        key: Option<String>,
        /// An evidence JSON file, when PACKAGE is a directory of unpacked files.
        #[arg(long)]
        evidence: Option<PathBuf>,
    },
    /// Check that a newer checkpoint extends an older one (nothing removed or rewritten).
    VerifyConsistency {
        /// The older checkpoint: a note, an evidence file or a transfer ZIP.
        old: PathBuf,
        /// The newer checkpoint: a note, an evidence file or a transfer ZIP.
        new: PathBuf,
        /// The consistency proof from the agency (one base64 hash per line).
        proof: PathBuf,
        /// The tenant's verifier key; defaults to the key in OLD.
        #[arg(long)]
        key: Option<String>,
    },
}

/// Runs one command; prints the report (or JSON) and returns the exit code.
pub fn run(command: &Command, json: bool) -> ExitCode {
    match command {
        Command::VerifyPackage {
            package,
            key,
            evidence: ev,
        } => {
            let result = match ev {
                Some(e) => evidence::verify_evidence_dir(e, package, key.as_deref()),
                None => evidence::verify_package(package, key.as_deref()),
            };
            match result {
                Ok(report) => {
                    if json {
                        println!(
                            "{}",
                            serde_json::to_string_pretty(&report).unwrap_or_default()
                        );
                    } else {
                        let text = report.to_string();
                        println!("{}", text.trim_end());
                    }
                    if report.is_clean() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
                Err(e) => crate::output::report_cannot_check(
                    &format!("cannot verify {}: {e}", package.display()),
                    json,
                ),
            }
        }
        Command::VerifyConsistency {
            old,
            new,
            proof,
            key,
        } => match evidence::verify_consistency_files(old, new, proof, key.as_deref()) {
            Ok(report) => {
                if json {
                    let v = serde_json::json!({
                        "consistent": true,
                        "origin": report.origin,
                        "old_size": report.old_size,
                        "old_root": report.old_root.to_hex(),
                        "new_size": report.new_size,
                        "new_root": report.new_root.to_hex(),
                    });
                    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                } else {
                    println!("{report}");
                }
                ExitCode::SUCCESS
            }
            // Inputs that cannot be used (a file not there, no key or the wrong one)
            // leave the question open: that is "cannot check" (exit 2, an error like any
            // other), not a finding that the checkpoints are inconsistent.
            Err(
                e @ (ConsistencyError::Key(_)
                | ConsistencyError::Open { .. }
                | ConsistencyError::NoKey
                | ConsistencyError::WrongKeyKind),
            ) => {
                crate::output::report_cannot_check(&format!("cannot check consistency: {e}"), json)
            }
            Err(e) => {
                if json {
                    let v = serde_json::json!({"consistent": false, "error": e.to_string()});
                    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                } else {
                    println!("NOT CONSISTENT: {e}");
                }
                ExitCode::from(1)
            }
        },
    }
}
