//! Edge and processor as two real processes: `synopticon edge` plays a video through a
//! real face model into a real Redis stream; a processor consumes it with a line and a
//! zone and raises their events on a WebSocket.

use std::time::Duration;

use redis::Commands;
use serde_json::Value;

use crate::helpers::*;
use crate::redis::SHARED;

/// Decoding and analysing video on two shared cores takes a while.
const VIDEO_DEADLINE: Duration = Duration::from_secs(90);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// `[inference]` with the small face model.
pub(crate) fn face_model() -> String {
    format!(
        "[inference]\nruntime_path = \"{}\"\ndefault_model = \"face\"\n\
         [[inference.models]]\nname = \"face\"\nkind = \"centerface\"\npath = \"{}\"\ninput_size = [320, 256]\n",
        ort_library(),
        asset("models/centerface.onnx").display()
    )
}

/// An edge playing Megamind.avi once into `stream`, each frame attached.
pub(crate) fn edge_process(device: &str, stream: &str) -> ServerProcess {
    ServerProcess::edge(&format!(
        "[server]\nport = 0\n{}\n[edge]\ndevice_id = \"{device}\"\ncamera_id = \"megamind\"\n\
         output = \"redis_stream\"\nurl = \"{SHARED}\"\nstream = \"{stream}\"\nframe_data = true\n\
         [edge.source]\nkind = \"file\"\nurl = \"{}\"\nfps = 10\n",
        face_model(),
        asset("videos/Megamind.avi").display()
    ))
}

/// A processor reading `stream`, with the camera's line (x = 340, where a face walks
/// across) and zone (the right half, where a face sits), and a session `watch`.
pub(crate) fn processor_config(
    device: &str,
    stream: &str,
    out: &std::path::Path,
    smtp: u16,
) -> String {
    format!(
        "[server]\nport = 0\n\
         [rules]\nlog_dir = \"{out}/events\"\ncaptures_dir = \"{out}/captures\"\n\
         [rules.smtp]\nhost = \"127.0.0.1\"\nport = {smtp}\nsecurity = \"none\"\n\
         [[rules.declared]]\nname = \"right-side\"\nmatch = {{events = [\"ZONE_ENTER\"], zones = [\"right\"]}}\n\
         trackCooldownSecs = 3600\n\
         actions = [\"json_log\", \"frame_capture\", {{type = \"email_immediate\", to = [\"desk@lab.example\"]}}]\n\
         [[inputs]]\nname = \"edge\"\nkind = \"redis_stream\"\nurl = \"{SHARED}\"\nstream = \"{stream}\"\nblockMs = 200\n\
         [[sources]]\nid = \"megamind\"\nkind = \"external\"\ndevice_id = \"{device}\"\ndetections_events = false\n\
         lines = [{{id = \"aisle\", points = [[340, 0], [340, \"100%\"]]}}]\n\
         zones = [{{id = \"right\", points = [[420, 0], [720, 0], [720, 528], [420, 528]]}}]\n\
         [[sessions.declared]]\nid = \"watch\"\nsources = [\"megamind\"]\n",
        out = out.display()
    )
}

#[tokio::test]
async fn an_edge_publishes_envelopes_that_a_processor_turns_into_line_and_zone_events() {
    let (device, stream) = (unique("jetson"), unique("detections"));
    let out = std::env::temp_dir().join(unique("synopticon-processor"));
    let smtp = crate::rules::Smtp::start();
    let processor = ServerProcess::start(&processor_config(&device, &stream, &out, smtp.port));
    let mut ws = processor.app.ws("watch", "").await;
    let edge = edge_process(&device, &stream);

    let mut names = Vec::new();
    let found = tokio::time::timeout(VIDEO_DEADLINE, async {
        while !(names.iter().any(|n| n == "zone_enter") && names.iter().any(|n| n == "line_cross"))
        {
            match ws.next_event().await {
                Some(e) => names.push(e["event"].as_str().unwrap_or_default().to_string()),
                None => break,
            }
        }
    })
    .await;
    assert!(found.is_ok(), "events so far: {names:?}");
    assert!(names.iter().any(|n| n == "track_started"), "{names:?}");

    // The stream holds the plain envelope, as the seed describes it.
    let mut conn = redis::Client::open(SHARED)
        .and_then(|c| c.get_connection())
        .expect("redis");
    let entries: redis::streams::StreamRangeReply =
        conn.xrange_count(&stream, "-", "+", 200).expect("XRANGE");
    let envelopes: Vec<Value> = entries
        .ids
        .iter()
        .filter_map(|e| e.get::<String>("json"))
        .filter_map(|j| serde_json::from_str(&j).ok())
        .collect();
    assert!(envelopes.len() > 10, "{} envelopes", envelopes.len());
    let first = &envelopes[0];
    assert_eq!(first["version"], 1);
    assert_eq!(first["source"]["device_id"], device.as_str());
    assert_eq!(first["source"]["camera_id"], "megamind");
    assert!(
        first.get("session").is_none(),
        "the plain envelope: {first}"
    );
    let numbers: Vec<u64> = envelopes
        .iter()
        .filter_map(|e| e["frame"]["number"].as_u64())
        .collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "frames in order");
    let with_previous = envelopes
        .iter()
        .flat_map(|e| e["detections"].as_array().cloned().unwrap_or_default())
        .filter(|d| d.get("previous_center").is_some())
        .count();
    assert!(with_previous > 0, "tracked faces carry previous_center");

    let health = edge.app.get("/api/health").await;
    assert_eq!(health.status, 200);
    let metrics = edge.app.metrics().await;
    let delivered = metric_value(
        &metrics,
        "synopticon_distributor_events_total{session=\"edge\",distributor=\"redis\",outcome=\"delivered\"}",
    );
    assert!(delivered.is_some_and(|n| n > 10.0), "{delivered:?}");
    let status = processor.app.get("/api/v1/inputs/edge").await.body;
    assert!(
        status["acknowledged"].as_u64().unwrap_or(0) > 10,
        "{status}"
    );
    assert_eq!(status["dead_lettered"], 0, "{status}");

    // The rule on the zone: a JSON log line, a capture that decodes, an e-mail with it.
    let rule = wait_until("the rule's actions", DEADLINE, || async {
        let r = processor.app.get("/api/v1/rules/right-side").await.body;
        let done = r["actions"]
            .as_array()
            .is_some_and(|a| a.iter().all(|a| a["done"].as_u64() >= Some(1)));
        done.then_some(r)
    })
    .await;
    assert_eq!(rule["actions"][1]["failed"], 0, "{rule}");
    let logs: Vec<String> = std::fs::read_dir(out.join("events"))
        .expect("the log folder")
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .collect();
    let first: Value = serde_json::from_str(logs[0].lines().next().expect("a line")).expect("JSON");
    assert_eq!(first["rule"], "right-side");
    assert_eq!(first["event"], "zone_enter");
    assert_eq!(first["source"], "megamind");
    let day = std::fs::read_dir(out.join("captures").join("megamind"))
        .expect("captures by source")
        .flatten()
        .next()
        .expect("a day folder")
        .path();
    let captures: Vec<std::path::PathBuf> = std::fs::read_dir(day)
        .expect("day")
        .flatten()
        .map(|e| e.path())
        .collect();
    let picture = image::open(&captures[0]).expect("the capture decodes");
    assert_eq!(
        (picture.width(), picture.height()),
        (720, 528),
        "the edge's frame"
    );
    let mails = wait_until("the e-mail", DEADLINE, || async {
        let m = smtp.messages();
        (!m.is_empty()).then_some(m)
    })
    .await;
    assert!(
        mails[0].contains("X-RcptTo: desk@lab.example"),
        "{:.500}",
        mails[0]
    );
    assert!(
        mails[0].contains("Subject: [Synopticon] right-side: zone_enter at megamind"),
        "{:.500}",
        mails[0]
    );
    assert!(mails[0].contains("Content-Type: image/jpeg"));
    let _ = std::fs::remove_dir_all(&out);
}

