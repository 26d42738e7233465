//! Session control over REST: create, validate, list, status, close, distributors,
//! routing, events, and every error status.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn create_without_id_generates_one_and_uses_the_default_template() {
    let app = spawn_app().await;

    let session = app.create_session(json!({})).await;

    let id = session["id"].as_str().expect("id");
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_eq!(session["state"], "open");
    assert_eq!(session["config"]["template"], "local_testing");
    assert_eq!(
        session["config"]["enabledDistributors"],
        json!(["websocket", "sse"])
    );
    let kinds: Vec<_> = session["distributors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["kind"].clone())
        .collect();
    assert_eq!(kinds, [json!("websocket"), json!("sse")]);
    assert_eq!(app.status(id).await["id"], id);
}

#[tokio::test]
async fn duplicate_id_is_a_conflict() {
    let app = spawn_app().await;
    app.create_session(json!({"id": "dup"})).await;

    let again = app.post("/api/v1/sessions", &json!({"id": "dup"})).await;

    assert_eq!(again.status, 409);
    assert!(
        again.body["error"]
            .as_str()
            .unwrap()
            .contains("already exists"),
        "{}",
        again.body
    );
}

#[tokio::test]
async fn invalid_session_lists_every_problem() {
    let app = spawn_app().await;
    let request = json!({
        "id": "no spaces allowed",
        "template": "research_lab",
        "enabledDistributors": ["websocket", "sse", "carrier_pigeon"],
        "distributors": {"websocket": {"port": 99999, "clientQueueCapacity": 0}, "sse": {"overflow": "explode"}},
        "eventRouting": {"face detected": ["websocket"], "gaze": ["nowhere"]},
        "extra": true
    });

    let created = app.post("/api/v1/sessions", &request).await;
    let validated = app.post("/api/v1/sessions/validate", &request).await;

    assert_eq!(created.status, 422);
    let details: Vec<String> = serde_json::from_value(created.body["details"].clone()).unwrap();
    let expected = [
        "id:",
        "enabledDistributors[2]: unknown distributor \"carrier_pigeon\"",
        "distributors.websocket.port: WebSocket distributor requires valid port (1-65535)",
        "distributors.websocket.clientQueueCapacity",
        "distributors.sse.overflow: must be one of drop_oldest, drop_newest",
        "eventRouting.face detected",
        "eventRouting.gaze[0]: unknown distributor \"nowhere\"",
        "extra: unknown field",
    ];
    for needle in expected {
        assert!(
            details.iter().any(|d| d.contains(needle)),
            "missing {needle:?} in {details:#?}"
        );
    }
    assert_eq!(details.len(), expected.len(), "{details:#?}");
    assert_eq!(validated.status, 200);
    assert_eq!(validated.body["valid"], false);
    assert_eq!(validated.body["errors"], created.body["details"]);
    // Nothing was created: the built-in system session is alone.
    let listed = app.get("/api/v1/sessions").await.body["sessions"].clone();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["id"], "system");
}

#[tokio::test]
async fn validate_accepts_a_good_request_and_reports_warnings() {
    let app = spawn_app().await;

    let answer = app
        .post(
            "/api/v1/sessions/validate",
            &json!({"enabledDistributors": ["websocket"], "eventRouting": {"alert": ["sse"]},
                    "distributors": {"websocket": {"overflow": "drop_newest"}}}),
        )
        .await;

    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["valid"], true, "{}", answer.body);
    assert_eq!(answer.body["errors"], json!([]));
    let warnings = answer.body["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
}

#[tokio::test]
async fn error_statuses_have_json_bodies() {
    let app = spawn_app_with(|s| s.server.max_body_bytes = 2048).await;
    app.create_session(json!({"id": "e1"})).await;

    let unknown_session = app.get("/api/v1/sessions/nope").await;
    let unknown_close = app.delete("/api/v1/sessions/nope").await;
    let unknown_events = app
        .post("/api/v1/sessions/nope/events", &json!({"event": "x"}))
        .await;
    let bad_json = app.post_raw("/api/v1/sessions", "{\"id\": ").await;
    let too_large = app
        .post_raw(
            "/api/v1/sessions/e1/events",
            format!("{{\"event\":\"x\",\"data\":\"{}\"}}", "a".repeat(4096)),
        )
        .await;
    let unknown_route = app.get("/api/v2/everything").await;
    let wrong_method = app
        .client
        .patch(app.url("/api/v1/sessions"))
        .send()
        .await
        .unwrap();
    let unknown_kind = app
        .put("/api/v1/sessions/e1/distributors/fax", &json!({}))
        .await;
    let not_enabled = app.delete("/api/v1/sessions/e1/distributors/mqtt").await;
    let unavailable = app
        .put(
            "/api/v1/sessions/e1/distributors/redis",
            &json!({"url": "http://not-redis"}),
        )
        .await;

    for (answer, status) in [
        (&unknown_session, 404),
        (&unknown_close, 404),
        (&unknown_events, 404),
        (&bad_json, 400),
        (&too_large, 413),
        (&unknown_route, 404),
        (&unknown_kind, 404),
        (&not_enabled, 409),
        (&unavailable, 422),
    ] {
        assert_eq!(answer.status, status, "{}", answer.body);
        assert!(answer.body["error"].is_string(), "{}", answer.body);
        assert!(answer.body["details"].is_array(), "{}", answer.body);
    }
    assert_eq!(wrong_method.status(), 405);
    let body: serde_json::Value = wrong_method.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("PATCH"));
    // The server is still fine.
    assert_eq!(app.get("/api/health").await.status, 200);
}

