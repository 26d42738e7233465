//! Recordings are seen only as far as a token's live feed would have been: a recording
//! holding another source's, device's or event type's data is 404 to a token scoped away
//! from it (list, get, download, stop, delete, replay), imported files need an unscoped
//! token, and a replay gives events back the marks live feeds filter on.

use serde_json::{json, Value};

use crate::helpers::*;
use crate::recording::{start_recording, stop};
use crate::sources::envelope;

const ADMIN: &str = "syn_rec-scope-admin-000000000000000000000000000000000";
/// Sessions `rec-*` only: sees everything of them.
const SESSIONS: &str = "syn_rec-scope-sessions-0000000000000000000000000000";
/// Sources `cam-a*`.
const SOURCES: &str = "syn_rec-scope-sources-00000000000000000000000000000";
/// Devices `LAB-A*`.
const DEVICES: &str = "syn_rec-scope-devices-00000000000000000000000000000";
/// Events `face_*`, `detections`.
const EVENTS: &str = "syn_rec-scope-events-000000000000000000000000000000";

async fn server() -> TestApp {
    spawn_app_with(|s| {
        s.server.mode = synopticon::configuration::Mode::Production;
        let mut sessions = token_config("sessions", "operator", SESSIONS);
        sessions.sessions = Some(vec!["rec-*".into()]);
        let mut sources = token_config("sources", "operator", SOURCES);
        sources.sources = Some(vec!["cam-a*".into()]);
        let mut devices = token_config("devices", "operator", DEVICES);
        devices.devices = Some(vec!["LAB-A*".into()]);
        let mut events = token_config("events", "operator", EVENTS);
        events.events = Some(vec!["face_*".into(), "detections".into()]);
        s.auth.tokens = vec![
            token_config("admin", "admin", ADMIN),
            sessions,
            sources,
            devices,
            events,
        ];
        s.rate_limit.enabled = synopticon::configuration::Switch::Off;
    })
    .await
}

