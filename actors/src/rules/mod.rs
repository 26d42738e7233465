//! Rules that act on events: a `match` (event type, line or zone, direction, classes,
//! devices, sources, minimum confidence, an active schedule), cooldowns so one object does
//! not fire twice, and actions — a JSON log, frame captures, e-mails now and in digests,
//! an event into a session, a webhook.
//!
//! - this file: a rule's settings, their checks, and the match (with why not).
//! - [`engine`]: the rules in force, offered every event of sources and devices.
//! - [`actions`]: one worker per action with a bounded queue, retries, a breaker and
//!   counters.
//! - [`capture`]: the frame an event was raised on, as a JPEG with its box, line or zone.
//! - [`email`]: messages over SMTP.
//! - [`digest`]: matched events gathered and sent at intervals, kept in the store.

pub mod actions;
pub mod capture;
pub mod digest;
pub mod email;
pub mod engine;

use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveTime, Timelike, Utc, Weekday};
use serde_json::{Map, Value};

use crate::glob::Glob;
use crate::validation::{kind_of, Report};

/// What an action does.
#[derive(Debug, Clone, PartialEq)]
pub enum ActionConfig {
    /// One JSON line per matched event in a daily file.
    JsonLog,
    /// The frame saved as a JPEG with the object's box (and line or zone) drawn.
    FrameCapture,
    /// An e-mail now.
    EmailImmediate(email::EmailConfig),
    /// Matched events gathered and sent every interval or at set times.
    EmailDigest(digest::DigestConfig),
    /// The event routed into a session as `rule_matched`.
    Session {
        /// The session.
        session: String,
    },
    /// A JSON POST.
    Webhook {
        /// Where.
        url: String,
        /// Extra headers.
        headers: Vec<(String, String)>,
    },
}

impl ActionConfig {
    /// The action's type, as configured.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::JsonLog => "json_log",
            Self::FrameCapture => "frame_capture",
            Self::EmailImmediate(_) => "email_immediate",
            Self::EmailDigest(_) => "email_digest",
            Self::Session { .. } => "session",
            Self::Webhook { .. } => "webhook",
        }
    }

    /// Whether it needs the frame the event was raised on.
    pub fn uses_frame(&self) -> bool {
        match self {
            Self::FrameCapture => true,
            Self::EmailImmediate(e) => e.attach_capture,
            Self::EmailDigest(d) => d.thumbnails > 0,
            Self::JsonLog | Self::Session { .. } | Self::Webhook { .. } => false,
        }
    }
}

/// Events raised for every analysed frame: a rule takes them only when it names them,
/// so a rule without `events` does not read every frame's detections.
pub const PER_FRAME_EVENTS: &[&str] = &["detections"];

/// When a rule is active.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// Days it is active (all when empty).
    pub days: Vec<Weekday>,
    /// From (inclusive) ...
    pub from: NaiveTime,
    /// ... to (exclusive); before `from` means across midnight.
    pub to: NaiveTime,
    /// The time zone the days and hours are in.
    pub tz: chrono_tz::Tz,
}

impl Schedule {
    fn active(&self, at: DateTime<Utc>) -> bool {
        let local = at.with_timezone(&self.tz);
        if !self.days.is_empty() && !self.days.contains(&local.weekday()) {
            return false;
        }
        let t = local.time();
        if self.from <= self.to {
            t >= self.from && t < self.to
        } else {
            t >= self.from || t < self.to
        }
    }
}

/// Which events a rule takes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Matcher {
    /// Event types (globs; the seed's `LINE_CROSS` spellings read as `line_cross`).
    pub events: Vec<Glob>,
    /// Line ids.
    pub lines: Vec<Glob>,
    /// Zone ids.
    pub zones: Vec<Glob>,
    /// `in` or `out`.
    pub direction: Option<String>,
    /// Class names.
    pub classes: Vec<String>,
    /// Device serials.
    pub devices: Vec<Glob>,
    /// Source ids.
    pub sources: Vec<Glob>,
    /// Lowest confidence.
    pub min_confidence: Option<f64>,
    /// When it is active.
    pub schedule: Option<Schedule>,
}

