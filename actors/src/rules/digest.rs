//! Digests: matched events gathered and sent every interval or at set times of day, with
//! counts per line or zone and class, and thumbnails. What is gathered is kept in the
//! store as it arrives, so a restart loses nothing; a digest sent is cleared (and its time
//! kept) right after, so a restart does not send it again.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, NaiveTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::email::recipients;
use super::time_of_day;
use crate::validation::{kind_of, Report};

/// What an `email_digest` action sends, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct DigestConfig {
    /// Recipients.
    pub to: Vec<String>,
    /// Subject template (`{rule}`, `{count}`).
    pub subject: String,
    /// Send every this long (`everySecs`) ...
    pub every: Option<Duration>,
    /// ... or at these times of day (`at`, `["08:00", "18:00"]`) ...
    pub at: Vec<NaiveTime>,
    /// ... in this time zone (`timezone`, default UTC).
    pub tz: chrono_tz::Tz,
    /// Thumbnails attached at most (`thumbnails`, default 12).
    pub thumbnails: usize,
}

/// Fields of an `email_digest` action.
pub const FIELDS: &[&str] = &["to", "subject", "everySecs", "at", "timezone", "thumbnails"];

/// Items a digest holds at most; beyond, events are only counted.
pub const MAX_ITEMS: usize = 1000;

impl DigestConfig {
    pub(super) fn parse(at: &str, map: &Map<String, Value>, report: &mut Report) -> Option<Self> {
        let every = match map.get("everySecs") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_u64().filter(|s| (1..=31 * 86_400).contains(s)) {
                Some(s) => Some(Duration::from_secs(s)),
                None => {
                    report.error(format!("{at}.everySecs: 1 second to 31 days, got {v}"));
                    None
                }
            },
        };
        let times = match map.get("at") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, t)| time_of_day(&format!("{at}.at[{i}]"), t, report))
                .collect(),
            Some(other) => {
                report.error(format!(
                    "{at}.at: a list of \"HH:MM\", got {}",
                    kind_of(other)
                ));
                Vec::new()
            }
        };
        if every.is_none() && times.is_empty() {
            report.error(format!("{at}: give everySecs or at (times of day)"));
        }
        let thumbnails = match map.get("thumbnails") {
            None => 12,
            Some(v) => match v.as_u64().filter(|n| *n <= 50) {
                Some(n) => n as usize,
                None => {
                    report.error(format!("{at}.thumbnails: 0 to 50, got {v}"));
                    12
                }
            },
        };
        Some(DigestConfig {
            to: recipients(at, map.get("to"), report),
            subject: match map.get("subject").and_then(Value::as_str) {
                Some(s) => s.to_string(),
                None => "[Synopticon] {rule}: {count} event(s)".into(),
            },
            every,
            at: times,
            tz: super::time_zone(&format!("{at}.timezone"), map.get("timezone"), report),
            thumbnails,
        })
    }

    /// When the digest after one sent (or begun) at `since` is due.
    pub fn due_after(&self, since: DateTime<Utc>) -> DateTime<Utc> {
        let mut due: Option<DateTime<Utc>> = self
            .every
            .and_then(|e| chrono::Duration::from_std(e).ok())
            .map(|e| since + e);
        if !self.at.is_empty() {
            let local = since.with_timezone(&self.tz);
            for day in 0..=1 {
                let date = local.date_naive() + chrono::Duration::days(day);
                for t in &self.at {
                    let Some(candidate) =
                        self.tz.from_local_datetime(&date.and_time(*t)).earliest()
                    else {
                        continue;
                    };
                    let candidate = candidate.with_timezone(&Utc);
                    if candidate > since && due.is_none_or(|d| candidate < d) {
                        due = Some(candidate);
                    }
                }
            }
        }
        due.unwrap_or(since + chrono::Duration::days(1))
    }
}

/// One gathered event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Item {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Event type.
    pub event: String,
    /// Source.
    pub source: Option<String>,
    /// Device.
    pub device: Option<String>,
    /// Line or zone it is about.
    pub place: Option<String>,
    /// Class.
    pub class: Option<String>,
    /// Its thumbnail (base64 JPEG), for the first few.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<String>,
}

/// A digest's state, as kept in the store.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DigestState {
    /// Items gathered since the last digest.
    pub items: Vec<Item>,
    /// Events beyond [`MAX_ITEMS`], counted only.
    #[serde(default)]
    pub overflow: u64,
    /// When the last digest went (or when gathering began).
    pub since: Option<DateTime<Utc>>,
    /// Digests sent so far.
    #[serde(default)]
    pub sent: u64,
}

