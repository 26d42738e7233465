//! Configuration: the embedded default, then an optional file, then environment variables
//! ([`layers`]), read into one [`Settings`] whose sections each live in their own file
//! with their own `validate`. [`Settings::validate`] runs them all, and the checks that
//! span sections, and lists every problem at once.
//!
//! `config/default.toml` is compiled into the binary, so `synopticon serve` works from any
//! folder. A file given with `--config` overrides it key by key, and each
//! `SYNOPTICON__SECTION__KEY` variable overrides that (values are read as the type of the
//! key they replace).

mod auth;
mod declared;
mod devices;
mod edge;
mod layers;
mod live;
mod log;
mod recording;
mod rules;
mod server;
mod sessions;
mod store;

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use synopticon_actors::inference::hub::InferenceSettings;
use synopticon_actors::session::templates::TemplateStore;
use synopticon_actors::source::SourceConfig;
use synopticon_actors::validation::Report;

pub use auth::{AuthSettings, PrivacySettings, RateLimitSettings, Switch};
pub use declared::named_entry;
pub use devices::DeviceConfig;
pub use edge::EdgeSettings;
pub use layers::{
    environment_variables, ConfigError, EnvVariable, CONFIG_FILE_ENV, DEFAULT_TOML, ENV_PREFIX,
};
pub use live::LiveSettings;
pub use log::{LogFormat, LogSettings};
pub use recording::RecordingConfig;
pub use rules::{RulesConfig, SmtpConfig};
pub use server::{EgressSettings, Mode, ServerSettings};
pub use sessions::{SessionSettings, SystemSettings};
pub use store::{RedisSettings, StoreConfig};
pub use synopticon_actors::secrets::{redact, REDACTED};

/// Everything the server is configured with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// HTTP listener and request limits.
    pub server: ServerSettings,
    /// WebSocket and SSE connections.
    pub live: LiveSettings,
    /// Session defaults and sessions created at start.
    pub sessions: SessionSettings,
    /// Logging.
    pub log: LogSettings,
    /// ONNX Runtime and the detection models.
    pub inference: InferenceSettings,
    /// Vision sources started with the server (`[[sources]]`).
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    /// Broker inputs started with the server (`[[inputs]]`, each with a `name`;
    /// docs/EDGE.md).
    #[serde(default)]
    pub inputs: Vec<Json>,
    /// Bearer tokens and who may do what.
    pub auth: AuthSettings,
    /// Request and ingestion rate limits.
    pub rate_limit: RateLimitSettings,
    /// Redaction of personal fields.
    pub privacy: PrivacySettings,
    /// Where what is created over REST is kept.
    pub store: StoreConfig,
    /// The device registry.
    pub devices: DeviceConfig,
    /// The server's own Redis connection.
    pub redis: RedisSettings,
    /// Rules: where their logs and captures go, the SMTP server, declared rules.
    pub rules: RulesConfig,
    /// The built-in system session.
    pub system: SystemSettings,
    /// The UDP ingest port.
    pub udp_ingest: crate::udp_ingest::UdpIngestSettings,
    /// Session recordings.
    pub recording: RecordingConfig,
    /// Edge mode (`synopticon edge`): the camera and where its envelopes go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge: Option<EdgeSettings>,
}

impl Settings {
    /// Loads the embedded default, then `file`, then the process environment.
    pub fn load(file: Option<&Path>) -> Result<(Settings, Report), ConfigError> {
        Self::load_with_env(file, std::env::vars())
    }

