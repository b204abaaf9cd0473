//! Journal entries: the strict decoder. Whatever it accepts must be the canonical encoding
//! of what it returns (the leaf hash covers these bytes).
#![no_main]
use akte_core::entry::Entry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = Entry::decode(data) {
        assert_eq!(e.encode(), data, "an accepted entry is canonical");
    }
});
