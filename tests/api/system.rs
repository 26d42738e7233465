//! The built-in system session: what happens in the server, as events, over the same
//! WebSocket, SSE and MQTT as any session's; kept across restarts and never closed.

use std::time::Duration;

use serde_json::{json, Value};
use synopticon::auth::tokens::hash_hex;

use crate::helpers::*;
use crate::mqtt::{Subscriber, SHARED_BROKER};
use crate::store::TestStore;

const ADMIN: &str = "syn_system-admin-00000000000000000000000000000000";
const VIEWER: &str = "syn_system-viewer-0000000000000000000000000000000";

/// Reads the system feed until every name in `wanted` was seen (or the deadline).
async fn collect(ws: &mut WsClient, wanted: &[&str]) -> Vec<Value> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !wanted
        .iter()
        .all(|w| seen.iter().any(|e: &Value| e["event"] == *w))
    {
        let next = tokio::time::timeout_at(deadline, ws.next_event()).await;
        match next {
            Ok(Some(event)) => seen.push(event),
            _ => break,
        }
    }
    seen
}

fn first<'a>(events: &'a [Value], name: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["event"] == name)
        .unwrap_or_else(|| {
            let names: Vec<_> = events.iter().map(|e| e["event"].clone()).collect();
            panic!("no {name} among {names:?}")
        })
}

fn position(events: &[Value], name: &str) -> usize {
    events
        .iter()
        .position(|e| e["event"] == name)
        .unwrap_or(usize::MAX)
}

#[tokio::test]
async fn the_system_session_tells_what_happens_in_the_server() {
    let app = spawn_app_with(|s| s.system.health_interval_secs = 1).await;
    let mut feed = app.ws("system", "").await;

    app.create_session(json!({"id": "lab", "enabledDistributors": ["websocket", "sse"]}))
        .await;
    assert_eq!(
        app.delete("/api/v1/sessions/lab/distributors/sse")
            .await
            .status,
        200
    );
    let enabled = app
        .put("/api/v1/sessions/lab/distributors/sse", &json!({}))
        .await;
    assert!(enabled.status < 300, "{}", enabled.body);
    let reconfigured = app
        .put(
            "/api/v1/sessions/lab/distributors/websocket",
            &json!({"queueCapacity": 2048}),
        )
        .await;
    assert!(reconfigured.status < 300, "{}", reconfigured.body);
    // A webhook to a port nobody listens on: its breaker opens after one failure.
    let hook = app
        .put(
            "/api/v1/sessions/lab/distributors/http",
            &json!({"baseUrl": "http://127.0.0.1:9", "maxRetries": 0, "breakerThreshold": 1,
                "breakerCooldownMs": 60000, "timeoutMs": 500}),
        )
        .await;
    assert!(hook.status < 300, "{}", hook.body);
    app.publish("lab", json!({"event": "ping", "data": {}}))
        .await;
    let panic = app
        .post(
            "/api/v1/debug/sessions/lab/distributors/websocket/panic",
            &json!({}),
        )
        .await;
    assert!(panic.status < 300, "{}", panic.body);
    let source = app
        .post(
            "/api/v1/sources",
            &json!({"id": "door-cam", "kind": "external"}),
        )
        .await;
    assert_eq!(source.status, 201, "{}", source.body);
    let device = app
        .post(
            "/api/v1/devices",
            &json!({"serial": "SYS-1", "name": "lobby"}),
        )
        .await;
    assert_eq!(device.status, 201, "{}", device.body);
    let token = app
        .post("/api/v1/tokens", &json!({"id": "kiosk", "role": "viewer"}))
        .await;
    assert_eq!(token.status, 201, "{}", token.body);
    let secret = token.body["token"].as_str().unwrap_or_default().to_string();
    assert_eq!(app.delete("/api/v1/sessions/lab").await.status, 200);

    let events = collect(
        &mut feed,
        &[
            "session.created",
            "distributor.disabled",
            "distributor.enabled",
            "distributor.reconfigured",
            "breaker.opened",
            "distributor.restarted",
            "source.state",
            "device.created",
            "token.created",
            "session.closed",
            "health",
        ],
    )
    .await;
    let created = first(&events, "session.created");
    assert_eq!(created["data"]["id"], "lab");
    let disabled = first(&events, "distributor.disabled");
    assert_eq!(
        disabled["data"],
        json!({"session": "lab", "distributor": "sse"})
    );
    assert_eq!(
        first(&events, "distributor.reconfigured")["data"]["distributor"],
        "websocket"
    );
    let opened = first(&events, "breaker.opened");
    assert_eq!(opened["data"]["session"], "lab");
    assert_eq!(opened["data"]["distributor"], "http");
    assert_eq!(opened["data"]["from"], "closed");
    assert_eq!(
        first(&events, "distributor.restarted")["data"]["distributor"],
        "websocket"
    );
    let state = first(&events, "source.state");
    assert_eq!(state["data"]["source"], "door-cam");
    assert_eq!(state["data"]["state"], "running");
    assert_eq!(first(&events, "device.created")["data"]["serial"], "SYS-1");
    let made = first(&events, "token.created");
    assert_eq!(made["data"]["id"], "kiosk");
    assert_eq!(made["data"]["role"], "viewer");
    assert!(
        !secret.is_empty() && !made.to_string().contains(&secret),
        "no secret in the feed: {made}"
    );
    let closed = first(&events, "session.closed");
    assert_eq!(closed["data"]["id"], "lab");
    assert!(position(&events, "session.created") < position(&events, "distributor.disabled"));
    assert!(position(&events, "distributor.disabled") < position(&events, "distributor.enabled"));
    assert!(position(&events, "token.created") < position(&events, "session.closed"));
    let health = first(&events, "health");
    assert!(
        health["data"]["status"] == "ok" || health["data"]["status"] == "degraded",
        "{health}"
    );
    assert!(health["data"]["sessions"].as_u64() >= Some(1), "{health}");
    // Sequence numbers go up, like any session's.
    let seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");

    // Built in: it stays.
    let refused = app.delete("/api/v1/sessions/system").await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(
        refused.body["error"]
            .as_str()
            .is_some_and(|e| e.contains("built in")),
        "{}",
        refused.body
    );
    assert_eq!(app.status("system").await["state"], "open");
}

