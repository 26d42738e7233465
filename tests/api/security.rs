//! Authentication and authorization end to end: every route of the router with every kind
//! of caller, live feeds at the handshake, token revocation, rate limits, redaction across
//! every protocol, and the audit trail of the real binary.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use synopticon::auth::tokens::{hash_hex, TokenConfig};
use synopticon::auth::{Access, ResourceScope, Role};
use synopticon::configuration::Settings;
use synopticon::routes::RouteSpec;
use synopticon_actors::inference::{ModelConfig, ModelKind};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::*;
use crate::mqtt::{Subscriber, SHARED_BROKER};
use crate::webhook::Receiver;

const ADMIN: &str = "syn_test-admin-0000000000000000000000000000000000";
const OPERATOR: &str = "syn_test-operator-00000000000000000000000000000000";
const VIEWER: &str = "syn_test-viewer-0000000000000000000000000000000000";
/// An operator that may only see sessions and sources named `scoped-*`, and face events.
const SCOPED: &str = "syn_test-scoped-0000000000000000000000000000000000";

/// Production mode (authentication on) with one token of each role and a scoped one.
fn secure(s: &mut Settings) {
    s.server.mode = synopticon::configuration::Mode::Production;
    let mut scoped = token_config("scoped", "operator", SCOPED);
    scoped.sessions = Some(vec!["scoped-*".into()]);
    scoped.sources = Some(vec!["scoped-*".into()]);
    scoped.events = Some(vec!["face_*".into()]);
    s.auth.tokens = vec![
        token_config("admin", "admin", ADMIN),
        token_config("operator", "operator", OPERATOR),
        token_config("viewer", "viewer", VIEWER),
        scoped,
    ];
    // The route walk makes many requests: limits far above it (a later test lowers them).
    s.rate_limit.requests_per_sec = 100_000.0;
    s.rate_limit.request_burst = 100_000.0;
    s.rate_limit.address_requests_per_sec = 100_000.0;
    s.rate_limit.address_request_burst = 100_000.0;
}

/// A production server with the usual tokens and `extra`.
async fn spawn_with_token(extra: TokenConfig) -> TestApp {
    spawn_app_with(move |s| {
        secure(s);
        s.auth.tokens.push(extra);
    })
    .await
}

/// External sources named `ids`, created by the admin, without per-frame `detections`
/// events (tests here look at track and client events).
async fn add_external_sources(admin: &TestApp, ids: &[&str]) {
    for id in ids {
        let s = admin
            .post(
                "/api/v1/sources",
                &json!({"id": id, "kind": "external", "detections_events": false}),
            )
            .await;
        assert_eq!(s.status, 201, "{}", s.body);
    }
}

/// Who calls, and what each should get.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Caller {
    Nobody,
    BadToken,
    Viewer,
    Operator,
    Admin,
    /// An operator whose scope excludes the fixtures.
    OutOfScope,
}

impl Caller {
    fn token(self) -> Option<&'static str> {
        match self {
            Caller::Nobody => None,
            Caller::BadToken => Some("syn_not-a-token-anyone-was-given-00000000000000"),
            Caller::Viewer => Some(VIEWER),
            Caller::Operator => Some(OPERATOR),
            Caller::Admin => Some(ADMIN),
            Caller::OutOfScope => Some(SCOPED),
        }
    }

    fn role(self) -> Option<Role> {
        match self {
            Caller::Viewer => Some(Role::Viewer),
            Caller::Operator | Caller::OutOfScope => Some(Role::Operator),
            Caller::Admin => Some(Role::Admin),
            Caller::Nobody | Caller::BadToken => None,
        }
    }

    /// The status class the rules promise this caller on `rule`.
    fn expected(self, route: &RouteSpec) -> Expect {
        let needed = match route.rule.access {
            Access::Public => return Expect::Success,
            // metrics_public is off here: /metrics is for viewers.
            Access::Metrics => Role::Viewer,
            Access::Role(r) | Access::Unscoped(r) => r,
            Access::ServerAdmin => Role::Admin,
        };
        let Some(role) = self.role() else {
            return Expect::Status(401);
        };
        if role < needed {
            return Expect::Status(403);
        }
        // Metric labels name every session: a scoped token may not read them.
        if self == Caller::OutOfScope
            && matches!(route.rule.access, Access::Metrics | Access::Unscoped(_))
        {
            return Expect::Status(403);
        }
        if self == Caller::OutOfScope && route.rule.scope != ResourceScope::None {
            return Expect::Status(404);
        }
        // A recording belongs to its session: a token scoped to other sessions does not
        // see it (the walk's recording is of s1).
        if self == Caller::OutOfScope && route.path.starts_with("/api/v1/recordings/{rid}") {
            return Expect::Status(404);
        }
        Expect::Success
    }
}

#[derive(Debug, PartialEq)]
enum Expect {
    Success,
    Status(u16),
}

/// A request body for a route.
enum Body {
    None,
    Json(Value),
    Jpeg,
    Multipart,
    WebSocketUpgrade,
    /// The walk's recording, as a file to import.
    Mcap,
}

