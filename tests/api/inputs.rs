//! Processor inputs against the real Redis and Mosquitto: detection envelopes XADDed to a
//! stream (or published on a topic) reach the trackers of their devices' sources, bad
//! entries end in the dead-letter stream, unknown devices are registered, entries left
//! pending (by this consumer before a restart, or by a dead one) are handled once, and two
//! processors sharing an MQTT subscription handle each message once between them.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use redis::Commands;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::mqtt::SHARED_BROKER;
use crate::redis::SHARED;

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 9, 0, 0)
        .single()
        .expect("valid time")
}

/// Frame `n` of a device: one person whose feet are at `y` (x = 300).
pub(crate) fn envelope(device: &str, camera: &str, n: i64, y: Option<f32>) -> Value {
    let at = base() + chrono::Duration::milliseconds(n * 100);
    json!({
        "version": 1,
        "source": {"device_id": device, "camera_id": camera, "timestamp": at.to_rfc3339()},
        "frame": {"number": n, "width": 640, "height": 480},
        "detections": y.map(|y| vec![json!({
            "class_id": 0, "class_name": "person", "confidence": 0.9,
            "bbox": {"x1": 260.0, "y1": y - 160.0, "x2": 340.0, "y2": y},
        })]).unwrap_or_default(),
    })
}

/// A walk down across the middle line (y = 240), then out of sight.
pub(crate) fn walk(device: &str, camera: &str) -> Vec<Value> {
    (0..12)
        .map(|n| {
            let y = (n < 8).then_some(160.0 + n as f32 * 25.0);
            envelope(device, camera, n, y)
        })
        .collect()
}

fn redis() -> redis::Connection {
    redis::Client::open(SHARED)
        .and_then(|c| c.get_connection())
        .expect("the shared Redis (make test starts it)")
}

fn xadd(conn: &mut redis::Connection, stream: &str, field: &str, payload: &str) {
    let _: String = conn.xadd(stream, "*", &[(field, payload)]).expect("XADD");
}

