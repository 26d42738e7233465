//! `/metrics`: counters move with traffic and the text passes `promtool check metrics`.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn counters_move_with_traffic() {
    let app = spawn_app().await;
    app.create_session(json!({"id": "m1", "eventRouting": {"*": ["websocket"]}}))
        .await;
    let mut ws = app.ws("m1", "").await;

    app.publish("m1", batch("counted", 5)).await;
    ws.events(5).await;
    let metrics = wait_until("frames to be counted", DEADLINE, || async {
        let m = app.metrics().await;
        (metric_value(
            &m,
            r#"synopticon_live_frames_total{session="m1",distributor="websocket",outcome="sent"}"#,
        ) == Some(5.0))
        .then_some(m)
    })
    .await;

    for (series, expected) in [
        (r#"synopticon_events_received_total{session="m1"}"#, 5.0),
        (
            r#"synopticon_events_routed_total{session="m1",distributor="websocket"}"#,
            5.0,
        ),
        (
            r#"synopticon_distributor_events_total{session="m1",distributor="websocket",outcome="delivered"}"#,
            5.0,
        ),
        (
            r#"synopticon_distributor_events_total{session="m1",distributor="websocket",outcome="dropped"}"#,
            0.0,
        ),
        (
            r#"synopticon_live_clients{session="m1",distributor="websocket"}"#,
            1.0,
        ),
        (
            r#"synopticon_distributor_breaker_state{session="m1",distributor="sse"}"#,
            0.0,
        ),
    ] {
        assert_eq!(
            metric_value(&metrics, series),
            Some(expected),
            "{series} in\n{metrics}"
        );
    }
    assert!(metric_value(&metrics, "synopticon_sessions_open").unwrap() >= 1.0);
    assert!(
        metrics.contains("# TYPE synopticon_delivery_latency_seconds histogram"),
        "{metrics}"
    );
    assert!(metrics.contains(
        r#"synopticon_delivery_latency_seconds_bucket{distributor="websocket",le="0.001"}"#
    ));
}

#[tokio::test]
async fn dropped_events_are_counted_per_distributor() {
    let app = spawn_app().await;
    // SSE with a one-event queue and a panic-induced restart backoff: events pile up and
    // the overflow policy must account for each one.
    app.create_session(json!({"id": "m2", "enabledDistributors": ["sse"], "distributors": {"sse": {"queueCapacity": 1}}})).await;
    app.post(
        "/api/v1/debug/sessions/m2/distributors/sse/panic",
        &json!({}),
    )
    .await;

    app.publish("m2", batch("burst", 50)).await;
    let sse = wait_until("the queue to drain", DEADLINE, || async {
        let d = app.distributor("m2", "sse").await;
        (d["queued"] == 0 && d["restarts"] == 1).then_some(d)
    })
    .await;

    let (sent, dropped) = (
        sse["sent"].as_u64().unwrap(),
        sse["dropped"].as_u64().unwrap(),
    );
    assert_eq!(sse["routed"], 50);
    assert_eq!(
        sent + dropped + sse["failed"].as_u64().unwrap(),
        50,
        "every routed event is accounted for: {sse}"
    );
    assert!(dropped > 0, "{sse}");
    let metrics = app.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            r#"synopticon_distributor_events_total{session="m2",distributor="sse",outcome="dropped"}"#
        ),
        Some(dropped as f64)
    );
}

#[tokio::test]
async fn exposition_passes_promtool() {
    let Some(promtool) = std::env::var_os("PROMTOOL").filter(|p| std::path::Path::new(p).exists())
    else {
        assert!(
            std::env::var_os("SYNOPTICON_REQUIRE_PROMTOOL").is_none(),
            "PROMTOOL is required by make test but missing"
        );
        eprintln!("skipped: set PROMTOOL to a promtool binary (make test does)");
        return;
    };
    let app = spawn_app().await;
    app.create_session(json!({"id": "prom"})).await;
    let mut ws = app.ws("prom", "").await;
    app.publish("prom", batch("x", 3)).await;
    ws.events(3).await;
    let metrics = app.metrics().await;

    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();

    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{report}\n---\n{metrics}"
    );
}
