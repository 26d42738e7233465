//! `GET /api/v1/templates`, `GET/PUT /api/v1/templates/{name}`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde_json::{json, Value};
use synopticon_actors::session::templates::TemplateOrigin;

use super::{redacted_json, resource};
use crate::error::ApiError;
use crate::startup::AppState;

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/v1/templates").route(web::get().to(list)))
        .service(
            resource("/api/v1/templates/{name}")
                .route(web::get().to(get))
                .route(web::put().to(put)),
        );
}

async fn list(state: web::Data<AppState>) -> HttpResponse {
    redacted_json(
        StatusCode::OK,
        &json!({"templates": state.templates.list()}),
    )
}

async fn get(
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let template = state.templates.get(&name).ok_or_else(|| {
        ApiError::NotFound(format!(
            "template {:?} not found (available: {})",
            name.as_str(),
            state.templates.names()
        ))
    })?;
    Ok(redacted_json(StatusCode::OK, &template))
}

/// 201 when new, 200 when it replaced a user template, 409 for a built-in name.
async fn put(
    state: web::Data<AppState>,
    name: web::Path<String>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let replaced = state.templates.put(&name, &body, TemplateOrigin::Api)?;
    let template = state.templates.get(&name);
    tracing::info!(template = name.as_str(), replaced, "template registered");
    let status = if replaced {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(redacted_json(status, &template))
}