/// An external source `id` raising a `detections` event for every frame.
async fn camera(admin: &TestApp, id: &str) {
    let r = admin
        .post(
            "/api/v1/sources",
            &json!({"id": id, "kind": "external", "detections_events": true, "detections_every_ms": 0}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
}

/// Frame `n` of `source`, one person in it: a `detections` event (a track starts only
/// on a second frame).
async fn frame(admin: &TestApp, source: &str, n: i64) {
    let r = admin
        .post(
            &format!("/api/v1/sources/{source}/detections"),
            &envelope(n, &[(300.0, 200.0)]),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
}

/// Waits until the recording holds `n` events, then stops it.
async fn finish(admin: &TestApp, rid: &str, events: u64) -> Value {
    wait_until(
        &format!("{events} events in the recording"),
        DEADLINE,
        || async {
            let r = admin.get(&format!("/api/v1/recordings/{rid}")).await.body;
            (r["events"].as_u64() >= Some(events)).then_some(())
        },
    )
    .await;
    stop(admin, rid).await
}

fn listed(answer: &Answer) -> Vec<String> {
    answer.body["recordings"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|r| r["id"].as_str().map(str::to_string))
        .collect()
}

/// What a token gets for a recording, by route.
async fn reach(app: &TestApp, rid: &str) -> Value {
    let download = app
        .request(
            reqwest::Method::GET,
            &format!("/api/v1/recordings/{rid}/download"),
        )
        .send()
        .await
        .expect("download")
        .status()
        .as_u16();
    json!({
        "listed": listed(&app.get("/api/v1/recordings").await).contains(&rid.to_string()),
        "get": app.get(&format!("/api/v1/recordings/{rid}")).await.status,
        "download": download,
        "stop": app.post(&format!("/api/v1/recordings/{rid}/stop"), &json!({})).await.status,
        "replay": app.post("/api/v1/sessions/rec-view/replay", &json!({"recording": rid})).await.status,
        "delete": app.delete(&format!("/api/v1/recordings/{rid}")).await.status,
    })
}

fn hidden() -> Value {
    json!({"listed": false, "get": 404, "download": 404, "stop": 404, "replay": 404, "delete": 404})
}

#[tokio::test]
async fn a_recording_is_seen_only_by_tokens_whose_live_feed_would_have_carried_all_of_it() {
    let admin = server().await.with_token(ADMIN);
    camera(&admin, "cam-a1").await;
    camera(&admin, "cam-b1").await;
    for serial in ["LAB-A1", "LAB-B1"] {
        let r = admin
            .post("/api/v1/devices", &json!({"serial": serial}))
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    // A session hearing both cameras and every device; the replay target sees all.
    admin
        .create_session(json!({"id": "rec-all", "sources": ["cam-a1", "cam-b1"], "devices": ["*"]}))
        .await;
    admin
        .create_session(json!({"id": "rec-view", "enabledDistributors": ["websocket"]}))
        .await;
    let all = start_recording(&admin, "rec-all", json!({"detections": true})).await;
    let all = all["id"].as_str().expect("id").to_string();
    frame(&admin, "cam-a1", 0).await;
    frame(&admin, "cam-b1", 0).await;
    let patched = admin
        .patch(
            "/api/v1/devices/sn/LAB-B1",
            &json!({"name": "the other lab's"}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    admin
        .publish(
            "rec-all",
            json!([{"event": "gaze_secret", "data": {"x": 1}}, {"event": "face_seen", "data": {}}]),
        )
        .await;
    let info = finish(&admin, &all, 5).await;
    let holds = &info["holds"];
    assert_eq!(holds["sources"], json!(["cam-a1", "cam-b1"]), "{info}");
    // The session's device pattern (its header names it) and the device that wrote.
    assert_eq!(holds["devices"], json!(["*", "LAB-B1"]), "{info}");
    assert_eq!(holds["complete"], true);
    for name in ["detections", "device.updated", "gaze_secret", "face_seen"] {
        assert!(
            holds["events"]
                .as_array()
                .expect("events")
                .contains(&json!(name)),
            "{name}: {info}"
        );
    }

    // One of cam-a1 and face events only.
    admin
        .create_session(json!({"id": "rec-a", "sources": ["cam-a1"]}))
        .await;
    let only_a =
        start_recording(&admin, "rec-a", json!({"events": ["face_*", "detections"]})).await;
    let only_a = only_a["id"].as_str().expect("id").to_string();
    frame(&admin, "cam-a1", 1).await;
    admin
        .publish(
            "rec-a",
            json!([{"event": "face_seen", "data": {}}, {"event": "gaze_secret", "data": {}}]),
        )
        .await;
    finish(&admin, &only_a, 2).await;

    // Scoped away from part of `all`: 404 on every route, exactly as a missing one.
    for (who, token) in [
        ("sources", SOURCES),
        ("devices", DEVICES),
        ("events", EVENTS),
    ] {
        let app = admin.with_token(token);
        assert_eq!(
            reach(&app, &all).await,
            hidden(),
            "{who} on the mixed recording"
        );
    }
    // Within scope of each: seen (and downloaded, then its replay and stop answered).
    for (who, token) in [
        ("sources", SOURCES),
        ("devices", DEVICES),
        ("events", EVENTS),
        ("sessions", SESSIONS),
    ] {
        let app = admin.with_token(token);
        let got = app.get(&format!("/api/v1/recordings/{only_a}")).await;
        assert_eq!(got.status, 200, "{who}: {}", got.body);
        assert!(
            listed(&app.get("/api/v1/recordings").await).contains(&only_a),
            "{who}"
        );
        let of_session = app.get("/api/v1/sessions/rec-a/recordings").await;
        assert!(
            listed(&of_session).contains(&only_a),
            "{who}: {}",
            of_session.body
        );
        let file = crate::recording::download(&app, &only_a).await;
        let _ = std::fs::remove_file(file);
    }
    let mixed_of_session = admin
        .with_token(SOURCES)
        .get("/api/v1/sessions/rec-all/recordings")
        .await;
    assert_eq!(
        listed(&mixed_of_session),
        Vec::<String>::new(),
        "{}",
        mixed_of_session.body
    );
    // A token limited by sessions alone sees everything of its sessions.
    let sessions = admin.with_token(SESSIONS);
    assert_eq!(
        sessions
            .get(&format!("/api/v1/recordings/{all}"))
            .await
            .status,
        200
    );

    // Imported files need a token without any scope, whatever session they name.
    let file = crate::recording::download(&admin, &all).await;
    let imported = admin
        .post_bytes(
            "/api/v1/recordings",
            std::fs::read(&file).expect("file"),
            "application/octet-stream",
        )
        .await;
    let _ = std::fs::remove_file(file);
    assert_eq!(imported.status, 201, "{}", imported.body);
    assert_eq!(imported.body["imported"], true);
    assert_eq!(imported.body["session"], "rec-all");
    let imported = imported.body["id"].as_str().expect("id").to_string();
    assert_eq!(
        reach(&sessions, &imported).await,
        hidden(),
        "a session-scoped token on an import"
    );
    assert_eq!(
        admin
            .get(&format!("/api/v1/recordings/{imported}"))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn a_replayed_event_keeps_the_marks_live_feeds_filter_on() {
    let admin = server().await.with_token(ADMIN);
    camera(&admin, "cam-a1").await;
    camera(&admin, "cam-b1").await;
    camera(&admin, "cam-a2").await;
    admin
        .create_session(json!({"id": "rec-src", "sources": ["cam-a1", "cam-b1", "cam-a2"]}))
        .await;
    let rec = start_recording(&admin, "rec-src", json!({"detections": false})).await;
    let rid = rec["id"].as_str().expect("id").to_string();
    frame(&admin, "cam-a1", 0).await;
    frame(&admin, "cam-b1", 0).await;
    frame(&admin, "cam-a2", 0).await;
    admin
        .publish("rec-src", json!([{"event": "note", "data": {}}]))
        .await;
    finish(&admin, &rid, 4).await;
    // The file says what raised each event.
    let file = crate::recording::download(&admin, &rid).await;
    let read = crate::recording::read_mcap(&file, false);
    let _ = std::fs::remove_file(file);
    let origins: Vec<Value> = read["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| {
            m["topic"]
                .as_str()
                .is_some_and(|t| t.starts_with("/events/"))
        })
        .map(|m| m["data"]["origin"]["source"].clone())
        .collect();
    assert_eq!(
        origins,
        [
            json!("cam-a1"),
            json!("cam-b1"),
            json!("cam-a2"),
            Value::Null
        ]
    );

    // Played into a session the cam-a scoped token watches: cam-b1's event never reaches it.
    admin
        .create_session(json!({"id": "rec-view", "enabledDistributors": ["websocket"]}))
        .await;
    let mut scoped = admin.with_token(SOURCES).ws("rec-view", "").await;
    let mut everything = admin.ws("rec-view", "").await;
    let r = admin
        .post(
            "/api/v1/sessions/rec-view/replay",
            &json!({"recording": rid, "rate": 0}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let all = everything.events(4).await;
    assert_eq!(
        all.iter().map(|e| e["event"].clone()).collect::<Vec<_>>(),
        ["detections", "detections", "detections", "note"]
    );
    let seen = scoped.events(3).await;
    let marks: Vec<u64> = seen
        .iter()
        .map(|e| e["replay"]["original_seq"].as_u64().unwrap_or(0))
        .collect();
    let original: Vec<u64> = all
        .iter()
        .map(|e| e["replay"]["original_seq"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(
        marks,
        [original[0], original[2], original[3]],
        "cam-b1's event left out: {seen:?}"
    );
}

#[tokio::test]
async fn a_replay_and_a_sessions_recordings_show_only_what_the_token_may_see() {
    let admin = server().await.with_token(ADMIN);
    camera(&admin, "cam-a1").await;
    camera(&admin, "cam-b1").await;
    admin
        .create_session(json!({"id": "rec-both", "sources": ["cam-a1", "cam-b1"]}))
        .await;
    let both = start_recording(&admin, "rec-both", json!({})).await;
    let both = both["id"].as_str().expect("id").to_string();
    frame(&admin, "cam-b1", 0).await;
    finish(&admin, &both, 1).await;
    // Running again, and played (slowly) into a session the cam-a token may see.
    let running = start_recording(&admin, "rec-both", json!({})).await;
    let running = running["id"].as_str().expect("id").to_string();
    admin
        .create_session(json!({"id": "rec-view", "enabledDistributors": ["websocket"]}))
        .await;
    let r = admin
        .post(
            "/api/v1/sessions/rec-view/replay",
            &json!({"recording": both, "rate": 0.001, "loop": true}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let scoped = admin.with_token(SOURCES);
    assert_eq!(
        scoped.get("/api/v1/sessions/rec-view/replay").await.status,
        404
    );
    for action in ["pause", "stop"] {
        let r = scoped
            .post(
                &format!("/api/v1/sessions/rec-view/replay/{action}"),
                &json!({}),
            )
            .await;
        assert_eq!(r.status, 404, "{action}: {}", r.body);
    }
    assert_eq!(
        scoped
            .delete("/api/v1/sessions/rec-view/replay")
            .await
            .status,
        404
    );
    assert_eq!(
        admin.status("rec-view").await["replay"]["state"],
        "playing",
        "untouched"
    );
    let seen = scoped.get("/api/v1/sessions/rec-view").await.body;
    assert_eq!(seen["replay"], Value::Null, "{seen}");
    let listed = scoped.get("/api/v1/sessions").await.body;
    let view = listed["sessions"]
        .as_array()
        .expect("a list")
        .iter()
        .find(|s| s["id"] == "rec-view")
        .cloned()
        .expect("rec-view listed");
    assert_eq!(view["replay"], Value::Null, "{view}");
    // The session hearing cam-b1 names its running recording only to those who see it.
    assert_eq!(
        admin.status("rec-both").await["recordings"],
        json!([running])
    );
    let hidden = scoped.get("/api/v1/sessions/rec-both").await.body;
    assert_eq!(hidden["recordings"], json!([]), "{hidden}");
    // Lists leave the holds out; one recording shows them.
    let list = admin.get("/api/v1/recordings").await.body;
    assert!(
        list["recordings"]
            .as_array()
            .expect("a list")
            .iter()
            .all(|r| r.get("holds").is_none()),
        "{list}"
    );
    assert!(admin.get(&format!("/api/v1/recordings/{both}")).await.body["holds"].is_object());
}

#[tokio::test]
async fn a_limited_token_starts_only_recordings_it_will_see() {
    let admin = server().await.with_token(ADMIN);
    camera(&admin, "cam-a1").await;
    camera(&admin, "cam-b1").await;
    admin
        .create_session(json!({"id": "rec-both", "sources": ["cam-a1", "cam-b1"]}))
        .await;
    admin
        .create_session(json!({"id": "rec-a", "sources": ["cam-a1"]}))
        .await;
    let start = |token: &'static str, session: &'static str, spec: Value| {
        let app = admin.with_token(token);
        async move {
            app.post(&format!("/api/v1/sessions/{session}/recordings"), &spec)
                .await
        }
    };
    let refused = start(SOURCES, "rec-both", json!({})).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body["error"]
        .as_str()
        .unwrap_or_default()
        .contains("cam-b1"));
    assert_eq!(start(SOURCES, "rec-a", json!({})).await.status, 201);
    // Events-scoped: only the events it may see.
    let everything = start(EVENTS, "rec-a", json!({})).await;
    assert_eq!(everything.status, 403, "{}", everything.body);
    let faces = start(EVENTS, "rec-a", json!({"events": ["face_*"]})).await;
    assert_eq!(faces.status, 201, "{}", faces.body);
    let rid = faces.body["id"].as_str().expect("id");
    // ...which it then sees, and may stop.
    let stopped = admin
        .with_token(EVENTS)
        .post(&format!("/api/v1/recordings/{rid}/stop"), &json!({}))
        .await;
    assert_eq!(stopped.status, 200, "{}", stopped.body);
    // Devices-scoped, on a session that hears every device.
    admin
        .create_session(json!({"id": "rec-devices", "devices": ["*"]}))
        .await;
    assert_eq!(start(DEVICES, "rec-devices", json!({})).await.status, 403);
}
