//! Supervision: a distributor that panics is restarted, counted, and keeps its clients.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_panicking_distributor_is_restarted_and_keeps_delivering() {
    let app = spawn_app().await;
    app.create_session(json!({"id": "sup"})).await;
    let mut ws = app.ws("sup", "").await;
    app.publish("sup", batch("before", 2)).await;
    assert_eq!(ws.events(2).await.len(), 2);

    let injected = app
        .post(
            "/api/v1/debug/sessions/sup/distributors/websocket/panic",
            &json!({}),
        )
        .await;
    let restarted = wait_until("the restart to be counted", DEADLINE, || async {
        let d = app.distributor("sup", "websocket").await;
        (d["restarts"] == 1).then_some(d)
    })
    .await;
    app.publish("sup", batch("after", 3)).await;
    let after = ws.events(3).await;

    assert_eq!(injected.status, 202);
    assert!(
        restarted["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("panicked"),
        "{restarted}"
    );
    assert_eq!(
        after
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [3, 4, 5]
    );
    assert_eq!(
        app.distributor("sup", "sse").await["restarts"],
        0,
        "the other distributor was untouched"
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(
            "synopticon_distributor_restarts_total{session=\"sup\",distributor=\"websocket\"} 1"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn repeated_panics_are_each_counted() {
    let app = spawn_app().await;
    app.create_session(json!({"id": "sup2", "enabledDistributors": ["sse"]}))
        .await;

    for n in 1..=3u64 {
        app.post(
            "/api/v1/debug/sessions/sup2/distributors/sse/panic",
            &json!({}),
        )
        .await;
        wait_until("the restart", DEADLINE, || async {
            (app.distributor("sup2", "sse").await["restarts"] == n).then_some(())
        })
        .await;
    }
    app.publish("sup2", batch("x", 1)).await;

    wait_until("delivery after the restarts", DEADLINE, || async {
        (app.distributor("sup2", "sse").await["sent"] == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn debug_routes_are_absent_unless_enabled() {
    let app = spawn_app_with(|s| s.server.debug_endpoints = false).await;
    app.create_session(json!({"id": "nodebug"})).await;

    let answer = app
        .post(
            "/api/v1/debug/sessions/nodebug/distributors/websocket/panic",
            &json!({}),
        )
        .await;

    assert_eq!(answer.status, 404);
}
