//! Page tokens come back from clients: the decoder must refuse what it did not issue for
//! the listing, and return exactly what it encoded.
#![no_main]
use akte_core::records::schema::{decode_token, encode_token};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (listing, rest) = data.split_at(data.len().min(8));
    if let Ok(token) = std::str::from_utf8(rest) {
        let _ = decode_token(listing, token);
    }
    let t = encode_token(listing, rest);
    assert_eq!(decode_token(listing, &t).as_deref(), Some(rest));
});