/// One request per route of the table, able to succeed for a caller who may make it.
/// Every route of the router must be here: a new route without a sample fails the walk.
fn sample(method: &str, path: &str, n: u32) -> Option<(String, Body)> {
    let p = |s: &str| s.to_string();
    Some(match (method, path) {
        ("GET", "/api/health") => (p(path), Body::None),
        ("GET", "/api/config") | ("GET", "/api/runtime") | ("GET", "/metrics") => {
            (p(path), Body::None)
        }
        ("GET", "/api/v1/templates") => (p(path), Body::None),
        ("GET", "/api/v1/templates/{name}") => (p("/api/v1/templates/walk"), Body::None),
        ("PUT", "/api/v1/templates/{name}") => (
            p("/api/v1/templates/walk"),
            Body::Json(json!({"enabledDistributors": ["websocket"]})),
        ),
        // The fixtures put it back before every request.
        ("DELETE", "/api/v1/templates/{name}") => (p("/api/v1/templates/walk"), Body::None),
        ("POST", "/api/v1/sessions/validate") => {
            (p(path), Body::Json(json!({"id": "scoped-validate"})))
        }
        ("GET", "/api/v1/sessions") => (p(path), Body::None),
        ("POST", "/api/v1/sessions") => (p(path), Body::Json(json!({"id": format!("scoped-{n}")}))),
        ("GET", "/api/v1/sessions/{id}") | ("DELETE", "/api/v1/sessions/{id}") => {
            (p("/api/v1/sessions/s1"), Body::None)
        }
        ("PUT", "/api/v1/sessions/{id}/distributors/{kind}") => (
            p("/api/v1/sessions/s1/distributors/websocket"),
            Body::Json(json!({})),
        ),
        ("DELETE", "/api/v1/sessions/{id}/distributors/{kind}") => {
            (p("/api/v1/sessions/s1/distributors/sse"), Body::None)
        }
        ("PUT", "/api/v1/sessions/{id}/routing") => (
            p("/api/v1/sessions/s1/routing"),
            Body::Json(json!({"*": ["websocket"]})),
        ),
        ("POST", "/api/v1/sessions/{id}/events") => (
            p("/api/v1/sessions/s1/events"),
            Body::Json(json!({"event": "walk", "data": {}})),
        ),
        ("PUT", "/api/v1/sessions/{id}/sources") => (
            p("/api/v1/sessions/s1/sources"),
            Body::Json(json!(["src1"])),
        ),
        ("GET", "/api/v1/sessions/{id}/ws") => {
            (p("/api/v1/sessions/s1/ws"), Body::WebSocketUpgrade)
        }
        ("GET", "/api/v1/sessions/{id}/sse") => (p("/api/v1/sessions/s1/sse"), Body::None),
        ("POST", "/api/v1/detect") => (p(path), Body::Jpeg),
        ("POST", "/api/v1/batch") => (p(path), Body::Multipart),
        ("GET", "/api/pipelines") => (p(path), Body::None),
        ("GET", "/api/v1/sources") => (p(path), Body::None),
        ("POST", "/api/v1/sources") => (
            p(path),
            Body::Json(json!({"id": format!("scoped-src-{n}"), "kind": "external"})),
        ),
        ("GET", "/api/v1/sources/{id}") | ("DELETE", "/api/v1/sources/{id}") => {
            (p("/api/v1/sources/src1"), Body::None)
        }
        ("GET", "/api/v1/sources/{id}/tracks") => (p("/api/v1/sources/src1/tracks"), Body::None),
        ("GET", "/api/v1/sources/{id}/frame.jpg") => {
            (p("/api/v1/sources/src1/frame.jpg"), Body::None)
        }
        ("GET", "/api/v1/whoami") | ("GET", "/api/openapi.json") | ("GET", "/") => {
            (p(path), Body::None)
        }
        ("GET", "/assets/{name}") => (p("/assets/app.js"), Body::None),
        ("GET", "/api/v1/rules/captures") => (p(path), Body::None),
        ("GET", "/api/v1/rules/captures/{path:.*}") => (
            p("/api/v1/rules/captures/door/2026-11-27/x.jpg"),
            Body::None,
        ),
        ("PATCH", "/api/v1/sources/{id}") => (
            p("/api/v1/sources/src1"),
            Body::Json(json!({"confidence": 0.5})),
        ),
        ("POST", "/api/v1/sources/{id}/detections") => (
            p("/api/v1/sources/src1/detections"),
            Body::Json(json!({"frame": {"width": 640, "height": 480}, "detections": []})),
        ),
        ("GET", "/api/v1/devices") => (p(path), Body::None),
        ("POST", "/api/v1/devices") => (
            p(path),
            Body::Json(json!({"serial": format!("WALK-{n}"), "kind": "sensor"})),
        ),
        ("GET", "/api/v1/devices/{id}") | ("DELETE", "/api/v1/devices/{id}") => {
            (p("/api/v1/devices/dev1"), Body::None)
        }
        ("GET", "/api/v1/devices/sn/{serial}") | ("DELETE", "/api/v1/devices/sn/{serial}") => {
            (p("/api/v1/devices/sn/WALK-FIX"), Body::None)
        }
        ("PATCH", "/api/v1/devices/{id}") => (
            p("/api/v1/devices/dev1"),
            Body::Json(json!({"name": format!("walk-{n}")})),
        ),
        ("PATCH", "/api/v1/devices/sn/{serial}") => (
            p("/api/v1/devices/sn/WALK-FIX"),
            Body::Json(json!({"name": format!("walk-{n}")})),
        ),
        ("PUT", "/api/v1/sessions/{id}/devices") => (
            p("/api/v1/sessions/s1/devices"),
            Body::Json(json!(["WALK-*"])),
        ),
        ("GET", "/api/v1/rules") => (p(path), Body::None),
        ("POST", "/api/v1/rules/test") => (
            p(path),
            Body::Json(json!({"event": "line_cross", "data": {"line_id": "door"}})),
        ),
        ("GET", "/api/v1/rules/{name}") | ("DELETE", "/api/v1/rules/{name}") => {
            (p("/api/v1/rules/walk-rule"), Body::None)
        }
        ("PUT", "/api/v1/rules/{name}") => (
            p("/api/v1/rules/walk-rule"),
            Body::Json(json!({"match": {"events": ["line_cross"]}, "actions": ["json_log"]})),
        ),
        ("GET", "/api/v1/inputs") => (p(path), Body::None),
        ("GET", "/api/v1/inputs/{name}") | ("DELETE", "/api/v1/inputs/{name}") => {
            (p("/api/v1/inputs/walk-input"), Body::None)
        }
        ("PUT", "/api/v1/inputs/{name}") => (
            p("/api/v1/inputs/walk-input"),
            Body::Json(
                json!({"kind": "redis_stream", "url": "redis://127.0.0.1:6379",
                "stream": "synopticon-walk"}),
            ),
        ),
        ("GET", "/api/v1/tokens") => (p(path), Body::None),
        ("POST", "/api/v1/tokens") => (p(path), Body::Json(json!({"role": "viewer"}))),
        ("GET", "/api/v1/tokens/{token}") | ("DELETE", "/api/v1/tokens/{token}") => {
            (p("/api/v1/tokens/walk-target"), Body::None)
        }
        ("PATCH", "/api/v1/tokens/{token}") => (
            p("/api/v1/tokens/walk-target"),
            Body::Json(json!({"description": "walked"})),
        ),
        ("GET", "/api/v1/sessions/{id}/recordings") => {
            (p("/api/v1/sessions/s1/recordings"), Body::None)
        }
        ("POST", "/api/v1/sessions/{id}/recordings") => (
            p("/api/v1/sessions/s1/recordings"),
            Body::Json(json!({"events": ["walk"]})),
        ),
        ("GET", "/api/v1/recordings") => (p(path), Body::None),
        ("POST", "/api/v1/recordings") => (p(path), Body::Mcap),
        ("GET", "/api/v1/recordings/{rid}") | ("DELETE", "/api/v1/recordings/{rid}") => (
            format!("/api/v1/recordings/{}", walk_recording()),
            Body::None,
        ),
        ("POST", "/api/v1/recordings/{rid}/stop") => (
            format!("/api/v1/recordings/{}/stop", walk_recording()),
            Body::None,
        ),
        ("GET", "/api/v1/recordings/{rid}/download") => (
            format!("/api/v1/recordings/{}/download", walk_recording()),
            Body::None,
        ),
        ("GET", "/api/v1/sessions/{id}/replay") | ("DELETE", "/api/v1/sessions/{id}/replay") => {
            (p("/api/v1/sessions/s1/replay"), Body::None)
        }
        ("POST", "/api/v1/sessions/{id}/replay") => (
            p("/api/v1/sessions/s1/replay"),
            Body::Json(json!({"recording": walk_recording(), "rate": 0})),
        ),
        ("POST", "/api/v1/sessions/{id}/replay/{action}") => {
            (p("/api/v1/sessions/s1/replay/pause"), Body::None)
        }
        ("POST", "/api/v1/debug/sessions/{id}/distributors/{kind}/panic") => (
            p("/api/v1/debug/sessions/s1/distributors/websocket/panic"),
            Body::None,
        ),
        _ => return None,
    })
}

/// What the security model (docs/SECURITY.md) says a route needs, written from the roles'
/// definitions rather than read from the router: admin for tokens, configuration (server
/// and templates) and fault injection; viewer for reading and live feeds; operator for
/// every other change.
fn specified(method: &str, path: &str) -> (Access, ResourceScope) {
    let access = if path == "/api/health" || path == "/" || path == "/assets/{name}" {
        // The dashboard's page is public; what it shows needs a token.
        Access::Public
    } else if path == "/metrics" {
        Access::Metrics
    } else if path.starts_with("/api/v1/debug")
        || path == "/api/config"
        || path == "/api/runtime"
        || (path.starts_with("/api/v1/templates") && method != "GET")
        || (path.starts_with("/api/v1/inputs") && method != "GET")
        || (path == "/api/v1/rules/{name}" && method != "GET")
    {
        Access::ServerAdmin
    } else if path.starts_with("/api/v1/tokens") {
        Access::ADMIN
    } else if path == "/api/v1/rules/test" || (path == "/api/v1/recordings" && method == "POST") {
        // A rule test spans every source; an imported file names its own session.
        Access::Unscoped(Role::Operator)
    } else if path.starts_with("/api/v1/rules") || path.starts_with("/api/v1/inputs") {
        Access::Unscoped(Role::Viewer)
    } else if method == "GET" {
        Access::VIEWER
    } else {
        Access::OPERATOR
    };
    let scope = if path.starts_with("/api/v1/sessions/{id}")
        || path.starts_with("/api/v1/debug/sessions/{id}")
    {
        ResourceScope::Session
    } else if path.starts_with("/api/v1/sources/{id}") {
        ResourceScope::Source
    } else {
        ResourceScope::None
    };
    (access, scope)
}

/// An 8×8 black JPEG, base64.
fn tiny_jpeg() -> String {
    use base64::Engine as _;
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new(&mut jpeg)
        .encode_image(&image::RgbImage::new(8, 8))
        .expect("a JPEG");
    base64::engine::general_purpose::STANDARD.encode(jpeg)
}

/// The walk's finished recording of s1 (made again by the fixtures once deleted).
static WALK_RECORDING: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

fn walk_recording() -> String {
    WALK_RECORDING.lock().map(|r| r.clone()).unwrap_or_default()
}

