//! Sessions over REST: create (from a template with overrides), validate, list, status,
//! close; enable/reconfigure/disable one distributor; replace routing; post events.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use synopticon_actors::distributor::DistributorKind;
use synopticon_actors::session::SessionStatus;

use super::api::{Answers, Api, Takes};
use super::body::{
    body_too_large, optional_json, parse_events, read_body, read_json_body, redacted_json,
};
use super::scope::{check_outputs_scope, check_publish_scope, is_live};
use crate::audit;
use crate::auth::guard::limit_events;
use crate::auth::{Access, Principal, ResourceScope};
use crate::error::ApiError;
use crate::state::AppState;

/// Registers the routes.
pub fn configure(api: &mut Api) {
    api.resource("/api/v1/sessions/validate", ResourceScope::None, |r| {
        r.post(Access::OPERATOR, validate)
    });
    api.resource("/api/v1/sessions", ResourceScope::None, |r| {
        r.get(Access::VIEWER, list)
            .post(Access::OPERATOR, create)
            .answers(Answers::CREATED)
    });
    api.resource("/api/v1/sessions/{id}", ResourceScope::Session, |r| {
        r.get(Access::VIEWER, status)
            .delete(Access::OPERATOR, close)
    });
    api.resource(
        "/api/v1/sessions/{id}/distributors/{kind}",
        ResourceScope::Session,
        |r| {
            r.put(Access::OPERATOR, put_distributor)
                .takes(Takes::Object { required: false })
                .delete(Access::OPERATOR, delete_distributor)
        },
    );
    api.resource(
        "/api/v1/sessions/{id}/routing",
        ResourceScope::Session,
        |r| {
            r.put(Access::OPERATOR, put_routing)
                .takes(Takes::Object { required: true })
        },
    );
    api.resource(
        "/api/v1/sessions/{id}/events",
        ResourceScope::Session,
        |r| {
            r.post(Access::OPERATOR, post_events)
                .takes(Takes::Events)
                .answers(Answers::ACCEPTED)
        },
    );
}

async fn validate(
    state: web::Data<AppState>,
    principal: Principal,
    body: super::body::JsonObject,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    // The answer says whether an id is taken: only for ids the token may see.
    check_new_session_scope(&principal, &body)?;
    let report = state.sessions.validate(body).await?;
    Ok(HttpResponse::Ok().json(json!({
        "valid": report.is_valid(),
        "errors": report.errors,
        "warnings": report.warnings,
    })))
}

async fn create(
    state: web::Data<AppState>,
    principal: Principal,
    body: super::body::JsonObject,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    check_new_session_scope(&principal, &body)?;
    // The built-in session's id stays reserved, also on a server that runs without it.
    if body.get("id").and_then(Value::as_str) == Some(synopticon_actors::system::SYSTEM_SESSION) {
        return Err(ApiError::Conflict(
            "session \"system\" is the built-in system session's id (system.session)".into(),
        ));
    }
    let created = state.sessions.create(body).await?;
    audit::record(&principal, "session.create", &created.id);
    // A token limited to some events or devices gets live feeds only (its template or
    // body may have asked for more): taken back at once, before any event could reach it.
    if principal.scope.live_outputs_only() && created.distributors.iter().any(|d| !is_live(d.kind))
    {
        state.sessions.close(&created.id).await?;
        audit::record(&principal, "session.close", &created.id);
        return Err(ApiError::Forbidden(format!(
            "token {:?} is limited to some events or devices; a session it creates may only \
             have live feeds (websocket, sse)",
            principal.token_id
        )));
    }
    Ok(redacted_json(
        StatusCode::CREATED,
        &scoped_status(&state, &principal, &created).await,
    ))
}

/// A session status as a token sees it: of the sources and devices the session listens
/// to, only those in the token's scope are named, and of its recordings and the one
/// playing into it, only those the token may see (`recordings::may_see`).
async fn scoped_status(state: &AppState, principal: &Principal, status: &SessionStatus) -> Value {
    let mut value = serde_json::to_value(status).unwrap_or(Value::Null);
    if !principal.scope.is_unlimited() {
        let hub = &state.rails.recordings;
        let mut seen = Vec::new();
        for id in &status.recordings {
            if hub
                .get(id)
                .await
                .is_ok_and(|info| super::scope::may_see(&principal.scope, &info))
            {
                seen.push(id.clone());
            }
        }
        value["recordings"] = json!(seen);
        if let Some(replay) = &status.replay {
            let visible = hub
                .get(&replay.recording)
                .await
                .is_ok_and(|info| super::scope::may_see(&principal.scope, &info));
            if !visible {
                value["replay"] = Value::Null;
            }
        }
    }
    if principal.scope.devices.is_some() {
        if let Some(Value::Array(devices)) = value.pointer_mut("/config/devices") {
            devices.retain(|d| {
                d.as_str()
                    .is_some_and(|d| principal.scope.may_name_devices(d))
            });
        }
    }
    if principal.scope.sources.is_some() {
        if let Some(Value::Array(sources)) = value.pointer_mut("/config/sources") {
            sources.retain(|s| {
                s.as_str()
                    .is_some_and(|s| principal.scope.may_name_source(s))
            });
        }
    }
    value
}

