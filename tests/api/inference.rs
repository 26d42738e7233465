//! Detection with real models on real images: agreement with an independent reference
//! (Python onnxruntime + numpy), the REST endpoints, their errors, and the model thread's
//! latest-frame-wins queue.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use parking_lot::Mutex;
use serde_json::Value;
use synopticon::configuration::Settings;
use synopticon_actors::inference::actor::ModelState;
use synopticon_actors::inference::frame::{self, ImageLimits};
use synopticon_actors::inference::{
    runtime, DetectFrame, DetectOptions, Detector, FrameDetected, InferenceActor, InferenceError,
    ModelConfig, ModelKind,
};

use crate::helpers::{
    asset, cache_dir, ort_library, spawn_app_with, wait_until, TestApp, DEADLINE,
};

/// Model loading and a first run can take a while on a loaded two-core machine.
const MODEL_DEADLINE: Duration = Duration::from_secs(60);

const LIMITS: ImageLimits = ImageLimits {
    max_bytes: 16 << 20,
    max_pixels: 40_000_000,
};

fn face_model() -> ModelConfig {
    ModelConfig::new(
        "face",
        ModelKind::Centerface,
        asset("models/centerface.onnx"),
    )
}

fn yolo_model() -> ModelConfig {
    ModelConfig::new(
        "nudenet",
        ModelKind::Yolov8,
        asset("models/nudenet-320n.onnx"),
    )
}

fn with_models(settings: &mut Settings) {
    settings.inference.runtime_path = ort_library();
    settings.inference.models = vec![face_model(), yolo_model()];
    settings.inference.default_model = "face".into();
}

async fn ready_app(tweak: impl FnOnce(&mut Settings) + Send + 'static) -> TestApp {
    let app = spawn_app_with(move |s| {
        with_models(s);
        tweak(s);
    })
    .await;
    wait_until("models ready", MODEL_DEADLINE, || async {
        let body = app.get("/api/pipelines").await.body;
        let models = body["models"].as_array().cloned().unwrap_or_default();
        models.iter().all(|m| m["state"] == "ready").then_some(())
    })
    .await;
    app
}

fn image(name: &str) -> Vec<u8> {
    std::fs::read(asset(&format!("images/{name}"))).expect("read test image")
}

/// A detection as both sides report it.
#[derive(Debug)]
struct Found {
    class_id: u64,
    confidence: f64,
    bbox: [f64; 4],
}

