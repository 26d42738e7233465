//! `[sessions]` (defaults, ceilings and sessions declared here) and `[system]` (the
//! built-in session carrying the server's own events).

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use synopticon_actors::guardrails as g;
use synopticon_actors::session::spec::resolve;
use synopticon_actors::session::templates::TemplateStore;
use synopticon_actors::validation::Report;

/// Session defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSettings {
    /// Template for requests that name none.
    pub default_template: String,
    /// Sessions allowed at once.
    pub max_sessions: usize,
    /// Folder of user templates.
    pub templates_dir: String,
    /// Sessions created at start, each like a `POST /api/v1/sessions` body.
    #[serde(default)]
    pub declared: Vec<Json>,
    /// Ceiling on any distributor's `queueCapacity`.
    pub max_queue_capacity: u64,
    /// Ceiling on an SSE distributor's `historySize`.
    pub max_history_size: u64,
    /// Ceiling on a live distributor's `clientQueueCapacity`.
    pub max_client_queue_capacity: u64,
    /// Ceiling on a live distributor's `maxClients`.
    pub max_clients: u64,
    /// Ceiling on a live distributor's `clientQueueBytes`.
    pub max_client_queue_bytes: u64,
    /// Bytes of queued events and SSE history the whole server may hold; beyond it the
    /// oldest entries anywhere are evicted (counted).
    pub memory_budget_bytes: u64,
    /// Environment variables (globs) `${NAME}` placeholders in templates and session
    /// requests may read; a session's settings go out to peers, so not every variable.
    pub placeholder_vars: Vec<String>,
}

/// Smallest memory budget: room for a few large events.
const MIN_MEMORY_BUDGET: u64 = 1 << 20;

/// `[system]`: the built-in `system` session carrying the server's own events.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemSettings {
    /// Whether the server has it.
    pub session: bool,
    /// How often it carries a `health` summary (0: never).
    pub health_interval_secs: u64,
}

impl SessionSettings {
    /// Checks `[sessions]`: its ceilings, the default template and every declared session
    /// (as `POST /api/v1/sessions` would).
    pub fn validate(&self, templates: &TemplateStore, r: &mut Report) {
        let se = self;
        if se.max_sessions == 0 {
            r.error("sessions.max_sessions: must be at least 1");
        }
        for (key, value, least, most) in [
            (
                "max_queue_capacity",
                se.max_queue_capacity,
                1,
                g::HARD_MAX_QUEUE,
            ),
            (
                "max_history_size",
                se.max_history_size,
                0,
                g::HARD_MAX_HISTORY,
            ),
            (
                "max_client_queue_capacity",
                se.max_client_queue_capacity,
                1,
                g::HARD_MAX_CLIENT_QUEUE,
            ),
            ("max_clients", se.max_clients, 1, g::HARD_MAX_CLIENTS),
            (
                "max_client_queue_bytes",
                se.max_client_queue_bytes,
                1024,
                g::HARD_MAX_CLIENT_BYTES,
            ),
        ] {
            if !(least..=most).contains(&value) {
                r.error(format!("sessions.{key}: {value} must be {least}-{most}"));
            }
        }
        if se.memory_budget_bytes < MIN_MEMORY_BUDGET {
            r.error(format!(
                "sessions.memory_budget_bytes: {} must be at least {MIN_MEMORY_BUDGET} (1 MiB)",
                se.memory_budget_bytes
            ));
        }
        if templates.get(&se.default_template).is_none() {
            r.error(format!(
                "sessions.default_template: {:?} not found (available: {})",
                se.default_template,
                templates.names()
            ));
        }
        let mut ids = Vec::new();
        for (i, declared) in se.declared.iter().enumerate() {
            let (config, report) = resolve(
                declared,
                templates,
                &se.default_template,
                || format!("declared-{i}"),
                templates.guardrails(),
            );
            for e in report.errors {
                r.error(format!("sessions.declared[{i}].{e}"));
            }
            for w in report.warnings {
                r.warn(format!("sessions.declared[{i}].{w}"));
            }
            if let Some(c) = config {
                if ids.contains(&c.id) {
                    r.error(format!(
                        "sessions.declared[{i}].id: {:?} is declared twice",
                        c.id
                    ));
                }
                ids.push(c.id);
            }
        }
    }
}
