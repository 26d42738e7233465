//! HTTP webhooks against a real HTTP receiver on loopback with scripted answers.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};

use crate::helpers::*;

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub seq: u64,
    pub authorization: Option<String>,
    pub api_key: Option<String>,
    pub body: Value,
    pub at: Instant,
}

/// How the receiver answers the next request.
#[derive(Clone, Copy)]
pub enum Reply {
    Status(u16),
    RetryAfter(u16, u64),
    /// Accept the request and never answer (until the test ends).
    Hang,
    /// Answer with this 3xx status and `Location: URL`.
    Redirect(u16, &'static str),
}

#[derive(Clone, Default)]
pub struct Receiver {
    pub port: u16,
    log: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    /// Starts a receiver on `port` (0 for any) answering `script` in order, then 200.
    pub fn start(port: u16, script: Vec<Reply>) -> Receiver {
        let log = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let (tx, rx) = std::sync::mpsc::channel();
        let (l, s) = (log.clone(), script.clone());
        std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    let (l, s) = (l.clone(), s.clone());
                    App::new().default_service(web::to(
                        move |req: HttpRequest, body: web::Bytes| {
                            let (l, s) = (l.clone(), s.clone());
                            async move {
                                let header = |n: &str| {
                                    req.headers()
                                        .get(n)
                                        .and_then(|v| v.to_str().ok())
                                        .map(str::to_string)
                                };
                                l.lock().unwrap().push(Received {
                                    method: req.method().to_string(),
                                    path: req.path().to_string(),
                                    seq: header("x-synopticon-seq")
                                        .and_then(|v| v.parse().ok())
                                        .unwrap_or(0),
                                    authorization: header("authorization"),
                                    api_key: header("x-api-key"),
                                    body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                                    at: Instant::now(),
                                });
                                let reply = s.lock().unwrap().pop_front();
                                if let Some(Reply::Hang) = reply {
                                    actix_rt::time::sleep(Duration::from_secs(600)).await;
                                }
                                match reply {
                                    None => HttpResponse::Ok().finish(),
                                    Some(Reply::Status(code)) => HttpResponse::build(
                                        actix_web::http::StatusCode::from_u16(code).unwrap(),
                                    )
                                    .finish(),
                                    Some(Reply::Hang) => HttpResponse::Ok().finish(),
                                    Some(Reply::Redirect(code, to)) => HttpResponse::build(
                                        actix_web::http::StatusCode::from_u16(code).unwrap(),
                                    )
                                    .insert_header(("Location", to))
                                    .finish(),
                                    Some(Reply::RetryAfter(code, secs)) => HttpResponse::build(
                                        actix_web::http::StatusCode::from_u16(code).unwrap(),
                                    )
                                    .insert_header(("Retry-After", secs.to_string()))
                                    .finish(),
                                }
                            }
                        },
                    ))
                })
                .workers(1)
                .bind(("127.0.0.1", port))
                .expect("receiver binds");
                tx.send(server.addrs()[0].port()).unwrap();
                server.run().await
            })
        });
        let port = rx.recv_timeout(DEADLINE).expect("receiver starts");
        Receiver { port, log }
    }

    pub fn requests(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn requests_for(receiver: &Receiver, n: usize) -> Vec<Received> {
    wait_until(&format!("{n} webhook requests"), DEADLINE, || async {
        let r = receiver.requests();
        (r.len() >= n).then_some(r)
    })
    .await
}

#[tokio::test]
async fn webhooks_post_the_envelope_with_headers_to_each_endpoint() {
    let app = spawn_app().await;
    let receiver = Receiver::start(0, vec![]);
    app.create_session(
        json!({"id": "hook", "enabledDistributors": ["http"], "distributors": {"http": {
        "baseUrl": receiver.url(), "endpoint": "/events", "endpoints": {"face_*": "/faces"},
        "headers": {"Authorization": "Bearer lab-secret"}}}}),
    )
    .await;

    app.publish(
        "hook",
        json!([{"event": "face_detected", "data": {"p": "P001"}}, {"event": "gaze", "data": {}}]),
    )
    .await;
    let got = requests_for(&receiver, 2).await;

    assert_eq!(got[0].path, "/faces");
    assert_eq!(got[1].path, "/events");
    assert_eq!(got[0].authorization.as_deref(), Some("Bearer lab-secret"));
    assert_eq!(got[0].body["session"], "hook");
    assert_eq!(got[0].body["event"], "face_detected");
    assert_eq!(got[0].body["data"], json!({"p": "P001"}));
    assert_eq!((got[0].seq, got[1].seq), (1, 2), "in order");
    let status = app.status("hook").await;
    assert_eq!(
        status["config"]["distributors"]["http"]["headers"]["Authorization"],
        "***redacted***"
    );
}

#[tokio::test]
async fn server_errors_are_retried_and_the_event_arrives_exactly_once_more() {
    let app = spawn_app().await;
    let receiver = Receiver::start(0, vec![Reply::Status(500), Reply::Status(500)]);
    app.create_session(
        json!({"id": "retry", "enabledDistributors": ["http"], "distributors": {"http": {
        "baseUrl": receiver.url(), "retryBaseMs": 10}}}),
    )
    .await;

    app.publish("retry", json!({"event": "participant_joined", "data": {}}))
        .await;
    let got = requests_for(&receiver, 3).await;
    app.publish("retry", json!({"event": "next", "data": {}}))
        .await;
    let all = requests_for(&receiver, 4).await;

    assert_eq!(
        got.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [1, 1, 1],
        "two 500s, then the 200"
    );
    assert_eq!(all.len(), 4, "no duplicate after the success");
    assert_eq!(all[3].seq, 2);
    let http = wait_until("accounting", DEADLINE, || async {
        let d = app.distributor("retry", "http").await;
        (d["sent"] == 2).then_some(d)
    })
    .await;
    assert_eq!(http["failed"], 0);
}

#[tokio::test]
async fn client_errors_are_not_retried_and_are_reported() {
    let app = spawn_app().await;
    let receiver = Receiver::start(0, vec![Reply::Status(400)]);
    app.create_session(
        json!({"id": "bad-req", "enabledDistributors": ["http"], "distributors": {"http": {
        "baseUrl": receiver.url(), "retryBaseMs": 10}}}),
    )
    .await;

    app.publish(
        "bad-req",
        json!([{"event": "refused"}, {"event": "accepted"}]),
    )
    .await;
    let got = requests_for(&receiver, 2).await;
    let http = wait_until("accounting", DEADLINE, || async {
        let d = app.distributor("bad-req", "http").await;
        (d["sent"] == 1 && d["failed"] == 1).then_some(d)
    })
    .await;

    assert_eq!(
        got.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [1, 2],
        "the 400 was not retried"
    );
    assert!(
        http["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("HTTP 400"),
        "{http}"
    );
    assert_eq!(http["breaker"], "closed");
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let app = spawn_app().await;
    let receiver = Receiver::start(0, vec![Reply::RetryAfter(429, 1)]);
    app.create_session(
        json!({"id": "slowdown", "enabledDistributors": ["http"], "distributors": {"http": {
        "baseUrl": receiver.url(), "retryBaseMs": 10}}}),
    )
    .await;

    app.publish("slowdown", json!({"event": "x"})).await;
    let got = requests_for(&receiver, 2).await;

    let gap = got[1].at - got[0].at;
    assert!(
        gap >= Duration::from_millis(950),
        "waited {gap:?}, the receiver asked for 1 s"
    );
    assert_eq!((got[0].seq, got[1].seq), (1, 1));
}

#[tokio::test]
async fn a_dead_receiver_opens_the_breaker_without_slowing_websocket_and_recovery_closes_it() {
    let app = spawn_app().await;
    let port = free_port();
    app.create_session(json!({"id": "outage", "enabledDistributors": ["websocket", "http"], "distributors": {"http": {
        "baseUrl": format!("http://127.0.0.1:{port}"), "maxRetries": 0, "timeoutMs": 500,
        "breakerThreshold": 2, "breakerCooldownMs": 300}}}))
        .await;
    let mut ws = app.ws("outage", "").await;

    app.publish("outage", batch("during_outage", 6)).await;
    let live = ws.events(6).await;
    let open = wait_until("the breaker to open", DEADLINE, || async {
        let d = app.distributor("outage", "http").await;
        (d["breaker"] == "open").then_some(d)
    })
    .await;
    let health = app.get("/api/health").await;
    let receiver = Receiver::start(port, vec![]);
    let recovered = wait_until(
        "the breaker to close and the backlog to drain",
        DEADLINE,
        || async {
            let d = app.distributor("outage", "http").await;
            let c = |k: &str| d[k].as_u64().unwrap_or_default();
            // At rest: nothing queued and nothing in flight.
            let settled = c("sent") + c("unconfirmed") + c("failed") + c("dropped") == 6;
            (d["breaker"] == "closed" && settled).then_some(d)
        },
    )
    .await;

    assert_eq!(
        live.len(),
        6,
        "WebSocket delivered everything during the outage"
    );
    assert_eq!(
        recovered["unconfirmed"], 0,
        "connections were refused: nothing went out"
    );
    assert!(open["failed"].as_u64().unwrap() >= 2, "{open}");
    assert!(
        open["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("connection failed"),
        "{open}"
    );
    assert_eq!(health.body["status"], "degraded");
    let (sent, failed) = (
        recovered["sent"].as_u64().unwrap(),
        recovered["failed"].as_u64().unwrap(),
    );
    assert_eq!(
        sent + failed + recovered["dropped"].as_u64().unwrap(),
        6,
        "every event accounted for: {recovered}"
    );
    assert!(sent >= 1, "delivery resumed: {recovered}");
    let got: Vec<u64> = receiver.requests().iter().map(|r| r.seq).collect();
    assert_eq!(
        got.len() as u64,
        sent,
        "the receiver got exactly what was counted as sent"
    );
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in order: {got:?}");
    let metrics = app.metrics().await;
    assert!(metrics.contains("synopticon_distributor_breaker_transitions_total{session=\"outage\",distributor=\"http\",to=\"open\"}"), "{metrics}");
}

#[tokio::test]
async fn webhook_settings_are_validated_at_once() {
    let app = spawn_app().await;

    let answer = app
        .post(
            "/api/v1/sessions",
            &json!({"enabledDistributors": ["http"], "distributors": {"http": {
            "baseUrl": "invalid-url", "timeoutMs": "soon", "endpoints": {"a": "no-slash"}}}}),
        )
        .await;

    assert_eq!(answer.status, 422);
    let details: Vec<String> = serde_json::from_value(answer.body["details"].clone()).unwrap();
    assert_eq!(details.len(), 3, "{details:#?}");
    assert!(details[0].contains("HTTP baseUrl must start with http:// or https://"));
}

#[tokio::test]
async fn a_hanging_receiver_slows_neither_the_sessions_websocket_nor_another_session() {
    let app = spawn_app().await;
    let receiver = Receiver::start(0, vec![Reply::Hang; 50]);
    app.create_session(json!({"id": "hang", "enabledDistributors": ["websocket", "http"], "distributors": {"http": {
        "baseUrl": receiver.url(), "timeoutMs": 300, "maxRetries": 1, "retryBaseMs": 10,
        "breakerThreshold": 2, "breakerCooldownMs": 60000}}}))
        .await;
    app.create_session(json!({"id": "bystander", "enabledDistributors": ["websocket"]}))
        .await;
    let mut same = app.ws("hang", "").await;
    let mut other = app.ws("bystander", "").await;

    let started = std::time::Instant::now();
    app.publish("hang", batch("while_hanging", 20)).await;
    app.publish("bystander", batch("elsewhere", 20)).await;
    let same_events = same.events(20).await;
    let other_events = other.events(20).await;
    let live_elapsed = started.elapsed();
    let http = wait_until(
        "the hanging receiver to open the breaker",
        DEADLINE,
        || async {
            let d = app.distributor("hang", "http").await;
            (d["breaker"] == "open").then_some(d)
        },
    )
    .await;

    eprintln!("both WebSocket feeds got 20 events in {live_elapsed:?} while the webhook hung");
    assert_eq!(same_events.last().unwrap()["seq"], 20);
    assert_eq!(other_events.last().unwrap()["seq"], 20);
    assert!(
        http["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("timed out after 300 ms"),
        "{http}"
    );
    assert_eq!(
        http["unconfirmed"], 2,
        "two events timed out (with one retry each): sent, never answered; then the breaker opened: {http}"
    );
    assert_eq!(http["failed"], 0, "{http}");
    assert_eq!(
        http["queued"], 18,
        "the rest wait in the queue while the breaker is open"
    );
}

#[tokio::test]
async fn deliveries_in_flight_when_a_distributor_is_disabled_are_counted_as_dropped() {
    let app = spawn_app().await;
    let receiver = Receiver::start(0, vec![Reply::Hang; 10]);
    app.create_session(
        json!({"id": "inflight", "enabledDistributors": ["http"], "distributors": {"http": {
        "baseUrl": receiver.url(), "timeoutMs": 60000, "maxInFlight": 4}}}),
    )
    .await;
    app.publish("inflight", batch("stuck", 6)).await;
    requests_for(&receiver, 4).await;
    let before = app.distributor("inflight", "http").await;

    let disabled = app
        .delete("/api/v1/sessions/inflight/distributors/http")
        .await;
    let metrics = wait_until("the books to close", DEADLINE, || async {
        let m = app.metrics().await;
        m.contains("synopticon_distributor_events_total{session=\"inflight\",distributor=\"http\",outcome=\"dropped\"} 6").then_some(m)
    })
    .await;

    assert_eq!(
        (before["queued"].as_u64(), before["sent"].as_u64()),
        (Some(2), Some(0)),
        "4 in flight, 2 queued: {before}"
    );
    assert_eq!(disabled.status, 200);
    assert!(metrics
        .contains("synopticon_events_routed_total{session=\"inflight\",distributor=\"http\"} 6"));
}

#[tokio::test]
async fn a_redirect_is_a_rejected_delivery_and_the_secret_headers_stay_home() {
    let app = spawn_app().await;
    let elsewhere = Receiver::start(0, vec![]);
    let to: &'static str = Box::leak(format!("{}/stolen", elsewhere.url()).into_boxed_str());
    let receiver = Receiver::start(0, vec![Reply::Redirect(302, to), Reply::Redirect(307, to)]);
    app.create_session(json!({"id": "moved", "enabledDistributors": ["http"],
        "distributors": {"http": {"baseUrl": receiver.url(), "retryBaseMs": 10,
            "headers": {"X-Api-Key": "lab-key", "X-Hub-Signature": "sha1=abc"}}}}))
        .await;

    app.publish("moved", batch("face_detected", 3)).await;
    let got = requests_for(&receiver, 3).await;
    let http = wait_until("accounting", DEADLINE, || async {
        let d = app.distributor("moved", "http").await;
        (d["failed"] == 2 && d["sent"] == 1).then_some(d)
    })
    .await;

    assert!(got.iter().all(|r| r.method == "POST"), "{got:?}");
    assert_eq!(
        got.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [1, 2, 3],
        "no retry of a 3xx"
    );
    assert_eq!(got[0].api_key.as_deref(), Some("lab-key"));
    assert!(
        elsewhere.requests().is_empty(),
        "followed to {:?}",
        elsewhere.requests()
    );
    let error = http["last_error"]["message"].as_str().unwrap();
    assert!(error.contains("HTTP 307") && error.contains(to), "{error}");
    assert_eq!(
        http["breaker"], "closed",
        "the receiver answered: not a path failure"
    );
}

#[tokio::test]
async fn header_values_are_hidden_in_every_view_but_the_harmless_ones() {
    let headers = json!({"X-Api-Key": "k1", "Cookie": "session=abc", "X-Hub-Signature": "sha1=s",
        "X-Auth-Token": "t", "Content-Type": "application/cloudevents+json",
        "Accept": "*/*", "User-Agent": "lab-rig"});
    let http = json!({"baseUrl": "http://127.0.0.1:9", "headers": headers});
    let declared = json!({"id": "declared-hook", "distributors": {"http": http}});
    let app = spawn_app_with(move |s| s.sessions.declared = vec![declared]).await;
    let created = app
        .create_session(json!({"id": "hdr", "enabledDistributors": ["http"],
            "distributors": {"http": http}}))
        .await;
    let refused = app
        .put(
            "/api/v1/sessions/hdr/distributors/http",
            &json!({"baseUrl": "http://127.0.0.1:9", "headers": {"Host": "other",
                "Content-Length": "1", "Transfer-Encoding": "chunked", "Connection": "close"}}),
        )
        .await;
    let changed = app
        .put("/api/v1/sessions/hdr/distributors/http", &http)
        .await;
    let template = app
        .put(
            "/api/v1/templates/hooked",
            &json!({"enabledDistributors": ["http"],
            "distributors": {"http": http}}),
        )
        .await;
    let views = [
        created["config"]["distributors"]["http"]["headers"].clone(),
        changed.body["session"]["config"]["distributors"]["http"]["headers"].clone(),
        app.status("hdr").await["config"]["distributors"]["http"]["headers"].clone(),
        app.get("/api/v1/sessions").await.body["sessions"][0]["config"]["distributors"]["http"]
            ["headers"]
            .clone(),
        app.get("/api/v1/templates/hooked").await.body["distributors"]["http"]["headers"].clone(),
        app.get("/api/config").await.body["sessions"]["declared"][0]["distributors"]["http"]
            ["headers"]
            .clone(),
    ];

    assert_eq!(refused.status, 422, "{}", refused.body);
    let details = refused.body["details"].to_string();
    for name in ["Host", "Content-Length", "Transfer-Encoding", "Connection"] {
        assert!(
            details.contains(&format!("headers.{name}:")),
            "{name}: {details}"
        );
    }
    assert_eq!(template.status, 201, "{}", template.body);
    for (i, view) in views.iter().enumerate() {
        for secret in ["X-Api-Key", "Cookie", "X-Hub-Signature", "X-Auth-Token"] {
            assert_eq!(view[secret], "***redacted***", "view {i}, {secret}: {view}");
        }
        assert_eq!(
            view["Content-Type"], "application/cloudevents+json",
            "view {i}"
        );
        assert_eq!(view["Accept"], "*/*", "view {i}");
        assert_eq!(view["User-Agent"], "lab-rig", "view {i}");
    }
}