fn iou(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let area = |r: &[f64; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    inter / (area(a) + area(b) - inter)
}

/// Runs scripts/reference_detect.py on the exact pixels the Rust side decoded.
fn reference(
    config: &ModelConfig,
    frame: &frame::Frame,
    confidence: f32,
    input: Option<[u32; 2]>,
) -> Vec<Found> {
    let python = cache_dir().join("venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run `make test-deps` (scripts/reference-env.sh builds it)",
        python.display()
    );
    let dir = std::env::temp_dir().join(format!("synopticon-ref-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let rgb = dir.join("frame.rgb");
    std::fs::write(&rgb, &frame.rgb).expect("write frame");
    let mut command = std::process::Command::new(python);
    command
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/reference_detect.py"
        ))
        .args(["--model", config.path.to_str().expect("utf-8 path")])
        .args(["--kind", config.kind.as_str()])
        .args(["--rgb", rgb.to_str().expect("utf-8 path")])
        .args(["--width", &frame.width.to_string()])
        .args(["--height", &frame.height.to_string()])
        .args(["--confidence", &confidence.to_string()]);
    if let Some([w, h]) = input {
        command.args(["--input-size", &w.to_string(), &h.to_string()]);
    }
    let output = command.output().expect("run the reference script");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        output.status.success(),
        "reference script failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let list: Vec<Value> = serde_json::from_slice(&output.stdout).expect("reference JSON");
    list.iter()
        .map(|d| Found {
            class_id: d["class_id"].as_u64().expect("class_id"),
            confidence: d["confidence"].as_f64().expect("confidence"),
            bbox: [0, 1, 2, 3].map(|i| d["bbox"][i].as_f64().expect("bbox")),
        })
        .collect()
}

#[test]
fn rust_detections_agree_with_the_python_reference_on_real_images() {
    let rt = runtime::load(Path::new(&ort_library())).expect("ONNX Runtime loads");
    let mut compared = Vec::new();
    for config in [face_model(), yolo_model()] {
        let mut detector = Detector::load(&rt, &config).expect("model loads");
        let input = detector.info().input_size;
        for name in ["bus.jpg", "zidane.jpg"] {
            let frame = frame::decode(&image(name), &LIMITS).expect("decode");
            // The configured threshold, and a low one that puts many boxes through NMS.
            for confidence in [config.confidence(), 0.05] {
                let options = DetectOptions {
                    confidence: Some(confidence),
                    classes: None,
                };
                let ours = detector
                    .detect(&frame, &options)
                    .expect("detect")
                    .detections;
                let theirs = reference(&config, &frame, confidence, input);
                let context = format!("{} on {name} at confidence {confidence}", config.name);
                assert_eq!(
                    ours.len(),
                    theirs.len(),
                    "{context}: ours {ours:#?} reference {theirs:#?}"
                );
                for d in &ours {
                    let b = [d.bbox.x1, d.bbox.y1, d.bbox.x2, d.bbox.y2].map(f64::from);
                    let best = theirs
                        .iter()
                        .filter(|t| t.class_id == u64::from(d.class_id))
                        .max_by(|x, y| iou(&x.bbox, &b).total_cmp(&iou(&y.bbox, &b)))
                        .unwrap_or_else(|| {
                            panic!("{context}: no reference box of class {}", d.class_id)
                        });
                    let overlap = iou(&best.bbox, &b);
                    assert!(
                        overlap > 0.9,
                        "{context}: IoU {overlap} for {d:?} vs {best:?}"
                    );
                    let delta = (best.confidence - f64::from(d.confidence)).abs();
                    assert!(
                        delta < 1e-3,
                        "{context}: score differs by {delta} for {d:?} vs {best:?}"
                    );
                }
                compared.push((context, ours.len()));
            }
        }
    }
    // The comparison means something only if boxes were found: both models find some at
    // their configured thresholds, and many more at the low one.
    let found = |prefix: &str| {
        compared
            .iter()
            .filter(|(c, _)| c.starts_with(prefix))
            .map(|(_, n)| n)
            .sum::<usize>()
    };
    assert!(
        found("face on zidane.jpg at confidence 0.5") == 2,
        "{compared:?}"
    );
    assert!(
        found("nudenet on bus.jpg at confidence 0.25") >= 1,
        "{compared:?}"
    );
    assert!(found("nudenet") >= 10, "{compared:?}");
    println!("compared with the reference: {compared:?}");
}

#[tokio::test]
async fn detect_finds_the_two_faces_in_zidane_with_landmarks() {
    let app = ready_app(|_| {}).await;

    let answer = app
        .post_bytes("/api/v1/detect", image("zidane.jpg"), "image/jpeg")
        .await;

    assert_eq!(answer.status, 200, "{}", answer.body);
    let body = &answer.body;
    assert_eq!(body["model"], "face");
    assert_eq!(
        (body["width"].as_u64(), body["height"].as_u64()),
        (Some(1280), Some(720))
    );
    assert!(
        body["inference_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "{body}"
    );
    let faces = body["detections"].as_array().expect("detections");
    assert_eq!(faces.len(), 2, "{body}");
    let mut centres: Vec<f64> = Vec::new();
    for face in faces {
        assert_eq!(face["class_name"], "face");
        assert_eq!(face["class_id"], 0);
        assert!(face["confidence"].as_f64().is_some_and(|c| c >= 0.5));
        let b = &face["bbox"];
        let [x1, y1, x2, y2] = ["x1", "y1", "x2", "y2"].map(|k| b[k].as_f64().expect("coordinate"));
        assert!(x1 < x2 && y1 < y2 && x2 <= 1280.0 && y2 <= 720.0, "{b}");
        let landmarks = face["landmarks"].as_array().expect("landmarks");
        assert_eq!(landmarks.len(), 5, "eyes, nose, mouth corners");
        for point in landmarks {
            let (x, y) = (
                point["x"].as_f64().expect("x"),
                point["y"].as_f64().expect("y"),
            );
            assert!(
                x >= x1 && x <= x2 && y >= y1 && y <= y2,
                "landmark {point} outside {b}"
            );
        }
        centres.push((x1 + x2) / 2.0);
    }
    centres.sort_by(f64::total_cmp);
    // Zidane's face is left of centre, Ancelotti's on the right.
    assert!(centres[0] > 500.0 && centres[0] < 700.0, "{centres:?}");
    assert!(centres[1] > 900.0 && centres[1] < 1100.0, "{centres:?}");

    // The same image as a multipart file gives the same faces.
    let form = reqwest::multipart::Form::new().part(
        "image",
        reqwest::multipart::Part::bytes(image("zidane.jpg")).file_name("zidane.jpg"),
    );
    let multipart = app.post_form("/api/v1/detect", form).await;
    assert_eq!(multipart.status, 200, "{}", multipart.body);
    assert_eq!(multipart.body["detections"], body["detections"]);

    // Another model by name, with a class filter.
    let yolo = app
        .post_bytes(
            "/api/v1/detect?model=nudenet&classes=FEET_COVERED",
            image("bus.jpg"),
            "image/jpeg",
        )
        .await;
    assert_eq!(yolo.status, 200, "{}", yolo.body);
    let found = yolo.body["detections"].as_array().expect("detections");
    assert!(!found.is_empty(), "{}", yolo.body);
    assert!(
        found.iter().all(|d| d["class_name"] == "FEET_COVERED"),
        "{}",
        yolo.body
    );

    // Metrics: the latency histogram and the processed counter moved, per model.
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"synopticon_inference_duration_seconds_count{model="face"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"synopticon_inference_frames_total{model="nudenet",outcome="processed"} 1"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn batch_returns_one_result_per_image_in_order() {
    let app = ready_app(|_| {}).await;
    let form = reqwest::multipart::Form::new()
        .text("note", "form values that are not files are ignored")
        .part(
            "a",
            reqwest::multipart::Part::bytes(image("bus.jpg")).file_name("bus.jpg"),
        )
        .part(
            "b",
            reqwest::multipart::Part::bytes(image("zidane.jpg")).file_name("zidane.jpg"),
        );

    let answer = app.post_form("/api/v1/batch", form).await;

    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["count"], 2);
    let results = answer.body["results"].as_array().expect("results");
    let names: Vec<&str> = results
        .iter()
        .map(|r| r["name"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(names, ["bus.jpg", "zidane.jpg"]);
    assert_eq!(results[0]["width"], 810);
    assert_eq!(results[1]["width"], 1280);
    assert_eq!(results[1]["detections"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn bad_input_gets_a_clear_json_error_and_the_server_keeps_serving() {
    let app = ready_app(|s| {
        s.inference.max_image_bytes = 100_000;
        s.inference.max_batch_images = 2;
    })
    .await;
    let zidane = image("zidane.jpg"); // 50 kB
    let bus = image("bus.jpg"); // 137 kB: over the 100 kB limit
    let file = |bytes: Vec<u8>, name: &str| {
        reqwest::multipart::Part::bytes(bytes).file_name(name.to_string())
    };

    let detect = |query: &'static str, body: Vec<u8>| {
        let app = &app;
        async move {
            app.post_bytes(&format!("/api/v1/detect{query}"), body, "image/jpeg")
                .await
        }
    };
    let cases = vec![
        ("empty body", 400, "no image", detect("", Vec::new()).await),
        (
            "text",
            415,
            "not a JPEG or PNG",
            detect("", b"hello".to_vec()).await,
        ),
        (
            "truncated JPEG",
            422,
            "truncated",
            detect("", zidane[..20_000].to_vec()).await,
        ),
        (
            "unknown model",
            404,
            "no model named \"nope\"",
            detect("?model=nope", zidane.clone()).await,
        ),
        (
            "over the size limit",
            413,
            "limit of 100000 bytes",
            detect("", bus.clone()).await,
        ),
        (
            "bad confidence",
            400,
            "between 0 and 1",
            detect("?confidence=7", zidane.clone()).await,
        ),
        (
            "unknown query key",
            400,
            "bad query string",
            detect("?colour=red", zidane.clone()).await,
        ),
        (
            "unknown class",
            400,
            "has no class \"cat\"",
            detect("?model=nudenet&classes=cat", zidane.clone()).await,
        ),
        (
            "batch without multipart",
            415,
            "multipart/form-data",
            app.post_bytes("/api/v1/batch", zidane.clone(), "image/jpeg")
                .await,
        ),
        (
            "batch over the image count",
            413,
            "more than 2 images",
            app.post_form(
                "/api/v1/batch",
                reqwest::multipart::Form::new()
                    .part("a", file(zidane.clone(), "1.jpg"))
                    .part("b", file(zidane.clone(), "2.jpg"))
                    .part("c", file(zidane.clone(), "3.jpg")),
            )
            .await,
        ),
        (
            "batch with a text file",
            415,
            "image \"notes.txt\"",
            app.post_form(
                "/api/v1/batch",
                reqwest::multipart::Form::new()
                    .part("a", file(zidane.clone(), "1.jpg"))
                    .part("b", file(b"just text".to_vec(), "notes.txt")),
            )
            .await,
        ),
    ];
    for (what, status, needle, answer) in &cases {
        assert_eq!(answer.status, *status, "{what}: {}", answer.body);
        let error = answer.body["error"].as_str().unwrap_or_default();
        assert!(error.contains(needle), "{what}: {}", answer.body);
        assert!(answer.body["details"].is_array(), "{what}: {}", answer.body);
    }

    // Nothing was lost: the server still detects, and counted no failed run for the
    // requests refused before they reached the model.
    let ok = app
        .post_bytes("/api/v1/detect", zidane.clone(), "image/jpeg")
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body["detections"].as_array().map(Vec::len), Some(2));
    let health = app.get("/api/health").await;
    assert_eq!(health.status, 200);
    assert_eq!(
        health.body["components"]["models"]["status"], "ok",
        "{}",
        health.body
    );
}

#[tokio::test]
async fn pipelines_lists_models_with_inputs_outputs_classes_and_state() {
    let app = ready_app(|_| {}).await;

    let body = app.get("/api/pipelines").await.body;

    assert_eq!(body["runtime"]["loaded"], true, "{body}");
    assert_eq!(body["runtime"]["version"], "1.32.0", "{body}");
    let models = body["models"].as_array().expect("models");
    let names: Vec<&str> = models
        .iter()
        .map(|m| m["name"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(names, ["face", "nudenet"], "sorted by name");
    let face = &models[0];
    assert_eq!(face["kind"], "centerface");
    assert_eq!(face["default"], true);
    assert_eq!(face["state"], "ready");
    assert_eq!(face["confidence"], 0.5);
    assert_eq!(face["info"]["classes"], serde_json::json!(["face"]));
    // CenterFace's fixed [10, 3, 32, 32] input was made dynamic at load time.
    assert_eq!(
        face["info"]["inputs"][0]["shape"],
        serde_json::json!(["batch", 3, "height", "width"])
    );
    assert_eq!(face["info"]["outputs"].as_array().map(Vec::len), Some(4));
    let yolo = &models[1];
    assert_eq!(yolo["kind"], "yolov8");
    assert_eq!(
        yolo["info"]["input_size"],
        serde_json::json!([320, 320]),
        "from the imgsz metadata"
    );
    let classes = yolo["info"]["classes"].as_array().expect("classes");
    assert_eq!(classes.len(), 18, "from the output shape [1, 22, N]");
    assert_eq!(classes[12], "FACE_MALE", "names from the model's metadata");
    assert_eq!(yolo["info"]["outputs"][0]["shape"][1], 22);
}

#[tokio::test]
async fn a_missing_runtime_library_is_a_clear_error_not_a_crash() {
    let app = spawn_app_with(|s| {
        with_models(s);
        s.inference.runtime_path = "/nonexistent/libonnxruntime.so.1.32.0".into();
    })
    .await;

    let failed = wait_until("models to fail", DEADLINE, || async {
        let body = app.get("/api/pipelines").await.body;
        let models = body["models"].as_array().cloned().unwrap_or_default();
        (models.len() == 2 && models.iter().all(|m| m["state"] == "failed")).then_some(models)
    })
    .await;
    let error = failed[0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("/nonexistent/libonnxruntime.so.1.32.0"),
        "{error}"
    );
    assert!(error.contains("make assets"), "{error}");
    assert!(error.contains("ORT_DYLIB_PATH"), "{error}");

    let detect = app
        .post_bytes("/api/v1/detect", image("zidane.jpg"), "image/jpeg")
        .await;
    assert_eq!(detect.status, 503, "{}", detect.body);
    assert!(detect.body["error"]
        .as_str()
        .unwrap_or_default()
        .contains("make assets"));
    let health = app.get("/api/health").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.body["status"], "degraded");
    assert_eq!(
        health.body["components"]["models"]["models"]["face"],
        "failed"
    );
}

/// Collects what the model thread sends back.
/// Results of frames that ran, and numbers of frames answered as superseded.
struct Collector(Arc<Mutex<Vec<(u64, usize)>>>, Arc<Mutex<Vec<u64>>>);

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<FrameDetected> for Collector {
    type Result = ();
    fn handle(&mut self, msg: FrameDetected, _: &mut Self::Context) {
        match msg.result {
            Err(InferenceError::Superseded) => self.1.lock().push(msg.number),
            other => {
                let faces = other.map(|r| r.detections.len()).unwrap_or(usize::MAX);
                self.0.lock().push((msg.number, faces));
            }
        }
    }
}

#[actix_rt::test]
async fn live_frames_the_model_cannot_keep_up_with_are_replaced_and_counted() {
    let (actor, shared) = InferenceActor::new(face_model(), ort_library().into());
    let model = actor.start();
    wait_until("model ready", MODEL_DEADLINE, || async {
        (shared.status().state == ModelState::Ready).then_some(())
    })
    .await;
    let frame = Arc::new(frame::decode(&image("zidane.jpg"), &LIMITS).expect("decode"));
    let results = Arc::new(Mutex::new(Vec::new()));
    let superseded = Arc::new(Mutex::new(Vec::new()));
    let collector = Collector(results.clone(), superseded.clone())
        .start()
        .recipient();
    const FRAMES: u64 = 30;

    // A camera far faster than the model: 30 frames at once from one source.
    for number in 0..FRAMES {
        model.do_send(DetectFrame {
            source: Arc::from("camera-1"),
            number,
            frame: frame.clone(),
            reply_to: collector.clone(),
        });
    }

    let stats = &shared.stats;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    wait_until("every frame accounted for", MODEL_DEADLINE, || async {
        (load(&stats.processed) + load(&stats.dropped) == FRAMES
            && results.lock().len() as u64 == load(&stats.processed)
            && superseded.lock().len() as u64 == load(&stats.dropped))
        .then_some(())
    })
    .await;
    let seen = results.lock().clone();
    let numbers: Vec<u64> = seen.iter().map(|(n, _)| *n).collect();
    assert!(
        load(&stats.dropped) > 0,
        "a slow model must drop frames: {numbers:?}"
    );
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "results in order: {numbers:?}"
    );
    assert_eq!(
        numbers.last(),
        Some(&(FRAMES - 1)),
        "the latest frame always runs"
    );
    assert!(seen.iter().all(|(_, faces)| *faces == 2), "{seen:?}");
    // Every frame gets exactly one answer: its result, or word that it was replaced.
    let mut answered: Vec<u64> = numbers
        .iter()
        .chain(superseded.lock().iter())
        .copied()
        .collect();
    answered.sort_unstable();
    assert_eq!(answered, (0..FRAMES).collect::<Vec<_>>());
    assert_eq!(shared.waiting(), (0, 0), "nothing left queued");
}

#[tokio::test]
async fn the_default_configuration_finds_faces_out_of_the_box() {
    // The embedded default's [inference] section as `make run` uses it: the runtime from
    // ORT_DYLIB_PATH (exported by make), the face model from .cache/.
    let app = spawn_app_with(|s| {
        let (defaults, _) = Settings::load_with_env(None, []).expect("embedded default");
        s.inference = defaults.inference;
        if std::env::var_os("SYNOPTICON_CACHE").is_some() {
            s.inference.models[0].path = asset("models/centerface.onnx");
        }
    })
    .await;
    wait_until("the default model", MODEL_DEADLINE, || async {
        let body = app.get("/api/pipelines").await.body;
        (body["models"][0]["state"] != "loading").then_some(())
    })
    .await;

    let answer = app
        .post_bytes("/api/v1/detect", image("zidane.jpg"), "image/jpeg")
        .await;

    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["model"], "face");
    assert_eq!(
        answer.body["detections"].as_array().map(Vec::len),
        Some(2),
        "{}",
        answer.body
    );
}

#[tokio::test]
async fn a_region_of_interest_limits_detection_and_boxes_stay_in_frame_coordinates() {
    let app = ready_app(|s| {
        let mut right = face_model();
        right.name = "face-right".into();
        right.roi = Some(synopticon_actors::inference::Roi {
            x1: 700,
            y1: 0,
            x2: 1280,
            y2: 720,
        });
        s.inference.models.push(right);
    })
    .await;

    let answer = app
        .post_bytes(
            "/api/v1/detect?model=face-right",
            image("zidane.jpg"),
            "image/jpeg",
        )
        .await;

    assert_eq!(answer.status, 200, "{}", answer.body);
    let body = &answer.body;
    assert_eq!(
        body["roi_applied"],
        serde_json::json!({"x1": 700, "y1": 0, "x2": 1280, "y2": 720})
    );
    assert_eq!(
        (body["width"].as_u64(), body["height"].as_u64()),
        (Some(1280), Some(720))
    );
    let faces = body["detections"].as_array().expect("detections");
    assert_eq!(
        faces.len(),
        1,
        "only Ancelotti's face is right of x = 700: {body}"
    );
    let x1 = faces[0]["bbox"]["x1"].as_f64().unwrap_or(0.0);
    assert!(x1 > 900.0 && x1 < 930.0, "whole-frame coordinates: {body}");
}