/// Puts back what a successful DELETE (or a panic) took away.
async fn fixtures(admin: &TestApp) {
    let _ = admin
        .post(
            "/api/v1/sessions",
            &json!({"id": "s1", "enabledDistributors": ["websocket", "sse"]}),
        )
        .await;
    let _ = admin
        .put("/api/v1/sessions/s1/distributors/sse", &json!({}))
        .await;
    let _ = admin
        .post(
            "/api/v1/sources",
            &json!({"id": "src1", "kind": "external"}),
        )
        .await;
    // A frame for the snapshot route.
    let _ = admin
        .post(
            "/api/v1/sources/src1/detections",
            &json!({"version": 1, "frame": {"width": 8, "height": 8}, "detections": [],
                "frame_data": {"format": "jpeg", "base64": tiny_jpeg()}}),
        )
        .await;
    // A finished recording of s1, and a replay of it attached to s1.
    let rid = walk_recording();
    if rid.is_empty() || admin.get(&format!("/api/v1/recordings/{rid}")).await.status != 200 {
        let started = admin
            .post("/api/v1/sessions/s1/recordings", &json!({}))
            .await;
        let rid = started.body["id"].as_str().unwrap_or_default().to_string();
        admin
            .publish("s1", json!([{"event": "walk", "data": {}}]))
            .await;
        let _ = admin
            .post(&format!("/api/v1/recordings/{rid}/stop"), &json!({}))
            .await;
        if let Ok(mut kept) = WALK_RECORDING.lock() {
            *kept = rid;
        }
    }
    if admin.get("/api/v1/sessions/s1/replay").await.status != 200 {
        let _ = admin
            .post(
                "/api/v1/sessions/s1/replay",
                &json!({"recording": walk_recording(), "rate": 0}),
            )
            .await;
    }
    let _ = admin
        .put(
            "/api/v1/templates/walk",
            &json!({"enabledDistributors": ["websocket"]}),
        )
        .await;
    let _ = admin
        .post(
            "/api/v1/tokens",
            &json!({"id": "walk-target", "role": "viewer"}),
        )
        .await;
    let _ = admin
        .post(
            "/api/v1/devices",
            &json!({"id": "dev1", "serial": "WALK-FIX"}),
        )
        .await;
    let _ = admin
        .put(
            "/api/v1/rules/walk-rule",
            &json!({"match": {"events": ["line_cross"]}, "actions": ["json_log"]}),
        )
        .await;
    let _ = admin
        .put(
            "/api/v1/inputs/walk-input",
            &json!({"kind": "redis_stream", "url": "redis://127.0.0.1:6379",
                "stream": "synopticon-walk"}),
        )
        .await;
}

async fn send(app: &TestApp, method: &str, path: &str, body: Body) -> reqwest::Response {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = app.request(method, path);
    request = match body {
        Body::None => request,
        Body::Json(v) => request.json(&v),
        Body::Jpeg => request
            .header("content-type", "image/jpeg")
            .body(std::fs::read(asset("images/zidane.jpg")).expect("image")),
        Body::Multipart => {
            let part = reqwest::multipart::Part::bytes(
                std::fs::read(asset("images/bus.jpg")).expect("image"),
            )
            .file_name("bus.jpg")
            .mime_str("image/jpeg")
            .expect("mime");
            request.multipart(reqwest::multipart::Form::new().part("a", part))
        }
        Body::Mcap => {
            let download = format!("/api/v1/recordings/{}/download", walk_recording());
            let bytes = reqwest::Client::new()
                .get(app.url(&download))
                .bearer_auth(ADMIN)
                .send()
                .await
                .expect("download")
                .bytes()
                .await
                .expect("bytes");
            request
                .header("content-type", "application/octet-stream")
                .body(bytes)
        }
        Body::WebSocketUpgrade => request
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    };
    request.send().await.expect("request")
}

/// A captures folder holding one capture, for the captures routes.
fn walk_captures() -> String {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("synopticon-walk-{}", uuid::Uuid::new_v4()));
        let day = dir.join("door/2026-11-27");
        std::fs::create_dir_all(&day).expect("a captures folder");
        use base64::Engine as _;
        let jpeg = base64::engine::general_purpose::STANDARD
            .decode(tiny_jpeg())
            .expect("base64");
        std::fs::write(day.join("x.jpg"), jpeg).expect("a capture");
        dir
    });
    dir.display().to_string()
}

fn with_face_model(s: &mut Settings) {
    secure(s);
    s.rules.captures_dir = walk_captures();
    s.server.debug_endpoints = true;
    s.inference.runtime_path = ort_library();
    s.inference.models = vec![ModelConfig::new(
        "face",
        ModelKind::Centerface,
        asset("models/centerface.onnx"),
    )];
    s.inference.default_model = "face".into();
}

