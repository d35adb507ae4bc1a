//! Finds a provider token in text an agent will read, in every form the agent could turn back
//! into the token: plain, JSON-escaped (`\uXXXX` with either hex case, `\/`, any mix),
//! percent-encoded (any mix), and base64 / base64url at any byte alignment.
//!
//! The text is read through a *decoded view*: one entry per character the agent would see after
//! undoing one layer of JSON escapes and percent-encoding, each pointing back at the raw bytes
//! it came from. Patterns are matched on the view (KMP, linear in the text), and the raw spans
//! of every match are replaced. The same view tells whether text cut at a limit ends in the
//! beginning of a copy ([`Scrubber::trim_partial`]).

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};

pub const REDACTED: &str = "[REDACTED]";
/// A trailing partial copy this long or longer is removed at a cut (the contract is 8).
const MIN_PARTIAL: usize = 4;
/// Base64 forms are searched only for tokens this long (shorter cores would match by chance).
const MIN_BASE64_TOKEN: usize = 8;

/// One character of the decoded view and the raw byte range it was decoded from.
#[derive(Debug, Clone, Copy)]
struct Decoded {
    ch: char,
    start: usize,
    end: usize,
}

/// A pattern with its KMP failure table.
struct Pattern {
    chars: Vec<char>,
    fail: Vec<usize>,
}

impl Pattern {
    fn new(text: &str) -> Pattern {
        let chars: Vec<char> = text.chars().collect();
        let mut fail = vec![0; chars.len()];
        let mut k = 0;
        for i in 1..chars.len() {
            while k > 0 && chars[i] != chars[k] {
                k = fail[k - 1];
            }
            if chars[i] == chars[k] {
                k += 1;
            }
            fail[i] = k;
        }
        Pattern { chars, fail }
    }

    /// Feeds one character; returns the new match length (== len on a full match).
    fn step(&self, mut k: usize, ch: char) -> usize {
        if k == self.chars.len() {
            k = self.fail[k - 1];
        }
        while k > 0 && self.chars[k] != ch {
            k = self.fail[k - 1];
        }
        if self.chars[k] == ch {
            k += 1;
        }
        k
    }
}

/// Scrubs one token out of text in all its encodings.
pub struct Scrubber {
    patterns: Vec<Pattern>,
}

impl Scrubber {
    pub fn new(token: &SecretString) -> Scrubber {
        let token = token.expose_secret();
        let mut patterns = Vec::new();
        if !token.is_empty() {
            patterns.push(Pattern::new(token));
        }
        if token.len() >= MIN_BASE64_TOKEN {
            for core in base64_cores(token.as_bytes())
                .iter()
                .filter(|c| !c.is_empty())
            {
                patterns.push(Pattern::new(core));
            }
        }
        Scrubber { patterns }
    }

    /// Replaces every copy of the token, in any covered encoding, with [`REDACTED`].
    pub fn scrub(&self, text: &str) -> String {
        if self.patterns.is_empty() {
            return text.to_string();
        }
        let view = decode(text);
        let mut spans: Vec<(usize, usize)> = Vec::new();
        for pattern in &self.patterns {
            let len = pattern.chars.len();
            let mut k = 0;
            for (i, d) in view.iter().enumerate() {
                k = pattern.step(k, d.ch);
                if k == len {
                    spans.push((view[i + 1 - len].start, d.end));
                }
            }
        }
        if spans.is_empty() {
            return text.to_string();
        }
        spans.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (start, end) in spans {
            if end <= at {
                continue;
            }
            if start >= at {
                out.push_str(&text[at..start]);
                out.push_str(REDACTED);
            }
            at = end;
        }
        out.push_str(&text[at..]);
        out
    }

    /// For text cut at a limit: removes a trailing beginning of a copy (in any covered
    /// encoding) so no prefix of the token survives the cut. Returns whether it removed any.
    pub fn trim_partial(&self, text: &mut String) -> bool {
        // Removing one partial copy can expose another right before it (`…gho_Fuzz/gho_Fu`).
        let mut trimmed = false;
        while self.trim_once(text) {
            trimmed = true;
        }
        trimmed
    }

