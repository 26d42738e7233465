//! Bad input never panics the server or earns a 5xx: a corpus of malformed bodies and
//! property-based JSON (proptest) against every route that takes a body, junk in query
//! strings, and junk over a WebSocket. The server must answer 4xx with a JSON error and
//! keep serving.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use proptest::prelude::*;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;

/// Concrete paths for the table's patterns (fixtures made by `fixtures`).
fn concrete(path: &str) -> String {
    path.replace("/sessions/{id}", "/sessions/s1")
        .replace("/sources/{id}", "/sources/src1")
        .replace("{kind}", "websocket")
        .replace("{name}", "fuzzed")
        .replace("{token}", "fuzz-target")
}

async fn fixtures(app: &TestApp) {
    let _ = app
        .post(
            "/api/v1/sessions",
            &json!({"id": "s1", "enabledDistributors": ["websocket"]}),
        )
        .await;
    let _ = app
        .put("/api/v1/sessions/s1/distributors/websocket", &json!({}))
        .await;
    let _ = app
        .post(
            "/api/v1/sources",
            &json!({"id": "src1", "kind": "external"}),
        )
        .await;
    let _ = app
        .post(
            "/api/v1/tokens",
            &json!({"id": "fuzz-target", "role": "viewer"}),
        )
        .await;
}

/// Routes that take a body: (method, concrete path).
fn targets() -> Vec<(reqwest::Method, String)> {
    let mut settings = test_settings();
    // Fault injection is a deliberate panic; it has its own tests.
    settings.server.debug_endpoints = false;
    synopticon::routes::table(&settings)
        .into_iter()
        .filter(|r| matches!(r.method.as_str(), "POST" | "PUT" | "PATCH"))
        .map(|r| {
            (
                reqwest::Method::from_bytes(r.method.as_bytes()).expect("method"),
                concrete(r.path),
            )
        })
        .collect()
}

/// Bodies that have broken parsers elsewhere.
fn corpus() -> Vec<Vec<u8>> {
    let mut bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"{".to_vec(),
        b"}".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"[{}]".to_vec(),
        b"\"just a string\"".to_vec(),
        b"1e400".to_vec(),
        b"-0".to_vec(),
        b"123456789012345678901234567890123456789".to_vec(),
        b"{\"id\": 1e400}".to_vec(),
        b"{\"id\": \"\\ud800\"}".to_vec(),
        b"{\"id\": \"a\", \"id\": \"b\"}".to_vec(),
        b"\xef\xbb\xbf{}".to_vec(),
        vec![0xff, 0xfe, 0xfd, b'{', b'}'],
        b"{\"event\": \"\xff\xfe\"}".to_vec(),
        b"NaN".to_vec(),
        b"{\"fps\": 1e308, \"id\": \"x\", \"kind\": \"synthetic\"}".to_vec(),
        b"{\"frame\": {\"width\": 18446744073709551616, \"height\": -1}, \"detections\": []}"
            .to_vec(),
        br#"{"role": "admin", "expiresInSecs": 18446744073709551615}"#.to_vec(),
        br#"{"event": "x", "ts": "9999-99-99T99:99:99Z"}"#.to_vec(),
        br#"{"redact": {"data.a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r": "hash"}}"#.to_vec(),
        br#"{"distributors": {"udp": {"targets": ["999.1.1.1:99999"]}}, "enabledDistributors": ["udp"]}"#
            .to_vec(),
    ];
    bodies.push("[".repeat(100_000).into_bytes());
    bodies.push(format!("{}1{}", "{\"a\":".repeat(5_000), "}".repeat(5_000)).into_bytes());
    bodies.push(format!("{{\"id\": \"{}\"}}", "x".repeat(900_000)).into_bytes());
    bodies.push(format!("[{}]", vec!["{\"event\":\"e\"}"; 20_000].join(",")).into_bytes());
    bodies.push(vec![b'a'; 2 << 20]);
    bodies
}

/// The embedded default's `server.max_body_bytes`.
const MAX_BODY: usize = 1 << 20;

async fn post_raw(app: &TestApp, method: &reqwest::Method, path: &str, body: Vec<u8>) -> u16 {
    let size = body.len();
    match app
        .request(method.clone(), path)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
    {
        Ok(r) => r.status().as_u16(),
        // The server may close the connection on a body over the limit before reading it;
        // for any other body a dropped connection is a failure (a panicking handler).
        Err(e) if size > MAX_BODY && (e.is_request() || e.is_body()) => 413,
        Err(e) => panic!("{method} {path} with a {size}-byte body: no answer: {e}"),
    }
}

