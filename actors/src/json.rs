//! Event payloads as raw JSON: the `data` a producer sends is passed on byte for byte.
//!
//! Parsing `data` into a `serde_json::Value` and writing it out again would cost a parse
//! and a serialization per event and would change it: a 60-digit integer became
//! `1.2345678901234567e+59`, `-0` became `-0.0`, `1e-400` became `0.0`. So the payload is
//! kept as the producer's own text ([`RawValue`]), checked once when it arrives:
//! [`compact`] bounds its nesting and removes the whitespace between tokens (every
//! encoding puts the envelope on one line: an SSE `data:` line must hold no newline), and
//! leaves every token — numbers, strings, escapes — as it was. Only a session that redacts
//! fields parses the payload ([`crate::session::redaction`]).

use serde_json::value::RawValue;
use serde_json::Value;

/// An event's payload, as the producer wrote it (without whitespace between tokens).
pub type RawData = Box<RawValue>;

/// A payload shared by every session an event goes to (a source's events, a device's):
/// one copy of a base64 frame, however many sessions listen.
pub type SharedData = std::sync::Arc<RawValue>;

/// Deepest nesting of arrays and objects a payload may have. Deeper ones are refused:
/// the consumers of the feeds parse them, and recursive parsers (Python's, serde_json's
/// own limit of 128 for the whole envelope) give up well before a stack does.
pub const MAX_DEPTH: usize = 100;

/// `{}`, the payload of an event posted without `data`.
pub fn empty_object() -> RawData {
    // A constant that is valid JSON: the fallback is never taken.
    RawValue::from_string("{}".to_string()).unwrap_or_else(|_| to_raw(&Value::Null))
}

/// A value built by the server (tracker events), as raw JSON.
pub fn to_raw(value: &Value) -> RawData {
    // Serializing a `Value` cannot fail.
    serde_json::value::to_raw_value(value).unwrap_or_else(|_| empty_object())
}

/// What kind of JSON value `raw` is, worded like [`crate::validation::kind_of`].
pub fn kind_of_raw(raw: &RawValue) -> &'static str {
    match raw.get().as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// Checks the nesting of an already parsed (so well-formed) payload and removes the
/// whitespace between its tokens; the tokens themselves are untouched. Most payloads have
/// no such whitespace and come back as they are, without a copy.
pub fn compact(raw: RawData) -> Result<RawData, String> {
    let text = raw.get();
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut spaced = false;
    for &b in bytes {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(format!(
                        "nested more than {MAX_DEPTH} levels deep (arrays and objects)"
                    ));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b' ' | b'\n' | b'\r' | b'\t' => spaced = true,
            _ => {}
        }
    }
    if !spaced {
        return Ok(raw);
    }
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
        } else if !matches!(c, ' ' | '\n' | '\r' | '\t') {
            in_string = c == '"';
            out.push(c);
        }
    }
    RawValue::from_string(out).map_err(|e| format!("not valid JSON once compacted: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> RawData {
        serde_json::from_str(text).expect("valid JSON")
    }

    #[test]
    fn numbers_and_strings_pass_byte_for_byte() {
        let text = r#"{"big":123456789012345678901234567890123456789012345678901234567890,"neg0":-0,"tiny":1e-400,"s":"a \"q\" \u00e9 \\","f":1.50}"#;
        assert_eq!(compact(raw(text)).unwrap().get(), text);
    }

    #[test]
    fn whitespace_between_tokens_goes_and_inside_strings_stays() {
        let text = "{\n  \"a\" : [ 1 , 2.0 ],\n\t\"b\": \"x  y\\n \\\" z\"\n}";
        assert_eq!(
            compact(raw(text)).unwrap().get(),
            r#"{"a":[1,2.0],"b":"x  y\n \" z"}"#
        );
    }

    #[test]
    fn nesting_is_bounded_but_brackets_in_strings_do_not_count() {
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(compact(raw(&deep))
            .unwrap_err()
            .contains("nested more than"));
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(compact(raw(&ok)).is_ok());
        let in_string = format!("\"{}\"", "[".repeat(500));
        assert!(compact(raw(&in_string)).is_ok());
    }

    #[test]
    fn kinds_are_named_from_the_first_byte() {
        assert_eq!(kind_of_raw(&raw("[1]")), "an array");
        assert_eq!(kind_of_raw(&raw("-1")), "a number");
        assert_eq!(kind_of_raw(&raw("null")), "null");
        assert_eq!(kind_of_raw(&raw("\"x\"")), "a string");
    }
}
