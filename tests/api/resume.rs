//! Reconnecting without loss: a WebSocket client resumes `since` its last seq in the
//! session's epoch; SSE says the epoch and whether a resume recovered everything.

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::helpers::*;

async fn post(app: &TestApp, from: u64, to: u64) {
    let batch: Vec<Value> = (from..=to)
        .map(|n| json!({"event": "gaze_sample", "data": {"n": n}}))
        .collect();
    app.publish("study", json!(batch)).await;
}

/// The seqs of the next `n` events on `ws`.
async fn seqs_of(ws: &mut WsClient, n: usize) -> Vec<u64> {
    ws.events(n)
        .await
        .iter()
        .filter_map(|e| e["seq"].as_u64())
        .collect()
}

async fn resume_frame(ws: &mut WsClient) -> Value {
    let frame = ws.next_json().await.expect("a frame after the hello");
    assert_eq!(frame["op"], "resume", "{frame}");
    frame
}

#[tokio::test]
async fn a_websocket_client_that_reconnects_gets_what_it_missed_in_order_then_live_events() {
    let app = spawn_app().await;
    app.create_session(json!({"id": "study", "enabledDistributors": ["websocket"],
        "distributors": {"websocket": {"historySize": 4}}}))
        .await;
    let epoch = app.status("study").await["epoch"]
        .as_str()
        .expect("an epoch")
        .to_string();
    let mut first = app.ws("study", "").await;
    post(&app, 1, 5).await;
    let got = first.events(5).await;
    assert_eq!(got[4]["seq"], 5);
    drop(first);

    // Missed while away: 6 to 8; all still held.
    post(&app, 6, 8).await;
    let mut back = app.ws("study", &format!("?since=5&epoch={epoch}")).await;
    let resumed = resume_frame(&mut back).await;
    assert_eq!(resumed["recovered"], true, "{resumed}");
    assert_eq!(resumed["replayed"], 3);
    assert_eq!(resumed["since"], 5);
    let seqs = seqs_of(&mut back, 3).await;
    assert_eq!(seqs, [6, 7, 8], "every missed event, in order");
    post(&app, 9, 9).await;
    assert_eq!(
        back.next_event().await.expect("live")["seq"],
        9,
        "then live"
    );
    drop(back);

    // Away longer than the history (4 events) holds.
    post(&app, 10, 16).await;
    let mut late = app.ws("study", &format!("?since=9&epoch={epoch}")).await;
    let resumed = resume_frame(&mut late).await;
    assert_eq!(resumed["recovered"], false, "{resumed}");
    assert_eq!(resumed["replayed"], 4);
    assert_eq!(
        resumed["reason"], "events 10 to 12 are no longer retained",
        "{resumed}"
    );
    let seqs = seqs_of(&mut late, 4).await;
    assert_eq!(seqs, [13, 14, 15, 16]);

    // A resume point from another epoch (a restart without history) is said so.
    let mut other = app.ws("study", "?since=3&epoch=0123456789ab").await;
    let resumed = resume_frame(&mut other).await;
    assert_eq!(resumed["recovered"], false);
    assert_eq!(resumed["replayed"], 0);
    assert!(
        resumed["reason"]
            .as_str()
            .is_some_and(|r| r.contains("epoch") && r.contains(&epoch)),
        "{resumed}"
    );
    post(&app, 17, 17).await;
    assert_eq!(other.next_event().await.expect("live")["seq"], 17);
}

