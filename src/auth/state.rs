//! What the auth check needs of the server, apart from everything else a handler reaches:
//! the token store, the rate limiters, the requests in flight and the live-connection
//! limits. The server registers it on its own, so the check in [`guard`](super::guard)
//! depends on nothing above it.

use std::sync::Arc;

use super::inflight::InFlight;
use super::rate_limit::Limits;
use super::tokens::{LiveLimits, TokenStore};

/// The auth check's share of the server.
pub struct AuthState {
    /// Whether routes need a token.
    pub enabled: bool,
    /// `/metrics` without a token (`auth.metrics_public`).
    pub metrics_public: bool,
    /// Bearer tokens, and the live connections held under each.
    pub tokens: Arc<TokenStore>,
    /// Rate limiters, when rate limiting is on.
    pub limits: Option<Limits>,
    /// Requests running now, per token, address and in all.
    pub inflight: Arc<InFlight>,
    /// Live connections allowed in all, per token and per address.
    pub live_limits: LiveLimits,
}
