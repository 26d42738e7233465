//! `GET /api/config` (effective configuration, secrets redacted) and `GET /api/runtime`
//! (version, uptime, and the environment variables the server reads).

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::Api;
use crate::auth::{Access, ResourceScope};
use crate::configuration::environment_variables;
use crate::startup::AppState;

/// Registers the routes.
pub fn configure(api: &mut Api) {
    api.resource("/api/config", ResourceScope::None, |r| {
        r.get(Access::ServerAdmin, config)
    });
    api.resource("/api/runtime", ResourceScope::None, |r| {
        r.get(Access::ServerAdmin, runtime)
    });
}

async fn config(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(state.settings.redacted())
}

async fn runtime(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "name": env!("CARGO_PKG_NAME"),
        "version": env!("CARGO_PKG_VERSION"),
        "started_at": state.started_at,
        "uptime_secs": state.started.elapsed().as_secs_f64(),
        "pid": std::process::id(),
        "environmentVariables": environment_variables(),
    }))
}
