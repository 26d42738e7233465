//! What browsers and API tools need: the dashboard's files, CORS, the OpenAPI document
//! (checked by an independent validator), the frame snapshot and whoami.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::helpers::*;

const ADMIN: &str = "syn_web-admin-000000000000000000000000000000000000";
const VIEWER: &str = "syn_web-viewer-00000000000000000000000000000000000";

#[tokio::test]
async fn the_dashboard_is_served_from_the_binary_with_a_strict_policy() {
    let app = spawn_app().await;
    let client = reqwest::Client::new();
    let page = client.get(app.url("/")).send().await.expect("GET /");
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(html.contains("/assets/app.js") && html.contains("/assets/style.css"));
    for (file, kind) in [("app.js", "text/javascript"), ("style.css", "text/css")] {
        let answer = client
            .get(app.url(&format!("/assets/{file}")))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{file}");
        assert!(answer.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with(kind));
        let tag = answer.headers()["etag"].to_str().unwrap().to_string();
        assert!(!answer.bytes().await.unwrap().is_empty());
        // Asked again with its tag: nothing to send.
        let again = client
            .get(app.url(&format!("/assets/{file}")))
            .header("If-None-Match", &tag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{file}");
    }
    let missing = app.get("/assets/secret.txt").await;
    assert_eq!(missing.status, 404);
    assert!(missing.body["error"].as_str().is_some());
}

async fn preflight(app: &TestApp, origin: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, app.url("/api/v1/sessions"))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization, content-type",
        )
        .send()
        .await
        .expect("preflight")
}

fn allowed_origin(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get("access-control-allow-origin")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[tokio::test]
async fn pages_on_allowed_origins_may_call_the_api_and_others_may_not() {
    // local_testing: this machine's pages, on any port.
    let local = spawn_app().await;
    let ok = preflight(&local, "http://127.0.0.1:5173").await;
    assert!(ok.status().is_success(), "{}", ok.status());
    assert_eq!(
        allowed_origin(&ok).as_deref(),
        Some("http://127.0.0.1:5173")
    );
    let headers = ok.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(headers.contains("authorization"), "{headers}");
    let elsewhere = preflight(&local, "https://evil.example").await;
    assert_eq!(allowed_origin(&elsewhere), None);
    // An ordinary request from an allowed page carries the header too, errors included.
    let missing = reqwest::Client::new()
        .get(local.url("/api/v1/sessions/nope"))
        .header("Origin", "http://localhost:3000")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        allowed_origin(&missing).as_deref(),
        Some("http://localhost:3000")
    );

    // Production: only what is listed.
    let production = spawn_app_with(|s| {
        s.server.mode = synopticon::configuration::Mode::Production;
        s.auth.tokens = vec![token_config("admin", "admin", ADMIN)];
        s.server.cors_origins = vec!["https://lab.example.org".into()];
    })
    .await;
    let listed = preflight(&production, "https://lab.example.org").await;
    assert_eq!(
        allowed_origin(&listed).as_deref(),
        Some("https://lab.example.org")
    );
    let local_page = preflight(&production, "http://127.0.0.1:5173").await;
    assert_eq!(allowed_origin(&local_page), None);
    // A WebSocket from a page elsewhere is refused at the handshake; from a listed origin
    // (or no browser at all) it opens.
    let url = format!(
        "ws://127.0.0.1:{}/api/v1/sessions/system/ws",
        production.port
    );
    let handshake = |origin: Option<&str>| {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = url.as_str().into_client_request().expect("a request");
        request.headers_mut().insert(
            "Authorization",
            format!("Bearer {ADMIN}").parse().expect("a header"),
        );
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("Origin", origin.parse().expect("a header"));
        }
        tokio_tungstenite::connect_async(request)
    };
    match handshake(Some("https://evil.example")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("expected 403, got {:?}", other.map(|(_, r)| r.status())),
    }
    assert!(handshake(Some("https://lab.example.org")).await.is_ok());
    assert!(handshake(None).await.is_ok());
    // A bad entry is named at start.
    let mut settings = test_settings();
    settings.server.cors_origins = vec!["lab.example.org".into()];
    let report = settings.validate(&synopticon_actors::session::templates::TemplateStore::new());
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.contains("server.cors_origins") && e.contains("lab.example.org")),
        "{:?}",
        report.errors
    );
}

/// A production server with an admin and a viewer token.
async fn production() -> TestApp {
    spawn_app_with(|s| {
        s.server.mode = synopticon::configuration::Mode::Production;
        s.auth.tokens = vec![
            token_config("admin", "admin", ADMIN),
            token_config("viewer", "viewer", VIEWER),
        ];
    })
    .await
}

