//! The dashboard in a real browser: each test starts a server, then runs a script of
//! tests/browser/ (puppeteer-core driving the system's Chromium, headless) against it and
//! checks what the script saw and what the server holds afterwards. Screenshots of each
//! page land in tests/browser/artifacts/. `make test-deps` (scripts/browser-deps.sh)
//! installs Chromium, Node.js and puppeteer-core; without them these tests fail, saying so.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::{asset, spawn_app, spawn_app_with, token_config, ServerProcess, TestApp};
use crate::pipeline::{ready, with_face_models};

/// Longest a script may run before it is stopped (each sets a shorter deadline of its own).
const SCRIPT_DEADLINE: Duration = Duration::from_secs(90);

const ADMIN: &str = "syn_browser-admin-000000000000000000000000000000000";
const VIEWER: &str = "syn_browser-viewer-00000000000000000000000000000000";

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// The Chromium the scripts drive: `$CHROMIUM`, else Debian's.
fn chromium() -> String {
    std::env::var("CHROMIUM")
        .ok()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "/usr/bin/chromium".into())
}

/// Fails the test with the fix when the browser, Node.js or puppeteer-core is missing.
fn check_tools() {
    const FIX: &str = "run `make test-deps` (or ./scripts/browser-deps.sh), which installs it";
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "the browser tests need Node.js (`node` on the PATH): {FIX}; got {node:?}"
    );
    let chromium = chromium();
    assert!(
        Path::new(&chromium).is_file(),
        "the browser tests need Chromium at {chromium} (apt package `chromium`; or set CHROMIUM): {FIX}"
    );
    let puppeteer = browser_dir().join("node_modules/puppeteer-core/package.json");
    assert!(
        puppeteer.is_file(),
        "the browser tests need puppeteer-core in tests/browser/node_modules ({} is missing): {FIX}",
        puppeteer.display()
    );
}

/// What a script did: its exit, the JSON line it printed last, its progress log.
struct ScriptRun {
    script: String,
    exit: Option<i32>,
    result: Value,
    log: String,
    elapsed: Duration,
}

impl ScriptRun {
    /// The results (printed), after asserting the script finished every step (exit 0,
    /// `"ok": true`).
    fn ok(&self) -> &Value {
        assert!(
            self.exit == Some(0) && self.result["ok"] == true,
            "{} failed (exit {:?}) at step {:?}: {}\nresults: {}\nscript log:\n{}",
            self.script,
            self.exit,
            self.result["step"],
            self.result["error"],
            self.result,
            self.log
        );
        // Shown with the test's output when a later assertion fails.
        eprintln!("{} results: {}", self.script, self.result);
        let errors = &self.result["page_errors"];
        assert!(
            errors.as_array().is_none_or(Vec::is_empty),
            "{}: uncaught errors in the page: {errors}",
            self.script
        );
        &self.result
    }
}

/// Runs `node tests/browser/{script}` with `vars` (and CHROMIUM, ARTIFACTS), stopping it
/// after [`SCRIPT_DEADLINE`]: SIGTERM first (puppeteer then kills its browser), SIGKILL
/// if it still runs.
async fn run_script(script: &str, vars: &[(&str, &str)]) -> ScriptRun {
    check_tools();
    let started = Instant::now();
    let dir = browser_dir();
    let mut child = tokio::process::Command::new("node")
        .arg(dir.join(script))
        .current_dir(&dir)
        .env("CHROMIUM", chromium())
        .env("ARTIFACTS", dir.join("artifacts"))
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("node {script} does not start: {e}"));
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let name = script.to_string();
    // The progress log is shown as it comes (nextest prints it for a failed test).
    let log = tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        let mut all = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("[{name}] {line}");
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let out = tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        let mut last = None;
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with('{') {
                last = Some(line);
            }
        }
        last
    });
    let status = match tokio::time::timeout(SCRIPT_DEADLINE, child.wait()).await {
        Ok(status) => status.expect("waiting for node"),
        Err(_) => {
            if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                // SAFETY: a plain kill(2) of the node process this test started.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            if tokio::time::timeout(Duration::from_secs(5), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
            let log = tokio::time::timeout(Duration::from_secs(2), log)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            panic!("node {script} did not finish within {SCRIPT_DEADLINE:?}; its log:\n{log}");
        }
    };
    let line = tokio::time::timeout(Duration::from_secs(5), out)
        .await
        .ok()
        .and_then(Result::ok)
        .flatten();
    let log = tokio::time::timeout(Duration::from_secs(5), log)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let result = match &line {
        Some(l) => serde_json::from_str(l)
            .unwrap_or_else(|e| panic!("{script} printed a line that is not JSON ({e}): {l}")),
        None => Value::Null,
    };
    let run = ScriptRun {
        script: script.into(),
        exit: status.code(),
        result,
        log,
        elapsed: started.elapsed(),
    };
    eprintln!("{script}: exit {:?} after {:?}", run.exit, run.elapsed);
    assert!(
        line.is_some(),
        "{script} printed no JSON result line (exit {:?}); its log:\n{}",
        run.exit,
        run.log
    );
    run
}

fn names(rows: &Value) -> Vec<&str> {
    rows.as_array()
        .into_iter()
        .flatten()
        .map(|r| r["event"].as_str().or_else(|| r.as_str()).unwrap_or("?"))
        .collect()
}

