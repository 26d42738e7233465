//! Vision sources: `GET/POST /api/v1/sources`, `GET/PATCH/DELETE /api/v1/sources/{id}`,
//! `POST /api/v1/sources/{id}/detections` (edge devices), and which sources a session
//! listens to: `PUT /api/v1/sessions/{id}/sources`.

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};
use synopticon_actors::messages::SetSessionSources;
use synopticon_actors::session::spec::parse_sources;
use synopticon_actors::source::SourceConfig;
use synopticon_actors::validation::Report;

use super::{ask, resource};
use crate::error::ApiError;
use crate::startup::AppState;

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/api/v1/sources")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(
        resource("/api/v1/sources/{id}")
            .route(web::get().to(get))
            .route(web::patch().to(patch))
            .route(web::delete().to(remove)),
    )
    .service(resource("/api/v1/sources/{id}/detections").route(web::post().to(detections)))
    .service(resource("/api/v1/sessions/{id}/sources").route(web::put().to(session_sources)));
}

async fn list(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"sources": state.sources.list()}))
}

async fn create(
    state: web::Data<AppState>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let config: SourceConfig =
        serde_path_to_error::deserialize(body.into_inner()).map_err(|e| {
            let mut report = Report::default();
            report.error(format!("{}: {}", e.path(), e.inner()));
            ApiError::invalid("invalid source configuration", report)
        })?;
    let created = state.sources.add(config)?;
    Ok(HttpResponse::Created().json(created))
}

async fn get(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.sources.get(&id)?))
}

async fn patch(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.sources.patch(&id, &body)?))
}

async fn remove(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.sources.remove(&id)?;
    Ok(HttpResponse::NoContent().finish())
}

async fn detections(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let accepted = state.sources.ingest(&id, body.into_inner()).await?;
    Ok(HttpResponse::Accepted().json(json!({"source": *id, "accepted": accepted})))
}

async fn session_sources(
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let mut report = Report::default();
    let sources = parse_sources("sources", &body, &mut report);
    if !report.is_valid() {
        return Err(ApiError::invalid("invalid source list", report));
    }
    let sources = ask(
        "the session registry",
        state.request_timeout,
        state.registry.send(SetSessionSources {
            session: id.into_inner(),
            sources,
        }),
    )
    .await??;
    Ok(HttpResponse::Ok().json(json!({"sources": sources})))
}
