//! The conformance suite (`akte_tests::conformance`) against every backend: the embedded
//! data directory, the in-memory backend, PostgreSQL (a private server the test starts,
//! one database per case), and PostgreSQL with content in S3 (moto, a private S3-protocol
//! server, one bucket per case).

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

/// PostgreSQL: a database of its own on the test process's server. A "crash" is a second
/// instance opening the database while the first still runs: it sees exactly what was
/// committed, which is all a crashed instance leaves.
struct Postgres {
    url: String,
}

impl Harness for Postgres {
    fn name(&self) -> String {
        "postgres".into()
    }

    fn open(&self) -> Arc<dyn Backend> {
        akte_postgres::PgBackend::connect(&self.url, akte_postgres::PgOptions::default()).unwrap()
    }

    fn crashed_copy(&self, _store: &Store) -> Option<Arc<dyn Backend>> {
        Some(self.open())
    }
}

fn postgres() -> Postgres {
    Postgres {
        url: akte_tests::pg::shared().fresh_database(),
    }
}

/// PostgreSQL with content in S3-compatible object storage (moto, a real S3-protocol
/// server the test starts).
struct PostgresS3 {
    url: String,
    bucket: String,
}

impl Harness for PostgresS3 {
    fn name(&self) -> String {
        "postgres+s3".into()
    }

    fn open(&self) -> Arc<dyn Backend> {
        let options = akte_postgres::PgOptions {
            content: Some(akte_tests::s3::shared().options(self.bucket.clone())),
            ..akte_postgres::PgOptions::default()
        };
        akte_postgres::PgBackend::connect(&self.url, options).unwrap()
    }

    fn crashed_copy(&self, _store: &Store) -> Option<Arc<dyn Backend>> {
        Some(self.open())
    }
}

fn postgres_s3() -> PostgresS3 {
    PostgresS3 {
        url: akte_tests::pg::shared().fresh_database(),
        bucket: akte_tests::s3::shared().fresh_bucket(),
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
        mod postgres {
            $(#[test] fn $case() { akte_tests::conformance::$case(&super::postgres()); })*
        }
        mod postgres_s3 {
            $(#[test] fn $case() { akte_tests::conformance::$case(&super::postgres_s3()); })*
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
    unreferenced_content_is_collected_and_referenced_content_never,
);

/// `run_all` is what other backends call; it runs each case once.
#[test]
fn run_all_covers_the_memory_backend() {
    conformance::run_all(&memory());
}

/// What an interrupted upload leaves in object storage (an object under `tmp/`) is swept
/// once older than the grace period; content objects are not touched by the sweep.
#[test]
fn s3_upload_leftovers_are_swept_after_the_grace_period() {
    let h = postgres_s3();
    let store = Store::open(h.open(), Default::default()).unwrap();
    let t = store.create_tenant("sweep").unwrap();
    let kept = t
        .content()
        .put_bytes(b"a content object", None, None)
        .unwrap();
    let bucket = h
        .bucket
        .trim_start_matches("s3://")
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let s3 = akte_tests::s3::shared();
    assert!(
        s3.refuses_a_wrong_signature(&bucket),
        "signatures are not checked"
    );
    s3.put_raw(&bucket, "sweep/tmp/0123abcd", b"half an upload");
    let day = std::time::Duration::from_secs(24 * 3600);
    assert_eq!(
        t.content().sweep_leftovers(day).unwrap(),
        0,
        "a fresh leftover went"
    );
    // S3 times have a resolution of a second: let the leftover become older than "now".
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(
        t.content()
            .sweep_leftovers(std::time::Duration::ZERO)
            .unwrap(),
        1
    );
    assert_eq!(
        t.content()
            .sweep_leftovers(std::time::Duration::ZERO)
            .unwrap(),
        0
    );
    assert!(t.content().contains(&kept.digest).unwrap());
}
