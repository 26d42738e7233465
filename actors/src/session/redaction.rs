//! Redaction: fields a session names are dropped, or replaced with a keyed hash, before the
//! event is numbered and serialized, so no distributor ever sees the raw value.
//!
//! A session asks for it with `"redact": {"data.participantId": "hash", "data.name": "drop"}`.
//! Paths start at the event's `data`; a `*` segment stands for every key of an object or
//! every element of an array (`data.faces.*.participantId`). `hash` writes the lowercase
//! hex HMAC-SHA-256 of the value (a string's UTF-8 bytes, anything else's compact JSON)
//! under the server's `privacy.redaction_secret`: the same participant gives the same hash,
//! so analyses can still group by it, but the identifier cannot be read back or, without
//! the key, guessed by hashing candidates.

use std::collections::BTreeMap;
use std::sync::Arc;

use ring::hmac;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::json::SharedData;
use crate::validation::{kind_of, Report};

/// What happens to a redacted field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedactAction {
    /// The field is removed.
    Drop,
    /// The value is replaced with its keyed hash.
    Hash,
}

/// Longest path accepted, in segments.
const MAX_DEPTH: usize = 16;
/// Most paths one session may redact.
const MAX_RULES: usize = 64;

/// Reads a session's `redact` object; every problem goes to `report`.
pub fn parse_rules(at: &str, v: &Value, report: &mut Report) -> BTreeMap<String, RedactAction> {
    let mut out = BTreeMap::new();
    let Value::Object(map) = v else {
        report.error(format!(
            "{at}: must be an object of field path → \"drop\" or \"hash\", got {}",
            kind_of(v)
        ));
        return out;
    };
    if map.len() > MAX_RULES {
        report.error(format!("{at}: at most {MAX_RULES} fields"));
    }
    for (path, action) in map {
        let segments: Vec<&str> = path.split('.').collect();
        let ok = segments.len() >= 2
            && segments.len() <= MAX_DEPTH
            && segments[0] == "data"
            && segments.iter().all(|s| !s.is_empty());
        if !ok {
            report.error(format!(
                "{at}.{path}: a path starts with \"data.\" and names fields separated by dots (at most {MAX_DEPTH}), e.g. \"data.participantId\" or \"data.faces.*.participantId\""
            ));
            continue;
        }
        match action.as_str() {
            Some("drop") => {
                out.insert(path.clone(), RedactAction::Drop);
            }
            Some("hash") => {
                out.insert(path.clone(), RedactAction::Hash);
            }
            _ => report.error(format!(
                "{at}.{path}: must be \"drop\" or \"hash\", got {action}"
            )),
        }
    }
    out
}

/// A session's redaction rules with the server's key.
pub struct Redactor {
    /// Path segments after `data`, and the action.
    rules: Vec<(Vec<String>, RedactAction)>,
    key: Arc<hmac::Key>,
}

impl Redactor {
    /// Rules as parsed by [`parse_rules`]; `None` when there are none.
    pub fn new(rules: &BTreeMap<String, RedactAction>, key: Arc<hmac::Key>) -> Option<Self> {
        if rules.is_empty() {
            return None;
        }
        let rules = rules
            .iter()
            .map(|(path, action)| {
                let segments = path.split('.').skip(1).map(str::to_string).collect();
                (segments, *action)
            })
            .collect();
        Some(Self { rules, key })
    }

    /// Redacts an event's `data` in place.
    pub fn apply(&self, data: &mut Value) {
        for (segments, action) in &self.rules {
            apply(data, segments, *action, &self.key);
        }
    }