#[tokio::test]
async fn the_openapi_document_has_every_route_and_passes_a_real_validator() {
    let app = production().await;
    assert_eq!(app.get("/api/openapi.json").await.status, 401);
    let answer = app.with_token(VIEWER).get("/api/openapi.json").await;
    assert_eq!(answer.status, 200);
    let doc = answer.body;
    assert_eq!(doc["openapi"], "3.1.0");
    let table = synopticon::routes::table(&test_settings());
    let mut missing = Vec::new();
    for route in &table {
        let path = synopticon::routes::openapi::openapi_path(route.path);
        let op = &doc["paths"][&path][route.method.to_ascii_lowercase()];
        if !op.is_object() {
            missing.push(format!("{} {}", route.method, route.path));
        }
    }
    assert!(missing.is_empty(), "not in the document: {missing:?}");
    // Nothing in it that the router does not have.
    let routes: BTreeSet<(String, String)> = table
        .iter()
        .map(|r| {
            (
                synopticon::routes::openapi::openapi_path(r.path),
                r.method.to_ascii_lowercase(),
            )
        })
        .collect();
    let mut documented = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented += 1;
            assert!(
                routes.contains(&(path.clone(), method.clone())),
                "{method} {path}"
            );
        }
    }
    assert_eq!(documented, table.len());
    let sessions = &doc["paths"]["/api/v1/sessions/{id}"]["delete"];
    assert_eq!(sessions["x-synopticon-access"], "operator");
    assert_eq!(sessions["parameters"][0]["name"], "id");
    assert_eq!(sessions["parameters"][0]["in"], "path");
    assert_eq!(
        doc["paths"]["/api/health"]["get"]["security"],
        json!([]),
        "public"
    );
    assert_eq!(
        doc["paths"]["/api/v1/rules/{name}"]["put"]["x-synopticon-access"],
        "admin without a scope"
    );

    // An independent validator (PyPI openapi-spec-validator) reads it.
    let python = cache_dir().join("venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `make test-deps` (scripts/reference-env.sh builds it)",
        python.display()
    );
    let file =
        std::env::temp_dir().join(format!("synopticon-openapi-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&file, doc.to_string()).unwrap();
    let out = std::process::Command::new(&python)
        .args([
            "-c",
            "import json,sys\nfrom openapi_spec_validator import validate\nvalidate(json.load(open(sys.argv[1])))\nprint('valid')",
        ])
        .arg(&file)
        .output()
        .expect("python runs");
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "the validator refused it:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "valid");
}

fn tiny_jpeg(width: u32, height: u32) -> String {
    use base64::Engine as _;
    let mut jpeg = Vec::new();
    let picture =
        image::RgbImage::from_fn(width, height, |x, _| image::Rgb([(x % 256) as u8, 90, 200]));
    image::codecs::jpeg::JpegEncoder::new(&mut jpeg)
        .encode_image(&picture)
        .expect("a JPEG");
    base64::engine::general_purpose::STANDARD.encode(jpeg)
}

#[tokio::test]
async fn a_source_shows_its_latest_frame_and_whoami_names_the_caller() {
    let app = production().await;
    let admin = app.with_token(ADMIN);
    let viewer = app.with_token(VIEWER);
    let created = admin
        .post(
            "/api/v1/sources",
            &json!({"id": "door-cam", "kind": "external"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let none = viewer.get("/api/v1/sources/door-cam/frame.jpg").await;
    assert_eq!(none.status, 404);
    assert!(none.body["error"]
        .as_str()
        .is_some_and(|e| e.contains("no analysed frame")));
    let posted = admin
        .post(
            "/api/v1/sources/door-cam/detections",
            &json!({"version": 1, "frame": {"width": 64, "height": 48},
                "frame_data": {"format": "jpeg", "base64": tiny_jpeg(64, 48)},
                "detections": [{"class_name": "person", "confidence": 0.9,
                    "bbox": {"x1": 5, "y1": 5, "x2": 30, "y2": 40}}]}),
        )
        .await;
    assert!(posted.status < 300, "{}", posted.body);
    let frame = viewer
        .request(reqwest::Method::GET, "/api/v1/sources/door-cam/frame.jpg")
        .send()
        .await
        .unwrap();
    assert_eq!(frame.status(), 200);
    assert_eq!(frame.headers()["content-type"], "image/jpeg");
    let bytes = frame.bytes().await.unwrap();
    let picture = image::load_from_memory(&bytes).expect("a JPEG that decodes");
    assert_eq!((picture.width(), picture.height()), (64, 48));
    assert_eq!(
        app.get("/api/v1/sources/door-cam/frame.jpg").await.status,
        401
    );
    let bad = viewer
        .get("/api/v1/sources/door-cam/frame.jpg?quality=0")
        .await;
    assert_eq!(bad.status, 400);

    let me: Value = viewer.get("/api/v1/whoami").await.body;
    assert_eq!(me["token"], "viewer");
    assert_eq!(me["role"], "viewer");
    assert_eq!(me["auth_enabled"], true);
    assert_eq!(app.get("/api/v1/whoami").await.status, 401);
    let open = spawn_app().await;
    let me = open.get("/api/v1/whoami").await.body;
    assert_eq!(me["auth_enabled"], false, "{me}");
    assert_eq!(me["role"], "admin", "{me}");
}
