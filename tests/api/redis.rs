//! Redis distributor against real Redis servers: the shared one on 127.0.0.1:6379 and a
//! private one this test starts late to simulate an outage and its end.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::Commands;
use serde_json::{json, Value};

use crate::helpers::*;

/// The server `make test` makes sure is running.
pub(crate) const SHARED: &str = "redis://127.0.0.1:6379";

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().to_string()[..8])
}

/// A real Pub/Sub subscriber on a pattern, collecting (channel, payload).
pub(crate) fn psubscribe(url: &str, pattern: &str) -> Arc<Mutex<Vec<(String, Value)>>> {
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let (url, pattern) = (url.to_string(), pattern.to_string());
    std::thread::spawn(move || {
        let client = redis::Client::open(url).unwrap();
        let mut conn = client.get_connection().unwrap();
        let mut pubsub = conn.as_pubsub();
        pubsub.psubscribe(&pattern).unwrap();
        pubsub
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        ready_tx.send(()).unwrap();
        while let Ok(msg) = pubsub.get_message() {
            let payload: Vec<u8> = msg.get_payload().unwrap_or_default();
            sink.lock().unwrap().push((
                msg.get_channel_name().to_string(),
                serde_json::from_slice(&payload).unwrap_or(Value::Null),
            ));
        }
    });
    ready.recv_timeout(DEADLINE).expect("subscribed");
    got
}

