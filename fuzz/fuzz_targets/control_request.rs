//! Control-socket lines and the stdio bridge's SSE parsing.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<broker::api::Request>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = broker::mcp::bridge::sse_data(text);
    }
});