    fn trim_once(&self, text: &mut String) -> bool {
        // An escape cut in half means nothing to a reader; drop it, then look for a partial copy.
        let whole = incomplete_escape_at_end(text);
        let dropped = whole < text.len();
        text.truncate(whole);
        let view = decode(text);
        let mut cut: Option<usize> = None;
        for pattern in &self.patterns {
            let mut k = 0;
            for d in &view {
                k = pattern.step(k, d.ch);
            }
            if k >= MIN_PARTIAL.min(pattern.chars.len()) {
                let start = view[view.len() - k].start;
                cut = Some(cut.map_or(start, |c| c.min(start)));
            }
        }
        match cut {
            Some(at) => {
                text.truncate(at);
                true
            }
            None => dropped,
        }
    }
}

/// Where an escape cut short at the end of `text` begins (`\`, `\u`, `\u0`…, `%`, `%4`), or
/// the text's length when it ends whole.
fn incomplete_escape_at_end(text: &str) -> usize {
    let bytes = text.as_bytes();
    let n = bytes.len();
    for back in 1..=5.min(n) {
        let start = n - back;
        let tail = &bytes[start..];
        let hexes = |from: usize| tail[from..].iter().all(u8::is_ascii_hexdigit);
        let cut_escape = match tail {
            [b'\\'] => true,
            [b'\\', b'u', ..] => hexes(2),
            [b'%', ..] => back <= 2 && hexes(1),
            _ => false,
        };
        // A backslash that is itself escaped (`\\`) starts nothing.
        let escaped = start > 0 && bytes[start - 1] == b'\\' && tail[0] == b'\\';
        if cut_escape && !escaped {
            return start;
        }
    }
    n
}

/// The base64 and base64url encodings of `token` at each of the three byte alignments it can
/// have inside a longer encoded value, keeping only the characters that depend on the token
/// alone (the ones at each end mix in the neighbouring bytes).
fn base64_cores(token: &[u8]) -> Vec<String> {
    let mut cores = Vec::new();
    for align in 0..3usize {
        let mut bytes = vec![0u8; align];
        bytes.extend_from_slice(token);
        let first = (8 * align).div_ceil(6);
        let last = (8 * (align + token.len())) / 6;
        for engine in [
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ] {
            let encoded = engine.encode(&bytes);
            if let Some(core) = encoded.get(first..last.min(encoded.len()))
                && !cores.iter().any(|c| c == core)
            {
                cores.push(core.to_string());
            }
        }
    }
    cores
}

/// The decoded view of `text`: one layer of JSON string escapes and percent-encoding undone;
/// NUL characters (UTF-16 text read as UTF-8) are skipped.
fn decode(text: &str) -> Vec<Decoded> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let (ch, len) = match bytes[i] {
            b'\\' => json_escape(bytes, i).unwrap_or(('\\', 1)),
            b'%' => match (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                (Some(h), Some(l)) => {
                    let byte = (h << 4) | l;
                    (
                        if byte.is_ascii() {
                            char::from(byte)
                        } else {
                            char::REPLACEMENT_CHARACTER
                        },
                        3,
                    )
                }
                _ => ('%', 1),
            },
            _ => {
                let ch = text[i..]
                    .chars()
                    .next()
                    .unwrap_or(char::REPLACEMENT_CHARACTER);
                (ch, ch.len_utf8())
            }
        };
        if ch != '\0' {
            out.push(Decoded {
                ch,
                start: i,
                end: i + len,
            });
        }
        i += len;
    }
    out
}

/// A JSON escape at `i` (which holds a backslash): the character and the escape's length.
fn json_escape(bytes: &[u8], i: usize) -> Option<(char, usize)> {
    let simple = match bytes.get(i + 1)? {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => {
            let unit = hex4(bytes, i + 2)?;
            if (0xD800..0xDC00).contains(&unit)
                && bytes.get(i + 6) == Some(&b'\\')
                && bytes.get(i + 7) == Some(&b'u')
                && let Some(low) = hex4(bytes, i + 8)
                && (0xDC00..0xE000).contains(&low)
            {
                let code = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                return Some((char::from_u32(code)?, 12));
            }
            return Some((
                char::from_u32(unit).unwrap_or(char::REPLACEMENT_CHARACTER),
                6,
            ));
        }
        _ => return None,
    };
    Some((simple, 2))
}

fn hex4(bytes: &[u8], at: usize) -> Option<u32> {
    let mut value = 0u32;
    for k in 0..4 {
        value = (value << 4) | u32::from(hex(bytes.get(at + k))?);
    }
    Some(value)
}

