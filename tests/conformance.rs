//! The conformance suite (`akte_tests::conformance`) against the backends in akte-core:
//! the embedded data directory and the in-memory backend.

use std::path::PathBuf;
use std::sync::Arc;

use akte_core::backend::memory::MemoryBackend;
use akte_core::backend::Backend;
use akte_core::store::Store;
use akte_tests::conformance::{self, Harness};

struct Embedded {
    dir: tempfile::TempDir,
}

impl Harness for Embedded {
    fn name(&self) -> String {
        "embedded".into()
    }

    fn open(&self) -> Arc<dyn Backend> {
        akte_core::embedded::open(self.dir.path()).unwrap()
    }

    /// The files as they are while the store runs, page cache included: what a killed
    /// process leaves (the power-loss test covers what a lost page cache leaves).
    fn crashed_copy(&self, _store: &Store) -> Option<Arc<dyn Backend>> {
        let copy: PathBuf = self.dir.path().with_extension("crashed");
        let _ = std::fs::remove_dir_all(&copy);
        akte_tests::copy_tree(self.dir.path(), &copy);
        Some(akte_core::embedded::open(&copy).unwrap())
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.dir.path().with_extension("crashed"));
    }
}

struct Memory {
    backend: Arc<MemoryBackend>,
}

impl Harness for Memory {
    fn name(&self) -> String {
        "memory".into()
    }

    fn open(&self) -> Arc<dyn Backend> {
        self.backend.clone()
    }

    fn crashed_copy(&self, _store: &Store) -> Option<Arc<dyn Backend>> {
        None
    }
}

fn embedded() -> Embedded {
    Embedded {
        dir: tempfile::tempdir().unwrap(),
    }
}

fn memory() -> Memory {
    Memory {
        backend: MemoryBackend::new(),
    }
}

macro_rules! cases {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(#[test] fn $case() { akte_tests::conformance::$case(&super::embedded()); })*
        }
        mod memory {
            $(#[test] fn $case() { akte_tests::conformance::$case(&super::memory()); })*
        }
    };
}

cases!(
    acknowledged_entries_survive_a_restart,
    content_puts_are_idempotent_and_verified,
    concurrent_appends_get_gapless_unique_sequence_numbers,
    reads_return_entries_in_order_with_their_chain,
    index_reads_during_writes_see_whole_entries,
    large_objects_stream_through,
    errors_have_the_right_kind,
    recovery_after_a_crash_keeps_every_acknowledged_entry,
    destruction_removes_content_and_records_but_keeps_the_chain,
    tenants_see_nothing_of_each_other,
    metadata_blobs_are_replaced_atomically,
);

/// `run_all` is what other backends call; it runs each case once.
#[test]
fn run_all_covers_the_memory_backend() {
    conformance::run_all(&memory());
}
