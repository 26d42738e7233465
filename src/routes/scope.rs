//! What a token may see and change beyond one route's own resource: a source's error
//! text and its device, a recording's contents, where a session's events may go, which
//! events it may post. The area files share these rules; none imports another for them.

use synopticon_actors::distributor::DistributorKind;
use synopticon_actors::messages::IncomingEvent;
use synopticon_actors::recording::RecordingInfo;
use synopticon_actors::source::actor::SourceStatus;
use synopticon_actors::source::hub::SourceReport;

use crate::auth::{Principal, Role, TokenScope};
use crate::error::ApiError;
use crate::state::AppState;

/// What a source's capture error is replaced with for anyone but an admin.
pub const HIDDEN_SOURCE_ERROR: &str =
    "the source cannot be read; the error itself is shown to admins";

/// A source's status as `principal` may see it. Capture errors are for admins: a stream's
/// says whether a port answered and how (operators could map a network with stream
/// sources), a file's whether a path exists.
pub fn disclosed(principal: &Principal, mut status: SourceStatus) -> SourceStatus {
    if principal.role != Role::Admin && status.last_error.is_some() {
        status.last_error = Some(HIDDEN_SOURCE_ERROR.into());
    }
    status
}

/// Whether the token may see the device a source belongs to (a source of no device: yes).
pub fn sees_device_of(principal: &Principal, report: &SourceReport) -> bool {
    report
        .device
        .as_deref()
        .is_none_or(|serial| principal.scope.allows_device(serial))
}

/// The source, if the token may see it: a device's source outside the token's device
/// scope is not found, like the device itself.
pub fn visible_source(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<SourceReport, ApiError> {
    let report = state.sources.get(id)?;
    if sees_device_of(principal, &report) {
        Ok(report)
    } else {
        Err(ApiError::NotFound(format!("source {id:?} not found")))
    }
}

/// Whether a token sees a recording: only as far as its live feed of the recorded session
/// would have carried all of it (docs/SECURITY.md#recordings). The session must be in its
/// scope; a recording taken in from a file needs a token without any scope; and a token
/// limited to some sources, devices or events sees a recording only when every source,
/// device and event type the recording holds lies within those limits (one whose
/// contents are not known, it does not see).
pub fn may_see(scope: &TokenScope, info: &RecordingInfo) -> bool {
    if !scope.allows_session(&info.session) {
        return false;
    }
    if info.is_imported() {
        return scope.is_unlimited();
    }
    if scope.sources.is_none() && scope.devices.is_none() && scope.events.is_none() {
        return true;
    }
    info.holds.as_ref().is_some_and(|holds| {
        holds.complete
            && holds.sources.iter().all(|s| scope.allows_source(s))
            && holds.devices.iter().all(|d| scope.allows_device(d))
            && holds.events.iter().all(|e| scope.allows_event(e))
    })
}

/// Live feeds filter by the token that opened them; other outputs (webhooks, MQTT, ...)
/// carry whatever the session routes to them.
pub fn is_live(kind: DistributorKind) -> bool {
    matches!(kind, DistributorKind::Websocket | DistributorKind::Sse)
}

/// Where a scoped token may send a session's events. A token limited to some events may
/// not enable an output other than live feeds (which filter by its scope), nor change the
/// routing or sources of a session that has one; a token limited to some sources may
/// change where a session's events go only when the session listens to no source outside
/// that scope (and likewise for devices). `kind` is the distributor changed; `None` for
/// routing, sources and devices.
pub async fn check_outputs_scope(
    state: &AppState,
    principal: &Principal,
    id: &str,
    kind: Option<DistributorKind>,
) -> Result<(), ApiError> {
    let scope = &principal.scope;
    if scope.events.is_none() && scope.sources.is_none() && scope.devices.is_none() {
        return Ok(());
    }
    if id == synopticon_actors::system::SYSTEM_SESSION {
        return Err(ApiError::Forbidden(format!(
            "the system session carries every source's and device's events: token {:?} is \
             limited, and only a token without a scope may change where they go",
            principal.token_id
        )));
    }
    let events_only = || {
        ApiError::Forbidden(format!(
            "token {:?} is limited to some events or devices; it may not send events to \
             distributors other than live feeds",
            principal.token_id
        ))
    };
    if scope.live_outputs_only() && kind.is_some_and(|k| !is_live(k)) {
        return Err(events_only());
    }
    let status = state.sessions.status(id).await?;
    if scope.live_outputs_only()
        && kind.is_none()
        && status.distributors.iter().any(|d| !is_live(d.kind))
    {
        return Err(events_only());
    }
    if scope.sources.is_some()
        && status
            .config
            .sources
            .iter()
            .any(|s| !scope.may_name_source(s))
    {
        return Err(ApiError::Forbidden(format!(
            "session {id:?} listens to sources outside token {:?}'s scope; only a token that \
             may see all of them can change its distributors, routing or sources",
            principal.token_id
        )));
    }
    if scope.devices.is_some()
        && status
            .config
            .devices
            .iter()
            .any(|d| !scope.may_name_devices(d))
    {
        return Err(ApiError::Forbidden(format!(
            "session {id:?} listens to devices outside token {:?}'s scope; only a token that \
             may see all of them can change its distributors, routing, sources or devices",
            principal.token_id
        )));
    }
    Ok(())
}

/// A token limited to some events publishes only those, as its live feeds receive only
/// those (403 naming the first outside, nothing accepted).
pub fn check_publish_scope(
    principal: &Principal,
    events: &[IncomingEvent],
) -> Result<(), ApiError> {
    match events
        .iter()
        .find(|e| !principal.scope.allows_event(&e.name))
    {
        None => Ok(()),
        Some(e) => Err(ApiError::Forbidden(format!(
            "token {:?} may not publish {:?}: it is limited to the events {:?}",
            principal.token_id,
            e.name,
            principal.scope.events.clone().unwrap_or_default()
        ))),
    }
}