#[tokio::test]
async fn the_system_session_keeps_its_outputs_across_a_kill_needs_a_viewer_and_feeds_mqtt() {
    let store = TestStore::sqlite();
    let config = format!(
        "[server]\nport = 0\nmode = \"production\"\n\
         [[auth.tokens]]\nid = \"admin\"\nrole = \"admin\"\nsha256 = \"{}\"\n\
         [[auth.tokens]]\nid = \"viewer\"\nrole = \"viewer\"\nsha256 = \"{}\"\n{}",
        hash_hex(ADMIN),
        hash_hex(VIEWER),
        store.config()
    );
    let root = format!("synopticon-test-{}", uuid::Uuid::new_v4().simple());
    let mut first_run = ServerProcess::start(&config);
    let admin = first_run.app.with_token(ADMIN);
    // A building's monitoring takes the system events over MQTT.
    let mqtt = admin
        .put(
            "/api/v1/sessions/system/distributors/mqtt",
            &json!({"broker": format!("mqtt://127.0.0.1:{SHARED_BROKER}"),
                "topic": format!("{root}/{{event}}"), "qos": 1}),
        )
        .await;
    assert!(mqtt.status < 300, "{}", mqtt.body);
    first_run.child.kill().expect("SIGKILL");
    let _ = first_run.child.wait();

    let subscriber = Subscriber::start(SHARED_BROKER, &format!("{root}/#")).await;
    let server = ServerProcess::start(&config);
    let admin = server.app.with_token(ADMIN);
    let viewer = server.app.with_token(VIEWER);
    let status = admin.get("/api/v1/sessions/system").await;
    assert_eq!(status.status, 200, "{}", status.body);
    assert!(
        status.body["config"]["enabledDistributors"]
            .as_array()
            .is_some_and(|d| d.contains(&json!("mqtt"))),
        "the MQTT output came back: {}",
        status.body
    );
    // Its live feeds need a token like any session's.
    let anonymous = server.app.get("/api/v1/sessions/system/sse").await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);
    let mut feed = viewer.ws("system", "").await;
    let created = admin
        .post("/api/v1/sessions", &json!({"id": "study-7"}))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    // The feed also tells of the restored sessions' start: read on to this one.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let told = loop {
        match tokio::time::timeout_at(deadline, feed.next_event()).await {
            Ok(Some(e)) if e["event"] == "session.created" && e["data"]["id"] == "study-7" => {
                break e
            }
            Ok(Some(_)) => continue,
            other => panic!("no session.created for study-7: {other:?}"),
        }
    };
    assert_eq!(told["session"], "system");
    let over_mqtt = wait_until("session.created over MQTT", DEADLINE, || async {
        subscriber.events().into_iter().find(|m| {
            m.topic == format!("{root}/session.created") && m.payload["data"]["id"] == "study-7"
        })
    })
    .await;
    assert_eq!(
        over_mqtt.payload["data"]["id"], "study-7",
        "{:?}",
        over_mqtt.payload
    );
    // A viewer cannot change it, an admin cannot close it.
    assert_eq!(
        viewer
            .delete("/api/v1/sessions/system/distributors/mqtt")
            .await
            .status,
        403
    );
    assert_eq!(admin.delete("/api/v1/sessions/system").await.status, 409);
}

