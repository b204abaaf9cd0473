//! akte-fulltext: full-text search over akte's documents.
//!
//! Kept apart from akte-core so that tantivy is not part of the engine's build: the
//! engine knows nothing of it, and the full-text index is derived data that this crate
//! keeps up to date by following each tenant's journal.
//!
//! - `extract`: the text of a document's bytes (PDF, plain text, XML, DOCX, ODT), bounded
//!   and never failing the caller.
//! - `analyzer`: German stemming and umlaut folding, the same at index and query time.
//! - `query`: the query language (words, "phrases", prefix*).
//! - `index`: one tenant's tantivy index; each commit records the journal position.
//! - `indexer`: follows a tenant's journal in the background and applies what it says
//!   to the index (new versions, subjects, refiles, destruction).
//! - `service`: the indexes of all tenants of a store, with the background thread.
//! - `verify`: no destroyed document may remain indexed.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod analyzer;
pub mod extract;
pub mod index;
pub mod indexer;
pub mod query;
mod read_only;
pub mod service;
pub mod verify;

#[cfg(test)]
mod test_index;

use std::path::Path;

pub use index::{Hit, Ranking, TextIndex};
pub use service::Fulltext;

/// Errors of the full-text index.
#[derive(Debug, thiserror::Error)]
pub enum FulltextError {
    /// tantivy failed (I/O, a damaged segment).
    #[error("full-text index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    /// A file or directory operation failed.
    #[error("full-text index {path}: {source}")]
    Io {
        /// Where.
        path: String,
        /// What.
        source: std::io::Error,
    },
    /// The index was written by another layout version or records no position.
    #[error("full-text index of another layout: {0}")]
    Layout(String),
    /// The query cannot be run.
    #[error("text query: {0}")]
    Query(String),
    /// A write to an index opened for reading.
    #[error("the full-text index is open for reading only")]
    ReadOnly,
    /// A thread panicked while holding the index writer.
    #[error("the full-text index writer is unusable after a panic")]
    Poisoned,
    /// The records could not be read.
    #[error(transparent)]
    Records(#[from] akte_core::records::RecordsError),
    /// The journal could not be read.
    #[error(transparent)]
    Store(#[from] akte_core::store::StoreError),
}

impl FulltextError {
    fn io(path: &Path, source: std::io::Error) -> FulltextError {
        FulltextError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// The tantivy this crate is built with (the benchmark's plain-tantivy baseline uses it).
pub use tantivy;
