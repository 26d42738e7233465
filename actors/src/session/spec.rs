//! A session request (`POST /api/v1/sessions` body or a `[[sessions.declared]]` entry)
//! and its resolution against a template into the configuration the session runs with.
//!
//! Resolution never stops at the first problem: the [`Report`] lists every error and
//! warning, which is what `POST /api/v1/sessions/validate` returns.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::placeholders::{self, ProcessEnvironment};
use super::redaction::{parse_rules, RedactAction};
use super::routing::{parse_kinds, parse_routing, warn_unreachable, EventRouting};
use super::templates::TemplateStore;
use crate::distributor::{parse_config, DistributorKind};
use crate::guardrails::Guardrails;
use crate::validation::{kind_of, Report};

/// Longest session id.
pub const MAX_SESSION_ID_LEN: usize = 128;

/// Checks a session id: 1-128 characters from letters, digits and `_ . -`, starting with
/// a letter or digit (it appears in URLs, topics and client ids).
pub fn check_session_id(id: &str) -> Result<(), String> {
    let first_ok = id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if id.is_empty() || id.len() > MAX_SESSION_ID_LEN || !first_ok || !rest_ok {
        return Err(format!(
            "{id:?} must be 1-{MAX_SESSION_ID_LEN} letters, digits, _ . or -, starting with a letter or digit"
        ));
    }
    Ok(())
}

/// The configuration a session runs with, after template and overrides are merged.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionConfig {
    /// Session id.
    pub id: String,
    /// Template it started from.
    pub template: Option<String>,
    /// Distributors running now.
    pub enabled_distributors: Vec<DistributorKind>,
    /// Settings per distributor, enabled or not (a disabled one keeps its settings).
    pub distributors: BTreeMap<DistributorKind, Value>,
    /// Event routing.
    pub event_routing: EventRouting,
    /// Vision sources whose events this session receives (`"*"`: all).
    #[serde(default)]
    pub sources: Vec<String>,
    /// Registered devices (serial globs, `"*"`: all) whose change events, and whose
    /// sources' events, this session receives.
    #[serde(default)]
    pub devices: Vec<String>,
    /// Fields dropped or hashed before any distributor sees an event.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub redact: BTreeMap<String, RedactAction>,
    /// Recorded from its start (its template's `recording`, or the request's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<crate::recording::RecordingSpec>,
}

/// Fields a session request may have.
const SPEC_FIELDS: &str =
    "id, template, enabledDistributors, distributors, eventRouting, sources, devices, redact, recording";

