//! The live vision pipeline end to end: a file source played by ffmpeg, a real face model,
//! the tracker, and a session routing the events to WebSocket and a real Mosquitto.

use std::time::Duration;

use serde_json::{json, Value};
use synopticon::configuration::Settings;
use synopticon_actors::inference::{ModelConfig, ModelKind};

use crate::helpers::{asset, metric_value, ort_library, spawn_app_with, wait_until, TestApp};
use crate::mqtt::{Subscriber, SHARED_BROKER};

/// How long a frozen test stream keeps its connection open without sending.
const STALLED_STREAM_SILENCE: Duration = Duration::from_secs(120);

/// Playing, decoding and analysing a video on two shared cores takes a while.
pub(crate) const PIPELINE_DEADLINE: Duration = Duration::from_secs(60);

pub(crate) fn with_face_models(s: &mut Settings) {
    s.inference.runtime_path = ort_library();
    let face = ModelConfig::new(
        "face",
        ModelKind::Centerface,
        asset("models/centerface.onnx"),
    );
    let mut small = face.clone();
    small.name = "face-small".into();
    small.input_size = Some([320, 256]);
    s.inference.models = vec![face, small];
    s.inference.default_model = "face".into();
}

pub(crate) async fn ready(app: &TestApp) {
    wait_until("models ready", PIPELINE_DEADLINE, || async {
        let body = app.get("/api/pipelines").await.body;
        let models = body["models"].as_array().cloned().unwrap_or_default();
        models.iter().all(|m| m["state"] == "ready").then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_video_file_with_a_face_model_sends_face_and_track_events_to_websocket_and_mqtt() {
    let app = spawn_app_with(with_face_models).await;
    ready(&app).await;
    let session = format!("megamind-{}", &uuid::Uuid::new_v4().to_string()[..8]);
    let mqtt = Subscriber::start(SHARED_BROKER, &format!("synopticon/{session}/#")).await;
    app.create_session(json!({
        "id": session,
        "sources": ["megamind"],
        "enabledDistributors": ["websocket", "mqtt"],
        "distributors": {"mqtt": {"broker": format!("mqtt://127.0.0.1:{SHARED_BROKER}"), "qos": 1}},
        "eventRouting": {"*": ["websocket", "mqtt"]},
    }))
    .await;
    let mut ws = app.ws(&session, "").await;

    let created = app
        .post(
            "/api/v1/sources",
            &json!({"id": "megamind", "kind": "file", "url": asset("videos/Megamind.avi"),
                    "fps": 5, "model": "face", "detections_every_ms": 500, "frame_data": true}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);

    // The first face track: started, then announced as a face, with the same id.
    let mut seen: Vec<Value> = Vec::new();
    let deadline = tokio::time::Instant::now() + PIPELINE_DEADLINE;
    while tokio::time::Instant::now() < deadline {
        let Ok(Some(frame)) = tokio::time::timeout(Duration::from_secs(5), ws.next_event()).await
        else {
            continue;
        };
        seen.push(frame);
        // Until the face is announced and a later per-frame envelope shows its track.
        let face_at = seen.iter().position(|e| e["event"] == "face_detected");
        if face_at.is_some_and(|i| seen[i..].iter().any(|e| e["event"] == "detections")) {
            break;
        }
    }
    let started = seen
        .iter()
        .find(|e| e["event"] == "track_started")
        .unwrap_or_else(|| panic!("no track_started in {seen:#?}"));
    let face = seen
        .iter()
        .find(|e| e["event"] == "face_detected")
        .unwrap_or_else(|| panic!("no face_detected in {seen:#?}"));
    let id = started["data"]["track_id"].clone();
    assert_eq!(face["data"]["track_id"], id, "one face, one track id");
    assert_eq!(face["data"]["class_name"], "face");
    assert_eq!(face["data"]["source"], "megamind");
    assert_eq!(face["data"]["landmarks"].as_array().map(Vec::len), Some(5));
    let b = &face["data"]["bbox"];
    assert!(
        b["x2"].as_f64() > b["x1"].as_f64() && b["x2"].as_f64() <= Some(720.0),
        "{b}"
    );
    // The track keeps its id from frame to frame: the envelope after the announcement
    // carries a detection with the same track id.
    let face_at = seen.iter().position(|e| e["event"] == "face_detected");
    let later = seen[face_at.unwrap_or_default()..]
        .iter()
        .find(|e| e["event"] == "detections")
        .unwrap_or_else(|| panic!("no detections envelope after face_detected in {seen:#?}"));
    let tracked: Vec<&Value> = later["data"]["detections"]
        .as_array()
        .map(|d| d.iter().map(|d| &d["track_id"]).collect())
        .unwrap_or_default();
    assert!(tracked.contains(&&id), "track {id} in {tracked:?}");
    // The per-frame envelope (seed 004), with the frame attached as a JPEG.
    let e = seen
        .iter()
        .find(|e| e["event"] == "detections")
        .unwrap_or_else(|| panic!("no detections envelope in {seen:#?}"));
    assert_eq!(e["data"]["version"], 1);
    assert_eq!(e["data"]["source"]["camera_id"], "megamind");
    assert_eq!(e["data"]["frame"]["width"], 720);
    assert_eq!(e["data"]["frame"]["height"], 528);
    assert_eq!(e["data"]["frame_data"]["encoding"], "jpeg");
    let jpeg = e["data"]["frame_data"]["base64"]
        .as_str()
        .unwrap_or_default();
    assert!(
        jpeg.starts_with("/9j/"),
        "base64 of a JPEG starts with /9j/ (FF D8 FF)"
    );
    assert!(jpeg.len() > 10_000, "a whole 720x528 frame");

    // The same events reached the MQTT subscriber, on per-event topics.
    let got = wait_until("face_detected over MQTT", PIPELINE_DEADLINE, || async {
        mqtt.events()
            .into_iter()
            .find(|m| m.topic == format!("synopticon/{session}/face_detected"))
    })
    .await;
    assert_eq!(got.payload["data"]["track_id"], id);

    // Observability: rates over the 2 s window, times, and the same in /metrics.
    let source = wait_until("frame rates", PIPELINE_DEADLINE, || async {
        let s = app.get("/api/v1/sources/megamind").await.body;
        (s["stats"]["captured_fps"].as_f64() > Some(0.0)
            && s["stats"]["processed_fps"].as_f64() > Some(0.0))
        .then_some(s)
    })
    .await;
    let stats = &source["stats"];
    assert!(stats["frames_captured"].as_u64() > Some(0), "{source}");
    assert!(stats["frames_processed"].as_u64() > Some(0), "{source}");
    assert!(stats["inference_ms"].as_f64() > Some(0.0), "{source}");
    assert!(stats["tracking_ms"].as_f64() > Some(0.0), "{source}");
    assert!(
        stats["captured_fps"].as_f64() <= Some(8.0),
        "played at 5 fps: {source}"
    );
    assert!(stats["events"].as_u64() > Some(2), "{source}");
    let health = app.get("/api/health").await.body;
    assert_eq!(
        health["components"]["sources"]["sources"]["megamind"]["state"],
        "running"
    );
    let metrics = app.metrics().await;
    for series in [
        r#"synopticon_source_frames_per_second{source="megamind",stage="captured"}"#,
        r#"synopticon_source_frames_per_second{source="megamind",stage="processed"}"#,
        r#"synopticon_source_frames_total{source="megamind",outcome="captured"}"#,
        r#"synopticon_source_inference_duration_seconds_count{source="megamind"}"#,
        r#"synopticon_source_tracking_duration_seconds_count{source="megamind"}"#,
        r#"synopticon_source_events_total{source="megamind"}"#,
        r#"synopticon_inference_duration_seconds_count{model="face"}"#,
    ] {
        assert!(
            metric_value(&metrics, series) > Some(0.0),
            "{series} in {metrics}"
        );
    }
}

#[tokio::test]
async fn a_killed_ffmpeg_is_restarted_and_frames_keep_coming() {
    let app = spawn_app_with(with_face_models).await;
    ready(&app).await;
    let created = app
        .post(
            "/api/v1/sources",
            &json!({"id": "loop", "kind": "file", "url": asset("videos/Megamind.avi"),
                    "fps": 5, "loop": true, "model": "face-small"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);

    let (pid, before) = wait_until("frames from ffmpeg", PIPELINE_DEADLINE, || async {
        let s = app.get("/api/v1/sources/loop").await.body;
        let pid = s["capture_pid"].as_u64()?;
        let captured = s["stats"]["frames_captured"].as_u64()?;
        (captured > 2).then_some((pid, captured))
    })
    .await;
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success(), "kill {pid}");

    let after = wait_until(
        "a restarted ffmpeg delivering frames",
        PIPELINE_DEADLINE,
        || async {
            let s = app.get("/api/v1/sources/loop").await.body;
            let restarted = s["stats"]["restarts"].as_u64() == Some(1);
            let new_pid = s["capture_pid"].as_u64().is_some_and(|p| p != pid);
            let captured = s["stats"]["frames_captured"].as_u64().unwrap_or(0);
            (restarted && new_pid && captured > before + 3 && s["state"] == "running").then_some(s)
        },
    )
    .await;
    assert!(
        after["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("ffmpeg"),
        "{after}"
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"synopticon_source_restarts_total{source="loop"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn file_and_folder_sources_read_only_inside_the_media_folders() {
    let root = std::env::temp_dir().join(format!("synopticon-media-{}", uuid::Uuid::new_v4()));
    let (media, private) = (root.join("media"), root.join("private"));
    for dir in [&media, &private] {
        std::fs::create_dir_all(dir).expect("folder");
        std::fs::copy(asset("images/zidane.jpg"), dir.join("a.jpg")).expect("copy");
    }
    std::os::unix::fs::symlink(&private, media.join("link")).expect("symlink");
    let allowed = media.to_string_lossy().to_string();
    let app = spawn_app_with(move |s| {
        with_face_models(s);
        s.server.media_dirs = vec![allowed];
    })
    .await;
    ready(&app).await;
    let add = |id: &'static str, kind: &'static str, url: std::path::PathBuf| {
        let app = &app;
        async move {
            app.post(
                "/api/v1/sources",
                &json!({"id": id, "kind": kind, "url": url, "fps": 2, "model": "face-small"}),
            )
            .await
        }
    };

    for (kind, url) in [
        ("folder", private.clone()),
        ("folder", media.join("..").join("private")),
        ("folder", media.join("link")),
        ("file", std::path::PathBuf::from("/etc/passwd")),
    ] {
        let r = add("outside", kind, url.clone()).await;
        assert_eq!(r.status, 422, "{url:?}: {}", r.body);
        assert!(
            r.body["details"]
                .to_string()
                .contains("is not a file or folder this server may read"),
            "{url:?}: {}",
            r.body
        );
    }
    // A missing path is refused in the same words as one outside: whether a path exists
    // outside the folders is not for the caller to learn.
    let missing = add("missing", "file", root.join("nothing.mp4")).await;
    let present = add("missing", "file", private.join("a.jpg")).await;
    assert_eq!((missing.status, present.status), (422, 422));
    let words = |a: &crate::helpers::Answer, path: &std::path::Path| {
        a.body["details"]
            .to_string()
            .replace(&path.to_string_lossy().to_string(), "PATH")
    };
    assert_eq!(
        words(&missing, &root.join("nothing.mp4")),
        words(&present, &private.join("a.jpg"))
    );

    // Inside: accepted, with the path resolved. An image linked from outside is not read:
    // one file here, one linked from the private folder, so one frame per pass.
    let shelf = media.join("shelf");
    std::fs::create_dir_all(&shelf).expect("shelf");
    std::fs::copy(asset("images/zidane.jpg"), shelf.join("a.jpg")).expect("copy");
    std::os::unix::fs::symlink(private.join("a.jpg"), shelf.join("b.jpg")).expect("symlink");
    let inside = add("inside", "folder", media.join(".").join("shelf")).await;
    assert_eq!(inside.status, 201, "{}", inside.body);
    let resolved = std::fs::canonicalize(&shelf).expect("resolve");
    assert_eq!(
        inside.body["config"]["url"],
        resolved.to_string_lossy().as_ref()
    );
    let done = wait_until("the folder played", PIPELINE_DEADLINE, || async {
        let s = app.get("/api/v1/sources/inside").await.body;
        (s["state"] == "finished").then_some(s)
    })
    .await;
    assert_eq!(done["stats"]["frames_captured"], 1, "{done}");

    // A video inside plays; an HLS playlist inside that names a video outside does not
    // (ffmpeg would follow it without the input whitelist).
    std::fs::copy(asset("videos/Megamind.avi"), media.join("m.avi")).expect("copy");
    let outside = private.join("outside.ts");
    let made = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-t", "2", "-i"])
        .arg(asset("videos/Megamind.avi"))
        .args(["-c:v", "mpeg2video"])
        .arg(&outside)
        .status()
        .expect("ffmpeg");
    assert!(made.success());
    std::fs::write(
        media.join("list.m3u8"),
        format!(
            "#EXTM3U\n#EXT-X-TARGETDURATION:3\n#EXTINF:2.0,\n{}\n#EXT-X-ENDLIST\n",
            outside.display()
        ),
    )
    .expect("playlist");
    assert_eq!(add("video", "file", media.join("m.avi")).await.status, 201);
    assert_eq!(
        add("playlist", "file", media.join("list.m3u8"))
            .await
            .status,
        201
    );
    wait_until("the video plays", PIPELINE_DEADLINE, || async {
        let s = app.get("/api/v1/sources/video").await.body;
        (s["stats"]["frames_captured"].as_u64() > Some(0)).then_some(())
    })
    .await;
    let refused = wait_until("the playlist refused", PIPELINE_DEADLINE, || async {
        let s = app.get("/api/v1/sources/playlist").await.body;
        s["last_error"].is_string().then_some(s)
    })
    .await;
    assert_eq!(refused["stats"]["frames_captured"], 0, "{refused}");
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test]
async fn a_missing_camera_device_is_a_clear_error() {
    let app = spawn_app_with(with_face_models).await;
    // ONNX Runtime aborts the process if it exits while a model is still loading.
    ready(&app).await;
    let created = app
        .post(
            "/api/v1/sources",
            &json!({"id": "webcam", "kind": "v4l2", "device": "/dev/video0", "model": "face-small"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let status = wait_until("the capture error", PIPELINE_DEADLINE, || async {
        let s = app.get("/api/v1/sources/webcam").await.body;
        s["last_error"].is_string().then_some(s)
    })
    .await;
    assert_eq!(
        status["last_error"],
        "/dev/video0 not found: no such camera device (check `ls /dev/video*`)"
    );
    // Between retries it is restarting, and briefly starting again; never running.
    assert!(
        matches!(status["state"].as_str(), Some("restarting" | "starting")),
        "{status}"
    );
    assert_eq!(status["stats"]["frames_captured"], 0);
    let health = app.get("/api/health").await.body;
    assert_eq!(health["components"]["sources"]["status"], "degraded");
}

#[tokio::test]
async fn an_image_folder_is_replayed_and_its_two_faces_become_two_tracks() {
    let app = spawn_app_with(with_face_models).await;
    ready(&app).await;
    let folder = std::env::temp_dir().join(format!("synopticon-folder-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&folder).expect("folder");
    for name in ["a.jpg", "b.jpg"] {
        std::fs::copy(asset("images/zidane.jpg"), folder.join(name)).expect("copy");
    }
    app.create_session(json!({"id": "folder", "sources": ["*"]}))
        .await;
    let mut ws = app.ws("folder", "").await;

    let created = app
        .post(
            "/api/v1/sources",
            &json!({"id": "stills", "kind": "folder", "url": folder, "fps": 2, "loop": true,
                    "model": "face", "detections_events": false}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);

    let mut faces = Vec::new();
    let deadline = tokio::time::Instant::now() + PIPELINE_DEADLINE;
    while faces.len() < 2 && tokio::time::Instant::now() < deadline {
        if let Ok(Some(e)) = tokio::time::timeout(Duration::from_secs(5), ws.next_event()).await {
            if e["event"] == "face_detected" {
                faces.push(e["data"]["track_id"].as_u64().unwrap_or(0));
            }
        }
    }
    faces.sort_unstable();
    assert_eq!(faces, [1, 2], "two faces, two tracks");

    // Removing the source ends its tracks.
    assert_eq!(app.delete("/api/v1/sources/stills").await.status, 204);
    let mut ended = 0;
    while ended < 2 {
        let Ok(Some(e)) = tokio::time::timeout(Duration::from_secs(10), ws.next_event()).await
        else {
            break;
        };
        if e["event"] == "track_ended" {
            ended += 1;
        }
    }
    assert_eq!(ended, 2, "both tracks end when the source is removed");
    let _ = std::fs::remove_dir_all(&folder);
}

#[tokio::test]
async fn a_synthetic_source_runs_frames_through_the_model() {
    let app = spawn_app_with(with_face_models).await;
    ready(&app).await;
    let created = app
        .post(
            "/api/v1/sources",
            &json!({"id": "pattern", "kind": "synthetic", "fps": 10, "size": [320, 240], "model": "face-small"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let stats = wait_until("processed frames", PIPELINE_DEADLINE, || async {
        let s = app.get("/api/v1/sources/pattern").await.body;
        (s["stats"]["frames_processed"].as_u64() >= Some(5)).then_some(s)
    })
    .await;
    assert_eq!(stats["state"], "running");
    assert_eq!(
        stats["stats"]["active_tracks"], 0,
        "a moving grey square is not a face"
    );
}

#[tokio::test]
async fn a_camera_that_is_not_there_is_a_clear_error_through_nokhwa_too() {
    let app = spawn_app_with(with_face_models).await;
    ready(&app).await;
    let created = app
        .post(
            "/api/v1/sources",
            &json!({"id": "laptop-cam", "kind": "camera", "device": "0", "model": "face-small"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let status = wait_until("the capture error", PIPELINE_DEADLINE, || async {
        let s = app.get("/api/v1/sources/laptop-cam").await.body;
        s["last_error"].is_string().then_some(s)
    })
    .await;
    let error = status["last_error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("camera 0: cannot open it (is one connected?)"),
        "{error}"
    );
}

/// Serves one file over plain HTTP/1.0 to every connection, like a simple stream server.
fn serve_file(path: std::path::PathBuf) -> u16 {
    serve_file_then_stall(path, None)
}

/// Like [`serve_file`]; with `stall_after`, sends only that many bytes of the body and then
/// keeps the connection open in silence, like a camera whose stream froze.
fn serve_file_then_stall(path: std::path::PathBuf, stall_after: Option<usize>) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let body = std::fs::read(path).expect("read video");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let body = body.clone();
            std::thread::spawn(move || {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                let head = format!(
                    "HTTP/1.0 200 OK\r\nContent-Type: video/x-msvideo\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let sent = stall_after.unwrap_or(body.len()).min(body.len());
                let _ = stream.write_all(&body[..sent]);
                if stall_after.is_some() {
                    std::thread::sleep(STALLED_STREAM_SILENCE);
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn an_http_stream_is_read_through_ffmpeg() {
    let app = spawn_app_with(with_face_models).await;
    ready(&app).await;
    let port = serve_file(asset("videos/Megamind.avi"));
    let created = app
        .post(
            "/api/v1/sources",
            &json!({"id": "http-cam", "kind": "stream", "url": format!("http://127.0.0.1:{port}/megamind.avi"),
                    "fps": 5, "model": "face-small"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let status = wait_until("frames from the stream", PIPELINE_DEADLINE, || async {
        let s = app.get("/api/v1/sources/http-cam").await.body;
        (s["stats"]["frames_processed"].as_u64() >= Some(3)).then_some(s)
    })
    .await;
    // ffmpeg reads an HTTP file faster than it plays: on a loaded machine the stream may
    // already have ended (and be reopening, as streams do) when three frames are analysed.
    assert!(
        status["state"] == "running" || status["state"] == "restarting",
        "{status}"
    );
    assert!(status["stats"]["frames_captured"].as_u64() >= Some(3));
    assert_eq!(status["stats"]["frames_failed"], 0, "{status}");
}

#[tokio::test]
async fn a_stream_that_freezes_without_closing_is_killed_and_restarted() {
    let app = spawn_app_with(with_face_models).await;
    ready(&app).await;
    // About a third of the video, then silence on an open connection.
    let size = std::fs::metadata(asset("videos/Megamind.avi")).map_or(0, |m| m.len() as usize);
    let port = serve_file_then_stall(asset("videos/Megamind.avi"), Some(size / 3));
    let created = app
        .post(
            "/api/v1/sources",
            &json!({"id": "frozen", "kind": "stream", "url": format!("http://127.0.0.1:{port}/megamind.avi"),
                    "fps": 5, "model": "face-small", "stall_timeout_ms": 1000}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let status = wait_until("the watchdog's restart", PIPELINE_DEADLINE, || async {
        let s = app.get("/api/v1/sources/frozen").await.body;
        (s["stats"]["restarts"].as_u64() >= Some(1)).then_some(s)
    })
    .await;
    let error = status["last_error"].as_str().unwrap_or_default();
    assert!(error.starts_with("no frame from ffmpeg for"), "{status}");
    assert!(
        status["stats"]["frames_captured"].as_u64() > Some(0),
        "{status}"
    );
    app.delete("/api/v1/sources/frozen").await;
}

#[tokio::test]
async fn stream_urls_must_be_streams_and_never_options() {
    // No model: the process must not exit while ONNX Runtime is loading one.
    let app = crate::helpers::spawn_app().await;
    for (url, why) in [
        ("file:///etc/passwd", "is not a stream URL"),
        ("concat:/a|/b", "is not a stream URL"),
        ("-filter_complex", "must not start with '-'"),
    ] {
        let r = app
            .post(
                "/api/v1/sources",
                &json!({"id": "bad", "kind": "stream", "url": url}),
            )
            .await;
        assert_eq!(r.status, 422, "{url}: {}", r.body);
        let details = r.body["details"].to_string();
        assert!(details.contains(why), "{url}: {details}");
    }
}
