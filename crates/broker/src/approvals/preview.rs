//! What the user is shown of a waiting call: the URL without anything that may be a secret
//! (query values, fragment, user info), and the start of the body as the agent sent it.
//!
//! Both come from the agent and end up in the window, a notification or a terminal, so
//! control and bidirectional-override characters are replaced: an agent must not be able to
//! move the cursor, recolour the CLI's prompt, or make text read backwards.

use std::borrow::Cow;

use super::PREVIEW_LIMIT;

/// The URL without query values (`?a=1&b=2` → `?a=…&b=…`; names stay, in their encoded
/// form), without the fragment (it can hold a token, `#access_token=…`) and without user info
/// (`https://user:pass@host` → `https://host`).
pub fn redact_query(url: &str) -> String {
    let url = url.split_once('#').map_or(url, |(before, _)| before);
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut out = without_user_info(base).to_string();
    let names: Vec<String> = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) if !value.is_empty() => format!("{name}=…"),
            _ => pair.to_string(),
        })
        .collect();
    if !names.is_empty() {
        out.push('?');
        out.push_str(&names.join("&"));
    }
    out.chars().map(|c| shown(c, false)).collect()
}

fn without_user_info(base: &str) -> Cow<'_, str> {
    let Some((scheme, rest)) = base.split_once("://") else {
        return Cow::Borrowed(base);
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => Cow::Owned(format!("{scheme}://{}", &rest[at + 1..])),
        None => Cow::Borrowed(base),
    }
}

/// The start of the body: JSON re-indented, other text as it is, at most [`PREVIEW_LIMIT`]
/// bytes (cut on a char boundary, then marked with "…"). `None` for an empty body.
pub(super) fn body_preview(body: &[u8]) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return Some(format!("({} bytes of binary data)", body.len()));
    };
    let text = if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() {
        Cow::Owned(indent_json(text, PREVIEW_LIMIT))
    } else {
        Cow::Borrowed(text)
    };
    let mut out = String::with_capacity(text.len().min(PREVIEW_LIMIT) + '…'.len_utf8());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\r' && chars.peek() == Some(&'\n') {
            continue; // CRLF reads as a line break; a lone CR is replaced below.
        }
        let c = shown(c, true);
        if out.len() + c.len_utf8() > PREVIEW_LIMIT {
            out.push('…');
            break;
        }
        out.push(c);
    }
    Some(out)
}

/// Valid JSON laid out two spaces an indent, like `serde_json`'s pretty printer, but from the
/// text rather than a parsed value: keys keep their order, numbers their spelling, and a
/// repeated key stays visible (a parsed map would keep only one of them, hiding what the
/// provider may read). Stops once the output is longer than `budget` bytes.
fn indent_json(json: &str, budget: usize) -> String {
    fn line(out: &mut String, depth: usize) {
        out.push('\n');
        out.extend(std::iter::repeat_n("  ", depth));
    }
    let mut out = String::new();
    let mut depth = 0usize;
    let (mut in_string, mut escaped) = (false, false);
    let mut chars = json.chars().peekable();
    while let Some(c) = chars.next() {
        if out.len() > budget {
            break;
        }
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                while chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
                match chars.next_if(|c| matches!(c, '}' | ']')) {
                    Some(close) => out.push(close),
                    None => {
                        depth += 1;
                        line(&mut out, depth);
                    }
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                line(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                line(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_ascii_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// `c`, or U+FFFD when it could change how the text around it is displayed: control
/// characters (line breaks and tabs allowed in multi-line text) and bidirectional controls.
fn shown(c: char, multi_line: bool) -> char {
    let layout = multi_line && matches!(c, '\n' | '\t');
    let bidi = matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
    if (c.is_control() && !layout) || bidi {
        char::REPLACEMENT_CHARACTER
    } else {
        c
    }
}