fn hex(b: Option<&u8>) -> Option<u8> {
    let b = *b?;
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrubber(token: &str) -> Scrubber {
        Scrubber::new(&SecretString::from(token.to_string()))
    }

    const TOKEN: &str = "0kA9/zz-tok_EN.123";

    fn escaped_all(token: &str) -> String {
        token
            .chars()
            .map(|c| format!("\\u{:04x}", c as u32))
            .collect()
    }

    #[test]
    fn plain_and_json_escaped_copies_are_scrubbed() {
        let s = scrubber(TOKEN);
        assert_eq!(s.scrub(&format!("a {TOKEN} b")), "a [REDACTED] b");
        let escaped = format!(r#"{{"you_sent":"{}"}}"#, escaped_all(TOKEN));
        assert_eq!(s.scrub(&escaped), r#"{"you_sent":"[REDACTED]"}"#);
        let upper: String = TOKEN
            .chars()
            .map(|c| format!("\\u{:04X}", c as u32))
            .collect();
        assert_eq!(s.scrub(&upper), REDACTED);
        let slash = TOKEN.replace('/', "\\/");
        assert_eq!(s.scrub(&slash), REDACTED);
        let mixed = format!("\\u0030k\\u0041{}", &TOKEN[3..].replace('/', "\\/"));
        assert_eq!(s.scrub(&mixed), REDACTED);
        // A doubled backslash is a literal backslash, not an escape.
        assert_eq!(s.scrub("\\\\u0030"), "\\\\u0030");
    }

    #[test]
    fn percent_and_base64_copies_are_scrubbed() {
        let s = scrubber(TOKEN);
        let percent: String = TOKEN.bytes().map(|b| format!("%{b:02X}")).collect();
        assert_eq!(
            s.scrub(&format!("/cb?t={percent}&x=1")),
            "/cb?t=[REDACTED]&x=1"
        );
        let partly = TOKEN.replace('/', "%2f").replace('.', "%2E");
        assert_eq!(s.scrub(&partly), REDACTED);
        for prefix in ["", "a", "ab", "Bearer "] {
            let raw = format!("{prefix}{TOKEN}!");
            for engine in [
                &base64::engine::general_purpose::STANDARD,
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ] {
                let encoded = engine.encode(raw.as_bytes());
                let scrubbed = s.scrub(&encoded);
                assert!(scrubbed.contains(REDACTED), "{prefix:?}: {scrubbed}");
                assert!(scrubbed.len() < encoded.len());
            }
        }
    }

    #[test]
    fn utf16_text_is_scrubbed() {
        let s = scrubber(TOKEN);
        let utf16: String = TOKEN.chars().flat_map(|c| [c, '\0']).collect();
        assert_eq!(s.scrub(&utf16), format!("{REDACTED}\0"));
    }

    #[test]
    fn partial_copies_at_a_cut_are_trimmed() {
        let s = scrubber(TOKEN);
        let mut text = format!("keep this {}", &TOKEN[..9]);
        assert!(s.trim_partial(&mut text));
        assert_eq!(text, "keep this ");
        let mut escaped = format!("keep {}", &escaped_all(TOKEN)[..6 * 8 + 3]);
        assert!(s.trim_partial(&mut escaped));
        assert_eq!(escaped, "keep ");
        let mut cut_escape = "a \\u00".to_string();
        assert!(s.trim_partial(&mut cut_escape));
        assert_eq!(cut_escape, "a ");
        let mut literal = "a \\\\".to_string();
        assert!(
            !s.trim_partial(&mut literal),
            "an escaped backslash is whole"
        );
        let mut twice = format!("keep {}{}", &TOKEN[..9], &escaped_all(TOKEN)[..6 * 10 + 4]);
        assert!(s.trim_partial(&mut twice));
        assert_eq!(twice, "keep ");
        let mut innocent = "nothing here".to_string();
        assert!(!s.trim_partial(&mut innocent));
        assert_eq!(innocent, "nothing here");
    }

    #[test]
    fn empty_token_changes_nothing() {
        let s = scrubber("");
        assert_eq!(s.scrub("abc"), "abc");
        let mut t = "abc".to_string();
        assert!(!s.trim_partial(&mut t));
    }
}
