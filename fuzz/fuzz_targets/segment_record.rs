//! Segment records in memory: the record body decoder and the search for a valid record
//! after damage (recovery runs it over whatever follows a torn spot).
#![no_main]
use akte_core::embedded::segment::{contains_valid_record, decode_body};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_body(data);
    if let Some(at) = contains_valid_record(data) {
        assert!(at < data.len());
    }
});
