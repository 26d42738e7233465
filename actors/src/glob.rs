//! Glob patterns for event names and channels (`face_*`, `device:SN123:*`, `track_?`).
//!
//! `*` matches any run of characters (including none), `?` exactly one; everything else
//! matches itself. No character classes: event names are plain identifiers.

use std::fmt;

/// Longest pattern a client may send.
pub const MAX_PATTERN_LEN: usize = 128;
/// What a client may send as a pattern, for error messages.
pub const PATTERN_RULE: &str = "1-128 letters, digits, _ . : - and the wildcards * ?";

/// Whether `pattern` is one a client may send (subscriptions, token scopes): 1-128 of
/// letters, digits, `_ . : -` and the wildcards.
pub fn is_valid_pattern(pattern: &str) -> bool {
    !pattern.is_empty()
        && pattern.len() <= MAX_PATTERN_LEN
        && pattern
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.:-*?".contains(c))
}

/// A compiled pattern; literal patterns skip the wildcard matcher entirely.
#[derive(Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: Box<str>,
    literal: bool,
}

impl Glob {
    /// Compiles `pattern`; every string is a valid pattern.
    pub fn new(pattern: &str) -> Self {
        Self {
            pattern: pattern.into(),
            literal: !pattern.contains(['*', '?']),
        }
    }

    /// The pattern as given.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether the pattern has wildcards.
    pub fn is_literal(&self) -> bool {
        self.literal
    }

    /// Number of non-wildcard characters: the more, the more specific the pattern.
    pub fn specificity(&self) -> usize {
        self.pattern
            .chars()
            .filter(|c| *c != '*' && *c != '?')
            .count()
    }

    /// Whether every name `other` matches is also matched by this pattern, e.g. `face_*`
    /// covers `face_detected` and `face_d*` but neither `*` nor `f?ce_*`. Sound, not
    /// complete: when unsure it answers no (used to keep a subscription inside a scope).
    pub fn covers(&self, other: &Glob) -> bool {
        let (p, o) = (self.pattern.as_bytes(), other.pattern.as_bytes());
        // reach[j]: this pattern's first i bytes can absorb other's first j bytes.
        let mut reach = vec![false; o.len() + 1];
        reach[0] = true;
        for &c in p {
            let mut next = vec![false; o.len() + 1];
            for j in 0..=o.len() {
                if c == b'*' {
                    // A star absorbs any run of the other pattern, wildcards included.
                    next[j] = reach[j] || (j > 0 && next[j - 1]);
                } else if j > 0 {
                    let d = o[j - 1];
                    let single = if c == b'?' {
                        d != b'*' && d != b'?'
                    } else {
                        c == d
                    };
                    next[j] = reach[j - 1] && single;
                }
            }
            reach = next;
        }
        reach[o.len()]
    }

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        if self.literal {
            return &*self.pattern == text;
        }
        wildcard_match(self.pattern.as_bytes(), text.as_bytes())
    }
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.pattern)
    }
}

/// Linear-time wildcard matching with single backtrack point (the classic two-pointer walk).
/// Works on bytes; `?` therefore matches one byte, which is what ASCII event names need.
fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<usize> = None;
    let mut star_t = 0usize;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some(p);
            star_t = t;
            p += 1;
        } else if let Some(s) = star {
            p = s + 1;
            star_t += 1;
            t = star_t;
        } else {
            return false;
        }
    }
    while p < pattern.len() && pattern[p] == b'*' {
        p += 1;
    }
    p == pattern.len()
}

#[cfg(test)]
mod tests {
    use super::Glob;

    #[test]
    fn matches_like_a_shell_glob() {
        let cases = [
            ("face_*", "face_detected", true),
            ("face_*", "face_", true),
            ("face_*", "track_started", false),
            ("*", "", true),
            ("device:*", "device:SN123:stream", true),
            ("device:SN123:*", "device:SN124:stream", false),
            ("track_?????", "track_ended", true),
            ("track_?????", "track_started", false),
            ("*_detected", "face_detected", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("events.line_cross", "events.line_cross", true),
            ("events.line_cross", "events.line_crosS", false),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(
                Glob::new(pattern).matches(text),
                expected,
                "{pattern} vs {text}"
            );
        }
    }

    #[test]
    fn covering_keeps_a_subscription_inside_a_scope() {
        let cases = [
            ("face_*", "face_detected", true),
            ("face_*", "face_d*", true),
            ("face_*", "face_*", true),
            ("face_*", "*", false),
            ("face_*", "f*", false),
            ("face_*", "f?ce_*", false),
            ("a?c", "a*c", false),
            ("a?c", "a?c", false),
            ("a?c", "abc", true),
            ("*", "anything*", true),
            ("device:SN123:*", "device:SN123:stream.status", true),
            ("device:SN123:*", "device:*", false),
            ("*_detected", "face_detected", true),
            ("*_detected", "*", false),
        ];
        for (scope, wanted, expected) in cases {
            assert_eq!(
                Glob::new(scope).covers(&Glob::new(wanted)),
                expected,
                "{scope} covers {wanted}"
            );
        }
    }

    #[test]
    fn specificity_counts_literal_characters() {
        assert_eq!(Glob::new("face_*").specificity(), 5);
        assert!(Glob::new("*").specificity() < Glob::new("f*").specificity());
    }
}
