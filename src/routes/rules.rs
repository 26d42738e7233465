//! Rules: `GET /api/v1/rules`, `GET/PUT/DELETE /api/v1/rules/{name}`, and
//! `POST /api/v1/rules/test` (which rules an event would match, and why not; nothing acts).
//! A rule made over REST is kept in the store; one declared in the configuration changes
//! only there. Rules see every source's events, so changing them is for unscoped admins.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use synopticon_actors::rules::engine::RulesError;
use synopticon_actors::rules::{normalize, EventView};
use synopticon_actors::store::Kind;
use synopticon_actors::validation::Report;

use super::api::{Answers, Api, Content, Takes};
use super::body::redacted_json;
use crate::audit;
use crate::auth::{Access, Principal, ResourceScope, Role};
use crate::error::ApiError;
use crate::state::AppState;

/// Registers the routes.
pub fn configure(api: &mut Api) {
    // Rules see every source and device: reading them (recipients, webhooks, conditions)
    // is for tokens without a scope.
    api.resource("/api/v1/rules", ResourceScope::None, |r| {
        r.get(Access::Unscoped(Role::Viewer), list)
    });
    // Captures show every source's frames: for tokens without a scope, like the rules.
    api.resource("/api/v1/rules/captures", ResourceScope::None, |r| {
        r.get(Access::Unscoped(Role::Viewer), captures)
    });
    api.resource(
        "/api/v1/rules/captures/{path:.*}",
        ResourceScope::None,
        |r| {
            r.get(Access::Unscoped(Role::Viewer), capture)
                .answers(Answers::ok(Content::Binary("image/jpeg")))
        },
    );
    api.resource("/api/v1/rules/test", ResourceScope::None, |r| {
        r.post(Access::Unscoped(Role::Operator), test)
    });
    api.resource("/api/v1/rules/{name}", ResourceScope::None, |r| {
        r.get(Access::Unscoped(Role::Viewer), get)
            .put(Access::ServerAdmin, put)
            .takes(Takes::Object { required: true })
            .answers(Answers::PUT)
            .delete(Access::ServerAdmin, remove)
            .answers(Answers::NO_CONTENT)
    });
}

impl From<RulesError> for ApiError {
    fn from(e: RulesError) -> Self {
        match e {
            RulesError::NotFound(_) => Self::NotFound(e.to_string()),
            RulesError::Declared(_) => Self::Conflict(e.to_string()),
            RulesError::Invalid(report) => Self::invalid("invalid rule", report),
        }
    }
}

async fn list(state: web::Data<AppState>) -> HttpResponse {
    redacted_json(StatusCode::OK, &json!({"rules": state.rules.list()}))
}

async fn get(
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(redacted_json(StatusCode::OK, &state.rules.status(&name)?))
}

/// Query of the captures list.
#[derive(serde::Deserialize)]
struct CapturesQuery {
    /// How many (newest first), 1-200, default 24.
    limit: Option<usize>,
}

/// The newest frame captures: `path` (for `GET /api/v1/rules/captures/{path}`), `at`,
/// `bytes`.
async fn captures(
    state: web::Data<AppState>,
    query: web::Query<CapturesQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(24);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit: {limit} must be 1 to 200"
        )));
    }
    let dir = std::path::PathBuf::from(&state.settings.rules.captures_dir);
    let newest = web::block(move || synopticon_actors::rules::capture::newest(&dir, limit))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let list: Vec<Value> = newest
        .into_iter()
        .map(|(path, at, bytes)| {
            json!({"path": path, "at": DateTime::<Utc>::from(at), "bytes": bytes})
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"captures": list})))
}

/// One capture as a JPEG.
async fn capture(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let dir = std::path::PathBuf::from(&state.settings.rules.captures_dir);
    let relative = path.into_inner();
    let bytes =
        web::block(move || synopticon_actors::rules::capture::read_capture(&dir, &relative))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(ApiError::NotFound)?;
    Ok(HttpResponse::Ok()
        .content_type("image/jpeg")
        .insert_header(("Cache-Control", "private, max-age=3600"))
        .body(bytes))
}

