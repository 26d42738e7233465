//! Configuration: the embedded default, then an optional file, then environment variables.
//!
//! `config/default.toml` is compiled into the binary, so `synopticon serve` works from any
//! folder. A file given with `--config` overrides it key by key, and each
//! `SYNOPTICON__SECTION__KEY` variable overrides that (values are read as the type of the
//! key they replace). [`Settings::validate`] lists every problem at once.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use synopticon_actors::inference::hub::InferenceSettings;
use synopticon_actors::session::spec::resolve;
use synopticon_actors::session::templates::TemplateStore;
use synopticon_actors::source::SourceConfig;
use synopticon_actors::validation::Report;

/// The configuration compiled into the binary.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");
/// Prefix of the environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "SYNOPTICON__";
/// Environment variable naming a config file (same as `--config`).
pub const CONFIG_FILE_ENV: &str = "SYNOPTICON_CONFIG";

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
    pub edge: Option<crate::edge::EdgeSettings>,
}

/// `[rules]` (docs/RULES.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// JSON log folder.
    pub log_dir: String,
    /// Days of JSON log kept.
    pub log_retention_days: u32,
    /// Captures folder.
    pub captures_dir: String,
    /// Days of captures kept.
    pub captures_retention_days: u32,
    /// Bytes of captures kept at most.
    pub captures_max_bytes: u64,
    /// Folders a `frame_ref` may name.
    pub frame_ref_dirs: Vec<String>,
    /// Matches each action may hold waiting.
    pub queue: usize,
    /// Rules declared here (`[[rules.declared]]`, each with a `name`).
    pub declared: Vec<Json>,
    /// The SMTP server.
    pub smtp: SmtpConfig,
}

/// `[rules.smtp]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Host; empty: no e-mail.
    pub host: String,
    /// Port.
    pub port: u16,
    /// `starttls`, `tls` or `none`.
    pub security: String,
    /// Login.
    pub username: String,
    /// Password.
    pub password: String,
    /// Sender.
    pub from: String,
    /// How long one send may take.
    pub timeout_ms: u64,
}

impl RulesConfig {
    /// The settings the rules run with.
    pub fn settings(&self) -> synopticon_actors::rules::actions::RulesSettings {
        use synopticon_actors::rules::email::{Security, SmtpSettings};
        let s = &self.smtp;
        let smtp = (!s.host.is_empty()).then(|| SmtpSettings {
            host: s.host.clone(),
            port: s.port,
            security: match s.security.as_str() {
                "tls" => Security::Tls,
                "none" => Security::None,
                _ => Security::StartTls,
            },
            username: (!s.username.is_empty()).then(|| s.username.clone()),
            password: (!s.password.is_empty()).then(|| s.password.clone()),
            from: s.from.clone(),
            timeout: std::time::Duration::from_millis(s.timeout_ms),
        });
        synopticon_actors::rules::actions::RulesSettings {
            log_dir: self.log_dir.clone().into(),
            log_retention_days: self.log_retention_days,
            captures_dir: self.captures_dir.clone().into(),
            captures_retention_days: self.captures_retention_days,
            captures_max_bytes: self.captures_max_bytes,
            frame_ref_dirs: self
                .frame_ref_dirs
                .iter()
                .filter_map(|d| std::fs::canonicalize(d).ok())
                .collect(),
            smtp,
            queue: self.queue,
        }
    }
}

/// The device registry (docs/DEVICES.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// First part of every device channel (`device:SN123:updated`).
    pub channel_prefix: String,
    /// Devices the registry holds at most (then 503).
    pub max_devices: u64,
    /// Devices inputs may register on their own (`unknownDevices = "create"`), in all:
    /// whoever writes to an input's stream or topic could otherwise fill the registry.
    pub max_auto_registered: usize,
    /// Unknown devices inputs may register per minute, in all (a burst of as many).
    pub auto_registered_per_minute: f64,
}

/// `[system]`: the built-in `system` session carrying the server's own events.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemSettings {
    /// Whether the server has it.
    pub session: bool,
    /// How often it carries a `health` summary (0: never).
    pub health_interval_secs: u64,
}

