//! Evidence: proof, checkable years later and without akte, that the files of a transfer
//! (or of one document) are the bytes the agency's journal recorded.
//!
//! One path for both sides: the format, the offline verifier and its report are
//! akte-verify's ([`akte_verify::evidence`], which an archive runs without akte-core);
//! writing evidence needs the journal and the records model and lives with the latter
//! (`records/evidence.rs`). The format is specified in `docs/FORMAT.md`, section "Evidence".

pub use akte_verify::evidence::*;

pub use crate::records::evidence::{
    build_evidence, consistency_evidence, EvidenceError, EvidenceItem, EvidenceSubject,
};
