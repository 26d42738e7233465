//! `synopticon edge`: a camera (or stream, or file) → model → tracker → the plain seed-004
//! envelope of every frame, published to a Redis stream or an MQTT topic for a processor
//! (docs/EDGE.md). No sessions to set up: the edge is the server with one source and one
//! internal session whose only output is the broker, so it has the server's bounded queue
//! while the broker is away (what overflows is counted), its health endpoint and metrics.

use serde_json::{json, Value};
use synopticon_actors::session::spec::check_serial;
use synopticon_actors::source::SourceConfig;
use synopticon_actors::validation::Report;

use crate::configuration::{EdgeSettings, Settings};

/// How often saved frames are pruned.
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Removes saved frames older than `frames_retention_hours`, now and every ten minutes:
/// an edge saving ten frames a second would otherwise fill its disk.
pub async fn prune_frames(edge: EdgeSettings) {
    if edge.frames_dir.is_empty() || edge.frames_retention_hours == 0 {
        return;
    }
    let dir = std::path::PathBuf::from(&edge.frames_dir);
    let age = std::time::Duration::from_secs(edge.frames_retention_hours * 3600);
    loop {
        let dir = dir.clone();
        let pruned = tokio::task::spawn_blocking(move || {
            synopticon_actors::rules::capture::prune(&dir, age, u64::MAX)
        })
        .await;
        if let Ok((removed, freed)) = pruned {
            if removed > 0 {
                tracing::info!(removed, freed, "old saved frames removed");
            }
        }
        tokio::time::sleep(PRUNE_EVERY).await;
    }
}

/// The internal session's id.
pub const EDGE_SESSION: &str = "edge";

/// The settings an edge serves with: its camera as the one source, an internal session
/// sending that source's `detections` (every frame, the plain envelope) to the broker and
/// nothing else, and nothing kept. Every problem of `[edge]` is listed.
pub fn settings(mut settings: Settings) -> Result<Settings, Report> {
    let mut report = Report::default();
    let Some(edge) = settings.edge.clone() else {
        report.error("[edge]: missing: device_id, camera_id, output and source are required");
        return Err(report);
    };
    if let Err(e) = check_serial(&edge.device_id) {
        report.error(format!("edge.device_id: {e}"));
    }
    if let Err(e) = synopticon_actors::session::spec::check_session_id(&edge.camera_id) {
        report.error(format!("edge.camera_id: {e}"));
    }
    let kind = match edge.output.as_str() {
        "redis_stream" => "redis",
        "mqtt" => "mqtt",
        other => {
            report.error(format!(
                "edge.output: {other:?} must be redis_stream or mqtt"
            ));
            "redis"
        }
    };
    let distributor = if kind == "redis" {
        json!({"url": edge.url, "publish": false, "stream": edge.stream, "maxLen": edge.max_len,
            "payload": "data", "queueCapacity": edge.buffer})
    } else {
        let topic = edge
            .topic
            .replace("{camera_id}", &edge.camera_id)
            .replace("{device_id}", &edge.device_id);
        json!({"broker": edge.broker, "topic": topic, "qos": edge.qos, "payload": "data",
            "queueCapacity": edge.buffer, "clientId": format!("synopticon-edge-{}", edge.device_id)})
    };
    let mut source = match edge.source {
        Value::Object(map) => map,
        other => {
            report.error(format!(
                "edge.source: must be a table of source settings, got {other}"
            ));
            Default::default()
        }
    };
    for owned in [
        "id",
        "device_id",
        "detections_events",
        "detections_every_ms",
    ] {
        if source.contains_key(owned) {
            report.error(format!("edge.source.{owned}: set by edge mode"));
        }
    }
    source.insert("id".into(), json!(edge.camera_id));
    source.insert("device_id".into(), json!(edge.device_id));
    // Every frame goes out: the processor tracks from them.
    source.insert("detections_events".into(), json!(true));
    source.insert("detections_every_ms".into(), json!(0));
    source.insert("frame_data".into(), json!(edge.frame_data));
    if !edge.frames_dir.is_empty() {
        source.insert("frame_ref_dir".into(), json!(edge.frames_dir));
    }
    match serde_json::from_value::<SourceConfig>(Value::Object(source)) {
        Ok(config) => {
            for e in config.validate().errors {
                report.error(format!("edge.source.{e}"));
            }
            settings.sources = vec![config];
        }
        Err(e) => report.error(format!("edge.source: {e}")),
    }
    if !report.is_valid() {
        return Err(report);
    }
    settings.sessions.declared = vec![json!({
        "id": EDGE_SESSION,
        "sources": [edge.camera_id],
        "enabledDistributors": [kind],
        "distributors": {kind: distributor},
        "eventRouting": {"detections": [kind], "*": []},
    })];
    // An edge keeps nothing: its one session comes from this file at every start.
    settings.store.url = "memory".into();
    Ok(settings)
}