#[tokio::test]
async fn scoped_tokens_cannot_redirect_the_system_feed_and_see_only_their_own_devices() {
    const OPERATOR: &str = "syn_system-operator-000000000000000000000000000000";
    const DEVICE_VIEWER: &str = "syn_system-devviewer-00000000000000000000000000000";
    let app = spawn_app_with(|s| {
        s.server.mode = synopticon::configuration::Mode::Production;
        let mut operator = token_config("door-operator", "operator", OPERATOR);
        operator.sources = Some(vec!["door-*".into()]);
        let mut watcher = token_config("lobby-watcher", "viewer", DEVICE_VIEWER);
        watcher.devices = Some(vec!["DEV-A".into()]);
        s.auth.tokens = vec![token_config("admin", "admin", ADMIN), operator, watcher];
    })
    .await;
    let admin = app.with_token(ADMIN);
    // The system session hears every source: a token limited to some may not add an
    // output to it, nor take one away.
    let hook = app
        .with_token(OPERATOR)
        .put(
            "/api/v1/sessions/system/distributors/http",
            &json!({"baseUrl": "http://127.0.0.1:9"}),
        )
        .await;
    assert_eq!(hook.status, 403, "{}", hook.body);
    assert!(
        hook.body["error"]
            .as_str()
            .is_some_and(|e| e.contains("system session")),
        "{}",
        hook.body
    );

    // A device-scoped viewer follows the feed: it gets its own device's events and its
    // source's state, nothing of the other device.
    let mut feed = app.with_token(DEVICE_VIEWER).ws("system", "").await;
    for serial in ["DEV-B", "DEV-A"] {
        let made = admin
            .post(
                "/api/v1/devices",
                &json!({"serial": serial, "stream_url": "external", "stream_on": true}),
            )
            .await;
        assert_eq!(made.status, 201, "{}", made.body);
    }
    let events = collect(&mut feed, &["device.created", "source.state"]).await;
    // Read on briefly: anything about DEV-B would have come by now.
    let mut more = events;
    while let Ok(Some(e)) =
        tokio::time::timeout(Duration::from_millis(1500), feed.next_event()).await
    {
        more.push(e);
    }
    let about: Vec<String> = more
        .iter()
        .map(|e| format!("{} {}", e["event"], e["data"]))
        .collect();
    assert!(
        more.iter()
            .any(|e| e["event"] == "device.created" && e["data"]["serial"] == "DEV-A"),
        "{about:?}"
    );
    assert!(
        more.iter().any(|e| e["event"] == "source.state"),
        "its device's source: {about:?}"
    );
    assert!(
        !about.iter().any(|a| a.contains("DEV-B")),
        "nothing of the other device: {about:?}"
    );
    let other_source = admin.get("/api/v1/devices").await.body;
    let b_id = other_source["devices"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["serial"] == "DEV-B"))
        .map(|d| d["id"].clone())
        .unwrap_or(Value::Null);
    assert!(
        !about
            .iter()
            .any(|a| a.contains(&format!("device-{}", b_id.as_str().unwrap_or("?")))),
        "nor its source: {about:?}"
    );
}