/// A token limited to some sessions names the new session's id, within its scope, and
/// only sources it may see.
fn check_new_session_scope(principal: &Principal, body: &Value) -> Result<(), ApiError> {
    let scope = &principal.scope;
    if scope.sessions.is_some() {
        // Both spellings are read (the request is refused when both are given, but the
        // scope check does not rely on that).
        let ids: Vec<Option<&str>> = ["id", "sessionId"]
            .iter()
            .filter_map(|k| body.get(*k))
            .map(Value::as_str)
            .collect();
        let all_in_scope = !ids.is_empty()
            && ids
                .iter()
                .all(|id| id.is_some_and(|id| scope.allows_session(id)));
        if !all_in_scope {
            return Err(ApiError::Forbidden(format!(
                "token {:?} may only create sessions with an \"id\" matching {:?}",
                principal.token_id,
                scope.sessions.clone().unwrap_or_default()
            )));
        }
    }
    let listed = body.get("sources").and_then(Value::as_array);
    for s in listed.into_iter().flatten() {
        let name = s.as_str().unwrap_or_default();
        if !scope.may_name_source(name) {
            return Err(ApiError::NotFound(format!("source {name:?} not found")));
        }
    }
    let devices = body.get("devices").and_then(Value::as_array);
    for d in devices.into_iter().flatten() {
        let pattern = d.as_str().unwrap_or_default();
        if !scope.may_name_devices(pattern) {
            return Err(ApiError::Forbidden(format!(
                "devices: this token may not listen to {pattern:?} (allowed: {:?})",
                scope.devices.clone().unwrap_or_default()
            )));
        }
    }
    Ok(())
}

async fn list(state: web::Data<AppState>, principal: Principal) -> Result<HttpResponse, ApiError> {
    let mut statuses = Vec::new();
    for s in state.sessions.list().await? {
        if principal.scope.allows_session(&s.id) {
            statuses.push(scoped_status(&state, &principal, &s).await);
        }
    }
    Ok(redacted_json(
        StatusCode::OK,
        &json!({"sessions": statuses}),
    ))
}

async fn status(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let status = state.sessions.status(&id).await?;
    Ok(redacted_json(
        StatusCode::OK,
        &scoped_status(&state, &principal, &status).await,
    ))
}

/// Closes the session: live clients get a close frame / stream end; the final counters
/// are returned.
async fn close(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let status = state.sessions.close(&id).await?;
    audit::record(&principal, "session.close", &status.id);
    Ok(redacted_json(
        StatusCode::OK,
        &scoped_status(&state, &principal, &status).await,
    ))
}

fn parse_kind(kind: &str) -> Result<DistributorKind, ApiError> {
    DistributorKind::parse(kind).ok_or_else(|| {
        ApiError::NotFound(format!(
            "unknown distributor {kind:?} (known: {})",
            DistributorKind::all_names()
        ))
    })
}

/// Enables with this config, or reconfigures in place when already enabled (200 either
/// way; `action` says which). Other distributors are not touched.
async fn put_distributor(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (id, kind) = path.into_inner();
    let kind = parse_kind(&kind)?;
    let limit = state.settings.server.max_body_bytes;
    let body = read_body(&req, payload, limit, || body_too_large(limit)).await?;
    // An empty body enables the distributor with the settings the session holds for it.
    let config = optional_json(&req, &body)?;
    check_outputs_scope(&state, &principal, &id, Some(kind)).await?;
    let change = state.sessions.put_distributor(&id, kind, config).await?;
    audit::record(
        &principal,
        "distributor.put",
        &format!("{id}/{}", kind.as_str()),
    );
    Ok(redacted_json(StatusCode::OK, &change))
}

async fn delete_distributor(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, kind) = path.into_inner();
    let kind = parse_kind(&kind)?;
    let status = state.sessions.disable_distributor(&id, kind).await?;
    audit::record(
        &principal,
        "distributor.delete",
        &format!("{id}/{}", kind.as_str()),
    );
    Ok(redacted_json(StatusCode::OK, &status))
}

async fn put_routing(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    body: super::body::JsonObject,
) -> Result<HttpResponse, ApiError> {
    check_outputs_scope(&state, &principal, &id, None).await?;
    let (status, report) = state
        .sessions
        .replace_routing(&id, body.into_inner())
        .await?;
    audit::record(&principal, "session.routing", &id);
    Ok(HttpResponse::Ok().json(json!({
        "eventRouting": status.config.event_routing,
        "warnings": report.warnings,
    })))
}

/// Accepts `{"event", "data"?, "ts"?}` or an array of them; 202 with where each went.
async fn post_events(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_json_body(&req, payload, state.settings.server.max_body_bytes).await?;
    // An unknown session is a 404 before the events are checked.
    state.sessions.status(&id).await?;
    let events = parse_events(&body, state.settings.server.max_events_per_request)?;
    check_publish_scope(&principal, &events)?;
    limit_events(&state.auth, &req, &principal, events.len())?;
    let routed = state.sessions.publish(&id, events).await?;
    Ok(HttpResponse::Accepted().json(json!({"accepted": routed.len(), "events": routed})))
}
