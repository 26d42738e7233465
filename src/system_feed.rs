//! The server's side of the system session: creating it at start, and a watcher that
//! reports sources and models changing state and a periodic health summary. Sessions,
//! distributors, devices and tokens report their own changes as they happen
//! (`synopticon_actors::system`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use synopticon_actors::event::Origin;
use synopticon_actors::inference::ModelHub;
use synopticon_actors::sessions::{Sessions, SessionsError};
use synopticon_actors::source::hub::SourceHub;
use synopticon_actors::system::{SystemFeed, SYSTEM_SESSION};

/// How often sources and models are looked at.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Makes the system session when the store does not already hold it (a restart brings
/// back the one kept, with whatever distributors and routing were set over REST).
pub async fn ensure_session(sessions: &Sessions) -> Result<(), SessionsError> {
    match sessions.status(SYSTEM_SESSION).await {
        Ok(_) => Ok(()),
        Err(SessionsError::NotFound(_)) => {
            sessions
                .create(json!({"id": SYSTEM_SESSION, "template": "local_testing"}))
                .await?;
            tracing::info!("system session created");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// What the watcher reads.
pub struct Watched {
    /// Every session (for the health summary).
    pub sessions: Sessions,
    /// The vision sources.
    pub sources: Arc<SourceHub>,
    /// The detection models.
    pub models: Arc<ModelHub>,
    /// Where to report.
    pub feed: SystemFeed,
    /// How often the health summary goes out (zero: never).
    pub health_every: Duration,
}

/// Reports state changes of sources and models, and the health summary, until dropped.
pub async fn watch(w: Watched) {
    let mut sources: HashMap<String, String> = HashMap::new();
    // A device's source is told with its device, so device-scoped feeds filter it.
    let mut devices: HashMap<String, Option<Arc<str>>> = HashMap::new();
    let mut models: HashMap<String, String> = HashMap::new();
    let mut last_health: Option<Instant> = None;
    let mut tick = tokio::time::interval(WATCH_EVERY);
    loop {
        tick.tick().await;
        // States only: the sources' counters are not built every second for this.
        let reports = w.sources.states_with_devices();
        let now: HashMap<String, String> = reports
            .iter()
            .map(|(id, _, state)| (id.clone(), state_name(state)))
            .collect();
        let origin = |id: &str, device: Option<Arc<str>>| Origin {
            source: Some(Arc::from(id)),
            device,
            ..Origin::default()
        };
        for (id, device, _) in &reports {
            let state = &now[id];
            let before = sources.get(id);
            if before != Some(state) {
                // No error text: a viewer must not learn from it whether a path exists.
                w.feed.emit_with(
                    "source.state",
                    json!({"source": id, "state": state, "previous": before}),
                    origin(id, device.as_deref().map(Arc::from)),
                );
            }
        }
        for id in sources.keys().filter(|id| !now.contains_key(*id)) {
            let device = devices.get(id).cloned().flatten();
            w.feed
                .emit_with("source.removed", json!({"source": id}), origin(id, device));
        }
        sources = now;
        devices = reports
            .into_iter()
            .map(|(id, device, _)| (id, device.map(Arc::from)))
            .collect();
        let now: HashMap<String, String> = w
            .models
            .states()
            .into_iter()
            .map(|(name, s)| (name, state_name(&s)))
            .collect();
        for (name, state) in &now {
            let before = models.get(name);
            if before != Some(state) {
                w.feed.emit(
                    "model.state",
                    json!({"model": name, "state": state, "previous": before}),
                );
            }
        }
        models = now;
        let due =
            !w.health_every.is_zero() && last_health.is_none_or(|t| t.elapsed() >= w.health_every);
        if due {
            last_health = Some(Instant::now());
            w.feed.emit("health", summary(&w, &sources, &models).await);
        }
    }
}

/// A serialized state's name (`running`, `ready`, ...).
fn state_name(state: &impl serde::Serialize) -> String {
    match serde_json::to_value(state) {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "unknown".into(),
    }
}

/// The health summary: overall status, sessions and their distributors, sources and
/// models by state, event and drop totals.
async fn summary(
    w: &Watched,
    sources: &HashMap<String, String>,
    models: &HashMap<String, String>,
) -> Value {
    let (statuses, unresponsive) = w.sessions.statuses().await.unwrap_or_default();
    let mut unhealthy = Vec::new();
    let (mut received, mut dropped, mut failed) = (0u64, 0u64, 0u64);
    for s in &statuses {
        received += s.events_received;
        dropped += s.mailbox_dropped;
        for d in &s.distributors {
            dropped += d.counters.dropped;
            failed += d.counters.failed;
            if d.health != "healthy" {
                unhealthy.push(json!({"session": s.id, "distributor": d.kind, "health": d.health}));
            }
        }
    }
    let count = |states: &HashMap<String, String>| {
        let mut by: HashMap<&str, u64> = HashMap::new();
        for s in states.values() {
            *by.entry(s.as_str()).or_default() += 1;
        }
        json!(by)
    };
    let sources_ok = sources
        .values()
        .all(|s| s == "running" || s == "finished" || s == "starting");
    let models_ok = models.values().all(|s| s == "ready" || s == "loading");
    let status = if unhealthy.is_empty() && unresponsive == 0 && sources_ok && models_ok {
        "ok"
    } else {
        "degraded"
    };
    json!({
        "status": status,
        "sessions": statuses.len() + unresponsive,
        "unresponsive_sessions": unresponsive,
        "unhealthy_distributors": unhealthy,
        "sources": count(sources),
        "models": count(models),
        "events_received": received,
        "events_dropped": dropped,
        "events_failed": failed,
        "system_events_dropped": w.feed.dropped(),
    })
}