#[tokio::test]
async fn every_route_answers_each_caller_as_its_rule_says() {
    // Arrange: the route table, straight from the router the server runs.
    let mut settings = test_settings();
    with_face_model(&mut settings);
    let table = synopticon::routes::table(&settings);
    assert!(table.len() >= 30, "{} routes", table.len());
    let missing: Vec<String> = table
        .iter()
        .filter(|r| sample(&r.method, r.path, 0).is_none())
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(
        missing.is_empty(),
        "routes without a sample request in this test: {missing:?}"
    );
    let misdeclared: Vec<String> = table
        .iter()
        .filter(|r| (r.rule.access, r.rule.scope) != specified(&r.method, r.path))
        .map(|r| format!("{} {}: {:?}", r.method, r.path, r.rule))
        .collect();
    assert!(
        misdeclared.is_empty(),
        "rules that differ from the model: {misdeclared:?}"
    );
    let app = spawn_app_with(with_face_model).await;
    let admin = app.with_token(ADMIN);
    wait_until("the model", Duration::from_secs(60), || async {
        let body = admin.get("/api/pipelines").await.body;
        (body["models"][0]["state"] == "ready").then_some(())
    })
    .await;

    // Act and assert: every route, every caller.
    let counter = AtomicU32::new(0);
    let mut failures = Vec::new();
    let callers = [
        Caller::Nobody,
        Caller::BadToken,
        Caller::Viewer,
        Caller::Operator,
        Caller::Admin,
        Caller::OutOfScope,
    ];
    for route in &table {
        for caller in callers {
            fixtures(&admin).await;
            let n = counter.fetch_add(1, Ordering::Relaxed);
            let (path, body) = sample(&route.method, route.path, n).expect("sample");
            let with_token = caller.token().map(|t| app.with_token(t));
            let as_caller = with_token.as_ref().unwrap_or(&app);
            let response = send(as_caller, &route.method, &path, body).await;
            let status = response.status().as_u16();
            let expected = caller.expected(route);
            let ok = match expected {
                Expect::Success => (200..300).contains(&status) || status == 101,
                Expect::Status(s) => status == s,
            };
            if status == 401 {
                let challenge = response
                    .headers()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                if !challenge.starts_with("Bearer") {
                    failures.push(format!(
                        "{} {path} as {caller:?}: 401 without WWW-Authenticate: Bearer",
                        route.method
                    ));
                }
            }
            if !ok {
                let text = if status == 101 {
                    String::new()
                } else {
                    response.text().await.unwrap_or_default()
                };
                failures.push(format!(
                    "{} {path} as {caller:?}: expected {expected:?}, got {status} {text:.200}",
                    route.method
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // An unknown path tells a caller without a token nothing.
    let unknown = app.get("/api/v1/nothing-here").await;
    assert_eq!(unknown.status, 401);
    assert_eq!(admin.get("/api/v1/nothing-here").await.status, 404);
}

#[tokio::test]
async fn scoped_tokens_see_only_their_sessions_and_sources() {
    let app = spawn_app_with(secure).await;
    let admin = app.with_token(ADMIN);
    let scoped = app.with_token(SCOPED);
    for id in ["scoped-a", "lab"] {
        admin.create_session(json!({"id": id})).await;
        let s = admin
            .post(
                "/api/v1/sources",
                &json!({"id": format!("{id}-cam"), "kind": "external"}),
            )
            .await;
        assert_eq!(s.status, 201, "{}", s.body);
    }

    let sessions = scoped.get("/api/v1/sessions").await.body;
    let ids: Vec<&Value> = sessions["sessions"]
        .as_array()
        .map(|a| a.iter().map(|s| &s["id"]).collect())
        .unwrap_or_default();
    assert_eq!(ids, [&json!("scoped-a")]);
    let sources = scoped.get("/api/v1/sources").await.body;
    assert_eq!(
        sources["sources"].as_array().map(Vec::len),
        Some(1),
        "{sources}"
    );
    assert_eq!(sources["sources"][0]["id"], "scoped-a-cam");

    // Outside its scope, a resource that exists looks exactly like one that does not.
    let hidden = scoped.get("/api/v1/sessions/lab").await;
    let absent = scoped.get("/api/v1/sessions/scoped-none").await;
    assert_eq!((hidden.status, absent.status), (404, 404));
    assert_eq!(hidden.body["error"], "session \"lab\" not found");
    assert_eq!(
        scoped
            .post("/api/v1/sessions", &json!({"id": "mine"}))
            .await
            .status,
        403,
        "a new session must be named within the scope"
    );
    let listen = scoped
        .put("/api/v1/sessions/scoped-a/sources", &json!(["lab-cam"]))
        .await;
    assert_eq!(listen.status, 404, "{}", listen.body);

    // Health without a token: statuses only, no ids.
    let health = app.get("/api/health").await;
    assert_eq!(health.status, 200);
    assert!(
        !health.body.to_string().contains("scoped-a-cam"),
        "{}",
        health.body
    );
    let full = admin.get("/api/health").await.body;
    assert!(full.to_string().contains("scoped-a-cam"), "{full}");
}

async fn ws_request(
    app: &TestApp,
    session: &str,
    query: &str,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    format!(
        "ws://127.0.0.1:{}/api/v1/sessions/{session}/ws{query}",
        app.port
    )
    .into_client_request()
    .expect("request")
}

#[tokio::test]
async fn live_feeds_authenticate_at_the_handshake_and_revoked_tokens_are_cut_off() {
    let app = spawn_app_with(secure).await;
    let admin = app.with_token(ADMIN);
    admin.create_session(json!({"id": "lab"})).await;

    // No token: both feeds refuse before anything is sent.
    let refused = tokio_tungstenite::connect_async(ws_request(&app, "lab", "").await).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("expected a 401 handshake, got {other:?}"),
    }
    let sse = app.get("/api/v1/sessions/lab/sse").await;
    assert_eq!(sse.status, 401);

    // A browser's ways: the token as a query parameter, or as a subprotocol.
    let (mut by_query, _) = tokio_tungstenite::connect_async(
        ws_request(&app, "lab", &format!("?access_token={VIEWER}")).await,
    )
    .await
    .expect("token in the query");
    let mut request = ws_request(&app, "lab", "").await;
    request.headers_mut().insert(
        "sec-websocket-protocol",
        format!("synopticon, bearer.{VIEWER}")
            .parse()
            .expect("header"),
    );
    let (mut by_protocol, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("token as a subprotocol");
    assert_eq!(response.headers()["sec-websocket-protocol"], "synopticon");
    for ws in [&mut by_query, &mut by_protocol] {
        let hello = ws.next().await.expect("frame").expect("ok");
        assert!(hello.to_text().unwrap_or_default().contains("\"hello\""));
    }
    let by_query_sse = app
        .client
        .get(app.url(&format!("/api/v1/sessions/lab/sse?access_token={VIEWER}")))
        .send()
        .await
        .expect("sse");
    assert_eq!(by_query_sse.status(), 200);

    // A token made over REST, then revoked: its WebSocket and SSE feeds close at once.
    let made = admin
        .post("/api/v1/tokens", &json!({"id": "kiosk", "role": "viewer"}))
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let secret = made.body["token"]
        .as_str()
        .expect("secret shown once")
        .to_string();
    let listed = admin.get("/api/v1/tokens").await.body.to_string();
    assert!(!listed.contains(&secret), "the secret is never listed");
    let kiosk = app.with_token(&secret);
    let mut ws = kiosk.ws("lab", "").await;
    let mut sse = kiosk.sse("lab", "", None).await;
    admin.publish("lab", batch("before", 1)).await;
    assert_eq!(ws.events(1).await.len(), 1);
    assert_eq!(sse.events(1).await.len(), 1);
    assert_eq!(admin.delete("/api/v1/tokens/kiosk").await.status, 204);
    assert_eq!(ws.closed().await, (1008, "token_revoked".to_string()));
    assert!(sse.next().await.is_none(), "the SSE stream ends");
    assert_eq!(kiosk.get("/api/v1/sessions").await.status, 401);
    for kind in ["websocket", "sse"] {
        let series = format!(
            r#"synopticon_live_disconnects_total{{session="lab",distributor="{kind}",reason="token_revoked"}} 1"#
        );
        wait_until("the revocation counted", DEADLINE, || async {
            admin.metrics().await.contains(&series).then_some(())
        })
        .await;
    }

    // Re-scoping closes too.
    let made = admin
        .post("/api/v1/tokens", &json!({"id": "wall", "role": "viewer"}))
        .await;
    let wall = app.with_token(made.body["token"].as_str().unwrap_or_default());
    let mut ws = wall.ws("lab", "").await;
    let patched = admin
        .patch("/api/v1/tokens/wall", &json!({"sessions": ["other-*"]}))
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(ws.closed().await.0, 1008);
    assert_eq!(wall.get("/api/v1/sessions/lab").await.status, 404);
}

#[tokio::test]
async fn a_token_scoped_to_some_events_cannot_subscribe_to_others() {
    let app = spawn_app_with(secure).await;
    let admin = app.with_token(ADMIN);
    admin.create_session(json!({"id": "scoped-lab"})).await;
    let scoped = app.with_token(SCOPED);

    // Asking for events outside the scope at the handshake is refused (403).
    let mut request = ws_request(&app, "scoped-lab", "?events=track_*").await;
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {SCOPED}").parse().expect("header"),
    );
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("expected 403, got {other:?}"),
    }

    let mut ws = scoped.ws("scoped-lab", "").await;
    ws.send(json!({"op": "subscribe", "events": ["track_*", "face_detected"]}))
        .await;
    let reply = ws.next_json().await.expect("reply");
    assert_eq!(reply["op"], "error", "{reply}");
    assert!(reply["error"]
        .as_str()
        .unwrap_or_default()
        .contains("track_*"));
    ws.send(json!({"op": "subscribe", "events": ["*"]})).await;
    assert_eq!(ws.next_json().await.expect("reply")["op"], "error");
    admin
        .publish(
            "scoped-lab",
            json!([{"event": "track_started"}, {"event": "face_detected"}, {"event": "line_cross"}]),
        )
        .await;
    let got = ws.next_event().await.expect("an event");
    assert_eq!(got["event"], "face_detected");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), ws.next_event())
            .await
            .is_err(),
        "nothing outside face_* arrives"
    );
}

/// Two frames of one person, enough for a track to start.
fn person_seen_twice(source: &str) -> [Value; 2] {
    [0, 1].map(|n| {
        json!({"source": {"camera_id": source}, "frame": {"number": n, "width": 640, "height": 480},
               "detections": [{"class_id": 0, "class_name": "person", "confidence": 0.9,
                               "bbox": {"x1": 100 + n, "y1": 100, "x2": 180 + n, "y2": 300}}]})
    })
}

#[tokio::test]
async fn a_feed_opened_with_a_source_scoped_token_carries_only_those_sources_events() {
    const CAM_VIEWER: &str = "syn_test-cam-viewer-000000000000000000000000000000";
    let app = spawn_with_token(TokenConfig {
        sources: Some(vec!["scoped-*".into()]),
        ..token_config("cam-viewer", "viewer", CAM_VIEWER)
    })
    .await;
    let admin = app.with_token(ADMIN);
    add_external_sources(&admin, &["scoped-cam", "other-cam"]).await;
    admin
        .create_session(
            json!({"id": "lab", "enabledDistributors": ["websocket", "sse"],
                               "sources": ["scoped-cam", "other-cam"]}),
        )
        .await;
    let viewer = app.with_token(CAM_VIEWER);
    let mut everything = admin.ws("lab", "").await;
    let mut ws = viewer.ws("lab", "").await;
    let mut sse = viewer.sse("lab", "", None).await;

    // Widening the subscription does not widen the source scope.
    ws.send(json!({"op": "subscribe", "events": ["*"]})).await;
    assert_eq!(ws.next_json().await.expect("ack")["op"], "subscribed");

    for source in ["other-cam", "scoped-cam"] {
        for message in person_seen_twice(source) {
            let r = admin
                .post(&format!("/api/v1/sources/{source}/detections"), &message)
                .await;
            assert_eq!(r.status, 202, "{}", r.body);
        }
    }
    let seen: Vec<Value> = everything
        .events(2)
        .await
        .iter()
        .map(|e| e["data"]["source"].clone())
        .collect();
    assert_eq!(seen, [json!("other-cam"), json!("scoped-cam")]);
    admin
        .publish(
            "lab",
            json!({"event": "note", "data": {"text": "posted by a client"}}),
        )
        .await;

    let got: Vec<(Value, Value)> = ws
        .events(2)
        .await
        .iter()
        .map(|e| (e["event"].clone(), e["data"]["source"].clone()))
        .collect();
    assert_eq!(
        got,
        [
            (json!("track_started"), json!("scoped-cam")),
            (json!("note"), Value::Null)
        ],
        "other-cam's track never reaches the scoped feed"
    );
    let over_sse: Vec<String> = sse.events(2).await.iter().map(|e| e.data.clone()).collect();
    assert!(over_sse[0].contains("\"scoped-cam\""), "{over_sse:?}");
    assert!(over_sse[1].contains("\"note\""), "{over_sse:?}");
}

