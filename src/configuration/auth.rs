//! `[auth]`, `[rate_limit]` and `[privacy]`: who may do what, how fast, and how personal
//! fields are hidden.

use serde::{Deserialize, Serialize};
use synopticon_actors::validation::Report;

use crate::auth::tokens::TokenConfig;

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
    pub tokens: Vec<TokenConfig>,
    /// SHA-256 of an admin token with id `admin`, for set-ups configured by environment
    /// (containers): `SYNOPTICON__AUTH__ADMIN_TOKEN_SHA256`. Empty: none.
    pub admin_token_sha256: String,
}

impl AuthSettings {
    /// The configured tokens, with the `admin_token_sha256` one when set.
    pub fn all_tokens(&self) -> Vec<TokenConfig> {
        let mut all = self.tokens.clone();
        if !self.admin_token_sha256.is_empty() {
            all.push(TokenConfig {
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

impl AuthSettings {
    /// Checks the tokens, given whether authentication is on.
    pub fn validate(&self, enabled: bool, r: &mut Report) {
        let tokens = self.all_tokens();
        if !enabled && !tokens.is_empty() {
            r.warn("auth.tokens: tokens are declared but authentication is off, so they are not asked for");
        }
        if enabled && tokens.is_empty() && self.tokens_file.is_empty() {
            r.warn("auth: authentication is on but no token is configured: every request will be refused (`synopticon token new` makes one)");
        }
        crate::auth::tokens::validate_configured(&tokens, r);
    }
}

impl RateLimitSettings {
    /// Checks `[rate_limit]`.
    pub fn validate(&self, r: &mut Report) {
        let rl = self;
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
    }
}

impl PrivacySettings {
    /// Checks `[privacy]`.
    pub fn validate(&self, r: &mut Report) {
        let secret = &self.redaction_secret;
        if !secret.is_empty() && secret.len() < 32 {
            r.warn(format!(
                "privacy.redaction_secret: {} bytes is short for an HMAC key; use 32 or more random bytes",
                secret.len()
            ));
        }
    }
}
