//! The audit trail: who (which token) changed what, as structured log lines under the
//! `synopticon::audit` target, so a log collector can keep them apart from the rest
//! (`log.format = "json"` gives one JSON object per line).
//!
//! Recorded: token creation, change and deletion; session creation and closing;
//! distributor, routing and source-list changes; source creation, change and removal;
//! template changes; device registration, change (which fields) and removal. Never
//! recorded: secrets (a token's secret, a request body).

use crate::auth::Principal;

/// Writes one audit line with what changed: `token` did `action` to `resource`, touching
/// `fields` (names only: values may be personal or secret).
pub fn record_change(principal: &Principal, action: &str, resource: &str, fields: &str) {
    tracing::info!(
        target: "synopticon::audit",
        token = %principal.token_id,
        role = principal.role.as_str(),
        action,
        resource,
        fields,
        "audit"
    );
}

/// Writes one audit line: `token` did `action` to `resource`.
pub fn record(principal: &Principal, action: &str, resource: &str) {
    tracing::info!(
        target: "synopticon::audit",
        token = %principal.token_id,
        role = principal.role.as_str(),
        action,
        resource,
        "audit"
    );
}
