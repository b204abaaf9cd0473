//! The full-text indexes of every tenant of a store, kept up to date by one background
//! thread.
//!
//! Each tenant's index lives in `<root>/<tenant>/fulltext` (akted's root is the data
//! directory's `index/`, beside the tenant's redb index, or `fulltext_dir`). The thread
//! visits the tenants in turn, indexes up to [`indexer::BATCH`] new entries of each and
//! rests [`POLL`] when none had any. Indexes are opened when first needed (a search, the
//! thread), so tenants created while running are picked up.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use akte_core::backend::ReadScope;
use akte_core::records::{Records, TenantRecords};
use uuid::Uuid;

use crate::index::{Hit, Ranking, TextIndex};
use crate::{indexer, FulltextError};

/// How long the thread rests when no tenant had new entries (the journal offers no
/// notification; a look at its size is one read): at first, doubling while nothing
/// comes up to [`MAX_POLL`] (on PostgreSQL every look is a query).
pub const POLL: Duration = Duration::from_millis(100);
/// The longest rest.
pub const MAX_POLL: Duration = Duration::from_secs(1);
/// Failures of one tenant's indexing logged before going quiet (the next success says
/// so).
const LOGGED_FAILURES: u32 = 3;

/// The index directory of `tenant` under `root`.
pub fn dir_of(root: &Path, tenant: &str) -> PathBuf {
    root.join(tenant).join("fulltext")
}

struct TenantText {
    index: TextIndex,
    position: AtomicU64,
    failures: Mutex<u32>,
}

struct Inner {
    records: Records,
    root: PathBuf,
    tenants: Mutex<HashMap<String, Arc<TenantText>>>,
    stop: Mutex<bool>,
    wake: Condvar,
    /// Notified after every commit (waiters compare positions).
    progress: Mutex<()>,
    progressed: Condvar,
}

impl Inner {
    fn tenant(&self, id: &str) -> Result<Arc<TenantText>, FulltextError> {
        let mut map = self.tenants.lock().map_err(|_| FulltextError::Poisoned)?;
        if let Some(t) = map.get(id) {
            return Ok(t.clone());
        }
        // Opening under the map's lock: two threads must not open one index twice
        // (tantivy's writer lock would refuse the second).
        let index = TextIndex::open(&dir_of(&self.root, id))?;
        let position = index.position()?;
        let t = Arc::new(TenantText {
            index,
            position: AtomicU64::new(position),
            failures: Mutex::new(0),
        });
        map.insert(id.to_owned(), t.clone());
        Ok(t)
    }

    fn stopped(&self) -> bool {
        self.stop.lock().map(|s| *s).unwrap_or(true)
    }

    /// One round over all tenants; whether any had new entries.
    fn round(&self) -> bool {
        let mut busy = false;
        for id in self.records.tenant_ids() {
            if self.stopped() {
                return false;
            }
            let (Ok(records), Ok(t)) = (self.records.tenant(&id), self.tenant(&id)) else {
                continue;
            };
            let from = t.position.load(Ordering::Acquire);
            // One batch's reads in one read scope: they read the records as of the
            // journal's end `step` reads first, or newer.
            let stepped = ReadScope::run(|| indexer::step(&records, &t.index, from));
            match stepped {
                Ok(to) => {
                    if let Ok(mut f) = t.failures.lock() {
                        if *f > 0 {
                            tracing::info!(tenant = %id, position = to, "full-text indexing goes on");
                        }
                        *f = 0;
                    }
                    if to > from {
                        t.position.store(to, Ordering::Release);
                        busy = true;
                        let _g = self.progress.lock();
                        self.progressed.notify_all();
                    }
                }
                Err(e) => {
                    if let Ok(mut f) = t.failures.lock() {
                        *f += 1;
                        if *f <= LOGGED_FAILURES {
                            tracing::warn!(tenant = %id, position = from, error = %e, "full-text indexing failed; it is retried");
                        }
                    }
                }
            }
        }
        busy
    }
}

/// The full-text indexes of a store, with their background indexer.
pub struct Fulltext {
    inner: Arc<Inner>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Fulltext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fulltext")
            .field("root", &self.inner.root)
            .finish()
    }
}

impl Fulltext {
    /// Starts following every tenant of `records`, with indexes under `root`.
    pub fn start(records: Records, root: PathBuf) -> Result<Fulltext, FulltextError> {
        std::fs::create_dir_all(&root).map_err(|e| FulltextError::io(&root, e))?;
        let inner = Arc::new(Inner {
            records,
            root,
            tenants: Mutex::new(HashMap::new()),
            stop: Mutex::new(false),
            wake: Condvar::new(),
            progress: Mutex::new(()),
            progressed: Condvar::new(),
        });
        let worker = inner.clone();
        let thread = std::thread::Builder::new()
            .name("akte-fulltext".into())
            .spawn(move || {
                let mut rest = POLL;
                loop {
                    if worker.stopped() {
                        return;
                    }
                    if worker.round() {
                        rest = POLL;
                        continue;
                    }
                    let Ok(g) = worker.stop.lock() else { return };
                    if *g {
                        return;
                    }
                    let _ = worker.wake.wait_timeout(g, rest);
                    rest = (rest * 2).min(MAX_POLL);
                }
            })
            .map_err(|e| FulltextError::io(Path::new("akte-fulltext thread"), e))?;
        Ok(Fulltext {
            inner,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Stops the background thread (after the batch it is on).
    pub fn stop(&self) {
        if let Ok(mut s) = self.inner.stop.lock() {
            *s = true;
        }
        self.inner.wake.notify_all();
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    /// The journal position `tenant`'s index covers.
    pub fn position(&self, tenant: &str) -> Result<u64, FulltextError> {
        Ok(self.inner.tenant(tenant)?.position.load(Ordering::Acquire))
    }

    /// Waits until `tenant`'s index covers `position`, at most `timeout`; whether it does.
    pub fn wait_for(&self, tenant: &str, position: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let Ok(t) = self.inner.tenant(tenant) else {
            return false;
        };
        // Someone waits: the thread looks now rather than after its rest.
        self.inner.wake.notify_all();
        let Ok(mut g) = self.inner.progress.lock() else {
            return false;
        };
        loop {
            if t.position.load(Ordering::Acquire) >= position {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            g = match self.inner.progressed.wait_timeout(g, deadline - now) {
                Ok((g, _)) => g,
                Err(_) => return false,
            };
        }
    }

    /// The best matches of `text` in `tenant`, in `order` (no access filter: the caller
    /// filters through its bound records).
    pub fn search(
        &self,
        tenant: &str,
        text: &str,
        order: Ranking,
    ) -> Result<Vec<Hit>, FulltextError> {
        self.inner.tenant(tenant)?.index.search(text, order)
    }

    /// Highlighted snippets per document of `ids` for `text`.
    pub fn snippets(
        &self,
        tenant: &str,
        text: &str,
        ids: &[Uuid],
    ) -> Result<Vec<Vec<String>>, FulltextError> {
        self.inner.tenant(tenant)?.index.snippets(text, ids)
    }
}

impl Drop for Fulltext {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Builds `tenant`'s index anew from its journal, in this thread (`akte rebuild-index`,
/// with akted stopped); returns the documents indexed.
pub fn rebuild(records: &TenantRecords, root: &Path) -> Result<u64, FulltextError> {
    let dir = dir_of(root, records.tenant().id());
    crate::index::remove(&dir)?;
    let index = TextIndex::open(&dir)?;
    let mut pos = 0;
    loop {
        let next = indexer::step(records, &index, pos)?;
        if next == pos {
            return Ok(index.len());
        }
        pos = next;
    }
}