/// One event as a rule sees it.
#[derive(Debug, Clone)]
pub struct EventView<'a> {
    /// Event type.
    pub name: &'a str,
    /// Its data.
    pub data: &'a Value,
    /// The source that raised it.
    pub source: Option<&'a str>,
    /// The device it is about.
    pub device: Option<&'a str>,
    /// When it happened.
    pub at: DateTime<Utc>,
}

/// An event type as rules compare it: the seed's `LINE_CROSS` is `line_cross`.
pub fn normalize(name: &str) -> String {
    name.to_ascii_lowercase()
}

impl Matcher {
    /// Whether the event type alone could match (checked before the data is read).
    pub fn takes_name(&self, name: &str) -> bool {
        if self.events.is_empty() {
            !PER_FRAME_EVENTS.contains(&name)
        } else {
            self.events.iter().any(|g| g.matches(name))
        }
    }

    /// `Ok` when the event matches, or why it does not.
    pub fn check(&self, e: &EventView<'_>) -> Result<(), String> {
        if !self.takes_name(e.name) {
            return Err(if self.events.is_empty() {
                format!(
                    "{} is raised for every frame: a rule takes it only when its events name it",
                    e.name
                )
            } else {
                format!("event {} is not one of {}", e.name, list(&self.events))
            });
        }
        let field = |k: &str| e.data.get(k).and_then(Value::as_str);
        if !self.lines.is_empty() {
            match field("line_id") {
                Some(l) if self.lines.iter().any(|g| g.matches(l)) => {}
                Some(l) => return Err(format!("line {l} is not one of {}", list(&self.lines))),
                None => return Err("the event has no line_id".into()),
            }
        }
        if !self.zones.is_empty() {
            match field("zone_id") {
                Some(z) if self.zones.iter().any(|g| g.matches(z)) => {}
                Some(z) => return Err(format!("zone {z} is not one of {}", list(&self.zones))),
                None => return Err("the event has no zone_id".into()),
            }
        }
        if let Some(want) = &self.direction {
            match field("direction") {
                Some(d) if d == want => {}
                Some(d) => return Err(format!("direction {d} is not {want}")),
                None => return Err("the event has no direction".into()),
            }
        }
        if !self.classes.is_empty() {
            match field("class_name") {
                Some(c) if self.classes.iter().any(|w| w == c) => {}
                Some(c) => {
                    return Err(format!(
                        "class {c} is not one of {}",
                        self.classes.join(", ")
                    ))
                }
                None => return Err("the event has no class_name".into()),
            }
        }
        if !self.devices.is_empty() {
            match e.device {
                Some(d) if self.devices.iter().any(|g| g.matches(d)) => {}
                Some(d) => return Err(format!("device {d} is not one of {}", list(&self.devices))),
                None => return Err("the event is about no registered device".into()),
            }
        }
        if !self.sources.is_empty() {
            match e.source {
                Some(s) if self.sources.iter().any(|g| g.matches(s)) => {}
                Some(s) => return Err(format!("source {s} is not one of {}", list(&self.sources))),
                None => return Err("the event was raised by no source".into()),
            }
        }
        if let Some(min) = self.min_confidence {
            match e.data.get("confidence").and_then(Value::as_f64) {
                Some(c) if c >= min => {}
                Some(c) => return Err(format!("confidence {c:.2} is below {min}")),
                None => return Err("the event has no confidence".into()),
            }
        }
        if let Some(s) = &self.schedule {
            if !s.active(e.at) {
                return Err(format!(
                    "outside the schedule ({} in {})",
                    e.at.with_timezone(&s.tz).format("%a %H:%M"),
                    s.tz
                ));
            }
        }
        Ok(())
    }
}

