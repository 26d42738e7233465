//! Who may do what: bearer tokens with roles and scopes, the check every route passes
//! through, rate limits and live-connection limits. `docs/SECURITY.md` explains the model.
//!
//! # Layout
//! - this file: [`Role`], [`Access`] (what a route needs), [`ResourceScope`] (which path
//!   parameter names a scoped resource), [`TokenScope`] (what a token may see) and the
//!   [`Principal`] a checked request carries.
//! - [`tokens`]: the token store (configured and REST-created tokens, hashed), and the
//!   live connections held under each token, so revoking a token closes them.
//! - [`rate_limit`]: token buckets per token and per client address.
//! - [`inflight`]: requests running at once per token, address and server, and the
//!   deadline of a request's body.
//! - [`state`]: what the check needs of the server ([`state::AuthState`]).
//! - [`guard`]: the check itself, run before every handler, and the [`Principal`] it
//!   hands to handlers.

pub mod guard;
pub mod inflight;
pub mod rate_limit;
pub mod state;
pub mod tokens;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use synopticon_actors::glob::Glob;

/// What a token may do; each role includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read-only endpoints and live feeds.
    Viewer,
    /// Sessions, sources and events besides; no tokens, no server configuration.
    Operator,
    /// Everything.
    Admin,
}

impl Role {
    /// The name used in configuration and answers.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// Parses `admin`, `operator` or `viewer`.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "operator" => Some(Role::Operator),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

/// What a route asks of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Nobody needs a token (`GET /api/health`).
    Public,
    /// `/metrics`: a viewer, or nobody with `auth.metrics_public`.
    Metrics,
    /// At least this role.
    Role(Role),
    /// At least this role, with a token limited in no way: what spans every source and
    /// device (rules, broker inputs), which no scope can contain.
    Unscoped(Role),
    /// An admin whose token has no scope: what is shared by the whole server (its
    /// configuration, templates every session may use, fault injection), which no scope
    /// can contain.
    ServerAdmin,
}

impl Access {
    /// At least a viewer.
    pub const VIEWER: Access = Access::Role(Role::Viewer);
    /// At least an operator.
    pub const OPERATOR: Access = Access::Role(Role::Operator);
    /// An admin.
    pub const ADMIN: Access = Access::Role(Role::Admin);
}

/// Which path parameter, if any, names a resource a token may be scoped to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceScope {
    /// Not a scoped resource.
    None,
    /// `{id}` is a session id.
    Session,
    /// `{id}` is a source id.
    Source,
}

/// What a token may see, by glob. `None` for a kind means all of that kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenScope {
    /// Session ids (globs) it may see and use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<Vec<String>>,
    /// Source ids (globs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<String>>,
    /// Event names and channels (globs) its live feeds may subscribe to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    /// Device serials (globs): other devices are 404 to it, and their events never reach
    /// its live feeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<String>>,
}

/// Whether every name the `theirs` globs match is matched by `mine` (`None`: everything).
fn covers(mine: &Option<Vec<String>>, theirs: &Option<Vec<String>>) -> bool {
    match (mine, theirs) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(mine), Some(theirs)) => theirs.iter().all(|t| {
            let wanted = Glob::new(t);
            mine.iter().any(|m| Glob::new(m).covers(&wanted))
        }),
    }
}

fn allowed(list: &Option<Vec<String>>, id: &str) -> bool {
    list.as_ref()
        .is_none_or(|globs| globs.iter().any(|g| Glob::new(g).matches(id)))
}

impl TokenScope {
    /// Whether the token sees session `id`.
    pub fn allows_session(&self, id: &str) -> bool {
        allowed(&self.sessions, id)
    }

    /// Whether the token sees source `id`.
    pub fn allows_source(&self, id: &str) -> bool {
        allowed(&self.sources, id)
    }

    /// Whether the token's live feeds carry events of type `name` (its `events` globs).
    pub fn allows_event(&self, name: &str) -> bool {
        allowed(&self.events, name)
    }

    /// Whether the token sees the device with serial `serial`.
    pub fn allows_device(&self, serial: &str) -> bool {
        allowed(&self.devices, serial)
    }

    /// Whether the token may name `pattern` in a session's device list: with a device
    /// scope, only patterns within it.
    pub fn may_name_devices(&self, pattern: &str) -> bool {
        covers(&self.devices, &Some(vec![pattern.to_string()]))
    }

