//! Vision sources: `GET/POST /api/v1/sources`, `GET/PATCH/DELETE /api/v1/sources/{id}`,
//! `GET /api/v1/sources/{id}/tracks` (the tracker's view),
//! `POST /api/v1/sources/{id}/detections` (edge devices), and which sources a session
//! listens to: `PUT /api/v1/sessions/{id}/sources`.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use synopticon_actors::devices::registry::DEVICE_SOURCE_PREFIX;
use synopticon_actors::session::spec::parse_sources;
use synopticon_actors::source::hub::SourceReport;
use synopticon_actors::source::hub::PATCHABLE;
use synopticon_actors::source::SourceConfig;
use synopticon_actors::store::Kind;
use synopticon_actors::validation::Report;

use super::api::{Answers, Api, Content, Takes};
use super::body::redacted_json;
pub use super::scope::HIDDEN_SOURCE_ERROR;
use super::scope::{check_outputs_scope, disclosed, sees_device_of, visible_source};
use crate::audit;
use crate::auth::guard::limit_events;
use crate::auth::{Access, Principal, ResourceScope};
use crate::error::ApiError;
use crate::state::AppState;

/// Registers the routes.
pub fn configure(api: &mut Api) {
    api.resource("/api/v1/sources", ResourceScope::None, |r| {
        r.get(Access::VIEWER, list)
            .post(Access::OPERATOR, create)
            .answers(Answers::CREATED)
    });
    api.resource("/api/v1/sources/{id}", ResourceScope::Source, |r| {
        r.get(Access::VIEWER, get)
            .patch(Access::OPERATOR, patch)
            .delete(Access::OPERATOR, remove)
            .answers(Answers::NO_CONTENT)
    });
    api.resource(
        "/api/v1/sources/{id}/frame.jpg",
        ResourceScope::Source,
        |r| {
            r.get(Access::VIEWER, frame)
                .answers(Answers::ok(Content::Binary("image/jpeg")))
        },
    );
    api.resource("/api/v1/sources/{id}/tracks", ResourceScope::Source, |r| {
        r.get(Access::VIEWER, tracks)
    });
    api.resource(
        "/api/v1/sources/{id}/detections",
        ResourceScope::Source,
        |r| {
            r.post(Access::OPERATOR, detections)
                .answers(Answers::ACCEPTED)
        },
    );
    api.resource(
        "/api/v1/sessions/{id}/sources",
        ResourceScope::Session,
        |r| {
            r.put(Access::OPERATOR, session_sources)
                .takes(Takes::Strings)
        },
    );
}

/// The fields of a source configuration a PATCH may set (to put one back as it was).
fn patchable(config: &Value) -> Value {
    let fields = config
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| PATCHABLE.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Value::Object(fields)
}

fn report_for(principal: &Principal, report: SourceReport) -> SourceReport {
    SourceReport {
        status: disclosed(principal, report.status),
        ..report
    }
}

/// The sources the token may see.
async fn list(state: web::Data<AppState>, principal: Principal) -> HttpResponse {
    let sources: Vec<_> = state
        .sources
        .list()
        .into_iter()
        .filter(|s| principal.scope.allows_source(&s.id) && sees_device_of(&principal, s))
        .map(|s| report_for(&principal, s))
        .collect();
    redacted_json(StatusCode::OK, &json!({"sources": sources}))
}

async fn create(
    state: web::Data<AppState>,
    principal: Principal,
    body: super::body::JsonObject,
) -> Result<HttpResponse, ApiError> {
    let config: SourceConfig =
        serde_path_to_error::deserialize(body.into_inner()).map_err(|e| {
            let mut report = Report::default();
            report.error(format!("{}: {}", e.path(), e.inner()));
            ApiError::invalid("invalid source configuration", report)
        })?;
    if config.id.starts_with(DEVICE_SOURCE_PREFIX) {
        let mut report = Report::default();
        report.error(format!(
            "id: {:?}: ids starting with {DEVICE_SOURCE_PREFIX:?} are the sources of registered devices (POST /api/v1/devices)",
            config.id
        ));
        return Err(ApiError::invalid("invalid source configuration", report));
    }
    if !principal.scope.allows_source(&config.id) {
        return Err(ApiError::Forbidden(format!(
            "token {:?} may only create sources matching {:?}",
            principal.token_id,
            principal.scope.sources.clone().unwrap_or_default()
        )));
    }
    let id = config.id.clone();
    let kept = serde_json::to_value(&config).unwrap_or(Value::Null);
    let created = state.sources.add(config)?;
    if let Err(error) = state.store.put(Kind::Source, &id, &kept).await {
        // Not kept: stopped, rather than running until the next restart forgets it.
        let _ = state.sources.remove(&id);
        return Err(error.into());
    }
    audit::record(&principal, "source.create", &id);
    Ok(redacted_json(
        StatusCode::CREATED,
        &report_for(&principal, created),
    ))
}

/// Stream URLs may carry a camera's password: every answer goes through the redaction.
async fn get(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let report = report_for(&principal, visible_source(&state, &principal, &id)?);
    Ok(redacted_json(StatusCode::OK, &report))
}

