//! Everything a zone (or something pretending to be one) can send back.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = broker::zone::parse_metadata(data);
    let _ = broker::zone::parse_token_response(data);
    let _ = broker::zone::rejection(data, 400);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = broker::zone::decode_id_claims(text);
        let _ = broker::zone::split_scopes(text);
    }
});
