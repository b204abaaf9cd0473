//! Power-loss simulation for the crash tests (cargo feature `power-loss-test`).
//!
//! A process killed with SIGKILL keeps everything it wrote: the page cache survives, so a
//! missing `fsync` never shows. A power loss keeps only what was flushed. With the feature
//! on and `AKTE_POWER_LOSS_DIR` set, every flush akte makes ([`super::fsutil`]) records
//! what it made durable in that directory:
//!
//! - after a file's flush, a copy of the file's bytes, named by the file's identity
//!   (device, inode, birth time), so renames and hard links keep pointing at it;
//! - after a directory's flush, its entries (names and identities), named by the
//!   directory's identity (a directory renamed after its flush keeps its entries).
//!
//! With `AKTE_POWER_LOSS_AT=N` the process aborts just before its N-th flush. The test
//! then rebuilds the data directory as a power loss at that moment would leave it (the
//! flushed entries of every directory, each file with its last flushed bytes; nothing of
//! what was written but not flushed) and checks that every acknowledged write is there.
//! Flushes and records are serialised, so the abort never lands inside a record.
//!
//! Without the feature every hook is empty.

#[cfg(feature = "power-loss-test")]
mod enabled {
    use std::fs::File;
    use std::io::Write;
    use std::path::{Path, PathBuf};
    use std::sync::{Mutex, OnceLock};

    struct Tracker {
        dir: PathBuf,
        abort_at: Option<u64>,
        /// Flushes seen so far; guards every record.
        count: Mutex<u64>,
    }

    fn tracker() -> Option<&'static Tracker> {
        static TRACKER: OnceLock<Option<Tracker>> = OnceLock::new();
        TRACKER
            .get_or_init(|| {
                let dir = PathBuf::from(std::env::var_os("AKTE_POWER_LOSS_DIR")?);
                let abort_at = std::env::var("AKTE_POWER_LOSS_AT")
                    .ok()
                    .and_then(|s| s.parse().ok());
                std::fs::create_dir_all(dir.join("files")).ok()?;
                std::fs::create_dir_all(dir.join("dirs")).ok()?;
                Some(Tracker {
                    dir,
                    abort_at,
                    count: Mutex::new(0),
                })
            })
            .as_ref()
    }

    /// The identity of the file or directory behind `meta`: survives renames and links,
    /// and a reused inode number gets a new birth time.
    pub fn identity(meta: &std::fs::Metadata) -> String {
        use std::os::unix::fs::MetadataExt;
        let born = meta
            .created()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        format!("{}-{}-{born}", meta.dev(), meta.ino())
    }

    /// Writes `bytes` to `path` so that an abort leaves the old or the new file.
    fn put(path: &Path, bytes: &[u8]) {
        let tmp = path.with_extension("tmp");
        if let Ok(mut f) = File::create(&tmp) {
            if f.write_all(bytes).is_ok() {
                let _ = std::fs::rename(&tmp, path);
            }
        }
    }

    pub fn crash_point() {
        let Some(t) = tracker() else { return };
        let mut count = t.count.lock().unwrap_or_else(|p| p.into_inner());
        *count += 1;
        if t.abort_at == Some(*count) {
            // Power is lost now: nothing after this point reaches the disk.
            std::process::abort();
        }
    }

    pub fn file_synced(file: &File, path: &Path) {
        let Some(t) = tracker() else { return };
        let _one = t.count.lock().unwrap_or_else(|p| p.into_inner());
        let (Ok(meta), Ok(bytes)) = (file.metadata(), std::fs::read(path)) else {
            return;
        };
        put(&t.dir.join("files").join(identity(&meta)), &bytes);
    }

    pub fn dir_synced(dir: &Path) {
        let Some(t) = tracker() else { return };
        let _one = t.count.lock().unwrap_or_else(|p| p.into_inner());
        let (Ok(items), Ok(meta)) = (std::fs::read_dir(dir), std::fs::metadata(dir)) else {
            return;
        };
        let mut listing = String::new();
        for item in items.flatten() {
            let Ok(meta) = std::fs::symlink_metadata(item.path()) else {
                continue;
            };
            let kind = if meta.is_dir() { "d" } else { "f" };
            listing.push_str(&format!(
                "{kind} {} {}\n",
                identity(&meta),
                item.file_name().to_string_lossy()
            ));
        }
        put(
            &t.dir.join("dirs").join(identity(&meta)),
            listing.as_bytes(),
        );
    }
}

#[cfg(feature = "power-loss-test")]
pub use enabled::identity;

/// Just before a flush: counts it, and loses power at the configured one.
#[inline]
pub(crate) fn crash_point() {
    #[cfg(feature = "power-loss-test")]
    enabled::crash_point();
}

/// After a file's flush: records the bytes it made durable.
#[inline]
pub(crate) fn file_synced(_file: &std::fs::File, _path: &std::path::Path) {
    #[cfg(feature = "power-loss-test")]
    enabled::file_synced(_file, _path);
}

/// After a directory's flush: records the entries it made durable.
#[inline]
pub(crate) fn dir_synced(_dir: &std::path::Path) {
    #[cfg(feature = "power-loss-test")]
    enabled::dir_synced(_dir);
}