#[tokio::test]
async fn the_dashboard_creates_a_session_follows_its_events_and_draws_a_line_on_a_video_source() {
    check_tools();
    // A video file played through the small face model: frames with faces, so boxes.
    let app = spawn_app_with(with_face_models).await;
    ready(&app).await;
    let (session, source, line) = ("browser-lab", "browser-cam", "browser-gate");
    let created = app
        .post(
            "/api/v1/sources",
            &json!({"id": source, "kind": "file", "url": asset("videos/Megamind.avi"),
                    "fps": 5, "loop": true, "model": "face-small", "detections_events": false}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);

    let run = run_script(
        "dashboard.mjs",
        &[
            ("BASE_URL", &app.address),
            ("SESSION_ID", session),
            ("SOURCE_ID", source),
            ("LINE_ID", line),
        ],
    )
    .await;
    let r = run.ok();

    // Overview.
    assert!(
        ["ok", "degraded"].contains(&r["health"].as_str().unwrap_or_default()),
        "health pill: {}",
        r["health"]
    );
    assert!(
        r["components"].as_array().is_some_and(|c| c.len() >= 3),
        "{}",
        r["components"]
    );
    assert_eq!(r["role"], "no authentication");
    assert!(
        r["overview_375_scroll_width"].as_u64() <= Some(375),
        "the overview at 375 px wide scrolls sideways: {}",
        r["overview_375_scroll_width"]
    );
    // The bad id: refused, the reason shown by the id field; the good one leaves it empty.
    let bad = r["bad_id_error"].as_str().unwrap_or_default();
    assert!(
        bad.contains("bad id!") && bad.contains("letters"),
        "[data-test=error-id]: {bad:?}"
    );
    assert_eq!(
        r["id_error_after_success"], "",
        "the id error stays after a success"
    );
    assert_eq!(
        app.get("/api/v1/sessions/bad%20id!").await.status,
        404,
        "the bad id made nothing"
    );
    // The sse distributor switched off and on from its card, and so on the server.
    let states: Vec<&str> = r["sse_states"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        states.len() == 3
            && states[0].starts_with("enabled")
            && states[1] == "disabled"
            && states[2].starts_with("enabled"),
        "[data-test=distributor-state] of sse: {states:?}"
    );
    assert_eq!(r["sse_enabled_over_rest_after_disable"], false);
    assert_eq!(r["sse_enabled_over_rest_after_enable"], true);
    // Live events, newest first, with their data.
    assert_eq!(
        names(&r["rows_first"]),
        ["browser_alpha", "browser_beta", "browser_alpha"]
    );
    let seqs: Vec<u64> = r["rows_first"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x["seq"].as_u64())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seqs:?}"
    );
    assert!(
        r["rows_first"][0]["data"]
            .as_str()
            .is_some_and(|d| d.contains("\"n\":3")),
        "{}",
        r["rows_first"][0]
    );
    // Paused: counted, not shown; resumed: shown.
    assert_eq!(r["pause_label"], "Resume");
    assert_eq!(r["pending_while_paused"], "paused: 2 new");
    assert_eq!(r["rows_while_paused"], 3, "rows appeared while paused");
    assert_eq!(r["resume_label"], "Pause");
    assert_eq!(r["pending_after_resume"], "");
    assert_eq!(
        names(&r["rows_after_resume"]),
        [
            "browser_gamma",
            "browser_gamma",
            "browser_alpha",
            "browser_beta",
            "browser_alpha"
        ]
    );
    // The filter.
    assert_eq!(
        names(&r["filtered_alpha"]),
        ["browser_alpha", "browser_alpha"]
    );
    assert_eq!(
        names(&r["filtered_glob"]),
        ["browser_gamma", "browser_gamma"]
    );
    assert_eq!(r["filtered_none"].as_array().map(Vec::len), Some(5));
    let status = app.status(session).await;
    assert_eq!(status["state"], "open");
    assert_eq!(status["events_received"], 5);
    assert!(
        status["distributors"]
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d["kind"] == "sse")),
        "sse enabled at the end: {status}"
    );

    // The frame, and a face's box drawn over it.
    assert_eq!(
        r["frame_size"],
        json!([720, 528]),
        "the frame's natural size"
    );
    let boxed = &r["box_check"];
    assert!(
        boxed["left_edge_ink"].as_u64() > Some(0) && boxed["right_edge_ink"].as_u64() > Some(0),
        "{boxed}"
    );
    assert_eq!(
        boxed["center_alpha"], 0,
        "only the box's outline is drawn: {boxed}"
    );
    assert_eq!(boxed["class_name"], "face", "{boxed}");

    // The line drawn with two clicks is in the source's configuration, where it was clicked.
    let src = app.get(&format!("/api/v1/sources/{source}")).await;
    assert_eq!(src.status, 200, "{}", src.body);
    let lines = src.body["config"]["lines"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let drawn = lines.iter().find(|l| l["id"] == line).unwrap_or_else(|| {
        panic!(
            "line {line} not in the source's lines: {}",
            src.body["config"]
        )
    });
    let expected = &r["line_expected"];
    for i in 0..2 {
        for k in 0..2 {
            let got = drawn["points"][i][k].as_f64().unwrap_or(f64::NAN);
            let want = expected[i][k].as_f64().unwrap_or(f64::NAN);
            assert!(
                (got - want).abs() <= 3.0,
                "point {i} of {line}: got {}, clicked at {} (natural pixels)",
                drawn["points"],
                expected
            );
        }
    }
    eprintln!(
        "dashboard: {:?}, screenshots: {}",
        run.elapsed, r["screenshots"]
    );
}