#[tokio::test]
async fn a_source_scoped_operator_cannot_send_other_sources_events_elsewhere() {
    const CAM_OPS: &str = "syn_test-cam-ops-00000000000000000000000000000000";
    let app = spawn_with_token(TokenConfig {
        sources: Some(vec!["scoped-*".into()]),
        ..token_config("cam-ops", "operator", CAM_OPS)
    })
    .await;
    let admin = app.with_token(ADMIN);
    add_external_sources(&admin, &["scoped-cam", "other-cam"]).await;
    admin
        .create_session(json!({"id": "mixed", "sources": ["scoped-cam", "other-cam"]}))
        .await;
    admin
        .create_session(json!({"id": "everything", "sources": ["*"]}))
        .await;
    admin
        .create_session(json!({"id": "mine", "sources": ["scoped-cam"]}))
        .await;
    let ops = app.with_token(CAM_OPS);
    let udp = json!({"targets": ["127.0.0.1:9"]});
    let routing = json!({"face_detected": ["udp"]});

    for session in ["mixed", "everything"] {
        let added = ops
            .put(
                &format!("/api/v1/sessions/{session}/distributors/udp"),
                &udp,
            )
            .await;
        assert_eq!(added.status, 403, "{session}: {}", added.body);
        assert!(
            !added.body.to_string().contains("other-cam"),
            "the refusal names no hidden source: {}",
            added.body
        );
        let routed = ops
            .put(&format!("/api/v1/sessions/{session}/routing"), &routing)
            .await;
        assert_eq!(routed.status, 403, "{session}: {}", routed.body);
    }
    let status = admin.get("/api/v1/sessions/mixed").await.body;
    assert!(
        !status.to_string().contains("127.0.0.1:9"),
        "nothing was added: {status}"
    );
    // A session that hears only its sources is its to route.
    let added = ops
        .put("/api/v1/sessions/mine/distributors/udp", &udp)
        .await;
    assert_eq!(added.status, 200, "{}", added.body);
}

#[tokio::test]
async fn an_event_scoped_operator_gets_live_feeds_only() {
    const FACES: &str = "syn_test-faces-ops-0000000000000000000000000000000";
    let app = spawn_with_token(TokenConfig {
        events: Some(vec!["face_*".into()]),
        ..token_config("faces-ops", "operator", FACES)
    })
    .await;
    let admin = app.with_token(ADMIN);
    let faces = app.with_token(FACES);
    let udp = json!({"targets": ["127.0.0.1:9"]});

    // A session it creates has live feeds only: asking for more (in the body or through
    // a template) is refused, and nothing is left behind.
    for (id, body) in [
        (
            "by-body",
            json!({"id": "by-body", "enabledDistributors": ["websocket", "udp"], "distributors": {"udp": udp}}),
        ),
        (
            "by-template",
            json!({"id": "by-template", "template": "high_throughput"}),
        ),
    ] {
        let r = faces.post("/api/v1/sessions", &body).await;
        assert_eq!(r.status, 403, "{id}: {}", r.body);
        assert_eq!(
            admin.get(&format!("/api/v1/sessions/{id}")).await.status,
            404,
            "{id}"
        );
    }
    let mine = faces
        .post(
            "/api/v1/sessions",
            &json!({"id": "mine", "enabledDistributors": ["websocket"]}),
        )
        .await;
    assert_eq!(mine.status, 201, "{}", mine.body);

    // No output but live feeds, and no routing of a session that has another output.
    let added = faces
        .put("/api/v1/sessions/mine/distributors/udp", &udp)
        .await;
    assert_eq!(added.status, 403, "{}", added.body);
    assert_eq!(
        faces
            .put("/api/v1/sessions/mine/distributors/sse", &json!({}))
            .await
            .status,
        200
    );
    let routing = json!({"*": ["websocket"]});
    assert_eq!(
        faces
            .put("/api/v1/sessions/mine/routing", &routing)
            .await
            .status,
        200
    );
    admin
        .create_session(json!({"id": "outputs", "enabledDistributors": ["websocket", "udp"], "distributors": {"udp": udp}}))
        .await;
    let routed = faces
        .put("/api/v1/sessions/outputs/routing", &routing)
        .await;
    assert_eq!(routed.status, 403, "{}", routed.body);
    let listened = faces
        .put("/api/v1/sessions/outputs/sources", &json!(["*"]))
        .await;
    assert_eq!(listened.status, 403, "{}", listened.body);
}

