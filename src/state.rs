//! What every request handler can reach: [`AppState`], built once by
//! [`startup`](crate::startup) and shared by the HTTP workers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::Value;
use synopticon_actors::bus::RedisBus;
use synopticon_actors::devices::registry::DeviceRegistry;
use synopticon_actors::guardrails::Guardrails;
use synopticon_actors::inference::ModelHub;
use synopticon_actors::input::Inputs;
use synopticon_actors::rules::engine::RuleEngine;
use synopticon_actors::session::templates::TemplateStore;
use synopticon_actors::sessions::Sessions;
use synopticon_actors::source::hub::SourceHub;
use synopticon_actors::store::Store;

use crate::auth::state::AuthState;
use crate::configuration::Settings;

/// A source's latest frame as a JPEG at one quality.
pub struct Snapshot {
    /// The frame it was made from.
    pub frame: Arc<synopticon_actors::messages::FrameRef>,
    /// Its JPEG quality.
    pub quality: u8,
    /// The JPEG.
    pub jpeg: bytes::Bytes,
}

/// What every request handler can reach.
pub struct AppState {
    /// Every route, as declared (`routes::table`).
    pub routes: Vec<crate::routes::api::RouteSpec>,
    /// The OpenAPI document, built from the route table at its first request.
    pub openapi: std::sync::OnceLock<Value>,
    /// The latest frame of each watched source as a JPEG: (frame, quality, bytes), so
    /// several viewers of one source cost one encoding per frame.
    pub snapshots: std::sync::Mutex<std::collections::HashMap<String, Snapshot>>,
    /// Origins whose pages may call the API and open its WebSockets.
    pub origins: Arc<crate::cors::OriginList>,
    /// Where the server's own events go (the system session).
    pub system: synopticon_actors::system::SystemFeed,
    /// Every session operation.
    pub sessions: Sessions,
    /// Where what is created over REST is kept.
    pub store: Arc<Store>,
    /// Templates, shared with the registry.
    pub templates: Arc<TemplateStore>,
    /// Effective configuration.
    pub settings: Arc<Settings>,
    /// Monotonic start time, for uptime.
    pub started: Instant,
    /// Wall-clock start time.
    pub started_at: DateTime<Utc>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// How long a handler waits for an actor.
    pub request_timeout: Duration,
    /// The detection models.
    pub models: Arc<ModelHub>,
    /// The vision sources.
    pub sources: Arc<SourceHub>,
    /// The registered devices.
    pub devices: Arc<DeviceRegistry>,
    /// The broker inputs.
    pub inputs: Arc<Inputs>,
    /// The rules.
    pub rules: Arc<RuleEngine>,
    /// The server's own Redis connection (`redis.url`), if any.
    pub bus: Option<RedisBus>,
    /// Tokens, rate limits, requests in flight and live-connection limits: what the auth
    /// check reads (registered on its own too).
    pub auth: Arc<AuthState>,
    /// Ceilings on sessions' sizes and the memory budget they share.
    pub rails: Arc<Guardrails>,
}
