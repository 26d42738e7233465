//! Bearer tokens over REST (admin only): `POST /api/v1/tokens` creates one and shows its
//! secret once; `GET` lists them (never a secret or a hash); `PATCH` changes a token's role
//! or scope and `DELETE` revokes it, both closing its live connections at once.

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use super::api::{Answers, Api};
use crate::audit;
use synopticon_actors::store::Kind;

use crate::auth::tokens::{TokenError, TokenRecord, TokenRequest};
use crate::auth::{Access, Principal, ResourceScope};
use crate::error::ApiError;
use crate::state::AppState;

/// Writes a token made or changed over REST to the store (its hash, never its secret).
async fn keep(state: &AppState, record: &TokenRecord) -> Result<(), ApiError> {
    let body = serde_json::to_value(record).unwrap_or(Value::Null);
    Ok(state.store.put(Kind::Token, &record.id, &body).await?)
}

/// Registers the routes.
pub fn configure(api: &mut Api) {
    api.resource("/api/v1/tokens", ResourceScope::None, |r| {
        r.get(Access::ADMIN, list)
            .post(Access::ADMIN, create)
            .answers(Answers::CREATED)
    });
    api.resource("/api/v1/tokens/{token}", ResourceScope::None, |r| {
        r.get(Access::ADMIN, get)
            .patch(Access::ADMIN, update)
            .delete(Access::ADMIN, delete)
            .answers(Answers::NO_CONTENT)
    });
}

/// The tokens within the caller's scope (all, for an unscoped admin).
async fn list(state: web::Data<AppState>, principal: Principal) -> HttpResponse {
    let tokens: Vec<Value> = state
        .auth
        .tokens
        .list()
        .iter()
        .filter(|t| principal.scope.contains(&t.scope))
        .map(|t| t.view())
        .collect();
    HttpResponse::Ok().json(json!({"tokens": tokens}))
}

/// 201 with the token's secret in `token`: the only time it is shown.
async fn create(
    state: web::Data<AppState>,
    principal: Principal,
    body: super::body::JsonObject,
) -> Result<HttpResponse, ApiError> {
    let request = TokenRequest::parse(&body, false)
        .map_err(|report| ApiError::invalid("invalid token request", report))?;
    let (record, secret) =
        state
            .auth
            .tokens
            .create(request, &principal.token_id, &principal.scope)?;
    if let Err(error) = keep(&state, &record).await {
        // Not kept: taken back rather than handed out to die at the next restart.
        state.auth.tokens.forget(&record.id);
        return Err(error);
    }
    audit::record(&principal, "token.create", &record.id);
    state.system.emit(
        "token.created",
        json!({"id": record.id, "role": record.role, "expiresAt": record.expires_at, "by": principal.token_id}),
    );
    let mut view = record.view();
    view["token"] = json!(secret);
    Ok(HttpResponse::Created()
        .insert_header(("Cache-Control", "no-store"))
        .json(view))
}

/// A token outside the caller's scope answers 404, like one that does not exist.
async fn get(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let record = state.auth.tokens.get(&id)?;
    if !principal.scope.contains(&record.scope) {
        return Err(TokenError::NotFound(id.to_string()).into());
    }
    Ok(HttpResponse::Ok().json(record.view()))
}

async fn update(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    body: super::body::JsonObject,
) -> Result<HttpResponse, ApiError> {
    let request = TokenRequest::parse(&body, true)
        .map_err(|report| ApiError::invalid("invalid token request", report))?;
    let before = state.auth.tokens.get(&id)?;
    let record = state.auth.tokens.update(&id, request, &principal.scope)?;
    if let Err(error) = keep(&state, &record).await {
        state.auth.tokens.restore(before);
        return Err(error);
    }
    audit::record(&principal, "token.update", &id);
    state.system.emit(
        "token.updated",
        json!({"id": record.id, "role": record.role, "expiresAt": record.expires_at, "by": principal.token_id}),
    );
    Ok(HttpResponse::Ok().json(record.view()))
}

async fn delete(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let before = state.auth.tokens.get(&id)?;
    state.auth.tokens.delete(&id, &principal.scope)?;
    if let Err(error) = state.store.delete(Kind::Token, &id).await {
        state.auth.tokens.restore(before);
        return Err(error.into());
    }
    audit::record(&principal, "token.delete", &id);
    state.system.emit(
        "token.deleted",
        json!({"id": &*id, "role": before.role, "by": principal.token_id}),
    );
    Ok(HttpResponse::NoContent().finish())
}
