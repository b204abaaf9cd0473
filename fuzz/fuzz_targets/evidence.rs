//! The evidence verifier, as an archive runs it on a package it received: the ZIP with
//! its evidence, proofs and checkpoint notes, plus the evidence JSON and proof parsers.
#![no_main]
use akte_core::evidence::{checkpoint_note_from, parse_proof, verify_package_bytes, Evidence};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = verify_package_bytes(data, None) {
        let _ = report.is_clean();
        let _ = report.verdict();
    }
    let _ = Evidence::from_json(data);
    let _ = parse_proof(data);
    let _ = checkpoint_note_from(data);
});