    /// Like [`Settings::load`] with an explicit environment (tests).
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Settings, Report), ConfigError> {
        let (mut value, mut report) = layers::layered(file, env)?;
        layers::settle::<Mode>(&mut value, "server.mode", &mut report);
        layers::settle::<LogFormat>(&mut value, "log.format", &mut report);
        layers::settle::<synopticon_actors::rules::email::Security>(
            &mut value,
            "rules.smtp.security",
            &mut report,
        );
        let settings: Settings = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            ConfigError::Shape(format!("{path}: {}", e.into_inner().message().trim()))
        })?;
        Ok((settings, report))
    }

    /// Checks every section, the checks that span sections and everything declared;
    /// every problem at once.
    pub fn validate(&self, templates: &TemplateStore) -> Report {
        let mut r = Report::default();
        self.server.validate(&mut r);
        self.live.validate(&mut r);
        self.recording.validate(&mut r);
        self.udp_ingest.validate(self.server.production(), &mut r);
        self.auth.validate(self.auth_enabled(), &mut r);
        self.rate_limit.validate(&mut r);
        self.privacy.validate(&mut r);
        self.store.validate(&mut r);
        self.devices.validate(&mut r);
        self.rules.validate(&mut r);
        self.redis.validate(&mut r);
        self.sessions.validate(templates, &mut r);
        r.merge(self.inference.validate());
        declared::check_sources(&self.sources, &self.inference, &mut r);
        declared::check_inputs(&self.inputs, &self.store.instance, &mut r);
        self.cross_checks(&mut r);
        r
    }

    /// What only two sections together can tell.
    fn cross_checks(&self, r: &mut Report) {
        let s = &self.server;
        if s.request_deadline_ms <= self.inference.request_timeout_ms {
            r.warn(format!(
                "server.request_deadline_ms: {} does not exceed inference.request_timeout_ms ({}); slow detections are cut off with 503",
                s.request_deadline_ms, self.inference.request_timeout_ms
            ));
        }
        if (s.production() || self.auth_enabled()) && s.media_dirs.is_empty() {
            r.warn("server.media_dirs: empty, so file and folder sources are refused; list the folders operators may replay images and videos from");
        }
        if !self.auth_enabled() && !self.host_is_loopback() {
            r.warn(format!(
                "auth.enabled: authentication is OFF and server.host {:?} is reachable from other machines: anyone there can control sessions, read every event and post events. Turn auth on, or bind 127.0.0.1",
                s.host
            ));
        }
        if self.sources.len() > s.max_sources {
            r.error(format!(
                "sources: {} declared, more than server.max_sources ({})",
                self.sources.len(),
                s.max_sources
            ));
        }
    }

    /// The egress policy of `server.egress` (in production with its defaults); a policy
    /// that refuses nothing when the lists do not parse (validation reports them).
    pub fn egress(&self) -> synopticon_actors::egress::EgressPolicy {
        let e = &self.server.egress;
        synopticon_actors::egress::EgressPolicy::new(&e.allow, &e.deny, self.server.production())
            .unwrap_or_default()
    }

    /// Where recordings go and how long they stay.
    pub fn recording_settings(&self) -> synopticon_actors::recording::RecordingSettings {
        self.recording.settings(&self.rules.frame_ref_dirs)
    }

    /// The ceilings sessions are checked against, a fresh memory budget of the configured
    /// size and the egress policy (one of each per server).
    pub fn guardrails(&self) -> synopticon_actors::guardrails::Guardrails {
        let s = &self.sessions;
        synopticon_actors::guardrails::Guardrails {
            egress: std::sync::Arc::new(self.egress()),
            placeholder_vars: s
                .placeholder_vars
                .iter()
                .map(|g| synopticon_actors::glob::Glob::new(g))
                .collect(),
            max_queue_capacity: s.max_queue_capacity,
            max_history_size: s.max_history_size,
            max_client_queue_capacity: s.max_client_queue_capacity,
            max_clients: s.max_clients,
            max_client_queue_bytes: s.max_client_queue_bytes,
            budget: std::sync::Arc::new(synopticon_actors::budget::MemoryBudget::new(
                usize::try_from(s.memory_budget_bytes).unwrap_or(usize::MAX),
            )),
            // Connected to the system session by the server at start.
            system: Default::default(),
            // Made by the server at start, with the models it names in recordings.
            recordings: Default::default(),
        }
    }

    /// Whether requests need a token.
    pub fn auth_enabled(&self) -> bool {
        self.auth.enabled.resolve(self.server.local_testing())
    }

    /// `server.cors_origins`, or in `local_testing` with none listed, the pages of this
    /// machine (`http://localhost:*`, `http://127.0.0.1:*`).
    pub fn cors_origins(&self) -> Vec<String> {
        let listed = &self.server.cors_origins;
        if listed.is_empty() && self.server.local_testing() {
            vec!["http://localhost:*".into(), "http://127.0.0.1:*".into()]
        } else {
            listed.clone()
        }
    }

    /// `server.allowed_hosts`; when empty, the mode's default: without authentication
    /// (`local_testing`), or with `/metrics` open to all (`auth.metrics_public`), this
    /// machine's loopback names with any port and the configured `server.host`; with
    /// authentication (`production`) any host otherwise, since every route with something
    /// to read needs a token a rebinding page does not have.
    pub fn allowed_hosts(&self) -> Vec<String> {
        let listed = &self.server.allowed_hosts;
        if !listed.is_empty() {
            return listed.clone();
        }
        if self.auth_enabled() && !self.auth.metrics_public {
            return vec!["*".into()];
        }
        // The names of this machine a browser can reach a loopback server by.
        let mut local: Vec<String> = ["localhost", "127.0.0.1", "[::1]"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let host = self.server.host.trim();
        let unspecified = host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_unspecified());
        if !host.is_empty() && !unspecified {
            local.push(match host.parse::<std::net::Ipv6Addr>() {
                Ok(v6) => format!("[{v6}]"),
                Err(_) => host.to_string(),
            });
        }
        local
    }

    /// Source slots kept for the API: `server.reserved_sources`, leaving at least one
    /// Source slots kept for the API: `server.reserved_sources`, leaving at least one
    /// for devices inputs register.
    pub fn reserved_sources(&self) -> usize {
        self.server.reserved_sources()
    }

    /// Whether requests and ingestion are rate-limited.
    pub fn rate_limit_enabled(&self) -> bool {
        match self.rate_limit.enabled {
            Switch::Auto => self.auth_enabled(),
            other => other.resolve(self.server.local_testing()),
        }
    }

    /// Whether `server.host` only serves this machine.
    pub fn host_is_loopback(&self) -> bool {
        self.server.host_is_loopback()
    }

    /// The configuration as JSON with secrets replaced.
    pub fn redacted(&self) -> Json {
        let mut value = serde_json::to_value(self).unwrap_or(Json::Null);
        redact(&mut value);
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_url_password_in_a_string_is_redacted() {
        let text = "ffprobe cannot read rtsp://cam:hunter2@10.0.0.1/s: refused\nrtsp://cam:hunter2@10.0.0.1/s: refused; see http://docs/x and redis://:pw@h:6379";
        let clean = synopticon_actors::secrets::redact_url(text).expect("something to hide");
        assert!(
            !clean.contains("hunter2") && !clean.contains(":pw@"),
            "{clean}"
        );
        assert_eq!(clean.matches(REDACTED).count(), 3, "{clean}");
        assert!(clean.contains("http://docs/x"));
        assert_eq!(
            synopticon_actors::secrets::redact_url("http://example.com/a@b"),
            None
        );
    }

    #[test]
    fn env_overrides_are_typed_like_the_key() {
        let env = [
            ("SYNOPTICON__SERVER__PORT".to_string(), "8081".to_string()),
            ("SYNOPTICON__SERVER__DEBUG_ENDPOINTS".into(), "true".into()),
            (
                "SYNOPTICON__SESSIONS__DEFAULT_TEMPLATE".into(),
                "123".into(),
            ),
            ("OTHER".into(), "x".into()),
        ];
        let (s, report) = Settings::load_with_env(None, env).unwrap();
        assert!(report.is_valid(), "{report:?}");
        assert_eq!(s.server.port, 8081);
        assert!(s.server.debug_endpoints);
        assert_eq!(s.sessions.default_template, "123");
    }

    #[test]
    fn bad_env_values_are_reported_by_name() {
        let env = [
            ("SYNOPTICON__SERVER__PORT".to_string(), "eighty".to_string()),
            ("SYNOPTICON__NOPE__X".into(), "1".into()),
        ];
        let (_, report) = Settings::load_with_env(None, env).unwrap();
        assert_eq!(report.errors.len(), 2, "{report:?}");
        assert!(report
            .errors
            .iter()
            .any(|e| e.starts_with("SYNOPTICON__SERVER__PORT")));
    }

    #[test]
    fn out_of_range_port_names_the_key() {
        let env = [("SYNOPTICON__SERVER__PORT".to_string(), "99999".to_string())];
        let err = Settings::load_with_env(None, env).unwrap_err().to_string();
        assert!(err.starts_with("server.port"), "{err}");
    }

    #[test]
    fn redaction_hides_secrets_and_url_passwords() {
        let mut v = serde_json::json!({
            "password": "p", "headers": {"Authorization": "Bearer x"},
            "broker": "mqtts://bob:hunter2@broker:8883/x", "plain": "http://host/a@b"
        });
        redact(&mut v);
        assert_eq!(v["password"], REDACTED);
        assert_eq!(v["headers"]["Authorization"], REDACTED);
        let mut h = serde_json::json!({"distributors": {"http": {"headers": {
            "X-Api-Key": "k", "Cookie": "c", "X-Hub-Signature": "s",
            "Content-Type": "application/json", "accept": "*/*", "User-Agent": "lab"}}}});
        redact(&mut h);
        let shown = &h["distributors"]["http"]["headers"];
        for secret in ["X-Api-Key", "Cookie", "X-Hub-Signature"] {
            assert_eq!(shown[secret], REDACTED, "{secret}");
        }
        assert_eq!(shown["Content-Type"], "application/json");
        assert_eq!(shown["accept"], "*/*");
        assert_eq!(shown["User-Agent"], "lab");
        assert_eq!(v["broker"], format!("mqtts://bob:{REDACTED}@broker:8883/x"));
        assert_eq!(v["plain"], "http://host/a@b");
    }

    #[test]
    fn default_config_validates() {
        let (s, _) = Settings::load_with_env(None, []).unwrap();
        let report = s.validate(&TemplateStore::new());
        assert!(report.is_valid(), "{report:?}");
    }
}