#[tokio::test]
async fn invalid_events_are_refused_whole_with_every_problem() {
    let app = spawn_app().await;
    app.create_session(json!({"id": "ev"})).await;

    let answer = app
        .post(
            "/api/v1/sessions/ev/events",
            &json!([
                {"event": "ok", "data": {}},
                {"data": {}},
                {"event": "bad name!"},
                {"event": "late", "ts": "yesterday"},
                {"event": "x", "colour": 1},
                7
            ]),
        )
        .await;
    let empty = app.post("/api/v1/sessions/ev/events", &json!([])).await;
    let scalar = app
        .post("/api/v1/sessions/ev/events", &json!("face_detected"))
        .await;

    assert_eq!(answer.status, 422);
    assert_eq!(
        answer.body["details"].as_array().unwrap().len(),
        5,
        "{}",
        answer.body
    );
    assert_eq!(empty.status, 422);
    assert_eq!(scalar.status, 400);
    let status = app.status("ev").await;
    assert_eq!(status["events_received"], 0, "nothing accepted");
    assert_eq!(status["last_seq"], 0);
}

#[tokio::test]
async fn events_get_consecutive_seq_and_report_their_routes() {
    let app = spawn_app().await;
    app.create_session(
        json!({"id": "r1", "eventRouting": {"face_*": ["websocket"], "*": ["sse"]}}),
    )
    .await;

    let single = app
        .publish("r1", json!({"event": "face_detected", "data": {"n": 1}}))
        .await;
    let many = app
        .publish("r1", json!([{"event": "gaze", "data": {}}, {"event": "face_lost", "ts": "2025-01-15T14:30:22.123Z"}]))
        .await;

    assert_eq!(single["accepted"], 1);
    assert_eq!(
        single["events"][0],
        json!({"seq": 1, "event": "face_detected", "routed_to": ["websocket"]})
    );
    assert_eq!(
        many["events"][0],
        json!({"seq": 2, "event": "gaze", "routed_to": ["sse"]})
    );
    assert_eq!(many["events"][1]["seq"], 3);
    let status = app.status("r1").await;
    assert_eq!(status["events_received"], 3);
    let ws = &status["distributors"][0];
    assert_eq!(
        (ws["kind"].as_str(), ws["routed"].as_u64()),
        (Some("websocket"), Some(2))
    );
}

#[tokio::test]
async fn routing_can_be_replaced_at_runtime() {
    let app = spawn_app().await;
    app.create_session(json!({"id": "rt"})).await;

    let replaced = app
        .put(
            "/api/v1/sessions/rt/routing",
            &json!({"alert": ["sse"], "*": ["websocket"]}),
        )
        .await;
    let routed = app
        .publish("rt", json!([{"event": "alert"}, {"event": "other"}]))
        .await;
    let bad = app
        .put(
            "/api/v1/sessions/rt/routing",
            &json!({"alert": "sse", "x y": []}),
        )
        .await;

    assert_eq!(replaced.status, 200);
    assert_eq!(
        replaced.body["eventRouting"],
        json!({"*": ["websocket"], "alert": ["sse"]})
    );
    assert_eq!(routed["events"][0]["routed_to"], json!(["sse"]));
    assert_eq!(routed["events"][1]["routed_to"], json!(["websocket"]));
    assert_eq!(bad.status, 422);
    assert_eq!(
        bad.body["details"].as_array().unwrap().len(),
        2,
        "{}",
        bad.body
    );
    // The failed replace left the routing as it was.
    assert_eq!(
        app.status("rt").await["config"]["eventRouting"],
        replaced.body["eventRouting"]
    );
}

#[tokio::test]
async fn sessions_are_listed_and_closed() {
    let app = spawn_app().await;
    app.create_session(json!({"id": "a"})).await;
    app.create_session(json!({"id": "b"})).await;
    app.publish("a", json!({"event": "x"})).await;

    let listed = app.get("/api/v1/sessions").await;
    let closed = app.delete("/api/v1/sessions/a").await;
    let after = app.get("/api/v1/sessions").await;

    let ids: Vec<_> = listed.body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].clone())
        .collect();
    assert_eq!(ids, [json!("a"), json!("b"), json!("system")]);
    assert_eq!(closed.status, 200);
    assert_eq!(closed.body["state"], "closed");
    assert_eq!(closed.body["events_received"], 1);
    assert_eq!(app.get("/api/v1/sessions/a").await.status, 404);
    assert_eq!(
        after.body["sessions"].as_array().unwrap().len(),
        2,
        "b and system"
    );
}

#[tokio::test]
async fn session_limit_is_enforced() {
    let app = spawn_app_with(|s| s.sessions.max_sessions = 2).await;
    app.create_session(json!({})).await;
    app.create_session(json!({})).await;

    let third = app.post("/api/v1/sessions", &json!({})).await;

    assert_eq!(third.status, 503);
    assert!(third.body["error"]
        .as_str()
        .unwrap()
        .contains("maximum of 2 sessions"));
}

#[tokio::test]
async fn declared_sessions_exist_at_start() {
    let app = spawn_app_with(|s| {
        s.sessions.declared = vec![
            json!({"id": "lobby"}),
            json!({"id": "eye", "template": "eye_tracking_lab"}),
        ];
    })
    .await;

    let listed = app.get("/api/v1/sessions").await;

    let ids: Vec<_> = listed.body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].clone())
        .collect();
    assert_eq!(ids, [json!("eye"), json!("lobby"), json!("system")]);
    assert_eq!(
        app.status("eye").await["config"]["eventRouting"]["gaze_*"],
        json!(["websocket"])
    );
}