async fn door_cam(app: &TestApp, device: &str) {
    let created = app
        .post(
            "/api/v1/sources",
            &json!({"id": "door-cam", "kind": "external", "device_id": device,
                "detections_events": false,
                "lines": [{"id": "door", "points": [[0, "50%"], ["100%", "50%"]]}]}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
}

async fn input_status(app: &TestApp, name: &str, until: impl Fn(&Value) -> bool) -> Value {
    wait_until(&format!("input {name}"), DEADLINE, || async {
        let s = app.get(&format!("/api/v1/inputs/{name}")).await.body;
        until(&s).then_some(s)
    })
    .await
}

#[tokio::test]
async fn a_redis_stream_feeds_trackers_dead_letters_bad_entries_and_registers_new_devices() {
    let app = spawn_app().await;
    let (device, stream) = (unique("jetson"), unique("detections"));
    door_cam(&app, &device).await;
    app.create_session(json!({"id": "lab", "sources": ["door-cam"], "devices": ["*"]}))
        .await;
    let mut ws = app.ws("lab", "").await;

    let put = app
        .put(
            "/api/v1/inputs/edge",
            &json!({"kind": "redis_stream", "url": SHARED, "stream": stream,
                "blockMs": 100, "deviceTemplate": {"name": "auto", "source": {"detections_events": false}}}),
        )
        .await;
    assert_eq!(put.status, 201, "{}", put.body);
    let bad = app
        .put(
            "/api/v1/inputs/bad",
            &json!({"kind": "redis_stream", "url": "http://x", "batch": 0, "colour": 1}),
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert_eq!(
        bad.body["details"].as_array().unwrap().len(),
        3,
        "{}",
        bad.body
    );
    // An entry a live consumer is handling must not be claimed from it.
    let eager = app
        .put(
            "/api/v1/inputs/eager",
            &json!({"kind": "redis_stream", "url": SHARED, "blockMs": 2000, "claimIdleMs": 1000}),
        )
        .await;
    assert_eq!(eager.status, 422, "{}", eager.body);
    assert!(
        eager.body["details"]
            .to_string()
            .contains("claimIdleMs: must exceed blockMs"),
        "{}",
        eager.body
    );

    let mut conn = redis();
    let frames = walk(&device, "door-cam");
    for (i, e) in frames.iter().enumerate() {
        // Half as the plain envelope, half as a Synopticon `detections` event (what the
        // Redis distributor of another server writes).
        let text = if i % 2 == 0 {
            e.to_string()
        } else {
            json!({"session": "edge", "seq": i, "event": "detections", "ts": "2026-11-27T09:00:00Z", "data": e}).to_string()
        };
        xadd(&mut conn, &stream, "json", &text);
    }
    xadd(&mut conn, &stream, "json", "{not json");
    xadd(&mut conn, &stream, "other", "{}");
    let newcomer = unique("NEW");
    xadd(
        &mut conn,
        &stream,
        "json",
        &envelope(&newcomer, "cam", 0, Some(300.0)).to_string(),
    );

    let total = frames.len() + 3;
    let status = input_status(&app, "edge", |s| {
        s["acknowledged"].as_u64() == Some(total as u64)
    })
    .await;
    assert_eq!(status["received"], total, "{status}");
    assert_eq!(status["dead_lettered"], 2, "{status}");
    assert_eq!(status["devices_created"], 1, "{status}");
    assert_eq!(status["connected"], true);
    assert_eq!(status["config"]["stream"], stream.as_str());

    let mut seen = Vec::new();
    while seen.iter().all(|e: &Value| e["event"] != "line_cross") {
        seen.push(ws.next_event().await.expect("events from the stream"));
    }
    let line = seen.last().unwrap();
    assert_eq!(line["data"]["source"], "door-cam");
    assert_eq!(line["data"]["direction"], "in");

    let dead: redis::streams::StreamRangeReply =
        conn.xrange_all(format!("{stream}:dead")).expect("XRANGE");
    let reasons: Vec<String> = dead
        .ids
        .iter()
        .map(|e| e.get::<String>("reason").unwrap_or_default())
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons[0].starts_with("not JSON"), "{reasons:?}");
    assert!(reasons[1].contains("no \"json\" field"), "{reasons:?}");
    assert_eq!(dead.ids[1].get::<String>("other").as_deref(), Some("{}"));

    let registered = app.get(&format!("/api/v1/devices/sn/{newcomer}")).await;
    assert_eq!(registered.status, 200, "{}", registered.body);
    assert_eq!(registered.body["kind"], "edge");
    assert_eq!(registered.body["name"], "auto");
    assert_eq!(registered.body["stream"]["state"], "running");
    let pending: redis::streams::StreamPendingReply =
        conn.xpending(&stream, "synopticon").expect("XPENDING");
    assert_eq!(pending.count(), 0, "everything acknowledged");

    let metrics = app.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "synopticon_input_messages_total{input=\"edge\",outcome=\"dead_lettered\"}"
        ),
        Some(2.0)
    );
    assert_eq!(app.delete("/api/v1/inputs/edge").await.status, 204);
    assert_eq!(app.get("/api/v1/inputs/edge").await.status, 404);
}

