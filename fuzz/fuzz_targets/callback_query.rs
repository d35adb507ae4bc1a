//! The OAuth callback's query string (any bytes a browser or attacker can send).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let callbacks = broker::callback::Callbacks::default();
    // Both zones: one that promises `iss` on every redirect (RFC 9207) and one that does not.
    let require_iss = data.first().is_some_and(|b| b & 1 == 1);
    let _waiter = callbacks.register("known-state", "https://z.keycard.cloud", require_iss);
    let query = String::from_utf8_lossy(data);
    let (status, _, _) = callbacks.resolve(&query);
    assert!(status.is_success() || status.is_client_error());
});