fn list(globs: &[Glob]) -> String {
    globs
        .iter()
        .map(|g| g.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One rule.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleConfig {
    /// Its name.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// Whether it acts.
    pub enabled: bool,
    /// Which events it takes.
    pub matcher: Matcher,
    /// After firing, the rule rests this long (`cooldownSecs`).
    pub cooldown: Duration,
    /// After firing for a track (or a zone, or a line), it does not fire for it again
    /// this long (`trackCooldownSecs`).
    pub track_cooldown: Duration,
    /// What it does.
    pub actions: Vec<ActionConfig>,
}

const RULE_FIELDS: &[&str] = &[
    "description",
    "enabled",
    "match",
    "cooldownSecs",
    "trackCooldownSecs",
    "actions",
];
const MATCH_FIELDS: &[&str] = &[
    "events",
    "event",
    "lines",
    "zones",
    "direction",
    "classes",
    "devices",
    "sources",
    "minConfidence",
    "schedule",
];

fn strings(at: &str, v: Option<&Value>, report: &mut Report) -> Vec<String> {
    match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| match item.as_str() {
                Some(s) if !s.is_empty() && s.len() <= 128 => Some(s.to_string()),
                _ => {
                    report.error(format!("{at}[{i}]: must be a non-empty string"));
                    None
                }
            })
            .collect(),
        Some(other) => {
            report.error(format!(
                "{at}: must be a string or a list of strings, got {}",
                kind_of(other)
            ));
            Vec::new()
        }
    }
}

fn globs(at: &str, v: Option<&Value>, report: &mut Report) -> Vec<Glob> {
    strings(at, v, report)
        .iter()
        .map(|s| Glob::new(&normalize_if_event(at, s)))
        .collect()
}

fn normalize_if_event(at: &str, s: &str) -> String {
    if at.ends_with("events") || at.ends_with("event") {
        normalize(s)
    } else {
        s.to_string()
    }
}

fn secs(map: &Map<String, Value>, key: &str, report: &mut Report) -> Duration {
    match map.get(key) {
        None | Some(Value::Null) => Duration::ZERO,
        Some(v) => match v.as_f64().filter(|s| (0.0..=31_536_000.0).contains(s)) {
            Some(s) => Duration::from_secs_f64(s),
            None => {
                report.error(format!("{key}: seconds from 0 to a year, got {v}"));
                Duration::ZERO
            }
        },
    }
}

/// A time of day `HH:MM`.
pub fn time_of_day(at: &str, v: &Value, report: &mut Report) -> Option<NaiveTime> {
    let parsed = v
        .as_str()
        .and_then(|s| NaiveTime::parse_from_str(s, "%H:%M").ok());
    if parsed.is_none() {
        report.error(format!("{at}: a time of day as \"HH:MM\", got {v}"));
    }
    parsed
}

/// A time zone name (`Europe/Amsterdam`, `UTC`).
pub fn time_zone(at: &str, v: Option<&Value>, report: &mut Report) -> chrono_tz::Tz {
    match v {
        None | Some(Value::Null) => chrono_tz::UTC,
        Some(Value::String(s)) => s.parse().unwrap_or_else(|_| {
            report.error(format!(
                "{at}: {s:?} is not a time zone of the IANA database (Europe/Amsterdam, UTC)"
            ));
            chrono_tz::UTC
        }),
        Some(other) => {
            report.error(format!("{at}: a time zone name, got {}", kind_of(other)));
            chrono_tz::UTC
        }
    }
}