#[tokio::test]
async fn entries_left_pending_by_this_consumer_or_a_dead_one_are_handled_once() {
    let app = spawn_app().await;
    let (device, stream) = (unique("jetson"), unique("detections"));
    door_cam(&app, &device).await;
    let mut conn = redis();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("g")
        .arg("0")
        .arg("MKSTREAM")
        .query(&mut conn)
        .expect("XGROUP CREATE");
    let frames: Vec<Value> = (0..10)
        .map(|n| envelope(&device, "door-cam", n, Some(100.0 + n as f32)))
        .collect();
    for e in &frames {
        xadd(&mut conn, &stream, "json", &e.to_string());
    }
    // A consumer that took five and died; then this processor's own consumer ("main")
    // took three before it stopped.
    let read = |conn: &mut redis::Connection, consumer: &str, n: usize| {
        let opts = redis::streams::StreamReadOptions::default()
            .group("g", consumer)
            .count(n);
        let _: redis::streams::StreamReadReply = conn
            .xread_options(&[&stream], &[">"], &opts)
            .expect("XREADGROUP");
    };
    read(&mut conn, "ghost", 5);
    read(&mut conn, "main", 3);

    let put = app
        .put(
            "/api/v1/inputs/edge",
            &json!({"kind": "redis_stream", "url": SHARED, "stream": stream, "group": "g",
                "blockMs": 100, "claimIdleMs": 300, "warmup": 0}),
        )
        .await;
    assert_eq!(put.status, 201, "{}", put.body);
    let status = input_status(&app, "edge", |s| s["acknowledged"] == 10).await;
    assert_eq!(status["redelivered"], 8, "{status}");
    assert_eq!(status["received"], 2, "only two were new: {status}");
    let source = app.get("/api/v1/sources/door-cam").await.body;
    assert_eq!(source["stats"]["frames_captured"], 10, "each handled once");
    let pending: redis::streams::StreamPendingReply =
        conn.xpending(&stream, "g").expect("XPENDING");
    assert_eq!(pending.count(), 0);
}

#[tokio::test]
async fn two_processors_sharing_an_mqtt_subscription_handle_each_message_once() {
    let topic_root = unique("detections");
    let device = unique("cam");
    let mut apps = Vec::new();
    for _ in 0..2 {
        let app = spawn_app().await;
        door_cam(&app, &device).await;
        let put = app
            .put(
                "/api/v1/inputs/edge",
                &json!({"kind": "mqtt", "broker": format!("mqtt://127.0.0.1:{SHARED_BROKER}"),
                    "topic": format!("{topic_root}/+"), "shareGroup": "procs",
                    "clientId": unique("proc")}),
            )
            .await;
        assert_eq!(put.status, 201, "{}", put.body);
        input_status(&app, "edge", |s| s["connected"] == true).await;
        apps.push(app);
    }
    // Subscriptions are made after the connection: give the broker a moment to have both.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut options = rumqttc::MqttOptions::new(unique("edge"), "127.0.0.1", SHARED_BROKER);
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 100);
    let poller = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    const N: i64 = 60;
    for n in 0..N {
        let e = envelope(&device, "door-cam", n, Some(100.0 + n as f32));
        client
            .publish(
                format!("{topic_root}/door-cam"),
                rumqttc::QoS::AtLeastOnce,
                false,
                e.to_string(),
            )
            .await
            .expect("publish");
    }
    let counts = wait_until("every message handled", DEADLINE, || async {
        let mut counts = Vec::new();
        for app in &apps {
            let s = app.get("/api/v1/inputs/edge").await.body;
            counts.push(s["acknowledged"].as_u64().unwrap_or(0));
        }
        (counts.iter().sum::<u64>() >= N as u64).then_some(counts)
    })
    .await;
    poller.abort();
    assert_eq!(counts.iter().sum::<u64>(), N as u64, "{counts:?}");
    assert!(
        counts.iter().all(|c| *c > 0),
        "both took a share: {counts:?}"
    );
    let mut frames = 0;
    for app in &apps {
        frames += app.get("/api/v1/sources/door-cam").await.body["stats"]["frames_captured"]
            .as_u64()
            .unwrap_or(0);
    }
    assert_eq!(frames, N as u64, "each message tracked once");
}

/// Frames of one person pacing across the middle line: down over 10 frames, up over 10,
/// `rounds` times; crossings: two per round.
fn pacing(device: &str, rounds: usize) -> Vec<Value> {
    let mut ys = Vec::new();
    for _ in 0..rounds {
        ys.extend((0..10).map(|i| 150.0 + i as f32 * 20.0));
        ys.extend((0..10).map(|i| 330.0 - i as f32 * 20.0));
    }
    ys.iter()
        .enumerate()
        .map(|(n, y)| envelope(device, "door-cam", n as i64, Some(*y)))
        .collect()
}

