//! Unit tests of what the user is shown: redacted URLs and body previews.

use super::PREVIEW_LIMIT;
use super::preview::{body_preview, redact_query};

#[test]
fn redact_query_keeps_names_and_drops_values() {
    let cases = [
        ("https://api.github.com/user", "https://api.github.com/user"),
        (
            "https://h.example/p?a=1&b=two",
            "https://h.example/p?a=…&b=…",
        ),
        (
            "https://h.example/p?a=1&a=2&a=3",
            "https://h.example/p?a=…&a=…&a=…",
        ),
        // Names stay in their encoded form; an encoded `&` or `=` does not split anything.
        (
            "https://h.example/a%20b?na%20me=v%26w%3Dx&x%3Dy=z",
            "https://h.example/a%20b?na%20me=…&x%3Dy=…",
        ),
        (
            "https://h.example/p?flag&empty=&&",
            "https://h.example/p?flag&empty=",
        ),
        ("https://h.example/p?", "https://h.example/p"),
        ("https://h.example/p?q=1=2", "https://h.example/p?q=…"),
        ("/relative/path?key=secret", "/relative/path?key=…"),
    ];
    for (url, shown) in cases {
        assert_eq!(redact_query(url), shown, "{url}");
    }
}

#[test]
fn redact_query_drops_fragments_and_user_info() {
    let cases = [
        (
            "https://h.example/cb#access_token=abc",
            "https://h.example/cb",
        ),
        (
            "https://h.example/p?x=1#frag?y=2&z=3",
            "https://h.example/p?x=…",
        ),
        ("https://h.example/p#a?b=c", "https://h.example/p"),
        (
            "https://user:pa%40ss@h.example/p?a=1",
            "https://h.example/p?a=…",
        ),
        ("https://tok@h.example", "https://h.example"),
        // An `@` in the path is not user info.
        ("https://h.example/users/@me", "https://h.example/users/@me"),
    ];
    for (url, shown) in cases {
        assert_eq!(redact_query(url), shown, "{url}");
    }
}

#[test]
fn redact_query_neutralises_control_characters() {
    assert_eq!(
        redact_query("https://h.example/\u{1b}[2J\n\u{202e}txt.exe"),
        "https://h.example/\u{fffd}[2J\u{fffd}\u{fffd}txt.exe"
    );
}

#[test]
fn json_is_indented_in_its_own_order() {
    let body = br#" {"b":1, "a":[1,2.50,{}],"c":{"d":null,"e":[ ]},"s":"x, {y}: \"[z]\" \\"} "#;
    let expected = r#"{
  "b": 1,
  "a": [
    1,
    2.50,
    {}
  ],
  "c": {
    "d": null,
    "e": []
  },
  "s": "x, {y}: \"[z]\" \\"
}"#;
    assert_eq!(body_preview(body).as_deref(), Some(expected));
}

#[test]
fn json_layout_is_serde_jsons_pretty_layout() {
    let body = br#"{"a":[1,"x",true],"b":{"c":{},"d":[[]],"e":{"f":-1e3}}}"#;
    let value: serde_json::Value = serde_json::from_slice(body).unwrap();
    let pretty = serde_json::to_string_pretty(&value).unwrap();
    assert_eq!(
        body_preview(body).unwrap(),
        pretty.replace("-1000.0", "-1e3")
    );
}

#[test]
fn a_repeated_json_key_stays_visible() {
    let preview = body_preview(br#"{"amount":1,"amount":1000}"#).unwrap();
    assert_eq!(preview, "{\n  \"amount\": 1,\n  \"amount\": 1000\n}");
}

#[test]
fn json_scalars_and_text_are_shown_as_they_are() {
    assert_eq!(body_preview(b"42").as_deref(), Some("42"));
    assert_eq!(body_preview(b"\"hi\"").as_deref(), Some("\"hi\""));
    assert_eq!(
        body_preview(b"name=x&age=3").as_deref(),
        Some("name=x&age=3")
    );
    assert_eq!(body_preview(b"{not json").as_deref(), Some("{not json"));
    assert_eq!(body_preview(b"   ").as_deref(), Some("   "));
}

#[test]
fn long_bodies_are_cut_on_a_char_boundary_and_marked() {
    // 1 + 2 × 1500 bytes: the cut falls inside an "é" and must step back before it.
    let text = format!("a{}", "é".repeat(1500));
    let preview = body_preview(text.as_bytes()).unwrap();
    let kept = preview.strip_suffix('…').unwrap();
    assert_eq!(kept.len(), PREVIEW_LIMIT - 1);
    assert!(text.starts_with(kept));

    let exact = "x".repeat(PREVIEW_LIMIT);
    assert_eq!(
        body_preview(exact.as_bytes()),
        Some(exact.clone()),
        "not cut"
    );
    let over = format!("{exact}y");
    assert_eq!(body_preview(over.as_bytes()), Some(format!("{exact}…")));

    let json = serde_json::to_vec(&vec!["日本語"; 2000]).unwrap();
    let preview = body_preview(&json).unwrap();
    let kept = preview.strip_suffix('…').unwrap();
    assert!(kept.len() <= PREVIEW_LIMIT && kept.len() > PREVIEW_LIMIT - 12);
    assert!(kept.starts_with("[\n  \"日本語\",\n  \"日本語\""), "{kept}");
}

#[test]
fn binary_and_empty_bodies() {
    assert_eq!(
        body_preview(&[0xff, 0xfe, 0x00, 0x41]).as_deref(),
        Some("(4 bytes of binary data)")
    );
    let mut cut_utf8 = "é".repeat(3).into_bytes();
    cut_utf8.pop();
    assert_eq!(
        body_preview(&cut_utf8).as_deref(),
        Some("(5 bytes of binary data)")
    );
    assert_eq!(body_preview(b""), None);
}

#[test]
fn control_characters_in_bodies_are_neutralised() {
    let preview = body_preview(b"a\x1b[2Jb\r\nc\td\re\x00").unwrap();
    assert_eq!(preview, "a\u{fffd}[2Jb\nc\td\u{fffd}e\u{fffd}");
    let preview = body_preview("{\"name\":\"\u{202e}fdp.exe\"}".as_bytes()).unwrap();
    assert_eq!(preview, "{\n  \"name\": \"\u{fffd}fdp.exe\"\n}");
}