fn schedule(v: &Value, report: &mut Report) -> Option<Schedule> {
    let Some(map) = v.as_object() else {
        report.error("match.schedule: an object with days, from, to, timezone");
        return None;
    };
    for key in map.keys() {
        if !["days", "from", "to", "timezone"].contains(&key.as_str()) {
            report.error(format!(
                "match.schedule.{key}: unknown field (days, from, to, timezone)"
            ));
        }
    }
    let days = strings("match.schedule.days", map.get("days"), report)
        .iter()
        .filter_map(|d| {
            d.parse::<Weekday>().ok().or_else(|| {
                report.error(format!(
                    "match.schedule.days: {d:?} is not a day (mon, tue, ...)"
                ));
                None
            })
        })
        .collect();
    let from = map.get("from").map_or(Some(NaiveTime::MIN), |v| {
        time_of_day("match.schedule.from", v, report)
    });
    let to = map
        .get("to")
        .map_or(NaiveTime::from_hms_opt(23, 59, 59), |v| {
            time_of_day("match.schedule.to", v, report)
        });
    let tz = time_zone("match.schedule.timezone", map.get("timezone"), report);
    Some(Schedule {
        days,
        from: from?,
        to: to?,
        tz,
    })
}

impl RuleConfig {
    /// Reads `body` as rule `name`; every problem is listed.
    pub fn parse(name: &str, body: &Value) -> Result<RuleConfig, Report> {
        let mut report = Report::default();
        if let Err(e) = crate::session::spec::check_session_id(name) {
            report.error(format!("name: {e}"));
        }
        let Some(map) = body.as_object() else {
            report.error(format!(
                "the body must be a JSON object with \"match\" and \"actions\", got {}",
                kind_of(body)
            ));
            return Err(report);
        };
        for key in map.keys() {
            if !RULE_FIELDS.contains(&key.as_str()) {
                report.error(format!(
                    "{key}: unknown field (fields: {})",
                    RULE_FIELDS.join(", ")
                ));
            }
        }
        let m = match map.get("match") {
            Some(Value::Object(m)) => m.clone(),
            None | Some(Value::Null) => Map::new(),
            Some(other) => {
                report.error(format!("match: must be an object, got {}", kind_of(other)));
                Map::new()
            }
        };
        for key in m.keys() {
            if !MATCH_FIELDS.contains(&key.as_str()) {
                report.error(format!(
                    "match.{key}: unknown field (fields: {})",
                    MATCH_FIELDS.join(", ")
                ));
            }
        }
        let mut events = globs("match.events", m.get("events"), &mut report);
        events.extend(globs("match.event", m.get("event"), &mut report));
        let direction = match m.get("direction") {
            None | Some(Value::Null) => None,
            Some(Value::String(d)) if d == "in" || d == "out" => Some(d.clone()),
            Some(other) => {
                report.error(format!("match.direction: \"in\" or \"out\", got {other}"));
                None
            }
        };
        let min_confidence = match m.get("minConfidence") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_f64().filter(|c| (0.0..=1.0).contains(c)) {
                Some(c) => Some(c),
                None => {
                    report.error(format!("match.minConfidence: from 0 to 1, got {v}"));
                    None
                }
            },
        };
        let schedule = m
            .get("schedule")
            .filter(|v| !v.is_null())
            .and_then(|v| schedule(v, &mut report));
        let matcher = Matcher {
            events,
            lines: globs("match.lines", m.get("lines"), &mut report),
            zones: globs("match.zones", m.get("zones"), &mut report),
            direction,
            classes: strings("match.classes", m.get("classes"), &mut report),
            devices: globs("match.devices", m.get("devices"), &mut report),
            sources: globs("match.sources", m.get("sources"), &mut report),
            min_confidence,
            schedule,
        };
        let mut actions = Vec::new();
        match map.get("actions") {
            Some(Value::Array(items)) if !items.is_empty() => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(a) = action(&format!("actions[{i}]"), item, &mut report) {
                        actions.push(a);
                    }
                }
            }
            _ => report.error("actions: a non-empty list of actions (json_log, frame_capture, email_immediate, email_digest, session, webhook)"),
        }
        let enabled = match map.get("enabled") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                report.error(format!("enabled: true or false, got {other}"));
                true
            }
        };
        let description = match map.get("description") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(d)) if d.len() <= 500 => d.clone(),
            Some(_) => {
                report.error("description: a string of at most 500 bytes");
                String::new()
            }
        };
        let rule = RuleConfig {
            name: name.to_string(),
            description,
            enabled,
            matcher,
            cooldown: secs(map, "cooldownSecs", &mut report),
            track_cooldown: secs(map, "trackCooldownSecs", &mut report),
            actions,
        };
        if report.is_valid() {
            Ok(rule)
        } else {
            Err(report)
        }
    }
}