    /// Whether the token may name source `name` in a session's source list: with a source
    /// scope, only a source within it, never a wildcard (which would reach the others).
    pub fn may_name_source(&self, name: &str) -> bool {
        self.sources.is_none() || (!name.contains(['*', '?']) && self.allows_source(name))
    }

    /// Whether the sessions the token creates or changes may only send to live feeds,
    /// which filter each event by the token: a token limited to some events or devices
    /// could otherwise send what it may not see to a peer of its choosing.
    pub fn live_outputs_only(&self) -> bool {
        self.events.is_some() || self.devices.is_some()
    }

    /// Whether the token is limited in no way (sessions, sources, events or devices).
    pub fn is_unlimited(&self) -> bool {
        self.sessions.is_none()
            && self.sources.is_none()
            && self.events.is_none()
            && self.devices.is_none()
    }

    /// Whether `other` sees nothing this scope does not: a token may only create or
    /// manage tokens within its own scope.
    pub fn contains(&self, other: &TokenScope) -> bool {
        covers(&self.sessions, &other.sessions)
            && covers(&self.sources, &other.sources)
            && covers(&self.events, &other.events)
            && covers(&self.devices, &other.devices)
    }

    /// Whether every event `pattern` matches is within the token's events.
    pub fn allows_events(&self, pattern: &str) -> bool {
        let wanted = Glob::new(pattern);
        self.events
            .as_ref()
            .is_none_or(|globs| globs.iter().any(|g| Glob::new(g).covers(&wanted)))
    }
}

/// Who made a request, once the guard has checked it.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Token id (`local` when authentication is off, `anonymous` on public routes).
    pub token_id: Arc<str>,
    /// Its role.
    pub role: Role,
    /// What it may see.
    pub scope: Arc<TokenScope>,
    /// Whether it showed a valid token (false when authentication is off).
    pub authenticated: bool,
    /// The token's version when it was checked (a live connection of an older version
    /// is refused).
    pub generation: u64,
}

impl Principal {
    /// Everything, no token: the server runs without authentication. Built once: every
    /// request of such a server carries it.
    pub fn local() -> Self {
        static LOCAL: std::sync::OnceLock<Principal> = std::sync::OnceLock::new();
        LOCAL
            .get_or_init(|| Self {
                token_id: Arc::from("local"),
                role: Role::Admin,
                scope: Arc::new(TokenScope::default()),
                authenticated: false,
                generation: 0,
            })
            .clone()
    }

    /// A caller of a public route who showed no token: sees nothing by id. Built once.
    pub fn anonymous() -> Self {
        static ANONYMOUS: std::sync::OnceLock<Principal> = std::sync::OnceLock::new();
        ANONYMOUS
            .get_or_init(|| Self {
                token_id: Arc::from("anonymous"),
                role: Role::Viewer,
                scope: Arc::new(TokenScope {
                    sessions: Some(Vec::new()),
                    sources: Some(Vec::new()),
                    events: Some(Vec::new()),
                    devices: Some(Vec::new()),
                }),
                authenticated: false,
                generation: 0,
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(sessions: Option<&[&str]>, events: Option<&[&str]>) -> TokenScope {
        let list = |l: Option<&[&str]>| l.map(|l| l.iter().map(|s| s.to_string()).collect());
        TokenScope {
            sessions: list(sessions),
            sources: None,
            events: list(events),
            devices: None,
        }
    }

    #[test]
    fn a_scope_contains_only_what_it_covers_in_every_kind() {
        let labs = scope(Some(&["lab-*"]), None);
        assert!(TokenScope::default().contains(&labs));
        assert!(labs.contains(&labs));
        assert!(labs.contains(&scope(Some(&["lab-1", "lab-2?"]), Some(&["face_*"]))));
        assert!(!labs.contains(&TokenScope::default()), "unscoped is wider");
        assert!(!labs.contains(&scope(Some(&["*"]), None)));
        assert!(!labs.contains(&scope(Some(&["lab-1", "other"]), None)));
        let faces = scope(None, Some(&["face_*"]));
        assert!(!faces.contains(&scope(None, Some(&["*"]))));
        assert!(faces.contains(&scope(Some(&["x"]), Some(&["face_detected"]))));
    }
}
