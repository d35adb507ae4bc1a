//! The settings file, as a user (or a broken editor) may leave it.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = broker::config::parse(text);
        let _ = broker::config::normalize_zone(text);
    }
});
