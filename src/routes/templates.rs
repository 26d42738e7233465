//! `GET /api/v1/templates`, `GET/PUT/DELETE /api/v1/templates/{name}`; templates made over
//! REST are kept in the store.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde_json::json;
use synopticon_actors::session::templates::TemplateOrigin;
use synopticon_actors::store::Kind;

use super::api::{Answers, Api, Takes};
use super::body::redacted_json;
use crate::auth::{Access, ResourceScope};
use crate::error::ApiError;
use crate::state::AppState;

/// Registers the routes.
pub fn configure(api: &mut Api) {
    api.resource("/api/v1/templates", ResourceScope::None, |r| {
        r.get(Access::VIEWER, list)
    });
    api.resource("/api/v1/templates/{name}", ResourceScope::None, |r| {
        // A template shapes other people's future sessions: configuration, for admins.
        r.get(Access::VIEWER, get)
            .put(Access::ServerAdmin, put)
            .takes(Takes::Object { required: true })
            .answers(Answers::PUT)
            .delete(Access::ServerAdmin, remove)
            .answers(Answers::NO_CONTENT)
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

/// 201 when new, 200 when it replaced a user template, 409 for a built-in name. Kept in
/// the store before the answer; a store that cannot take it leaves things as they were.
async fn put(
    state: web::Data<AppState>,
    principal: crate::auth::Principal,
    name: web::Path<String>,
    body: super::body::JsonObject,
) -> Result<HttpResponse, ApiError> {
    let previous = state.templates.put(&name, &body, TemplateOrigin::Api)?;
    if let Err(error) = state.store.put(Kind::Template, &name, &body).await {
        state.templates.restore(&name, previous);
        return Err(error.into());
    }
    let replaced = previous.is_some();
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

/// 204; 409 for a built-in template or one from a file, 404 for none.
async fn remove(
    state: web::Data<AppState>,
    principal: crate::auth::Principal,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let removed = state.templates.remove(&name)?;
    if let Err(error) = state.store.delete(Kind::Template, &name).await {
        state.templates.restore(&name, Some(removed));
        return Err(error.into());
    }
    tracing::info!(template = name.as_str(), "template removed");
    crate::audit::record(&principal, "template.delete", &name);
    Ok(HttpResponse::NoContent().finish())
}