#[tokio::test]
async fn the_dashboard_asks_for_a_token_and_a_viewer_token_cannot_change_anything() {
    check_tools();
    let hash = synopticon::auth::tokens::hash_hex;
    let recordings =
        std::env::temp_dir().join(format!("synopticon-recordings-{}", uuid::Uuid::new_v4()));
    let server = ServerProcess::start(&format!(
        "[server]\nport = 0\nmode = \"production\"\n[log]\nlevel = \"warn,synopticon::startup=info\"\n\
         [recording]\ndir = \"{}\"\n\
         [[auth.tokens]]\nid = \"browser-admin\"\nrole = \"admin\"\nsha256 = \"{}\"\n\
         [[auth.tokens]]\nid = \"browser-viewer\"\nrole = \"viewer\"\nsha256 = \"{}\"\n",
        recordings.display(),
        hash(ADMIN),
        hash(VIEWER)
    ));
    let admin = server.app.with_token(ADMIN);
    let (existing, source) = ("browser-existing", "browser-yard");
    admin
        .create_session(json!({"id": existing, "template": "local_testing"}))
        .await;
    let made = admin
        .post(
            "/api/v1/sources",
            &json!({"id": source, "kind": "external"}),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    // A recording of the session, stopped, playing into it (slowly, then paused), and one
    // still running: the viewer sees their controls, every one disabled.
    let record = |spec: Value| {
        let admin = &admin;
        async move {
            let r = admin
                .post(&format!("/api/v1/sessions/{existing}/recordings"), &spec)
                .await;
            assert_eq!(r.status, 201, "{}", r.body);
            r.body["id"].as_str().expect("a recording id").to_string()
        }
    };
    let stopped = record(json!({"label": "before"})).await;
    admin
        .publish(existing, json!([{"event": "trial_start", "data": {}}]))
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    admin
        .publish(existing, json!([{"event": "trial_end", "data": {}}]))
        .await;
    let r = admin
        .post(&format!("/api/v1/recordings/{stopped}/stop"), &json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let running = record(json!({"label": "now"})).await;
    let r = admin
        .post(
            &format!("/api/v1/sessions/{existing}/replay"),
            &json!({"recording": stopped, "rate": 0.01}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = admin
        .post(
            &format!("/api/v1/sessions/{existing}/replay/pause"),
            &json!({}),
        )
        .await;
    assert_eq!(r.body["state"], "paused", "{}", r.body);

    let run = run_script(
        "auth.mjs",
        &[
            ("BASE_URL", &server.app.address),
            ("ADMIN_TOKEN", ADMIN),
            ("VIEWER_TOKEN", VIEWER),
            (
                "WRONG_TOKEN",
                "syn_browser-wrong-0000000000000000000000000000000000",
            ),
            ("SESSION_ID", existing),
            ("SOURCE_ID", source),
            ("VIEWER_SESSION_ID", "browser-by-viewer"),
            ("ADMIN_SESSION_ID", "browser-by-admin"),
            ("RECORDING_ID", &stopped),
            ("RUNNING_RECORDING_ID", &running),
        ],
    )
    .await;
    let r = run.ok();

    assert!(
        r["wrong_token_message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "[data-test=token-error] after a wrong token: {}",
        r["wrong_token_message"]
    );
    assert_eq!(
        r["prompt_after_wrong"], true,
        "the prompt stays after a wrong token"
    );
    assert_eq!(r["viewer_role_text"], "read-only (viewer)");
    for page in ["sessions", "session", "recordings", "source"] {
        assert_eq!(
            r["viewer_enabled_controls"][page],
            json!([]),
            "controls that change something, enabled for a viewer on the {page} page"
        );
    }
    assert_eq!(
        r["viewer_writes"],
        json!([]),
        "write requests sent with the viewer token"
    );
    // What the viewer was shown: the replay and the recordings, with their controls off.
    assert_eq!(r["viewer_replay_state"], "paused");
    assert!(
        strings(&r["viewer_disabled_replay_controls"]).len() >= 5,
        "the replay's controls a viewer sees, disabled: {}",
        r["viewer_disabled_replay_controls"]
    );
    let mut rows = strings(&r["viewer_recordings"]);
    rows.sort_unstable();
    let mut both = vec![stopped.as_str(), running.as_str()];
    both.sort_unstable();
    assert_eq!(rows, both, "the recordings a viewer sees");
    assert_eq!(r["viewer_download_enabled"], true, "a viewer may download");
    assert!(
        r["viewer_download_status"]
            .as_str()
            .is_some_and(|t| t.contains("downloaded")),
        "a viewer's download: {}",
        r["viewer_download_status"]
    );
    assert_eq!(r["admin_role_text"], "admin");
    assert!(
        r["admin_writes"]
            .as_array()
            .is_some_and(|w| w.iter().any(|w| w["method"] == "POST"
                && w["url"] == "/api/v1/sessions"
                && w["token"] == "admin")),
        "the admin's create request: {}",
        r["admin_writes"]
    );

    // The server agrees: the admin's session exists, the viewer's does not, nothing changed.
    assert_eq!(admin.status("browser-by-admin").await["state"], "open");
    assert_eq!(
        admin.get("/api/v1/sessions/browser-by-viewer").await.status,
        404
    );
    let kept = admin.status(existing).await;
    assert_eq!(kept["state"], "open");
    assert!(
        kept["distributors"]
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d["kind"] == "sse")),
        "{kept}"
    );
    let src = admin.get(&format!("/api/v1/sources/{source}")).await;
    assert_eq!(
        src.body["config"]["lines"].as_array().map_or(0, Vec::len),
        0,
        "{}",
        src.body
    );
    assert_eq!(
        admin
            .get(&format!("/api/v1/recordings/{running}"))
            .await
            .body["state"],
        "recording"
    );
    assert_eq!(
        admin
            .get(&format!("/api/v1/recordings/{stopped}"))
            .await
            .status,
        200
    );
    assert_eq!(kept["replay"]["state"], "paused", "{kept}");
    drop(server);
    let _ = std::fs::remove_dir_all(&recordings);
    eprintln!("auth: {:?}", run.elapsed);
}

/// A WebSocket handshake with `origin` and `token`: Ok, or the HTTP status and body of
/// the refusal.
async fn ws_handshake(
    app: &TestApp,
    session: &str,
    origin: Option<&str>,
    token: Option<&str>,
) -> Result<(), (u16, String)> {
    let mut request = format!("ws://127.0.0.1:{}/api/v1/sessions/{session}/ws", app.port)
        .into_client_request()
        .expect("ws request");
    if let Some(o) = origin {
        request
            .headers_mut()
            .insert("origin", o.parse().expect("origin"));
    }
    if let Some(t) = token {
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {t}").parse().expect("header"),
        );
    }
    match tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(request),
    )
    .await
    .expect("handshake in time")
    {
        Ok(_) => Ok(()),
        Err(tungstenite::Error::Http(response)) => Err((
            response.status().as_u16(),
            String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into(),
        )),
        Err(e) => panic!("ws handshake: {e}"),
    }
}

async fn cross_origin_page(app: &TestApp, session: &str, token: &str, label: &str) -> Value {
    let run = run_script(
        "crossorigin.mjs",
        &[
            ("BASE_URL", &app.address),
            ("SESSION_ID", session),
            ("TOKEN", token),
            ("LABEL", label),
        ],
    )
    .await;
    let r = run.ok().clone();
    let page_origin = r["page_origin"].as_str().unwrap_or_default();
    assert!(
        page_origin.starts_with("http://127.0.0.1:") && page_origin != app.address,
        "the page is on another origin: {page_origin} vs {}",
        app.address
    );
    eprintln!("crossorigin {label}: {:?}: {}", run.elapsed, r["page"]);
    r
}

/// Everything a page on another origin tried worked, and its event went through both feeds.
fn assert_all_worked(page: &Value, session: &str) {
    assert_eq!(
        page["fetch"]["ok"], true,
        "fetch with Authorization: {}",
        page["fetch"]
    );
    assert_eq!(page["fetch"]["id"], session, "{}", page["fetch"]);
    assert_eq!(
        page["eventsource"]["ok"], true,
        "EventSource: {}",
        page["eventsource"]
    );
    assert_eq!(
        page["websocket"]["ok"], true,
        "WebSocket: {}",
        page["websocket"]
    );
    assert_eq!(page["post"]["status"], 202, "POST events: {}", page["post"]);
    assert_eq!(
        page["received"],
        json!({"ws": true, "sse": true}),
        "the posted event on both feeds"
    );
}

#[tokio::test]
async fn a_page_on_another_loopback_port_may_use_a_local_testing_server() {
    check_tools();
    let app = spawn_app().await;
    app.create_session(json!({"id": "cross", "template": "local_testing"}))
        .await;
    let r = cross_origin_page(&app, "cross", "", "local").await;
    assert_all_worked(&r["page"], "cross");
    assert_eq!(app.status("cross").await["events_received"], 1);
}

#[tokio::test]
async fn a_page_on_another_site_cannot_drive_a_local_testing_server() {
    check_tools();
    // `make run`: local_testing, no authentication.
    let app = spawn_app().await;
    app.create_session(json!({"id": "target", "template": "local_testing"}))
        .await;
    let run = run_script(
        "crosssite.mjs",
        &[("BASE_URL", &app.address), ("SESSION_ID", "target")],
    )
    .await;
    let r = run.ok().clone();
    let attempts = &r["page"]["attempts"];
    for attempt in [
        "text_plain",
        "no_type",
        "events_text_plain",
        "form_text_plain",
        "form_urlencoded",
    ] {
        assert_eq!(
            attempts[attempt]["sent"], true,
            "the browser sent {attempt}: {attempts}"
        );
    }
    // Nothing the page sent changed anything: no session, no event.
    let listed = app.get("/api/v1/sessions").await;
    let ids: Vec<&str> = listed.body["sessions"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert!(
        ids.iter().all(|id| !id.starts_with("csrf-")),
        "a page on another site created a session: {ids:?}"
    );
    assert_eq!(app.status("target").await["events_received"], 0);
    // The rebound name gets nothing: not the dashboard, not the API, not a read.
    let rebound = &r["rebound"];
    assert_eq!(rebound["status"], 421, "the page itself: {rebound}");
    assert_eq!(rebound["post"]["status"], 421, "its POST: {rebound}");
    assert_eq!(rebound["read"]["status"], 421, "its GET: {rebound}");
    // Each refusal is counted, by why.
    let metrics = app.metrics().await;
    let refused = |reason: &str| {
        crate::helpers::metric_value(
            &metrics,
            &format!("synopticon_http_cross_site_refused_total{{reason=\"{reason}\"}}"),
        )
        .unwrap_or(0.0)
    };
    assert!(refused("origin") >= 5.0, "{metrics}");
    assert!(refused("host") >= 3.0, "{metrics}");
}

#[tokio::test]
async fn a_production_server_refuses_pages_from_origins_it_does_not_list() {
    check_tools();
    let app = spawn_app_with(|s| {
        s.server.mode = synopticon::configuration::Mode::Production;
        s.server.cors_origins = vec!["http://localhost:*".into()];
        s.auth.tokens = vec![token_config("admin", "admin", ADMIN)];
    })
    .await
    .with_token(ADMIN);
    app.create_session(json!({"id": "cross", "template": "local_testing"}))
        .await;
    let r = cross_origin_page(&app, "cross", ADMIN, "refused").await;
    let page = &r["page"];
    assert_eq!(
        page["fetch"]["ok"], false,
        "fetch from an unlisted origin: {}",
        page["fetch"]
    );
    assert!(
        page["fetch"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("TypeError")),
        "fetch fails as CORS makes it fail: {}",
        page["fetch"]
    );
    assert_eq!(
        page["eventsource"]["ok"], false,
        "EventSource: {}",
        page["eventsource"]
    );
    assert_eq!(
        page["websocket"]["ok"], false,
        "WebSocket: {}",
        page["websocket"]
    );
    assert_eq!(page["post"]["ok"], false, "POST events: {}", page["post"]);
    assert_eq!(
        app.status("cross").await["events_received"],
        0,
        "nothing got through"
    );

    // The WebSocket was refused at the handshake, for its origin only.
    let origin = r["page_origin"].as_str().unwrap_or_default();
    let (status, body) = ws_handshake(&app, "cross", Some(origin), Some(ADMIN))
        .await
        .expect_err("a handshake from an unlisted origin");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("cors_origins"), "{body}");
    ws_handshake(&app, "cross", None, Some(ADMIN))
        .await
        .expect("the same handshake without a page's Origin");
    ws_handshake(&app, "cross", Some("http://localhost:5173"), Some(ADMIN))
        .await
        .expect("a listed origin (http://localhost:*)");
}

#[tokio::test]
async fn a_production_server_lets_the_origins_it_lists_in() {
    check_tools();
    let app = spawn_app_with(|s| {
        s.server.mode = synopticon::configuration::Mode::Production;
        s.server.cors_origins = vec!["http://127.0.0.1:*".into()];
        s.auth.tokens = vec![token_config("admin", "admin", ADMIN)];
    })
    .await
    .with_token(ADMIN);
    app.create_session(json!({"id": "cross", "template": "local_testing"}))
        .await;
    let r = cross_origin_page(&app, "cross", ADMIN, "listed").await;
    assert_all_worked(&r["page"], "cross");
}

/* ---------- the other pages (tests/browser/pages.mjs, one page a run) ---------- */

/// Runs pages.mjs for `page` against `app`, the run's results after it finished every step.
async fn pages(app: &TestApp, page: &str, vars: &[(&str, &str)]) -> Value {
    let mut all = vec![("BASE_URL", app.address.as_str()), ("PAGE", page)];
    all.extend_from_slice(vars);
    let run = run_script("pages.mjs", &all).await;
    let r = run.ok().clone();
    eprintln!("pages {page}: {:?}; results: {r}", run.elapsed);
    r
}

/// A JPEG of `width` x `height` (a gradient), base64, for an envelope's `frame_data`.
fn gradient_jpeg(width: u32, height: u32) -> String {
    use base64::Engine as _;
    let mut jpeg = Vec::new();
    let picture = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 255 / width) as u8, (y * 255 / height) as u8, 160])
    });
    image::codecs::jpeg::JpegEncoder::new(&mut jpeg)
        .encode_image(&picture)
        .expect("a JPEG");
    base64::engine::general_purpose::STANDARD.encode(jpeg)
}