/// Resolves a session request. `default_template` applies when the request names none;
/// `generate_id` supplies an id when it has none; distributor settings are checked
/// against `rails`.
pub fn resolve(
    request: &Value,
    templates: &TemplateStore,
    default_template: &str,
    generate_id: impl FnOnce() -> String,
    rails: &Guardrails,
) -> (Option<SessionConfig>, Report) {
    let mut report = Report::default();
    let empty = Map::new();
    let map = match request {
        Value::Object(m) => m,
        Value::Null => &empty,
        other => {
            report.error(format!(
                "session request must be a JSON object, got {}",
                kind_of(other)
            ));
            return (None, report);
        }
    };
    let mut id = None;
    let mut template_name = None;
    let mut enabled = None;
    let mut overrides = &empty;
    let mut routing = None;
    let mut sources = Vec::new();
    let mut devices = Vec::new();
    let mut redact = BTreeMap::new();
    // Some(None): the request turns its template's recording off.
    let mut recording: Option<Option<crate::recording::RecordingSpec>> = None;
    if map.contains_key("id") && map.contains_key("sessionId") {
        report.error("id and sessionId: give one of them, not both");
    }
    for (key, v) in map {
        match key.as_str() {
            "id" | "sessionId" => match v.as_str() {
                Some(s) => match check_session_id(s) {
                    Ok(()) => id = Some(s.to_string()),
                    Err(e) => report.error(format!("id: {e}")),
                },
                None if v.is_null() => {}
                None => report.error(format!("id: must be a string, got {}", kind_of(v))),
            },
            "template" => match v.as_str() {
                Some(s) => template_name = Some(s.to_string()),
                None if v.is_null() => {}
                None => report.error(format!("template: must be a string, got {}", kind_of(v))),
            },
            "enabledDistributors" | "enabled_distributors" => {
                if !v.is_null() {
                    enabled = Some(parse_kinds("enabledDistributors", v, &mut report));
                }
            }
            "distributors" => match v {
                Value::Object(d) => overrides = d,
                Value::Null => {}
                other => report.error(format!(
                    "distributors: must be an object of distributor → settings, got {}",
                    kind_of(other)
                )),
            },
            "eventRouting" | "event_routing" => {
                if !v.is_null() {
                    routing = Some(parse_routing("eventRouting", v, &mut report));
                }
            }
            "sources" => {
                if !v.is_null() {
                    sources = parse_sources("sources", v, &mut report);
                }
            }
            "devices" => {
                if !v.is_null() {
                    devices = parse_serial_patterns("devices", v, &mut report);
                }
            }
            "redact" => {
                if !v.is_null() {
                    redact = parse_rules("redact", v, &mut report);
                }
            }
            "recording" => {
                recording = Some(match v {
                    Value::Bool(false) => None,
                    v => Some(crate::recording::parse_spec("recording", v, &mut report)),
                })
            }
            other => report.error(format!(
                "{other}: unknown field (known fields: {SPEC_FIELDS})"
            )),
        }
    }

    let template_name = template_name.unwrap_or_else(|| default_template.to_string());
    let template = templates.get(&template_name);
    if template.is_none() {
        report.error(format!(
            "template: {template_name:?} not found (available: {})",
            templates.names()
        ));
    }

    // Distributor settings: the template's, overridden key by key by the request's.
    let mut distributors: BTreeMap<DistributorKind, Value> = BTreeMap::new();
    if let Some(t) = &template {
        for (name, cfg) in &t.distributors {
            if let Some(kind) = DistributorKind::parse(name) {
                distributors.insert(kind, cfg.clone());
            }
        }
    }
    for (name, cfg) in overrides {
        let Some(kind) = DistributorKind::parse(name) else {
            report.error(format!(
                "distributors.{name}: unknown distributor (known: {})",
                DistributorKind::all_names()
            ));
            continue;
        };
        let merged = match (distributors.remove(&kind), cfg) {
            (Some(Value::Object(mut base)), Value::Object(over)) => {
                for (k, v) in over {
                    base.insert(k.clone(), v.clone());
                }
                Value::Object(base)
            }
            (_, other) => other.clone(),
        };
        distributors.insert(kind, merged);
    }

    let enabled = enabled
        .or_else(|| template.as_ref().map(|t| t.enabled_distributors.clone()))
        .unwrap_or_default();
    for kind in &enabled {
        distributors
            .entry(*kind)
            .or_insert(Value::Object(Map::new()));
    }
    // Where a distributor may connect matters once it is enabled (a disabled one is checked
    // again when it is).
    let kept_only = rails.without_egress();
    for (kind, cfg) in distributors.iter_mut() {
        let path = format!("distributors.{kind}");
        // `${NAME}` placeholders take this machine's values now; the session keeps them.
        let mut problems = Vec::new();
        placeholders::resolve(
            cfg,
            &path,
            &rails.placeholder_vars,
            &ProcessEnvironment,
            &mut problems,
        );
        if !problems.is_empty() {
            problems.into_iter().for_each(|p| report.error(p.message));
            continue;
        }
        let rails = if enabled.contains(kind) {
            rails
        } else {
            &kept_only
        };
        parse_config(*kind, &path, cfg, &mut report, rails);
    }
    if enabled.is_empty() {
        report.warn("enabledDistributors: none enabled; events are accepted and counted but go nowhere until one is");
    }

    let mut event_routing = template
        .as_ref()
        .map(|t| t.event_routing.clone())
        .unwrap_or_default();
    if let Some(r) = routing {
        event_routing.extend(r);
    }
    warn_unreachable("eventRouting", &event_routing, &enabled, &mut report);

    if !report.is_valid() {
        return (None, report);
    }
    let config = SessionConfig {
        id: id.unwrap_or_else(generate_id),
        template: Some(template_name),
        enabled_distributors: enabled,
        distributors,
        event_routing,
        sources,
        devices,
        redact,
        recording: recording.unwrap_or_else(|| template.as_ref().and_then(|t| t.recording.clone())),
    };
    (Some(config), report)
}

/// Longest device serial.
pub const MAX_SERIAL_LEN: usize = 64;

/// Checks a device serial: 1-64 letters, digits, `_ . -` (a serial is part of channel
/// names such as `device:SN123:updated`, so never `:`, spaces or glob characters).
pub fn check_serial(serial: &str) -> Result<(), String> {
    let ok = !serial.is_empty()
        && serial.len() <= MAX_SERIAL_LEN
        && serial
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{serial:?} must be 1-{MAX_SERIAL_LEN} letters, digits, _ . or -"
        ))
    }
}

