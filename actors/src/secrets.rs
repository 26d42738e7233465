//! Secrets inside configurations: which values are secret, hiding them in answers, and
//! sealing them for the store.
//!
//! A value is secret when its key looks like one (`password`, `token`, `authorization`,
//! ...), when it is a request header other than a few harmless ones (an `X-Api-Key`, a
//! `Cookie` is as secret as a password), or when it is a URL carrying a password
//! (`mqtt://lab:pw@broker`). [`redact`] replaces them for every answer; a [`Sealer`]
//! encrypts them (AES-256-GCM) before a configuration is written to the store and opens
//! them when it is read back, so the database never holds them in clear.

use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::Value;

/// What secret values are replaced with in answers.
pub const REDACTED: &str = "***redacted***";
/// How a sealed value starts.
pub const SEALED_PREFIX: &str = "sealed:v1:";
/// Length of a key, in bytes.
pub const KEY_LEN: usize = 32;

/// Request headers whose values are shown: they carry no credentials.
const HARMLESS_HEADERS: [&str; 3] = ["content-type", "accept", "user-agent"];

/// Whether a field named `key` holds a secret.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "apikey",
        "api_key",
        "authorization",
        "credential",
        "private",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// Why a value is secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Secret {
    /// Under a secret-looking key, or a header value: all of it.
    Whole,
    /// A string holding URLs with passwords: the passwords.
    UrlPasswords,
}

/// Calls `f` on every secret value of `value`, with why it is secret.
fn visit(value: &mut Value, f: &mut impl FnMut(&mut Value, Secret)) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if v.is_null() {
                    continue;
                }
                if is_secret_key(k) {
                    f(v, Secret::Whole);
                } else if k.eq_ignore_ascii_case("headers") && v.is_object() {
                    for (name, header) in v.as_object_mut().into_iter().flatten() {
                        let harmless = HARMLESS_HEADERS
                            .iter()
                            .any(|h| name.eq_ignore_ascii_case(h));
                        if !harmless && !header.is_null() {
                            f(header, Secret::Whole);
                        }
                    }
                } else {
                    visit(v, f);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| visit(v, f)),
        Value::String(s) if has_url_password(s) => f(value, Secret::UrlPasswords),
        _ => {}
    }
}

/// Replaces secret-looking fields, the values of `headers` objects (but harmless ones) and
/// URL passwords in a JSON document.
pub fn redact(value: &mut Value) {
    visit(value, &mut |v, why| match why {
        Secret::Whole => *v = Value::String(REDACTED.into()),
        Secret::UrlPasswords => {
            if let Some(clean) = v.as_str().and_then(redact_url) {
                *v = Value::String(clean);
            }
        }
    });
}

fn has_url_password(s: &str) -> bool {
    s.contains("://") && redact_url(s).is_some()
}

/// Every `scheme://user:pass@host` in `s` → `scheme://user:***redacted***@host` (error
/// messages can name a URL more than once); `None` when there is nothing to hide.
pub fn redact_url(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut changed = false;
    while let Some(found) = rest.find("://") {
        let start = found + 3;
        // The authority ends at a path, or at anything that cannot be part of it.
        let end = rest[start..]
            .find(|c: char| c == '/' || c.is_whitespace() || c == '"' || c == '\'')
            .map_or(rest.len(), |i| start + i);
        let authority = &rest[start..end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&rest[..start + colon + 1]);
                out.push_str(REDACTED);
                out.push_str(&rest[start + at..end]);
                changed = true;
            }
            _ => out.push_str(&rest[..end]),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    changed.then_some(out)
}

/// Encrypts secret values for the store and decrypts them back (AES-256-GCM, a fresh
/// random nonce per value).
pub struct Sealer {
    key: LessSafeKey,
    random: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer { key: *** }")
    }
}

impl Sealer {
    /// A sealer with a 32-byte key.
    pub fn new(key: &[u8; KEY_LEN]) -> Self {
        // A 32-byte key is what AES-256-GCM takes: this cannot fail.
        let unbound = UnboundKey::new(&AES_256_GCM, key).unwrap_or_else(|_| unreachable!());
        Self {
            key: LessSafeKey::new(unbound),
            random: SystemRandom::new(),
        }
    }

