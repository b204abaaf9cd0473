//! Received xdomea messages come as ZIPs: the reader that finds the message's XML in one
//! (with a size limit), then the matching message reader.
#![no_main]
use std::io::Cursor;

use akte_core::xdomea::{self as read, read_message_zip, MessageType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for m in [
        MessageType::Appraisal,
        MessageType::ImportConfirmation,
        MessageType::OfferReceipt,
        MessageType::TransferReceipt,
    ] {
        if let Ok(xml) = read_message_zip(Cursor::new(data), m, 1 << 20) {
            assert!(xml.len() <= 1 << 20);
            let _ = read::identify(&xml);
        }
    }
});
