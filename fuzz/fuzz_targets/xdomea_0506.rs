//! xdomea 0506 from the archive: the strict reader (and the identification of the message).
#![no_main]
use akte_core::xdomea as read;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = read::identify(data);
    let _ = read::read_0506(data);
});
