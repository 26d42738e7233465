//! Glob patterns for event names and channels (`face_*`, `device:SN123:*`, `track_?`).
//!
//! `*` matches any run of characters (including none), `?` exactly one; everything else
//! matches itself. No character classes: event names are plain identifiers.

use std::fmt;

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
    fn specificity_counts_literal_characters() {
        assert_eq!(Glob::new("face_*").specificity(), 5);
        assert!(Glob::new("*").specificity() < Glob::new("f*").specificity());
    }
}
