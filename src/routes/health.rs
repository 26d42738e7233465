//! `GET /api/health`: is the server up, and how is each component doing.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde_json::json;
use synopticon_actors::source::actor::SourceState;

use super::api::Api;
use super::body::redacted_json;
use crate::auth::{Access, ResourceScope};
use crate::state::AppState;

/// Registers the route.
pub fn configure(api: &mut Api) {
    api.resource("/api/health", ResourceScope::None, |r| {
        r.get(Access::Public, health)
    });
}

/// 200 with a status per component; 503 only when the session registry does not answer.
/// Without a valid token (when authentication is on) only the statuses are shown: no
/// session or source ids, no error messages.
async fn health(state: web::Data<AppState>, principal: crate::auth::Principal) -> HttpResponse {
    let Ok((statuses, unresponsive)) = state.sessions.statuses().await else {
        return HttpResponse::ServiceUnavailable().json(json!({
            "status": "unavailable",
            "version": env!("CARGO_PKG_VERSION"),
            "components": {"http": {"status": "ok"}, "registry": {"status": "unresponsive"}},
        }));
    };
    let sessions_total = statuses.len() + unresponsive;
    let mut unhealthy = Vec::new();
    // Problems in sessions the token may not see: they count, they are not described.
    let mut hidden_unhealthy = 0;
    let mut visible_sessions = 0;
    for s in statuses {
        let visible = principal.scope.allows_session(&s.id);
        visible_sessions += usize::from(visible);
        for d in s.distributors.iter().filter(|d| d.health != "healthy") {
            if !visible {
                hidden_unhealthy += 1;
                continue;
            }
            unhealthy.push(
                json!({"session": s.id, "distributor": d.kind, "health": d.health,
                "last_error": d.last_error.as_ref().map(|e| &e.message)}),
            );
        }
    }
    let sessions_status = if unhealthy.is_empty() && hidden_unhealthy == 0 && unresponsive == 0 {
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
    let all_sources = state.sources.states();
    let sources_ok = all_sources.iter().all(|(_, s)| match s.state {
        SourceState::Running | SourceState::Finished => true,
        // Opening for the first time is normal; reopening after a failure is not.
        SourceState::Starting => s.last_error.is_none(),
        SourceState::Restarting | SourceState::Stopped => false,
    });
    // Devices' sources outside a device-scoped token's scope are not named.
    let hidden_devices: Vec<String> = match &principal.scope.devices {
        None => Vec::new(),
        Some(_) => state
            .sources
            .list()
            .into_iter()
            .filter(|r| {
                r.device
                    .as_deref()
                    .is_some_and(|d| !principal.scope.allows_device(d))
            })
            .map(|r| r.id)
            .collect(),
    };
    let source_states: serde_json::Map<String, serde_json::Value> = all_sources
        .into_iter()
        .filter(|(id, _)| principal.scope.allows_source(id) && !hidden_devices.contains(id))
        .map(|(id, s)| (id, json!(super::scope::disclosed(&principal, s))))
        .collect();
    let sources_status = if sources_ok { "ok" } else { "degraded" };
    let budget = state.rails.budget.status();
    // Evicting to stay within the budget means events or history are being lost.
    let memory_status = if budget.under_pressure {
        "degraded"
    } else {
        "ok"
    };
    // The server's own Redis, when configured: away, device channels wait or drop.
    let bus = state.bus.as_ref().map(|b| b.status());
    let redis_status = match &bus {
        Some(b) if !b.connected => "degraded",
        _ => "ok",
    };
    let overall = if sessions_status == "ok"
        && models_status != "degraded"
        && sources_status == "ok"
        && memory_status == "ok"
        && redis_status == "ok"
    {
        "ok"
    } else {
        "degraded"
    };
    if state.auth.enabled && !principal.authenticated {
        let mut answer = json!({
            "status": overall,
            "version": env!("CARGO_PKG_VERSION"),
            "components": {
                "http": {"status": "ok"},
                "registry": {"status": "ok"},
                "sessions": {"status": sessions_status},
                "models": {"status": models_status},
                "sources": {"status": sources_status},
                "memory": {"status": memory_status},
                "metrics": {"status": "ok"},
            },
        });
        if bus.is_some() {
            answer["components"]["redis"] = json!({"status": redis_status});
        }
        return HttpResponse::Ok().json(answer);
    }
    let sessions_open = if principal.scope.sessions.is_some() {
        // A scoped token counts only the sessions it may see.
        visible_sessions
    } else {
        sessions_total
    };
    let mut answer = json!({
        "status": overall,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": state.started.elapsed().as_secs_f64(),
        "components": {
            "http": {"status": "ok"},
            "registry": {"status": "ok", "sessions_open": sessions_open},
            "sessions": {"status": sessions_status, "unresponsive": unresponsive, "unhealthy_distributors": unhealthy},
            "models": {"status": models_status, "models": models},
            "sources": {"status": sources_status, "sources": source_states},
            "memory": {"status": memory_status, "limit_bytes": budget.limit_bytes,
                "used_bytes": budget.used_bytes, "evicted_entries": budget.evicted_entries,
                "evicted_bytes": budget.evicted_bytes},
            "metrics": {"status": "ok"},
        },
    });
    if let Some(b) = bus {
        answer["components"]["redis"] = json!({"status": redis_status,
            "connected": b.connected, "published": b.published, "failed": b.failed,
            "dropped": b.dropped, "queued": b.queued});
        // Where it connects and how it failed are for admins (like sources' errors).
        if principal.role == crate::auth::Role::Admin {
            answer["components"]["redis"]["url"] = json!(b.url);
            answer["components"]["redis"]["last_error"] = json!(b.last_error);
        }
    }
    redacted_json(StatusCode::OK, &answer)
}
