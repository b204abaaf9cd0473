//! Format and parsing tests of the evidence files.

use super::*;
use crate::digest::Digest;
use crate::entry::{Entry, Payload, PayloadKind};
use uuid::Uuid;

fn entry_with_time(micros: i64) -> Vec<u8> {
    let e = Entry {
        seq: 0,
        time: chrono::DateTime::UNIX_EPOCH,
        prev: Digest::ZERO,
        actor: "a".into(),
        kind: "k".into(),
        object: String::new(),
        payloads: vec![Payload {
            kind: PayloadKind::Content,
            role: "rendition".into(),
            size: 1,
            digest: Digest::of(b"x"),
        }],
    };
    let mut bytes = e.encode();
    bytes[9..17].copy_from_slice(&micros.to_be_bytes());
    bytes
}

/// FORMAT.md states the range of entry times decoders accept; hold the decoder to it.
#[test]
fn documented_time_range_is_the_decoders() {
    for ok in [MIN_ENTRY_TIME_MICROS, 0, MAX_ENTRY_TIME_MICROS] {
        assert!(Entry::decode(&entry_with_time(ok)).is_ok(), "{ok}");
    }
    for bad in [
        MIN_ENTRY_TIME_MICROS - 1,
        MAX_ENTRY_TIME_MICROS + 1,
        i64::MIN,
        i64::MAX,
    ] {
        assert!(Entry::decode(&entry_with_time(bad)).is_err(), "{bad}");
    }
}

fn sample() -> Evidence {
    Evidence {
        format: EVIDENCE_FORMAT.into(),
        kind: EvidenceKind::Document,
        process_id: None,
        document_id: Some(Uuid::from_u128(7)),
        checkpoint: "o\n1\nAAAA\n\n\u{2014} o AAAA\n".into(),
        verifier_key: "k".into(),
        key_fingerprint: "f".into(),
        witnesses: vec![],
        message: None,
        objects: vec![EvidenceObject {
            name: "a_ü \u{2028}\"x'.pdf".into(),
            size: 3,
            sha256: Digest::of(b"abc"),
            seq: 0,
            entry: vec![1, 2, 3],
            proof: vec![Digest::of(b"1"), Digest::of(b"2")],
        }],
    }
}

#[test]
fn canonical_form_round_trips_and_every_other_form_is_refused() {
    let json = sample().to_json();
    assert_eq!(Evidence::from_json(&json).unwrap(), sample());
    let text = String::from_utf8(json.clone()).unwrap();
    assert!(text.starts_with("{\n  \"format\": \"akte-evidence/v1\",\n  \"kind\": \"document\",\n"));
    assert!(text.contains("\"proof\": [\n        \""));
    assert!(text.ends_with("  ]\n}\n"));
    let variants = [
        text.replacen("  \"kind\"", "   \"kind\"", 1),
        text.replacen('\n', "\r\n", 1),
        text.trim_end().to_owned(),
        text.replacen(
            &Digest::of(b"abc").to_hex(),
            &Digest::of(b"abc").to_hex().to_uppercase(),
            1,
        ),
        text.replacen("\"seq\": 0", "\"seq\": -0", 1),
        text.replacen("\"seq\": 0", "\"seq\": 0.0", 1),
        text.replacen("\"size\": 3", "\"size\": 3,\n        \"size\": 3", 1),
        text.replacen("\"witnesses\": []", "\"witnesses\": [],\n  \"extra\": 1", 1),
        text.replacen(
            &Uuid::from_u128(7).hyphenated().to_string(),
            &Uuid::from_u128(7).simple().to_string(),
            1,
        ),
        text.replacen("AQID", "AQID=", 1),
        text.replacen("akte-evidence/v1", "akte-evidence/v2", 1),
        text.replacen("\"document\"", "\"transfer\"", 1),
    ];
    for (i, v) in variants.iter().enumerate() {
        assert!(
            Evidence::from_json(v.as_bytes()).is_err(),
            "variant {i} accepted:\n{v}"
        );
    }
}

#[test]
fn proof_files_round_trip_and_are_strict() {
    let proof = vec![Digest::of(b"1"), Digest::of(b"2")];
    let text = format_proof(&proof);
    assert_eq!(parse_proof(text.as_bytes()).unwrap(), proof);
    assert_eq!(parse_proof(b"").unwrap(), Vec::<Digest>::new());
    assert!(parse_proof(text.trim_end().as_bytes()).is_err());
    assert!(parse_proof(format!("{text}\n").as_bytes()).is_err());
    assert!(parse_proof(b"AAAA\n").is_err());
}

#[test]
fn garbage_never_panics() {
    let mut seed = 0x1234_5678_9abc_def0u64;
    for len in [0usize, 1, 4, 22, 100, 1000] {
        for _ in 0..20 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let mut with_magic = b"PK\x03\x04".to_vec();
            with_magic.extend_from_slice(&bytes);
            for input in [&bytes, &with_magic] {
                let r = verify_package_bytes(input, None).unwrap();
                assert!(!r.is_clean());
                let _ = Evidence::from_json(input);
                let _ = checkpoint_note_from(input);
                let _ = parse_proof(input);
            }
        }
    }
}
