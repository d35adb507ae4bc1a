//! The MCP endpoint's request guard: arbitrary header lines and query string.
#![no_main]
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;

fn guard() -> &'static broker::mcp::guard::Guard {
    static GUARD: OnceLock<broker::mcp::guard::Guard> = OnceLock::new();
    GUARD.get_or_init(|| {
        let db = Arc::new(broker::db::Db::open_in_memory().expect("db"));
        let clients = broker::clients::Clients::new(db.clone());
        let _ = clients.add("agent");
        let authz = broker::authz::Authz::new(db, broker::events::Events::default());
        broker::mcp::guard::Guard::new(clients, authz, 8937, Arc::default())
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (head, query) = text.split_once('?').unwrap_or((&text, ""));
    let mut headers = http::HeaderMap::new();
    for line in head.lines() {
        if let Some((name, value)) = line.split_once(':')
            && let (Ok(n), Ok(v)) = (
                http::header::HeaderName::from_bytes(name.trim().as_bytes()),
                http::HeaderValue::from_str(value.trim()),
            )
        {
            headers.append(n, v);
        }
    }
    // Nothing the fuzzer builds carries a valid client token: it must never be let through.
    assert!(guard().decide(&headers, Some(query)).is_err());
});
