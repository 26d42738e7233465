//! Session templates and presets: named starting points for a session's configuration.
//!
//! Built in are the five templates (`local_testing`, `research_lab`, `production`,
//! `high_frequency`, `mobile_remote`) and five presets (`basic`, `realtime`, `iot`,
//! `research`, `high_throughput`). Users add their own over REST or as TOML files in
//! `config/templates/`. A template holds distributor configs, which distributors start
//! enabled, and routing; a session request overrides any of them.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use parking_lot::RwLock;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::placeholders::{self, ProcessEnvironment};
use super::routing::{parse_kinds, parse_routing, EventRouting};
use crate::distributor::{parse_config, DistributorKind};
use crate::guardrails::Guardrails;
use crate::validation::{kind_of, Report};

/// Where a template comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateOrigin {
    /// Compiled in: one of the five templates.
    BuiltinTemplate,
    /// Compiled in: one of the five presets.
    BuiltinPreset,
    /// Loaded from a file at start.
    File,
    /// Registered with `PUT /api/v1/templates/{name}`.
    Api,
}

/// A named session configuration to start from.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Template {
    /// Name used in `"template": ...`.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// Where it comes from.
    pub origin: TemplateOrigin,
    /// Distributors enabled when the session does not say.
    pub enabled_distributors: Vec<DistributorKind>,
    /// Per-distributor settings (also for distributors not enabled at first).
    pub distributors: Map<String, Value>,
    /// Event routing.
    pub event_routing: EventRouting,
    /// Sessions from it are recorded from their start (docs/RECORDING.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<crate::recording::RecordingSpec>,
}

/// Longest template name.
const MAX_TEMPLATE_NAME: usize = 64;

impl Template {
    /// Parses a user template from JSON (REST body or converted TOML file).
    pub fn from_value(
        name: &str,
        value: &Value,
        origin: TemplateOrigin,
        rails: &Guardrails,
    ) -> Result<Template, Report> {
        let mut report = Report::default();
        if name.is_empty()
            || name.len() > MAX_TEMPLATE_NAME
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            report.error(format!(
                "name: {name:?} must be 1-{MAX_TEMPLATE_NAME} letters, digits, _ or -"
            ));
        }
        let Value::Object(map) = value else {
            report.error(format!(
                "template must be an object, got {}",
                kind_of(value)
            ));
            return Err(report);
        };
        let mut template = Template {
            name: name.to_string(),
            description: String::new(),
            origin,
            enabled_distributors: Vec::new(),
            distributors: Map::new(),
            event_routing: EventRouting::new(),
            recording: None,
        };
        for (key, v) in map {
            match key.as_str() {
                "description" => match v.as_str() {
                    Some(s) => template.description = s.to_string(),
                    None => report.error(format!("description: must be a string, got {}", kind_of(v))),
                },
                "enabledDistributors" | "enabled_distributors" => {
                    template.enabled_distributors = parse_kinds("enabledDistributors", v, &mut report)
                }
                "distributors" => match v {
                    Value::Object(d) => {
                        for (kind_name, cfg) in d {
                            let path = format!("distributors.{kind_name}");
                            match DistributorKind::parse(kind_name) {
                                Some(kind) => {
                                    // Placeholders are resolved per session; here an unset
                                    // variable only warns (it may be set by then), and its
                                    // distributor's other checks wait for the session.
                                    let mut cfg = cfg.clone();
                                    let mut problems = Vec::new();
                                    placeholders::resolve(
                                        &mut cfg,
                                        &path,
                                        &rails.placeholder_vars,
                                        &ProcessEnvironment,
                                        &mut problems,
                                    );
                                    let unset =
                                        !problems.is_empty() && problems.iter().all(|p| p.unset);
                                    for p in problems {
                                        if p.unset {
                                            report.warn(format!(
                                                "{}; sessions from this template fail until it is set",
                                                p.message
                                            ));
                                        } else {
                                            report.error(p.message);
                                        }
                                    }
                                    if !unset {
                                        parse_config(kind, &path, &cfg, &mut report, rails);
                                    }
                                }
                                None => report.error(format!(
                                    "{path}: unknown distributor (known: {})",
                                    DistributorKind::all_names()
                                )),
                            }
                        }
                        template.distributors = d.clone();
                    }
                    other => report.error(format!("distributors: must be an object, got {}", kind_of(other))),
                },
                "eventRouting" | "event_routing" => {
                    template.event_routing = parse_routing("eventRouting", v, &mut report)
                }
                "recording" => match v {
                    Value::Bool(false) | Value::Null => {}
                    v => {
                        template.recording =
                            Some(crate::recording::parse_spec("recording", v, &mut report))
                    }
                },
                "name" | "origin" => {}
                other => report.error(format!(
                    "{other}: unknown field (known fields: description, enabledDistributors, distributors, eventRouting, recording)"
                )),
            }
        }
        if report.is_valid() {
            Ok(template)
        } else {
            Err(report)
        }
    }
}