#[tokio::test]
async fn an_edge_over_mqtt_feeds_two_processors_sharing_a_subscription_each_message_once() {
    use serde_json::json;
    let (device, root) = (unique("jetson"), unique("detections"));
    let mut processors = Vec::new();
    for _ in 0..2 {
        let app = spawn_app().await;
        let source = app
            .post(
                "/api/v1/sources",
                &json!({"id": "megamind", "kind": "external", "device_id": device, "detections_events": false}),
            )
            .await;
        assert_eq!(source.status, 201, "{}", source.body);
        let input = app
            .put(
                "/api/v1/inputs/edge",
                &json!({"kind": "mqtt", "broker": format!("mqtt://127.0.0.1:{}", crate::mqtt::SHARED_BROKER),
                    "topic": format!("{root}/+"), "shareGroup": "processors", "clientId": unique("proc")}),
            )
            .await;
        assert_eq!(input.status, 201, "{}", input.body);
        wait_until("the processor connected", DEADLINE, || async {
            (app.get("/api/v1/inputs/edge").await.body["connected"] == true).then_some(())
        })
        .await;
        processors.push(app);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let edge = ServerProcess::edge(&format!(
        "[server]\nport = 0\n{}\n[edge]\ndevice_id = \"{device}\"\ncamera_id = \"megamind\"\n\
         output = \"mqtt\"\nbroker = \"mqtt://127.0.0.1:{}\"\ntopic = \"{root}/{{camera_id}}\"\n\
         [edge.source]\nkind = \"file\"\nurl = \"{}\"\nfps = 10\n",
        face_model(),
        crate::mqtt::SHARED_BROKER,
        asset("videos/Megamind.avi").display()
    ));
    // The video plays once. The edge's last envelopes may still be on their way when its
    // source reports the end, so the counts are compared once both have stood still.
    tokio::time::timeout(VIDEO_DEADLINE, async {
        while edge.app.get("/api/v1/sources/megamind").await.body["state"] != "finished" {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the edge played the video");
    let delivered = "synopticon_distributor_events_total{session=\"edge\",distributor=\"mqtt\",outcome=\"delivered\"}";
    let mut last = None;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let (published, counts) = loop {
        let published = metric_value(&edge.app.metrics().await, delivered).unwrap_or(0.0) as u64;
        let queued = edge.app.status("edge").await["distributors"][0]["queued"].as_u64();
        let mut counts = Vec::new();
        for app in &processors {
            counts.push(
                app.get("/api/v1/inputs/edge").await.body["acknowledged"]
                    .as_u64()
                    .unwrap_or(0),
            );
        }
        let now = (published, counts);
        let settled =
            queued == Some(0) && now.1.iter().sum::<u64>() == now.0 && last.as_ref() == Some(&now);
        if settled || tokio::time::Instant::now() >= deadline {
            break now;
        }
        last = Some(now);
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(published > 20, "{published} envelopes");
    assert_eq!(
        counts.iter().sum::<u64>(),
        published,
        "each envelope the edge delivered was acknowledged once: {counts:?}"
    );
    assert!(
        counts.iter().all(|c| *c > 0),
        "both took a share: {counts:?}"
    );
    let mut tracked = 0;
    for app in &processors {
        tracked += app.get("/api/v1/sources/megamind").await.body["stats"]["frames_captured"]
            .as_u64()
            .unwrap_or(0);
    }
    assert_eq!(tracked, published, "each envelope tracked once");
}