fn action(at: &str, v: &Value, report: &mut Report) -> Option<ActionConfig> {
    let (kind, map) = match v {
        Value::String(kind) => (kind.clone(), Map::new()),
        Value::Object(map) => match map.get("type").and_then(Value::as_str) {
            Some(kind) => (kind.to_string(), map.clone()),
            None => {
                report.error(format!("{at}.type: required"));
                return None;
            }
        },
        other => {
            report.error(format!(
                "{at}: an action type or an object with \"type\", got {}",
                kind_of(other)
            ));
            return None;
        }
    };
    let only = |known: &[&str], report: &mut Report| {
        for key in map.keys() {
            if key != "type" && !known.contains(&key.as_str()) {
                report.error(format!(
                    "{at}.{key}: unknown field for {kind} (fields: type{}{})",
                    if known.is_empty() { "" } else { ", " },
                    known.join(", ")
                ));
            }
        }
    };
    match kind.as_str() {
        "json_log" => {
            only(&[], report);
            Some(ActionConfig::JsonLog)
        }
        "frame_capture" => {
            only(&[], report);
            Some(ActionConfig::FrameCapture)
        }
        "email_immediate" => {
            only(email::FIELDS, report);
            email::EmailConfig::parse(at, &map, report).map(ActionConfig::EmailImmediate)
        }
        "email_digest" => {
            only(digest::FIELDS, report);
            digest::DigestConfig::parse(at, &map, report).map(ActionConfig::EmailDigest)
        }
        "session" => {
            only(&["session"], report);
            match map.get("session").and_then(Value::as_str) {
                Some(crate::system::SYSTEM_SESSION) => {
                    report.error(format!(
                        "{at}.session: \"system\" carries the server's own events; only the server writes into it"
                    ));
                    None
                }
                Some(s) if crate::session::spec::check_session_id(s).is_ok() => {
                    Some(ActionConfig::Session {
                        session: s.to_string(),
                    })
                }
                _ => {
                    report.error(format!("{at}.session: a session id"));
                    None
                }
            }
        }
        "webhook" => {
            only(&["url", "headers"], report);
            let url = map.get("url").and_then(Value::as_str).unwrap_or_default();
            if !(url.starts_with("http://") || url.starts_with("https://"))
                || reqwest::Url::parse(url).is_err()
            {
                report.error(format!("{at}.url: an http:// or https:// URL"));
            }
            let mut headers = Vec::new();
            match map.get("headers") {
                None | Some(Value::Null) => {}
                Some(Value::Object(h)) => {
                    for (k, v) in h {
                        match v.as_str() {
                            Some(v)
                                if reqwest::header::HeaderName::from_bytes(k.as_bytes())
                                    .is_ok()
                                    && reqwest::header::HeaderValue::from_str(v).is_ok() =>
                            {
                                headers.push((k.clone(), v.to_string()))
                            }
                            _ => report.error(format!("{at}.headers.{k}: a valid header")),
                        }
                    }
                }
                Some(_) => report.error(format!("{at}.headers: an object of name → value")),
            }
            Some(ActionConfig::Webhook {
                url: url.to_string(),
                headers,
            })
        }
        other => {
            report.error(format!(
                "{at}.type: {other:?} is not an action (json_log, frame_capture, email_immediate, email_digest, session, webhook)"
            ));
            None
        }
    }
}

