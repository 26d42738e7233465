//! `[live]`: WebSocket and SSE connections.

use serde::{Deserialize, Serialize};
use synopticon_actors::validation::Report;

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

impl LiveSettings {
    /// Checks `[live]`.
    pub fn validate(&self, r: &mut Report) {
        let l = self;
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
    }
}