    /// A random key, as the key file holds it (base64).
    pub fn generate_key() -> Result<String, String> {
        let mut key = [0u8; KEY_LEN];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| "the system's random number generator failed".to_string())?;
        Ok(base64::engine::general_purpose::STANDARD.encode(key))
    }

    /// Parses a base64 key of 32 bytes.
    pub fn parse_key(text: &str) -> Result<[u8; KEY_LEN], String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| format!("not base64: {e}"))?;
        bytes
            .try_into()
            .map_err(|b: Vec<u8>| format!("{} bytes; a key is {KEY_LEN}", b.len()))
    }

    /// `plain`, sealed.
    pub fn seal_str(&self, plain: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        // If the system cannot give randomness, nothing is safe to write anyway; a zero
        // nonce would be reused, so refuse loudly in the text instead of sealing weakly.
        if self.random.fill(&mut nonce).is_err() {
            return format!("{SEALED_PREFIX}unavailable");
        }
        let mut sealed = plain.as_bytes().to_vec();
        if self
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                &mut sealed,
            )
            .is_err()
        {
            return format!("{SEALED_PREFIX}unavailable");
        }
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!(
            "{SEALED_PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(out)
        )
    }

    /// The plain text of a sealed value.
    pub fn open_str(&self, sealed: &str) -> Result<String, String> {
        let body = sealed
            .strip_prefix(SEALED_PREFIX)
            .ok_or("not a sealed value")?;
        let mut bytes = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| "a sealed value is damaged")?;
        if bytes.len() < NONCE_LEN {
            return Err("a sealed value is damaged".into());
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[..NONCE_LEN]);
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                &mut bytes[NONCE_LEN..],
            )
            .map_err(|_| {
                "a sealed value does not open with this key: the store was written with another store.secret_key"
                    .to_string()
            })?;
        String::from_utf8(plain.to_vec()).map_err(|_| "a sealed value is damaged".to_string())
    }

    /// Seals every secret value of `value` (a whole secret string; a whole URL string
    /// that carries a password). Secrets that are not strings are sealed as their JSON.
    pub fn seal(&self, value: &mut Value) {
        visit(value, &mut |v, _| {
            let plain = match &*v {
                Value::String(s) => s.clone(),
                other => format!("{SEALED_JSON}{other}"),
            };
            *v = Value::String(self.seal_str(&plain));
        });
    }

    /// Opens every sealed value of `value`, wherever it is.
    pub fn open(&self, value: &mut Value) -> Result<(), String> {
        match value {
            Value::Object(map) => map.values_mut().try_for_each(|v| self.open(v)),
            Value::Array(items) => items.iter_mut().try_for_each(|v| self.open(v)),
            Value::String(s) if s.starts_with(SEALED_PREFIX) => {
                let plain = self.open_str(s)?;
                *value = match plain.strip_prefix(SEALED_JSON) {
                    Some(json) => serde_json::from_str(json).map_err(|e| e.to_string())?,
                    None => Value::String(plain),
                };
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// Marks a sealed secret that was not a string.
const SEALED_JSON: &str = "json:";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Value {
        json!({"distributors": {
            "mqtt": {"broker": "mqtts://lab:hunter2@broker:8883", "password": "pw", "qos": 1},
            "http": {"baseUrl": "http://127.0.0.1:9", "headers": {"X-Api-Key": "k", "Accept": "*/*"}},
            "redis": {"url": "redis://:pw@127.0.0.1:6379/0", "tokens": [1, 2]}}})
    }

    #[test]
    fn redaction_hides_every_kind_of_secret() {
        let mut v = sample();
        redact(&mut v);
        let d = &v["distributors"];
        assert_eq!(d["mqtt"]["password"], REDACTED);
        assert_eq!(
            d["mqtt"]["broker"],
            format!("mqtts://lab:{REDACTED}@broker:8883")
        );
        assert_eq!(d["http"]["headers"]["X-Api-Key"], REDACTED);
        assert_eq!(d["http"]["headers"]["Accept"], "*/*");
        assert_eq!(d["redis"]["tokens"], REDACTED);
        assert_eq!(d["http"]["baseUrl"], "http://127.0.0.1:9");
    }

    #[test]
    fn sealing_hides_every_secret_and_opens_back_to_the_same_document() {
        let key = Sealer::parse_key(&Sealer::generate_key().unwrap()).unwrap();
        let sealer = Sealer::new(&key);
        let original = sample();
        let mut sealed = original.clone();
        sealer.seal(&mut sealed);
        let text = sealed.to_string();
        for secret in ["hunter2", "\"pw\"", ":pw@", "\"k\""] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(sealed["distributors"]["mqtt"]["qos"], 1);
        assert_eq!(sealed["distributors"]["http"]["headers"]["Accept"], "*/*");
        let mut opened = sealed.clone();
        sealer.open(&mut opened).unwrap();
        assert_eq!(opened, original);
        let other = Sealer::new(&[7u8; KEY_LEN]);
        let mut wrong = sealed;
        assert!(other
            .open(&mut wrong)
            .unwrap_err()
            .contains("store.secret_key"));
    }
}
