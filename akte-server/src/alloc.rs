//! The C allocator's share of the daemon's memory.
//!
//! glibc's malloc gives threads that allocate at the same time arenas of their own (up to
//! eight per core) and hands freed memory back to the system only from the top of each
//! heap. After a burst of concurrent calls (64 clients uploading: tonic's message buffers,
//! upload chunks, zstd contexts of the blocking threads) the process therefore kept most of
//! what the burst needed, long after the threads that used it had exited. So akted caps the
//! arenas at start ([`limit_arenas`], unless `MALLOC_ARENA_MAX` is set) and, once no call
//! has been in flight for a few seconds, asks malloc to return its free pages ([`trim`]).
//! Elsewhere than glibc both are no-ops.

/// Arenas akted allows glibc (its default would be 8 per core).
pub const ARENAS: i32 = 4;

/// Caps glibc's malloc arenas at [`ARENAS`], unless the operator set `MALLOC_ARENA_MAX`.
/// Call it first thing in `main`, before any thread is started.
pub fn limit_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tuning parameter of the allocator; it is called before
    // other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}

/// Returns free memory of every malloc arena to the system. Takes a few milliseconds on a
/// large heap: call it on a blocking thread, when idle.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes the arenas' own locks; it is safe at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
