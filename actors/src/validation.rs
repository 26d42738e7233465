//! Validation that reports every problem at once.
//!
//! A [`Report`] collects errors (the input is refused) and warnings (legal but risky).
//! [`FieldReader`] walks one JSON object, checks each known field and flags unknown ones,
//! so a config with five mistakes gets five messages in one answer.

use serde::Serialize;
use serde_json::{Map, Value};

/// Errors and warnings found in one input, each prefixed with the path of the field.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct Report {
    /// Problems that make the input unusable.
    pub errors: Vec<String>,
    /// Legal settings the user should double-check.
    pub warnings: Vec<String>,
}

impl Report {
    /// Records a problem that makes the input unusable.
    pub fn error(&mut self, message: impl Into<String>) {
        self.errors.push(message.into());
    }

    /// Records a legal but risky setting.
    pub fn warn(&mut self, message: impl Into<String>) {
        self.warnings.push(message.into());
    }

    /// True when no error was recorded (warnings do not count).
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }

    /// Appends another report's findings.
    pub fn merge(&mut self, other: Report) {
        self.errors.extend(other.errors);
        self.warnings.extend(other.warnings);
    }
}

/// Reads typed fields out of a JSON object, recording a clear message for each bad one.
pub struct FieldReader<'a> {
    path: String,
    object: Option<&'a Map<String, Value>>,
    seen: Vec<&'static str>,
    report: &'a mut Report,
}

impl<'a> FieldReader<'a> {
    /// Starts reading `value` found at `path`; `null` counts as an empty object.
    pub fn new(path: impl Into<String>, value: &'a Value, report: &'a mut Report) -> Self {
        let path = path.into();
        let object = match value {
            Value::Object(map) => Some(map),
            Value::Null => None,
            other => {
                report.error(format!("{path}: must be an object, got {}", kind_of(other)));
                None
            }
        };
        Self {
            path,
            object,
            seen: Vec::new(),
            report,
        }
    }

    fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        self.seen.push(key);
        self.object
            .and_then(|o| o.get(key))
            .filter(|v| !v.is_null())
    }

    fn field(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    /// The report, to add a finding the reader has no helper for.
    pub fn report(&mut self) -> &mut Report {
        self.report
    }

    /// Whether `key` is present and not null (and marks it as known).
    pub fn has(&mut self, key: &'static str) -> bool {
        self.get(key).is_some()
    }

    /// An unsigned integer within `min..=max`, or `default` when absent.
    pub fn u64(&mut self, key: &'static str, min: u64, max: u64, default: u64) -> u64 {
        match self.get(key) {
            None => default,
            Some(v) => match v.as_u64() {
                Some(n) if (min..=max).contains(&n) => n,
                _ => {
                    let field = self.field(key);
                    self.report
                        .error(format!("{field}: must be an integer {min}-{max}, got {v}"));
                    default
                }
            },
        }
    }

    /// An unsigned integer of at least `min` and at most the server's `ceiling`, or
    /// `default` when absent (a default above the ceiling is brought down to it). Going
    /// over the ceiling is an error that names the setting which sets it.
    pub fn u64_capped(
        &mut self,
        key: &'static str,
        min: u64,
        default: u64,
        ceiling: crate::guardrails::Ceiling,
    ) -> u64 {
        let default = default.min(ceiling.max);
        match self.get(key) {
            None => default,
            Some(v) => match v.as_u64() {
                Some(n) if n > ceiling.max && n >= min => {
                    let field = self.field(key);
                    self.report.error(format!(
                        "{field}: {n} is above this server's ceiling of {} ({})",
                        ceiling.max, ceiling.setting
                    ));
                    default
                }
                Some(n) if n >= min => n,
                _ => {
                    let field = self.field(key);
                    self.report.error(format!(
                        "{field}: must be an integer {min}-{}, got {v}",
                        ceiling.max
                    ));
                    default
                }
            },
        }
    }

    /// A boolean, or `default` when absent.
    pub fn bool(&mut self, key: &'static str, default: bool) -> bool {
        match self.get(key) {
            None => default,
            Some(Value::Bool(b)) => *b,
            Some(v) => {
                let field = self.field(key);
                self.report
                    .error(format!("{field}: must be true or false, got {v}"));
                default
            }
        }
    }

    /// A string, or `None` when absent (an empty string is an error).
    pub fn string(&mut self, key: &'static str) -> Option<String> {
        match self.get(key) {
            None => None,
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(v) => {
                let field = self.field(key);
                self.report
                    .error(format!("{field}: must be a non-empty string, got {v}"));
                None
            }
        }
    }

    /// The contents of a PEM certificate file named by `key` (a TLS `caFile`), or `None`
    /// when absent, unreadable or holding no certificate (the last two are errors).
    pub fn pem_file(&mut self, key: &'static str) -> Option<Vec<u8>> {
        let file = self.string(key)?;
        let field = self.field(key);
        match std::fs::read(&file) {
            Ok(pem) if pem.windows(17).any(|w| w == b"BEGIN CERTIFICATE") => Some(pem),
            Ok(_) => {
                self.report
                    .error(format!("{field}: {file} holds no PEM certificate"));
                None
            }
            Err(e) => {
                self.report
                    .error(format!("{field}: cannot read {file}: {e}"));
                None
            }
        }
    }

    /// One of `choices`, or `default` when absent.
    pub fn choice(
        &mut self,
        key: &'static str,
        choices: &[&'static str],
        default: &'static str,
    ) -> &'static str {
        match self.get(key) {
            None => default,
            Some(Value::String(s)) => match choices.iter().find(|c| **c == s.as_str()) {
                Some(c) => c,
                None => {
                    let field = self.field(key);
                    self.report.error(format!(
                        "{field}: must be one of {}, got {s:?}",
                        choices.join(", ")
                    ));
                    default
                }
            },
            Some(v) => {
                let field = self.field(key);
                self.report.error(format!(
                    "{field}: must be one of {}, got {v}",
                    choices.join(", ")
                ));
                default
            }
        }
    }

    /// The raw value of a field the caller checks itself.
    pub fn raw(&mut self, key: &'static str) -> Option<&'a Value> {
        self.get(key)
    }

    /// Reports every field that no getter asked for.
    pub fn finish(self) {
        if let Some(object) = self.object {
            for key in object.keys() {
                if !self.seen.contains(&key.as_str()) {
                    let known = if self.seen.is_empty() {
                        "none".to_string()
                    } else {
                        self.seen.join(", ")
                    };
                    self.report.error(format!(
                        "{}.{key}: unknown field (known fields: {known})",
                        self.path
                    ));
                }
            }
        }
    }
}

/// A short name for a JSON value's type, for error messages.
pub fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reader_collects_every_problem() {
        let mut report = Report::default();
        let value = json!({"a": 0, "b": "x", "c": "maybe", "zzz": 1});
        let mut r = FieldReader::new("cfg", &value, &mut report);
        assert_eq!(r.u64("a", 1, 10, 5), 5);
        assert_eq!(r.u64("b", 1, 10, 5), 5);
        assert_eq!(r.choice("c", &["yes", "no"], "no"), "no");
        assert_eq!(r.u64("d", 1, 10, 5), 5);
        r.finish();
        assert_eq!(report.errors.len(), 4, "{:?}", report.errors);
        assert!(report.errors[0].starts_with("cfg.a: must be an integer 1-10"));
        assert!(report.errors[3].starts_with("cfg.zzz: unknown field"));
    }
}