#[tokio::test]
async fn without_the_system_session_its_id_stays_reserved_and_secrets_never_reach_the_feed() {
    let off = spawn_app_with(|s| s.system.session = false).await;
    assert_eq!(off.get("/api/v1/sessions/system").await.status, 404);
    let taken = off.post("/api/v1/sessions", &json!({"id": "system"})).await;
    assert_eq!(taken.status, 409, "{}", taken.body);

    // A webhook whose URL carries a password fails: the breaker event says why, without it.
    let app = spawn_app().await;
    let mut feed = app.ws("system", "").await;
    app.create_session(json!({"id": "leaky"})).await;
    let hook = app
        .put(
            "/api/v1/sessions/leaky/distributors/http",
            &json!({"baseUrl": "http://lab:hunter2@127.0.0.1:9/in", "maxRetries": 0,
                "breakerThreshold": 1, "timeoutMs": 500}),
        )
        .await;
    assert!(hook.status < 300, "{}", hook.body);
    app.publish("leaky", json!({"event": "ping", "data": {}}))
        .await;
    let events = collect(&mut feed, &["breaker.opened"]).await;
    let opened = first(&events, "breaker.opened");
    let said = opened["data"]["last_error"].as_str().unwrap_or_default();
    assert!(said.contains("127.0.0.1:9/in"), "the URL is told: {opened}");
    assert!(
        !opened.to_string().contains("hunter2"),
        "no password in the feed: {opened}"
    );
}

const OPERATOR: &str = "syn_system-operator-00000000000000000000000000000";
/// An operator limited to `face_*` events.
const FACES: &str = "syn_system-faces-000000000000000000000000000000000";

