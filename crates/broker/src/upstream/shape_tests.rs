//! Shaping tests, including the property test over every encoding and cut.
use super::*;
use crate::upstream::REDACTED;
use base64::Engine as _;
use proptest::prelude::*;
use reqwest::header::{HeaderMap, HeaderValue};

fn raw(body: &[u8], content_type: &str, complete: bool) -> Raw {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_str(content_type).unwrap());
    Raw {
        status: 200,
        headers,
        body: body.to_vec(),
        complete,
    }
}

fn secret(token: &str) -> SecretString {
    SecretString::from(token.to_string())
}

#[test]
fn shaping_scrubs_the_token_and_truncates() {
    let token = secret("tok-123456789");
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert("x-echo", HeaderValue::from_static("tok-123456789"));
    headers.insert("location", HeaderValue::from_static("/a?t=tok-123456789"));
    headers.insert("set-cookie", HeaderValue::from_static("s=1"));
    let shaped = shape(
        Raw {
            status: 200,
            headers,
            body: br#"{"echo":"Bearer tok-123456789"}"#.to_vec(),
            complete: true,
        },
        &token,
    );
    let all = serde_json::to_string(&shaped).unwrap();
    assert!(!all.contains("tok-123456789"));
    assert_eq!(shaped.body["echo"], "Bearer [REDACTED]");
    assert!(!shaped.headers.contains_key("x-echo"));
    assert!(!shaped.headers.contains_key("set-cookie"));
    assert_eq!(shaped.headers["location"], "/a?t=[REDACTED]");

    let shaped = shape(
        raw(&vec![b'a'; RESPONSE_LIMIT + 10], "text/plain", true),
        &token,
    );
    assert!(shaped.truncated);
    let body = shaped.body.as_str().unwrap();
    assert!(body.len() <= RESPONSE_LIMIT && body.bytes().all(|b| b == b'a'));
    // Cut to the body limit, then to what one event can carry twice.
    assert!(event_size(&shaped) <= EVENT_BUDGET);
    let small = Limits {
        body: 1000,
        event: EVENT_BUDGET,
    };
    let shaped = shape_with(raw(&[b'a'; 1010], "text/plain", true), &token, small);
    assert_eq!(shaped.body.as_str().unwrap().len(), 1000);
}