impl DigestState {
    /// Events gathered.
    pub fn count(&self) -> u64 {
        self.items.len() as u64 + self.overflow
    }
}

/// The subject and text of a digest, and its thumbnails.
pub fn compose(
    config: &DigestConfig,
    rule: &str,
    state: &DigestState,
) -> (String, String, Vec<(String, bytes::Bytes)>) {
    use base64::Engine as _;
    let count = state.count();
    let subject = config
        .subject
        .replace("{rule}", rule)
        .replace("{count}", &count.to_string());
    let mut by_place: BTreeMap<(String, String), u64> = BTreeMap::new();
    for item in &state.items {
        let key = (
            item.place.clone().unwrap_or_else(|| "-".into()),
            item.class.clone().unwrap_or_else(|| "-".into()),
        );
        *by_place.entry(key).or_default() += 1;
    }
    let mut body = format!(
        "Rule {rule}: {count} event(s) since {}.\n\nBy line or zone and class:\n",
        state
            .since
            .map(|s| s.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_else(|| "the start".into())
    );
    for ((place, class), n) in &by_place {
        body.push_str(&format!("  {place:<20} {class:<15} {n}\n"));
    }
    if state.overflow > 0 {
        body.push_str(&format!(
            "  (and {} more not listed: a digest lists at most {MAX_ITEMS})\n",
            state.overflow
        ));
    }
    body.push_str("\nEvents:\n");
    for item in state.items.iter().take(100) {
        body.push_str(&format!(
            "  {}  {}  {}  {}\n",
            item.at.format("%Y-%m-%d %H:%M:%S"),
            item.event,
            item.device
                .as_deref()
                .or(item.source.as_deref())
                .unwrap_or("-"),
            item.place.as_deref().unwrap_or("-")
        ));
    }
    let thumbnails = state
        .items
        .iter()
        .filter_map(|i| i.thumbnail.as_ref().map(|t| (i, t)))
        .take(config.thumbnails)
        .enumerate()
        .filter_map(|(n, (item, b64))| {
            let jpeg = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
            Some((
                format!(
                    "{:02}-{}-{}.jpg",
                    n + 1,
                    item.event,
                    item.at.format("%H%M%S")
                ),
                bytes::Bytes::from(jpeg),
            ))
        })
        .collect();
    (subject, body, thumbnails)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_digest_is_due_at_the_next_time_of_day_or_interval() {
        let mut report = Report::default();
        let map = json!({"to": "ops@lab.example", "at": ["08:00", "18:00"], "timezone": "Europe/Amsterdam"});
        let config = DigestConfig::parse("d", map.as_object().unwrap(), &mut report).unwrap();
        assert!(report.is_valid(), "{:?}", report.errors);
        // 10:00 UTC is 11:00 in Amsterdam: next is 18:00 there, 17:00 UTC.
        let since = Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap();
        assert_eq!(
            config.due_after(since),
            Utc.with_ymd_and_hms(2026, 11, 27, 17, 0, 0).unwrap()
        );
        // After 18:00 there, the next is 08:00 tomorrow (07:00 UTC).
        let late = Utc.with_ymd_and_hms(2026, 11, 27, 17, 30, 0).unwrap();
        assert_eq!(
            config.due_after(late),
            Utc.with_ymd_and_hms(2026, 11, 28, 7, 0, 0).unwrap()
        );
        let every = json!({"to": ["a@b.example"], "everySecs": 60});
        let config = DigestConfig::parse("d", every.as_object().unwrap(), &mut report).unwrap();
        assert_eq!(
            config.due_after(since),
            since + chrono::Duration::seconds(60)
        );
    }

    #[test]
    fn a_digest_counts_by_place_and_class() {
        let at = Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap();
        let item = |place: &str, class: &str| Item {
            at,
            event: "line_cross".into(),
            source: Some("gate".into()),
            device: None,
            place: Some(place.into()),
            class: Some(class.into()),
            thumbnail: None,
        };
        let state = DigestState {
            items: vec![
                item("entry", "car"),
                item("entry", "car"),
                item("entry", "person"),
            ],
            overflow: 2,
            since: Some(at),
            sent: 0,
        };
        let mut report = Report::default();
        let map = json!({"to": "a@b.example", "everySecs": 60});
        let config = DigestConfig::parse("d", map.as_object().unwrap(), &mut report).unwrap();
        let (subject, body, thumbs) = compose(&config, "gate", &state);
        assert_eq!(subject, "[Synopticon] gate: 5 event(s)");
        assert!(
            body.contains("entry                car             2"),
            "{body}"
        );
        assert!(body.contains("and 2 more"), "{body}");
        assert!(thumbs.is_empty());
    }
}
