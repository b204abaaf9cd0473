//! akte-verify: what an archive runs to check akte's evidence offline, years later, with
//! no data directory and no akte service: the evidence format and the package verifier
//! with its report, RFC 6962 Merkle proofs, signed notes and checkpoints with witness
//! cosignatures, the key formats, and the consistency of two checkpoints. Also the format
//! types both sides share: digests and journal entries.
//!
//! It must not depend on akte-core, redb or the records model, and it writes no files:
//! akte-core depends on it (and re-exports these modules under their old paths), and the
//! agency's side (signing checkpoints, writing key files and evidence) stays there.
//!
//! - [`digest`]: the SHA-256 `Digest` type; [`entry`]: journal entries and their canonical
//!   bytes (strict decoder);
//! - [`merkle`]: RFC 6962/9162 hashing, the compact range, proof generation over a node
//!   source and proof verification;
//! - [`keys`], [`note`]: Ed25519 keys in the Go/C2SP note key format, signed notes,
//!   checkpoints and witness cosignatures;
//! - [`evidence`]: the evidence file, the offline package verifier, its report, and the
//!   consistency check.
#![forbid(unsafe_code)]

pub mod digest;
pub mod entry;
pub mod evidence;
pub mod keys;
pub mod merkle;
pub mod note;

pub use digest::Digest;
