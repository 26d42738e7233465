//! The device registry: registration and its checks, change events on a real WebSocket, a
//! real SSE client and a real Redis `PSUBSCRIBE`, device-scoped tokens, and the source a
//! streaming device runs (a video file played by ffmpeg, a real face model).

use serde_json::{json, Value};

use crate::helpers::*;
use crate::pipeline::{ready, with_face_models, PIPELINE_DEADLINE};
use crate::redis::{psubscribe, SHARED};

fn serial(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

async fn register(app: &TestApp, body: Value) -> Value {
    let created = app.post("/api/v1/devices", &body).await;
    assert_eq!(created.status, 201, "{}", created.body);
    created.body
}

#[tokio::test]
async fn devices_are_registered_found_changed_and_deleted_with_every_problem_listed() {
    let app = spawn_app().await;
    let sn = serial("DRONE");
    let created = register(
        &app,
        json!({"serial": sn, "kind": "drone", "name": "Alpha",
            "stream_url": "rtsp://pilot:hunter2@10.0.0.5/live",
            "location": {"lat": 52.1, "lon": 4.3}, "metadata": {"owner": "lab"}}),
    )
    .await;
    let id = created["id"].as_str().expect("a generated id").to_string();
    assert_eq!(created["events"], json!(["device.created"]));
    assert_eq!(created["stream_on"], false);
    assert_eq!(created["stream"]["state"], "off");
    assert_eq!(
        created["stream_url"], "rtsp://pilot:***redacted***@10.0.0.5/live",
        "a camera's password is never shown"
    );

    let taken = app.post("/api/v1/devices", &json!({"serial": sn})).await;
    assert_eq!(taken.status, 409, "{}", taken.body);
    let bad = app
        .post(
            "/api/v1/devices",
            &json!({"serial": "has space", "kind": "Big Drone", "stream_on": "yes",
                "detection_classes": [-1], "colour": "red"}),
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    let details: Vec<&str> = bad.body["details"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for field in [
        "serial:",
        "kind:",
        "stream_on:",
        "detection_classes[0]:",
        "colour:",
    ] {
        assert!(
            details.iter().any(|d| d.starts_with(field)),
            "{field} in {details:?}"
        );
    }

    let by_id = app.get(&format!("/api/v1/devices/{id}")).await;
    let by_serial = app.get(&format!("/api/v1/devices/sn/{sn}")).await;
    assert_eq!(by_id.status, 200);
    assert_eq!(by_id.body, by_serial.body);
    assert_eq!(by_id.body["location"]["lat"], 52.1);
    assert_eq!(app.get("/api/v1/devices/nope").await.status, 404);
    assert_eq!(app.get("/api/v1/devices/sn/NOPE").await.status, 404);

    // A merge patch: nested fields merge, null removes.
    let changed = app
        .patch(
            &format!("/api/v1/devices/sn/{sn}"),
            &json!({"name": "Bravo", "metadata": {"site": "roof", "owner": null}}),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert_eq!(changed.body["events"], json!(["device.updated"]));
    assert_eq!(changed.body["metadata"], json!({"site": "roof"}));
    let again = app
        .patch(&format!("/api/v1/devices/{id}"), &json!({"name": "Bravo"}))
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(
        again.body["events"],
        json!([]),
        "a no-op patch raises nothing"
    );
    let identity = app
        .patch(
            &format!("/api/v1/devices/{id}"),
            &json!({"serial": "OTHER", "created_at": "2020-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(identity.status, 422, "{}", identity.body);
    assert_eq!(identity.body["details"].as_array().unwrap().len(), 2);

    // Kinds and pages.
    let cameras: Vec<String> = (0..3).map(|_| serial("CAM")).collect();
    for s in &cameras {
        register(&app, json!({"serial": s, "id": format!("cam-{s}")})).await;
    }
    let page = app
        .get("/api/v1/devices?kind=camera&limit=2&offset=1")
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.body["total"], 3);
    let mut ids: Vec<String> = cameras.iter().map(|s| format!("cam-{s}")).collect();
    ids.sort();
    let listed: Vec<&str> = page.body["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["id"].as_str())
        .collect();
    assert_eq!(listed, ids[1..3]);
    assert_eq!(app.get("/api/v1/devices?limit=0").await.status, 400);

    assert_eq!(
        app.delete(&format!("/api/v1/devices/sn/{sn}")).await.status,
        204
    );
    assert_eq!(app.get(&format!("/api/v1/devices/{id}")).await.status, 404);
    assert_eq!(
        app.delete(&format!("/api/v1/devices/{id}")).await.status,
        404
    );
}

/// The device-change events a live feed received, as (event, channel, changed fields).
fn summary(events: &[Value]) -> Vec<(String, String, Vec<String>)> {
    events
        .iter()
        .map(|e| {
            let data = &e["data"];
            let changed = data["changes"]
                .as_object()
                .map(|c| c.keys().cloned().collect())
                .unwrap_or_default();
            (
                e["event"].as_str().unwrap_or_default().to_string(),
                data["channel"].as_str().unwrap_or_default().to_string(),
                changed,
            )
        })
        .collect()
}

#[tokio::test]
async fn device_changes_reach_websocket_sse_and_redis_with_exactly_the_changed_fields() {
    let app = spawn_app_with(|s| {
        s.redis.url = SHARED.into();
        s.devices.channel_prefix = "drone".into();
    })
    .await;
    let sn = serial("SN");
    let other = serial("OTHER");
    let session = format!("fleet-{}", &sn[3..]);
    app.create_session(json!({"id": session, "devices": ["*"],
        "enabledDistributors": ["websocket", "sse"]}))
        .await;
    let redis = psubscribe(SHARED, &format!("drone:{sn}:*"));
    let mut ws = app.ws(&session, "").await;
    let mut sse = app.sse(&session, "", None).await;
    let mut other_only = app
        .ws(&session, &format!("?channels=drone:{other}:*"))
        .await;

    register(&app, json!({"serial": sn, "kind": "drone"})).await;
    let path = format!("/api/v1/devices/sn/{sn}");
    let patched = app
        .patch(
            &path,
            &json!({"stream_url": "external", "stream_on": true, "detection_classes": [0, 1, 2, 3]}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(
        patched.body["events"],
        json!([
            "device.updated",
            "device.stream.status",
            "device.detection_classes.changed"
        ])
    );
    let noop = app
        .patch(
            &path,
            &json!({"stream_on": true, "detection_classes": [0, 1, 2, 3]}),
        )
        .await;
    assert_eq!(noop.body["events"], json!([]));
    app.patch(&path, &json!({"ai_enabled": true})).await;
    register(&app, json!({"serial": other})).await;
    app.delete(&path).await;

    let channel = |what: &str| format!("drone:{sn}:{what}");
    let fields = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let expected = vec![
        ("device.created".to_string(), channel("created"), vec![]),
        (
            "device.updated".to_string(),
            channel("updated"),
            fields(&["detection_classes", "stream_on", "stream_url"]),
        ),
        (
            "device.stream.status".to_string(),
            channel("stream"),
            vec![],
        ),
        (
            "device.detection_classes.changed".to_string(),
            channel("config"),
            vec![],
        ),
        // Nothing from the no-op patch: the next event is the AI switch.
        (
            "device.updated".to_string(),
            channel("updated"),
            fields(&["ai_enabled"]),
        ),
        ("device.ai.toggled".to_string(), channel("ai"), vec![]),
        (
            "device.created".to_string(),
            format!("drone:{other}:created"),
            vec![],
        ),
        ("device.deleted".to_string(), channel("deleted"), vec![]),
    ];

    let over_ws = ws.events(expected.len()).await;
    assert_eq!(summary(&over_ws), expected);
    let updated = &over_ws[1]["data"];
    assert_eq!(updated["serial"], sn.as_str());
    assert_eq!(
        updated["changes"]["detection_classes"],
        json!({"old": [], "new": [0, 1, 2, 3]})
    );
    assert_eq!(over_ws[2]["data"]["old"], false);
    assert_eq!(over_ws[2]["data"]["new"], true);
    assert_eq!(over_ws[5]["data"]["new"], true);

    let over_sse: Vec<Value> = sse
        .events(expected.len())
        .await
        .iter()
        .map(|e| serde_json::from_str(&e.data).expect("JSON"))
        .collect();
    assert_eq!(summary(&over_sse), expected);

    // Only the other device's channel, on the client that asked for it.
    let theirs = other_only
        .next_event()
        .await
        .expect("the other device's event");
    assert_eq!(theirs["data"]["channel"], format!("drone:{other}:created"));

    let published = wait_until("7 messages on Redis", DEADLINE, || async {
        let got = redis.lock().unwrap().clone();
        (got.len() >= 7).then_some(got)
    })
    .await;
    let on_redis: Vec<(String, String, Vec<String>)> = published
        .iter()
        .map(|(channel, message)| {
            let changed = message["data"]["changes"]
                .as_object()
                .map(|c| c.keys().cloned().collect())
                .unwrap_or_default();
            (
                message["event"].as_str().unwrap_or_default().to_string(),
                channel.clone(),
                changed,
            )
        })
        .collect();
    let mine: Vec<_> = expected
        .iter()
        .filter(|(_, c, _)| c.starts_with(&format!("drone:{sn}:")))
        .cloned()
        .collect();
    assert_eq!(on_redis, mine);
    let health = app.get("/api/health").await.body;
    assert_eq!(health["components"]["redis"]["connected"], true, "{health}");
    let metrics = app.metrics().await;
    let published = metric_value(
        &metrics,
        "synopticon_redis_bus_messages_total{outcome=\"published\"}",
    );
    assert!(published.is_some_and(|n| n >= 7.0), "{published:?}");

    let third = serial("SN");
    other_only
        .send(json!({"op": "subscribe", "channels": [format!("drone:{third}:*")]}))
        .await;
    let ack = other_only.next_json().await.expect("an answer");
    assert_eq!(
        ack["channels"],
        json!([format!("drone:{other}:*"), format!("drone:{third}:*")]),
        "{ack}"
    );
    register(&app, json!({"serial": third})).await;
    let added = other_only
        .next_event()
        .await
        .expect("the added channel's event");
    assert_eq!(added["data"]["channel"], format!("drone:{third}:created"));
    let heard = ws.next_event().await.expect("the third device's creation");
    assert_eq!(heard["data"]["serial"], third.as_str());

    // A session stops hearing a device it no longer lists.
    let listening = app
        .put(
            &format!("/api/v1/sessions/{session}/devices"),
            &json!([other]),
        )
        .await;
    assert_eq!(listening.status, 200, "{}", listening.body);
    app.patch(
        &format!("/api/v1/devices/sn/{third}"),
        &json!({"name": "not heard"}),
    )
    .await;
    app.patch(
        &format!("/api/v1/devices/sn/{other}"),
        &json!({"name": "still heard"}),
    )
    .await;
    let next = ws.next_event().await.expect("the listed device's event");
    assert_eq!(next["data"]["serial"], other.as_str(), "{next}");
    assert_eq!(next["event"], "device.updated");
}

const ADMIN: &str = "syn_dev-admin-000000000000000000000000000000000000";
const LAB: &str = "syn_dev-lab-00000000000000000000000000000000000000";

#[tokio::test]
async fn a_device_scoped_token_sees_only_its_devices_and_their_events() {
    let app = spawn_app_with(|s| {
        s.server.mode = synopticon::configuration::Mode::Production;
        let mut lab = token_config("lab", "operator", LAB);
        lab.devices = Some(vec!["LAB-*".into()]);
        s.auth.tokens = vec![token_config("admin", "admin", ADMIN), lab];
    })
    .await;
    let admin = app.with_token(ADMIN);
    let lab = app.with_token(LAB);
    let (mine, theirs) = (serial("LAB"), serial("FIELD"));
    admin
        .create_session(
            json!({"id": "site", "devices": ["*"], "enabledDistributors": ["websocket"]}),
        )
        .await;
    let mut lab_feed = lab.ws("site", "").await;
    let mut admin_feed = admin.ws("site", "").await;

    let theirs_id = register(&admin, json!({"serial": theirs})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    register(&lab, json!({"serial": mine})).await;
    let refused = lab
        .post("/api/v1/devices", &json!({"serial": serial("FIELD")}))
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);

    let listed = lab.get("/api/v1/devices").await.body;
    let serials: Vec<&str> = listed["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["serial"].as_str())
        .collect();
    assert_eq!(serials, [mine.as_str()]);
    for path in [
        format!("/api/v1/devices/{theirs_id}"),
        format!("/api/v1/devices/sn/{theirs}"),
    ] {
        assert_eq!(lab.get(&path).await.status, 404, "{path}");
        assert_eq!(
            lab.patch(&path, &json!({"name": "x"})).await.status,
            404,
            "{path}"
        );
        assert_eq!(lab.delete(&path).await.status, 404, "{path}");
    }
    let widen = lab
        .put("/api/v1/sessions/site/devices", &json!(["*"]))
        .await;
    assert!(widen.status == 403 || widen.status == 404, "{}", widen.body);

    admin
        .patch(
            &format!("/api/v1/devices/sn/{theirs}"),
            &json!({"name": "hidden"}),
        )
        .await;
    lab.patch(
        &format!("/api/v1/devices/sn/{mine}"),
        &json!({"name": "seen"}),
    )
    .await;
    // The admin hears both, in order; the lab token only its own.
    let all = admin_feed.events(4).await;
    let serials: Vec<&str> = all
        .iter()
        .filter_map(|e| e["data"]["serial"].as_str())
        .collect();
    assert_eq!(
        serials,
        [
            theirs.as_str(),
            mine.as_str(),
            theirs.as_str(),
            mine.as_str()
        ]
    );
    let own = lab_feed.events(2).await;
    let names: Vec<(&str, &str)> = own
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap(),
                e["data"]["serial"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("device.created", mine.as_str()),
            ("device.updated", mine.as_str())
        ]
    );

    // Their sources are as hidden as they are; outputs beyond live feeds are refused (a
    // webhook or MQTT distributor would carry what the token may not see).
    admin
        .patch(
            &format!("/api/v1/devices/sn/{theirs}"),
            &json!({"stream_url": "external", "stream_on": true}),
        )
        .await;
    let hidden_source = format!("/api/v1/sources/device-{theirs_id}");
    assert_eq!(admin.get(&hidden_source).await.status, 200);
    assert_eq!(lab.get(&hidden_source).await.status, 404);
    let detections = json!({"frame": {"width": 640, "height": 480}, "detections": []});
    assert_eq!(
        lab.post(&format!("{hidden_source}/detections"), &detections)
            .await
            .status,
        404
    );
    let sources = lab.get("/api/v1/sources").await.body;
    assert_eq!(sources["sources"], json!([]), "{sources}");
    let outward = lab
        .post(
            "/api/v1/sessions",
            &json!({"id": "lab-out", "devices": [format!("{mine}")],
                "enabledDistributors": ["websocket", "mqtt"],
                "distributors": {"mqtt": {"broker": "mqtt://127.0.0.1:1883"}}}),
        )
        .await;
    assert_eq!(outward.status, 403, "{}", outward.body);
    assert_eq!(admin.get("/api/v1/sessions/lab-out").await.status, 404);
    admin
        .patch(
            &format!("/api/v1/devices/sn/{theirs}"),
            &json!({"stream_on": false}),
        )
        .await;
    let _ = admin_feed.events(4).await;

    // Device scopes can be given over REST too, and never wider than the giver's.
    let made = lab
        .post(
            "/api/v1/tokens",
            &json!({"id": "lab-viewer", "role": "viewer", "devices": ["LAB-1*"]}),
        )
        .await;
    assert_eq!(made.status, 403, "only admins make tokens: {}", made.body);
    let made = admin
        .post(
            "/api/v1/tokens",
            &json!({"id": "field-viewer", "role": "viewer", "devices": ["FIELD-*"]}),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    assert_eq!(made.body["devices"], json!(["FIELD-*"]));
    let field = app.with_token(made.body["token"].as_str().unwrap());
    assert_eq!(
        field
            .get(&format!("/api/v1/devices/sn/{mine}"))
            .await
            .status,
        404
    );
    assert_eq!(
        field
            .get(&format!("/api/v1/devices/sn/{theirs}"))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn stream_on_runs_the_devices_file_source_and_ai_enabled_switches_detection() {
    let app = spawn_app_with(with_face_models).await;
    ready(&app).await;
    let sn = serial("CAM");
    let created = register(
        &app,
        json!({"serial": sn, "id": "door", "stream_url": asset("videos/Megamind.avi"),
            "source": {"fps": 5, "loop": true, "model": "face-small"}}),
    )
    .await;
    assert_eq!(created["stream"]["state"], "off");
    assert_eq!(app.get("/api/v1/sources/device-door").await.status, 404);
    let path = format!("/api/v1/devices/sn/{sn}");

    let on = app.patch(&path, &json!({"stream_on": true})).await;
    assert_eq!(on.status, 200, "{}", on.body);
    assert_eq!(on.body["stream"]["source"], "device-door");
    let source = app.get("/api/v1/sources/device-door").await.body;
    assert_eq!(source["kind"], "file");
    assert_eq!(source["device"], sn.as_str());
    assert_eq!(source["config"]["detect"], false);
    let captured = wait_until("frames without detection", PIPELINE_DEADLINE, || async {
        let s = app.get("/api/v1/sources/device-door").await.body;
        let captured = s["stats"]["frames_captured"].as_u64()?;
        (captured >= 5).then_some(s)
    })
    .await;
    assert_eq!(
        captured["stats"]["frames_processed"], 0,
        "detection is off until ai_enabled: {captured}"
    );

    let ai = app
        .patch(
            &path,
            &json!({"ai_enabled": true, "detection_classes": ["face"]}),
        )
        .await;
    assert_eq!(ai.status, 200, "{}", ai.body);
    let source = app.get("/api/v1/sources/device-door").await.body;
    assert_eq!(source["config"]["detect"], true);
    assert_eq!(source["config"]["classes"], json!(["face"]));
    assert_eq!(
        source["capture_pid"], captured["capture_pid"],
        "switched in place: the same ffmpeg"
    );
    wait_until("frames analysed", PIPELINE_DEADLINE, || async {
        let s = app.get("/api/v1/sources/device-door").await.body;
        (s["stats"]["frames_processed"].as_u64()? >= 3).then_some(())
    })
    .await;

    // The source follows its device, not direct changes.
    let direct = app.delete("/api/v1/sources/device-door").await;
    assert_eq!(direct.status, 409, "{}", direct.body);
    assert!(direct.body["error"].as_str().unwrap().contains(&sn));

    let off = app.patch(&path, &json!({"stream_on": false})).await;
    assert_eq!(off.status, 200, "{}", off.body);
    assert_eq!(off.body["stream"]["state"], "off");
    assert_eq!(app.get("/api/v1/sources/device-door").await.status, 404);

    // A stream the server may not open is refused before anything is kept.
    let bad = app
        .patch(
            &path,
            &json!({"stream_on": true, "stream_url": "gopher://old.example/cam"}),
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert_eq!(app.get(&path).await.body["stream_on"], false);
}

#[tokio::test]
async fn servers_sharing_a_store_share_devices_but_only_the_owner_changes_its_stream() {
    let dir = std::env::temp_dir().join(format!("synopticon-shared-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    let url = format!("sqlite://{}/shared.db", dir.display());
    let on = |instance: &'static str| {
        let url = url.clone();
        move |s: &mut synopticon::configuration::Settings| {
            s.store.url = url;
            s.store.instance = instance.into();
        }
    };
    let a = spawn_app_with(on("site-a")).await;
    let b = spawn_app_with(on("site-b")).await;
    let sn = serial("GATE");
    register(
        &a,
        json!({"serial": sn, "id": "gate", "stream_url": "external", "stream_on": true}),
    )
    .await;
    let path = format!("/api/v1/devices/sn/{sn}");

    let seen_by_b = b.get(&path).await;
    assert_eq!(seen_by_b.status, 200, "{}", seen_by_b.body);
    assert_eq!(seen_by_b.body["instance"], "site-a");
    assert_eq!(seen_by_b.body["stream"]["state"], "on another instance");
    assert_eq!(b.get("/api/v1/sources/device-gate").await.status, 404);

    let renamed = b.patch(&path, &json!({"name": "north gate"})).await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    assert_eq!(a.get(&path).await.body["name"], "north gate");
    let stopped = b.patch(&path, &json!({"stream_on": false})).await;
    assert_eq!(stopped.status, 409, "{}", stopped.body);
    assert!(stopped.body["error"].as_str().unwrap().contains("site-a"));
    assert_eq!(b.delete(&path).await.status, 409);
    assert_eq!(a.get("/api/v1/sources/device-gate").await.status, 200);

    let stopped = a.patch(&path, &json!({"stream_on": false})).await;
    assert_eq!(stopped.status, 200, "{}", stopped.body);
    assert_eq!(a.get("/api/v1/sources/device-gate").await.status, 404);
    assert_eq!(b.delete(&path).await.status, 204);
    assert_eq!(a.get(&path).await.status, 404);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn source_ids_of_devices_are_reserved() {
    let app = spawn_app().await;
    let taken = app
        .post(
            "/api/v1/sources",
            &json!({"id": "device-lookalike", "kind": "external"}),
        )
        .await;
    assert_eq!(taken.status, 422, "{}", taken.body);
    assert!(taken.body["details"][0]
        .as_str()
        .unwrap()
        .contains("registered devices"));
}