/// The tracks held now, with their states: what the tracker sees, for checking lines,
/// zones and thresholds against a live scene.
async fn tracks(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    visible_source(&state, &principal, &id)?;
    let timeout = state.request_timeout;
    let (frames, tracks) = tokio::time::timeout(timeout, state.sources.tracks(&id))
        .await
        .map_err(|_| {
            ApiError::Unavailable(format!(
                "the tracker of {:?} did not answer within {} ms",
                *id,
                timeout.as_millis()
            ))
        })??;
    Ok(HttpResponse::Ok().json(json!({"source": *id, "frames_tracked": frames, "tracks": tracks})))
}

/// The latest analysed frame as a JPEG (`?quality=`, 1-100, default 80): encoded when
/// asked, so a source nobody watches costs nothing. 404 until a frame was analysed.
async fn frame(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    visible_source(&state, &principal, &id)?;
    let quality = match query.get("quality") {
        None => 80,
        Some(q) => q
            .parse::<u8>()
            .ok()
            .filter(|q| (1..=100).contains(q))
            .ok_or_else(|| ApiError::BadRequest(format!("quality: {q:?} must be 1 to 100")))?,
    };
    let Some(latest) = state.sources.latest_frame(&id)? else {
        return Err(ApiError::NotFound(format!(
            "source {:?} has no analysed frame yet",
            *id
        )));
    };
    let cached = state.snapshots.lock().ok().and_then(|s| {
        s.get(id.as_str())
            .filter(|c| std::sync::Arc::ptr_eq(&c.frame, &latest) && c.quality == quality)
            .map(|c| c.jpeg.clone())
    });
    let jpeg = match cached {
        Some(jpeg) => jpeg,
        None => {
            let dirs = state.settings.rules.settings().frame_ref_dirs;
            let frame = latest.clone();
            let jpeg = web::block(move || {
                synopticon_actors::rules::capture::frame_jpeg(&frame, &dirs, quality)
            })
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(|e| ApiError::NotFound(format!("the latest frame cannot be shown: {e}")))?;
            if let Ok(mut snapshots) = state.snapshots.lock() {
                // Bounded by the sources that exist: removed ones' entries go when it
                // no longer fits.
                if snapshots.len() >= 2 * state.settings.server.max_sources {
                    snapshots.clear();
                }
                snapshots.insert(
                    id.to_string(),
                    crate::state::Snapshot {
                        frame: latest,
                        quality,
                        jpeg: jpeg.clone(),
                    },
                );
            }
            jpeg
        }
    };
    Ok(HttpResponse::Ok()
        .content_type("image/jpeg")
        .insert_header(("Cache-Control", "no-store"))
        .body(jpeg))
}

async fn patch(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    body: super::body::JsonObject,
) -> Result<HttpResponse, ApiError> {
    let before = visible_source(&state, &principal, &id)?;
    refuse_device_source(&before)?;
    let before = before.config;
    let patched = state.sources.patch(&id, &body)?;
    let kept = serde_json::to_value(&patched.config).unwrap_or(Value::Null);
    if let Err(error) = state.store.put(Kind::Source, &id, &kept).await {
        let undo = serde_json::to_value(&before).unwrap_or(Value::Null);
        let _ = state.sources.patch(&id, &patchable(&undo));
        return Err(error.into());
    }
    let patched = report_for(&principal, patched);
    audit::record(&principal, "source.update", &id);
    Ok(redacted_json(StatusCode::OK, &patched))
}

async fn remove(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    refuse_device_source(&visible_source(&state, &principal, &id)?)?;
    // Forgotten by the store first: a source the store still held would come back.
    state.store.delete(Kind::Source, &id).await?;
    state.sources.remove(&id)?;
    audit::record(&principal, "source.delete", &id);
    Ok(HttpResponse::NoContent().finish())
}

/// A device's source follows its device: it is changed, started and stopped there.
fn refuse_device_source(report: &SourceReport) -> Result<(), ApiError> {
    match &report.device {
        Some(serial) => Err(ApiError::Conflict(format!(
            "source {:?} belongs to device {serial:?}: change the device (stream_on, stream_url, ai_enabled, detection_classes, source) with PATCH /api/v1/devices/sn/{serial}",
            report.id
        ))),
        None => Ok(()),
    }
}

async fn detections(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
    id: web::Path<String>,
    body: super::body::JsonObject,
) -> Result<HttpResponse, ApiError> {
    limit_events(&state.auth, &req, &principal, 1)?;
    visible_source(&state, &principal, &id)?;
    let accepted = state.sources.ingest(&id, body.into_inner()).await?;
    // A message delivered again (same frame number and timestamp) is accepted and changes
    // nothing.
    Ok(
        HttpResponse::Accepted().json(json!({"source": *id, "accepted": accepted.detections,
        "duplicate": accepted.duplicate})),
    )
}

async fn session_sources(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    body: super::body::JsonArray,
) -> Result<HttpResponse, ApiError> {
    let mut report = Report::default();
    let sources = parse_sources("sources", &body, &mut report);
    if !report.is_valid() {
        return Err(ApiError::invalid("invalid source list", report));
    }
    // A token limited to some sources cannot make a session listen to others.
    if let Some(hidden) = sources.iter().find(|s| !principal.scope.may_name_source(s)) {
        return Err(ApiError::NotFound(format!("source {hidden:?} not found")));
    }
    let target = id.into_inner();
    check_outputs_scope(&state, &principal, &target, None).await?;
    let sources = state.sessions.set_sources(&target, sources).await?;
    audit::record(&principal, "session.sources", &target);
    Ok(HttpResponse::Ok().json(json!({"sources": sources})))
}
