//! Vision sources over REST: an `external` source fed scripted detections (the edge
//! device's side of seed 004) is tracked and analysed, and its events reach the sessions
//! that listen to it, over WebSocket.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, wait_until, TestApp, WsClient, DEADLINE};

/// Frames are 100 ms apart in the scripted feed.
const FRAME_MS: i64 = 100;

fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 9, 0, 0)
        .single()
        .expect("valid time")
}

/// One message in the seed-004 envelope with one person whose feet are at (x, y_bottom).
pub(crate) fn envelope(frame: i64, people: &[(f32, f32)]) -> Value {
    let at = base() + chrono::Duration::milliseconds(frame * FRAME_MS);
    json!({
        "version": 1,
        "source": {"device_id": "jetson-01", "camera_id": "door-cam", "timestamp": at.to_rfc3339()},
        "frame": {"number": frame, "width": 640, "height": 480},
        "detections": people.iter().map(|(x, y)| json!({
            "class_id": 0, "class_name": "person", "confidence": 0.9,
            "bbox": {"x1": x - 40.0, "y1": y - 160.0, "x2": x + 40.0, "y2": *y},
        })).collect::<Vec<_>>(),
    })
}

async fn add_door_cam(app: &TestApp) {
    let answer = app
        .post(
            "/api/v1/sources",
            &json!({
                "id": "door-cam",
                "kind": "external",
                "lines": [{"id": "door", "points": [[0, "50%"], ["100%", "50%"]]}],
                "zones": [{"id": "desk", "points": [[400, 300], [640, 300], [640, 480], [400, 480]]}],
                "detections_events": false,
            }),
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    assert_eq!(answer.body["state"], "running");
}

async fn feed(app: &TestApp, frames: &[(i64, Vec<(f32, f32)>)]) {
    for (frame, people) in frames {
        let answer = app
            .post(
                "/api/v1/sources/door-cam/detections",
                &envelope(*frame, people),
            )
            .await;
        assert_eq!(answer.status, 202, "{}", answer.body);
    }
}

/// Events until `last` arrives (or the deadline), as (event, data).
async fn events_until(ws: &mut WsClient, last: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while tokio::time::Instant::now() < deadline {
        let Some(frame) = ws.next_event().await else {
            break;
        };
        let name = frame["event"].as_str().unwrap_or_default().to_string();
        out.push((name.clone(), frame["data"].clone()));
        if name == last {
            break;
        }
    }
    out
}

#[tokio::test]
async fn an_external_source_counts_line_crossings_zone_visits_and_track_ends() {
    let app = spawn_app().await;
    add_door_cam(&app).await;
    app.create_session(json!({"id": "lab", "sources": ["door-cam"]}))
        .await;
    app.create_session(json!({"id": "elsewhere"})).await;
    let mut ws = app.ws("lab", "").await;
    let mut other = app.ws("elsewhere", "").await;

    // Walk down across the door line at y = 240, jitter on it, walk on into the desk
    // zone, stay, walk back up across the line, then vanish.
    let mut path: Vec<(f32, f32)> = Vec::new();
    let walk = |path: &mut Vec<(f32, f32)>, to: (f32, f32), steps: u32| {
        let from = *path.last().unwrap_or(&to);
        for i in 1..=steps {
            let t = i as f32 / steps as f32;
            path.push((from.0 + (to.0 - from.0) * t, from.1 + (to.1 - from.1) * t));
        }
    };
    path.push((300.0, 150.0));
    walk(&mut path, (300.0, 230.0), 4);
    // Jitter within the 8 px band around y = 240: must not count.
    path.extend([236.0, 245.0, 235.0, 244.0, 237.0, 246.0].map(|y| (300.0, y)));
    walk(&mut path, (470.0, 366.0), 8);
    walk(&mut path, (470.0, 366.0), 5);
    walk(&mut path, (300.0, 150.0), 12);
    let inside = |(x, y): (f32, f32)| x > 400.0 && y > 300.0;
    let entered = path
        .iter()
        .position(|p| inside(*p))
        .expect("the path enters the zone");
    let left = entered
        + path[entered..]
            .iter()
            .position(|p| !inside(*p))
            .expect("and leaves it");
    let walked = path.len() as i64;
    let mut frames: Vec<(i64, Vec<(f32, f32)>)> = path
        .iter()
        .enumerate()
        .map(|(i, p)| (i as i64, vec![*p]))
        .collect();
    // Nothing seen for longer than the tracker's 30-frame buffer: the track ends.
    for k in 0..32 {
        frames.push((walked + k, Vec::new()));
    }
    let n = walked + 32;
    feed(&app, &frames).await;

    let got = events_until(&mut ws, "track_ended").await;
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "track_started",
            "line_cross",
            "zone_enter",
            "zone_exit",
            "line_cross",
            "track_ended"
        ],
        "{got:#?}"
    );
    let track_id = got[0].1["track_id"].clone();
    assert_eq!(track_id, 1);
    for (name, data) in &got {
        assert_eq!(data["track_id"], track_id, "{name}: one track throughout");
        assert_eq!(data["source"], "door-cam", "{name}");
    }
    assert_eq!(got[1].1["line_id"], "door");
    assert_eq!(
        got[1].1["direction"], "in",
        "moving down across a line drawn left to right"
    );
    assert_eq!(got[4].1["direction"], "out");
    assert_eq!(got[2].1["zone_id"], "desk");
    let dwell = got[3].1["dwell_s"].as_f64().unwrap_or(-1.0);
    let expected_dwell = (left - entered) as f64 * FRAME_MS as f64 / 1000.0;
    assert!(
        (dwell - expected_dwell).abs() < 1e-6,
        "dwell {dwell}, expected {expected_dwell}"
    );
    assert_eq!(got[3].1["reason"], "left");
    assert_eq!(got[5].1["state"], "removed");
    assert_eq!(
        got[5].1["reason"], "lost",
        "unseen for longer than the buffer"
    );
    // Seen from frame 0 (confirmed at its second) to frame walked-1.
    let duration = got[5].1["duration_s"].as_f64().unwrap_or(-1.0);
    let expected = (walked - 1) as f64 * FRAME_MS as f64 / 1000.0;
    assert!(
        (duration - expected).abs() < 1e-6,
        "duration {duration}, expected {expected}"
    );

    // The session that does not listen got nothing; after subscribing, it gets events.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), other.next_event())
            .await
            .is_err(),
        "a session that does not listen to door-cam received an event"
    );
    let put = app
        .put("/api/v1/sessions/elsewhere/sources", &json!(["door-cam"]))
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    feed(
        &app,
        &[(n, vec![(100.0, 100.0)]), (n + 1, vec![(102.0, 101.0)])],
    )
    .await;
    let first = other
        .next_event()
        .await
        .expect("an event after subscribing");
    assert_eq!(first["event"], "track_started");
    assert_eq!(first["data"]["track_id"], 2);
    let status = app.get("/api/v1/sessions/elsewhere").await;
    assert_eq!(status.body["config"]["sources"], json!(["door-cam"]));

    // The source's counters.
    let source = app.get("/api/v1/sources/door-cam").await.body;
    assert_eq!(source["stats"]["frames_processed"], frames.len() as u64 + 2);
    assert_eq!(source["stats"]["active_tracks"], 1);
    let metrics = app.metrics().await;
    let processed = format!(
        "synopticon_source_frames_total{{source=\"door-cam\",outcome=\"processed\"}} {}",
        frames.len() + 2
    );
    assert!(metrics.contains(&processed), "{processed} not in {metrics}");
    assert!(
        metrics.contains(r#"synopticon_source_active_tracks{source="door-cam"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_tracks_view_shows_each_track_state_and_removal_says_why() {
    let app = spawn_app().await;
    add_door_cam(&app).await;
    app.create_session(json!({"id": "lab", "sources": ["door-cam"]}))
        .await;
    let mut ws = app.ws("lab", "").await;
    let tracks = || async { app.get("/api/v1/sources/door-cam/tracks").await };

    let empty = tracks().await;
    assert_eq!(empty.status, 200, "{}", empty.body);
    assert_eq!(
        empty.body,
        json!({"source": "door-cam", "frames_tracked": 0, "tracks": []})
    );

    // One sighting: tentative, without an id.
    feed(&app, &[(0, vec![(100.0, 300.0)])]).await;
    let view = tracks().await.body;
    assert_eq!(view["frames_tracked"], 1);
    assert_eq!(view["tracks"].as_array().map(Vec::len), Some(1), "{view}");
    assert_eq!(view["tracks"][0]["state"], "tentative");
    assert!(view["tracks"][0].get("track_id").is_none(), "{view}");

    // A second: confirmed, id 1; a second person appears tentative beside it.
    feed(&app, &[(1, vec![(104.0, 300.0), (500.0, 300.0)])]).await;
    let view = tracks().await.body;
    let states: Vec<(Value, Value)> = view["tracks"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| (t["track_id"].clone(), t["state"].clone()))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        states,
        [
            (json!(1), json!("confirmed")),
            (Value::Null, json!("tentative"))
        ],
        "{view}"
    );
    assert_eq!(view["tracks"][0]["hits"], 2);
    assert_eq!(view["tracks"][0]["class_name"], "person");
    assert_eq!(view["tracks"][0]["bbox"]["x1"], 64.0);

    // Unseen: lost (the buffer is 30 frames), counting missed frames; the tentative one is gone.
    feed(&app, &[(2, vec![]), (3, vec![])]).await;
    let view = tracks().await.body;
    assert_eq!(view["tracks"].as_array().map(Vec::len), Some(1), "{view}");
    assert_eq!(view["tracks"][0]["state"], "lost");
    assert_eq!(view["tracks"][0]["missed_frames"], 2);

    // Seen again in time: the same id, confirmed.
    feed(&app, &[(4, vec![(110.0, 300.0)])]).await;
    let view = tracks().await.body;
    assert_eq!(view["tracks"][0]["track_id"], 1);
    assert_eq!(view["tracks"][0]["state"], "confirmed");

    // Removing the source removes its tracks, and says so.
    assert_eq!(app.delete("/api/v1/sources/door-cam").await.status, 204);
    let got = events_until(&mut ws, "track_ended").await;
    let (name, data) = got.last().expect("events");
    assert_eq!(name, "track_ended", "{got:?}");
    assert_eq!(data["track_id"], 1);
    assert_eq!(data["state"], "removed");
    assert_eq!(data["reason"], "source_stopped");
    assert_eq!(tracks().await.status, 404);
}

