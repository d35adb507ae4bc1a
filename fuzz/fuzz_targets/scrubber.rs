//! The scrubber and the shaping of upstream answers: bodies built from fuzzer bytes that embed
//! the token plain, JSON-escaped (all, mixed, `\/`), percent-encoded and in base64/base64url,
//! cut anywhere by the read limit and the body limit. Nothing may panic, and no copy of the
//! token (plain, or after undoing JSON escapes and percent-encoding) may reach the agent.
#![no_main]
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use secrecy::SecretString;

const TOKEN_SOURCE: &str = "gho_Fuzz/Token+Abc.123-xyz_7~QRS";

fn encode(token: &str, op: u8, salt: u8) -> String {
    match op % 7 {
        0 => token.to_string(),
        1 => token.chars().map(|c| format!("\\u{:04x}", c as u32)).collect(),
        2 => token
            .chars()
            .enumerate()
            .map(|(i, c)| match ((salt as usize + i) % 3, c) {
                (0, _) => c.to_string(),
                (1, '/') => "\\/".into(),
                _ => format!("\\u{:04X}", c as u32),
            })
            .collect(),
        3 => token
            .bytes()
            .enumerate()
            .map(|(i, b)| {
                if (salt as usize + i) % 2 == 0 {
                    format!("%{b:02X}")
                } else {
                    char::from(b).to_string()
                }
            })
            .collect(),
        4 => {
            let mut bytes = vec![b'x'; usize::from(salt % 3)];
            bytes.extend_from_slice(token.as_bytes());
            base64::engine::general_purpose::STANDARD.encode(bytes)
        }
        5 => {
            let mut bytes = vec![b'y'; usize::from(salt % 3)];
            bytes.extend_from_slice(token.as_bytes());
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        }
        _ => token.chars().flat_map(|c| [c, '\0']).collect(),
    }
}

fn decoded(s: &str) -> String {
    let json = serde_json::from_str::<String>(&format!("\"{}\"", s.replace('"', "\\\"")))
        .unwrap_or_else(|_| s.to_string());
    let b = json.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(Ok(v)) = json.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16))
        {
            out.push(v);
            i += 3;
            continue;
        }
        if b[i] != 0 {
            out.push(b[i]);
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let token = &TOKEN_SOURCE[..8 + usize::from(data[0]) % (TOKEN_SOURCE.len() - 7)];
    let json = data[3] & 1 == 1;
    let mut body: Vec<u8> = Vec::new();
    let mut rest = &data[4..];
    while let [op, salt, tail @ ..] = rest {
        if op & 0x80 == 0 {
            body.extend_from_slice(encode(token, *op, *salt).as_bytes());
            rest = tail;
        } else {
            // Literal fuzzer bytes (any, even invalid UTF-8).
            let n = usize::from(*salt % 32).min(tail.len());
            body.extend_from_slice(&tail[..n]);
            rest = &tail[n..];
        }
    }
    let body = if json {
        let mut wrapped = b"{\"v\":\"".to_vec();
        wrapped.extend_from_slice(&body);
        wrapped.extend_from_slice(b"\"}");
        wrapped
    } else {
        body
    };
    // Cut anywhere from the first byte to past the end, whatever the body's length.
    let limit = 1 + usize::from(u16::from_le_bytes([data[1], data[2]])) % (2 * body.len() + 1);
    let read = if data[3] & 2 == 2 {
        body.len()
    } else {
        body.len() * usize::from(data[3] >> 2) / 64
    };
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "content-type",
        http::HeaderValue::from_static(if json { "application/json" } else { "text/plain" }),
    );
    let raw = broker::upstream::Raw {
        status: 200,
        headers,
        body: body[..read.min(body.len())].to_vec(),
        complete: read >= body.len(),
    };
    let secret = SecretString::from(token.to_string());
    let shaped = broker::upstream::shape_with(
        raw,
        &secret,
        broker::upstream::Limits {
            body: limit,
            event: broker::upstream::EVENT_BUDGET,
        },
    );
    let mut strings = Vec::new();
    let mut stack = vec![&shaped.body];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::String(s) => strings.push(s.clone()),
            serde_json::Value::Array(items) => stack.extend(items.iter()),
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    strings.push(k.clone());
                    stack.push(v);
                }
            }
            _ => {}
        }
    }
    for s in &strings {
        assert!(!s.contains(token), "plain copy survived");
        assert!(!decoded(s).contains(token), "decodable copy survived");
    }
    if shaped.truncated
        && let serde_json::Value::String(text) = &shaped.body
    {
        let text = decoded(text);
        for n in 8..token.len() {
            assert!(!text.ends_with(&token[..n]), "prefix of {n} survived the cut");
        }
    }
});