#[tokio::test]
async fn events_are_published_to_channels_in_order() {
    let app = spawn_app().await;
    let session = unique("rps");
    let got = psubscribe(SHARED, &format!("synopticon:{session}:*"));
    app.create_session(json!({"id": session, "enabledDistributors": ["redis"], "distributors": {"redis": {"url": SHARED}}})).await;

    let events: Vec<Value> = (0..10).map(|i| json!({"event": if i % 2 == 0 { "zone_enter" } else { "zone_exit" }, "data": {"i": i}})).collect();
    app.publish(&session, Value::Array(events)).await;
    let messages = wait_until("10 messages", DEADLINE, || async {
        let m = got.lock().unwrap().clone();
        (m.len() >= 10).then_some(m)
    })
    .await;

    assert_eq!(
        messages
            .iter()
            .map(|(_, v)| v["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
    assert_eq!(messages[0].0, format!("synopticon:{session}:zone_enter"));
    assert_eq!(messages[1].0, format!("synopticon:{session}:zone_exit"));
    assert_eq!(messages[9].1["data"], json!({"i": 9}));
}

#[tokio::test]
async fn streams_are_capped_approximately() {
    let app = spawn_app().await;
    let session = unique("rstream");
    let key = format!("synopticon:{session}:events");
    app.create_session(json!({"id": session, "enabledDistributors": ["redis"], "distributors": {"redis": {
        "url": SHARED, "publish": false, "streams": {"*": "synopticon:{session}:events"}, "maxLen": 100}}}))
        .await;

    let mut published = 0;
    while published < 1000 {
        app.publish(&session, batch("track_started", 250)).await;
        published += 250;
    }
    wait_until("1000 XADDs", DEADLINE, || async {
        (app.distributor(&session, "redis").await["sent"] == 1000).then_some(())
    })
    .await;
    let mut conn = redis::Client::open(SHARED)
        .unwrap()
        .get_connection()
        .unwrap();
    let len: u64 = conn.xlen(&key).unwrap();
    let last: redis::streams::StreamRangeReply = conn.xrevrange_count(&key, "+", "-", 1).unwrap();
    let _: () = conn.del(&key).unwrap();

    assert!(
        (100..1000).contains(&len),
        "MAXLEN ~ 100 kept {len} entries"
    );
    let entry = &last.ids[0];
    assert_eq!(
        entry.get::<String>("event").as_deref(),
        Some("track_started")
    );
    assert_eq!(entry.get::<u64>("seq"), Some(1000));
    let json: Value = serde_json::from_str(&entry.get::<String>("json").unwrap()).unwrap();
    assert_eq!(
        (json["seq"].as_u64(), json["session"].as_str()),
        (Some(1000), Some(session.as_str()))
    );
}

struct PrivateRedis(Child);

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn an_absent_server_opens_the_breaker_without_slowing_websocket_and_its_arrival_closes_it() {
    let app = spawn_app().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    app.create_session(json!({"id": "r-out", "enabledDistributors": ["websocket", "redis"], "distributors": {"redis": {
        "url": url, "breakerThreshold": 2, "breakerCooldownMs": 300, "reconnectDelayMs": 100,
        "publish": false, "stream": "synopticon:r-out"}}}))
        .await;
    let mut ws = app.ws("r-out", "").await;

    app.publish("r-out", batch("while_down", 8)).await;
    let live = ws.events(8).await;
    wait_until("the breaker to open", DEADLINE, || async {
        (app.distributor("r-out", "redis").await["breaker"] == "open").then_some(())
    })
    .await;
    let _server = private_redis_on(port);
    app.publish("r-out", batch("after", 1)).await;
    let recovered = wait_until(
        "the breaker to close and the queue to drain",
        DEADLINE,
        || async {
            let d = app.distributor("r-out", "redis").await;
            (d["breaker"] == "closed" && d["queued"] == 0 && d["sent"].as_u64() >= Some(1))
                .then_some(d)
        },
    )
    .await;

    assert_eq!(live.len(), 8);
    let c = |k: &str| recovered[k].as_u64().unwrap();
    assert_eq!(
        c("sent") + c("failed") + c("dropped"),
        9,
        "every event accounted for: {recovered}"
    );
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let len: u64 = conn.xlen("synopticon:r-out").unwrap();
    assert_eq!(
        len,
        c("sent"),
        "the stream holds exactly what was counted as sent"
    );
}

#[tokio::test]
async fn redis_settings_are_validated_at_once() {
    let app = spawn_app().await;

    let answer = app
        .post(
            "/api/v1/sessions/validate",
            &json!({"enabledDistributors": ["redis"], "distributors": {"redis": {
            "url": "http://x", "publish": false, "maxLen": 0}}}),
        )
        .await;

    let errors: Vec<String> = serde_json::from_value(answer.body["errors"].clone()).unwrap();
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(errors
        .iter()
        .any(|e| e.contains("must start with redis://")));
    assert!(errors.iter().any(|e| e.contains("nothing to do")));
}

#[tokio::test]
async fn rediss_with_a_password_and_the_test_ca_delivers_and_a_wrong_password_is_reported() {
    // Arrange: a private Redis that speaks only TLS and wants a password.
    let dir = std::env::temp_dir().join(format!("synopticon-rediss-{}", uuid::Uuid::new_v4()));
    let (ca, cert, key) = test_certificates(&dir);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _redis = PrivateRedis(
        Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .arg("--tls-cert-file")
            .arg(&cert)
            .arg("--tls-key-file")
            .arg(&key)
            .args([
                "--tls-auth-clients",
                "no",
                "--requirepass",
                "lab-secret",
                "--save",
                "",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server"),
    );
    wait_until("the TLS port", DEADLINE, || async {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .map(|_| ())
    })
    .await;
    let app = spawn_app().await;
    let session = unique("rss");
    let url = format!("rediss://:lab-secret@127.0.0.1:{port}");
    app.create_session(json!({
        "id": session,
        "enabledDistributors": ["redis"],
        "distributors": {"redis": {"url": url, "caFile": ca.display().to_string(),
                                   "publish": false, "stream": "lab:{session}"}},
    }))
    .await;

    // Act.
    app.publish(&session, batch("face_detected", 3)).await;

    // Assert: the entries are there, read back over TLS with the same CA and password.
    let client = redis::Client::build_with_tls(
        url.as_str(),
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(std::fs::read(&ca).unwrap()),
        },
    )
    .expect("client");
    let mut conn = client.get_connection().expect("TLS connection");
    let stream = format!("lab:{session}");
    let len = wait_until("3 entries", DEADLINE, || {
        let len: u64 = conn.xlen(&stream).unwrap_or(0);
        async move { (len == 3).then_some(len) }
    })
    .await;
    assert_eq!(len, 3);
    let redis_status = app.distributor(&session, "redis").await;
    assert_eq!(redis_status["sent"], 3, "{redis_status}");
    // The password never shows in the status.
    assert!(!app
        .status(&session)
        .await
        .to_string()
        .contains("lab-secret"));

    // A wrong password: the failure names the cause, nothing is counted as sent.
    let wrong = unique("rsw");
    app.create_session(json!({
        "id": wrong,
        "enabledDistributors": ["redis"],
        "distributors": {"redis": {"url": format!("rediss://:nope@127.0.0.1:{port}"),
                                   "caFile": ca.display().to_string(), "reconnectDelayMs": 100}},
    }))
    .await;
    app.publish(&wrong, batch("face_detected", 1)).await;
    let failed = wait_until("the failure", DEADLINE, || async {
        let d = app.distributor(&wrong, "redis").await;
        (d["failed"].as_u64() >= Some(1)).then_some(d)
    })
    .await;
    let error = failed["last_error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        error.contains("wrongpass") || error.contains("password") || error.contains("auth"),
        "{failed}"
    );
    assert_eq!(failed["sent"], 0);
    let _ = std::fs::remove_dir_all(dir);
}

/// A private redis-server on a free port, and its URL.
fn private_redis() -> (PrivateRedis, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    (private_redis_on(port), format!("redis://127.0.0.1:{port}"))
}

/// A private redis-server on `port`, answering once this returns.
fn private_redis_on(port: u16) -> PrivateRedis {
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server is installed (make test installs it)");
    let deadline = std::time::Instant::now() + DEADLINE;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "redis-server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    PrivateRedis(child)
}

fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

#[tokio::test]
async fn a_frozen_server_opens_the_breaker_and_timed_out_commands_count_as_unconfirmed() {
    let app = spawn_app().await;
    let (server, url) = private_redis();
    app.create_session(json!({"id": "r-frozen", "enabledDistributors": ["redis"],
        "distributors": {"redis": {"url": url, "publish": false, "stream": "synopticon:r-frozen",
            "commandTimeoutMs": 500, "stallTimeoutMs": 800, "maxInFlight": 4,
            "breakerThreshold": 1000, "breakerCooldownMs": 300}}}))
        .await;
    app.publish("r-frozen", batch("before", 3)).await;
    wait_until("3 sent", DEADLINE, || async {
        (app.distributor("r-frozen", "redis").await["sent"] == 3).then_some(())
    })
    .await;

    signal(&server.0, "-STOP");
    app.publish("r-frozen", batch("during", 10)).await;
    let frozen = wait_until("timeouts and the watchdog", DEADLINE, || async {
        let d = app.distributor("r-frozen", "redis").await;
        (d["unconfirmed"].as_u64() >= Some(1) && d["stalls"].as_u64() >= Some(1)).then_some(d)
    })
    .await;
    signal(&server.0, "-CONT");
    let settled = wait_until("every event settled", DEADLINE, || async {
        let d = app.distributor("r-frozen", "redis").await;
        let c = |k: &str| d[k].as_u64().unwrap_or_default();
        (d["breaker"] == "closed"
            && c("sent") + c("unconfirmed") + c("failed") + c("dropped") == c("routed"))
        .then_some(d)
    })
    .await;
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let len: u64 = conn.xlen("synopticon:r-frozen").unwrap();

    assert_eq!(frozen["breaker"], "open", "{frozen}");
    let c = |k: &str| settled[k].as_u64().unwrap();
    assert_eq!(c("routed"), 13);
    assert_eq!(c("failed") + c("dropped"), 0, "{settled}");
    // Redis ran the commands that timed out once it woke: the stream matches the books.
    assert_eq!(len, c("sent") + c("unconfirmed"), "{settled}");
}