#[tokio::test]
async fn a_processor_killed_mid_stream_counts_every_crossing_once_after_its_restart() {
    let (device, stream, session) = (unique("jetson"), unique("detections"), unique("gate"));
    let store = std::env::temp_dir().join(format!("synopticon-proc-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&store).expect("dir");
    let config = format!(
        "[server]\nport = 0\n[store]\nurl = \"sqlite://{}/store.db\"\n\
         [[inputs]]\nname = \"edge\"\nkind = \"redis_stream\"\nurl = \"{SHARED}\"\nstream = \"{stream}\"\nblockMs = 100\n\
         [[sources]]\nid = \"door-cam\"\nkind = \"external\"\ndevice_id = \"{device}\"\ndetections_events = false\n\
         lines = [{{id = \"door\", points = [[0, \"50%\"], [\"100%\", \"50%\"]]}}]\n\
         [[sessions.declared]]\nid = \"{session}\"\nsources = [\"door-cam\"]\nenabledDistributors = [\"mqtt\"]\n\
         eventRouting = {{line_cross = [\"mqtt\"], \"*\" = []}}\n\
         distributors = {{mqtt = {{broker = \"mqtt://127.0.0.1:{SHARED_BROKER}\", qos = 1}}}}\n",
        store.display()
    );
    let crossings =
        crate::mqtt::Subscriber::start(SHARED_BROKER, &format!("synopticon/{session}/#")).await;
    let frames = pacing(&device, 10);
    let expected = 20;
    let mut conn = redis();

    let mut first = ServerProcess::start(&config);
    // The edge publishes the first part; the processor handles it and its crossings go out.
    let cut = 95; // mid-walk: the person is 5 frames from the line
    for f in &frames[..cut] {
        xadd(&mut conn, &stream, "json", &f.to_string());
    }
    wait_until("the first part handled", DEADLINE, || async {
        let s = first.app.get("/api/v1/inputs/edge").await.body;
        (s["acknowledged"] == cut).then_some(())
    })
    .await;
    let counted_before = wait_until("its crossings out", DEADLINE, || async {
        let n = crossings.events().len();
        (n == 9).then_some(n)
    })
    .await;
    first.child.kill().expect("SIGKILL");
    let _ = first.child.wait();

    // The edge goes on while the processor is down; then it comes back.
    for f in &frames[cut..] {
        xadd(&mut conn, &stream, "json", &f.to_string());
    }
    let second = ServerProcess::start(&config);
    let status = wait_until("the rest handled", DEADLINE, || async {
        let s = second.app.get("/api/v1/inputs/edge").await.body;
        (s["acknowledged"] == frames.len() - cut).then_some(s)
    })
    .await;
    assert_eq!(status["dead_lettered"], 0, "{status}");
    let total = wait_until("every crossing", DEADLINE, || async {
        let n = crossings.events().len();
        (n >= expected).then_some(n)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events = crossings.events();
    assert_eq!(total, expected, "counted before the kill: {counted_before}");
    assert_eq!(events.len(), expected, "no crossing counted twice");
    let directions: Vec<&str> = events
        .iter()
        .filter_map(|m| m.payload["data"]["direction"].as_str())
        .collect();
    assert!(
        directions.chunks(2).all(|p| p == ["in", "out"]),
        "{directions:?}"
    );
    let pending: redis::streams::StreamPendingReply =
        conn.xpending(&stream, "synopticon").expect("XPENDING");
    assert_eq!(pending.count(), 0);
    let _ = std::fs::remove_dir_all(&store);
}

/// A server whose input `name` reads `stream`, registering unknown devices (each test
/// names its own: metric series are the process's).
async fn flooded_server(
    name: &str,
    stream: &str,
    tweak: impl FnOnce(&mut synopticon::configuration::Settings) + Send + 'static,
) -> TestApp {
    let app = spawn_app_with(tweak).await;
    let put = app
        .put(
            &format!("/api/v1/inputs/{name}"),
            &json!({"kind": "redis_stream", "url": SHARED, "stream": stream, "blockMs": 100,
                "deviceTemplate": {"source": {"detections_events": false}}}),
        )
        .await;
    assert_eq!(put.status, 201, "{}", put.body);
    app
}

/// `n` envelopes from `n` made-up devices.
fn flood(stream: &str, n: usize) {
    let mut conn = redis();
    for i in 0..n {
        let text = envelope(&format!("FAKE-{i:03}"), "cam", 0, Some(200.0)).to_string();
        xadd(&mut conn, stream, "json", &text);
    }
}

fn registered_by(input: &str, devices: &Value) -> usize {
    devices["devices"]
        .as_array()
        .expect("a list")
        .iter()
        .filter(|d| d["registered_by"] == format!("input:{input}").as_str())
        .count()
}

#[tokio::test]
async fn a_flood_of_unknown_devices_leaves_the_api_its_source_slots() {
    let stream = unique("flood");
    let app = flooded_server("flood-edge", &stream, |s| {
        s.server.max_sources = 12;
        s.server.reserved_sources = 4;
        s.devices.auto_registered_per_minute = 10_000.0;
    })
    .await;
    flood(&stream, 30);
    let status = input_status(&app, "flood-edge", |s| s["acknowledged"] == 30).await;
    // 12 slots, 4 kept for the API: 8 devices registered, every other one refused and
    // counted, no device record left without its source.
    assert_eq!(status["devices_created"], 8, "{status}");
    assert_eq!(status["devices_limited"], 22, "{status}");
    assert_eq!(status["dead_lettered"], 22, "{status}");
    assert!(
        status["last_error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("server.reserved_sources")),
        "{status}"
    );
    let devices = app.get("/api/v1/devices").await.body;
    assert_eq!(registered_by("flood-edge", &devices), 8, "{devices}");
    assert_eq!(devices["devices"].as_array().map(Vec::len), Some(8));
    // The API still makes sources, up to the last slot.
    for i in 0..4 {
        let made = app
            .post(
                "/api/v1/sources",
                &json!({"id": format!("api-{i}"), "kind": "external"}),
            )
            .await;
        assert_eq!(made.status, 201, "source {i}: {}", made.body);
    }
    let full = app
        .post(
            "/api/v1/sources",
            &json!({"id": "api-4", "kind": "external"}),
        )
        .await;
    assert_eq!(full.status, 503, "{}", full.body);
    // A client cannot claim to be an input's device.
    let forged = app
        .post(
            "/api/v1/devices",
            &json!({"serial": "MINE", "registered_by": "input:edge"}),
        )
        .await;
    assert_eq!(forged.status, 422, "{}", forged.body);
    let metrics = app.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "synopticon_input_unknown_devices_total{input=\"flood-edge\",outcome=\"limited\"}"
        ),
        Some(22.0),
        "{metrics}"
    );
}

#[tokio::test]
async fn devices_inputs_register_have_their_own_ceiling_and_rate() {
    let stream = unique("ceiling");
    let app = flooded_server("ceiling-edge", &stream, |s| {
        s.devices.max_auto_registered = 3;
        s.devices.auto_registered_per_minute = 10_000.0;
    })
    .await;
    flood(&stream, 10);
    let status = input_status(&app, "ceiling-edge", |s| s["acknowledged"] == 10).await;
    assert_eq!(status["devices_created"], 3, "{status}");
    assert_eq!(status["devices_limited"], 7, "{status}");
    assert!(
        status["last_error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("devices.max_auto_registered")),
        "{status}"
    );
    // REST registrations do not count against it.
    let made = app
        .post("/api/v1/devices", &json!({"serial": "BY-HAND"}))
        .await;
    assert_eq!(made.status, 201, "{}", made.body);

    let stream = unique("rate");
    let app = flooded_server("rate-edge", &stream, |s| {
        s.devices.auto_registered_per_minute = 2.0;
    })
    .await;
    flood(&stream, 6);
    let status = input_status(&app, "rate-edge", |s| s["acknowledged"] == 6).await;
    // A burst of two, then about one every half minute: none within this test.
    assert_eq!(status["devices_created"], 2, "{status}");
    assert_eq!(status["devices_limited"], 4, "{status}");
    assert!(
        status["last_error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("devices.auto_registered_per_minute")),
        "{status}"
    );
}
