//! Broker inputs: `GET /api/v1/inputs`, `GET/PUT/DELETE /api/v1/inputs/{name}`. An input
//! made over REST is kept in the store (every processor sharing it runs it, as one
//! consumer of its group); one declared in the configuration changes only there.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde_json::{json, Value};
use synopticon_actors::input::{InputStatus, InputsError};
use synopticon_actors::store::Kind;

use super::api::{Answers, Api, Takes};
use super::body::redacted_json;
use crate::audit;
use crate::auth::{Access, Principal, ResourceScope, Role};
use crate::error::ApiError;
use crate::state::AppState;

/// Registers the routes.
pub fn configure(api: &mut Api) {
    // Inputs feed every device's source: for tokens without a scope.
    api.resource("/api/v1/inputs", ResourceScope::None, |r| {
        r.get(Access::Unscoped(Role::Viewer), list)
    });
    api.resource("/api/v1/inputs/{name}", ResourceScope::None, |r| {
        // An input connects to a broker and may register devices: configuration, for
        // admins.
        r.get(Access::Unscoped(Role::Viewer), get)
            .put(Access::ServerAdmin, put)
            .takes(Takes::Object { required: true })
            .answers(Answers::PUT)
            .delete(Access::ServerAdmin, remove)
            .answers(Answers::NO_CONTENT)
    });
}

impl From<InputsError> for ApiError {
    fn from(e: InputsError) -> Self {
        match e {
            InputsError::NotFound(_) => Self::NotFound(e.to_string()),
            InputsError::Declared(_) => Self::Conflict(e.to_string()),
            InputsError::Invalid(report) => Self::invalid("invalid input", report),
        }
    }
}

/// An input's status with its settings (secrets redacted by the caller).
fn view(state: &AppState, status: InputStatus) -> Value {
    let (settings, declared) = state.inputs.settings(&status.name).unwrap_or_default();
    let mut v = serde_json::to_value(&status).unwrap_or(Value::Null);
    v["config"] = settings;
    v["origin"] = json!(if declared { "config" } else { "api" });
    v
}

async fn list(state: web::Data<AppState>) -> HttpResponse {
    let inputs: Vec<Value> = state
        .inputs
        .list()
        .into_iter()
        .map(|s| view(&state, s))
        .collect();
    redacted_json(StatusCode::OK, &json!({"inputs": inputs}))
}

async fn get(
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let status = state.inputs.status(&name)?;
    Ok(redacted_json(StatusCode::OK, &view(&state, status)))
}

/// 201 when new, 200 when it replaced one; checked, then kept, then started.
async fn put(
    state: web::Data<AppState>,
    principal: Principal,
    name: web::Path<String>,
    body: super::body::JsonObject,
) -> Result<HttpResponse, ApiError> {
    if state.inputs.is_declared(&name) {
        return Err(InputsError::Declared(name.to_string()).into());
    }
    state
        .inputs
        .check(&name, &body)
        .map_err(InputsError::Invalid)?;
    state.store.put(Kind::Input, &name, &body).await?;
    let replaced = state.inputs.put(&name, &body, false)?;
    audit::record(&principal, "input.put", &name);
    let status = view(&state, state.inputs.status(&name)?);
    let code = if replaced {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(redacted_json(code, &status))
}

async fn remove(
    state: web::Data<AppState>,
    principal: Principal,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    if state.inputs.is_declared(&name) {
        return Err(InputsError::Declared(name.to_string()).into());
    }
    state.inputs.status(&name)?;
    // Forgotten by the store first: an input the store still held would come back.
    state.store.delete(Kind::Input, &name).await?;
    state.inputs.remove(&name)?;
    audit::record(&principal, "input.delete", &name);
    Ok(HttpResponse::NoContent().finish())
}