#[tokio::test]
async fn source_requests_are_validated_and_answered_with_clear_errors() {
    let app = spawn_app().await;
    add_door_cam(&app).await;

    let duplicate = app
        .post(
            "/api/v1/sources",
            &json!({"id": "door-cam", "kind": "external"}),
        )
        .await;
    assert_eq!(duplicate.status, 409, "{}", duplicate.body);

    let invalid = app
        .post(
            "/api/v1/sources",
            &json!({"id": "bad", "kind": "file", "fps": 0,
                    "lines": [{"id": "l", "points": [[0, "half"], [10, 10]]}],
                    "zones": [{"id": "z", "points": [[0, 0], [1, 1]]}]}),
        )
        .await;
    assert_eq!(invalid.status, 422, "{}", invalid.body);
    let details = invalid.body["details"].to_string();
    for needle in [
        "url: a file source needs one",
        "fps: 0",
        "lines[0].points[0][1]",
        "zones[0].points: a zone needs at least 3 points",
    ] {
        assert!(details.contains(needle), "missing {needle:?} in {details}");
    }
    let unknown_kind = app
        .post("/api/v1/sources", &json!({"id": "x", "kind": "webcam9000"}))
        .await;
    assert_eq!(unknown_kind.status, 422, "{}", unknown_kind.body);
    assert!(
        unknown_kind.body["details"].to_string().contains("kind"),
        "{}",
        unknown_kind.body
    );
    let no_model = app
        .post(
            "/api/v1/sources",
            &json!({"id": "cam", "kind": "synthetic"}),
        )
        .await;
    assert_eq!(no_model.status, 422, "{}", no_model.body);
    assert!(
        no_model.body["details"].to_string().contains("model"),
        "{}",
        no_model.body
    );

    let bad_envelope = app
        .post(
            "/api/v1/sources/door-cam/detections",
            &json!({"version": 1, "frame": {"width": 640}}),
        )
        .await;
    assert_eq!(bad_envelope.status, 422, "{}", bad_envelope.body);
    assert!(bad_envelope.body["details"]
        .to_string()
        .contains("frame.height"));
    let bad_box = app
        .post(
            "/api/v1/sources/door-cam/detections",
            &json!({"frame": {"width": 640, "height": 480},
                    "detections": [{"confidence": 0.9, "bbox": {"x1": 10, "y1": 10, "x2": 5, "y2": 20}}]}),
        )
        .await;
    assert_eq!(bad_box.status, 422, "{}", bad_box.body);
    let unknown = app
        .post("/api/v1/sources/nope/detections", &envelope(0, &[]))
        .await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);

    // PATCH: lines and zones change while it runs; what it is cannot.
    let patched = app
        .patch(
            "/api/v1/sources/door-cam",
            &json!({"lines": [], "hysteresis_px": 4}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body["config"]["lines"], json!([]));
    assert_eq!(patched.body["config"]["hysteresis_px"], 4.0);
    let frozen = app
        .patch("/api/v1/sources/door-cam", &json!({"kind": "file"}))
        .await;
    assert_eq!(frozen.status, 422, "{}", frozen.body);
    assert!(frozen.body["details"]
        .to_string()
        .contains("cannot be changed"));

    let listed = app.get("/api/v1/sources").await.body;
    assert_eq!(listed["sources"].as_array().map(Vec::len), Some(1));
    let health = app.get("/api/health").await.body;
    assert_eq!(
        health["components"]["sources"]["sources"]["door-cam"]["state"],
        "running"
    );

    assert_eq!(app.delete("/api/v1/sources/door-cam").await.status, 204);
    assert_eq!(app.get("/api/v1/sources/door-cam").await.status, 404);
    wait_until("source gone from health", DEADLINE, || async {
        let h = app.get("/api/health").await.body;
        h["components"]["sources"]["sources"]
            .get("door-cam")
            .is_none()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn sources_are_bounded_and_a_freed_place_can_be_taken_again() {
    let app = crate::helpers::spawn_app_with(|s| s.server.max_sources = 2).await;
    let add = |id: &'static str| {
        let app = &app;
        async move {
            app.post("/api/v1/sources", &json!({"id": id, "kind": "external"}))
                .await
        }
    };
    assert_eq!(add("a").await.status, 201);
    assert_eq!(add("b").await.status, 201);
    let third = add("c").await;
    assert_eq!(third.status, 503, "{}", third.body);
    assert_eq!(
        third.body["error"],
        "the server already runs its maximum of 2 sources (server.max_sources)"
    );
    assert_eq!(
        app.get("/api/v1/sources").await.body["sources"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert_eq!(app.delete("/api/v1/sources/a").await.status, 204);
    assert_eq!(add("c").await.status, 201);
}

#[tokio::test]
async fn sources_declared_in_the_configuration_start_with_the_server() {
    let app = crate::helpers::spawn_app_with(|s| {
        s.sources = vec![serde_json::from_value(json!({
            "id": "gate", "kind": "external",
            "zones": [{"id": "yard", "points": [[0, 0], ["100%", 0], ["100%", "100%"], [0, "100%"]]}],
        }))
        .expect("source config")];
    })
    .await;

    let listed = app.get("/api/v1/sources").await.body;

    let sources = listed["sources"].as_array().expect("sources");
    assert_eq!(sources.len(), 1, "{listed}");
    assert_eq!(sources[0]["id"], "gate");
    assert_eq!(sources[0]["state"], "running");
    assert_eq!(sources[0]["config"]["zones"][0]["id"], "yard");
}

#[tokio::test]
async fn changes_made_while_a_source_runs_apply_from_the_next_frame_and_keep_visits() {
    let app = spawn_app().await;
    add_door_cam(&app).await;
    app.create_session(json!({"id": "lab", "sources": ["door-cam"]}))
        .await;
    let mut ws = app.ws("lab", "").await;
    // Down across the door line (y = 240) and into the desk zone (x > 400, y > 300).
    let path: Vec<(f32, f32)> = (0..=10)
        .map(|i| {
            let t = i as f32 / 10.0;
            (300.0 + 170.0 * t, 150.0 + 216.0 * t)
        })
        .collect();
    let entered = path
        .iter()
        .position(|(x, y)| *x > 400.0 && *y > 300.0)
        .expect("the path enters the zone") as i64;
    let frames: Vec<(i64, Vec<(f32, f32)>)> = path
        .iter()
        .enumerate()
        .map(|(i, p)| (i as i64, vec![*p]))
        .collect();
    feed(&app, &frames).await;
    let before = events_until(&mut ws, "zone_enter").await;
    let names: Vec<&str> = before.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["track_started", "line_cross", "zone_enter"],
        "{before:#?}"
    );

    // A second zone, persons only, a shorter track buffer: the desk zone stays.
    let patched = app
        .patch(
            "/api/v1/sources/door-cam",
            &json!({
                "zones": [
                    {"id": "window", "points": [[0, 0], [100, 0], [100, 100], [0, 100]]},
                    {"id": "desk", "points": [[400, 300], [640, 300], [640, 480], [400, 480]]},
                ],
                "classes": ["person"],
                "tracker": {"track_buffer": 3},
            }),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    let tracker = &patched.body["config"]["tracker"];
    assert_eq!(tracker["track_buffer"], 3);
    assert_eq!(
        tracker["min_hits"], 2,
        "thresholds not named keep their value"
    );
    assert_eq!(tracker["high_threshold"], 0.5);

    // The person stays two more frames with a car beside it (filtered out).
    let car = |frame: i64, person: (f32, f32)| {
        let mut e = envelope(frame, &[person]);
        if let Some(list) = e["detections"].as_array_mut() {
            list.push(
                json!({"class_id": 2, "class_name": "car", "confidence": 0.95,
                             "bbox": {"x1": 10, "y1": 300, "x2": 200, "y2": 420}}),
            );
        }
        e
    };
    for (frame, person) in [(11, (470.0, 368.0)), (12, (470.0, 370.0))] {
        let r = app
            .post("/api/v1/sources/door-cam/detections", &car(frame, person))
            .await;
        assert_eq!(r.status, 202, "{}", r.body);
    }
    // Then nothing: with a buffer of 3 the track ends at the 4th missed frame (with the
    // default of 30 it would live on), inside the zone.
    let last_seen = 12;
    let ended_at = last_seen + 4;
    let missed: Vec<(i64, Vec<(f32, f32)>)> = (last_seen + 1..=ended_at)
        .map(|f| (f, Vec::new()))
        .collect();
    feed(&app, &missed).await;
    let after = events_until(&mut ws, "track_ended").await;
    let names: Vec<&str> = after.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["zone_exit", "track_ended"],
        "no second zone_enter, no car track: {after:#?}"
    );
    let (_, exit) = &after[0];
    assert_eq!(exit["zone_id"], "desk");
    assert_eq!(exit["reason"], "track_ended");
    // The visit survived the change: its dwell counts from the first entry.
    let dwell = exit["dwell_s"].as_f64().unwrap_or(-1.0);
    let expected = (ended_at - entered) as f64 * FRAME_MS as f64 / 1000.0;
    assert!(
        (dwell - expected).abs() < 1e-3,
        "dwell {dwell}, expected {expected}"
    );
    assert_eq!(after[1].1["track_id"], before[0].1["track_id"]);
}

#[tokio::test]
async fn detections_envelopes_follow_their_rate_limit() {
    let app = spawn_app().await;
    let created = app
        .post(
            "/api/v1/sources",
            &json!({"id": "edge", "kind": "external", "detections_every_ms": 600000}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    app.create_session(json!({"id": "lab", "sources": ["edge"]}))
        .await;
    let mut ws = app.ws("lab", "?events=detections").await;
    let post = |frame: i64| {
        let app = &app;
        async move {
            let r = app
                .post(
                    "/api/v1/sources/edge/detections",
                    &envelope(frame, &[(100.0, 200.0)]),
                )
                .await;
            assert_eq!(r.status, 202, "{}", r.body);
        }
    };
    for frame in 0..5 {
        post(frame).await;
    }
    // At most one envelope per 10 minutes: the first frame's.
    let first = ws.next_event().await.expect("one envelope");
    assert_eq!(first["data"]["frame"]["number"], 0);
    // Envelopes carry tracks: a first sighting is not one yet.
    assert_eq!(first["data"]["detections"], json!([]));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), ws.next_event())
            .await
            .is_err(),
        "a second envelope within the limit"
    );
    // Every frame from now on.
    let patched = app
        .patch("/api/v1/sources/edge", &json!({"detections_every_ms": 0}))
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    for frame in 5..8 {
        post(frame).await;
    }
    let envelopes = ws.events(3).await;
    let numbers: Vec<&Value> = envelopes
        .iter()
        .map(|e| &e["data"]["frame"]["number"])
        .collect();
    assert_eq!(numbers, [&json!(5), &json!(6), &json!(7)]);
    for e in &envelopes {
        assert_eq!(e["data"]["detections"][0]["track_id"], 1, "{e}");
    }
}

#[tokio::test]
async fn anchors_class_filters_per_line_and_loitering_work_through_the_api() {
    let app = spawn_app().await;
    let created = app
        .post(
            "/api/v1/sources",
            &json!({
                "id": "yard",
                "kind": "external",
                "detections_events": false,
                // The box's centre stands for the object: 80 px above its feet here.
                "anchor": "center",
                "lines": [
                    {"id": "cars-only", "points": [[0, 200], [640, 200]], "classes": ["car"]},
                    {"id": "everyone", "points": [[0, 300], [640, 300]]},
                ],
                "zones": [{"id": "bench", "points": [[0, 350], [640, 350], [640, 480], [0, 480]],
                           "loiter_after_s": 0.5}],
            }),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    app.create_session(json!({"id": "lab", "sources": ["yard"]}))
        .await;
    let mut ws = app.ws("lab", "").await;
    // A person whose centre walks from y = 150 down to y = 420 (feet 80 px lower), in
    // 10 px steps 100 ms apart, then sits still on the bench for a second.
    let centres: Vec<f32> = (0..=27).map(|i| 150.0 + 10.0 * i as f32).collect();
    let mut frame = 0;
    let mut post = |y_centre: f32| {
        let body = json!({
            "version": 1,
            "source": {"timestamp": (base() + chrono::Duration::milliseconds(frame * FRAME_MS)).to_rfc3339()},
            "frame": {"width": 640, "height": 480},
            "detections": [{"class_name": "person", "confidence": 0.9,
                            "bbox": {"x1": 280.0, "y1": y_centre - 80.0, "x2": 360.0, "y2": y_centre + 80.0}}],
        });
        frame += 1;
        body
    };
    let mut bodies: Vec<Value> = centres.iter().map(|y| post(*y)).collect();
    bodies.extend((0..10).map(|_| post(420.0)));
    for body in &bodies {
        let r = app.post("/api/v1/sources/yard/detections", body).await;
        assert_eq!(r.status, 202, "{}", r.body);
    }
    let got = events_until(&mut ws, "loitering").await;
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    // Only the line for everyone counts a person; the zone is entered by the centre (feet
    // would have entered 8 frames earlier) and loitering follows half a second later.
    assert_eq!(
        names,
        ["track_started", "line_cross", "zone_enter", "loitering"],
        "{got:#?}"
    );
    assert_eq!(got[1].1["line_id"], "everyone");
    assert!(
        (got[1].1["y"].as_f64().unwrap_or(0.0) - 310.0).abs() < 15.0,
        "centre anchor: {}",
        got[1].1
    );
    let dwell = got[3].1["dwell_s"].as_f64().unwrap_or(0.0);
    assert!((0.5..0.7).contains(&dwell), "loitering after {dwell} s");
}

#[tokio::test]
async fn messages_delivered_again_change_nothing_and_edge_track_ids_are_kept() {
    let app = spawn_app().await;
    let answer = app
        .post(
            "/api/v1/sources",
            &json!({"id": "door-cam", "kind": "external", "edge_track_ids": true,
                "detections_events": false,
                "lines": [{"id": "door", "points": [[0, "50%"], ["100%", "50%"]]}]}),
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    app.create_session(json!({"id": "lab", "sources": ["door-cam"]}))
        .await;
    let mut ws = app.ws("lab", "").await;

    // One person (edge track 42) walks down across the door line; every message is
    // delivered twice, as at-least-once transports do.
    let mut duplicates = 0;
    for frame in 0..45i64 {
        let mut message = if frame < 10 {
            envelope(frame, &[(300.0, 150.0 + frame as f32 * 20.0)])
        } else {
            envelope(frame, &[])
        };
        if let Some(d) = message["detections"].get_mut(0) {
            d["track_id"] = json!(42);
        }
        for _ in 0..2 {
            let answer = app
                .post("/api/v1/sources/door-cam/detections", &message)
                .await;
            assert_eq!(answer.status, 202, "{}", answer.body);
            duplicates += usize::from(answer.body["duplicate"] == true);
        }
    }
    assert_eq!(duplicates, 45, "every second delivery is recognised");
    let got = events_until(&mut ws, "track_ended").await;
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["track_started", "line_cross", "track_ended"],
        "{got:#?}"
    );
    for (name, data) in &got {
        assert_eq!(data["track_id"], 42, "{name}: the edge's own id");
    }
}

#[tokio::test]
async fn an_edge_message_with_a_runaway_name_or_a_reset_clock_is_refused() {
    // The embedded default's window (a week), not the tests' "any age".
    let app = crate::helpers::spawn_app_with(|s| s.server.edge_max_age_secs = 7 * 86_400).await;
    add_door_cam(&app).await;
    let at = |age: chrono::Duration| {
        let mut e = envelope(0, &[(300.0, 200.0)]);
        e["source"]["timestamp"] = json!((Utc::now() - age).to_rfc3339());
        e
    };
    let post = |body: Value| {
        let app = &app;
        async move { app.post("/api/v1/sources/door-cam/detections", &body).await }
    };
    // A 2 KB class name (it went into e-mail subjects, logs and events).
    let mut long = at(chrono::Duration::zero());
    long["detections"][0]["class_name"] = json!("x".repeat(2048));
    let refused = post(long).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(
        refused.body.to_string().contains("class_name"),
        "{}",
        refused.body
    );
    let mut control = at(chrono::Duration::zero());
    control["detections"][0]["class_name"] = json!("person\r\nBcc: everyone");
    assert_eq!(post(control).await.status, 422);
    // A clock reset to 1970, and one a week and a day behind.
    let mut epoch = at(chrono::Duration::zero());
    epoch["source"]["timestamp"] = json!("1970-01-01T00:00:00Z");
    let old = post(epoch).await;
    assert_eq!(old.status, 422, "{}", old.body);
    assert!(
        old.body.to_string().contains("server.edge_max_age_secs"),
        "{}",
        old.body
    );
    assert_eq!(post(at(chrono::Duration::days(8))).await.status, 422);
    // Within the window, and with an ordinary name: taken.
    let mut fine = at(chrono::Duration::days(6));
    fine["detections"][0]["class_name"] = json!("person");
    let taken = post(fine).await;
    assert_eq!(taken.status, 202, "{}", taken.body);
    let source = app.get("/api/v1/sources/door-cam").await.body;
    assert_eq!(source["stats"]["frames_processed"], 1, "{source}");
}

#[tokio::test]
async fn line_and_zone_ids_take_only_the_characters_every_id_does() {
    let app = spawn_app().await;
    let with = |line: &str, zone: &str| {
        json!({"id": "ids-cam", "kind": "external",
            "lines": [{"id": line, "points": [[0, "50%"], ["100%", "50%"]]}],
            "zones": [{"id": zone, "points": [[0, 0], [10, 0], [10, 10]]}]})
    };
    let refused = app
        .post(
            "/api/v1/sources",
            &with("door\r\nX-Injected: 1", "<b>desk</b>"),
        )
        .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    let details = refused.body["details"].to_string();
    assert!(details.contains("lines[0].id"), "{details}");
    assert!(details.contains("zones[0].id"), "{details}");
    assert!(
        details.contains("letters, digits"),
        "the rule is named: {details}"
    );
    let made = app
        .post("/api/v1/sources", &with("door-1", "desk_2.a"))
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    // Changing them is held to the same rule.
    let patched = app
        .patch(
            "/api/v1/sources/ids-cam",
            &json!({"lines": [{"id": "a b", "points": [[0, 1], [5, 1]]}]}),
        )
        .await;
    assert_eq!(patched.status, 422, "{}", patched.body);
}
