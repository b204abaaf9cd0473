//! Committed index values this instance has read or written, and when readers may trust
//! them without asking the database again.
//!
//! # What the cache holds
//! The values (and small ranges, whole) of the committed index *as of one journal end*,
//! [`CacheInner::at`]: the newest end this instance has seen for the tenant. That end
//! only moves forward; when it moves, everything cached is dropped, except when this
//! instance's own commit moved it (then the commit's changes are applied to the cache).
//!
//! Values come in three ways, each of which knows the end it belongs to:
//! - the instance's own commits ([`ReadCache::committed`]);
//! - reads from the database: every read statement also reads the tenant's head row
//!   (`next_seq`, `tree_len`) in the same snapshot, so a value is known to be the state
//!   at exactly that end. It is kept only if that end is the cache's end, the index was
//!   current there (`tree_len = next_seq`: not while a replay's changes are unstored), and
//!   the cache was not cleared since the read started ([`ReadCache::ticket`]). This is
//!   what makes a read racing with this instance's own commit safe: a value read at the
//!   end before a commit is refused once the commit moved the cache past it.
//! - taking the head row's lock ([`ReadCache::revalidate`]): the lock's read of the end
//!   keeps the cache only if the end is where the cache stands.
//!
//! # Who may use it
//! - A reader holding the tenant's append session: nobody else commits while this
//!   instance holds the head row, so the cache is the committed state.
//! - A reader in a [`ReadScope`] that has checked the cache for this tenant: the scope's
//!   first read of the tenant went to the database, and the end it read there moved the
//!   cache forward if the cache was behind. The cache is then at least as new as the
//!   committed state when the scope opened, which is the scope's promise: a write
//!   acknowledged by any instance before the request started is seen.
//! - Anyone else reads the database (and fills the cache for those above).

use std::cell::RefCell;
use std::collections::HashMap;
use std::num::NonZeroU64;
use std::ops::{Bound, RangeBounds as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use akte_core::backend::{ReadScope, Value};

use crate::journal::lock;
use crate::overlay::Changes;

/// The bounds of a range read.
pub(crate) type RangeBounds = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// The stored keys and values of a range, in key order.
pub(crate) type StoredRange = Vec<(Vec<u8>, Vec<u8>)>;

/// Ranges kept at most (then the range cache starts afresh).
const RANGES_MAX: usize = 256;

/// Values kept at most (then the cache starts afresh).
pub(crate) const CACHE_MAX: usize = 50_000;

/// Checked (scope, cache) pairs a thread remembers before it forgets those of scopes that
/// have ended.
const CHECKED_MAX: usize = 16;

/// Caches get ids unique for the process's life, so that a thread's note that it checked
/// one cache in a scope never applies to another (a tenant opened again).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The caches this thread has checked, by read scope.
    static CHECKED: RefCell<Vec<(NonZeroU64, u64)>> = const { RefCell::new(Vec::new()) };
}

/// The journal's end as a read statement saw it, in the same snapshot as what it read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seen {
    /// The head row's `next_seq`: the committed journal's end.
    pub next_seq: u64,
    /// The head row's `tree_len`: how many entries the stored index holds.
    pub tree_len: u64,
}

impl Seen {
    /// Whether the stored index was the index at the journal's end (it is, except while a
    /// replay's changes are not stored yet).
    fn current(&self) -> bool {
        self.next_seq == self.tree_len
    }
}

/// What a reader has to know before it reads the database: the cache's generation, which
/// changes whenever the cache forgets what it holds without its end moving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket(u64);

/// See the module documentation.
pub(crate) struct ReadCache {
    id: u64,
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    /// The newest journal end seen; the cached values are the committed index there.
    at: u64,
    /// Bumped by [`ReadCache::clear`].
    generation: u64,
    values: HashMap<Vec<u8>, Option<Value>>,
    /// Small ranges read whole (less than a page), by their bounds: the stored keys and
    /// values in them. A commit drops every range that holds a key it changed.
    ranges: HashMap<RangeBounds, StoredRange>,
}

impl CacheInner {
    fn drop_all(&mut self) {
        self.values.clear();
        self.ranges.clear();
    }

    /// Moves to `seen`'s end if that is newer; whether values read at `seen` may be kept.
    fn observe(&mut self, seen: Seen) -> bool {
        if seen.next_seq > self.at {
            self.drop_all();
            self.at = seen.next_seq;
        }
        seen.current() && seen.next_seq == self.at
    }
}

impl ReadCache {
    pub(crate) fn new() -> ReadCache {
        ReadCache {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            inner: Mutex::new(CacheInner::default()),
        }
    }

