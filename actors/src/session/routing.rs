//! Event routing: which distributors an event type goes to.
//!
//! `eventRouting` maps event names to distributor kinds. Keys may be exact names
//! (`face_detected`), globs (`face_*`) or `"*"` (the session's default route). An event
//! takes the exact key if there is one, else the most specific matching glob, else `"*"`;
//! an event matched by no key goes to every enabled distributor.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use crate::distributor::{DistributorKind, KindSet};
use crate::glob::Glob;
use crate::validation::{kind_of, Report};

/// Routing as configured: event pattern → distributor kinds.
pub type EventRouting = BTreeMap<String, Vec<DistributorKind>>;

/// Longest accepted event name or routing key.
pub const MAX_EVENT_NAME_LEN: usize = 128;

/// Checks an event name: 1-128 characters from letters, digits and `_ . : -`.
pub fn check_event_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > MAX_EVENT_NAME_LEN {
        return Err(format!("must be at most {MAX_EVENT_NAME_LEN} characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')))
    {
        return Err(format!(
            "{name:?} contains {c:?}; use letters, digits and _ . : -"
        ));
    }
    Ok(())
}

/// Parses a list of distributor kinds at `path`, reporting unknown names.
pub fn parse_kinds(path: &str, value: &Value, report: &mut Report) -> Vec<DistributorKind> {
    let Value::Array(items) = value else {
        report.error(format!(
            "{path}: must be a list of distributor kinds ({}), got {}",
            DistributorKind::all_names(),
            kind_of(value)
        ));
        return Vec::new();
    };
    let mut kinds = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match item.as_str().map(|s| (s, DistributorKind::parse(s))) {
            Some((_, Some(kind))) => {
                if kinds.contains(&kind) {
                    report.warn(format!("{path}[{i}]: {kind} is listed twice"));
                } else {
                    kinds.push(kind);
                }
            }
            Some((name, None)) => report.error(format!(
                "{path}[{i}]: unknown distributor {name:?} (known: {})",
                DistributorKind::all_names()
            )),
            None => report.error(format!(
                "{path}[{i}]: must be a distributor name, got {}",
                kind_of(item)
            )),
        }
    }
    kinds
}

/// Parses `eventRouting` at `path`.
pub fn parse_routing(path: &str, value: &Value, report: &mut Report) -> EventRouting {
    let mut routing = EventRouting::new();
    let Value::Object(map) = value else {
        report.error(format!(
            "{path}: must be an object of event name → list of distributors, got {}",
            kind_of(value)
        ));
        return routing;
    };
    for (key, kinds) in map {
        if key != "*" {
            // Globs are event names plus wildcards.
            if let Err(e) = check_event_name(&key.replace(['*', '?'], "x")) {
                report.error(format!("{path}.{key}: event pattern {e}"));
                continue;
            }
        }
        routing.insert(
            key.clone(),
            parse_kinds(&format!("{path}.{key}"), kinds, report),
        );
    }
    routing
}

/// Warns about routes that point at distributors the session does not have enabled.
pub fn warn_unreachable(
    path: &str,
    routing: &EventRouting,
    enabled: &[DistributorKind],
    report: &mut Report,
) {
    for (key, kinds) in routing {
        for kind in kinds.iter().filter(|k| !enabled.contains(k)) {
            report.warn(format!(
                "{path}.{key}: routes to {kind}, which is not enabled; those events skip it until it is"
            ));
        }
    }
}

/// Routing compiled for the hot path.
#[derive(Debug, Default)]
pub struct Router {
    exact: HashMap<String, KindSet>,
    /// Glob keys, most specific first.
    globs: Vec<(Glob, KindSet)>,
    default: Option<KindSet>,
}

impl Router {
    /// Compiles a routing table.
    pub fn new(routing: &EventRouting) -> Self {
        let mut router = Router::default();
        for (key, kinds) in routing {
            let set: KindSet = kinds.iter().copied().collect();
            if key == "*" {
                router.default = Some(set);
            } else {
                let glob = Glob::new(key);
                if glob.is_literal() {
                    router.exact.insert(key.clone(), set);
                } else {
                    router.globs.push((glob, set));
                }
            }
        }
        router
            .globs
            .sort_by_key(|(g, _)| std::cmp::Reverse(g.specificity()));
        router
    }

    /// Kinds an event named `name` is routed to, before intersecting with what is enabled;
    /// `None` when no key matches (the caller then uses every enabled distributor).
    pub fn route(&self, name: &str) -> Option<KindSet> {
        if let Some(set) = self.exact.get(name) {
            return Some(*set);
        }
        if let Some((_, set)) = self.globs.iter().find(|(g, _)| g.matches(name)) {
            return Some(*set);
        }
        self.default
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use DistributorKind::*;

    #[test]
    fn exact_beats_glob_beats_default() {
        let mut report = Report::default();
        let routing = parse_routing(
            "eventRouting",
            &json!({"face_detected": ["sse"], "face_*": ["websocket"], "f*": ["mqtt"], "*": ["http"]}),
            &mut report,
        );
        assert!(report.is_valid(), "{report:?}");
        let r = Router::new(&routing);
        let kinds = |n: &str| r.route(n).map(|s| s.iter().collect::<Vec<_>>());
        assert_eq!(kinds("face_detected"), Some(vec![Sse]));
        assert_eq!(kinds("face_lost"), Some(vec![Websocket]));
        assert_eq!(kinds("fog"), Some(vec![Mqtt]));
        assert_eq!(kinds("other"), Some(vec![Http]));
        assert_eq!(Router::new(&EventRouting::new()).route("x"), None);
    }

    #[test]
    fn bad_routing_reports_every_problem() {
        let mut report = Report::default();
        parse_routing(
            "eventRouting",
            &json!({"a": ["carrier_pigeon", 3], "b c": ["sse"], "d": "websocket"}),
            &mut report,
        );
        assert_eq!(report.errors.len(), 4, "{:?}", report.errors);
    }
}
