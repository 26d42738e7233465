//! High-rate producers: events published over the live WebSocket.

use serde_json::{json, Value};

use crate::helpers::*;

const OPERATOR: &str = "syn_publish-operator-000000000000000000000000000000";
const VIEWER: &str = "syn_publish-viewer-00000000000000000000000000000000";

/// The next `op` frame, skipping events.
async fn next_op(ws: &mut WsClient) -> Value {
    loop {
        let frame = ws.next_json().await.expect("a frame in time");
        if frame.get("op").is_some() {
            return frame;
        }
    }
}

#[tokio::test]
async fn a_producer_publishes_batches_over_its_websocket_in_order_with_acknowledgements() {
    let app = spawn_app().await;
    app.create_session(json!({"id": "gaze-lab", "enabledDistributors": ["websocket"]}))
        .await;
    let mut consumer = app.ws("gaze-lab", "").await;
    let mut producer = app.ws("gaze-lab", "?events=none").await;
    for b in 0..10 {
        let batch: Vec<Value> = (0..100)
            .map(|i| json!({"event": "gaze_sample", "data": {"n": b * 100 + i, "x": 0.5}}))
            .collect();
        producer
            .send(json!({"op": "publish", "batch": batch, "ack": true, "ref": b}))
            .await;
    }
    // One without an acknowledgement, one refused.
    producer
        .send(json!({"op": "publish", "event": "pupil_sample", "data": {"d": 3.1}}))
        .await;
    producer
        .send(json!({"op": "publish", "batch": [{"data": {}}, {"event": "ok"}], "ack": true, "ref": "bad"}))
        .await;
    let mut acks = Vec::new();
    while acks.len() < 10 {
        acks.push(next_op(&mut producer).await);
    }
    let mut expected = 1u64;
    for (b, ack) in acks.iter().enumerate() {
        assert_eq!(ack["op"], "ack", "{ack}");
        assert_eq!(ack["ref"], b, "answers in order: {ack}");
        assert_eq!(ack["accepted"], 100);
        let seqs: Vec<u64> = ack["seqs"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_u64)
            .collect();
        assert_eq!(seqs, (expected..expected + 100).collect::<Vec<_>>());
        expected += 100;
    }
    let refused = next_op(&mut producer).await;
    assert_eq!(refused["op"], "error", "{refused}");
    assert_eq!(refused["status"], 422);
    assert_eq!(refused["ref"], "bad");
    assert!(
        refused["details"][0]
            .as_str()
            .is_some_and(|d| d.starts_with("[0].event")),
        "{refused}"
    );

    let events = consumer.events(1001).await;
    for (i, e) in events.iter().take(1000).enumerate() {
        assert_eq!(e["event"], "gaze_sample");
        assert_eq!(e["seq"], i as u64 + 1);
        assert_eq!(e["data"]["n"], i as u64, "in the order published");
    }
    assert_eq!(events[1000]["event"], "pupil_sample");
    assert_eq!(events[1000]["seq"], 1001);
    // The refused batch added nothing.
    assert_eq!(app.status("gaze-lab").await["events_received"], 1001);
}

#[tokio::test]
async fn publishing_needs_an_operator_and_is_charged_to_the_event_rate_limit() {
    let app = spawn_app_with(|s| {
        s.server.mode = synopticon::configuration::Mode::Production;
        s.auth.tokens = vec![
            token_config("operator", "operator", OPERATOR),
            token_config("viewer", "viewer", VIEWER),
        ];
        s.rate_limit.events_per_sec = 1.0;
        s.rate_limit.event_burst = 20.0;
    })
    .await;
    let operator = app.with_token(OPERATOR);
    let created = operator
        .post(
            "/api/v1/sessions",
            &json!({"id": "limited", "enabledDistributors": ["websocket"]}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);

    let mut watcher = app.with_token(VIEWER).ws("limited", "").await;
    watcher
        .send(json!({"op": "publish", "event": "sneaky", "data": {}, "ref": 1}))
        .await;
    let refused = next_op(&mut watcher).await;
    assert_eq!(refused["status"], 403, "{refused}");
    assert!(refused["error"]
        .as_str()
        .is_some_and(|e| e.contains("operator token")));

    let mut producer = operator.ws("limited", "").await;
    let batch = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| json!({"event": "tick", "data": {"i": i}}))
            .collect()
    };
    producer
        .send(json!({"op": "publish", "batch": batch(15), "ack": true, "ref": "first"}))
        .await;
    let first = next_op(&mut producer).await;
    assert_eq!(first["op"], "ack", "{first}");
    assert_eq!(first["accepted"], 15);
    producer
        .send(json!({"op": "publish", "batch": batch(15), "ack": true, "ref": "second"}))
        .await;
    let second = next_op(&mut producer).await;
    assert_eq!(second["op"], "error", "{second}");
    assert_eq!(second["status"], 429);
    assert_eq!(second["ref"], "second");
    assert!(second["retry_after"].as_u64() >= Some(1), "{second}");
    // More than a burst can ever hold is said so.
    producer
        .send(json!({"op": "publish", "batch": batch(21), "ref": "huge"}))
        .await;
    let huge = next_op(&mut producer).await;
    assert_eq!(huge["status"], 413, "{huge}");
    assert_eq!(
        app.with_token(VIEWER).status("limited").await["events_received"],
        15
    );
}