/// `[recording]`: session recordings (docs/RECORDING.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingConfig {
    /// Folder of the `.mcap` files.
    pub dir: String,
    /// How often a recording is brought up to date on disk (a crash loses at most this).
    pub flush_interval_ms: u64,
    /// Events and frames waiting for one recording's writer; beyond, dropped (counted).
    pub queue: usize,
    /// Finished recordings older than this many days are deleted (0: kept).
    pub max_age_days: u32,
    /// The oldest finished recordings are deleted while all of them together are larger
    /// than this many MiB (0: no limit).
    pub max_total_mb: u64,
    /// Recordings running at once.
    pub max_active: usize,
    /// Largest MCAP file `POST /api/v1/recordings` takes in (what `synopticon replay`
    /// sends), in MiB: as sent, and as its chunks unpack.
    pub max_import_mb: u64,
}

/// The server's own Redis connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port[/db]`; empty: none.
    pub url: String,
}

/// The store (docs/STORAGE.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://PATH` (an embedded file), `postgres://user:pass@host:port/db` (shared by
    /// several instances) or `memory` (nothing kept).
    pub url: String,
    /// Base64 key (32 bytes) sealing the secrets inside kept configurations; empty: read
    /// from (or made in) `key_file`. Instances sharing a database need the same key.
    pub secret_key: String,
    /// Where the key is kept when `secret_key` is empty; empty: beside an SQLite file, else
    /// `data/secret.key`.
    pub key_file: String,
    /// This instance's name: sessions and sources it makes are its own, and only it
    /// restores them (instances sharing a database share templates, tokens, devices).
    pub instance: String,
}

impl StoreConfig {
    /// The settings the store opens with.
    pub fn settings(&self) -> synopticon_actors::store::StoreSettings {
        synopticon_actors::store::StoreSettings {
            url: self.url.clone(),
            secret_key: self.secret_key.clone(),
            key_file: self.key_file.clone(),
            instance: self.instance.clone(),
        }
    }
}

/// On, off, or decided by the server's mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Switch {
    /// On, except in `local_testing` mode.
    Auto,
    /// Always on.
    On,
    /// Always off.
    Off,
}

impl<'de> Deserialize<'de> for Switch {
    /// `true`/`false` in a file, or the strings `auto`, `on`/`true`, `off`/`false` (an
    /// environment variable is always a string).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bool(true) => Ok(Switch::On),
            Raw::Bool(false) => Ok(Switch::Off),
            Raw::Text(t) => match t.trim().to_ascii_lowercase().as_str() {
                "auto" => Ok(Switch::Auto),
                "on" | "true" | "yes" | "1" => Ok(Switch::On),
                "off" | "false" | "no" | "0" => Ok(Switch::Off),
                other => Err(serde::de::Error::custom(format!(
                    "expected auto, true or false, got {other:?}"
                ))),
            },
        }
    }
}

impl Switch {
    /// Whether it is on, `auto` meaning "unless local testing".
    pub fn resolve(self, local_testing: bool) -> bool {
        match self {
            Switch::Auto => !local_testing,
            Switch::On => true,
            Switch::Off => false,
        }
    }
}

/// Bearer-token authentication.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Whether every route but `GET /api/health` needs a token (`auto`: unless
    /// `server.mode` is `local_testing`).
    pub enabled: Switch,
    /// Lets `/metrics` be scraped without a token.
    pub metrics_public: bool,
    /// JSON file keeping tokens created over REST (hashes only) across restarts; empty:
    /// they live until the server stops.
    pub tokens_file: String,
    /// Tokens declared here: `[[auth.tokens]]` with `id`, `role`, `sha256` and optional
    /// scopes (`synopticon token new` prints one).
    #[serde(default)]
    pub tokens: Vec<crate::auth::tokens::TokenConfig>,
    /// SHA-256 of an admin token with id `admin`, for set-ups configured by environment
    /// (containers): `SYNOPTICON__AUTH__ADMIN_TOKEN_SHA256`. Empty: none.
    pub admin_token_sha256: String,
}

impl AuthSettings {
    /// The configured tokens, with the `admin_token_sha256` one when set.
    pub fn all_tokens(&self) -> Vec<crate::auth::tokens::TokenConfig> {
        let mut all = self.tokens.clone();
        if !self.admin_token_sha256.is_empty() {
            all.push(crate::auth::tokens::TokenConfig {
                id: "admin".into(),
                role: "admin".into(),
                sha256: self.admin_token_sha256.clone(),
                sessions: None,
                sources: None,
                events: None,
                devices: None,
                description: "auth.admin_token_sha256".into(),
            });
        }
        all
    }
}

