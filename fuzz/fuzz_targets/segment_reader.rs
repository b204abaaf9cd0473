//! Segment files: the streaming reader over a whole file (header, framing, checksums,
//! bodies), as opening a journal reads a segment found on disk.
#![no_main]
use std::io::Write;

use akte_core::embedded::segment::SegmentReader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut f) = tempfile::NamedTempFile::new() else {
        return;
    };
    if f.write_all(data).is_err() {
        return;
    }
    let Ok(mut r) = SegmentReader::open(f.path()) else {
        return;
    };
    // Every record consumes bytes, so the loop ends; the bound is a second guard.
    for _ in 0..=data.len() {
        match r.next_record() {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
});
