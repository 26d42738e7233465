//! Recording sessions to MCAP files, checked with an independent reader (Foxglove's PyPI
//! `mcap` package), and playing them back (docs/RECORDING.md).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;
use crate::sources::envelope;

/// Runs tests/api/mcap_read.py on `file`; `stream` reads record by record (a cut file).
pub(crate) fn read_mcap(file: &Path, stream: bool) -> Value {
    let python = cache_dir().join("venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run `make test-deps` (scripts/reference-env.sh builds it)",
        python.display()
    );
    let mut command = std::process::Command::new(python);
    command
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/api/mcap_read.py"
        ))
        .arg(file);
    if stream {
        command.arg("--stream");
    }
    let out = command.output().expect("python runs");
    assert!(
        out.status.success(),
        "mcap_read.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("mcap_read.py prints JSON")
}

/// Downloads a recording's file into a temporary file.
pub(crate) async fn download(app: &TestApp, rid: &str) -> PathBuf {
    let response = app
        .request(
            reqwest::Method::GET,
            &format!("/api/v1/recordings/{rid}/download"),
        )
        .send()
        .await
        .expect("download");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["content-type"]
            .to_str()
            .unwrap_or_default(),
        "application/octet-stream"
    );
    let bytes = response.bytes().await.expect("body");
    let path = std::env::temp_dir().join(format!("{rid}-{}.mcap", uuid::Uuid::new_v4()));
    std::fs::write(&path, &bytes).expect("write the download");
    path
}

fn events_of(read: &Value) -> Vec<Value> {
    read["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| {
            m["topic"]
                .as_str()
                .is_some_and(|t| t.starts_with("/events/"))
        })
        .cloned()
        .collect()
}

pub(crate) async fn start_recording(app: &TestApp, session: &str, spec: Value) -> Value {
    let r = app
        .post(&format!("/api/v1/sessions/{session}/recordings"), &spec)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body
}

/// A new session `id` with `events` published while it was recorded: the recording's id.
async fn recorded(app: &TestApp, id: &str, events: Value) -> String {
    app.create_session(json!({"id": id})).await;
    let rec = start_recording(app, id, json!({})).await;
    let rid = rec["id"].as_str().expect("id").to_string();
    app.publish(id, events).await;
    stop(app, &rid).await;
    rid
}

