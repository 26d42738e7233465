//! Rules that act, with real peers: a JSON log and a capture on disk, an event routed into
//! a session, e-mails through a real SMTP server (Python's aiosmtpd) that is down at first,
//! and a digest that survives a SIGKILL and is sent once.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::sources::envelope;

pub(crate) fn temp(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("synopticon-{prefix}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A real SMTP server writing what it receives into a Maildir.
pub(crate) struct Smtp {
    child: Child,
    pub(crate) port: u16,
    pub(crate) maildir: PathBuf,
}

impl Smtp {
    /// On a free port.
    pub(crate) fn start() -> Smtp {
        let port = free_port();
        Self::start_on(port, temp("maildir"))
    }

    pub(crate) fn start_on(port: u16, maildir: PathBuf) -> Smtp {
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(maildir.join(sub)).expect("maildir");
        }
        let child = Command::new("/usr/bin/python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("aiosmtpd (make test installs python3-aiosmtpd)");
        let deadline = std::time::Instant::now() + DEADLINE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "aiosmtpd did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Smtp {
            child,
            port,
            maildir,
        }
    }

    /// The messages received, as text, oldest first.
    pub(crate) fn messages(&self) -> Vec<String> {
        read_maildir(&self.maildir)
    }
}

pub(crate) fn read_maildir(maildir: &Path) -> Vec<String> {
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(maildir.join("new"))
        .map(|d| {
            d.flatten()
                .map(|e| {
                    (
                        e.metadata()
                            .and_then(|m| m.modified())
                            .unwrap_or(std::time::UNIX_EPOCH),
                        e.path(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
        .into_iter()
        .filter_map(|(_, p)| std::fs::read_to_string(p).ok())
        .collect()
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The test photo as an envelope's `frame_data`.
fn frame_data() -> Value {
    let jpeg = std::fs::read(asset("images/bus.jpg")).expect("image");
    json!({"encoding": "jpeg", "quality": 85,
        "base64": base64::engine::general_purpose::STANDARD.encode(jpeg)})
}

/// Frames of one person walking down across the door line, back up, and down again.
pub(crate) fn there_and_back() -> Vec<Value> {
    let mut ys: Vec<f32> = (0..8).map(|i| 150.0 + i as f32 * 25.0).collect();
    ys.extend((0..8).map(|i| 325.0 - i as f32 * 25.0));
    ys.extend((0..8).map(|i| 150.0 + i as f32 * 25.0));
    ys.iter()
        .enumerate()
        .map(|(n, y)| {
            let mut e = envelope(n as i64, &[(300.0, *y)]);
            e["frame_data"] = frame_data();
            e
        })
        .collect()
}

pub(crate) async fn door_cam(app: &TestApp) {
    let created = app
        .post(
            "/api/v1/sources",
            &json!({"id": "door-cam", "kind": "external", "detections_events": false,
                "lines": [{"id": "door", "points": [[0, "50%"], ["100%", "50%"]]}]}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
}

pub(crate) async fn feed(app: &TestApp, frames: &[Value]) {
    for f in frames {
        let r = app.post("/api/v1/sources/door-cam/detections", f).await;
        assert_eq!(r.status, 202, "{}", r.body);
    }
}

pub(crate) async fn rule_status(
    app: &TestApp,
    name: &str,
    until: impl Fn(&Value) -> bool,
) -> Value {
    wait_until(&format!("rule {name}"), DEADLINE, || async {
        let s = app.get(&format!("/api/v1/rules/{name}")).await.body;
        until(&s).then_some(s)
    })
    .await
}

/// A server whose rules log and capture into a fresh folder: the app, the folder, and its
/// `events` (logs) and `captures` folders.
pub(crate) async fn app_with_rule_folders(prefix: &str) -> (TestApp, PathBuf, PathBuf, PathBuf) {
    let dir = temp(prefix);
    let (logs, captures) = (dir.join("events"), dir.join("captures"));
    let app = spawn_app_with({
        let (logs, captures) = (logs.clone(), captures.clone());
        move |s| {
            s.rules.log_dir = logs.display().to_string();
            s.rules.captures_dir = captures.display().to_string();
        }
    })
    .await;
    (app, dir, logs, captures)
}

#[tokio::test]
async fn a_rule_logs_captures_and_routes_each_crossing_once_per_track() {
    let (app, dir, logs, captures) = app_with_rule_folders("rules").await;
    door_cam(&app).await;
    app.create_session(json!({"id": "alerts"})).await;
    let mut alerts = app.ws("alerts", "").await;
    let put = app
        .put(
            "/api/v1/rules/door-in",
            &json!({"description": "someone comes in",
                "match": {"event": "LINE_CROSS", "lines": ["door"], "direction": "in", "classes": ["person"]},
                "trackCooldownSecs": 600,
                "actions": ["json_log", "frame_capture", {"type": "session", "session": "alerts"}]}),
        )
        .await;
    assert_eq!(put.status, 201, "{}", put.body);
    let bad = app
        .put(
            "/api/v1/rules/bad",
            &json!({"match": {"direction": "up"}, "actions": []}),
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.body);

    feed(&app, &there_and_back()).await;

    // In, out, in again: the rule takes "in", and the second "in" of the same track is
    // held back by the per-track cooldown.
    let status = rule_status(&app, "door-in", |s| {
        s["actions"]
            .as_array()
            .is_some_and(|a| a.iter().all(|a| a["done"] == 1))
    })
    .await;
    assert_eq!(status["matched"], 1, "{status}");
    assert_eq!(status["cooled_down"], 1, "{status}");
    // The source counts what crossed its line, for its page in the dashboard.
    let source = app.get("/api/v1/sources/door-cam").await.body;
    assert_eq!(
        source["stats"]["counts"]["lines"]["door"],
        json!({"in": 2, "out": 1}),
        "{source}"
    );

    let routed = alerts
        .next_event()
        .await
        .expect("rule_matched in the session");
    assert_eq!(routed["event"], "rule_matched");
    assert_eq!(routed["data"]["rule"], "door-in");
    assert_eq!(routed["data"]["event"], "line_cross");
    assert_eq!(routed["data"]["source"], "door-cam");
    assert_eq!(routed["data"]["data"]["direction"], "in");

    let log_files: Vec<PathBuf> = std::fs::read_dir(&logs)
        .expect("the log folder")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(log_files.len(), 1, "{log_files:?}");
    assert!(
        log_files[0].to_string_lossy().ends_with("2026-11-22.jsonl"),
        "{log_files:?}"
    );
    let lines: Vec<Value> = std::fs::read_to_string(&log_files[0])
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["rule"], "door-in");
    assert_eq!(lines[0]["data"]["line_id"], "door");

    let mut jpegs = Vec::new();
    collect_files(&captures, &mut jpegs);
    assert_eq!(jpegs.len(), 1, "{jpegs:?}");
    let path = jpegs[0].to_string_lossy().to_string();
    assert!(
        path.contains("/door-cam/2026-11-22/") && path.ends_with("-door-in-line_cross-1.jpg"),
        "{path}"
    );
    let bytes = std::fs::read(&jpegs[0]).unwrap();
    assert_eq!(&bytes[..3], &[0xFF, 0xD8, 0xFF], "a JPEG");
    // The dashboard lists the newest captures and shows them.
    let listed = app.get("/api/v1/rules/captures").await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let relative = jpegs[0]
        .strip_prefix(&captures)
        .unwrap()
        .display()
        .to_string();
    assert_eq!(listed.body["captures"][0]["path"], relative.as_str());
    assert_eq!(listed.body["captures"][0]["bytes"], bytes.len());
    let shown = app
        .request(
            reqwest::Method::GET,
            &format!("/api/v1/rules/captures/{relative}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(shown.status(), 200);
    assert_eq!(shown.headers()["content-type"], "image/jpeg");
    assert_eq!(shown.bytes().await.unwrap().as_ref(), bytes.as_slice());
    // A JPEG just outside the folder, named through `..` and through a link inside it,
    // is not served.
    std::fs::write(dir.join("secret.jpg"), &bytes).unwrap();
    let outside = app.get("/api/v1/rules/captures/..%2Fsecret.jpg").await;
    assert_eq!(outside.status, 404, "{}", outside.body);
    let dotted = app.get("/api/v1/rules/captures/%2e%2e/secret.jpg").await;
    assert_eq!(dotted.status, 404, "{}", dotted.body);
    std::os::unix::fs::symlink(dir.join("secret.jpg"), captures.join("link.jpg")).unwrap();
    let linked = app.get("/api/v1/rules/captures/link.jpg").await;
    assert_eq!(linked.status, 404, "{}", linked.body);
    // The same file inside is served: the refusals are about where it is.
    std::fs::copy(dir.join("secret.jpg"), captures.join("inside.jpg")).unwrap();
    assert_eq!(
        app.get("/api/v1/rules/captures/inside.jpg").await.status,
        200
    );

    let tried = app
        .post(
            "/api/v1/rules/test",
            &json!({"event": "ZONE_ENTER", "data": {"zone_id": "porch"}, "source": "door-cam"}),
        )
        .await;
    assert_eq!(tried.status, 200, "{}", tried.body);
    assert_eq!(tried.body["results"][0]["matches"], false);
    assert_eq!(
        tried.body["results"][0]["why"],
        "event zone_enter is not one of line_cross"
    );
    let would = app
        .post(
            "/api/v1/rules/test",
            &json!({"event": "line_cross", "data": {"line_id": "door", "direction": "in", "class_name": "person"}}),
        )
        .await;
    assert_eq!(would.body["results"][0]["matches"], true, "{}", would.body);
    // Recorded envelopes, replayed through the source's line without acting: the crossing
    // in matches, the crossing out says why not.
    let before = app.get("/api/v1/rules/door-in").await.body;
    let recorded: Vec<Value> = there_and_back()[..16]
        .iter()
        .map(|e| {
            let mut e = e.clone();
            e.as_object_mut().map(|m| m.remove("frame_data"));
            e
        })
        .collect();
    let replayed = app
        .post(
            "/api/v1/rules/test",
            &json!({"source": "door-cam", "envelopes": recorded}),
        )
        .await;
    assert_eq!(replayed.status, 200, "{}", replayed.body);
    let crossings: Vec<(Value, Value)> = replayed.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "line_cross")
        .map(|e| (e["data"]["direction"].clone(), e["results"][0].clone()))
        .collect();
    assert_eq!(crossings.len(), 2, "{}", replayed.body);
    assert_eq!(crossings[0].0, "in");
    assert_eq!(crossings[0].1["matches"], true);
    assert_eq!(crossings[1].1["why"], "direction out is not in");
    let after = app.get("/api/v1/rules/door-in").await.body;
    assert_eq!(
        before["matched"], after["matched"],
        "a test acts on nothing"
    );
    assert_eq!(app.delete("/api/v1/rules/door-in").await.status, 204);
    assert_eq!(app.get("/api/v1/rules/door-in").await.status, 404);
    let _ = std::fs::remove_dir_all(&dir);
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[tokio::test]
async fn an_email_waits_for_an_smtp_server_that_is_down_and_arrives_with_its_capture() {
    let port = free_port();
    let app = spawn_app_with(move |s| {
        s.rules.smtp.host = "127.0.0.1".into();
        s.rules.smtp.port = port;
        s.rules.smtp.security = synopticon_actors::rules::email::Security::None;
        s.rules.smtp.from = "Synopticon <alerts@lab.example>".into();
    })
    .await;
    door_cam(&app).await;
    app.create_session(json!({"id": "lab", "sources": ["door-cam"]}))
        .await;
    let mut ws = app.ws("lab", "").await;
    let put = app
        .put(
            "/api/v1/rules/door-mail",
            &json!({"match": {"events": ["line_cross"], "direction": "in"}, "trackCooldownSecs": 600,
                "actions": [{"type": "email_immediate", "to": ["ops@lab.example"],
                    "subject": "{rule}: {class} crossed {line} ({direction})"}]}),
        )
        .await;
    assert_eq!(put.status, 201, "{}", put.body);

    // The SMTP server is not there yet: the e-mail waits and is tried again, while the
    // pipeline goes on (the session receives every event).
    feed(&app, &there_and_back()[..8]).await;
    let failing = rule_status(&app, "door-mail", |s| {
        s["actions"][0]["retries"].as_u64() >= Some(2)
    })
    .await;
    assert_eq!(failing["actions"][0]["breaker"], "open", "{failing}");
    assert_eq!(failing["actions"][0]["done"], 0);
    let seen = ws.events(2).await;
    assert_eq!(
        seen[1]["event"], "line_cross",
        "events flow while SMTP is down"
    );

    let smtp = Smtp::start_on(port, temp("maildir"));
    let sent = rule_status(&app, "door-mail", |s| s["actions"][0]["done"] == 1).await;
    assert_eq!(sent["actions"][0]["breaker"], "closed", "{sent}");
    let messages = wait_until("the e-mail", DEADLINE, || async {
        let m = smtp.messages();
        (!m.is_empty()).then_some(m)
    })
    .await;
    assert_eq!(messages.len(), 1);
    let mail = &messages[0];
    assert!(
        mail.contains("Subject: door-mail: person crossed door (in)"),
        "{mail:.600}"
    );
    assert!(mail.contains("X-RcptTo: ops@lab.example"), "{mail:.600}");
    assert!(
        mail.contains("From: Synopticon <alerts@lab.example>"),
        "{mail:.600}"
    );
    assert!(
        mail.contains("Content-Type: image/jpeg"),
        "a capture attached"
    );
    assert!(
        mail.contains("filename=\"line_cross-20261122-"),
        "{mail:.2000}"
    );
}

/// A processor with the door camera, a digest rule every `every` seconds, on `store`.
fn digest_config(store: &Path, smtp: u16, every: u64) -> String {
    format!(
        "[server]\nport = 0\n[store]\nurl = \"sqlite://{}/store.db\"\n\
         [rules.smtp]\nhost = \"127.0.0.1\"\nport = {smtp}\nsecurity = \"none\"\n\
         [[rules.declared]]\nname = \"daily\"\nmatch = {{events = [\"line_cross\"]}}\n\
         actions = [{{type = \"email_digest\", to = [\"ops@lab.example\"], everySecs = {every}}}]\n\
         [[sources]]\nid = \"door-cam\"\nkind = \"external\"\ndetections_events = false\n\
         lines = [{{id = \"door\", points = [[0, \"50%\"], [\"100%\", \"50%\"]]}}]\n",
        store.display()
    )
}

#[tokio::test]
async fn a_digest_keeps_what_it_gathered_across_a_sigkill_and_is_sent_once() {
    let smtp = Smtp::start();
    let store = temp("digest");
    // The first process's digest is far from due, so it cannot be sending when it is
    // killed; the second's period is short, so what was kept is due at once.
    let mut first = ServerProcess::start(&digest_config(&store, smtp.port, 3600));
    let config = digest_config(&store, smtp.port, 4);
    feed(&first.app, &there_and_back()[..16]).await;
    let status = rule_status(&first.app, "daily", |s| s["actions"][0]["gathered"] == 2).await;
    assert_eq!(status["actions"][0]["done"], 0, "not due yet: {status}");
    // Killed before the digest was due: what it gathered is in the store.
    first.child.kill().expect("SIGKILL");
    let _ = first.child.wait();
    assert!(smtp.messages().is_empty());

    let mut second = ServerProcess::start(&config);
    let messages = wait_until("the digest", DEADLINE, || async {
        let m = smtp.messages();
        (!m.is_empty()).then_some(m)
    })
    .await;
    assert_eq!(messages.len(), 1);
    let digest = &messages[0];
    assert!(
        digest.contains("Subject: [Synopticon] daily: 2 event(s)"),
        "{digest:.800}"
    );
    assert!(digest.contains("door"), "counts by line: {digest:.1500}");
    // Two more periods with nothing new: no other digest.
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert_eq!(smtp.messages().len(), 1, "nothing gathered, nothing sent");
    let status = second.app.get("/api/v1/rules/daily").await.body;
    assert_eq!(status["actions"][0]["gathered"], 0, "{status}");
    // A restart does not send the same digest again.
    let _ = Command::new("kill")
        .args(["-TERM", &second.child.id().to_string()])
        .status();
    let _ = second.child.wait();
    let _third = ServerProcess::start(&config);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(smtp.messages().len(), 1);
    let _ = std::fs::remove_dir_all(&store);
}

#[tokio::test]
async fn a_webhook_action_is_tried_again_after_a_server_error_and_a_refusal_is_final() {
    use crate::webhook::{Receiver, Reply};
    let hooks = Receiver::start(
        0,
        vec![Reply::Status(503), Reply::Status(200), Reply::Status(400)],
    );
    let app = spawn_app().await;
    door_cam(&app).await;
    let put = app
        .put(
            "/api/v1/rules/door-hook",
            &json!({"match": {"events": ["line_cross"]},
                "actions": [{"type": "webhook", "url": format!("{}/gate", hooks.url()),
                    "headers": {"Authorization": "Bearer hook-secret"}}]}),
        )
        .await;
    assert_eq!(put.status, 201, "{}", put.body);
    assert_eq!(
        put.body["config"]["actions"][0]["headers"]["Authorization"],
        "***redacted***"
    );
    // Two crossings (down, then up): the first is refused once (503) and delivered, the
    // second refused for good (400).
    feed(&app, &there_and_back()[..16]).await;
    let status = rule_status(&app, "door-hook", |s| {
        s["actions"][0]["done"] == 1 && s["actions"][0]["failed"] == 1
    })
    .await;
    assert_eq!(status["actions"][0]["retries"], 1, "{status}");
    let got = hooks.requests();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].body, got[1].body, "the same match, tried again");
    assert_eq!(got[1].body["rule"], "door-hook");
    assert_eq!(got[1].body["data"]["direction"], "in");
    assert_eq!(got[2].body["data"]["direction"], "out");
    assert_eq!(got[1].authorization.as_deref(), Some("Bearer hook-secret"));
}

#[tokio::test]
async fn what_cannot_succeed_fails_at_once_and_a_rule_without_events_skips_per_frame_detections() {
    let app = spawn_app_with(|s| s.server.egress.deny = vec!["10.0.0.0/8".into()]).await;
    door_cam(&app).await;
    // A webhook the egress policy refuses is a validation error, not a queue of retries.
    let refused = app
        .put(
            "/api/v1/rules/inside",
            &json!({"actions": [{"type": "webhook", "url": "http://10.1.2.3:8080/hook"}]}),
        )
        .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(
        refused.body["details"]
            .to_string()
            .contains("egress policy refuses"),
        "{}",
        refused.body
    );
    // Legal but not working yet: said in the answer.
    let mail = app
        .put(
            "/api/v1/rules/mail",
            &json!({"match": {"events": ["zone_enter"]},
                "actions": [{"type": "email_immediate", "to": "guard@example.org"}]}),
        )
        .await;
    assert_eq!(mail.status, 201, "{}", mail.body);
    assert!(
        mail.body["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("[rules.smtp]")),
        "{}",
        mail.body
    );
    // A session that is not open will not open by waiting: each match fails at once.
    let put = app
        .put(
            "/api/v1/rules/nowhere",
            &json!({"match": {"events": ["line_cross"]},
                "actions": [{"type": "session", "session": "never-opened"}]}),
        )
        .await;
    assert_eq!(put.status, 201, "{}", put.body);
    feed(&app, &there_and_back()[..16]).await;
    let status = rule_status(&app, "nowhere", |s| s["actions"][0]["failed"] == 2).await;
    assert_eq!(status["actions"][0]["retries"], 0, "{status}");
    assert_eq!(status["actions"][0]["done"], 0, "{status}");
    assert!(
        status["actions"][0]["last_error"][0]
            .as_str()
            .is_some_and(|e| e.contains("never-opened")),
        "{status}"
    );

    // Every event but the per-frame detections, unless they are named.
    assert_eq!(app.delete("/api/v1/rules/mail").await.status, 204);
    assert_eq!(app.delete("/api/v1/rules/nowhere").await.status, 204);
    let all = app
        .put("/api/v1/rules/all", &json!({"actions": ["json_log"]}))
        .await;
    assert_eq!(all.status, 201, "{}", all.body);
    let frames = app
        .put(
            "/api/v1/rules/frames",
            &json!({"match": {"events": ["detections"]}, "actions": ["json_log"]}),
        )
        .await;
    assert_eq!(frames.status, 201, "{}", frames.body);
    let tried = app
        .post(
            "/api/v1/rules/test",
            &json!({"event": "detections", "data": {"detections": []}, "source": "door-cam"}),
        )
        .await;
    assert_eq!(tried.status, 200, "{}", tried.body);
    let results = tried.body["results"].as_array().expect("results");
    let by_rule = |name: &str| {
        results
            .iter()
            .find(|r| r["rule"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(by_rule("all")["matches"], false, "{}", tried.body);
    assert!(
        by_rule("all")["why"]
            .as_str()
            .is_some_and(|w| w.contains("every frame")),
        "{}",
        tried.body
    );
    assert_eq!(by_rule("frames")["matches"], true, "{}", tried.body);
    let crossing = app
        .post(
            "/api/v1/rules/test",
            &json!({"event": "line_cross", "data": {"line_id": "door"}}),
        )
        .await;
    let results = crossing.body["results"].as_array().expect("results");
    assert!(
        results
            .iter()
            .any(|r| r["rule"] == "all" && r["matches"] == true),
        "{}",
        crossing.body
    );
}

#[tokio::test]
async fn an_alert_is_never_lost_to_the_length_of_its_subject_or_lines() {
    let smtp = Smtp::start();
    let port = smtp.port;
    let app = spawn_app_with(move |s| {
        s.rules.smtp.host = "127.0.0.1".into();
        s.rules.smtp.port = port;
        s.rules.smtp.security = synopticon_actors::rules::email::Security::None;
        s.rules.smtp.from = "alerts@lab.example".into();
    })
    .await;
    door_cam(&app).await;
    // A subject of 1,500 characters without a space (no SMTP line may pass 998), and a
    // body line of 3,000.
    let long_word = "x".repeat(1500);
    let long_line = format!("data:{}:end", "y".repeat(3000));
    let put = app
        .put(
            "/api/v1/rules/long-mail",
            &json!({"match": {"events": ["line_cross"]},
                "actions": [{"type": "email_immediate", "to": ["ops@lab.example"],
                    "subject": format!("{{rule}} {long_word}"), "body": format!("{{class}}\n{long_line}\n"),
                    "attachCapture": false}]}),
        )
        .await;
    assert_eq!(put.status, 201, "{}", put.body);
    feed(&app, &there_and_back()[..8]).await;
    let sent = rule_status(&app, "long-mail", |s| {
        s["actions"][0]["done"] == 1 || s["actions"][0]["failed"].as_u64() > Some(0)
    })
    .await;
    assert_eq!(sent["actions"][0]["done"], 1, "sent, not failed: {sent}");
    let messages = wait_until("the e-mail", DEADLINE, || async {
        let m = smtp.messages();
        (!m.is_empty()).then_some(m)
    })
    .await;
    let mail = &messages[0];
    assert!(
        mail.lines().all(|l| l.len() <= 998),
        "every line within SMTP's limit"
    );
    let subject = mail
        .lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .expect("a subject");
    // Cut to 200 characters, on one line (a header folded at its space continues on the
    // next line, starting with white space).
    let folded: String = mail
        .split_once("Subject: ")
        .map(|(_, rest)| {
            let mut lines = rest.lines();
            let first = lines.next().unwrap_or_default().to_string();
            lines
                .take_while(|l| l.starts_with(' ') || l.starts_with('\t'))
                .fold(first, |acc, l| acc + l.trim_start_matches([' ', '\t']))
        })
        .unwrap_or_default();
    assert!(folded.starts_with("long-mail"), "{subject:.80}");
    assert!(folded.ends_with("..."), "{folded}");
    assert_eq!(
        folded.chars().filter(|c| *c == 'x').count(),
        190,
        "{folded}"
    );
    // The body comes back whole once its soft line breaks are undone.
    let unfolded = mail.replace("=\r\n", "").replace("=\n", "");
    assert!(unfolded.contains(&long_line), "the long line, whole");
    assert!(unfolded.contains("person"), "{mail:.400}");
}