    /// Whether a reader may use the cache: it holds the append session (`in_session`), or
    /// its read scope has checked this cache.
    pub(crate) fn trusted(&self, in_session: bool) -> bool {
        in_session || self.checked_in_scope()
    }

    fn checked_in_scope(&self) -> bool {
        let Some(scope) = ReadScope::current() else {
            return false;
        };
        CHECKED.with(|c| c.borrow().contains(&(scope, self.id)))
    }

    /// Notes that this thread's read scope, if any, has read the end `seen` from the
    /// database (which moved the cache at least that far): the scope may use the cache
    /// from now on, unless the stored index was behind the journal there.
    fn note_checked(&self, seen: Seen) {
        let Some(scope) = ReadScope::current() else {
            return;
        };
        if !seen.current() {
            return;
        }
        CHECKED.with(|c| {
            let mut c = c.borrow_mut();
            if c.contains(&(scope, self.id)) {
                return;
            }
            if c.len() >= CHECKED_MAX {
                c.retain(|(s, _)| *s == scope);
            }
            c.push((scope, self.id));
        });
    }

    /// The cache's generation, taken before a database read whose result is to be kept.
    pub(crate) fn ticket(&self) -> Ticket {
        Ticket(lock(&self.inner).generation)
    }

    /// Taking the head row's lock read the end `at`: keeps the cache if it stands there,
    /// else empties it and moves it there.
    pub(crate) fn revalidate(&self, at: u64) {
        let mut c = lock(&self.inner);
        if c.at != at {
            c.drop_all();
            c.at = at;
        }
    }

    /// This instance committed `changes`, moving the journal from `from` to `to`.
    pub(crate) fn committed(&self, from: u64, to: u64, changes: &Changes) {
        let mut c = lock(&self.inner);
        // At `to` already: a read after the commit saw its end first, and what it kept
        // is the state the changes lead to.
        if c.at != from && c.at != to {
            c.drop_all();
            c.at = c.at.max(to);
            return;
        }
        c.ranges.retain(|bounds, _| {
            !changes
                .upsert_keys
                .iter()
                .chain(&changes.delete_keys)
                .any(|k| bounds.contains(k))
        });
        // Everything committed is kept, not only what was read before: the next write
        // usually reads what the last one wrote (a version of the document just created),
        // and would otherwise fetch it from the database under the lock.
        if c.values.len() + changes.upsert_keys.len() + changes.delete_keys.len() > CACHE_MAX {
            c.values.clear();
        }
        for (k, v) in changes.upsert_keys.iter().zip(&changes.upsert_values) {
            c.values.insert(k.clone(), Some(Value::from(&v[..])));
        }
        for k in &changes.delete_keys {
            c.values.insert(k.clone(), None);
        }
        c.at = to;
    }

    /// Forgets everything (a failed commit: the state is unknown; or the index was changed
    /// outside a commit). Reads under way when it is called keep nothing.
    pub(crate) fn clear(&self) {
        let mut c = lock(&self.inner);
        c.drop_all();
        c.generation += 1;
    }

    /// A cached value (`Some(None)`: the key is known to be absent).
    pub(crate) fn get(&self, key: &[u8]) -> Option<Option<Value>> {
        lock(&self.inner).values.get(key).cloned()
    }

    /// A cached small range (its stored part) and the journal end it is the state of.
    pub(crate) fn get_range(&self, bounds: &RangeBounds) -> Option<(u64, StoredRange)> {
        let c = lock(&self.inner);
        c.ranges.get(bounds).map(|rows| (c.at, rows.clone()))
    }

    /// A value (or its absence) read from the database at `seen`, by a read that took
    /// `ticket` before it started: kept if it is the state the cache holds.
    pub(crate) fn fill(&self, key: &[u8], value: Option<Value>, ticket: Ticket, seen: Seen) {
        {
            let mut c = lock(&self.inner);
            if c.observe(seen) && c.generation == ticket.0 {
                if c.values.len() >= CACHE_MAX {
                    c.values.clear();
                }
                c.values.insert(key.to_vec(), value);
            }
        }
        self.note_checked(seen);
    }