#[tokio::test]
async fn only_the_server_writes_into_the_system_session() {
    let port = crate::udp_ingest::free_udp_port();
    let app = spawn_app_with(move |s| {
        s.server.mode = synopticon::configuration::Mode::Production;
        let mut faces = token_config("faces", "operator", FACES);
        faces.events = Some(vec!["face_*".into()]);
        s.auth.tokens = vec![
            token_config("admin", "admin", ADMIN),
            token_config("operator", "operator", OPERATOR),
            faces,
        ];
        s.udp_ingest.enabled = true;
        s.udp_ingest.port = port;
    })
    .await;
    let admin = app.with_token(ADMIN);
    let mut monitor = admin
        .ws("system", "?events=session.closed,breaker.*,token.*,forged")
        .await;

    // REST, even for an admin.
    for token in [ADMIN, OPERATOR] {
        let forged = app
            .with_token(token)
            .post(
                "/api/v1/sessions/system/events",
                &json!({"event": "session.closed", "data": {"id": "study-001", "reason": "forged"}}),
            )
            .await;
        assert_eq!(forged.status, 403, "{}", forged.body);
        assert!(forged.body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("only the server"));
    }
    // A WebSocket publish.
    monitor
        .send(
            json!({"op": "publish", "event": "breaker.opened", "data": {"session": "x"}, "ref": 7}),
        )
        .await;
    let refused = monitor.next_json().await.expect("an answer");
    assert_eq!(refused["op"], "error", "{refused}");
    assert_eq!(refused["status"], 403, "{refused}");
    assert_eq!(refused["ref"], 7);
    // UDP, JSON and binary: rejected and counted (sent until the port knows the session).
    let producer = std::net::UdpSocket::bind("127.0.0.1:0").expect("a socket");
    let target = format!("127.0.0.1:{port}");
    let json_datagram =
        json!({"session": "system", "event": "token.deleted", "data": {"id": "admin"}}).to_string();
    let binary = crate::udp_ingest::binary("system", 1, "session.closed", &json!({"id": "x"}), 0);
    let refused = || async {
        crate::udp_ingest::series(&admin.metrics().await, "system", "rejected", "server_only")
    };
    // JSON first, sent until the port knows the session; then the binary form, once.
    let after_json = wait_until(
        "the JSON datagram refused as server-only",
        DEADLINE,
        || async {
            producer
                .send_to(json_datagram.as_bytes(), &target)
                .expect("send");
            let n = refused().await;
            (n >= 1).then_some(n)
        },
    )
    .await;
    producer.send_to(&binary, &target).expect("send");
    wait_until(
        "the binary datagram refused as server-only",
        DEADLINE,
        || async { (refused().await == after_json + 1).then_some(()) },
    )
    .await;
    // A replay into it.
    admin.create_session(json!({"id": "src"})).await;
    let rec = crate::recording::start_recording(&admin, "src", json!({})).await;
    let rid = rec["id"].as_str().expect("id").to_string();
    admin
        .publish("src", json!([{"event": "forged", "data": {}}]))
        .await;
    crate::recording::stop(&admin, &rid).await;
    let replay = admin
        .post(
            "/api/v1/sessions/system/replay",
            &json!({"recording": rid, "rate": 0}),
        )
        .await;
    assert_eq!(replay.status, 403, "{}", replay.body);
    // A rule routing into it.
    let rule = admin
        .put(
            "/api/v1/rules/into-system",
            &json!({"match": {"event": "*"}, "actions": [{"type": "session", "session": "system"}]}),
        )
        .await;
    assert_eq!(rule.status, 422, "{}", rule.body);
    assert!(
        rule.body.to_string().contains("only the server"),
        "{}",
        rule.body
    );
    // Nothing forged reached the feed; a real token change does.
    let made = admin
        .post(
            "/api/v1/tokens",
            &json!({"id": "witness", "role": "viewer"}),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let next = monitor.next_event().await.expect("an event");
    assert_eq!(
        next["event"], "token.created",
        "the first event the feed carries: {next}"
    );
    assert_eq!(next["data"]["id"], "witness");
}

#[tokio::test]
async fn an_events_scoped_token_publishes_only_its_events() {
    let app = spawn_app_with(|s| {
        s.server.mode = synopticon::configuration::Mode::Production;
        let mut faces = token_config("faces", "operator", FACES);
        faces.events = Some(vec!["face_*".into()]);
        s.auth.tokens = vec![token_config("admin", "admin", ADMIN), faces];
    })
    .await;
    let admin = app.with_token(ADMIN);
    admin
        .create_session(json!({"id": "lab", "enabledDistributors": ["websocket"]}))
        .await;
    let faces = app.with_token(FACES);
    let outside = faces
        .post(
            "/api/v1/sessions/lab/events",
            &json!([{"event": "face_seen", "data": {}}, {"event": "gaze_secret", "data": {}}]),
        )
        .await;
    assert_eq!(outside.status, 403, "{}", outside.body);
    assert!(outside.body["error"]
        .as_str()
        .unwrap_or_default()
        .contains("gaze_secret"));
    let inside = faces
        .post(
            "/api/v1/sessions/lab/events",
            &json!([{"event": "face_seen", "data": {}}]),
        )
        .await;
    assert_eq!(inside.status, 202, "{}", inside.body);
    let mut ws = faces.ws("lab", "").await;
    ws.send(json!({"op": "publish", "event": "gaze_secret", "data": {}, "ref": "g"}))
        .await;
    let refused = ws.next_json().await.expect("an answer");
    assert_eq!(
        (
            refused["op"].clone(),
            refused["status"].clone(),
            refused["ref"].clone()
        ),
        (json!("error"), json!(403), json!("g")),
        "{refused}"
    );
    ws.send(json!({"op": "publish", "event": "face_again", "data": {}, "ack": true}))
        .await;
    // The event itself may come first: the answer is the next control frame.
    let acked = loop {
        let frame = ws.next_json().await.expect("an answer");
        if frame.get("op").is_some() {
            break frame;
        }
    };
    assert_eq!(acked["op"], "ack", "{acked}");
    // Only the two face events were accepted, in all.
    assert_eq!(admin.status("lab").await["events_received"], 2);
}
