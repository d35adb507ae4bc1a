//! Turns an upstream answer into what the agent reads: the token scrubbed in every encoding,
//! safe headers only, JSON parsed when whole, the body cut at the limit with no partial copy
//! of the token left at the cut, and the whole tool result small enough for one event of the
//! stock MCP clients.

use std::collections::BTreeMap;

use secrecy::SecretString;
use serde_json::Value;

use super::scrub::Scrubber;
use super::{ApiResponse, Raw};

/// Bodies returned to the agent are cut past this many bytes (`truncated: true`).
pub const RESPONSE_LIMIT: usize = 512 * 1024;
/// A tool result carries the response twice (structured content and its text copy, each
/// JSON-escaped once more). Stock clients drop a session whose SSE event passes 1 MiB (Python
/// `mcp` 2.3's `max_sse_event_size`); this budget leaves room for the JSON-RPC envelope.
pub const EVENT_BUDGET: usize = 1024 * 1024 - 64 * 1024;

/// Response headers worth showing an agent; everything else (Set-Cookie …) stays behind.
const SAFE_RESPONSE_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "cache-control",
    "etag",
    "last-modified",
    "link",
    "location",
    "retry-after",
    "date",
    "www-authenticate",
    "x-request-id",
    "x-github-request-id",
];

/// The two limits that bound what the agent receives.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub body: usize,
    pub event: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            body: RESPONSE_LIMIT,
            event: EVENT_BUDGET,
        }
    }
}

/// Shapes the raw answer for the agent with the default limits.
pub fn shape(raw: Raw, token: &SecretString) -> ApiResponse {
    shape_with(raw, token, Limits::default())
}

/// Shapes the raw answer for the agent within `limits`.
pub fn shape_with(raw: Raw, token: &SecretString, limits: Limits) -> ApiResponse {
    let scrubber = Scrubber::new(token);
    let mut text = String::from_utf8_lossy(&raw.body).into_owned();
    let mut truncated = !raw.complete;
    if truncated {
        // The read stopped mid-stream: a copy of the token may have been cut in half there.
        scrubber.trim_partial(&mut text);
    }
    let mut text = scrubber.scrub(&text);
    if text.len() > limits.body {
        cut_at(&mut text, limits.body);
        scrubber.trim_partial(&mut text);
        truncated = true;
    }
    let mut headers = BTreeMap::new();
    for (name, value) in raw.headers.iter() {
        let n = name.as_str();
        let safe = SAFE_RESPONSE_HEADERS.contains(&n)
            || n.starts_with("x-ratelimit-")
            || n.starts_with("ratelimit");
        if !safe {
            continue;
        }
        let v = scrubber.scrub(&String::from_utf8_lossy(value.as_bytes()));
        headers
            .entry(n.to_string())
            .and_modify(|existing: &mut String| {
                existing.push_str(", ");
                existing.push_str(&v);
            })
            .or_insert(v);
    }
    let is_json = headers
        .get("content-type")
        .is_some_and(|t| t.contains("json"));
    // Upper bound of the tool result's size without serialising it: every byte of body and
    // headers costs at most 6 bytes escaped in the structured copy and 7 in the text copy.
    let headers_len: usize = headers.iter().map(|(k, v)| k.len() + v.len() + 6).sum();
    let cheap_bound = 13 * (text.len() + headers_len) + 1024;
    let body = match serde_json::from_str::<Value>(&text) {
        // Parsing decodes escapes: scrub what the agent will read, once more after decoding.
        Ok(value) if is_json && !truncated => scrub_value(value, &scrubber),
        _ => Value::String(text),
    };
    let mut response = ApiResponse {
        status: raw.status,
        headers,
        body,
        truncated,
    };
    if cheap_bound > limits.event {
        fit_event(&mut response, limits.event);
    }
    response
}

/// Scrubs every string and key of a parsed JSON value.
fn scrub_value(value: Value, scrubber: &Scrubber) -> Value {
    match value {
        Value::String(s) => Value::String(scrubber.scrub(&s)),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| scrub_value(v, scrubber))
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (scrubber.scrub(&k), scrub_value(v, scrubber)))
                .collect(),
        ),
        other => other,
    }
}

/// Bytes the tool result needs for this response: its JSON (structured content) plus that JSON
/// as an escaped string (the text copy).
pub fn event_size(response: &ApiResponse) -> usize {
    let json = serde_json::to_string(response).unwrap_or_default();
    json.len() + escaped_len(&json) + 256
}

fn escaped_len(s: &str) -> usize {
    s.chars()
        .map(|c| match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        })
        .sum::<usize>()
        + 2
}

/// Shrinks the body until the whole tool result fits `budget` (a parsed JSON body that does
/// not fit becomes its text, cut). Cutting already-scrubbed text cannot expose the token.
fn fit_event(response: &mut ApiResponse, budget: usize) {
    if event_size(response) <= budget {
        return;
    }
    let text = match std::mem::take(&mut response.body) {
        Value::String(s) => s,
        other => other.to_string(),
    };
    response.truncated = true;
    // Largest prefix (in bytes, on a char boundary) that fits.
    let (mut lo, mut hi) = (0usize, text.len());
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        let mut candidate = text.clone();
        cut_at(&mut candidate, mid);
        response.body = Value::String(candidate);
        if event_size(response) <= budget {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let mut body = text;
    cut_at(&mut body, lo);
    response.body = Value::String(body);
}

fn cut_at(text: &mut String, limit: usize) {
    if text.len() <= limit {
        return;
    }
    let mut cut = limit;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
}

#[cfg(test)]
#[path = "shape_tests.rs"]
mod tests;
