//! Read scopes: the index reads of one request, which a backend may serve from a cache it
//! has checked once per scope.
//!
//! A shared backend (PostgreSQL, used by several akted instances at once) must show every
//! reader what any instance committed before the read. Checking that for each read costs
//! a database round trip per read, and one request reads the same few keys many times
//! (access checks before a write, the answer built after it). A scope lets such a backend
//! check once, at the scope's first read of a tenant, that what it cached is not older
//! than the committed state when the scope was opened, and serve later reads from that
//! cache.
//!
//! The promise inside a scope is therefore weaker than outside one, and only in time:
//! a read sees every write acknowledged (by any instance) before the scope was opened,
//! and every write of this instance, but not necessarily what another instance
//! acknowledged while the scope was open. So scopes are for requests, which take
//! milliseconds, never for long-running work that waits for others' writes.
//!
//! Scopes belong to a thread (the blocking worker that runs a request) and nest: an inner
//! scope is checked afresh and the outer one goes on when it ends. Backends without such a
//! cache (the embedded and in-memory ones, whose readers see every write at once anyway)
//! ignore scopes; nothing about them changes what they return.

use std::cell::Cell;
use std::marker::PhantomData;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};

thread_local! {
    /// The scope open on this thread (0: none).
    static CURRENT: Cell<u64> = const { Cell::new(0) };
}

/// Scope ids are unique for the life of the process, so a backend's note that it checked
/// a tenant in one scope never carries over to another.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// An open read scope on this thread; it ends when dropped (see the module documentation).
#[must_use = "a scope ends when dropped"]
pub struct ReadScope {
    /// The scope this one is nested in (0: none), open again when this one ends.
    outer: u64,
    /// A scope belongs to the thread that opened it.
    _thread: PhantomData<*const ()>,
}

impl ReadScope {
    /// Opens a scope on this thread.
    pub fn open() -> ReadScope {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let outer = CURRENT.with(|c| c.replace(id));
        ReadScope {
            outer,
            _thread: PhantomData,
        }
    }

    /// The scope open on this thread, if any (for backends).
    pub fn current() -> Option<NonZeroU64> {
        NonZeroU64::new(CURRENT.with(Cell::get))
    }

    /// Runs `f` inside a scope of its own.
    pub fn run<T>(f: impl FnOnce() -> T) -> T {
        let _scope = ReadScope::open();
        f()
    }
}

impl Drop for ReadScope {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.outer));
    }
}

impl std::fmt::Debug for ReadScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadScope")
            .field("id", &ReadScope::current())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_nest_and_end_with_their_guard() {
        assert_eq!(ReadScope::current(), None);
        let outer = ReadScope::open();
        let a = ReadScope::current();
        assert!(a.is_some());
        {
            let _inner = ReadScope::open();
            let b = ReadScope::current();
            assert!(b.is_some());
            assert_ne!(a, b, "an inner scope is checked afresh");
        }
        assert_eq!(ReadScope::current(), a);
        drop(outer);
        assert_eq!(ReadScope::current(), None);
        assert_ne!(ReadScope::run(ReadScope::current), a);
        assert_eq!(ReadScope::current(), None);
    }

    #[test]
    fn scopes_belong_to_their_thread() {
        let _s = ReadScope::open();
        let other = std::thread::spawn(ReadScope::current).join().ok().flatten();
        assert_eq!(other, None);
    }
}