/// 201 when new, 200 when it replaced one; checked, kept, then in force.
async fn put(
    state: web::Data<AppState>,
    principal: Principal,
    name: web::Path<String>,
    body: super::body::JsonObject,
) -> Result<HttpResponse, ApiError> {
    if state.rules.is_declared(&name) {
        return Err(RulesError::Declared(name.to_string()).into());
    }
    let (_, warnings) = state
        .rules
        .check(&name, &body)
        .map_err(RulesError::Invalid)?;
    state.store.put(Kind::Rule, &name, &body).await?;
    let replaced = state.rules.put(&name, &body, false)?;
    audit::record(&principal, "rule.put", &name);
    let code = if replaced {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let mut answer = serde_json::to_value(state.rules.status(&name)?)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    if !warnings.is_empty() {
        answer["warnings"] = serde_json::json!(warnings);
    }
    Ok(redacted_json(code, &answer))
}

async fn remove(
    state: web::Data<AppState>,
    principal: Principal,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    if state.rules.is_declared(&name) {
        return Err(RulesError::Declared(name.to_string()).into());
    }
    state.rules.status(&name)?;
    state.store.delete(Kind::Rule, &name).await?;
    state.rules.remove(&name).await?;
    audit::record(&principal, "rule.delete", &name);
    Ok(HttpResponse::NoContent().finish())
}

/// `{"event": "line_cross", "data": {...}, "source"?, "device"?, "ts"?}` → which rules
/// would match it (and which actions would run), and why the others would not. Or
/// `{"source": "door-cam", "envelopes": [...]}`: recorded envelopes replayed through a
/// scratch tracker with the source's lines, zones and thresholds, and each event they
/// raise tested the same way.
async fn test(
    state: web::Data<AppState>,
    principal: Principal,
    body: super::body::JsonObject,
) -> Result<HttpResponse, ApiError> {
    if let Some(envelopes) = body.get("envelopes") {
        let envelopes = envelopes.clone();
        return replay(state, &principal, &body, envelopes).await;
    }
    let mut report = Report::default();
    let name = match body.get("event").and_then(Value::as_str) {
        Some(n) if !n.is_empty() => normalize(n),
        _ => {
            report.error("event: the event type, e.g. \"line_cross\"");
            String::new()
        }
    };
    let data = body.get("data").cloned().unwrap_or_else(|| json!({}));
    if !data.is_object() {
        report.error("data: an object");
    }
    let text = |k: &str, report: &mut Report| match body.get(k) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            report.error(format!("{k}: a string"));
            None
        }
    };
    let source = text("source", &mut report);
    let device = text("device", &mut report);
    let at = match text("ts", &mut report) {
        None => Utc::now(),
        Some(ts) => match DateTime::parse_from_rfc3339(&ts) {
            Ok(t) => t.with_timezone(&Utc),
            Err(e) => {
                report.error(format!("ts: {ts:?} is not RFC 3339: {e}"));
                Utc::now()
            }
        },
    };
    if !report.is_valid() {
        return Err(ApiError::invalid("invalid test event", report));
    }
    let view = EventView {
        name: &name,
        data: &data,
        source: source.as_deref(),
        device: device.as_deref(),
        at,
    };
    Ok(HttpResponse::Ok().json(json!({"event": name, "results": state.rules.test(&view)})))
}

/// Most envelopes one test replays.
const MAX_REPLAY: usize = 10_000;

async fn replay(
    state: web::Data<AppState>,
    principal: &Principal,
    body: &Value,
    envelopes: Value,
) -> Result<HttpResponse, ApiError> {
    let mut report = Report::default();
    let source = body
        .get("source")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if source.is_empty() {
        report.error("source: the source whose lines and zones the envelopes go through");
    }
    let envelopes = match envelopes {
        Value::Array(list) if !list.is_empty() && list.len() <= MAX_REPLAY => list,
        _ => {
            report.error(format!(
                "envelopes: a list of 1 to {MAX_REPLAY} detection envelopes"
            ));
            Vec::new()
        }
    };
    if !report.is_valid() {
        return Err(ApiError::invalid("invalid test", report));
    }
    if !principal.scope.allows_source(source) {
        return Err(ApiError::NotFound(format!("source {source:?} not found")));
    }
    let config = super::scope::visible_source(&state, principal, source)?.config;
    let device = config.device_serial.clone();
    let id = source.to_string();
    // Up to ten thousand frames tracked and tested: off the server's threads.
    let tested = web::block(move || {
        let events = synopticon_actors::tracker::actor::replay(config, &envelopes)?;
        Ok::<_, String>(
            events
                .iter()
                .map(|e| {
                    let data: Value = serde_json::from_str(e.data.get()).unwrap_or(Value::Null);
                    let name = normalize(&e.name);
                    let view = EventView {
                        name: &name,
                        data: &data,
                        source: Some(&id),
                        device: device.as_deref(),
                        at: e.ts.unwrap_or_else(Utc::now),
                    };
                    json!({"event": name, "data": data, "results": state.rules.test(&view)})
                })
                .collect::<Vec<Value>>(),
        )
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| {
        let mut r = Report::default();
        r.error(e);
        ApiError::invalid("invalid envelopes", r)
    })?;
    Ok(HttpResponse::Ok().json(json!({"source": source, "events": tested})))
}