/// `{name}` placeholders of an e-mail template filled from a matched event.
pub fn render(template: &str, rule: &str, e: &EventView<'_>) -> String {
    let field = |k: &str| match e.data.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    template
        .replace("{rule}", rule)
        .replace("{event}", e.name)
        .replace("{source}", e.source.unwrap_or(""))
        .replace("{device}", e.device.unwrap_or(""))
        .replace("{line}", &field("line_id"))
        .replace("{zone}", &field("zone_id"))
        .replace("{class}", &field("class_name"))
        .replace("{direction}", &field("direction"))
        .replace("{track}", &field("track_id"))
        .replace("{time}", &e.at.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

/// Seconds of the day, for tests of schedules.
pub fn seconds_of_day(t: NaiveTime) -> u32 {
    t.num_seconds_from_midnight()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn view<'a>(name: &'a str, data: &'a Value, at: DateTime<Utc>) -> EventView<'a> {
        EventView {
            name,
            data,
            source: Some("driveway"),
            device: Some("jetson-01"),
            at,
        }
    }

    #[test]
    fn a_rule_says_why_an_event_does_not_match() {
        let rule = RuleConfig::parse(
            "car-in",
            &json!({"match": {"events": ["LINE_CROSS"], "lines": ["entry"], "direction": "in",
                "classes": ["car"], "devices": ["jetson-*"], "minConfidence": 0.5,
                "schedule": {"days": ["mon", "tue", "wed", "thu", "fri"], "from": "08:00", "to": "18:00",
                    "timezone": "Europe/Amsterdam"}},
                "actions": ["json_log"]}),
        )
        .unwrap();
        // Friday 2026-11-27 10:00 UTC is 11:00 in Amsterdam.
        let friday = Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap();
        let car =
            json!({"line_id": "entry", "direction": "in", "class_name": "car", "confidence": 0.8});
        assert_eq!(
            rule.matcher.check(&view("line_cross", &car, friday)),
            Ok(())
        );
        let out =
            json!({"line_id": "entry", "direction": "out", "class_name": "car", "confidence": 0.8});
        assert_eq!(
            rule.matcher.check(&view("line_cross", &out, friday)),
            Err("direction out is not in".into())
        );
        let weak =
            json!({"line_id": "entry", "direction": "in", "class_name": "car", "confidence": 0.3});
        assert!(rule
            .matcher
            .check(&view("line_cross", &weak, friday))
            .unwrap_err()
            .contains("below"));
        let saturday = Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap();
        assert!(rule
            .matcher
            .check(&view("line_cross", &car, saturday))
            .unwrap_err()
            .contains("schedule"));
        let evening = Utc.with_ymd_and_hms(2026, 11, 27, 17, 30, 0).unwrap();
        assert!(
            rule.matcher
                .check(&view("line_cross", &car, evening))
                .is_err(),
            "18:30 in Amsterdam"
        );
        assert!(rule
            .matcher
            .check(&view("zone_enter", &car, friday))
            .unwrap_err()
            .contains("not one of line_cross"));
    }

    #[test]
    fn every_problem_of_a_rule_is_listed() {
        let bad = RuleConfig::parse(
            "x",
            &json!({"match": {"direction": "up", "minConfidence": 2, "colour": "red",
                "schedule": {"from": "25:00", "timezone": "Mars/Base"}},
                "actions": [{"type": "teleport"}, {"type": "webhook", "url": "ftp://x"}], "cooldownSecs": -1}),
        )
        .unwrap_err();
        for needle in [
            "match.direction",
            "match.minConfidence",
            "match.colour",
            "match.schedule.from",
            "match.schedule.timezone",
            "actions[0].type",
            "actions[1].url",
            "cooldownSecs",
        ] {
            assert!(
                bad.errors.iter().any(|e| e.starts_with(needle)),
                "{needle} in {:?}",
                bad.errors
            );
        }
    }
}
