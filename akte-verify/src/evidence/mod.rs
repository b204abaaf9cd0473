//! Evidence: proof, checkable years later and without akte, that the files of a transfer
//! (or of one document) are the bytes the agency's journal recorded.
//!
//! An evidence file (`akte-evidence/v1`, a canonical JSON document) lists, for each file,
//! its name, size and SHA-256, the journal entry that recorded it (its canonical bytes, so a
//! verifier recomputes the leaf hash and finds the digest among the entry's payloads), and
//! an RFC 6962 inclusion proof from that leaf to one signed checkpoint of the tenant's
//! journal, together with the checkpoint and the verifier key that signed it. Every 0503
//! transfer ZIP carries one as `{ProzessID}_akte-evidence.json`; the XML does not reference
//! it, so archive intake tools ignore it.
//!
//! - [`format`](mod@format): the evidence file ([`Evidence`]), strict parsing of it and of proof files;
//! - [`package`]: checking, offline and without a data directory: [`verify_package`] (a
//!   ZIP), [`verify_evidence_dir`] (a standalone evidence file and a directory of files);
//! - [`report`]: the [`PackageReport`] they return, naming every damaged object;
//! - [`consistency`]: [`verify_consistency`] for two checkpoints and a consistency proof.
//!
//! Writing evidence needs the journal and the records model: that is akte-core's
//! (`akte_core::evidence::build_evidence`).
//!
//! The format and the verification algorithm are specified byte by byte in
//! `docs/FORMAT.md`, section "Evidence"; `tools/verify_transfer.py` implements them
//! independently. Verification never panics and bounds memory: files are hashed as they
//! stream, the evidence file is capped at [`MAX_EVIDENCE_BYTES`], and no read goes more than
//! one byte past the size the evidence states.

pub mod consistency;
pub mod format;
pub mod package;
pub mod report;

pub use consistency::*;
pub use format::*;
pub use package::*;
pub use report::*;

/// The `format` value of this version of the evidence file.
pub const EVIDENCE_FORMAT: &str = "akte-evidence/v1";

/// Suffix of an evidence file's name in a ZIP: `{ProzessID or document UUID}` + this.
pub const EVIDENCE_SUFFIX: &str = "_akte-evidence.json";

/// Largest evidence file a verifier reads (256 MiB, roughly 150 000 files).
pub const MAX_EVIDENCE_BYTES: u64 = 256 * 1024 * 1024;

/// Most hashes in one inclusion proof (a tree of 2^64 entries needs 64).
pub const MAX_PROOF_HASHES: usize = 64;

/// Longest file name in an evidence file, in bytes of UTF-8.
pub const MAX_FILE_NAME_BYTES: usize = 255;

/// Earliest entry time, in microseconds since 1970, that an entry decoder accepts
/// (-262143-01-01T00:00:00Z); earlier values are out of range (see `docs/FORMAT.md`).
pub const MIN_ENTRY_TIME_MICROS: i64 = -8_334_601_228_800_000_000;

/// Latest entry time, in microseconds since 1970, that an entry decoder accepts
/// (+262142-12-31T23:59:59.999999Z).
pub const MAX_ENTRY_TIME_MICROS: i64 = 8_210_266_876_799_999_999;

#[cfg(test)]
mod tests;