#[tokio::test]
async fn a_burst_over_the_limit_gets_429_with_retry_after_and_other_tokens_carry_on() {
    let app = spawn_app_with(|s| {
        secure(s);
        s.auth.metrics_public = true;
        s.rate_limit.requests_per_sec = 1.0;
        s.rate_limit.request_burst = 5.0;
        s.rate_limit.events_per_sec = 1.0;
        s.rate_limit.event_burst = 10.0;
    })
    .await;
    let viewer = app.with_token(VIEWER);
    let operator = app.with_token(OPERATOR);
    let before = app.metrics().await;

    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..8 {
        let r = viewer
            .request(reqwest::Method::GET, "/api/v1/sessions")
            .send()
            .await
            .expect("GET");
        if r.status() == 429 {
            retry_after = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
        }
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
    let wait: u64 = retry_after.expect("Retry-After").parse().expect("seconds");
    assert!((1..=2).contains(&wait), "{wait}");
    // Another token is not affected.
    assert_eq!(operator.get("/api/v1/sessions").await.status, 200);

    // Events are limited by count: 10 in a burst, then refused.
    operator.create_session(json!({"id": "lab"})).await;
    operator.publish("lab", batch("e", 8)).await;
    let over = operator
        .post("/api/v1/sessions/lab/events", &batch("e", 5))
        .await;
    assert_eq!(over.status, 429, "{}", over.body);
    // A batch larger than the whole bucket could never pass: 413, not a false Retry-After.
    let never = operator
        .post("/api/v1/sessions/lab/events", &batch("e", 11))
        .await;
    assert_eq!(never.status, 413, "{}", never.body);
    assert!(never.body["error"]
        .as_str()
        .unwrap_or_default()
        .contains("send smaller batches"));

    let after = app.metrics().await;
    let count = |text: &str, labels: &str| {
        let series = format!("synopticon_http_rate_limited_total{{{labels}}}");
        metric_value(text, &series).unwrap_or(0.0)
    };
    let requests = r#"limit="requests",by="token""#;
    let events = r#"limit="events",by="token""#;
    assert!(
        count(&after, requests) - count(&before, requests) >= 3.0,
        "{after}"
    );
    assert!(
        count(&after, events) - count(&before, events) >= 1.0,
        "{after}"
    );
}

#[tokio::test]
async fn one_address_is_capped_whatever_tokens_it_holds() {
    let app = spawn_app_with(|s| {
        secure(s);
        s.auth.metrics_public = true;
        s.rate_limit.address_requests_per_sec = 1.0;
        s.rate_limit.address_request_burst = 9.0;
        s.rate_limit.address_events_per_sec = 1.0;
        s.rate_limit.address_event_burst = 12.0;
    })
    .await;
    // Each token is far inside its own budget; together they exhaust the address's.
    // Events: 8 + 8 from two tokens exceed the address's 12 (3 requests spent).
    let admin = app.with_token(ADMIN);
    admin.create_session(json!({"id": "lab"})).await;
    admin.publish("lab", batch("e", 8)).await;
    let over = app
        .with_token(OPERATOR)
        .post("/api/v1/sessions/lab/events", &batch("e", 8))
        .await;
    assert_eq!(over.status, 429, "{}", over.body);
    // Requests: 6 left of the address's 9, refilling at 1/s while the test runs.
    let tokens = [ADMIN, OPERATOR, VIEWER];
    let (mut passed, mut refused, mut retry_after) = (0, 0, None);
    for _ in 0..5 {
        for t in tokens {
            let r = app
                .with_token(t)
                .request(reqwest::Method::GET, "/api/v1/sessions")
                .send()
                .await
                .expect("GET");
            match r.status().as_u16() {
                200 => passed += 1,
                429 => {
                    refused += 1;
                    retry_after = r.headers().get("retry-after").cloned();
                }
                other => panic!("unexpected {other}"),
            }
        }
    }
    // Each token is far inside its own budget; only the address stops them. A slow run
    // may see a refill or two.
    assert!(
        (6..=8).contains(&passed),
        "{passed} passed, {refused} refused"
    );
    assert!(refused >= 7, "{passed} passed, {refused} refused");
    assert!(retry_after.is_some(), "429 carries Retry-After");
    let metrics = app.metrics().await;
    let count = |labels: &str| {
        let series = format!("synopticon_http_rate_limited_total{{{labels}}}");
        metric_value(&metrics, &series).unwrap_or(0.0)
    };
    assert_eq!(
        count(r#"limit="requests",by="address""#),
        refused as f64,
        "{metrics}"
    );
    assert_eq!(count(r#"limit="events",by="address""#), 1.0, "{metrics}");
    assert_eq!(count(r#"limit="requests",by="token""#), 0.0, "{metrics}");
}

#[tokio::test]
async fn unauthenticated_callers_are_limited_by_address() {
    let app = spawn_app_with(|s| {
        secure(s);
        s.rate_limit.requests_per_sec = 1.0;
        s.rate_limit.request_burst = 3.0;
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(
            app.with_token("syn_guess")
                .get("/api/v1/sessions")
                .await
                .status,
        );
    }
    assert_eq!(
        statuses,
        [401, 401, 401, 429, 429],
        "guessing tokens is slowed down"
    );
    // A valid token has its own bucket.
    assert_eq!(
        app.with_token(ADMIN).get("/api/v1/sessions").await.status,
        200
    );
}

#[tokio::test]
async fn a_redacted_field_never_reaches_any_distributor() {
    let secret = "redaction key of this test";
    let app = spawn_app_with(move |s| s.privacy.redaction_secret = secret.into()).await;
    let session = format!("redact-{}", &uuid::Uuid::new_v4().to_string()[..8]);
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    udp.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let webhook = Receiver::start(0, Vec::new());
    let mqtt = Subscriber::start(SHARED_BROKER, &format!("synopticon/{session}/#")).await;
    let redis_client = redis::Client::open("redis://127.0.0.1:6379").expect("redis");
    let mut redis = redis_client.get_connection().expect("redis connection");
    app.create_session(json!({
        "id": session,
        "enabledDistributors": ["websocket", "sse", "mqtt", "udp", "http", "redis"],
        "distributors": {
            "mqtt": {"broker": format!("mqtt://127.0.0.1:{SHARED_BROKER}"), "qos": 1},
            "udp": {"targets": [format!("127.0.0.1:{}", udp.local_addr().expect("addr").port())], "encoding": "json"},
            "http": {"baseUrl": webhook.url()},
            "redis": {"url": "redis://127.0.0.1:6379", "stream": "synopticon:{session}:events"},
        },
        "redact": {"data.participantId": "hash", "data.name": "drop", "data.faces.*.participantId": "hash"},
    }))
    .await;
    let mut ws = app.ws(&session, "").await;
    let mut sse = app.sse(&session, "", None).await;

    app.publish(
        &session,
        json!({"event": "face_detected", "data": {
            "participantId": "P001", "name": "Ada Lovelace", "confidence": 0.93,
            "faces": [{"participantId": "P002"}]}}),
    )
    .await;

    // What every protocol carried, as raw text.
    let mut outputs: BTreeMap<&str, String> = BTreeMap::new();
    outputs.insert(
        "websocket",
        ws.next_event().await.expect("ws event").to_string(),
    );
    outputs.insert("sse", sse.next().await.expect("sse event").data);
    let mut datagram = vec![0u8; 65536];
    let n = udp.recv(&mut datagram).expect("a datagram");
    outputs.insert("udp", String::from_utf8_lossy(&datagram[..n]).into_owned());
    let hook = wait_until("the webhook", DEADLINE, || async {
        webhook.requests().into_iter().next()
    })
    .await;
    outputs.insert("http", hook.body.to_string());
    let message = wait_until("the MQTT message", DEADLINE, || async {
        mqtt.events().into_iter().next()
    })
    .await;
    outputs.insert("mqtt", message.payload.to_string());
    let stream = format!("synopticon:{session}:events");
    let entries: redis::streams::StreamRangeReply =
        wait_until("the Redis stream", DEADLINE, || {
            let reply: Option<redis::streams::StreamRangeReply> = redis::cmd("XRANGE")
                .arg(&stream)
                .arg("-")
                .arg("+")
                .query(&mut redis)
                .ok();
            async move { reply.filter(|r| !r.ids.is_empty()) }
        })
        .await;
    let fields: HashMap<String, redis::Value> = entries.ids[0].map.clone();
    outputs.insert("redis", format!("{fields:?}"));

    let expected = {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
        let tag = ring::hmac::sign(&key, b"P001");
        tag.as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    assert_eq!(outputs.len(), 6);
    for (protocol, text) in &outputs {
        assert!(
            !text.contains("P001") && !text.contains("P002"),
            "{protocol}: {text}"
        );
        assert!(!text.contains("Ada Lovelace"), "{protocol}: {text}");
        assert!(
            text.contains(&expected),
            "{protocol} carries the keyed hash: {text}"
        );
    }
    let status = app.status(&session).await;
    assert_eq!(status["config"]["redact"]["data.name"], "drop");
}

#[tokio::test]
async fn redaction_rules_are_validated() {
    let app = spawn_app().await;
    let bad = app
        .post(
            "/api/v1/sessions",
            &json!({"id": "r", "redact": {"participantId": "hash", "data.x": "encrypt"}}),
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert_eq!(
        bad.body["details"].as_array().map(Vec::len),
        Some(2),
        "{}",
        bad.body
    );
}

#[tokio::test]
async fn changes_are_written_to_the_audit_trail_with_the_token_that_made_them() {
    // The real binary, JSON logs, a configured admin token.
    let server = ServerProcess::start(&format!(
        // Warnings only (and the address the test needs): the audit trail still shows.
        "[server]\nport = 0\nmode = \"production\"\n[log]\nlevel = \"warn,synopticon::startup=info\"\nformat = \"json\"\n\
         [[auth.tokens]]\nid = \"lab-admin\"\nrole = \"admin\"\nsha256 = \"{}\"\n",
        hash_hex(ADMIN)
    ));
    let app = server.app.with_token(ADMIN);
    app.create_session(json!({"id": "audited"})).await;
    let made = app
        .post("/api/v1/tokens", &json!({"id": "guest", "role": "viewer"}))
        .await;
    assert_eq!(made.status, 201);
    let secret = made.body["token"].as_str().unwrap_or_default().to_string();
    assert_eq!(
        app.delete("/api/v1/sessions/audited/distributors/sse")
            .await
            .status,
        200
    );
    assert_eq!(app.delete("/api/v1/tokens/guest").await.status, 204);
    assert_eq!(app.delete("/api/v1/sessions/audited").await.status, 200);

    let wanted = [
        ("session.create", "audited"),
        ("token.create", "guest"),
        ("distributor.delete", "audited/sse"),
        ("token.delete", "guest"),
        ("session.close", "audited"),
    ];
    let mut seen = Vec::new();
    let mut all = Vec::new();
    while seen.len() < wanted.len() {
        let text = server
            .log
            .recv_timeout(DEADLINE)
            .expect("audit lines in time");
        let Ok(line) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        all.push(text);
        if line["target"] == "synopticon::audit" {
            assert_eq!(line["token"], "lab-admin", "{line}");
            assert_eq!(line["role"], "admin", "{line}");
            seen.push((
                line["action"].as_str().unwrap_or_default().to_string(),
                line["resource"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    drop(server);
    let expected: Vec<(String, String)> = wanted
        .iter()
        .map(|(a, r)| (a.to_string(), r.to_string()))
        .collect();
    assert_eq!(seen, expected);
    assert!(
        all.iter().all(|l| !l.contains(&secret)),
        "the token's secret is never logged"
    );
}

#[tokio::test]
async fn live_connections_are_bounded_per_token_and_in_all() {
    let app = spawn_app_with(|s| {
        secure(s);
        s.live.max_connections = 3;
        s.live.max_connections_per_token = 2;
    })
    .await;
    let admin = app.with_token(ADMIN);
    admin.create_session(json!({"id": "lab"})).await;
    let viewer = app.with_token(VIEWER);
    let _first = viewer.ws("lab", "").await;
    let _second = viewer.sse("lab", "", None).await;
    // The viewer's third: 429; another token still gets in, until the total is reached.
    let third = viewer.get("/api/v1/sessions/lab/sse").await;
    assert_eq!(third.status, 429, "{}", third.body);
    let _operator = app.with_token(OPERATOR).ws("lab", "").await;
    let full = admin.get("/api/v1/sessions/lab/sse").await;
    assert_eq!(full.status, 503, "{}", full.body);
    // A connection that ends frees its place.
    drop(_first);
    wait_until("a free place", DEADLINE, || async {
        let r = admin
            .request(reqwest::Method::GET, "/api/v1/sessions/lab/sse")
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_scoped_admin_manages_only_tokens_within_its_own_scope() {
    const LAB_ADMIN: &str = "syn_test-lab-admin-0000000000000000000000000000000";
    let app = spawn_with_token(TokenConfig {
        sessions: Some(vec!["lab-*".into()]),
        ..token_config("lab-admin", "admin", LAB_ADMIN)
    })
    .await;
    let lab_admin = app.with_token(LAB_ADMIN);

    // Nothing wider than its own scope: no unscoped token, no other sessions.
    for body in [
        json!({"id": "everything", "role": "admin"}),
        json!({"id": "beyond", "role": "viewer", "sessions": ["lab-*", "other"]}),
        json!({"id": "all-labs", "role": "viewer", "sessions": ["*"]}),
    ] {
        let r = lab_admin.post("/api/v1/tokens", &body).await;
        assert_eq!(r.status, 403, "{body}: {}", r.body);
        assert!(r.body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("own scope"));
    }
    // Within it: fine, and narrower in other kinds too.
    let made = lab_admin
        .post(
            "/api/v1/tokens",
            &json!({"id": "lab-1-kiosk", "role": "viewer", "sessions": ["lab-1"], "events": ["face_*"]}),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.body);

    // It cannot widen that token afterwards, nor see, change or delete tokens beyond it.
    let widen = lab_admin
        .patch("/api/v1/tokens/lab-1-kiosk", &json!({"sessions": null}))
        .await;
    assert_eq!(widen.status, 403, "{}", widen.body);
    assert_eq!(
        app.with_token(ADMIN)
            .get("/api/v1/tokens/lab-1-kiosk")
            .await
            .body["sessions"],
        json!(["lab-1"])
    );
    let listed = lab_admin.get("/api/v1/tokens").await.body;
    let ids: Vec<&Value> = listed["tokens"]
        .as_array()
        .map(|a| a.iter().map(|t| &t["id"]).collect())
        .unwrap_or_default();
    assert_eq!(
        ids,
        [&json!("lab-admin"), &json!("lab-1-kiosk")],
        "{listed}"
    );
    assert_eq!(lab_admin.get("/api/v1/tokens/admin").await.status, 404);
    let other = app
        .with_token(ADMIN)
        .post(
            "/api/v1/tokens",
            &json!({"id": "elsewhere", "role": "viewer"}),
        )
        .await;
    assert_eq!(other.status, 201, "{}", other.body);
    assert_eq!(
        lab_admin.delete("/api/v1/tokens/elsewhere").await.status,
        404
    );
    assert_eq!(
        lab_admin
            .patch(
                "/api/v1/tokens/elsewhere",
                &json!({"description": "mine now"})
            )
            .await
            .status,
        404
    );
    assert_eq!(
        lab_admin.delete("/api/v1/tokens/lab-1-kiosk").await.status,
        204
    );
    // What the whole server shares is beyond any scope.
    assert_eq!(lab_admin.get("/api/config").await.status, 403);
    assert_eq!(lab_admin.get("/api/runtime").await.status, 403);
    let template = lab_admin
        .put(
            "/api/v1/templates/lab",
            &json!({"enabledDistributors": ["websocket"]}),
        )
        .await;
    assert_eq!(template.status, 403, "{}", template.body);
    assert!(template.body["error"]
        .as_str()
        .unwrap_or_default()
        .contains("unscoped admin"));
    assert_eq!(app.with_token(ADMIN).get("/api/config").await.status, 200);
    // The unscoped admin sees everything.
    assert_eq!(
        app.with_token(ADMIN)
            .get("/api/v1/tokens/elsewhere")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn tokens_made_over_rest_survive_a_restart_without_their_secret_on_disk() {
    let dir = std::env::temp_dir().join(format!("synopticon-tokens-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    // A tokens file of an earlier version: moved into the store at the first start.
    let old_secret = "syn_old-file-token-000000000000000000000000000000000";
    std::fs::write(
        dir.join("tokens.json"),
        json!([{"id": "from-file", "role": "viewer", "sha256": hash_hex(old_secret),
            "origin": "api", "created_at": null, "expires_at": null}])
        .to_string(),
    )
    .expect("tokens file");
    let (url, file) = (
        format!("sqlite://{}/store.db", dir.display()),
        dir.join("tokens.json").display().to_string(),
    );
    let keep = move |s: &mut Settings| {
        secure(s);
        s.store.url = url.clone();
        s.auth.tokens_file = file.clone();
    };
    let first = spawn_app_with(keep.clone()).await;
    let made = first
        .with_token(ADMIN)
        .post(
            "/api/v1/tokens",
            &json!({"id": "kept", "role": "operator", "sessions": ["lab-*"]}),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let secret = made.body["token"].as_str().unwrap_or_default().to_string();
    let short = first
        .with_token(ADMIN)
        .post(
            "/api/v1/tokens",
            &json!({"id": "brief", "role": "viewer", "expiresInSecs": 1}),
        )
        .await;
    let brief = short.body["token"].as_str().unwrap_or_default().to_string();
    assert_eq!(
        first
            .with_token(&brief)
            .get("/api/v1/sessions")
            .await
            .status,
        200
    );
    assert_eq!(
        first
            .with_token(old_secret)
            .get("/api/v1/sessions")
            .await
            .status,
        200
    );

    // The database and its write-ahead log, where recent writes are.
    let mut stored = std::fs::read(dir.join("store.db")).expect("store file");
    stored.extend(std::fs::read(dir.join("store.db-wal")).unwrap_or_default());
    let stored = String::from_utf8_lossy(&stored);
    assert!(!stored.contains(&secret), "the secret is never written");
    assert!(stored.contains(&hash_hex(&secret)));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("secret.key"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the key is readable by its owner only: {mode:o}"
        );
    }

    // A second server on the same store (the file gone) knows the tokens, with their scope.
    std::fs::remove_file(dir.join("tokens.json")).expect("remove the old file");
    let second = spawn_app_with(keep).await;
    let kept = second.with_token(&secret);
    assert_eq!(
        second
            .with_token(old_secret)
            .get("/api/v1/sessions")
            .await
            .status,
        200
    );
    assert_eq!(
        kept.post("/api/v1/sessions", &json!({"id": "lab-1"}))
            .await
            .status,
        201
    );
    assert_eq!(
        kept.post("/api/v1/sessions", &json!({"id": "other"}))
            .await
            .status,
        403
    );
    // The short-lived one has expired.
    wait_until("the expiry", DEADLINE, || async {
        let r = second.with_token(&brief).get("/api/v1/sessions").await;
        (r.status == 401).then_some(())
    })
    .await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn metrics_need_a_token_without_any_scope() {
    type Limit = fn(&mut TokenConfig);
    let kinds: [(&str, Limit); 4] = [
        ("sessions", |t| t.sessions = Some(vec!["lab-*".into()])),
        ("sources", |t| t.sources = Some(vec!["cam-*".into()])),
        ("devices", |t| t.devices = Some(vec!["LAB-*".into()])),
        ("events", |t| t.events = Some(vec!["face_*".into()])),
    ];
    let tokens: Vec<TokenConfig> = kinds
        .iter()
        .map(|(kind, limit)| {
            let mut t = token_config(
                kind,
                "viewer",
                &format!("syn_metrics-{kind}-000000000000000000000000000000"),
            );
            limit(&mut t);
            t
        })
        .collect();
    let app = spawn_app_with(move |s| {
        secure(s);
        s.auth.tokens.extend(tokens);
    })
    .await;
    for (kind, _) in kinds {
        let scoped = app.with_token(&format!(
            "syn_metrics-{kind}-000000000000000000000000000000"
        ));
        let answer = scoped.get("/metrics").await;
        assert_eq!(
            answer.status, 403,
            "a {kind}-scoped viewer: {}",
            answer.body
        );
        assert!(
            answer.body["error"]
                .as_str()
                .is_some_and(|e| e.contains("scope")),
            "{}",
            answer.body
        );
    }
    let unscoped = app.with_token(VIEWER).metrics().await;
    assert!(
        unscoped.contains("synopticon_"),
        "an unscoped viewer reads them"
    );
}

#[tokio::test]
async fn scoped_tokens_learn_nothing_about_the_rest_from_health_metrics_validation_or_statuses() {
    // Stream sources need a model by name; this one fails at once (no runtime), which is
    // all the test needs: the sources exist and their captures fail, naming their URLs.
    let app = spawn_app_with(|s| {
        secure(s);
        s.inference.runtime_path = "/nonexistent/libonnxruntime.so".into();
        s.inference.models = vec![ModelConfig::new(
            "face",
            ModelKind::Centerface,
            "/nonexistent/face.onnx",
        )];
        s.inference.default_model = "face".into();
    })
    .await;
    let admin = app.with_token(ADMIN);
    let scoped = app.with_token(SCOPED);
    admin.create_session(json!({"id": "secret-study"})).await;
    for (id, url) in [
        ("scoped-cam", "rtsp://cam:hunter2@127.0.0.1:1/stream"),
        ("hidden-cam", "rtsp://127.0.0.1:1/other"),
    ] {
        let r = admin
            .post(
                "/api/v1/sources",
                &json!({"id": id, "kind": "stream", "url": url}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    admin
        .create_session(json!({"id": "scoped-lab", "sources": ["scoped-cam", "hidden-cam"]}))
        .await;

    // Wait for the captures to fail: their errors name the URLs.
    wait_until("the capture errors", DEADLINE, || async {
        let s = admin.get("/api/v1/sources/scoped-cam").await.body;
        s["last_error"].is_string().then_some(())
    })
    .await;
    let health = scoped.get("/api/health").await.body.to_string();
    for hidden in ["secret-study", "hidden-cam"] {
        assert!(!health.contains(hidden), "health shows {hidden}: {health}");
    }
    assert!(health.contains("scoped-cam"), "{health}");
    assert!(!health.contains("hunter2"), "{health}");
    assert_eq!(scoped.get("/metrics").await.status, 403);

    // Validation does not reveal whether an id outside the scope is taken.
    let probe = scoped
        .post("/api/v1/sessions/validate", &json!({"id": "secret-study"}))
        .await;
    assert_eq!(probe.status, 403, "{}", probe.body);
    // Nor can the second spelling of the id slip past the scope.
    let sneak = scoped
        .post(
            "/api/v1/sessions",
            &json!({"id": "scoped-x", "sessionId": "secret-2"}),
        )
        .await;
    assert_eq!(sneak.status, 403, "{}", sneak.body);
    let both = admin
        .post("/api/v1/sessions", &json!({"id": "a", "sessionId": "b"}))
        .await;
    assert_eq!(both.status, 422, "{}", both.body);

    // The session's sources, as the scoped token sees them.
    let status = scoped.get("/api/v1/sessions/scoped-lab").await.body;
    assert_eq!(
        status["config"]["sources"],
        json!(["scoped-cam"]),
        "{status}"
    );
    // A camera's password never leaves the server.
    let source = admin
        .get("/api/v1/sources/scoped-cam")
        .await
        .body
        .to_string();
    assert!(!source.contains("hunter2"), "{source}");
}

#[tokio::test]
async fn a_token_scoped_to_no_events_receives_none_and_an_expired_token_is_cut_off() {
    let app = spawn_app_with(secure).await;
    let admin = app.with_token(ADMIN);
    admin.create_session(json!({"id": "lab"})).await;
    let made = admin
        .post(
            "/api/v1/tokens",
            &json!({"id": "mute", "role": "viewer", "events": []}),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let mute = app.with_token(made.body["token"].as_str().unwrap_or_default());
    let mut ws = mute.ws("lab", "").await;
    let mut control = admin.ws("lab", "").await;
    admin.publish("lab", batch("anything", 2)).await;
    // The unscoped feed of the same session got both events, so they were sent...
    assert_eq!(control.events(2).await.len(), 2);
    // ...and the feed scoped to no events got none of them.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), ws.next_event())
            .await
            .is_err(),
        "an empty event scope means no events"
    );

    let made = admin
        .post(
            "/api/v1/tokens",
            &json!({"id": "brief", "role": "viewer", "expiresInSecs": 1}),
        )
        .await;
    let brief = app.with_token(made.body["token"].as_str().unwrap_or_default());
    let expires_at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(made.body["expiresAt"].clone()).expect("expiresAt");
    let mut ws = brief.ws("lab", "").await;
    let (code, reason) = ws.closed().await;
    let closed_at = chrono::Utc::now();
    assert_eq!(
        (code, reason.as_str()),
        (1008, "token_revoked"),
        "expired: cut off"
    );
    assert!(closed_at >= expires_at, "not before it expired");
    // The documented promise: cut off within a second of expiring (the sweep wakes at the
    // expiry; it closed 1 ms after it here, and up to 2 s after it with a once-a-second
    // sweep).
    let late = (closed_at - expires_at).num_milliseconds();
    assert!(late < 1000, "closed {late} ms after the token expired");
}

#[tokio::test]
async fn a_container_gets_its_admin_token_from_the_environment() {
    let env = [
        (
            "SYNOPTICON__SERVER__MODE".to_string(),
            "production".to_string(),
        ),
        (
            "SYNOPTICON__AUTH__ADMIN_TOKEN_SHA256".into(),
            hash_hex(ADMIN),
        ),
    ];
    let (from_env, report) = Settings::load_with_env(None, env).expect("settings");
    assert!(report.is_valid(), "{:?}", report.errors);
    let app = spawn_app_with(move |s| {
        s.server.mode = from_env.server.mode;
        s.auth = from_env.auth;
    })
    .await;
    assert_eq!(app.get("/api/v1/sessions").await.status, 401);
    let admin = app.with_token(ADMIN);
    assert_eq!(admin.get("/api/v1/sessions").await.status, 200);
    let tokens = admin.get("/api/v1/tokens").await.body;
    assert_eq!(tokens["tokens"][0]["id"], "admin", "{tokens}");
    assert_eq!(tokens["tokens"][0]["origin"], "config");
}

#[tokio::test]
async fn the_token_command_makes_a_working_entry_and_hashes_alike() {
    let bin = env!("CARGO_BIN_EXE_synopticon");
    let made = std::process::Command::new(bin)
        .args(["token", "new", "--id", "lab-ops", "--role", "operator"])
        .output()
        .expect("run token new");
    assert!(made.status.success(), "{made:?}");
    let text = String::from_utf8_lossy(&made.stdout).to_string();
    let secret = text
        .lines()
        .find_map(|l| l.trim_start_matches('#').trim().strip_prefix("syn_"))
        .map(|rest| format!("syn_{rest}"))
        .expect("the secret is printed");
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key} = ")))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default()
    };
    assert!(text.contains("[[auth.tokens]]"), "{text}");
    assert_eq!(
        (field("id"), field("role")),
        ("lab-ops".into(), "operator".into())
    );
    let sha256 = field("sha256");
    assert_eq!(sha256, hash_hex(&secret));

    // `token hash` agrees, reading the secret from stdin.
    let mut hasher = std::process::Command::new(bin)
        .args(["token", "hash"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run token hash");
    {
        use std::io::Write;
        let mut stdin = hasher.stdin.take().expect("stdin");
        writeln!(stdin, "{secret}").expect("write");
    }
    let hashed = hasher.wait_with_output().expect("hash output");
    assert_eq!(String::from_utf8_lossy(&hashed.stdout).trim(), sha256);

    // A bad role is refused.
    let bad = std::process::Command::new(bin)
        .args(["token", "new", "--role", "root"])
        .output()
        .expect("run");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("admin, operator or viewer"));

    // The entry, as printed, lets the secret in with the role it names.
    let app = spawn_with_token(TokenConfig {
        sha256,
        ..token_config("lab-ops", "operator", "unused")
    })
    .await;
    let ops = app.with_token(&secret);
    assert_eq!(ops.get("/api/v1/sessions").await.status, 200);
    assert_eq!(
        ops.get("/api/v1/tokens").await.status,
        403,
        "an operator, not an admin"
    );
}