/// Token buckets per token and per client address.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    /// `auto`: on when authentication is on.
    pub enabled: Switch,
    /// API requests per second each token (each client address, for requests without a
    /// valid token) may sustain.
    pub requests_per_sec: f64,
    /// Requests allowed in a burst above that rate.
    pub request_burst: f64,
    /// Events (or edge messages) per second each token (or tokenless address) may post.
    pub events_per_sec: f64,
    /// Events allowed in a burst.
    pub event_burst: f64,
    /// Ceiling on all requests from one client address, whatever tokens they carry: one
    /// host cannot multiply its budget by holding many tokens.
    pub address_requests_per_sec: f64,
    /// Burst above that ceiling.
    pub address_request_burst: f64,
    /// Ceiling on all events posted from one client address.
    pub address_events_per_sec: f64,
    /// Burst above that ceiling.
    pub address_event_burst: f64,
    /// Clients (tokens and addresses) tracked at once; idle full buckets are forgotten first.
    pub max_clients: usize,
    /// Requests one token may have running at once (429 beyond, before the body is read).
    pub max_inflight_per_token: usize,
    /// Requests one client address may have running at once, whatever its tokens.
    pub max_inflight_per_address: usize,
}

/// Personal data handling.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacySettings {
    /// Key of the HMAC-SHA-256 that replaces fields a session redacts with `hash` (keep it
    /// secret and stable, or hashes change); empty: a random key per start.
    pub redaction_secret: String,
}

/// HTTP listener and request limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to listen on.
    pub host: String,
    /// Port; 0 picks a free one.
    pub port: u16,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// Largest request body in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Most events in one POST.
    pub max_events_per_request: usize,
    /// Vision sources allowed at once (each holds threads and perhaps an ffmpeg).
    pub max_sources: usize,
    /// Of those, the last slots only sources and devices made over REST (or declared) may
    /// take: devices inputs register on their own never do.
    pub reserved_sources: usize,
    /// Edge messages (posted detections, inputs) stamped longer ago than this many seconds
    /// are refused, as ones more than 300 s ahead are (a device whose clock was reset says
    /// 1970); 0: any age.
    pub edge_max_age_secs: u64,
    /// Folders `file` and `folder` sources may read from; empty: any path the server
    /// can read (an operator could then replay any image or video on the machine).
    #[serde(default)]
    pub media_dirs: Vec<String>,
    /// Origins whose pages may call the API (CORS); `*` as the port allows any. Empty: in
    /// `local_testing`, `http://localhost:*` and `http://127.0.0.1:*`; in production none.
    #[serde(default)]
    pub cors_origins: Vec<String>,
    /// Names the server answers to, from a request's `Host`: `name` (any port),
    /// `name:port`, `*.domain` or `*`. Empty: without authentication (`local_testing`)
    /// `localhost`, `127.0.0.1`, `[::1]` with any port and `server.host`; with
    /// authentication any host. Others get 421 (a page of a name that resolves here —
    /// DNS rebinding — gets nothing).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// How long a request waits for an actor's answer.
    pub request_timeout_ms: u64,
    /// How long a request body may take to arrive in full (408 beyond, connection closed).
    pub body_timeout_ms: u64,
    /// How long a request may take from its headers to its answer (503 beyond).
    pub request_deadline_ms: u64,
    /// Requests running at once in the whole server, admins' aside (503 beyond).
    pub max_inflight_requests: usize,
    /// Connections the listener holds at once; 0: derived from the file descriptor limit,
    /// so that the server stops accepting before it runs out of descriptors.
    pub max_connections: usize,
    /// How long data a client does not take (unacknowledged, or unsent for want of window)
    /// may wait before the kernel drops the connection (`TCP_USER_TIMEOUT`).
    pub send_timeout_ms: u64,
    /// Grace period for connections at shutdown.
    pub shutdown_timeout_ms: u64,
    /// Enables the fault-injection routes under `/api/v1/debug`.
    pub debug_endpoints: bool,
    /// `local_testing` (authentication and rate limits off unless asked for; meant for
    /// loopback) or `production`.
    pub mode: String,
    /// PEM certificate chain for https:// and wss://; with `tls_key_file`, the listener
    /// speaks TLS only.
    pub tls_cert_file: String,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: String,
    /// Where distributors and sources may connect to.
    pub egress: EgressSettings,
}

/// The egress policy: networks outbound connections may and may not reach.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressSettings {
    /// Networks allowed (`10.0.0.0/8`, `192.168.1.20`); when any is listed, addresses no
    /// rule holds are refused.
    pub allow: Vec<String>,
    /// Networks refused; in production link-local, cloud metadata and the server's own
    /// listener are added.
    pub deny: Vec<String>,
}