pub(crate) async fn stop(app: &TestApp, rid: &str) -> Value {
    let r = app
        .post(&format!("/api/v1/recordings/{rid}/stop"), &json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

#[tokio::test]
async fn a_recording_keeps_every_event_in_order_with_schemas_and_metadata() {
    let app = spawn_app().await;
    // A webhook configured (not enabled) with a secret header and a broker URL with a
    // password: neither may reach the file.
    app.create_session(json!({"id": "study", "enabledDistributors": ["websocket"],
        "distributors": {"http": {"baseUrl": "http://127.0.0.1:9", "headers": {"X-Api-Key": "s3cret-key"}},
            "mqtt": {"broker": "mqtt://lab:hunter2@127.0.0.1:1883"}}}))
        .await;
    // Before the recording: not in it.
    app.publish("study", json!([{"event": "warmup", "data": {}}]))
        .await;
    let all = start_recording(
        &app,
        "study",
        json!({"label": "P07", "metadata": {"participant": "P07", "condition": "B"}}),
    )
    .await;
    let gaze_only = start_recording(&app, "study", json!({"events": ["gaze_*"]})).await;
    assert_eq!(all["state"], "recording");
    let rid = all["id"].as_str().expect("id").to_string();
    let gaze_rid = gaze_only["id"].as_str().expect("id").to_string();
    assert!(rid.starts_with("study-"), "{rid}");
    let status = app.status("study").await;
    assert_eq!(
        status["recordings"].as_array().map(Vec::len),
        Some(2),
        "{status}"
    );

    let mut published = Vec::new();
    for round in 0..10 {
        let batch: Vec<Value> = (0..50)
            .map(|i| {
                let n = round * 50 + i;
                let name = match n % 3 {
                    0 => "gaze_data",
                    1 => "pupil_data",
                    _ => "marker",
                };
                json!({"event": name, "data": {"n": n, "x": n as f64 * 0.5}})
            })
            .collect();
        let r = app.publish("study", json!(batch)).await;
        published.extend(r["events"].as_array().expect("events").iter().cloned());
    }
    assert_eq!(published.len(), 500);

    let stopped = stop(&app, &rid).await;
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    assert_eq!(stopped["events"], 500);
    assert_eq!(stopped["dropped"], 0);
    assert_eq!(stopped["stop_reason"], "stopped over REST");
    let gaze = stop(&app, &gaze_rid).await;
    assert_eq!(gaze["events"], 167, "{gaze}");

    let list = app.get("/api/v1/recordings").await;
    assert_eq!(list.status, 200);
    let listed: Vec<&Value> = list.body["recordings"]
        .as_array()
        .expect("list")
        .iter()
        .collect();
    assert_eq!(listed.len(), 2);
    let one = app.get(&format!("/api/v1/recordings/{rid}")).await.body;
    assert!(one["bytes"].as_u64().unwrap_or(0) > 1000, "{one}");
    assert!(one["duration_s"].as_f64().unwrap_or(-1.0) >= 0.0, "{one}");
    assert_eq!(one["first_seq"], published[0]["seq"]);
    assert_eq!(one["last_seq"], published[499]["seq"]);

    let file = download(&app, &rid).await;
    let read = read_mcap(&file, false);
    assert_eq!(read["profile"], "");
    assert!(read["library"]
        .as_str()
        .unwrap_or_default()
        .starts_with("synopticon "));
    let chunks = read["chunks"].as_array().expect("chunks");
    assert!(
        !chunks.is_empty() && chunks.iter().all(|c| c == "zstd"),
        "{chunks:?}"
    );
    assert_eq!(
        read["schemas"]["synopticon.Event"]["title"],
        "synopticon.Event"
    );
    let meta = &read["metadata"];
    assert_eq!(meta["synopticon"]["session"], "study");
    assert_eq!(meta["synopticon"]["recording"], rid.as_str());
    assert!(meta["synopticon"]["server_version"].is_string());
    let config: Value =
        serde_json::from_str(meta["session"]["config"].as_str().expect("config")).expect("json");
    assert_eq!(config["id"], "study");
    let text = meta["session"]["config"].as_str().unwrap_or_default();
    assert!(
        !text.contains("s3cret-key") && !text.contains("hunter2"),
        "{text}"
    );
    assert_eq!(config["enabledDistributors"], json!(["websocket"]));
    assert!(meta["models"].is_object());
    assert_eq!(meta["study"]["participant"], "P07");
    assert_eq!(meta["study"]["label"], "P07");

    // Every event, in order, with its seq and timestamps.
    let events = events_of(&read);
    assert_eq!(events.len(), 500);
    for (m, sent) in events.iter().zip(&published) {
        let e = &m["data"];
        assert_eq!(e["seq"], sent["seq"]);
        assert_eq!(e["event"], sent["event"]);
        assert_eq!(
            m["topic"],
            format!("/events/{}", sent["event"].as_str().unwrap_or_default())
        );
        assert_eq!(m["schema"], "synopticon.Event");
        assert_eq!(m["schema_encoding"], "jsonschema");
        assert_eq!(m["encoding"], "json");
        assert_eq!(m["sequence"], sent["seq"]);
        assert_eq!(e["session"], "study");
        let ts = chrono::DateTime::parse_from_rfc3339(e["ts"].as_str().expect("ts")).expect("ts");
        assert_eq!(m["publish_time"].as_i64(), ts.timestamp_nanos_opt());
        assert!(m["log_time"].as_u64().unwrap_or(0) > 0);
    }
    let seqs: Vec<u64> = events
        .iter()
        .filter_map(|m| m["data"]["seq"].as_u64())
        .collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "seq order");
    assert_eq!(events[7]["data"]["data"]["n"], 7);

    let gaze_file = download(&app, &gaze_rid).await;
    let gaze_events = events_of(&read_mcap(&gaze_file, false));
    assert_eq!(gaze_events.len(), 167);
    assert!(gaze_events
        .iter()
        .all(|m| m["data"]["event"] == "gaze_data"));
    let _ = std::fs::remove_file(file);
    let _ = std::fs::remove_file(gaze_file);
}

#[tokio::test]
async fn closing_the_session_stops_its_recordings_and_delete_removes_them() {
    let app = spawn_app().await;
    app.create_session(json!({"id": "short"})).await;
    let rec = start_recording(&app, "short", json!({})).await;
    let rid = rec["id"].as_str().expect("id").to_string();
    app.publish("short", batch("tick", 20)).await;
    let busy = app.delete(&format!("/api/v1/recordings/{rid}")).await;
    assert_eq!(busy.status, 409, "{}", busy.body);
    assert!(busy.body["error"]
        .as_str()
        .unwrap_or_default()
        .contains("stop it first"));

    assert_eq!(app.delete("/api/v1/sessions/short").await.status, 200);
    let done = wait_until("the recording to finish", DEADLINE, || async {
        let r = app.get(&format!("/api/v1/recordings/{rid}")).await.body;
        (r["state"] == "stopped").then_some(r)
    })
    .await;
    assert_eq!(done["stop_reason"], "session closed");
    assert_eq!(done["events"], 20);
    let file = download(&app, &rid).await;
    assert_eq!(events_of(&read_mcap(&file, false)).len(), 20);
    let _ = std::fs::remove_file(file);

    assert_eq!(
        app.delete(&format!("/api/v1/recordings/{rid}"))
            .await
            .status,
        204
    );
    assert_eq!(
        app.get(&format!("/api/v1/recordings/{rid}")).await.status,
        404
    );
    let gone = app
        .request(
            reqwest::Method::GET,
            &format!("/api/v1/recordings/{rid}/download"),
        )
        .send()
        .await
        .expect("request");
    assert_eq!(gone.status().as_u16(), 404);
    let list = app.get("/api/v1/recordings").await.body;
    assert_eq!(list["recordings"], json!([]));
}

#[tokio::test]
async fn bad_recording_and_replay_requests_get_clear_errors() {
    let app = spawn_app().await;
    app.create_session(json!({"id": "s1"})).await;
    let bad = app
        .post(
            "/api/v1/sessions/s1/recordings",
            &json!({"events": ["ok", 5], "frame_quality": 0, "extra": true}),
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    let details = bad.body["details"].to_string();
    for field in [
        "recording.events[1]",
        "recording.frame_quality",
        "recording.extra",
    ] {
        assert!(details.contains(field), "{field} in {details}");
    }
    assert_eq!(
        app.post("/api/v1/sessions/nope/recordings", &json!({}))
            .await
            .status,
        404
    );
    let not_json = app
        .post_raw("/api/v1/sessions/s1/recordings", "{oops")
        .await;
    assert_eq!(not_json.status, 400, "{}", not_json.body);
    assert_eq!(app.get("/api/v1/recordings/nope").await.status, 404);
    assert_eq!(
        app.post("/api/v1/recordings/nope/stop", &json!({}))
            .await
            .status,
        404
    );
    let replay = app
        .post(
            "/api/v1/sessions/s1/replay",
            &json!({"rate": -2, "loop": "yes"}),
        )
        .await;
    assert_eq!(replay.status, 422, "{}", replay.body);
    let details = replay.body["details"].to_string();
    for field in ["replay.recording", "replay.rate", "replay.loop"] {
        assert!(details.contains(field), "{field} in {details}");
    }
    let unknown = app
        .post("/api/v1/sessions/s1/replay", &json!({"recording": "nope"}))
        .await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert_eq!(app.get("/api/v1/sessions/s1/replay").await.status, 404);
    // The server is still fine.
    assert_eq!(app.get("/api/health").await.status, 200);
}

#[tokio::test]
async fn a_template_records_its_sessions_from_their_start() {
    let app = spawn_app().await;
    let put = app
        .put(
            "/api/v1/templates/recorded",
            &json!({"enabledDistributors": ["websocket"], "recording": {"events": ["trial_*"]}}),
        )
        .await;
    assert!(put.status == 200 || put.status == 201, "{}", put.body);
    let status = app
        .create_session(json!({"id": "t1", "template": "recorded"}))
        .await;
    let rid = status["recordings"][0]
        .as_str()
        .expect("a recording")
        .to_string();
    app.publish(
        "t1",
        json!([{"event": "trial_start", "data": {}}, {"event": "noise", "data": {}}, {"event": "trial_end", "data": {}}]),
    )
    .await;
    let off = app
        .create_session(json!({"id": "t2", "template": "recorded", "recording": false}))
        .await;
    assert_eq!(off["recordings"], json!([]));
    let info = stop(&app, &rid).await;
    assert_eq!(info["auto"], true);
    assert_eq!(info["events"], 2);
    assert_eq!(info["spec"]["events"], json!(["trial_*"]));
}

/// The door camera of the rules tests, listened to by `session`.
async fn door_cam_with(app: &TestApp, line_y: &str) {
    let created = app
        .post(
            "/api/v1/sources",
            &json!({"id": "door-cam", "kind": "external", "detections_events": false,
                "lines": [{"id": "door", "points": [[0, line_y], ["100%", line_y]]}]}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
}

/// One person walking down the frame and out of sight: crosses a line at 50%, not one
/// at 90%.
fn walk_with_pictures() -> Vec<Value> {
    let jpeg = std::fs::read(asset("images/bus.jpg")).expect("image");
    let picture = json!({"encoding": "jpeg", "quality": 85,
        "base64": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, jpeg)});
    (0..14)
        .map(|n| {
            let people: Vec<(f32, f32)> = if n < 10 {
                vec![(300.0, 160.0 + n as f32 * 25.0)]
            } else {
                Vec::new()
            };
            let mut e = envelope(n, &people);
            if n % 4 == 0 {
                e["frame_data"] = picture.clone();
            }
            e
        })
        .collect()
}

pub(crate) async fn record_the_walk(app: &TestApp) -> String {
    door_cam_with(app, "50%").await;
    app.create_session(json!({"id": "lab", "sources": ["door-cam"]}))
        .await;
    let rec = start_recording(app, "lab", json!({"frames": true, "frame_quality": 60})).await;
    let rid = rec["id"].as_str().expect("id").to_string();
    for e in walk_with_pictures() {
        let r = app.post("/api/v1/sources/door-cam/detections", &e).await;
        assert_eq!(r.status, 202, "{}", r.body);
    }
    // The frames reach the recording through the session: wait until all 14 are in.
    wait_until("the frames in the recording", DEADLINE, || async {
        let r = app.get(&format!("/api/v1/recordings/{rid}")).await.body;
        (r["detections"] == 14).then_some(())
    })
    .await;
    let info = stop(app, &rid).await;
    assert_eq!(info["frames"], 4, "{info}");
    rid
}

#[tokio::test]
async fn frames_and_detections_are_recorded_for_foxglove_and_for_re_analysis() {
    let app = spawn_app().await;
    let rid = record_the_walk(&app).await;
    let file = download(&app, &rid).await;
    let read = read_mcap(&file, false);
    let topic = |t: &str| -> Vec<Value> {
        read["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .filter(|m| m["topic"] == t)
            .cloned()
            .collect()
    };
    let detections = topic("/sources/door-cam/detections");
    assert_eq!(detections.len(), 14);
    assert_eq!(detections[0]["schema"], "synopticon.Detections");
    assert_eq!(detections[3]["data"]["frame"]["number"], 3);
    assert_eq!(
        detections[3]["data"]["detections"][0]["class_name"],
        "person"
    );
    assert_eq!(detections[12]["data"]["detections"], json!([]));
    let images = topic("/sources/door-cam/image");
    assert_eq!(images.len(), 4);
    assert_eq!(images[0]["schema"], "foxglove.CompressedImage");
    assert_eq!(images[0]["data"]["format"], "jpeg");
    assert_eq!(images[0]["data"]["frame_id"], "door-cam");
    let jpeg = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        images[0]["data"]["data"].as_str().expect("data"),
    )
    .expect("base64");
    let decoded = image::load_from_memory(&jpeg).expect("a JPEG that decodes");
    assert!(decoded.width() > 100);
    let notes = topic("/sources/door-cam/annotations");
    assert_eq!(notes.len(), 4);
    assert_eq!(notes[0]["schema"], "foxglove.ImageAnnotations");
    // Frame 0 starts no track yet (a track is confirmed on its second frame); frame 4
    // has the walker's box.
    assert_eq!(notes[0]["data"]["points"], json!([]));
    let outline = &notes[1]["data"]["points"][0];
    assert_eq!(outline["type"], 2, "a closed outline per track: {outline}");
    assert_eq!(outline["points"].as_array().map(Vec::len), Some(4));
    assert!(notes[1]["data"]["texts"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .contains("person"));
    assert_eq!(
        read["schemas"]["foxglove.ImageAnnotations"]["title"],
        "foxglove.ImageAnnotations"
    );
    // The picture and its boxes carry the frame's own time.
    let stamp = &images[0]["data"]["timestamp"];
    let envelope_time = chrono::DateTime::parse_from_rfc3339(
        detections[0]["data"]["source"]["timestamp"]
            .as_str()
            .expect("timestamp"),
    )
    .expect("time");
    assert_eq!(stamp["sec"].as_i64(), Some(envelope_time.timestamp()));
    // The session's line crossing is in the events.
    let crossings: Vec<Value> = events_of(&read)
        .into_iter()
        .filter(|m| m["data"]["event"] == "line_cross")
        .collect();
    assert_eq!(crossings.len(), 1);
    let _ = std::fs::remove_file(file);
}

/// Replays into a fresh session and returns every event it played, as a consumer
/// receives them (over the WebSocket).
async fn replay_into(app: &TestApp, session: &str, body: Value) -> Vec<Value> {
    app.create_session(json!({"id": session, "enabledDistributors": ["websocket"]}))
        .await;
    let mut ws = app.ws(session, "").await;
    let r = app
        .post(&format!("/api/v1/sessions/{session}/replay"), &body)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let total = wait_until("the replay to finish", DEADLINE, || async {
        let s = app.status(session).await;
        (s["replay"]["state"] == "finished").then(|| s["replay"]["played"].as_u64())?
    })
    .await;
    ws.events(total as usize).await
}

#[tokio::test]
async fn a_replay_plays_the_recorded_events_marked_and_in_order() {
    let app = spawn_app().await;
    app.create_session(json!({"id": "orig"})).await;
    let rec = start_recording(&app, "orig", json!({})).await;
    let rid = rec["id"].as_str().expect("id").to_string();
    let sent = app.publish("orig", batch("sample", 30)).await;
    app.publish("orig", json!([{"event": "marker", "data": {"m": 1}}]))
        .await;
    stop(&app, &rid).await;

    let events = replay_into(&app, "again", json!({"recording": rid, "rate": 0})).await;
    assert_eq!(events.len(), 31);
    for (i, e) in events.iter().take(30).enumerate() {
        assert_eq!(e["event"], "sample");
        assert_eq!(e["data"]["i"], i);
        assert_eq!(e["replay"]["recording"], rid.as_str());
        assert_eq!(e["replay"]["original_seq"], sent["events"][i]["seq"]);
        assert!(e["replay"]["original_ts"].is_string());
    }
    assert_eq!(events[30]["event"], "marker");
    let status = app.status("again").await;
    assert_eq!(status["replay"]["played"], 31);
    assert_eq!(status["replay"]["total"], 31);

    // Only the globs asked for.
    let markers = replay_into(
        &app,
        "markers",
        json!({"recording": rid, "rate": 0, "events": ["marker"]}),
    )
    .await;
    assert_eq!(markers[0]["event"], "marker");
    assert_eq!(app.status("markers").await["replay"]["total"], 1);
}

#[tokio::test]
async fn a_replay_keeps_the_spacing_and_can_be_paused_resumed_moved_and_stopped() {
    let app = spawn_app().await;
    app.create_session(json!({"id": "paced"})).await;
    let rec = start_recording(&app, "paced", json!({})).await;
    let rid = rec["id"].as_str().expect("id").to_string();
    for i in 0..4 {
        app.publish("paced", json!([{"event": "beat", "data": {"i": i}}]))
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop(&app, &rid).await;

    app.create_session(json!({"id": "play", "enabledDistributors": ["websocket"]}))
        .await;
    let mut ws = app.ws("play", "").await;
    let started = std::time::Instant::now();
    let r = app
        .post(
            "/api/v1/sessions/play/replay",
            &json!({"recording": rid, "rate": 1.0}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let beats = ws.events(4).await;
    let took = started.elapsed();
    assert_eq!(beats.len(), 4);
    // 0.9 s of spacing in the recording, kept at rate 1 (generous bounds: a busy machine
    // is late, never early).
    assert!(took >= Duration::from_millis(800), "played in {took:?}");

    // Paused: nothing more comes; resumed: it goes on; stopped: it ends.
    let r = app
        .post(
            "/api/v1/sessions/play/replay",
            &json!({"recording": rid, "rate": 0.5, "loop": true}),
        )
        .await;
    assert_eq!(r.status, 201);
    let first = ws.events(1).await;
    assert_eq!(first[0]["data"]["i"], 0);
    let paused = app
        .post("/api/v1/sessions/play/replay/pause", &json!({}))
        .await;
    assert_eq!(paused.status, 200, "{}", paused.body);
    assert_eq!(paused.body["state"], "paused");
    let quiet = tokio::time::timeout(Duration::from_millis(1500), ws.next_event()).await;
    assert!(quiet.is_err(), "an event came while paused: {quiet:?}");
    let moved = app
        .post(
            "/api/v1/sessions/play/replay/seek",
            &json!({"position_s": 0.85}),
        )
        .await;
    assert_eq!(moved.status, 200, "{}", moved.body);
    assert!((moved.body["position_s"].as_f64().unwrap_or(0.0) - 0.85).abs() < 0.01);
    let resumed = app
        .post("/api/v1/sessions/play/replay/resume", &json!({}))
        .await;
    assert_eq!(resumed.body["state"], "playing");
    // After the seek, the last beat (at 0.9 s) comes next, then the loop starts again.
    let next = ws.events(2).await;
    assert_eq!(next[0]["data"]["i"], 3, "{next:?}");
    assert_eq!(next[1]["data"]["i"], 0, "{next:?}");
    let loops = app.get("/api/v1/sessions/play/replay").await.body;
    assert!(loops["loops"].as_u64().unwrap_or(0) >= 1, "{loops}");
    let stopped = app.delete("/api/v1/sessions/play/replay").await;
    assert_eq!(stopped.status, 200);
    assert_eq!(stopped.body["state"], "stopped");
    let bad_seek = app
        .post(
            "/api/v1/sessions/play/replay/seek",
            &json!({"position_s": "x"}),
        )
        .await;
    assert_eq!(bad_seek.status, 422);
    let unknown = app
        .post("/api/v1/sessions/play/replay/rewind", &json!({}))
        .await;
    assert_eq!(unknown.status, 404);
}

#[tokio::test]
async fn as_fast_as_possible_is_as_fast_as_the_outputs_take_them() {
    let app = spawn_app().await;
    let rid = recorded(&app, "orig", batch("sample", 300)).await;
    // A webhook one request at a time behind a queue of 10: at rate 0 the replay
    // sends no more than the queue has room for, so nothing is dropped.
    let receiver = crate::webhook::Receiver::start(0, vec![]);
    app.create_session(json!({"id": "slow", "enabledDistributors": ["http"],
        "distributors": {"http": {"baseUrl": receiver.url(), "maxInFlight": 1, "queueCapacity": 10}}}))
        .await;
    let r = app
        .post(
            "/api/v1/sessions/slow/replay",
            &json!({"recording": rid, "rate": 0}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let got = wait_until("the webhook to get all 300", DEADLINE, || async {
        let got = receiver.requests();
        (got.len() >= 300).then_some(got)
    })
    .await;
    let seqs: Vec<u64> = got.iter().map(|g| g.seq).collect();
    assert_eq!(seqs, (1..=300).collect::<Vec<u64>>());
    let samples: Vec<Value> = got.iter().map(|g| g.body["data"]["i"].clone()).collect();
    assert_eq!(samples, (0..300).map(|i| json!(i)).collect::<Vec<_>>());
    let http = app.distributor("slow", "http").await;
    assert_eq!(http["dropped"], 0, "{http}");
    assert_eq!(app.status("slow").await["replay"]["played"], 300);
}

#[tokio::test]
async fn re_analysis_tries_the_rules_in_force_without_acting() {
    let app = spawn_app().await;
    let rid = record_the_walk(&app).await;
    // A rule whose action would put an event into another session: in a re-analysis it
    // shows what it would do, and does not.
    app.create_session(json!({"id": "alerts"})).await;
    let put = app
        .put(
            "/api/v1/rules/door-in",
            &json!({"match": {"event": "LINE_CROSS", "lines": ["door"], "direction": "in"},
                "actions": [{"type": "session", "session": "alerts"}, "json_log"]}),
        )
        .await;
    assert_eq!(put.status, 201, "{}", put.body);
    let body = json!({"recording": rid, "rate": 0, "reanalyze": "door-cam"});
    let events = replay_into(&app, "dry", body.clone()).await;
    let names: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(
        names,
        ["track_started", "line_cross", "rule_matched", "track_ended"],
        "{events:?}"
    );
    let (crossing, matched) = (&events[1], &events[2]);
    assert_eq!(matched["data"]["rule"], "door-in");
    assert_eq!(matched["data"]["event"], "line_cross");
    assert_eq!(matched["data"]["dry_run"], true);
    assert_eq!(matched["data"]["actions"], json!(["session", "json_log"]));
    assert_eq!(matched["data"]["source"], "door-cam");
    assert_eq!(matched["data"]["data"]["line_id"], "door");
    // At the crossing's recorded time, marked as the crossing is.
    assert_eq!(matched["ts"], crossing["ts"]);
    assert_eq!(matched["replay"], crossing["replay"]);
    // The same matches every run.
    let again = replay_into(&app, "dry2", body).await;
    assert_eq!(
        serde_json::to_string(&comparable(&events)).expect("json"),
        serde_json::to_string(&comparable(&again)).expect("json")
    );
    // Nothing acted: the rule counted no match and the alerts session got nothing.
    let rule = app.get("/api/v1/rules/door-in").await.body;
    assert_eq!(rule["matched"], 0, "{rule}");
    let alerts = app.status("alerts").await;
    assert_eq!(alerts["events_received"], 0, "{alerts}");
    // Without the rules, the re-analysed events alone.
    let plain = replay_into(
        &app,
        "plain",
        json!({"recording": rid, "rate": 0, "reanalyze": "door-cam", "rules": false}),
    )
    .await;
    assert_eq!(plain.len(), 3, "{plain:?}");
    let r = app
        .post(
            "/api/v1/sessions/plain/replay",
            &json!({"recording": rid, "rules": true}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.to_string().contains("replay.rules"), "{}", r.body);
}

/// What re-analysis must reproduce byte for byte: each event without the numbering of
/// the session it went into.
fn comparable(events: &[Value]) -> Vec<Value> {
    events
        .iter()
        .map(|e| json!({"event": e["event"], "ts": e["ts"], "data": e["data"], "replay": e["replay"]}))
        .collect()
}

#[tokio::test]
async fn re_analysis_is_deterministic_and_follows_the_current_lines() {
    let app = spawn_app().await;
    let rid = record_the_walk(&app).await;
    let body = json!({"recording": rid, "rate": 0, "reanalyze": "door-cam"});
    let first = replay_into(&app, "re1", body.clone()).await;
    let second = replay_into(&app, "re2", body.clone()).await;
    let names: Vec<&str> = first.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(
        names,
        ["track_started", "line_cross", "track_ended"],
        "{first:?}"
    );
    // Byte-identical every run, and against the golden file.
    assert_eq!(
        serde_json::to_string(&comparable(&first)).expect("json"),
        serde_json::to_string(&comparable(&second)).expect("json")
    );
    let golden_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/api/golden/reanalysis.json"
    );
    let rid_free: Vec<Value> = comparable(&first)
        .into_iter()
        .map(|mut e| {
            e["replay"]["recording"] = json!("RID");
            e
        })
        .collect();
    let produced = serde_json::to_string_pretty(&rid_free).expect("json");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(golden_path, format!("{produced}\n")).expect("write golden");
    }
    let golden = std::fs::read_to_string(golden_path)
        .expect("tests/api/golden/reanalysis.json (UPDATE_GOLDEN=1 writes it)");
    assert_eq!(
        golden.trim_end(),
        produced,
        "re-analysis differs from the golden file"
    );
    // Times come from the recording, not the clock.
    assert!(
        first[1]["ts"]
            .as_str()
            .unwrap_or_default()
            .starts_with("2026-11-22T09:00:"),
        "{}",
        first[1]
    );

    // The line moved below the walk's end: no crossing any more.
    let moved = app
        .patch(
            "/api/v1/sources/door-cam",
            &json!({"lines": [{"id": "door", "points": [[0, "95%"], ["100%", "95%"]]}]}),
        )
        .await;
    assert_eq!(moved.status, 200, "{}", moved.body);
    app.create_session(json!({"id": "re3", "enabledDistributors": ["websocket"]}))
        .await;
    let r = app.post("/api/v1/sessions/re3/replay", &body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    wait_until("the third replay to finish", DEADLINE, || async {
        let s = app.status("re3").await;
        (s["replay"]["state"] == "finished").then_some(s)
    })
    .await;
    let third = app.status("re3").await;
    assert_eq!(
        third["replay"]["total"].as_u64(),
        Some(first.len() as u64 - 1),
        "{third}"
    );
    let source = app.get("/api/v1/sources/door-cam").await.body;
    // Re-analysis does not touch the live source's counts.
    assert_eq!(
        source["stats"]["counts"]["lines"]["door"]["in"]
            .as_u64()
            .unwrap_or(0)
            + source["stats"]["counts"]["lines"]["door"]["out"]
                .as_u64()
                .unwrap_or(0),
        1,
        "{source}"
    );
}

#[tokio::test]
async fn a_recording_cut_by_sigkill_is_readable_and_goes_on_after_the_restart() {
    let store = crate::store::TestStore::sqlite();
    let dir = std::env::temp_dir().join(format!("synopticon-rec-kill-{}", uuid::Uuid::new_v4()));
    let config = format!(
        "[server]\nport = 0\n{}\n[recording]\ndir = \"{}\"\nflush_interval_ms = 200\n",
        store.config(),
        dir.display()
    );
    let mut server = ServerProcess::start(&config);
    let app = TestApp::on(server.app.port);
    app.create_session(json!({"id": "trial"})).await;
    let rec = start_recording(&app, "trial", json!({"label": "P12"})).await;
    let rid = rec["id"].as_str().expect("id").to_string();
    let file = dir.join(rec["file"].as_str().expect("file"));
    let mut seqs = Vec::new();
    for _ in 0..6 {
        let r = app.publish("trial", batch("sample", 50)).await;
        seqs.extend(
            r["events"]
                .as_array()
                .expect("events")
                .iter()
                .filter_map(|e| e["seq"].as_u64()),
        );
    }
    // Flushed within the interval: the server's own reader sees all 300 on disk.
    wait_until("300 events flushed to disk", DEADLINE, || async {
        let read = synopticon_actors::recording::reader::read(
            &file,
            &synopticon_actors::recording::reader::Keep::everything(),
        )
        .ok()?;
        (read.events.len() == 300).then_some(())
    })
    .await;
    server.child.kill().expect("SIGKILL");
    server.child.wait().expect("the server is gone");

    // An independent reader gets every event up to the cut, in order.
    let read = read_mcap(&file, true);
    let events = events_of(&read);
    assert_eq!(events.len(), 300, "truncated: {}", read["truncated"]);
    let got: Vec<u64> = events
        .iter()
        .filter_map(|m| m["data"]["seq"].as_u64())
        .collect();
    assert_eq!(got, seqs);
    assert_eq!(read["metadata"]["study"]["label"], "P12");

    // After the restart: the cut recording is marked, and a new one goes on.
    let server = ServerProcess::start(&config);
    let app = TestApp::on(server.app.port);
    let old = app.get(&format!("/api/v1/recordings/{rid}")).await.body;
    assert_eq!(old["state"], "interrupted", "{old}");
    assert!(old["bytes"].as_u64().unwrap_or(0) > 0);
    // Whose data its last moments wrote may be missing from what was kept: not known, so
    // scoped tokens do not see it.
    assert_eq!(old["holds"], Value::Null, "{old}");
    let list = app.get("/api/v1/recordings").await.body;
    let next = list["recordings"]
        .as_array()
        .expect("list")
        .iter()
        .find(|r| r["continues"] == rid.as_str())
        .cloned()
        .expect("a recording that continues the cut one");
    assert_eq!(next["state"], "recording");
    assert_eq!(next["session"], "trial");
    assert_eq!(next["spec"]["label"], "P12");
    app.publish("trial", batch("sample", 5)).await;
    let next_id = next["id"].as_str().expect("id").to_string();

    // A clean stop (SIGTERM) finishes the file, with its index, and the recording goes
    // on after the restart, once.
    let mut server = server;
    crate::store::stop(&mut server, "-TERM");
    let finished = read_mcap(&dir.join(next["file"].as_str().expect("file")), false);
    assert_eq!(events_of(&finished).len(), 5, "a complete, indexed file");
    let server = ServerProcess::start(&config);
    let app = TestApp::on(server.app.port);
    let before = app.get(&format!("/api/v1/recordings/{next_id}")).await.body;
    assert_eq!(before["state"], "stopped", "{before}");
    assert_eq!(before["events"], 5);
    let list = app.get("/api/v1/recordings").await.body;
    let continuing: Vec<&Value> = list["recordings"]
        .as_array()
        .expect("list")
        .iter()
        .filter(|r| r["continues"] == next_id.as_str())
        .collect();
    assert_eq!(continuing.len(), 1, "{list}");
    assert_eq!(continuing[0]["state"], "recording");
    drop(server);
    let server = ServerProcess::start(&config);
    let app = TestApp::on(server.app.port);
    let list = app.get("/api/v1/recordings").await.body;
    let again = list["recordings"]
        .as_array()
        .expect("list")
        .iter()
        .filter(|r| r["continues"] == next_id.as_str())
        .count();
    assert_eq!(again, 1, "continued once, not at every start: {list}");
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}

/// Runs `synopticon replay ARGS`; its exit success and what it said.
async fn replay_cli(args: &[&str]) -> (bool, String) {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_synopticon"))
        .arg("replay")
        .args(args)
        .env_remove("SYNOPTICON_TOKEN")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("synopticon replay ends in time")
        .expect("synopticon replay runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[tokio::test]
async fn the_replay_command_plays_a_file_into_a_running_server() {
    let app = spawn_app().await;
    let rid = recorded(&app, "field", batch("gaze_data", 40)).await;
    let file = download(&app, &rid).await;
    let file_arg = file.display().to_string();

    // A fresh session, made by the command, listened to by a WebSocket client.
    app.create_session(json!({"id": "desk", "enabledDistributors": ["websocket"]}))
        .await;
    let mut ws = app.ws("desk", "").await;
    let (ok, said) = replay_cli(&[
        &file_arg,
        "--to",
        &app.address,
        "--session",
        "desk",
        "--rate",
        "0",
    ])
    .await;
    assert!(ok, "{said}");
    assert!(said.contains("played 40 events"), "{said}");
    let events = ws.events(40).await;
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["event"], "gaze_data");
        assert_eq!(e["data"]["i"], i);
        assert!(
            e["replay"]["recording"].as_str().is_some_and(|r| r != rid),
            "{e}"
        );
    }
    // The file it sent is kept as a recording, saying where it came from.
    let list = app.get("/api/v1/recordings").await.body;
    let imported = list["recordings"]
        .as_array()
        .expect("list")
        .iter()
        .find(|r| {
            r["stop_reason"]
                .as_str()
                .is_some_and(|s| s.starts_with("imported from"))
        })
        .cloned()
        .expect("the imported file");
    assert_eq!(imported["events"], 40);
    assert_eq!(imported["session"], "field");

    // Clear errors, nothing played.
    let (ok, said) = replay_cli(&[&file_arg, "--to", "127.0.0.1:1", "--session", "desk"]).await;
    assert!(!ok && said.contains("--to"), "{said}");
    let (ok, said) = replay_cli(&[
        "/nonexistent.mcap",
        "--to",
        &app.address,
        "--session",
        "desk",
    ])
    .await;
    assert!(
        !ok && said.contains("cannot read /nonexistent.mcap"),
        "{said}"
    );
    let (ok, said) = replay_cli(&[&file_arg, "--to", &app.address, "--session", "nobody"]).await;
    assert!(!ok && said.contains("404"), "{said}");
    let not_mcap = std::env::temp_dir().join(format!("not-{}.mcap", uuid::Uuid::new_v4()));
    std::fs::write(&not_mcap, b"hello").expect("write");
    let (ok, said) = replay_cli(&[
        &not_mcap.display().to_string(),
        "--to",
        &app.address,
        "--session",
        "desk",
    ])
    .await;
    assert!(!ok && said.contains("not a recording"), "{said}");
    let _ = std::fs::remove_file(not_mcap);
    let _ = std::fs::remove_file(file);
}

#[tokio::test]
async fn a_looping_replay_waits_between_passes_and_a_fast_one_pays_its_starters_event_budget() {
    // A one-event recording looped: passes start at least a second apart, at any rate.
    let app = spawn_app().await;
    let rid = recorded(&app, "one", json!([{"event": "blip", "data": {}}])).await;
    for (session, rate) in [("loop-1", 1.0), ("loop-0", 0.0)] {
        app.create_session(json!({"id": session})).await;
        let started = std::time::Instant::now();
        let r = app
            .post(
                &format!("/api/v1/sessions/{session}/replay"),
                &json!({"recording": rid, "rate": rate, "loop": true}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        // At least two passes, then the count against the time it took.
        let status = wait_until("a second pass", DEADLINE, || async {
            let s = app.status(session).await["replay"].clone();
            (s["played"].as_u64() >= Some(2)).then_some(s)
        })
        .await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let played = app.status(session).await["replay"]["played"]
            .as_u64()
            .unwrap_or(0);
        let elapsed = started.elapsed().as_secs_f64();
        // One event per pass, a pass per second at most (the first at once).
        assert!(
            played as f64 <= elapsed.floor() + 1.0,
            "rate {rate}: {played} events in {elapsed:.2} s ({status})"
        );
        assert!(played >= 2);
        let stopped = app
            .post(
                &format!("/api/v1/sessions/{session}/replay/stop"),
                &json!({}),
            )
            .await;
        assert_eq!(stopped.status, 200, "{}", stopped.body);
    }
    // Seeking past the window is refused, naming it.
    let far = app
        .post(
            "/api/v1/sessions/loop-1/replay/seek",
            &json!({"position_s": 1e308}),
        )
        .await;
    assert_eq!(far.status, 422, "{}", far.body);

    // As fast as possible in production: no faster than the starter's event budget.
    const ADMIN: &str = "syn_replay-budget-admin-0000000000000000000000000000";
    let app = spawn_app_with(|s| {
        s.server.mode = synopticon::configuration::Mode::Production;
        s.auth.tokens = vec![token_config("admin", "operator", ADMIN)];
        s.rate_limit.events_per_sec = 100.0;
        s.rate_limit.event_burst = 100.0;
        s.rate_limit.requests_per_sec = 10_000.0;
        s.rate_limit.request_burst = 10_000.0;
    })
    .await
    .with_token(ADMIN);
    app.create_session(json!({"id": "many"})).await;
    let rec = start_recording(&app, "many", json!({})).await;
    let many = rec["id"].as_str().expect("id").to_string();
    for _ in 0..5 {
        // Each batch is charged: paced by the test so it is taken.
        wait_until("room in the budget", DEADLINE, || async {
            let r = app
                .post("/api/v1/sessions/many/events", &batch("sample", 60))
                .await;
            (r.status == 202).then_some(())
        })
        .await;
    }
    stop(&app, &many).await;
    app.create_session(json!({"id": "fast"})).await;
    // The budget refills fully before the replay starts.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let started = std::time::Instant::now();
    let r = app
        .post(
            "/api/v1/sessions/fast/replay",
            &json!({"recording": many, "rate": 0}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    wait_until("the first batch", DEADLINE, || async {
        let s = app.status("fast").await["replay"].clone();
        (s["played"].as_u64() > Some(0)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let status = app.status("fast").await["replay"].clone();
    let elapsed = started.elapsed().as_secs_f64();
    let played = status["played"].as_u64().unwrap_or(0);
    // The burst at once, then 100 a second: a load can only make it slower.
    assert!(
        played as f64 <= 100.0 + 100.0 * elapsed + 1.0,
        "{played} events in {elapsed:.2} s with a budget of 100/s: {status}"
    );
    let done = wait_until(
        "the whole recording, paced",
        Duration::from_secs(15),
        || async {
            let s = app.status("fast").await["replay"].clone();
            (s["state"] == "finished").then_some(s)
        },
    )
    .await;
    assert_eq!(done["played"], 300, "nothing lost to the pace: {done}");
}

/// An MCAP file of one zstd chunk holding `unpacked` bytes of zeros in one event: a few
/// kilobytes as sent.
fn compressed_zeros(unpacked: usize) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut w = mcap::WriteOptions::new()
        .compression(Some(mcap::Compression::Zstd))
        .chunk_size(Some(u64::MAX))
        .create(&mut out)
        .expect("writer");
    let channel = w
        .add_channel(
            0,
            "/events/zeros",
            "json",
            &std::collections::BTreeMap::new(),
        )
        .expect("channel");
    let mut data = br#"{"session":"bomb","seq":1,"event":"zeros","ts":"2026-12-01T10:00:00.000Z","data":{"pad":""#.to_vec();
    data.resize(data.len() + unpacked, b'0');
    data.extend_from_slice(br#""}}"#);
    let header = mcap::records::MessageHeader {
        channel_id: channel,
        sequence: 1,
        log_time: 1,
        publish_time: 1,
    };
    w.write_to_known_channel(&header, &data).expect("message");
    w.finish().expect("finish");
    drop(w);
    out.into_inner()
}

#[tokio::test]
async fn an_import_is_bounded_by_what_it_unpacks_to_not_only_by_what_is_sent() {
    let app = spawn_app_with(|s| s.recording.max_import_mb = 4).await;
    // 64 MiB of zeros in a file of a few kilobytes: refused before anything is unpacked.
    let bomb = compressed_zeros(64 << 20);
    assert!(bomb.len() < 64 * 1024, "{} bytes sent", bomb.len());
    let refused = app
        .post_bytes("/api/v1/recordings", bomb, "application/octet-stream")
        .await;
    assert_eq!(refused.status, 413, "{}", refused.body);
    assert!(
        refused.body["error"]
            .as_str()
            .is_some_and(|e| e.contains("unpack") && e.contains("recording.max_import_mb")),
        "{}",
        refused.body
    );
    // Within the limit unpacked, the same kind of file is taken.
    let small = compressed_zeros(1 << 20);
    let taken = app
        .post_bytes("/api/v1/recordings", small, "application/octet-stream")
        .await;
    assert_eq!(taken.status, 201, "{}", taken.body);
    assert_eq!(taken.body["events"], 1);
    let listed = app.get("/api/v1/recordings").await.body;
    assert_eq!(
        listed["recordings"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
}