fn builtin(
    name: &str,
    origin: TemplateOrigin,
    description: &str,
    enabled: &[DistributorKind],
    distributors: Value,
) -> Template {
    Template {
        name: name.into(),
        description: description.into(),
        origin,
        enabled_distributors: enabled.to_vec(),
        distributors: match distributors {
            Value::Object(m) => m,
            _ => Map::new(),
        },
        event_routing: EventRouting::new(),
        recording: None,
    }
}

/// The compiled-in templates and presets.
pub fn builtins() -> Vec<Template> {
    use DistributorKind::*;
    use TemplateOrigin::{BuiltinPreset as P, BuiltinTemplate as T};
    let lab_http = json!({"baseUrl": "http://127.0.0.1:3000", "timeoutMs": 5000});
    let lab_mqtt = json!({"broker": "mqtt://127.0.0.1:1883", "qos": 1});
    let udp = json!({"targets": ["127.0.0.1:9999"], "encoding": "binary"});
    vec![
        builtin("local_testing", T,
            "Development on one machine: WebSocket and SSE live feeds, an HTTP webhook to localhost:3000 configured but off.",
            &[Websocket, Sse],
            json!({"websocket": {}, "sse": {}, "http": lab_http})),
        builtin("research_lab", T,
            "Lab studies: webhooks to the lab database, live dashboards over WebSocket and SSE, sensors over MQTT.",
            &[Http, Websocket, Mqtt, Sse],
            json!({"websocket": {}, "sse": {}, "http": lab_http, "mqtt": lab_mqtt})),
        builtin("production", T,
            "Live systems: webhooks, WebSocket dashboards and MQTT at QoS 1, larger queues.",
            &[Http, Websocket, Mqtt],
            json!({"websocket": {"queueCapacity": 16384}, "http": lab_http, "mqtt": lab_mqtt})),
        builtin("high_frequency", T,
            "High-rate data (gaze, pupil, tracking): compact UDP datagrams, WebSocket and webhooks.",
            &[Udp, Websocket, Http],
            json!({"udp": udp, "websocket": {"queueCapacity": 65536, "clientQueueCapacity": 4096}, "http": lab_http})),
        builtin("mobile_remote", T,
            "Remote participants on mobile networks: webhooks and WebSocket with small client queues.",
            &[Http, Websocket],
            json!({"websocket": {"clientQueueCapacity": 128}, "http": lab_http})),
        builtin("basic", P,
            "Simplest useful setup: WebSocket live feed and webhooks.",
            &[Websocket, Http],
            json!({"websocket": {}, "http": lab_http})),
        builtin("realtime", P,
            "Lowest latency to viewers: WebSocket, SSE and UDP.",
            &[Websocket, Sse, Udp],
            json!({"websocket": {}, "sse": {}, "udp": udp})),
        builtin("iot", P,
            "Devices and dashboards: MQTT plus a WebSocket feed.",
            &[Mqtt, Websocket],
            json!({"mqtt": lab_mqtt, "websocket": {}})),
        builtin("research", P,
            "Everything a study records: webhooks, WebSocket, SSE, MQTT and Redis streams.",
            &[Http, Websocket, Sse, Mqtt, Redis],
            json!({"http": lab_http, "websocket": {}, "sse": {}, "mqtt": lab_mqtt, "redis": {"url": "redis://127.0.0.1:6379"}})),
        builtin("high_throughput", P,
            "Bulk event rates: UDP, Redis streams and a WebSocket feed with deep queues.",
            &[Udp, Redis, Websocket],
            json!({"udp": udp, "redis": {"url": "redis://127.0.0.1:6379"}, "websocket": {"queueCapacity": 65536}})),
    ]
}

/// All known templates, shared by the registry and the REST layer.
#[derive(Debug)]
pub struct TemplateStore {
    templates: RwLock<BTreeMap<String, Template>>,
    /// The server's ceilings, which a template's distributor settings must respect too.
    rails: Arc<Guardrails>,
}

/// Why a template could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// Built-in names are reserved.
    #[error("template {0:?} is built in and cannot be replaced or removed")]
    Builtin(String),
    /// The body did not validate.
    #[error("invalid template")]
    Invalid(Report),
    /// No such template.
    #[error("template {0:?} not found")]
    NotFound(String),
    /// The template comes from a file in the templates folder.
    #[error("template {0:?} comes from a file in sessions.templates_dir; remove the file (and restart) to remove it")]
    FromFile(String),
}

impl Default for TemplateStore {
    fn default() -> Self {
        Self::new()
    }
}

impl TemplateStore {
    /// A store holding the built-ins, checking user templates against the code's maxima.
    pub fn new() -> Self {
        Self::with_guardrails(Arc::new(Guardrails::default()))
    }

    /// A store holding the built-ins, checking user templates against `rails`.
    pub fn with_guardrails(rails: Arc<Guardrails>) -> Self {
        let map = builtins()
            .into_iter()
            .map(|t| (t.name.clone(), t))
            .collect();
        Self {
            templates: RwLock::new(map),
            rails,
        }
    }