#[tokio::test]
async fn an_sse_stream_starts_with_the_epoch_and_says_whether_a_resume_recovered_everything() {
    let app = spawn_app().await;
    app.create_session(json!({"id": "study", "enabledDistributors": ["sse"],
        "distributors": {"sse": {"historySize": 2}}}))
        .await;
    let epoch = app.status("study").await["epoch"]
        .as_str()
        .expect("an epoch")
        .to_string();
    post(&app, 1, 5).await;
    let head = |last: Option<u64>| {
        let app = &app;
        async move {
            let mut request = app.request(reqwest::Method::GET, "/api/v1/sessions/study/sse");
            if let Some(last) = last {
                request = request.header("Last-Event-ID", last.to_string());
            }
            let response = request.send().await.expect("SSE");
            let mut body = response.bytes_stream();
            let mut text = String::new();
            let deadline = tokio::time::Instant::now() + DEADLINE;
            while !text.contains("\n\n") || (last.is_some() && !text.contains("data:")) {
                match tokio::time::timeout_at(deadline, body.next()).await {
                    Ok(Some(Ok(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
                    _ => break,
                }
            }
            text
        }
    };
    let fresh = head(None).await;
    assert!(
        fresh.contains(&format!(": epoch {epoch} last_seq 5\n")),
        "{fresh}"
    );
    let recovered = head(Some(3)).await;
    assert!(recovered.contains(": recovered true\n"), "{recovered}");
    assert!(recovered.contains("id: 4\n"), "{recovered}");
    let lost = head(Some(1)).await;
    assert!(lost.contains(": recovered false\n"), "{lost}");
    assert!(
        lost.contains(": events 2 to 3 are no longer retained\n"),
        "{lost}"
    );
}

#[tokio::test]
async fn a_subscribe_op_with_since_resumes_an_open_socket() {
    let app = spawn_app().await;
    app.create_session(json!({"id": "study", "enabledDistributors": ["websocket"],
        "distributors": {"websocket": {"historySize": 16}}}))
        .await;
    let epoch = app.status("study").await["epoch"]
        .as_str()
        .expect("an epoch")
        .to_string();
    post(&app, 1, 6).await;
    // A client that cannot put `since` in its URL connects, then asks.
    let mut ws = app.ws("study", "?events=gaze_*").await;
    ws.send(json!({"op": "subscribe", "since": 2, "epoch": epoch}))
        .await;
    let subscribed = ws.next_json().await.expect("an answer");
    assert_eq!(subscribed["op"], "subscribed", "{subscribed}");
    let resumed = resume_frame(&mut ws).await;
    assert_eq!(resumed["recovered"], true, "{resumed}");
    assert_eq!(resumed["replayed"], 4);
    let seqs = seqs_of(&mut ws, 4).await;
    assert_eq!(seqs, [3, 4, 5, 6], "what it missed, in order");
    post(&app, 7, 7).await;
    assert_eq!(
        ws.next_event().await.expect("live")["seq"],
        7,
        "then live, once"
    );
    // The subscription was kept: other events do not come.
    app.publish("study", json!({"event": "noise", "data": {}}))
        .await;
    post(&app, 9, 9).await;
    assert_eq!(ws.next_event().await.expect("live")["seq"], 9);

    // Another epoch: said so, and the feed goes on as it was.
    ws.send(json!({"op": "subscribe", "since": 1, "epoch": "0123456789ab"}))
        .await;
    let _ = ws.next_json().await.expect("subscribed");
    let other = resume_frame(&mut ws).await;
    assert_eq!(other["recovered"], false, "{other}");
    post(&app, 10, 10).await;
    assert_eq!(ws.next_event().await.expect("live")["seq"], 10);
    // Only one connection is counted for it (the replaced queue is let go).
    wait_until("one client", DEADLINE, || async {
        let status = app.distributor("study", "websocket").await;
        (status["connected_clients"] == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_history_kept_in_the_store_lets_clients_resume_across_restarts() {
    let store = crate::store::TestStore::sqlite();
    let config = format!("[server]\nport = 0\n{}", store.config());
    let mut server = ServerProcess::start(&config);
    let app = TestApp::on(server.app.port);
    app.create_session(json!({"id": "study", "enabledDistributors": ["websocket"],
        "distributors": {"websocket": {"historySize": 100, "historyStore": "store"}}}))
        .await;
    post(&app, 1, 10).await;
    let epoch = app.status("study").await["epoch"]
        .as_str()
        .expect("an epoch")
        .to_string();

    // A clean stop: the history and the exact last number are kept.
    crate::store::stop(&mut server, "-TERM");
    let mut server = ServerProcess::start(&config);
    let app = TestApp::on(server.app.port);
    let status = app.status("study").await;
    assert_eq!(
        status["epoch"],
        epoch.as_str(),
        "the same epoch after the restart"
    );
    let mut ws = app.ws("study", &format!("?since=4&epoch={epoch}")).await;
    let resumed = resume_frame(&mut ws).await;
    assert_eq!(resumed["recovered"], true, "{resumed}");
    assert_eq!(resumed["replayed"], 6);
    let seqs = seqs_of(&mut ws, 6).await;
    assert_eq!(seqs, [5, 6, 7, 8, 9, 10]);
    let n: Vec<u64> = app
        .publish(
            "study",
            json!([{"event": "gaze_sample", "data": {"n": 11}}]),
        )
        .await["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["seq"].as_u64())
        .collect();
    assert_eq!(
        n,
        [11],
        "numbers go on from the last one after a clean stop"
    );
    assert_eq!(ws.next_event().await.expect("live")["seq"], 11);
    drop(ws);

    // SIGKILL after the history was written (every second): still the same epoch, and
    // what was written comes back.
    // The history is written every second; two seconds cover a write after event 11.
    tokio::time::sleep(std::time::Duration::from_millis(2000)).await;
    crate::store::stop(&mut server, "-KILL");
    let server = ServerProcess::start(&config);
    let app = TestApp::on(server.app.port);
    assert_eq!(app.status("study").await["epoch"], epoch.as_str());
    let mut ws = app.ws("study", &format!("?since=9&epoch={epoch}")).await;
    let resumed = resume_frame(&mut ws).await;
    assert_eq!(resumed["recovered"], true, "{resumed}");
    let seqs = seqs_of(&mut ws, 2).await;
    assert_eq!(seqs, [10, 11]);

    // Closing the session forgets its kept history.
    assert_eq!(app.delete("/api/v1/sessions/study").await.status, 200);
    drop(server);
}
