//! `GET /api/v1/templates`, `GET/PUT /api/v1/templates/{name}`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde_json::{json, Value};
use synopticon_actors::session::templates::TemplateOrigin;

use super::{redacted_json, Api};
use crate::auth::{Access, ResourceScope};
use crate::error::ApiError;
use crate::startup::AppState;

/// Registers the routes.
pub fn configure(api: &mut Api) {
    api.resource("/api/v1/templates", ResourceScope::None, |r| {
        r.get(Access::VIEWER, list)
    });
    api.resource("/api/v1/templates/{name}", ResourceScope::None, |r| {
        // A template shapes other people's future sessions: configuration, for admins.
        r.get(Access::VIEWER, get).put(Access::ServerAdmin, put)
    });
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
    principal: crate::auth::Principal,
    name: web::Path<String>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let replaced = state.templates.put(&name, &body, TemplateOrigin::Api)?;
    let template = state.templates.get(&name);
    tracing::info!(template = name.as_str(), replaced, "template registered");
    crate::audit::record(&principal, "template.put", &name);
    let status = if replaced {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(redacted_json(status, &template))
}