    /// The ceilings templates (and the sessions made from them) are checked against.
    pub fn guardrails(&self) -> &Arc<Guardrails> {
        &self.rails
    }

    /// The template called `name`.
    pub fn get(&self, name: &str) -> Option<Template> {
        self.templates.read().get(name).cloned()
    }

    /// Every template, by name.
    pub fn list(&self) -> Vec<Template> {
        self.templates.read().values().cloned().collect()
    }

    /// Template names, for error messages.
    pub fn names(&self) -> String {
        self.templates
            .read()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Registers or replaces a user template; returns the one it replaced.
    pub fn put(
        &self,
        name: &str,
        body: &Value,
        origin: TemplateOrigin,
    ) -> Result<Option<Template>, TemplateError> {
        if let Some(existing) = self.templates.read().get(name) {
            if matches!(
                existing.origin,
                TemplateOrigin::BuiltinTemplate | TemplateOrigin::BuiltinPreset
            ) {
                return Err(TemplateError::Builtin(name.to_string()));
            }
        }
        // A template is checked against the ceilings; where its distributors connect is
        // checked in each session that enables them.
        let template = Template::from_value(name, body, origin, &self.rails.without_egress())
            .map_err(TemplateError::Invalid)?;
        Ok(self.templates.write().insert(name.to_string(), template))
    }

    /// Removes a template registered over REST; built-ins and file templates stay (a file
    /// template would come back from its file at the next start).
    pub fn remove(&self, name: &str) -> Result<Template, TemplateError> {
        let mut templates = self.templates.write();
        match templates.get(name).map(|t| t.origin) {
            None => Err(TemplateError::NotFound(name.to_string())),
            Some(TemplateOrigin::BuiltinTemplate | TemplateOrigin::BuiltinPreset) => {
                Err(TemplateError::Builtin(name.to_string()))
            }
            Some(TemplateOrigin::File) => Err(TemplateError::FromFile(name.to_string())),
            Some(TemplateOrigin::Api) => templates
                .remove(name)
                .ok_or_else(|| TemplateError::NotFound(name.to_string())),
        }
    }

    /// Puts `name` back as it was: `previous`, or absent (a change that could not be kept).
    pub fn restore(&self, name: &str, previous: Option<Template>) {
        let mut templates = self.templates.write();
        match previous {
            Some(t) => templates.insert(name.to_string(), t),
            None => templates.remove(name),
        };
    }

    /// Loads every `*.toml` in `dir` (the file stem is the name); a missing folder is fine.
    pub fn load_dir(&self, dir: &Path) -> Report {
        let mut report = Report::default();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return report;
        };
        let mut paths: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        for path in paths {
            let shown = path.display().to_string();
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => {
                    report.error(format!("{shown}: cannot read: {e}"));
                    continue;
                }
            };
            let value: Value = match toml_to_json(&text) {
                Ok(v) => v,
                Err(e) => {
                    report.error(format!("{shown}: {e}"));
                    continue;
                }
            };
            if let Err(e) = self.put(&name, &value, TemplateOrigin::File) {
                match e {
                    TemplateError::Invalid(r) => {
                        for err in r.errors {
                            report.error(format!("{shown}: {err}"));
                        }
                    }
                    other => report.error(format!("{shown}: {other}")),
                }
            }
        }
        report
    }
}

fn toml_to_json(text: &str) -> Result<Value, String> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| e.message().to_string())?;
    serde_json::to_value(table).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_all_there_and_protected() {
        let store = TemplateStore::new();
        for name in [
            "local_testing",
            "research_lab",
            "production",
            "high_frequency",
            "mobile_remote",
            "basic",
            "realtime",
            "iot",
            "research",
            "high_throughput",
        ] {
            assert!(store.get(name).is_some(), "{name}");
        }
        assert!(matches!(
            store.put("production", &json!({}), TemplateOrigin::Api),
            Err(TemplateError::Builtin(_))
        ));
    }

    #[test]
    fn custom_template_is_validated() {
        let store = TemplateStore::new();
        let bad = json!({"enabledDistributors": ["pigeon"], "distributors": {"sse": {"historySize": -1}}, "colour": 1});
        match store.put("mine", &bad, TemplateOrigin::Api) {
            Err(TemplateError::Invalid(r)) => assert_eq!(r.errors.len(), 3, "{:?}", r.errors),
            other => panic!("{other:?}"),
        }
        let good = json!({"description": "x", "enabledDistributors": ["sse"], "eventRouting": {"*": ["sse"]}});
        assert!(store
            .put("mine", &good, TemplateOrigin::Api)
            .unwrap()
            .is_none());
        assert_eq!(
            store.get("mine").unwrap().enabled_distributors,
            [DistributorKind::Sse]
        );
        assert!(matches!(
            store.remove("local_testing"),
            Err(TemplateError::Builtin(_))
        ));
        assert!(store.remove("mine").is_ok());
        assert!(matches!(
            store.remove("mine"),
            Err(TemplateError::NotFound(_))
        ));
    }
}
