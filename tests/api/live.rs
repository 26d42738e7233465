//! Live feeds with real clients: WebSocket and SSE delivery, order, subscriptions,
//! isolation, runtime changes and slow consumers.

use serde_json::{json, Value};

use crate::helpers::*;

fn seqs(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

#[tokio::test]
async fn websocket_receives_routed_events_in_order_with_consecutive_seq() {
    let app = spawn_app().await;
    app.create_session(json!({"id": "ws1"})).await;
    let mut ws = app.ws("ws1", "").await;

    for chunk in 0..4 {
        app.publish("ws1", batch(&format!("kind_{chunk}"), 50))
            .await;
    }
    let events = ws.events(200).await;

    assert_eq!(seqs(&events), (1..=200).collect::<Vec<_>>());
    assert_eq!(events[0]["session"], "ws1");
    assert_eq!(events[0]["event"], "kind_0");
    assert_eq!(events[0]["data"], json!({"i": 0}));
    assert_eq!(events[199]["event"], "kind_3");
    assert_eq!(events[199]["data"], json!({"i": 49}));
    assert!(chrono::DateTime::parse_from_rfc3339(events[0]["ts"].as_str().unwrap()).is_ok());
    let ws_status = app.distributor("ws1", "websocket").await;
    assert_eq!(ws_status["connected_clients"], 1);
    assert_eq!(ws_status["sent"], 200);
}

#[tokio::test]
async fn websocket_subscriptions_narrow_by_glob() {
    let app = spawn_app().await;
    app.create_session(json!({"id": "sub"})).await;
    let mut ws = app.ws("sub", "?events=face_*").await;
    let mut everything = app.ws("sub", "").await;

    app.publish(
        "sub",
        json!([{"event": "face_detected"}, {"event": "track_started"}, {"event": "face_lost"}]),
    )
    .await;
    let faces = ws.events(2).await;
    ws.send(json!({"op": "subscribe", "events": ["track_*"]}))
        .await;
    let ack = ws.next_json().await.unwrap();
    ws.send(json!({"op": "unsubscribe", "events": ["face_*"]}))
        .await;
    let ack2 = ws.next_json().await.unwrap();
    app.publish(
        "sub",
        json!([{"event": "face_detected"}, {"event": "track_ended"}]),
    )
    .await;
    let after = ws.next_event().await.unwrap();

    assert_eq!(
        faces
            .iter()
            .map(|e| e["event"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["face_detected", "face_lost"]
    );
    assert_eq!(seqs(&faces), [1, 3]);
    assert_eq!(
        ack,
        json!({"op": "subscribed", "events": ["face_*", "track_*"], "exclude": [], "channels": []})
    );
    assert_eq!(ack2["events"], json!(["track_*"]));
    assert_eq!(
        (after["event"].as_str(), after["seq"].as_u64()),
        (Some("track_ended"), Some(5))
    );
    // The unfiltered client saw all five.
    assert_eq!(seqs(&everything.events(5).await), [1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn websocket_bad_client_messages_get_error_frames_and_the_connection_stays() {
    let app = spawn_app().await;
    app.create_session(json!({"id": "bad"})).await;
    let mut ws = app.ws("bad", "").await;

    ws.send(json!({"op": "dance"})).await;
    let unknown = ws.next_json().await.unwrap();
    ws.stream.send_text_raw("{not json").await;
    let garbage = ws.next_json().await.unwrap();
    ws.send(json!({"op": "subscribe", "events": ["bad pattern"]}))
        .await;
    let pattern = ws.next_json().await.unwrap();
    app.publish("bad", json!({"event": "still_here"})).await;
    let event = ws.next_event().await.unwrap();

    for reply in [&unknown, &garbage, &pattern] {
        assert_eq!(reply["op"], "error", "{reply}");
        assert!(reply["error"].as_str().unwrap().len() > 10);
    }
    assert_eq!(event["event"], "still_here");
}

#[tokio::test]
async fn a_connection_holds_a_bounded_number_of_patterns() {
    let app = spawn_app().await;
    app.create_session(json!({"id": "many"})).await;
    let too_many: Vec<String> = (0..129).map(|i| format!("e{i}")).collect();

    // At the handshake: 400.
    let url = format!(
        "ws://127.0.0.1:{}/api/v1/sessions/many/ws?events={}",
        app.port,
        too_many.join(",")
    );
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 400),
        other => panic!("expected 400, got {other:?}"),
    }

    // Over the connection: 128 fit, one more is refused and changes nothing.
    let mut ws = app.ws("many", "").await;
    ws.send(json!({"op": "subscribe", "events": &too_many[..128]}))
        .await;
    let ok = ws.next_json().await.expect("reply");
    assert_eq!(ok["op"], "subscribed", "{ok}");
    assert_eq!(ok["events"].as_array().map(Vec::len), Some(128));
    ws.send(json!({"op": "subscribe", "events": ["e128"]}))
        .await;
    let refused = ws.next_json().await.expect("reply");
    assert_eq!(refused["op"], "error", "{refused}");
    assert!(refused["error"]
        .as_str()
        .unwrap_or_default()
        .contains("at most 128 event and channel patterns"));
    app.publish("many", json!([{"event": "e128"}, {"event": "e3"}]))
        .await;
    let got = ws.next_event().await.expect("event");
    assert_eq!(
        got["event"], "e3",
        "the refused subscription to e128 did not take"
    );
}

#[tokio::test]
async fn a_client_flooding_the_socket_is_told_once_and_then_ignored() {
    let app = spawn_app().await;
    app.create_session(json!({"id": "flood"})).await;
    let mut ws = app.ws("flood", "").await;
    for i in 0..80 {
        if i % 2 == 0 {
            ws.send(json!({"op": "ping"})).await;
        } else {
            // Binary frames count too (each would otherwise get its own error frame).
            ws.stream.send_binary_raw().await;
        }
    }
    // Ignored until the allowance has refilled completely: 50 at 20/s.
    tokio::time::sleep(std::time::Duration::from_millis(2600)).await;
    ws.send(json!({"op": "subscribe", "events": ["marker"]}))
        .await;
    let mut replies = Vec::new();
    loop {
        let reply = ws.next_json().await.expect("a reply");
        if reply["op"] == "subscribed" {
            break;
        }
        replies.push(reply);
    }
    // A burst of 50 frames answered (a pong each, or an error for each binary one), then
    // one "too many messages", then silence.
    let too_many = replies
        .iter()
        .filter(|r| {
            r["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("too many messages"))
        })
        .count();
    assert_eq!(too_many, 1, "told once: {replies:?}");
    let answered = replies.len() - too_many;
    assert!(
        (50..=60).contains(&answered),
        "{answered} answered: {replies:?}"
    );
    let pongs = replies.iter().filter(|r| r["op"] == "pong").count();
    assert!((25..=30).contains(&pongs), "{pongs} pongs: {replies:?}");
    // And the connection still delivers.
    app.publish("flood", json!({"event": "marker"})).await;
    assert_eq!(ws.next_event().await.expect("event")["event"], "marker");
}

trait RawText {
    async fn send_text_raw(&mut self, text: &str);
    async fn send_binary_raw(&mut self);
}

impl RawText
    for tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>
{
    async fn send_text_raw(&mut self, text: &str) {
        use futures_util::SinkExt;
        self.send(tokio_tungstenite::tungstenite::Message::Text(text.into()))
            .await
            .unwrap();
    }

    async fn send_binary_raw(&mut self) {
        use futures_util::SinkExt;
        self.send(tokio_tungstenite::tungstenite::Message::Binary(
            vec![1, 2, 3].into(),
        ))
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn websocket_on_unknown_session_or_disabled_distributor_is_refused() {
    let app = spawn_app().await;
    app.create_session(json!({"id": "sse_only", "enabledDistributors": ["sse"]}))
        .await;

    let unknown = tokio_tungstenite::connect_async(format!(
        "ws://127.0.0.1:{}/api/v1/sessions/none/ws",
        app.port
    ))
    .await;
    let disabled = tokio_tungstenite::connect_async(format!(
        "ws://127.0.0.1:{}/api/v1/sessions/sse_only/ws",
        app.port
    ))
    .await;

    let status = |r: Result<_, tokio_tungstenite::tungstenite::Error>| match r {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {:?}", other.map(|_| ())),
    };
    assert_eq!(status(unknown), 404);
    assert_eq!(status(disabled), 409);
}

#[tokio::test]
async fn sse_delivers_events_and_resumes_from_last_event_id() {
    let app = spawn_app().await;
    app.create_session(json!({"id": "sse1"})).await;
    let mut sse = app.sse("sse1", "", None).await;

    app.publish("sse1", batch("zone_enter", 5)).await;
    let events = sse.events(5).await;
    let mut resumed = app.sse("sse1", "", Some(3)).await;
    let replay = resumed.events(2).await;
    let mut filtered = app.sse("sse1", "?events=track_*", None).await;
    app.publish(
        "sse1",
        json!([{"event": "zone_exit"}, {"event": "track_started"}]),
    )
    .await;
    let next = resumed.events(2).await;
    let only_track = filtered.events(1).await;

    let ids: Vec<_> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["1", "2", "3", "4", "5"]);
    assert_eq!(events[0].event, "zone_enter");
    let data: Value = serde_json::from_str(&events[4].data).unwrap();
    assert_eq!(data["seq"], 5);
    assert_eq!(data["data"], json!({"i": 4}));
    assert_eq!(
        replay.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["4", "5"]
    );
    assert_eq!(
        next.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(),
        ["zone_exit", "track_started"]
    );
    assert_eq!(
        (only_track[0].id.as_str(), only_track[0].event.as_str()),
        ("7", "track_started")
    );
}

#[tokio::test]
async fn sessions_are_isolated() {
    let app = spawn_app().await;
    app.create_session(json!({"id": "iso_a"})).await;
    app.create_session(json!({"id": "iso_b"})).await;
    let mut a = app.ws("iso_a", "").await;
    let mut b = app.ws("iso_b", "").await;

    app.publish("iso_a", batch("only_a", 3)).await;
    app.publish("iso_b", batch("only_b", 2)).await;
    let got_a = a.events(3).await;
    let got_b = b.events(2).await;

    assert!(got_a
        .iter()
        .all(|e| e["session"] == "iso_a" && e["event"] == "only_a"));
    assert!(got_b
        .iter()
        .all(|e| e["session"] == "iso_b" && e["event"] == "only_b"));
    assert_eq!(seqs(&got_b), [1, 2], "each session numbers its own events");
    assert_eq!(app.status("iso_b").await["events_received"], 2);
}

#[tokio::test]
async fn distributors_change_while_events_flow() {
    let app = spawn_app().await;
    app.create_session(json!({"id": "dyn", "enabledDistributors": ["websocket"]}))
        .await;
    let mut ws = app.ws("dyn", "").await;
    app.publish("dyn", batch("before", 3)).await;

    let enabled = app
        .put(
            "/api/v1/sessions/dyn/distributors/sse",
            &json!({"historySize": 8}),
        )
        .await;
    let mut sse = app.sse("dyn", "", None).await;
    app.publish("dyn", batch("during", 3)).await;
    let reconfigured = app
        .put(
            "/api/v1/sessions/dyn/distributors/websocket",
            &json!({"clientQueueCapacity": 64}),
        )
        .await;
    app.publish("dyn", batch("after_reconfigure", 2)).await;
    let disabled = app.delete("/api/v1/sessions/dyn/distributors/sse").await;
    app.publish("dyn", batch("after_disable", 2)).await;

    assert_eq!(enabled.status, 200, "{}", enabled.body);
    assert_eq!(enabled.body["action"], "enabled");
    assert_eq!(reconfigured.body["action"], "reconfigured");
    assert_eq!(disabled.status, 200);
    assert_eq!(
        disabled.body["config"]["enabledDistributors"],
        json!(["websocket"])
    );
    // WebSocket saw every event, without a gap, across both changes.
    assert_eq!(seqs(&ws.events(10).await), (1..=10).collect::<Vec<_>>());
    // SSE saw what was published while it was enabled, then its stream ended.
    let sse_events = sse.events(5).await;
    assert_eq!(
        sse_events.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["4", "5", "6", "7", "8"]
    );
    assert!(
        sse.next().await.is_none(),
        "SSE stream ends when its distributor is disabled"
    );
    let status = app.status("dyn").await;
    assert_eq!(status["distributors"].as_array().unwrap().len(), 1);
    assert_eq!(
        status["config"]["distributors"]["websocket"]["clientQueueCapacity"],
        64
    );
}

#[tokio::test]
async fn closing_a_session_sends_close_frames_and_ends_streams() {
    let app = spawn_app().await;
    app.create_session(json!({"id": "bye"})).await;
    let mut ws = app.ws("bye", "").await;
    let mut sse = app.sse("bye", "", None).await;
    app.publish("bye", batch("last_words", 2)).await;

    let closed = app.delete("/api/v1/sessions/bye").await;

    assert_eq!(closed.status, 200);
    assert_eq!(seqs(&ws.events(2).await), [1, 2]);
    assert_eq!(ws.closed().await, (1000, "session_closed".to_string()));
    assert_eq!(sse.events(2).await.len(), 2);
    assert!(sse.next().await.is_none());
}

#[tokio::test]
async fn a_stuck_client_is_cut_off_without_delaying_the_others() {
    let app = spawn_app().await;
    app.create_session(json!({"id": "slow", "enabledDistributors": ["websocket"],
        "distributors": {"websocket": {"clientQueueCapacity": 128, "maxClientDrops": 16}}}))
        .await;
    // A client that completes the handshake and then never reads; its socket's receive
    // buffer is tiny so the server feels the back-pressure sooner.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket
        .connect(([127, 0, 0, 1], app.port).into())
        .await
        .unwrap();
    let (stuck, _) = tokio_tungstenite::client_async(
        format!("ws://127.0.0.1:{}/api/v1/sessions/slow/ws", app.port),
        tcp,
    )
    .await
    .unwrap();
    let mut fast = app.ws("slow", "").await;
    let payload = "x".repeat(16 * 1024);
    let (batches, per_batch) = (40u64, 25u64);
    let total = batches * per_batch;
    let (progress_tx, mut progress) = tokio::sync::watch::channel(0u64);

    let reader = tokio::spawn(async move {
        let mut seqs = Vec::new();
        while (seqs.len() as u64) < total {
            match fast.next_event().await {
                Some(e) => seqs.push(e["seq"].as_u64().unwrap()),
                None => break,
            }
            let _ = progress_tx.send(seqs.len() as u64);
        }
        // Handed back, so the fast client stays connected while the counts are read.
        (seqs, fast)
    });
    for b in 0..batches {
        let events: Vec<Value> = (0..per_batch)
            .map(|i| json!({"event": "bulk", "data": {"i": b * per_batch + i, "pad": payload}}))
            .collect();
        app.publish("slow", Value::Array(events)).await;
        // The fast client must get each batch while the stuck one holds its own frames.
        let want = (b + 1) * per_batch;
        tokio::time::timeout(DEADLINE, progress.wait_for(|n| *n >= want))
            .await
            .unwrap_or_else(|_| panic!("the fast client stalled before event {want}"))
            .unwrap();
    }
    let (received, _fast) = tokio::time::timeout(DEADLINE, reader)
        .await
        .expect("reader finishes")
        .unwrap();

    assert_eq!(
        received,
        (1..=total).collect::<Vec<_>>(),
        "the fast client got every event in order"
    );
    let ws = wait_until("the stuck client to be cut off", DEADLINE, || async {
        let d = app.distributor("slow", "websocket").await;
        (d["slow_client_disconnects"] == 1).then_some(d)
    })
    .await;
    assert!(ws["client_frames_dropped"].as_u64().unwrap() >= 16, "{ws}");
    assert_eq!(ws["connected_clients"], 1);
    assert_eq!(ws["sent"], total, "every event was fanned out");
    let metrics = app.metrics().await;
    assert!(metrics.contains("synopticon_live_disconnects_total{session=\"slow\",distributor=\"websocket\",reason=\"slow_consumer\"} 1"), "{metrics}");
    drop(stuck);
}

#[tokio::test]
async fn a_client_that_stops_answering_pings_is_dropped() {
    let app = spawn_app().await;
    app.create_session(json!({"id": "hb"})).await;
    // Handshake, then never read again: pings go unanswered.
    let (silent, _) = tokio_tungstenite::connect_async(format!(
        "ws://127.0.0.1:{}/api/v1/sessions/hb/ws",
        app.port
    ))
    .await
    .unwrap();
    let mut live = app.ws("hb", "").await;
    assert_eq!(
        app.distributor("hb", "websocket").await["connected_clients"],
        2
    );

    // live.client_timeout_ms is 3 s in the test settings; the live client keeps reading,
    // which answers the server's pings.
    let reader = tokio::spawn(async move { while live.read().await.is_some() {} });
    wait_until("the silent client to be dropped", DEADLINE, || async {
        (app.distributor("hb", "websocket").await["connected_clients"] == 1).then_some(())
    })
    .await;

    reader.abort();
    drop(silent);
}

#[tokio::test]
async fn idle_sse_streams_get_heartbeat_comments() {
    use futures_util::StreamExt;
    let app = spawn_app().await;
    app.create_session(json!({"id": "beat"})).await;
    let response = app
        .client
        .get(app.url("/api/v1/sessions/beat/sse"))
        .send()
        .await
        .unwrap();
    let mut body = response.bytes_stream();

    let mut text = String::new();
    let started = std::time::Instant::now();
    while !text.contains(": heartbeat\n\n") {
        let chunk = tokio::time::timeout(DEADLINE, body.next())
            .await
            .expect("a chunk in time")
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }

    assert!(text.starts_with("retry: 3000\n: epoch "), "{text:?}");
    assert!(text.contains(" last_seq 0\n\n"), "{text:?}");
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(400),
        "the heartbeat comes after an idle period"
    );
}

#[tokio::test]
async fn sse_event_names_can_be_mapped_per_event() {
    let app = spawn_app().await;
    app.create_session(json!({"id": "names", "enabledDistributors": ["sse"],
        "distributors": {"sse": {"eventNames": {"face_*": "face", "face_lost": "face_gone"}}}}))
        .await;
    let mut sse = app.sse("names", "", None).await;

    app.publish(
        "names",
        json!([{"event": "face_detected"}, {"event": "face_lost"}, {"event": "gaze"}]),
    )
    .await;
    let got = sse.events(3).await;

    let names: Vec<_> = got
        .iter()
        .map(|e| (e.id.as_str(), e.event.as_str()))
        .collect();
    assert_eq!(names, [("1", "face"), ("2", "face_gone"), ("3", "gaze")]);
    let data: Value = serde_json::from_str(&got[0].data).unwrap();
    assert_eq!(
        data["event"], "face_detected",
        "the envelope keeps the real event type"
    );
}

#[tokio::test]
async fn without_authentication_only_the_total_bounds_live_connections() {
    // In local_testing every client is the same "local" caller: the per-token bound must
    // not cap a dashboard wall at a handful of clients.
    let app = spawn_app_with(|s| {
        s.live.max_connections_per_token = 2;
        s.live.max_connections = 4;
    })
    .await;
    app.create_session(json!({"id": "wall"})).await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(app.ws("wall", "").await);
    }
    let fifth = app.get("/api/v1/sessions/wall/sse").await;
    assert_eq!(fifth.status, 503, "{}", fifth.body);
    app.publish("wall", batch("hello", 1)).await;
    for ws in &mut clients {
        assert_eq!(ws.next_event().await.expect("event")["event"], "hello");
    }
}

/// Reads an SSE response's raw text until `needle` shows up (comments included).
async fn sse_text_until(response: reqwest::Response, needle: &str) -> String {
    use futures_util::StreamExt;
    let mut body = response.bytes_stream();
    let mut text = String::new();
    while !text.contains(needle) {
        match tokio::time::timeout(DEADLINE, body.next()).await {
            Ok(Some(Ok(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            _ => panic!("{needle:?} never came; the stream said:\n{text}"),
        }
    }
    text
}

#[tokio::test]
async fn sse_resume_points_out_of_range_miss_nothing_and_garbage_is_refused() {
    let app = spawn_app().await;
    app.create_session(json!({"id": "resume", "distributors": {"sse": {"historySize": 2}}}))
        .await;
    app.publish("resume", batch("tick", 5)).await;
    let open = |id: &str| {
        app.request(reqwest::Method::GET, "/api/v1/sessions/resume/sse")
            .header("Last-Event-ID", id)
            .send()
    };

    // The largest id there is: nothing missed, no wrapped "events 0 to 0" notice.
    let ahead = open("18446744073709551615").await.expect("sse");
    let ahead_status = ahead.status().as_u16();
    let lost = open("1").await.expect("sse");
    let too_big = open("18446744073709551616").await.expect("sse");
    let garbage = open("seven").await.expect("sse");
    let (too_big_status, garbage_status) = (too_big.status().as_u16(), garbage.status().as_u16());
    let garbage_body: Value = garbage.json().await.expect("JSON error");
    app.publish("resume", json!({"event": "after"})).await;
    let ahead_text = sse_text_until(ahead, "event: after").await;
    let lost_text = sse_text_until(lost, "event: after").await;

    assert_eq!(ahead_status, 200);
    assert!(!ahead_text.contains("no longer retained"), "{ahead_text}");
    assert!(!ahead_text.contains("event: tick"), "{ahead_text}");
    assert!(ahead_text.contains("id: 6\n"), "{ahead_text}");
    // History holds 4 and 5: 2 and 3 are gone, and the client is told exactly that.
    assert!(
        lost_text.contains(": events 2 to 3 are no longer retained\n"),
        "{lost_text}"
    );
    assert!(
        lost_text.contains("id: 4\n") && lost_text.contains("id: 5\n"),
        "{lost_text}"
    );
    assert_eq!((too_big_status, garbage_status), (400, 400));
    assert!(
        garbage_body["error"]
            .as_str()
            .unwrap()
            .contains("Last-Event-ID"),
        "{garbage_body}"
    );
}

#[tokio::test]
async fn event_data_passes_through_byte_for_byte() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let app = spawn_app().await;
    app.create_session(json!({"id": "exact"})).await;
    let mut ws = app.ws("exact", "").await;
    let sse = app
        .request(reqwest::Method::GET, "/api/v1/sessions/exact/sse")
        .send()
        .await
        .expect("sse");
    let body = concat!(
        "[{\"event\": \"measure\", \"data\": {\n  \"big\" : 123456789012345678901234567890123456789012345678901234567890,\n",
        "  \"neg0\": -0, \"tiny\": 1e-400, \"f\": 1.50, \"e\": 2E+3, \"s\": \"two  spaces \\\"quoted\\\" \\u00e9\\n\" }}]"
    );
    let exact = r#""data":{"big":123456789012345678901234567890123456789012345678901234567890,"neg0":-0,"tiny":1e-400,"f":1.50,"e":2E+3,"s":"two  spaces \"quoted\" \u00e9\n"}}"#;

    let posted = app.post_raw("/api/v1/sessions/exact/events", body).await;
    let frame = loop {
        match tokio::time::timeout(DEADLINE, ws.stream.next()).await {
            Ok(Some(Ok(Message::Text(text)))) if !text.contains("\"op\"") => {
                break text.to_string()
            }
            Ok(Some(Ok(_))) => continue,
            other => panic!("no event frame: {other:?}"),
        }
    };
    let sse_text = sse_text_until(sse, "event: measure").await;
    let deep = format!(
        "{{\"event\": \"deep\", \"data\": {}{}}}",
        "[".repeat(101),
        "]".repeat(101)
    );
    let too_deep = app.post_raw("/api/v1/sessions/exact/events", deep).await;

    assert_eq!(posted.status, 202, "{}", posted.body);
    assert!(
        frame.ends_with(exact),
        "WebSocket frame changed the data:\n{frame}"
    );
    assert!(
        sse_text.contains(exact),
        "SSE block changed the data:\n{sse_text}"
    );
    assert_eq!(too_deep.status, 422, "{}", too_deep.body);
    assert!(
        too_deep.body["details"][0]
            .as_str()
            .unwrap()
            .contains("data: nested more than 100 levels"),
        "{}",
        too_deep.body
    );
}