#[tokio::test]
async fn malformed_bodies_get_4xx_on_every_route_and_the_server_carries_on() {
    let app = spawn_app().await;
    let mut failures = Vec::new();
    for (method, path) in targets() {
        for body in corpus() {
            fixtures(&app).await;
            let shown = String::from_utf8_lossy(&body[..body.len().min(60)]).into_owned();
            let status = post_raw(&app, &method, &path, body).await;
            if !(400..500).contains(&status) && !(200..300).contains(&status) {
                failures.push(format!("{method} {path} with {shown:?}: {status}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(app.get("/api/health").await.status, 200);
}

#[tokio::test]
async fn junk_in_query_strings_and_paths_is_a_4xx() {
    let app = spawn_app().await;
    fixtures(&app).await;
    for path in [
        "/api/v1/sessions/s1/sse?lastEventId=-1",
        "/api/v1/sessions/s1/sse?lastEventId=99999999999999999999999",
        "/api/v1/sessions/s1/sse?events=%FF%FE",
        "/api/v1/sessions/s1/sse?events=a%20b",
        "/api/v1/sessions/%FF",
        "/api/v1/sessions/..%2F..%2Fetc",
        "/api/v1/templates/%00",
        "/api/v1/sources/%E2%80%AE",
    ] {
        let status = app.get(path).await.status;
        assert!((400..500).contains(&status), "{path}: {status}");
    }
    assert_eq!(app.get("/api/health").await.status, 200);
}

/// JSON values of any shape, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
        // Values the server gives meaning to.
        prop_oneof![
            Just(json!("websocket")),
            Just(json!("external")),
            Just(json!("*")),
            Just(json!("admin")),
            Just(json!("face_detected")),
            Just(json!("50%")),
        ],
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    ".{0,12}",
                    Just("id".to_string()),
                    Just("event".to_string()),
                    Just("data".to_string()),
                    Just("kind".to_string()),
                    Just("role".to_string()),
                    Just("enabledDistributors".to_string()),
                    Just("distributors".to_string()),
                    Just("eventRouting".to_string()),
                    Just("lines".to_string()),
                    Just("zones".to_string()),
                    Just("detections".to_string()),
                    Just("frame".to_string()),
                    Just("redact".to_string()),
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn arbitrary_json_on_every_route_never_earns_a_5xx() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let app = runtime.block_on(spawn_app());
    let targets = targets();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(&any_json(), |value| {
        runtime.block_on(async {
            fixtures(&app).await;
            for (method, path) in &targets {
                let status = post_raw(
                    &app,
                    method,
                    path,
                    serde_json::to_vec(&value).expect("json"),
                )
                .await;
                prop_assert!(status < 500, "{method} {path} with {value}: {status}");
            }
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    assert_eq!(runtime.block_on(app.get("/api/health")).status, 200);
}

#[tokio::test]
async fn junk_over_a_websocket_gets_error_frames_and_oversized_frames_close_it() {
    let app = spawn_app_with(|s| s.live.max_frame_bytes = 4096).await;
    app.create_session(json!({"id": "lab"})).await;
    let mut ws = app.ws("lab", "").await;
    for junk in [
        "",
        "{",
        "null",
        "[]",
        "{\"op\": 1}",
        "{\"op\": \"subscribe\"}",
        "{\"op\": \"subscribe\", \"events\": [\"\"]}",
        "{\"op\": \"subscribe\", \"events\": [\"a b\"]}",
        "{\"op\": \"subscribe\", \"events\": \"face_*\"}",
        "{\"op\": \"dance\", \"events\": []}",
        "{\"op\": \"subscribe\", \"events\": [\"x\"], \"extra\": true}",
    ] {
        ws.stream
            .send(Message::Text(junk.into()))
            .await
            .expect("send");
        let reply = ws.next_json().await.expect("a reply");
        assert_eq!(reply["op"], "error", "{junk}: {reply}");
    }
    ws.stream
        .send(Message::Binary(vec![0u8, 159, 146, 150].into()))
        .await
        .expect("send");
    assert_eq!(ws.next_json().await.expect("reply")["op"], "error");
    // Still subscribed to everything and working.
    app.publish("lab", batch("after_junk", 1)).await;
    assert_eq!(ws.next_event().await.expect("event")["event"], "after_junk");

    // A frame over live.max_frame_bytes closes the connection (1009), nothing else.
    let _ = ws
        .stream
        .send(Message::Text("x".repeat(10_000).into()))
        .await;
    let (code, _) = tokio::time::timeout(Duration::from_secs(5), ws.closed())
        .await
        .expect("closed in time");
    assert_eq!(code, 1009, "message too big");
    let mut again = app.ws("lab", "").await;
    app.publish("lab", batch("still_serving", 1)).await;
    assert_eq!(
        again.next_event().await.expect("event")["event"],
        "still_serving"
    );
    let _ = again.stream.next().await;
}