/// Within `tolerance` of each other, point by point (`[[x, y], ...]`).
fn near(got: &Value, want: &Value, tolerance: f64) -> bool {
    let (Some(g), Some(w)) = (got.as_array(), want.as_array()) else {
        return false;
    };
    g.len() == w.len()
        && g.iter().zip(w).all(|(a, b)| {
            (0..2).all(|k| match (a[k].as_f64(), b[k].as_f64()) {
                (Some(x), Some(y)) => (x - y).abs() <= tolerance,
                _ => false,
            })
        })
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

#[tokio::test]
async fn the_overview_shows_a_session_created_elsewhere_without_a_reload() {
    check_tools();
    let app = spawn_app().await;
    let session = "browser-elsewhere";
    let r = pages(&app, "overview", &[("SESSION_ID", session)]).await;
    assert!(
        r["system_event"]
            .as_str()
            .is_some_and(|t| t.contains("session.created") && t.contains(session)),
        "[data-test=system-event][data-event=session.created]: {}",
        r["system_event"]
    );
    assert_eq!(r["not_reloaded"], true, "the page was reloaded");
    let count = |v: &Value| v.as_str().and_then(|t| t.parse::<u64>().ok());
    assert_eq!(
        count(&r["sessions_tile_after"]),
        count(&r["sessions_tile_before"]).map(|n| n + 1),
        "[data-test=stat-sessions] before {} and after {}",
        r["sessions_tile_before"],
        r["sessions_tile_after"]
    );
    assert_eq!(app.status(session).await["state"], "open");
}

#[tokio::test]
async fn the_devices_page_switches_a_devices_ai_and_stream_and_shows_their_events() {
    check_tools();
    let app = spawn_app().await;
    let made = app
        .post(
            "/api/v1/devices",
            &json!({"serial": "BROWSER-CAM-1", "name": "Porch camera", "stream_url": "external"}),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    assert_eq!(made.body["ai_enabled"], false, "{}", made.body);
    assert_eq!(made.body["stream_on"], false, "{}", made.body);
    let id = made.body["id"]
        .as_str()
        .expect("the device's id")
        .to_string();

    let r = pages(&app, "devices", &[("DEVICE_ID", &id)]).await;
    assert_eq!(r["row_serial"], "BROWSER-CAM-1");
    assert!(
        r["row_text"]
            .as_str()
            .is_some_and(|t| t.contains("Porch camera")),
        "{}",
        r["row_text"]
    );
    assert_eq!(r["switches_before"], json!({"ai": false, "stream": false}));
    assert_eq!(r["ai_enabled_over_rest"], true);
    assert_eq!(r["stream_on_over_rest"], true);
    let events = strings(&r["device_events"]);
    for e in [
        "device.updated",
        "device.ai.toggled",
        "device.stream.status",
    ] {
        assert!(
            events.contains(&e),
            "{e} in [data-test=device-events]: {events:?}"
        );
    }
    assert_eq!(
        r["stream_cell"]["source"],
        format!("device-{id}"),
        "{}",
        r["stream_cell"]
    );
    assert_eq!(r["not_reloaded"], true);

    let device = app.get(&format!("/api/v1/devices/{id}")).await;
    assert_eq!(device.body["ai_enabled"], true, "{}", device.body);
    assert_eq!(device.body["stream_on"], true, "{}", device.body);
    let source = app.get(&format!("/api/v1/sources/device-{id}")).await;
    assert_eq!(source.status, 200, "{}", source.body);
}

#[tokio::test]
async fn the_inputs_page_shows_each_input_and_whether_it_is_connected() {
    check_tools();
    let app = spawn_app().await;
    let stream = format!("browser-{}", uuid::Uuid::new_v4().simple());
    let put = app
        .put(
            "/api/v1/inputs/edge",
            &json!({"kind": "redis_stream", "url": crate::redis::SHARED, "stream": stream, "blockMs": 100}),
        )
        .await;
    assert_eq!(put.status, 201, "{}", put.body);
    // A broker nobody serves: kept, and shown as not connected.
    let dead = app
        .put(
            "/api/v1/inputs/nowhere",
            &json!({"kind": "redis_stream",
                "url": format!("redis://127.0.0.1:{}", crate::rules::free_port()),
                "stream": stream}),
        )
        .await;
    assert_eq!(dead.status, 201, "{}", dead.body);

    let r = pages(
        &app,
        "inputs",
        &[("INPUT_NAME", "edge"), ("DEAD_INPUT_NAME", "nowhere")],
    )
    .await;
    assert_eq!(r["state"], "connected");
    assert_eq!(r["dead_state"], "disconnected");
    let edge = app.get("/api/v1/inputs/edge").await.body;
    assert_eq!(edge["connected"], true, "{edge}");
    let nowhere = app.get("/api/v1/inputs/nowhere").await.body;
    assert_eq!(nowhere["connected"], false, "{nowhere}");
    let rows = r["rows"].as_array().cloned().unwrap_or_default();
    let cells = |name: &str| {
        rows.iter()
            .find(|row| row["name"] == name)
            .map(|row| {
                strings(&row["cells"])
                    .into_iter()
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_else(Vec::new)
    };
    let (edge_cells, nowhere_cells) = (cells("edge"), cells("nowhere"));
    assert_eq!(
        edge_cells.get(1).map(String::as_str),
        Some("redis_stream"),
        "{edge_cells:?}"
    );
    assert_eq!(
        edge_cells.last().map(String::as_str),
        Some(""),
        "no last error on the connected input: {edge_cells:?}"
    );
    let message: String = nowhere["last_error"]["message"]
        .as_str()
        .unwrap_or_default()
        .chars()
        .take(40)
        .collect();
    assert!(!message.is_empty(), "{nowhere}");
    assert!(
        nowhere_cells
            .last()
            .is_some_and(|e| e.starts_with(&message)),
        "the unreachable input's last error ({message}...) in its row: {nowhere_cells:?}"
    );
}

#[tokio::test]
async fn the_rules_page_shows_a_rule_and_thumbnails_of_its_captures() {
    check_tools();
    let (app, dir, _, _) = crate::rules::app_with_rule_folders("browser-rules").await;
    crate::rules::door_cam(&app).await;
    let rule = "browser-door";
    let put = app
        .put(
            &format!("/api/v1/rules/{rule}"),
            &json!({"description": "every crossing of the door, captured",
                "match": {"events": ["line_cross"]}, "trackCooldownSecs": 0,
                "actions": ["frame_capture"]}),
        )
        .await;
    assert_eq!(put.status, 201, "{}", put.body);
    // One person down across the door line, back up, and down again: three crossings.
    crate::rules::feed(&app, &crate::rules::there_and_back()).await;
    let status = crate::rules::rule_status(&app, rule, |s| s["actions"][0]["done"] == 3).await;
    let listed = app.get("/api/v1/rules/captures").await.body;
    let paths: Vec<&str> = listed["captures"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["path"].as_str())
        .collect();
    assert_eq!(paths.len(), 3, "{listed}");

    let r = pages(&app, "rules", &[("RULE_NAME", rule)]).await;
    assert_eq!(strings(&r["rules"]), [rule]);
    let actions = r["actions"].as_array().cloned().unwrap_or_default();
    assert_eq!(actions.len(), 1, "{actions:?}");
    assert_eq!(actions[0]["type"], "frame_capture");
    // Action, matched, done, ...
    assert_eq!(
        actions[0]["cells"][2], "3",
        "done of frame_capture: {}; over REST: {status}",
        actions[0]
    );
    let thumbnails = r["thumbnails"].as_array().cloned().unwrap_or_default();
    let shown: Vec<&str> = thumbnails
        .iter()
        .filter_map(|t| t["path"].as_str())
        .collect();
    assert_eq!(shown, paths, "the thumbnails, newest first as listed");
    for t in &thumbnails {
        assert!(
            t["w"].as_u64() > Some(0) && t["h"].as_u64() > Some(0) && t["blob"] == true,
            "a thumbnail that did not load: {t}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_api_page_lists_every_operation_and_filters_them() {
    check_tools();
    let app = spawn_app().await;
    let doc = app.get("/api/openapi.json").await.body;
    let operations: usize = doc["paths"]
        .as_object()
        .map(|p| {
            p.values()
                .map(|item| {
                    ["get", "post", "put", "patch", "delete", "head", "options"]
                        .iter()
                        .filter(|m| item.get(**m).is_some())
                        .count()
                })
                .sum()
        })
        .unwrap_or(0);
    assert!(operations > 20, "{operations} operations");

    let r = pages(&app, "api", &[]).await;
    assert_eq!(r["operations"], operations);
    assert_eq!(r["listed"], operations, "[data-test=api-op]");
    assert_eq!(r["missing"], json!([]), "operations not listed");
    let mut filtered = strings(&r["filtered"]);
    let mut expected = strings(&r["filtered_expected"]);
    filtered.sort_unstable();
    expected.sort_unstable();
    assert!(
        !expected.is_empty(),
        "the filter {} matches something",
        r["filter_query"]
    );
    assert_eq!(
        filtered, expected,
        "visible after filtering on {}",
        r["filter_query"]
    );
    assert_eq!(
        strings(&r["visible_tags_filtered"]).len(),
        1,
        "{}",
        r["visible_tags_filtered"]
    );
    assert_eq!(r["filtered_delete"], r["filtered_delete_expected"]);
    assert_eq!(r["filtered_nothing"], 0);
    assert_eq!(r["unfiltered"], operations);
}

#[tokio::test]
async fn a_zone_drawn_and_a_line_point_dragged_on_a_frame_are_saved() {
    check_tools();
    let app = spawn_app().await;
    let (source, line, zone) = ("browser-yard", "gate", "browser-porch");
    let made = app
        .post(
            "/api/v1/sources",
            &json!({"id": source, "kind": "external", "detections_events": false,
                "lines": [{"id": line, "points": [[100, 120], [540, 120]]}]}),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let posted = app
        .post(
            &format!("/api/v1/sources/{source}/detections"),
            &json!({"version": 1, "frame": {"number": 1, "width": 640, "height": 480},
                "frame_data": {"encoding": "jpeg", "base64": gradient_jpeg(640, 480)},
                "detections": [{"class_name": "person", "confidence": 0.9,
                    "bbox": {"x1": 260, "y1": 200, "x2": 340, "y2": 420}}]}),
        )
        .await;
    assert!(posted.status < 300, "{}", posted.body);
    crate::helpers::wait_until("the source's frame", Duration::from_secs(10), || async {
        (app.get(&format!("/api/v1/sources/{source}/frame.jpg"))
            .await
            .status
            == 200)
            .then_some(())
    })
    .await;

    let r = pages(
        &app,
        "zones",
        &[("SOURCE_ID", source), ("LINE_ID", line), ("ZONE_ID", zone)],
    )
    .await;
    assert_eq!(r["frame_size"], json!([640, 480]));
    assert_eq!(r["finish_enabled"], true, "Finish after four corners");
    let config = app.get(&format!("/api/v1/sources/{source}")).await.body["config"].clone();
    let zones = config["zones"].as_array().cloned().unwrap_or_default();
    let drawn = zones
        .iter()
        .find(|z| z["id"] == zone)
        .unwrap_or_else(|| panic!("zone {zone} not in the source's zones: {config}"));
    assert!(
        near(&drawn["points"], &r["zone_expected"], 3.0),
        "zone {zone}: {} where it was clicked at {}",
        drawn["points"],
        r["zone_expected"]
    );
    assert_eq!(
        r["cursor_over_handle"], "grab",
        "the cursor over the line's handle"
    );
    let lines = config["lines"].as_array().cloned().unwrap_or_default();
    assert_eq!(lines.len(), 1, "{config}");
    let moved = &lines[0];
    assert_eq!(moved["id"], line);
    assert!(
        near(
            &json!([moved["points"][0]]),
            &json!([r["line_expected_point"]]),
            3.0
        ),
        "the dragged point of {line}: {} where it was dropped at {}",
        moved["points"],
        r["line_expected_point"]
    );
    assert!(
        near(&json!([moved["points"][1]]), &json!([[540, 120]]), 0.0),
        "the other point of {line} stays: {}",
        moved["points"]
    );
}

async fn sse_events_page(app: &TestApp, token: &str, shot: &str) {
    let session = "browser-sse-only";
    let made = app
        .post(
            "/api/v1/sessions",
            &json!({"id": session, "enabledDistributors": ["sse"]}),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let kinds: Vec<Value> = app.status(session).await["distributors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| d["kind"].clone())
        .collect();
    assert_eq!(kinds, [json!("sse")], "the session runs sse only");

    let r = pages(
        app,
        "sse",
        &[("SESSION_ID", session), ("TOKEN", token), ("SHOT", shot)],
    )
    .await;
    assert_eq!(
        names(&r["rows"]),
        ["sse_one", "sse_two", "sse_one"],
        "[data-test=event-row], newest first"
    );
    assert!(
        r["rows"][0]["data"]
            .as_str()
            .is_some_and(|d| d.contains("\"n\":3")),
        "{}",
        r["rows"][0]
    );
    // Read with fetch, so the token goes in the Authorization header, never in the URL.
    let feeds = r["feeds"].as_array().cloned().unwrap_or_default();
    let sse: Vec<&Value> = feeds
        .iter()
        .filter(|f| f["url"] == format!("/api/v1/sessions/{session}/sse"))
        .collect();
    assert!(
        !sse.is_empty(),
        "no request for /api/v1/sessions/{session}/sse: {feeds:?}"
    );
    for f in &sse {
        assert_eq!(f["type"], "fetch", "{f}");
        assert_eq!(f["accept"], "text/event-stream", "{f}");
        let want = if token.is_empty() {
            Value::Null
        } else {
            json!(format!("Bearer {token}"))
        };
        assert_eq!(f["authorization"], want, "{f}");
    }
    assert!(
        !feeds
            .iter()
            .any(|f| f["url"].as_str().is_some_and(|u| u.contains("token="))),
        "a token in a URL: {feeds:?}"
    );
    // No WebSocket to the session (it has none); the system feed's is the page's own.
    let sockets = strings(&r["websockets"]);
    assert!(
        sockets
            .iter()
            .all(|u| u.starts_with("/api/v1/sessions/system/ws")),
        "WebSockets opened: {sockets:?}"
    );
    assert!(
        r["conn"].as_str().is_some_and(|c| c.contains("SSE")),
        "[data-test=events-conn]: {}",
        r["conn"]
    );
    assert_eq!(app.status(session).await["events_received"], 3);
}

#[tokio::test]
async fn the_live_events_page_follows_a_session_without_websocket_over_sse() {
    check_tools();
    let app = spawn_app().await;
    sse_events_page(&app, "", "events-sse").await;
}

#[tokio::test]
async fn the_live_events_page_follows_a_session_over_sse_with_a_token() {
    check_tools();
    let app = spawn_app_with(|s| {
        s.server.mode = synopticon::configuration::Mode::Production;
        s.auth.tokens = vec![token_config("admin", "admin", ADMIN)];
    })
    .await
    .with_token(ADMIN);
    sse_events_page(&app, ADMIN, "events-sse-token").await;
}

/* ---------- recordings (tests/browser/recordings.mjs) ---------- */

#[tokio::test]
async fn the_recordings_page_records_a_session_downloads_it_and_replays_it_into_another() {
    check_tools();
    // With a token: the download is fetched with it (a plain link would get a 401).
    let app = spawn_app_with(|s| {
        s.server.mode = synopticon::configuration::Mode::Production;
        s.auth.tokens = vec![token_config("admin", "admin", ADMIN)];
    })
    .await
    .with_token(ADMIN);
    let (session, target) = ("browser-study", "browser-replayed");
    let run = run_script(
        "recordings.mjs",
        &[
            ("BASE_URL", &app.address),
            ("SESSION_ID", session),
            ("TARGET_ID", target),
            ("TOKEN", ADMIN),
        ],
    )
    .await;
    let r = run.ok();

    // The bad glob: refused, the reason under the events field, nothing started.
    let bad = r["bad_events_error"].as_str().unwrap_or_default();
    assert!(
        bad.contains("recording.events[0]") && bad.contains("bad glob!"),
        "[data-test=rec-error-events]: {bad:?}"
    );
    assert_eq!(r["recordings_after_bad"], 0);
    assert_eq!(r["events_error_after_success"], "");
    // Started from the form: running, on the session's status, counting what matches.
    let rid = r["rid"].as_str().expect("the recording's id");
    assert_eq!(r["row_state"], "recording");
    assert_eq!(r["recordings_in_session_status"], json!([rid]));
    assert_eq!(
        r["counts_seen"],
        json!(["0", "5", "12"]),
        "[data-test=recording-events] as events were published"
    );
    // Stopped from the page; what the server kept is what the form asked for.
    assert_eq!(r["stopped_state"], "stopped");
    assert_eq!(
        r["stop_hidden"], true,
        "Stop is offered on a stopped recording"
    );
    let info = app.get(&format!("/api/v1/recordings/{rid}")).await;
    assert_eq!(info.status, 404, "deleted at the end: {}", info.body);
    let kept = &r["over_rest"];
    assert_eq!(kept["state"], "stopped", "{kept}");
    assert_eq!(kept["session"], session);
    assert_eq!(kept["events"], 12, "{kept}");
    assert_eq!(kept["stop_reason"], "stopped over REST");
    assert_eq!(kept["spec"]["events"], json!(["study_*"]));
    assert_eq!(kept["spec"]["label"], "P07 run 1");
    assert_eq!(
        kept["spec"]["metadata"],
        json!({"participant": "P07", "condition": "B"})
    );

    // The browser's download: the whole file, an MCAP file with the 12 events.
    let download = &r["download"];
    assert_eq!(
        download["magic"], true,
        "the file's first bytes: {download}"
    );
    assert_eq!(download["size"], kept["bytes"], "{download}");
    assert_eq!(
        download["file"], kept["file"],
        "the file's name: {download}"
    );
    let file = PathBuf::from(download["path"].as_str().expect("the downloaded file"));
    let read = crate::recording::read_mcap(&file, false);
    let recorded: Vec<&str> = read["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| {
            m["topic"]
                .as_str()
                .is_some_and(|t| t.starts_with("/events/"))
        })
        .filter_map(|m| m["data"]["event"].as_str())
        .collect();
    let mut want = vec!["study_tick"; 5];
    want.extend(["study_tock"; 7]);
    assert_eq!(recorded, want, "the events in the downloaded file");
    assert_eq!(read["metadata"]["study"]["participant"], "P07");
    let _ = std::fs::remove_dir_all(file.parent().expect("the downloads folder"));

    // Played as fast as possible into the other session: finished, every event played.
    assert!(
        r["replay_result"]
            .as_str()
            .is_some_and(|t| t.contains("12 events") && t.contains(target)),
        "[data-test=replay-result]: {}",
        r["replay_result"]
    );
    let done = &r["replay_finished"];
    assert_eq!(done["state"], "finished", "{done}");
    assert_eq!(done["played"], "12 / 12", "{done}");
    assert_eq!(done["recording"], rid, "{done}");
    let first = &r["target_after_first_replay"];
    assert_eq!(first["replay"]["state"], "finished", "{first}");
    assert_eq!(first["events_received"], 12, "{first}");

    // At real time and looping: paused, moved to the start, resumed and stopped from the view.
    assert_eq!(
        r["control_states"],
        json!(["playing", "paused", "playing", "stopped"])
    );
    assert_eq!(r["paused_over_rest"], "paused");
    let held = &r["played_while_paused"];
    assert!(
        held[0].is_u64() && held[0] == held[1],
        "events played while paused: {held}"
    );
    assert_eq!(r["resume_enabled_while_paused"], true);
    assert_eq!(r["pause_enabled_while_paused"], false);
    assert!(
        r["position_over_rest_after_seek"]
            .as_f64()
            .is_some_and(|p| p < 0.05),
        "position after seeking to 0: {}",
        r["position_over_rest_after_seek"]
    );
    assert_eq!(r["stopped_over_rest"]["state"], "stopped");
    assert_eq!(r["stopped_over_rest"]["loop"], true);
    assert_eq!(
        r["controls_after_stop"],
        json!([]),
        "replay controls still enabled once stopped"
    );
    let status = app.status(target).await;
    assert_eq!(status["replay"]["state"], "stopped", "{status}");
    assert_eq!(r["after_delete"], 404);
    assert_eq!(
        app.get("/api/v1/recordings").await.body["recordings"],
        json!([])
    );
}

#[tokio::test]
async fn re_analysis_from_the_recordings_page_dry_runs_the_rules_unless_told_not_to() {
    check_tools();
    let app = spawn_app().await;
    let rid = crate::recording::record_the_walk(&app).await;
    let put = app
        .put(
            "/api/v1/rules/door-in",
            &json!({"match": {"event": "line_cross", "lines": ["door"]},
                "actions": ["json_log"]}),
        )
        .await;
    assert_eq!(put.status, 201, "{}", put.body);
    let target = "browser-reanalysed";
    app.create_session(json!({"id": target, "enabledDistributors": ["websocket"]}))
        .await;
    let run = run_script(
        "reanalysis.mjs",
        &[
            ("BASE_URL", &app.address),
            ("RECORDING_ID", &rid),
            ("SOURCE_ID", "door-cam"),
            ("TARGET_ID", target),
        ],
    )
    .await;
    let r = run.ok();
    assert_eq!(
        r["first"]["checked_by_default"], true,
        "the dry-run box is on by default"
    );
    // The re-analysed walk and, after its crossing, what the rule would have done.
    assert_eq!(
        names(&r["after_first"]),
        ["track_started", "line_cross", "rule_matched", "track_ended"]
    );
    let matched = r["matched_text"].as_str().unwrap_or_default();
    assert!(
        matched.contains("\"dry_run\":true") && matched.contains("door-in"),
        "the rule_matched row: {matched}"
    );
    // Then without it: the same three events again, no match.
    assert_eq!(
        names(&r["after_second"]),
        [
            "track_started",
            "line_cross",
            "rule_matched",
            "track_ended",
            "track_started",
            "line_cross",
            "track_ended"
        ]
    );
    // Nothing acted either time.
    assert_eq!(app.get("/api/v1/rules/door-in").await.body["matched"], 0);
}
