//! The test side of power-loss simulation (`akte_core::embedded::powerloss`): rebuilds a
//! data directory as a power loss would leave it, from what the child process recorded
//! at each flush, and records a restored directory as the new durable state.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use akte_core::embedded::powerloss::identity;

/// What a restore changed.
#[derive(Debug, Default, Clone, Copy)]
pub struct Restored {
    /// Files set back to their last flushed bytes (or emptied: never flushed).
    pub files: usize,
    /// Entries removed because their directory was not flushed after they appeared.
    pub removed: usize,
}

struct Entry {
    dir: bool,
    identity: String,
    name: String,
}

/// Directory listings by the directory's identity.
fn listings(shadow: &Path) -> HashMap<String, Vec<Entry>> {
    let mut out = HashMap::new();
    let Ok(items) = fs::read_dir(shadow.join("dirs")) else {
        return out;
    };
    for item in items.flatten() {
        if item.path().extension().is_some_and(|e| e == "tmp") {
            continue;
        }
        let Ok(text) = fs::read_to_string(item.path()) else {
            continue;
        };
        let entries = text
            .lines()
            .filter_map(|l| {
                let mut parts = l.splitn(3, ' ');
                let (kind, id, name) = (parts.next()?, parts.next()?, parts.next()?);
                Some(Entry {
                    dir: kind == "d",
                    identity: id.to_owned(),
                    name: name.to_owned(),
                })
            })
            .collect();
        out.insert(item.file_name().to_string_lossy().into_owned(), entries);
    }
    out
}

fn remove(path: &Path) {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).unwrap(),
        Ok(_) => fs::remove_file(path).unwrap(),
        Err(_) => {}
    }
}

/// Restores `dir`, whose identity when its parent was last flushed was `listed` (its
/// current one for the data directory itself).
fn restore_dir(
    dir: &Path,
    listed: &str,
    shadow: &Path,
    listings: &HashMap<String, Vec<Entry>>,
    done: &mut Restored,
) {
    let current: Vec<(String, bool)> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.file_type().is_ok_and(|t| t.is_dir()),
            )
        })
        .collect();
    let Some(listing) = listings.get(listed) else {
        // Never flushed: no entry made in it is durable. Its subdirectories exist (their
        // parent says so) but what they hold is judged by their own flushes.
        for (name, is_dir) in current {
            let path = dir.join(&name);
            if is_dir {
                let id = identity(&fs::metadata(&path).unwrap());
                restore_dir(&path, &id, shadow, listings, done);
            } else {
                remove(&path);
                done.removed += 1;
            }
        }
        return;
    };
    for (name, _) in &current {
        if !listing.iter().any(|e| &e.name == name) {
            remove(&dir.join(name));
            done.removed += 1;
        }
    }
    for e in listing {
        let path = dir.join(&e.name);
        if e.dir {
            if !path.is_dir() {
                remove(&path);
                fs::create_dir_all(&path).unwrap();
            }
            restore_dir(&path, &e.identity, shadow, listings, done);
        } else {
            let bytes = fs::read(shadow.join("files").join(&e.identity)).unwrap_or_default();
            if path.is_dir() {
                remove(&path);
            }
            fs::write(&path, bytes).unwrap();
            done.files += 1;
        }
    }
}

/// Sets `data` to what a power loss at the child's abort leaves, from the records in
/// `shadow`, then records the result as the durable state for the next run.
pub fn restore(shadow: &Path, data: &Path) -> Restored {
    let listings = listings(shadow);
    let mut done = Restored::default();
    if data.is_dir() {
        let id = identity(&fs::metadata(data).unwrap());
        restore_dir(data, &id, shadow, &listings, &mut done);
    }
    baseline(shadow, data);
    done
}

/// Records every directory and file under `data` as durable (after a restore, or for a
/// directory made before the simulation starts).
pub fn baseline(shadow: &Path, data: &Path) {
    let _ = fs::remove_dir_all(shadow);
    fs::create_dir_all(shadow.join("files")).unwrap();
    fs::create_dir_all(shadow.join("dirs")).unwrap();
    if data.is_dir() {
        record(shadow, data);
    }
}

fn record(shadow: &Path, dir: &Path) {
    let mut listing = String::new();
    for item in fs::read_dir(dir).unwrap().flatten() {
        let meta = fs::symlink_metadata(item.path()).unwrap();
        let id = identity(&meta);
        let name = item.file_name().to_string_lossy().into_owned();
        if meta.is_dir() {
            listing.push_str(&format!("d {id} {name}\n"));
            record(shadow, &item.path());
        } else {
            listing.push_str(&format!("f {id} {name}\n"));
            fs::copy(item.path(), shadow.join("files").join(&id)).unwrap();
        }
    }
    let id = identity(&fs::metadata(dir).unwrap());
    fs::write(shadow.join("dirs").join(id), listing).unwrap();
}