    /// Redacts a raw payload: the one place a payload is parsed and written again (so its
    /// numbers take serde_json's form). A payload that cannot be parsed into a value (a
    /// number beyond any float, such as `1e400`) cannot be checked, so it is not passed on:
    /// it becomes `null`.
    pub fn apply_raw(&self, data: &mut SharedData) {
        // The payload may be shared with other sessions: this one gets its own copy.
        match serde_json::from_str::<Value>(data.get()) {
            Ok(mut value) => {
                self.apply(&mut value);
                *data = crate::json::to_raw(&value).into();
            }
            Err(error) => {
                tracing::warn!(%error, "a payload that cannot be redacted is replaced by null");
                *data = crate::json::to_raw(&Value::Null).into();
            }
        }
    }
}

/// The keyed hash of a value, as hex.
pub fn keyed_hash(key: &hmac::Key, value: &Value) -> String {
    let tag = match value {
        Value::String(s) => hmac::sign(key, s.as_bytes()),
        other => hmac::sign(key, other.to_string().as_bytes()),
    };
    to_hex(tag.as_ref())
}

/// Lowercase hex of `bytes`, in one allocation.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

fn apply(value: &mut Value, segments: &[String], action: RedactAction, key: &hmac::Key) {
    let Some((first, rest)) = segments.split_first() else {
        return;
    };
    let last = rest.is_empty();
    if first == "*" {
        // Every member of an object, or every item of an array, alike.
        if last && action == RedactAction::Drop {
            match value {
                Value::Object(map) => map.clear(),
                Value::Array(items) => items.clear(),
                _ => {}
            }
            return;
        }
        let children: Box<dyn Iterator<Item = &mut Value>> = match value {
            Value::Object(map) => Box::new(map.values_mut()),
            Value::Array(items) => Box::new(items.iter_mut()),
            _ => return,
        };
        for v in children {
            finish(v, rest, action, key);
        }
    } else if let Value::Object(map) = value {
        if last && action == RedactAction::Drop {
            map.remove(first.as_str());
        } else if let Some(v) = map.get_mut(first.as_str()) {
            finish(v, rest, action, key);
        }
    }
}

/// At the path's end: hash the value; before it: go on down.
fn finish(value: &mut Value, rest: &[String], action: RedactAction, key: &hmac::Key) {
    if rest.is_empty() {
        if action == RedactAction::Hash && !value.is_null() {
            *value = Value::String(keyed_hash(key, value));
        }
    } else {
        apply(value, rest, action, key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key() -> Arc<hmac::Key> {
        Arc::new(hmac::Key::new(hmac::HMAC_SHA256, b"test key"))
    }

    #[test]
    fn fields_are_dropped_or_hashed_at_any_depth() {
        let mut report = Report::default();
        let rules = parse_rules(
            "redact",
            &json!({"data.participantId": "hash", "data.name": "drop",
                    "data.faces.*.participantId": "hash", "data.meta.*": "drop"}),
            &mut report,
        );
        assert!(report.is_valid(), "{:?}", report.errors);
        let redactor = Redactor::new(&rules, key()).expect("rules");
        let mut data = json!({
            "participantId": "P001", "name": "Ada", "confidence": 0.9,
            "faces": [{"participantId": "P002", "x": 1}, {"x": 2}],
            "meta": {"email": "a@b.c"},
        });
        redactor.apply(&mut data);
        let p001 = keyed_hash(&key(), &json!("P001"));
        assert_eq!(p001.len(), 64);
        assert_eq!(data["participantId"], p001);
        assert!(data.get("name").is_none());
        assert_eq!(data["confidence"], 0.9);
        assert_eq!(
            data["faces"][0]["participantId"],
            keyed_hash(&key(), &json!("P002"))
        );
        assert_eq!(data["faces"][1], json!({"x": 2}));
        assert_eq!(data["meta"], json!({}));
        assert!(!data.to_string().contains("P001") && !data.to_string().contains("Ada"));
    }

    #[test]
    fn bad_rules_are_all_reported() {
        let mut report = Report::default();
        parse_rules(
            "redact",
            &json!({"participantId": "hash", "data..x": "drop", "data.y": "encrypt"}),
            &mut report,
        );
        assert_eq!(report.errors.len(), 3, "{:?}", report.errors);
    }
}
