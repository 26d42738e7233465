//! `GET /api/health`: is the server up, and how is each component doing.

use actix_web::{web, HttpResponse};
use serde_json::json;
use synopticon_actors::messages::{GetStatus, ListSessions};

use super::resource;
use crate::startup::AppState;

/// Registers the route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/health").route(web::get().to(health)));
}

/// 200 with a status per component; 503 only when the session registry does not answer.
async fn health(state: web::Data<AppState>) -> HttpResponse {
    let timeout = state.request_timeout;
    let sessions = tokio::time::timeout(timeout, state.registry.send(ListSessions)).await;
    let Ok(Ok(sessions)) = sessions else {
        return HttpResponse::ServiceUnavailable().json(json!({
            "status": "unavailable",
            "version": env!("CARGO_PKG_VERSION"),
            "components": {"http": {"status": "ok"}, "registry": {"status": "unresponsive"}},
        }));
    };
    let statuses = futures_util::future::join_all(
        sessions
            .iter()
            .map(|s| tokio::time::timeout(timeout, s.send(GetStatus))),
    )
    .await;
    let mut unhealthy = Vec::new();
    let mut unresponsive = 0;
    for status in statuses {
        match status {
            Ok(Ok(s)) => {
                for d in s.distributors.iter().filter(|d| d.health != "healthy") {
                    unhealthy.push(
                        json!({"session": s.id, "distributor": d.kind, "health": d.health,
                        "last_error": d.last_error.as_ref().map(|e| &e.message)}),
                    );
                }
            }
            _ => unresponsive += 1,
        }
    }
    let sessions_status = if unhealthy.is_empty() && unresponsive == 0 {
        "ok"
    } else {
        "degraded"
    };
    let models: serde_json::Map<String, serde_json::Value> = state
        .models
        .states()
        .into_iter()
        .map(|(name, s)| (name, json!(s)))
        .collect();
    let models_status = if models.values().all(|s| s == "ready") {
        "ok"
    } else if models.values().any(|s| s == "failed" || s == "stopped") {
        "degraded"
    } else {
        "loading"
    };
    let source_states: serde_json::Map<String, serde_json::Value> = state
        .sources
        .states()
        .into_iter()
        .map(|(id, s)| (id, json!(s)))
        .collect();
    let sources_status = if source_states
        .values()
        .all(|s| s["state"] == "running" || s["state"] == "finished")
    {
        "ok"
    } else {
        "degraded"
    };
    let overall =
        if sessions_status == "ok" && models_status != "degraded" && sources_status == "ok" {
            "ok"
        } else {
            "degraded"
        };
    HttpResponse::Ok().json(json!({
        "status": overall,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": state.started.elapsed().as_secs_f64(),
        "components": {
            "http": {"status": "ok"},
            "registry": {"status": "ok", "sessions_open": sessions.len()},
            "sessions": {"status": sessions_status, "unresponsive": unresponsive, "unhealthy_distributors": unhealthy},
            "models": {"status": models_status, "models": models},
            "sources": {"status": sources_status, "sources": source_states},
            "metrics": {"status": "ok"},
        },
    }))
}