/// A list of device serial globs (`*` and `?` besides a serial's characters).
pub fn parse_serial_patterns(at: &str, v: &Value, report: &mut Report) -> Vec<String> {
    let Some(items) = v.as_array() else {
        report.error(format!(
            "{at}: must be an array of device serials or globs (\"*\", \"CAM-*\"), got {}",
            kind_of(v)
        ));
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Some(pattern) = item.as_str() else {
            report.error(format!(
                "{at}[{i}]: must be a string, got {}",
                kind_of(item)
            ));
            continue;
        };
        let literal: String = pattern
            .chars()
            .filter(|c| !matches!(c, '*' | '?'))
            .collect();
        let valid = !pattern.is_empty()
            && pattern.len() <= MAX_SERIAL_LEN
            && (literal.is_empty() || check_serial(&literal).is_ok());
        if !valid {
            report.error(format!(
                "{at}[{i}]: {pattern:?} is not a serial or serial glob (letters, digits, _ . - and * ?)"
            ));
        } else if !out.iter().any(|o| o == pattern) {
            out.push(pattern.to_string());
        }
    }
    out
}

/// A list of source ids (or `"*"`), each checked like a session id.
pub fn parse_sources(at: &str, v: &Value, report: &mut Report) -> Vec<String> {
    let Some(items) = v.as_array() else {
        report.error(format!(
            "{at}: must be an array of source ids, got {}",
            kind_of(v)
        ));
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match item.as_str() {
            Some("*") => out.push("*".to_string()),
            Some(id) => match check_session_id(id) {
                Ok(()) if !out.iter().any(|o| o == id) => out.push(id.to_string()),
                Ok(()) => {}
                Err(e) => report.error(format!("{at}[{i}]: {e}")),
            },
            None => report.error(format!(
                "{at}[{i}]: must be a string, got {}",
                kind_of(item)
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(v: Value) -> (Option<SessionConfig>, Report) {
        resolve(
            &v,
            &TemplateStore::new(),
            "local_testing",
            || "generated".into(),
            &Guardrails::default(),
        )
    }

    #[test]
    fn empty_request_uses_the_default_template_and_a_generated_id() {
        let (config, report) = run(json!({}));
        let config = config.expect("valid");
        assert!(report.errors.is_empty());
        assert_eq!(config.id, "generated");
        assert_eq!(config.template.as_deref(), Some("local_testing"));
        assert_eq!(
            config.enabled_distributors,
            [DistributorKind::Websocket, DistributorKind::Sse]
        );
    }

    #[test]
    fn overrides_merge_into_template_settings() {
        let (config, _) = run(json!({"id": "s1", "enabledDistributors": ["websocket"],
            "distributors": {"websocket": {"clientQueueCapacity": 8}}}));
        let config = config.unwrap();
        assert_eq!(config.enabled_distributors, [DistributorKind::Websocket]);
        assert_eq!(
            config.distributors[&DistributorKind::Websocket]["clientQueueCapacity"],
            8
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let (config, report) = run(json!({
            "id": "bad id!",
            "template": "nope",
            "enabledDistributors": ["websocket", "pigeon"],
            "distributors": {"websocket": {"port": 99999, "queueCapacity": 0}, "fax": {}},
            "eventRouting": {"x": ["telegraph"]},
            "colour": "blue"
        }));
        assert!(config.is_none());
        let all = report.errors.join("\n");
        for needle in [
            "id:",
            "template:",
            "enabledDistributors[1]",
            "distributors.websocket.port",
            "distributors.websocket.queueCapacity",
            "distributors.fax",
            "eventRouting.x[0]",
            "colour",
        ] {
            assert!(all.contains(needle), "missing {needle} in:\n{all}");
        }
        assert_eq!(report.errors.len(), 8, "{all}");
    }

    #[test]
    fn enabling_a_protocol_without_its_required_settings_is_refused() {
        let (config, report) = run(json!({"enabledDistributors": ["redis", "mqtt"]}));
        assert!(config.is_none());
        assert_eq!(report.errors.len(), 2, "{:?}", report.errors);
        assert!(report
            .errors
            .iter()
            .any(|e| e.contains("MQTT distributor requires broker URL")));
        assert!(report
            .errors
            .iter()
            .any(|e| e.contains("Redis distributor requires url")));
    }

    #[test]
    fn routes_to_disabled_distributors_warn() {
        let (config, report) =
            run(json!({"enabledDistributors": ["websocket"], "eventRouting": {"a": ["sse"]}}));
        assert!(config.is_some());
        assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    }
}
