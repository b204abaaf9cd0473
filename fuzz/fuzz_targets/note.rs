//! Signed notes and checkpoints (C2SP): the strict parser, verification against a fixed
//! key, and the checkpoint body parser, whose accepted texts must print back unchanged.
#![no_main]
use akte_core::keys::SigningKeyPair;
use akte_core::note::{Checkpoint, SignedNote};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(note) = SignedNote::parse(data) {
        let _ = note.validate();
        if let Ok(key) = SigningKeyPair::from_seed("akte.local/fuzz", &[7; 32]) {
            let _ = note.verify(&[key.verifier()]);
        }
        let again = note.to_bytes();
        assert!(
            SignedNote::parse(&again).is_ok(),
            "a parsed note prints as a note"
        );
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(c) = Checkpoint::parse_body(text) {
            assert_eq!(c.to_body(), text, "parse_body is strict");
        }
    }
});
