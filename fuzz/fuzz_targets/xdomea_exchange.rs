//! xdomea file plan and handover messages from other agencies and systems: the strict
//! readers of 0301, 0302, 0402, 0403, and of 0401 and 0503 packages as migration sources.
#![no_main]
use akte_core::xdomea::{self as read, MessageType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = read::read_package(data, MessageType::Handover);
    let _ = read::read_package(data, MessageType::Transfer);
    let _ = read::read_0402(data);
    let _ = read::read_0403(data);
    let _ = read::read_0301(data);
    let _ = read::read_0302(data);
});
