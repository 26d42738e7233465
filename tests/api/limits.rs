//! Hardening against an operator (or an attacker with an operator token) who asks for too
//! much: sizes above the server's ceilings, floods of large events, slow request bodies.

use serde_json::{json, Value};

use crate::helpers::*;

const MIB: u64 = 1 << 20;

#[tokio::test]
async fn a_history_flood_stays_within_the_memory_budget_and_memory_returns_after_close() {
    let budget = 64 * MIB;
    let server = ServerProcess::start(&format!(
        "[server]\nport = 0\n[sessions]\nmemory_budget_bytes = {budget}\n"
    ));
    let app = &server.app;

    // The reported attack asked for a million events of history: above the ceiling.
    let refused = app
        .post(
            "/api/v1/sessions",
            &json!({"id": "flood", "distributors": {"sse": {"historySize": 1_000_000,
                "queueCapacity": 2_000_000, "clientQueueCapacity": 1_000_000, "maxClients": 100_000}}}),
        )
        .await;
    app.create_session(json!({"id": "flood", "distributors": {"sse": {"historySize": 100_000}}}))
        .await;
    let before = server.rss_kib();
    // 100 KB events, ten to a request: 400 MB in all, six times the budget.
    let big = "x".repeat(100_000);
    let body = Value::Array(
        (0..10)
            .map(|i| json!({"event": "frame", "data": {"i": i, "blob": big}}))
            .collect(),
    );
    let mut peak = before;
    for _ in 0..400 {
        app.publish("flood", body.clone()).await;
        peak = peak.max(server.rss_kib());
    }
    let sse = app.distributor("flood", "sse").await;
    let health = app.get("/api/health").await.body;
    let metrics = app.metrics().await;
    let resumed = app
        .request(reqwest::Method::GET, "/api/v1/sessions/flood/sse")
        .header("Last-Event-ID", "1")
        .send()
        .await
        .expect("sse");
    let mut first = String::new();
    {
        use futures_util::StreamExt;
        let mut stream = resumed.bytes_stream();
        while !first.contains("\n\n") {
            let chunk = tokio::time::timeout(DEADLINE, stream.next())
                .await
                .expect("the resumed stream starts")
                .expect("a chunk")
                .expect("bytes");
            first.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    let closed = app.delete("/api/v1/sessions/flood").await;
    let after_close = wait_until("memory to go back down", DEADLINE, || async {
        let rss = server.rss_kib();
        (rss < before + 32 * 1024).then_some(rss)
    })
    .await;
    let health_after = app.get("/api/health").await.body;

    assert_eq!(refused.status, 422, "{}", refused.body);
    let details = refused.body["details"].to_string();
    for (field, setting) in [
        ("historySize: 1000000", "sessions.max_history_size"),
        ("queueCapacity: 2000000", "sessions.max_queue_capacity"),
        (
            "clientQueueCapacity: 1000000",
            "sessions.max_client_queue_capacity",
        ),
        ("maxClients: 100000", "sessions.max_clients"),
    ] {
        assert!(
            details.contains(field) && details.contains(setting),
            "{field}: {details}"
        );
    }
    let grown_mib = (peak - before) / 1024;
    eprintln!(
        "RSS {} MiB before, {} MiB at the peak, {} MiB after the close; budget {} MiB",
        before / 1024,
        peak / 1024,
        after_close / 1024,
        budget / MIB
    );
    assert!(
        grown_mib < budget / MIB + 64,
        "RSS grew {grown_mib} MiB with a budget of {} MiB",
        budget / MIB
    );
    assert!(sse["budget_evictions"].as_u64().unwrap() > 3000, "{sse}");
    assert!(sse["held_bytes"].as_u64().unwrap() <= budget, "{sse}");
    let memory = &health["components"]["memory"];
    assert_eq!(memory["status"], "degraded", "{health}");
    assert!(memory["used_bytes"].as_u64().unwrap() <= budget, "{health}");
    assert!(
        memory["evicted_entries"].as_u64().unwrap() > 3000,
        "{health}"
    );
    let evicted = metric_value(
        &metrics,
        "synopticon_memory_budget_evictions_total{session=\"flood\",distributor=\"sse\",holder=\"history\"}",
    );
    assert!(evicted.unwrap_or_default() > 3000.0, "{evicted:?}");
    assert_eq!(
        metric_value(&metrics, "synopticon_memory_budget_bytes{state=\"limit\"}"),
        Some(budget as f64)
    );
    // A client resuming from the start is told what the budget took.
    assert!(first.contains("are no longer retained"), "{first}");
    assert_eq!(closed.status, 200);
    assert_eq!(
        health_after["components"]["memory"]["used_bytes"], 0,
        "{health_after}"
    );
}