impl ServerSettings {
    /// Whether the server runs in `local_testing` mode.
    pub fn local_testing(&self) -> bool {
        self.mode == "local_testing"
    }

    /// Whether the server runs in `production` mode.
    pub fn production(&self) -> bool {
        self.mode == "production"
    }

    /// Whether the listener is TLS.
    pub fn tls(&self) -> bool {
        !self.tls_cert_file.is_empty() || !self.tls_key_file.is_empty()
    }
}

/// WebSocket and SSE connection settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveSettings {
    /// WebSocket ping interval.
    pub heartbeat_interval_ms: u64,
    /// Silence after which a WebSocket client is dropped.
    pub client_timeout_ms: u64,
    /// SSE heartbeat comment interval.
    pub sse_heartbeat_ms: u64,
    /// Largest frame a WebSocket client may send.
    pub max_frame_bytes: usize,
    /// Live connections (WebSocket and SSE) allowed at once.
    pub max_connections: usize,
    /// Live connections one token may hold at once.
    pub max_connections_per_token: usize,
    /// Live connections one client address may hold at once, whatever its tokens (admins
    /// aside).
    pub max_connections_per_address: usize,
}

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

/// Logging settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// Filter directive (RUST_LOG wins when set).
    pub level: String,
    /// `text` or `json`.
    pub format: String,
}

/// Configuration that could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The TOML is malformed.
    #[error("{origin}: {message}")]
    Syntax {
        /// File or "embedded default".
        origin: String,
        /// Parser message.
        message: String,
    },
    /// A key has the wrong type or is unknown.
    #[error("{0}")]
    Shape(String),
}

/// Where each configured value came from, for `/api/runtime`.
#[derive(Debug, Clone, Serialize)]
pub struct EnvVariable {
    /// Variable name.
    pub name: String,
    /// Configuration key it sets (`server.port`), or what it is for.
    pub key: String,
    /// Whether it is set in this process.
    pub set: bool,
    /// Its value, redacted if it looks secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl Settings {
    /// An `[[inputs]]` entry as its name and its settings (the entry without `name`).
    pub fn input_entry(entry: &Json) -> (String, Json) {
        let name = entry["name"].as_str().unwrap_or_default().to_string();
        let mut body = entry.clone();
        if let Json::Object(map) = &mut body {
            map.remove("name");
        }
        (name, body)
    }

    /// Loads the embedded default, then `file`, then the process environment.
    pub fn load(file: Option<&Path>) -> Result<(Settings, Report), ConfigError> {
        Self::load_with_env(file, std::env::vars())
    }