#[test]
fn escaped_copies_never_reach_the_agent_after_parsing() {
    let token = "0kA9zz-tok_EN.123";
    let escaped: String = token
        .chars()
        .map(|c| format!("\\u{:04x}", c as u32))
        .collect();
    let body = format!(r#"{{"you_sent":"{escaped}","nested":["{escaped}"]}}"#);
    let shaped = shape(
        raw(body.as_bytes(), "application/json", true),
        &secret(token),
    );
    assert_eq!(shaped.body["you_sent"], "[REDACTED]");
    assert_eq!(shaped.body["nested"][0], "[REDACTED]");
    // A copy escaped twice is still text the agent can read; the parsed string is scrubbed.
    let twice = format!(r#"{{"x":"{}"}}"#, escaped.replace('\\', "\\\\"));
    let shaped = shape(
        raw(twice.as_bytes(), "application/json", true),
        &secret(token),
    );
    assert!(!serde_json::to_string(&shaped).unwrap().contains("u0030k"));
}

#[test]
fn a_copy_cut_at_the_limit_leaves_no_prefix_behind() {
    let token = "abcdefghijklmnopqrstuvwxyz0123456789";
    let limit = 100;
    // token‖token‖padding‖token, with the third copy straddling the read cut.
    let pad = "x".repeat(limit - 2 * token.len() + 5);
    let body = format!("{token}{token}{pad}{token}");
    for read in [body.len(), limit + token.len(), limit + 10] {
        let shaped = shape_with(
            raw(&body.as_bytes()[..read], "text/plain", read == body.len()),
            &secret(token),
            Limits {
                body: limit,
                event: EVENT_BUDGET,
            },
        );
        let text = shaped.body.as_str().unwrap();
        assert!(!text.contains("abcdefgh"), "read {read}: {text}");
        assert_eq!(
            text.matches(REDACTED).count(),
            2 + usize::from(read == body.len())
        );
    }
}

#[test]
fn the_largest_result_fits_one_event_of_the_stock_clients() {
    let token = secret("t0ken-t0ken-t0ken");
    // Control characters cost six bytes each once escaped, and the text copy escapes again.
    for body in [
        vec![1u8; RESPONSE_LIMIT + 100],
        vec![b'"'; RESPONSE_LIMIT + 100],
        format!("[{}]", vec!["\"\\u0001\""; RESPONSE_LIMIT / 9].join(",")).into_bytes(),
    ] {
        for content_type in ["text/plain", "application/json"] {
            for complete in [true, false] {
                let shaped = shape(raw(&body, content_type, complete), &token);
                assert!(shaped.truncated);
                let size = event_size(&shaped);
                assert!(size <= EVENT_BUDGET, "{content_type}: {size}");
                assert!(size > EVENT_BUDGET / 2, "not cut more than needed: {size}");
            }
        }
    }
    // A small answer is left whole.
    let small = shape(raw(br#"{"a":1}"#, "application/json", true), &token);
    assert!(!small.truncated);
    assert_eq!(small.body["a"], 1);
}

// ---- property: no encoding of the token survives, at any offset around any cut ----

#[derive(Debug, Clone)]
enum Form {
    Plain,
    JsonEscaped {
        upper: bool,
    },
    Mixed(Vec<u8>),
    Percent(Vec<u8>),
    Base64 {
        url_safe: bool,
        prefix: Vec<u8>,
        suffix: Vec<u8>,
    },
}

fn encode(token: &str, form: &Form) -> String {
    let pick = |mask: &[u8], i: usize| mask.get(i % mask.len().max(1)).copied().unwrap_or(0);
    match form {
        Form::Plain => token.to_string(),
        Form::JsonEscaped { upper } => token
            .chars()
            .map(|c| {
                if *upper {
                    format!("\\u{:04X}", c as u32)
                } else {
                    format!("\\u{:04x}", c as u32)
                }
            })
            .collect(),
        Form::Mixed(mask) => token
            .chars()
            .enumerate()
            .map(|(i, c)| match (pick(mask, i) % 3, c) {
                (0, _) => c.to_string(),
                (1, '/') => "\\/".to_string(),
                (1, _) => format!("\\u{:04X}", c as u32),
                _ => format!("\\u{:04x}", c as u32),
            })
            .collect(),
        Form::Percent(mask) => token
            .bytes()
            .enumerate()
            .map(|(i, b)| match pick(mask, i) % 3 {
                0 => char::from(b).to_string(),
                1 => format!("%{b:02X}"),
                _ => format!("%{b:02x}"),
            })
            .collect(),
        Form::Base64 {
            url_safe,
            prefix,
            suffix,
        } => {
            let mut bytes = prefix.clone();
            bytes.extend_from_slice(token.as_bytes());
            bytes.extend_from_slice(suffix);
            if *url_safe {
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
            } else {
                base64::engine::general_purpose::STANDARD.encode(bytes)
            }
        }
    }
}

fn form() -> impl Strategy<Value = Form> {
    let mask = proptest::collection::vec(any::<u8>(), 1..8);
    let bytes = proptest::collection::vec(any::<u8>(), 0..5);
    prop_oneof![
        Just(Form::Plain),
        any::<bool>().prop_map(|upper| Form::JsonEscaped { upper }),
        mask.clone().prop_map(Form::Mixed),
        mask.prop_map(Form::Percent),
        (any::<bool>(), bytes.clone(), bytes).prop_map(|(url_safe, prefix, suffix)| {
            Form::Base64 {
                url_safe,
                prefix,
                suffix,
            }
        }),
    ]
}

/// An independent reader: every JSON escape and percent escape undone, repeatedly.
fn fully_decoded(s: &str) -> String {
    let mut text = s.to_string();
    for _ in 0..3 {
        let json = serde_json::from_str::<String>(&format!("\"{}\"", text.replace('"', "\\\"")))
            .unwrap_or_else(|_| text.clone());
        let mut out = Vec::new();
        let b = json.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%'
                && let Some(Ok(v)) = json.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16))
            {
                out.push(v);
                i += 3;
                continue;
            }
            out.push(b[i]);
            i += 1;
        }
        text = String::from_utf8_lossy(&out).into_owned();
    }
    text
}

/// Whether any base64 run in `s`, decoded at any alignment, holds the token's inner bytes.
fn base64_holds(s: &str, token: &str) -> bool {
    let inner = &token.as_bytes()[1..token.len() - 1];
    s.split(|c: char| !(c.is_ascii_alphanumeric() || "+/-_".contains(c)))
        .filter(|run| run.len() >= 4)
        .any(|run| {
            let normal: String = run
                .chars()
                .map(|c| match c {
                    '-' => '+',
                    '_' => '/',
                    c => c,
                })
                .collect();
            (0..4).any(|offset| {
                let chunk = normal.get(offset..).unwrap_or("");
                let usable = &chunk[..chunk.len() / 4 * 4];
                base64::engine::general_purpose::STANDARD
                    .decode(usable)
                    .is_ok_and(|bytes| bytes.windows(inner.len()).any(|w| w == inner))
            })
        })
}

fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => map.iter().for_each(|(k, v)| {
            out.push(k.clone());
            strings(v, out);
        }),
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    #[test]
    fn no_encoding_of_the_token_survives_any_cut(
        token in "[A-Za-z0-9._~/+-]{8,40}",
        copies in proptest::collection::vec((form(), "[a-z ]{0,30}"), 1..5),
        json in any::<bool>(),
        limit_frac in 0.2f64..1.5,
        read_frac in 0.3f64..1.0,
        whole in any::<bool>(),
    ) {
        let mut inner = String::new();
        for (form, pad) in &copies {
            inner.push_str(pad);
            inner.push_str(&encode(&token, form));
        }
        let body = if json { format!(r#"{{"v":"{inner}"}}"#) } else { inner };
        let limit = ((body.len() as f64 * limit_frac) as usize).max(1);
        let read = if whole { body.len() } else { ((body.len() as f64 * read_frac) as usize).max(1) };
        let content_type = if json { "application/json" } else { "text/plain" };
        let mut r = raw(&body.as_bytes()[..read], content_type, read == body.len());
        r.headers.insert("location", HeaderValue::from_str(&format!("/x?t={}", encode(&token, &copies[0].0))).unwrap_or(HeaderValue::from_static("/")));
        let shaped = shape_with(r, &secret(&token), Limits { body: limit, event: EVENT_BUDGET });
        let mut seen = Vec::new();
        strings(&shaped.body, &mut seen);
        seen.extend(shaped.headers.values().cloned());
        for s in &seen {
            prop_assert!(!s.contains(&token), "plain copy in {s:?}");
            let decoded = fully_decoded(s);
            prop_assert!(!decoded.contains(&token), "decodable copy in {s:?}");
            prop_assert!(!base64_holds(s, &token), "base64 copy in {s:?}");
        }
        if shaped.truncated && let Value::String(text) = &shaped.body {
            let decoded = fully_decoded(text);
            for n in 8..token.len() {
                prop_assert!(!decoded.ends_with(&token[..n]), "prefix of {n} at the cut: {text:?}");
            }
        }
    }
}
