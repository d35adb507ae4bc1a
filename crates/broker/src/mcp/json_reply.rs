//! Single answers as `application/json` rather than a one-event SSE stream.
//!
//! rmcp 3.11 answers every request of a 2025-11-25 session with `text/event-stream` (its
//! `json_response` option covers only stateless requests). For a `call_api` that is a priming
//! event, one message and the end of the stream: a chunked body in several writes, a
//! keep-alive timer and the SSE framing, per call. Streamable HTTP lets the server answer a
//! POST with either, and every client must accept both; so when the stream turns out to hold
//! nothing but the JSON-RPC response (after the priming event), this layer sends that response
//! as `application/json`. Anything else before the response — a progress notification, a
//! server-to-client request such as an elicitation, a keep-alive comment on a long wait —
//! and the stream is passed on from its first byte, unchanged. The fix belongs in rmcp
//! (`json_response` for session requests too); this is the same rule, from outside.

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use futures_util::StreamExt;
use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use http::{HeaderValue, Method};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde::de::IgnoredAny;

const EVENT_STREAM: &str = "text/event-stream";
const JSON: &str = "application/json";

/// The axum middleware (on the `/mcp` route, inside the guard).
pub async fn single_answers(request: Request, next: Next) -> Response {
    let eligible = request.method() == Method::POST && accepts_json(request.headers());
    let response = next.run(request).await;
    if !eligible || !is_event_stream(&response) {
        return response;
    }
    let (mut parts, mut body) = response.into_parts();
    let mut buffered: Vec<u8> = Vec::new();
    let mut scanned = 0;
    let mut answer: Option<(usize, usize)> = None;
    let mut passthrough = false;
    'read: while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map(|f| f.into_data()) else {
            passthrough = true;
            break;
        };
        let Ok(data) = data else {
            passthrough = true;
            break;
        };
        buffered.extend_from_slice(&data);
        while let Some(end) = event_end(&buffered[scanned..]) {
            let event = scanned..scanned + end.0;
            scanned += end.1;
            match classify(&buffered[event.clone()]) {
                Event::Priming => {}
                Event::Response(range) if answer.is_none() => {
                    answer = Some((event.start + range.0, event.start + range.1));
                }
                _ => {
                    passthrough = true;
                    break 'read;
                }
            }
        }
    }
    match answer {
        Some((start, end)) if !passthrough && scanned == buffered.len() => {
            buffered.truncate(end);
            buffered.drain(..start);
            parts
                .headers
                .insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
            parts.headers.remove(CACHE_CONTROL);
            parts.headers.remove(TRANSFER_ENCODING);
            parts.headers.remove(CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(buffered))
        }
        _ => {
            // Pass the stream on as it came: what was read, then the rest.
            let head = futures_util::stream::once(async move { Ok(Bytes::from(buffered)) });
            let rest = body.into_data_stream();
            Response::from_parts(parts, Body::from_stream(head.chain(rest)))
        }
    }
}

fn accepts_json(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|m| {
            let essence = m.split(';').next().unwrap_or("").trim();
            essence.eq_ignore_ascii_case(JSON) || essence == "*/*"
        })
}

fn is_event_stream(response: &Response) -> bool {
    response.status() == http::StatusCode::OK
        && response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with(EVENT_STREAM))
}

/// The length of the next complete event and of it plus its blank line, if one is complete.
fn event_end(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\n' {
            match bytes.get(i + 1) {
                Some(b'\n') => return Some((i, i + 2)),
                Some(b'\r') if bytes.get(i + 2) == Some(&b'\n') => return Some((i, i + 3)),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

enum Event {
    /// An event without data (the SEP-1699 priming event: an id and a retry hint).
    Priming,
    /// A JSON-RPC response or error, at this byte range of the event.
    Response((usize, usize)),
    /// Anything else: a request, a notification, a comment, several data lines.
    Other,
}

/// What the JSON-RPC message is, without building it.
#[derive(Deserialize)]
struct Shape {
    method: Option<IgnoredAny>,
    id: Option<IgnoredAny>,
    result: Option<IgnoredAny>,
    error: Option<IgnoredAny>,
}

fn classify(event: &[u8]) -> Event {
    let mut data: Option<(usize, usize)> = None;
    let mut at = 0;
    for line in event.split(|&b| b == b'\n') {
        let start = at;
        at += line.len() + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if line.starts_with(b":") {
            return Event::Other;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(p) => (&line[..p], &line[p + 1..]),
            None => (line, &[][..]),
        };
        let skip = usize::from(value.first() == Some(&b' '));
        match field {
            b"id" | b"retry" => {}
            b"event" if &value[skip..] == b"message" => {}
            b"data" if data.is_none() => {
                let from = start + (line.len() - value.len()) + skip;
                data = Some((from, start + line.len()));
            }
            _ => return Event::Other,
        }
    }
    let Some((from, to)) = data else {
        return Event::Priming;
    };
    if from == to {
        return Event::Priming;
    }
    match serde_json::from_slice::<Shape>(&event[from..to]) {
        Ok(s)
            if s.method.is_none()
                && s.id.is_some()
                && (s.result.is_some() || s.error.is_some()) =>
        {
            Event::Response((from, to))
        }
        _ => Event::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priming_then_response_is_a_response() {
        assert!(matches!(
            classify(b"id: 0/0\nretry: 3000\ndata:"),
            Event::Priming
        ));
        let e = b"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\nid: 0/1";
        let Event::Response((a, b)) = classify(e) else {
            panic!("not a response")
        };
        assert_eq!(&e[a..b], b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}");
    }

    #[test]
    fn notifications_requests_and_comments_are_not() {
        for e in [
            &b"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}"[..],
            b"data: {\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"elicitation/create\",\"params\":{}}",
            b": ping",
            b"event: other\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}",
            b"data: {\"jsonrpc\":\"2.0\",\"id\":1,\ndata: \"result\":{}}",
        ] {
            assert!(matches!(classify(e), Event::Other), "{e:?}");
        }
    }

    #[test]
    fn events_end_at_a_blank_line() {
        assert_eq!(event_end(b"data: x\n\ndata: y"), Some((7, 9)));
        assert_eq!(event_end(b"data: x\n\r\n"), Some((7, 10)));
        assert_eq!(event_end(b"data: x\n"), None);
    }
}