    /// Like [`Settings::load`] with an explicit environment (tests).
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Settings, Report), ConfigError> {
        let mut report = Report::default();
        let mut root: toml::Table =
            DEFAULT_TOML
                .parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    origin: "embedded default".into(),
                    message: e.message().to_string(),
                })?;
        if let Some(path) = file {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: shown.clone(),
                source,
            })?;
            let overlay: toml::Table =
                text.parse()
                    .map_err(|e: toml::de::Error| ConfigError::Syntax {
                        origin: shown,
                        message: e.to_string().trim().to_string(),
                    })?;
            merge(&mut root, overlay);
        }
        for (name, raw) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
            if let Err(e) = set_path(&mut root, &path, &raw) {
                report.error(format!("{name}: {e}"));
            }
        }
        let value = toml::Value::Table(root);
        let settings: Settings = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            ConfigError::Shape(format!("{path}: {}", e.into_inner().message().trim()))
        })?;
        Ok((settings, report))
    }

    /// Checks values and declared sessions; every problem at once.
    pub fn validate(&self, templates: &TemplateStore) -> Report {
        let mut r = Report::default();
        let s = &self.server;
        if s.host.parse::<std::net::IpAddr>().is_err() && s.host != "localhost" {
            r.error(format!("server.host: {:?} is not an IP address", s.host));
        }
        if s.max_body_bytes < 1024 {
            r.error("server.max_body_bytes: must be at least 1024");
        }
        if s.max_events_per_request == 0 {
            r.error("server.max_events_per_request: must be at least 1");
        }
        if s.request_timeout_ms == 0 {
            r.error("server.request_timeout_ms: must be at least 1");
        }
        if s.body_timeout_ms < 100 {
            r.error("server.body_timeout_ms: must be at least 100");
        }
        if s.request_deadline_ms < s.body_timeout_ms {
            r.error(format!(
                "server.request_deadline_ms: {} must be at least server.body_timeout_ms ({})",
                s.request_deadline_ms, s.body_timeout_ms
            ));
        }
        if s.request_deadline_ms <= self.inference.request_timeout_ms {
            r.warn(format!(
                "server.request_deadline_ms: {} does not exceed inference.request_timeout_ms ({}); slow detections are cut off with 503",
                s.request_deadline_ms, self.inference.request_timeout_ms
            ));
        }
        if s.max_inflight_requests == 0 {
            r.error("server.max_inflight_requests: must be at least 1");
        }
        if s.debug_endpoints {
            r.warn("server.debug_endpoints: fault-injection routes are on; never enable them in production");
        }
        if (s.production() || self.auth_enabled()) && s.media_dirs.is_empty() {
            r.warn("server.media_dirs: empty, so file and folder sources are refused; list the folders operators may replay images and videos from");
        }
        let rec = &self.recording;
        if rec.dir.is_empty() || !(10..=60_000).contains(&rec.flush_interval_ms) {
            r.error("recording: dir must be set and flush_interval_ms be 10 to 60000");
        }
        if rec.queue == 0 || rec.max_active == 0 {
            r.error("recording: queue and max_active must be at least 1");
        }
        let u = &self.udp_ingest;
        if !(1..=65507).contains(&u.max_datagram_bytes) {
            r.error("udp_ingest.max_datagram_bytes: must be 1 to 65507");
        }
        if u.queue == 0 || u.events_per_sec <= 0.0 || u.event_burst < 1.0 {
            r.error("udp_ingest: queue must be at least 1, events_per_sec above 0, event_burst at least 1");
        }
        if u.enabled && self.server.production() && u.host != "127.0.0.1" && u.host != "::1" {
            r.warn("udp_ingest: open beyond this machine in production; datagrams carry no token, so anyone who reaches the port can publish into any session they name");
        }
        for problem in crate::cors::HostList::check(&s.allowed_hosts) {
            r.error(problem);
        }
        for problem in crate::cors::OriginList::check(&s.cors_origins) {
            r.error(problem);
        }
        for dir in &s.media_dirs {
            if !std::path::Path::new(dir).is_absolute() {
                r.error(format!(
                    "server.media_dirs: {dir:?} must be an absolute path"
                ));
            } else if !std::path::Path::new(dir).is_dir() {
                r.warn(format!(
                    "server.media_dirs: {dir:?} is not a folder; nothing in it can be read"
                ));
            }
        }
        if let Err(errors) = synopticon_actors::egress::EgressPolicy::new(
            &s.egress.allow,
            &s.egress.deny,
            s.production(),
        ) {
            errors.into_iter().for_each(|e| r.error(e));
        }
        if !matches!(s.mode.as_str(), "local_testing" | "production") {
            r.error(format!(
                "server.mode: must be local_testing or production, got {:?}",
                s.mode
            ));
        }
        if s.tls_cert_file.is_empty() != s.tls_key_file.is_empty() {
            r.error("server.tls_cert_file and server.tls_key_file: give both, or neither");
        } else if s.tls() {
            if let Err(e) = crate::tls::server_config(&s.tls_cert_file, &s.tls_key_file) {
                r.error(format!("server.tls_cert_file: {e}"));
            }
        }
        let auth = self.auth_enabled();
        if !auth && !self.host_is_loopback() {
            r.warn(format!(
                "auth.enabled: authentication is OFF and server.host {:?} is reachable from other machines: anyone there can control sessions, read every event and post events. Turn auth on, or bind 127.0.0.1",
                s.host
            ));
        }
        let tokens = self.auth.all_tokens();
        if !auth && !tokens.is_empty() {
            r.warn("auth.tokens: tokens are declared but authentication is off, so they are not asked for");
        }
        if auth && tokens.is_empty() && self.auth.tokens_file.is_empty() {
            r.warn("auth: authentication is on but no token is configured: every request will be refused (`synopticon token new` makes one)");
        }
        crate::auth::tokens::validate_configured(&tokens, &mut r);
        let secret = &self.privacy.redaction_secret;
        if !secret.is_empty() && secret.len() < 32 {
            r.warn(format!(
                "privacy.redaction_secret: {} bytes is short for an HMAC key; use 32 or more random bytes",
                secret.len()
            ));
        }
        let rl = &self.rate_limit;
        for (key, v) in [
            ("requests_per_sec", rl.requests_per_sec),
            ("request_burst", rl.request_burst),
            ("events_per_sec", rl.events_per_sec),
            ("event_burst", rl.event_burst),
            ("address_requests_per_sec", rl.address_requests_per_sec),
            ("address_request_burst", rl.address_request_burst),
            ("address_events_per_sec", rl.address_events_per_sec),
            ("address_event_burst", rl.address_event_burst),
        ] {
            if !(v.is_finite() && v >= 1.0) {
                r.error(format!("rate_limit.{key}: {v} must be at least 1"));
            }
        }
        if rl.max_clients < 16 {
            r.error("rate_limit.max_clients: must be at least 16");
        }
        if rl.max_inflight_per_token == 0 || rl.max_inflight_per_address == 0 {
            r.error("rate_limit.max_inflight_per_token and max_inflight_per_address: must be at least 1");
        }
        let l = &self.live;
        if l.heartbeat_interval_ms == 0 || l.sse_heartbeat_ms == 0 {
            r.error("live: heartbeat intervals must be at least 1 ms");
        }
        if l.client_timeout_ms <= l.heartbeat_interval_ms {
            r.error(format!(
                "live.client_timeout_ms: {} must exceed heartbeat_interval_ms ({}), or every client times out",
                l.client_timeout_ms, l.heartbeat_interval_ms
            ));
        }
        if l.max_frame_bytes < 256 {
            r.error("live.max_frame_bytes: must be at least 256");
        }
        if l.max_connections == 0
            || l.max_connections_per_token == 0
            || l.max_connections_per_address == 0
        {
            r.error("live.max_connections, max_connections_per_token and max_connections_per_address: must be at least 1");
        }
        if s.send_timeout_ms < 1000 {
            r.error("server.send_timeout_ms: must be at least 1000");
        }
        if self.server.max_sources == 0 {
            r.error("server.max_sources: must be at least 1");
        }
        if self.sources.len() > self.server.max_sources {
            r.error(format!(
                "sources: {} declared, more than server.max_sources ({})",
                self.sources.len(),
                self.server.max_sources
            ));
        }
        let store = &self.store;
        if !(store.url == "memory"
            || store.url.starts_with("sqlite://")
            || store.url.starts_with("postgres://")
            || store.url.starts_with("postgresql://"))
        {
            r.error(format!(
                "store.url: {:?} must be sqlite://PATH, postgres://user:pass@host:port/db or memory",
                synopticon_actors::secrets::redact_url(&store.url).unwrap_or_else(|| store.url.clone())
            ));
        }
        if !store.secret_key.is_empty() {
            if let Err(e) = synopticon_actors::secrets::Sealer::parse_key(&store.secret_key) {
                r.error(format!(
                    "store.secret_key: {e}; make one with `synopticon key new`"
                ));
            }
        }
        if store.instance.is_empty()
            || !store
                .instance
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            r.error(format!(
                "store.instance: {:?} must be letters, digits, - _ or .",
                store.instance
            ));
        }
        let prefix = &self.devices.channel_prefix;
        if prefix.is_empty()
            || prefix.len() > 32
            || !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            r.error(format!(
                "devices.channel_prefix: {prefix:?} must be 1-32 letters, digits, - _ or . (it starts every channel: {prefix}:SN123:updated)"
            ));
        }
        let rules = &self.rules;
        if !["starttls", "tls", "none"].contains(&rules.smtp.security.as_str()) {
            r.error(format!(
                "rules.smtp.security: {:?} must be starttls, tls or none",
                rules.smtp.security
            ));
        }
        if !rules.smtp.host.is_empty()
            && !synopticon_actors::rules::email::is_address(&rules.smtp.from)
        {
            r.error(format!(
                "rules.smtp.from: {:?} is not an address (Name <user@host>)",
                rules.smtp.from
            ));
        }
        if rules.queue == 0 || rules.queue > 1_000_000 {
            r.error("rules.queue: from 1 to 1000000");
        }
        if rules.smtp.timeout_ms == 0 {
            r.error("rules.smtp.timeout_ms: at least 1");
        }
        for d in &rules.frame_ref_dirs {
            if !Path::new(d).is_absolute() {
                r.error(format!(
                    "rules.frame_ref_dirs: {d:?} must be an absolute path"
                ));
            }
        }
        let mut rule_names = Vec::new();
        for (i, entry) in rules.declared.iter().enumerate() {
            let (name, body) = Self::input_entry(entry);
            if rule_names.contains(&name) {
                r.error(format!(
                    "rules.declared[{i}].name: {name:?} is declared twice"
                ));
            }
            if let Err(report) = synopticon_actors::rules::RuleConfig::parse(&name, &body) {
                for e in report.errors {
                    r.error(format!("rules.declared[{i}].{e}"));
                }
            }
            rule_names.push(name);
        }
        if self.devices.max_devices == 0 {
            r.error("devices.max_devices: must be at least 1");
        }
        let per_minute = self.devices.auto_registered_per_minute;
        if !(per_minute.is_finite() && per_minute >= 0.0) {
            r.error("devices.auto_registered_per_minute: must be 0 (none) or more");
        }
        if self.server.reserved_sources >= self.server.max_sources {
            r.warn(format!(
                "server.reserved_sources ({}) is not below server.max_sources ({}): {} are kept, so devices inputs register have one slot",
                self.server.reserved_sources,
                self.server.max_sources,
                self.reserved_sources()
            ));
        }
        let redis = &self.redis.url;
        if !(redis.is_empty() || redis.starts_with("redis://") || redis.starts_with("rediss://")) {
            r.error(format!(
                "redis.url: {:?} must be redis://[user:password@]host:port[/db] (or rediss://), or empty",
                synopticon_actors::secrets::redact_url(redis).unwrap_or_else(|| redis.clone())
            ));
        }
        if store.url.starts_with("postgres") && store.secret_key.is_empty() {
            r.warn("store.secret_key: empty, so this instance seals secrets with a key of its own (store.key_file); instances sharing the database need one key: give them the same store.secret_key");
        }
        if self.sessions.max_sessions == 0 {
            r.error("sessions.max_sessions: must be at least 1");
        }
        use synopticon_actors::guardrails as g;
        let se = &self.sessions;
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
        if templates.get(&self.sessions.default_template).is_none() {
            r.error(format!(
                "sessions.default_template: {:?} not found (available: {})",
                self.sessions.default_template,
                templates.names()
            ));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            r.error(format!(
                "log.format: must be text or json, got {:?}",
                self.log.format
            ));
        }
        r.merge(self.inference.validate());
        let mut source_ids = Vec::new();
        for (i, source) in self.sources.iter().enumerate() {
            let report = source.validate();
            for e in report.errors {
                r.error(format!("sources[{i}].{e}"));
            }
            if source.kind != synopticon_actors::source::SourceKind::External {
                let wanted = source
                    .model
                    .as_deref()
                    .filter(|m| !m.is_empty())
                    .unwrap_or(&self.inference.default_model);
                let names: Vec<&str> = self
                    .inference
                    .models
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect();
                // An empty default means the first model.
                let first_model = wanted.is_empty() && !names.is_empty();
                if !first_model && !names.contains(&wanted) {
                    r.error(format!(
                        "sources[{i}].model: no model named {wanted:?} (configured: {})",
                        if names.is_empty() {
                            "none".to_string()
                        } else {
                            names.join(", ")
                        }
                    ));
                }
            }
            let reserved = synopticon_actors::devices::registry::DEVICE_SOURCE_PREFIX;
            if source.id.starts_with(reserved) {
                r.error(format!(
                    "sources[{i}].id: {:?}: ids starting with {reserved:?} are the sources of registered devices",
                    source.id
                ));
            }
            if source_ids.contains(&source.id) {
                r.error(format!(
                    "sources[{i}].id: {:?} is declared twice",
                    source.id
                ));
            }
            source_ids.push(source.id.clone());
        }
        let mut names = Vec::new();
        for (i, input) in self.inputs.iter().enumerate() {
            let (name, body) = Self::input_entry(input);
            if names.contains(&name) {
                r.error(format!("inputs[{i}].name: {name:?} is declared twice"));
            }
            if let Err(report) =
                synopticon_actors::input::InputConfig::parse(&name, &body, &self.store.instance)
            {
                for e in report.errors {
                    r.error(format!("inputs[{i}].{e}"));
                }
            }
            names.push(name);
        }
        let mut ids = Vec::new();
        for (i, declared) in self.sessions.declared.iter().enumerate() {
            let (config, report) = resolve(
                declared,
                templates,
                &self.sessions.default_template,
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
        r
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
        let r = &self.recording;
        synopticon_actors::recording::RecordingSettings {
            dir: r.dir.clone().into(),
            flush_interval: std::time::Duration::from_millis(r.flush_interval_ms),
            queue: r.queue,
            max_age: (r.max_age_days > 0)
                .then(|| std::time::Duration::from_secs(u64::from(r.max_age_days) * 86_400)),
            max_total_bytes: (r.max_total_mb > 0).then(|| r.max_total_mb.saturating_mul(1 << 20)),
            max_active: r.max_active,
            frame_ref_dirs: self.rules.frame_ref_dirs.iter().map(Into::into).collect(),
            max_import_bytes: r.max_import_mb.saturating_mul(1 << 20),
        }
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

    /// Source slots kept for the API: `server.reserved_sources`, leaving at least one
    /// for devices inputs register.
    pub fn reserved_sources(&self) -> usize {
        self.server
            .reserved_sources
            .min(self.server.max_sources.saturating_sub(1))
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
        self.server.host == "localhost"
            || self
                .server
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// The configuration as JSON with secrets replaced.
    pub fn redacted(&self) -> Json {
        let mut value = serde_json::to_value(self).unwrap_or(Json::Null);
        redact(&mut value);
        value
    }
}

/// Every environment variable the server reads, and whether each is set.
pub fn environment_variables() -> Vec<EnvVariable> {
    let mut keys = Vec::new();
    if let Ok(table) = DEFAULT_TOML.parse::<toml::Table>() {
        collect_keys(&table, "", &mut keys);
    }
    let mut vars: BTreeMap<String, EnvVariable> = BTreeMap::new();
    let mut add = |name: String, key: String| {
        if vars.contains_key(&name) {
            return;
        }
        let value = std::env::var(&name).ok();
        let shown = value.map(|v| {
            if is_secret_key(&name) {
                REDACTED.into()
            } else {
                v
            }
        });
        vars.insert(
            name.clone(),
            EnvVariable {
                set: shown.is_some(),
                value: shown,
                name,
                key,
            },
        );
    };
    for key in keys {
        let name = format!(
            "{ENV_PREFIX}{}",
            key.replace('.', "__").to_ascii_uppercase()
        );
        add(name, key);
    }
    add(
        CONFIG_FILE_ENV.into(),
        "configuration file (like --config)".into(),
    );
    add("RUST_LOG".into(), "log filter (overrides log.level)".into());
    // Variables with our prefix that match no key are listed too, so typos show up.
    let unknown: Vec<String> = std::env::vars()
        .map(|(n, _)| n)
        .filter(|n| n.starts_with(ENV_PREFIX))
        .collect();
    for name in unknown {
        add(name, "(no such key: rejected at start)".into());
    }
    vars.into_values().collect()
}

fn collect_keys(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => collect_keys(t, &key, out),
            _ => out.push(key),
        }
    }
}

fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (k, v) in overlay {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Sets `path` in `root` from an environment string, typed like the value it replaces.
fn set_path(root: &mut toml::Table, path: &[String], raw: &str) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty key")?;
    let mut table = root;
    for (depth, part) in parents.iter().enumerate() {
        table = match table.get_mut(part) {
            Some(toml::Value::Table(t)) => t,
            _ => {
                return Err(format!(
                    "no configuration section {:?}",
                    parents[..=depth].join(".")
                ))
            }
        };
    }
    let value = match table.get(last) {
        None => return Err(format!("no configuration key {:?}", path.join("."))),
        Some(toml::Value::String(_)) => toml::Value::String(raw.to_string()),
        Some(toml::Value::Integer(_)) => raw
            .trim()
            .parse::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| format!("expected an integer, got {raw:?}"))?,
        Some(toml::Value::Boolean(_)) => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => toml::Value::Boolean(true),
            "false" | "0" | "no" | "off" => toml::Value::Boolean(false),
            _ => return Err(format!("expected true or false, got {raw:?}")),
        },
        Some(toml::Value::Float(_)) => raw
            .trim()
            .parse::<f64>()
            .map(toml::Value::Float)
            .map_err(|_| format!("expected a number, got {raw:?}"))?,
        Some(_) => {
            let parsed: toml::Table = format!("v = {raw}")
                .parse()
                .map_err(|_| format!("expected a TOML value, got {raw:?}"))?;
            parsed.get("v").cloned().ok_or("empty value")?
        }
    };
    table.insert(last.clone(), value);
    Ok(())
}

use synopticon_actors::secrets::is_secret_key;
pub use synopticon_actors::secrets::{redact, REDACTED};

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
