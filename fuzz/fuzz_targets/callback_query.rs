//! The OAuth callback's query string (any bytes a browser or attacker can send).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let callbacks = broker::callback::Callbacks::default();
    let _waiter = callbacks.register("known-state", "https://z.keycard.cloud");
    let query = String::from_utf8_lossy(data);
    let (status, _, _) = callbacks.resolve(&query);
    assert!(status.is_success() || status.is_client_error());
});
