//! The HTTP surface, one file per API area; each exposes `configure`.
//!
//! - [`health`](self::health): `/api/health`
//! - [`system`](self::system): `/api/config`, `/api/runtime`
//! - [`metrics`](self::metrics): `/metrics`
//! - [`templates`](self::templates): `/api/v1/templates`
//! - [`sessions`](self::sessions): `/api/v1/sessions` (sessions, distributors, routing, events)
//! - [`live`](self::live): `/api/v1/sessions/{id}/ws` and `/sse`
//! - [`inference`](self::inference): `/api/v1/detect`, `/api/v1/batch`, `/api/pipelines`
//! - [`sources`](self::sources): `/api/v1/sources` (vision sources, edge detections) and
//!   `/api/v1/sessions/{id}/sources`
//! - [`debug`](self::debug): `/api/v1/debug` (fault injection, only with `server.debug_endpoints`)

pub mod debug;
pub mod health;
pub mod inference;
pub mod live;
pub mod metrics;
pub mod sessions;
pub mod sources;
pub mod system;
pub mod templates;

use std::future::Future;
use std::time::Duration;

use actix::prelude::*;
use actix_web::error::JsonPayloadError;
use actix_web::{web, HttpRequest, HttpResponse};
use synopticon_actors::messages::FindSession;
use synopticon_actors::session::SessionActor;

use crate::configuration::Settings;
use crate::error::ApiError;
use crate::startup::AppState;

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig, settings: &Settings) {
    let limit = settings.server.max_body_bytes;
    cfg.app_data(
        web::JsonConfig::default()
            .limit(limit)
            .content_type_required(false)
            .error_handler(move |err, _| json_error(err, limit).into()),
    )
    .app_data(web::PayloadConfig::default().limit(limit));
    health::configure(cfg);
    system::configure(cfg);
    metrics::configure(cfg);
    templates::configure(cfg);
    sessions::configure(cfg);
    live::configure(cfg);
    inference::configure(cfg);
    sources::configure(cfg);
    if settings.server.debug_endpoints {
        debug::configure(cfg);
    }
    cfg.default_service(web::to(not_found));
}

/// Describes the server-side metrics.
pub fn describe_metrics() {
    live::describe_metrics();
}

fn json_error(err: JsonPayloadError, limit: usize) -> ApiError {
    match err {
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
            ApiError::PayloadTooLarge(format!(
                "request body is larger than the limit of {limit} bytes"
            ))
        }
        JsonPayloadError::Deserialize(e) => {
            ApiError::BadRequest(format!("request body is not valid JSON: {e}"))
        }
        other => ApiError::BadRequest(format!("cannot read request body: {other}")),
    }
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}

/// A resource whose unsupported methods answer 405 with a JSON body.
pub fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(|req: HttpRequest| async move {
        Err::<HttpResponse, _>(ApiError::MethodNotAllowed(format!(
            "{} is not supported on {}",
            req.method(),
            req.path()
        )))
    }))
}

/// Waits for an actor's answer at most `timeout`; a stopped actor or a late one is a 503.
pub async fn ask<T, E>(
    what: &str,
    timeout: Duration,
    request: impl Future<Output = Result<T, E>>,
) -> Result<T, ApiError> {
    match tokio::time::timeout(timeout, request).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(_)) => Err(ApiError::Unavailable(format!("{what} is not running"))),
        Err(_) => Err(ApiError::Unavailable(format!(
            "{what} did not answer within {} ms",
            timeout.as_millis()
        ))),
    }
}

/// The session called `id`, or 404.
pub async fn find_session(state: &AppState, id: &str) -> Result<Addr<SessionActor>, ApiError> {
    ask(
        "the session registry",
        state.request_timeout,
        state.registry.send(FindSession(id.to_string())),
    )
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("session {id:?} not found")))
}

/// A JSON response with secrets redacted.
pub fn redacted_json(
    status: actix_web::http::StatusCode,
    value: &impl serde::Serialize,
) -> HttpResponse {
    let mut json = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
    crate::configuration::redact(&mut json);
    HttpResponse::build(status).json(json)
}
