//! `GET /api/config` (effective configuration, secrets redacted) and `GET /api/runtime`
//! (version, uptime, and the environment variables the server reads), and
//! `GET /api/v1/whoami` (the caller's token, role and scope).

use actix_web::{web, HttpResponse};
use std::collections::BTreeMap;

use serde_json::{json, Value};
use synopticon_actors::session::placeholders;

use super::api::Api;
use crate::auth::{Access, ResourceScope};
use crate::configuration::environment_variables;
use crate::state::AppState;

/// Registers the routes.
pub fn configure(api: &mut Api) {
    api.resource("/api/config", ResourceScope::None, |r| {
        r.get(Access::ServerAdmin, config)
    });
    api.resource("/api/runtime", ResourceScope::None, |r| {
        r.get(Access::ServerAdmin, runtime)
    });
    api.resource("/api/v1/whoami", ResourceScope::None, |r| {
        r.get(Access::VIEWER, whoami)
    });
}

/// The caller as the server sees it: its token, role and scope, and whether the server
/// asks for tokens at all (the dashboard shows read-only pages to viewers).
async fn whoami(state: web::Data<AppState>, principal: crate::auth::Principal) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "token": &*principal.token_id,
        "role": principal.role,
        "scope": &*principal.scope,
        "auth_enabled": state.auth.enabled,
        "mode": state.settings.server.mode,
    }))
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
        "templateVariables": template_variables(&state),
    }))
}

/// The variables templates name in `${NAME}` placeholders: whether each is set, may be
/// read (`sessions.placeholder_vars`), has a default, and which templates use it. Values
/// are not shown: a placeholder may stand for a secret.
fn template_variables(state: &AppState) -> Vec<Value> {
    let mut by_name: BTreeMap<String, (bool, Vec<String>)> = BTreeMap::new();
    for template in state.templates.list() {
        let mut found = Vec::new();
        placeholders::referenced(&Value::Object(template.distributors.clone()), &mut found);
        for p in found {
            let entry = by_name.entry(p.name).or_default();
            entry.0 |= p.default.is_some();
            if !entry.1.contains(&template.name) {
                entry.1.push(template.name.clone());
            }
        }
    }
    by_name
        .into_iter()
        .map(|(name, (has_default, templates))| {
            json!({
                "name": name,
                "set": std::env::var_os(&name).is_some_and(|v| !v.is_empty()),
                "allowed": state.rails.placeholder_vars.iter().any(|g| g.matches(&name)),
                "hasDefault": has_default,
                "templates": templates,
            })
        })
        .collect()
}