    /// A small range read whole from the database at `seen` (see [`ReadCache::fill`]).
    pub(crate) fn fill_range(
        &self,
        bounds: RangeBounds,
        rows: &StoredRange,
        ticket: Ticket,
        seen: Seen,
    ) {
        {
            let mut c = lock(&self.inner);
            if c.observe(seen) && c.generation == ticket.0 {
                if c.ranges.len() >= RANGES_MAX {
                    c.ranges.clear();
                }
                c.ranges.insert(bounds, rows.clone());
            }
        }
        self.note_checked(seen);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(end: u64) -> Seen {
        Seen {
            next_seq: end,
            tree_len: end,
        }
    }

    fn v(b: &[u8]) -> Option<Value> {
        Some(Value::from(b))
    }

    fn commit(key: &[u8], value: &[u8]) -> Changes {
        Changes {
            upsert_keys: vec![key.to_vec()],
            upsert_values: vec![value.to_vec()],
            ..Changes::default()
        }
    }

    #[test]
    fn a_read_from_before_an_own_commit_is_not_kept_after_it() {
        let cache = ReadCache::new();
        cache.revalidate(5);
        // A reader outside the session reads "k" at end 5 ...
        let ticket = cache.ticket();
        let read_at = seen(5);
        // ... while this instance commits a new value of "k" (5 -> 6) ...
        cache.committed(5, 6, &commit(b"k", b"new"));
        // ... and only then offers what it read.
        cache.fill(b"k", v(b"old"), ticket, read_at);
        assert_eq!(cache.get(b"k"), Some(v(b"new")));
        // The same for a range that holds the key.
        let bounds: RangeBounds = (
            Bound::Included(b"a".to_vec()),
            Bound::Excluded(b"z".to_vec()),
        );
        cache.fill_range(
            bounds.clone(),
            &vec![(b"k".to_vec(), b"old".to_vec())],
            ticket,
            read_at,
        );
        assert_eq!(cache.get_range(&bounds), None);
    }

    #[test]
    fn a_read_after_an_own_commit_reached_the_database_is_kept() {
        let cache = ReadCache::new();
        cache.revalidate(5);
        let ticket = cache.ticket();
        // The read saw the commit's end before the commit updated the cache.
        cache.fill(b"other", v(b"x"), ticket, seen(6));
        cache.committed(5, 6, &commit(b"k", b"new"));
        assert_eq!(cache.get(b"other"), Some(v(b"x")));
        assert_eq!(cache.get(b"k"), Some(v(b"new")));
    }

    #[test]
    fn a_newer_end_drops_what_was_cached_and_an_older_one_changes_nothing() {
        let cache = ReadCache::new();
        cache.revalidate(5);
        cache.fill(b"k", v(b"at 5"), cache.ticket(), seen(5));
        cache.fill(b"absent", None, cache.ticket(), seen(5));
        assert_eq!(cache.get(b"absent"), Some(None), "absence is cached too");
        // Another instance appended: a read at 7 moves the cache and drops the rest.
        cache.fill(b"j", v(b"at 7"), cache.ticket(), seen(7));
        assert_eq!(cache.get(b"k"), None);
        assert_eq!(cache.get(b"j"), Some(v(b"at 7")));
        // A slow read from before moves nothing back and keeps nothing.
        cache.fill(b"k", v(b"at 5"), cache.ticket(), seen(5));
        assert_eq!(cache.get(b"k"), None);
        assert_eq!(cache.get(b"j"), Some(v(b"at 7")));
        // An own commit from an end the cache never stood at keeps nothing either.
        cache.committed(3, 4, &commit(b"q", b"x"));
        assert_eq!(cache.get(b"j"), None);
        assert_eq!(cache.get(b"q"), None);
    }

    #[test]
    fn a_clear_refuses_reads_under_way() {
        let cache = ReadCache::new();
        cache.revalidate(5);
        let ticket = cache.ticket();
        cache.clear();
        cache.fill(b"k", v(b"before the clear"), ticket, seen(5));
        assert_eq!(cache.get(b"k"), None);
        cache.fill(b"k", v(b"after"), cache.ticket(), seen(5));
        assert_eq!(cache.get(b"k"), Some(v(b"after")));
    }

    #[test]
    fn nothing_is_kept_while_the_stored_index_is_behind_the_journal() {
        let cache = ReadCache::new();
        let lagging = Seen {
            next_seq: 9,
            tree_len: 4,
        };
        let _scope = ReadScope::open();
        cache.fill(b"k", v(b"x"), cache.ticket(), lagging);
        assert_eq!(cache.get(b"k"), None);
        assert!(!cache.trusted(false), "a lagging index checks no scope");
        cache.fill(b"k", v(b"x"), cache.ticket(), seen(9));
        assert!(cache.trusted(false));
    }

    #[test]
    fn a_scope_trusts_the_cache_only_after_its_first_read() {
        let cache = ReadCache::new();
        assert!(!cache.trusted(false), "no scope");
        assert!(cache.trusted(true), "in the session");
        let scope = ReadScope::open();
        assert!(!cache.trusted(false));
        cache.fill(b"k", None, cache.ticket(), seen(0));
        assert!(cache.trusted(false));
        let other = ReadCache::new();
        assert!(!other.trusted(false), "checked per cache");
        drop(scope);
        assert!(!cache.trusted(false), "per scope");
        let _next = ReadScope::open();
        assert!(!cache.trusted(false));
    }
}
