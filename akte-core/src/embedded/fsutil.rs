//! Small file-system helpers for durable, atomic writes.
//!
//! Durability on Linux needs more than `write`: the file's data must be flushed with
//! `fsync`, and a new or renamed directory entry only survives a crash once the directory
//! itself has been flushed. Every place in akte that creates or renames a file goes through
//! these helpers so that rule lives in one place.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub use crate::backend::IoFailure;

/// Attaches an operation name and a path to an `io::Result`.
pub trait IoContext<T> {
    /// Converts the error into an [`IoFailure`] naming `op` and `path`.
    fn at(self, op: &'static str, path: &Path) -> Result<T, IoFailure>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, op: &'static str, path: &Path) -> Result<T, IoFailure> {
        self.map_err(|source| failure(op, path, source))
    }
}

/// An [`IoFailure`] of `op` on `path`.
pub fn failure(op: &'static str, path: &Path, source: io::Error) -> IoFailure {
    IoFailure::new(op, path.display().to_string(), source)
}

/// The failure a write gets from a data directory opened read-only (verification of a
/// live store or of a copy): nothing is written, whatever the caller asked for.
pub fn read_only(op: &'static str, path: &Path) -> IoFailure {
    failure(
        op,
        path,
        io::Error::new(
            io::ErrorKind::ReadOnlyFilesystem,
            "the data directory is opened read-only; nothing is written",
        ),
    )
}

/// Flushes a file's data (`fdatasync`). Every flush of a file akte makes durable goes
/// through here or [`sync_all`], so the power-loss tests see each one
/// ([`super::powerloss`]).
pub fn sync_data(file: &File, path: &Path) -> Result<(), IoFailure> {
    super::powerloss::crash_point();
    file.sync_data().at("fdatasync", path)?;
    super::powerloss::file_synced(file, path);
    Ok(())
}

/// Flushes a file's data and metadata (`fsync`); see [`sync_data`].
pub fn sync_all(file: &File, path: &Path) -> Result<(), IoFailure> {
    super::powerloss::crash_point();
    file.sync_all().at("fsync", path)?;
    super::powerloss::file_synced(file, path);
    Ok(())
}

/// Flushes a directory so that entries created, renamed or removed in it survive a crash.
pub fn fsync_dir(dir: &Path) -> Result<(), IoFailure> {
    super::powerloss::crash_point();
    let f = File::open(dir).at("open directory", dir)?;
    f.sync_all().at("fsync directory", dir)?;
    super::powerloss::dir_synced(dir);
    Ok(())
}

/// Creates `dir` (and missing parents) and flushes every directory whose entries changed,
/// so the new directories survive a crash.
pub fn create_dir_all_durable(dir: &Path) -> Result<(), IoFailure> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut cur = dir;
    while !cur.exists() {
        missing.push(cur.to_path_buf());
        match cur.parent() {
            Some(p) if !p.as_os_str().is_empty() => cur = p,
            _ => break,
        }
    }
    for d in missing.iter().rev() {
        match fs::create_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).at("create directory", d),
        }
        if let Some(parent) = d.parent().filter(|p| !p.as_os_str().is_empty()) {
            fsync_dir(parent)?;
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically and durably: a temporary file beside it is written
/// and flushed, renamed over `path`, and the directory is flushed. Readers see either the
/// old or the new content, never a mix, and after a crash the same holds.
pub fn write_file_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), IoFailure> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_owned());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    {
        let mut f = open_new_with_mode(&tmp, mode)?;
        f.write_all(bytes).at("write", &tmp)?;
        sync_all(&f, &tmp)?;
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(e).at("rename", path);
    }
    fsync_dir(&dir)
}

/// Creates a new file (replacing a stale one of the same name) with the given Unix mode.
pub fn open_new_with_mode(path: &Path, mode: u32) -> Result<File, IoFailure> {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = fs::remove_file(path);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .at("create", path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn atomic_write_replaces_content_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/c.txt");
        create_dir_all_durable(p.parent().unwrap()).unwrap();
        write_file_atomic(&p, b"one", 0o600).unwrap();
        write_file_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers: Vec<_> = fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }
}
