//! Keys in the note key format: verifier keys (as received from admins, witnesses and
//! archives) and private key strings (as read from key files).
#![no_main]
use akte_core::keys::{SigningKeyPair, VerifierKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(k) = VerifierKey::parse(s) {
        let _ = k.fingerprint();
        let _ = k.verify(b"message", &[0; 64]);
        let printed = k.to_string();
        assert!(
            VerifierKey::parse(&printed).is_ok(),
            "a parsed key prints as a key"
        );
    }
    if let Ok(k) = SigningKeyPair::from_private_string(s) {
        let _ = k.verifier().to_string();
    }
});
