//! akte-core: the records-management engine of akte.
//!
//! The storage engine underneath the records model:
//!
//! - [`content`]: a content-addressed store per tenant (SHA-256 keys, zstd where it pays,
//!   atomic and durable writes, reads that verify as they stream), small objects in
//!   [`pack`] files flushed in groups;
//! - [`journal`]: an append-only, hash-chained journal per tenant in checksummed segment
//!   files ([`segment`]), with group commit and crash recovery; entries have a canonical
//!   encoding ([`entry`]);
//! - [`merkle`]: RFC 6962/9162 tree hashing, inclusion and consistency proofs, and their
//!   verification as pure functions;
//! - [`keys`] and [`note`]: Ed25519 keys and checkpoints in the C2SP signed-note format;
//!   [`entry`], [`merkle`], [`keys`], [`note`] and the evidence format and verifier
//!   ([`evidence`]) are the crate akte-verify's, re-exported here: an archive runs that
//!   crate offline, without this one;
//! - [`index`]: the index of derived state (redb in a data directory), rebuildable from the journals;
//! - [`store`]: a data directory of tenants tying these together;
//! - [`verify`]: verification of a whole store, or incrementally;
//! - [`witness`]: witnesses that cosign checkpoints, on the log's side (registered keys,
//!   stored cosignatures) and on the witness's side (kept checkpoint, consistency check);
//! - [`records`]: the records model over the engine, with the xdomea flows; the xdomea
//!   messages themselves are the crate akte-xdomea's ([`xdomea`]).
//!
//! The byte formats are documented in `docs/FORMAT.md`.
//!
//! ```
//! use akte_core::entry::{EntryDraft, Payload, PayloadKind};
//! use akte_core::store::{Store, StoreOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(akte_core::embedded::open(dir.path())?, StoreOptions::default())?;
//! let tenant = store.create_tenant("stadt-erfurt")?;
//!
//! // Content first (durable), then the journal entry that refers to it.
//! let put = tenant.put_content(&b"Bescheid vom 3. Mai"[..])?;
//! let appended = tenant.append(
//!     EntryDraft {
//!         actor: "clerk:schmidt".into(),
//!         kind: "document.version".into(),
//!         object: "7d9f0c1e-0000-4000-8000-000000000001".into(),
//!         payloads: vec![Payload {
//!             kind: PayloadKind::Content,
//!             role: "rendition".into(),
//!             size: put.size,
//!             digest: put.digest,
//!         }],
//!     },
//!     vec![],
//! )?;
//!
//! // A signed checkpoint, and a proof that the entry is in the tree it commits to.
//! let note = tenant.checkpoint()?;
//! let (checkpoint, _) = akte_core::note::Checkpoint::open(&note.to_bytes(), &tenant.verifier())?;
//! let proof = tenant.inclusion_proof(appended.ticket.entry.seq, checkpoint.size)?;
//! akte_core::merkle::verify_inclusion(
//!     &appended.ticket.leaf,
//!     appended.ticket.entry.seq,
//!     checkpoint.size,
//!     &proof,
//!     &checkpoint.root,
//! )?;
//! # Ok(()) }
//! ```
// No unsafe code: file locks are std::fs::File::try_lock (Rust 1.89), nothing else needs it.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod access;
/// The format modules an offline verifier needs too live in akte-verify; they keep their
/// paths here.
pub use akte_verify::{digest, entry, merkle, note};
/// xdomea messages are akte-xdomea's, under their old path.
pub use akte_xdomea as xdomea;
pub mod backend;
pub mod content_gc;
pub mod embedded;
pub mod evidence;
pub mod index;
pub mod journal;
pub mod keys;
pub mod migrate;
pub mod records;
pub mod store;
pub mod verify;
pub mod witness;

pub use digest::Digest;
