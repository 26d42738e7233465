//! The server against its own OpenAPI document: schemathesis (PyPI) generates requests
//! from the document served at `/api/openapi.json` (valid ones, and ones that break it),
//! sends them with an admin token to a server holding one of each resource, and checks
//! every answer: no 5xx, a status, content type, headers and body the document declares,
//! a refusal of every request the document says is wrong, a 405 with `Allow` for a method
//! a path does not have. Bounded in examples (about 2,200 cases) and time, with a fixed
//! seed.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

const ADMIN: &str = "syn_schemathesis-admin-0000000000000000000000000000";

/// Longest the run may take (about 20 s on two cores, alone; nextest stops a test at 120 s).
const RUN_DEADLINE: Duration = Duration::from_secs(110);

/// Requests per operation and phase.
const EXAMPLES: &str = "50";

#[tokio::test]
async fn the_server_answers_as_its_openapi_document_says() {
    let st = cache_dir().join("venv/bin/st");
    assert!(
        st.is_file(),
        "{} is missing: run `make test-deps` (scripts/reference-env.sh installs schemathesis)",
        st.display()
    );
    let app = spawn_app_with(|s| {
        s.server.mode = synopticon::configuration::Mode::Production;
        s.server.debug_endpoints = false;
        s.auth.tokens = vec![token_config("admin", "admin", ADMIN)];
        s.rate_limit.enabled = synopticon::configuration::Switch::Off;
    })
    .await
    .with_token(ADMIN);
    // One of each thing a path names, so requests reach more than a 404.
    app.create_session(
        json!({"id": "st", "sources": ["st"], "enabledDistributors": ["websocket"]}),
    )
    .await;
    for (path, body) in [
        ("/api/v1/sources", json!({"id": "st", "kind": "external"})),
        ("/api/v1/devices", json!({"id": "st", "serial": "ST-1"})),
        ("/api/v1/tokens", json!({"id": "st", "role": "viewer"})),
    ] {
        let made = app.post(path, &body).await;
        assert_eq!(made.status, 201, "{path}: {}", made.body);
    }
    for (path, body) in [
        (
            "/api/v1/templates/st",
            json!({"enabledDistributors": ["websocket"]}),
        ),
        (
            "/api/v1/rules/st",
            json!({"match": {"events": ["x"]}, "actions": [{"type": "json_log"}]}),
        ),
    ] {
        let made = app.put(path, &body).await;
        assert_eq!(made.status, 201, "{path}: {}", made.body);
    }
    let rec = crate::recording::start_recording(&app, "st", json!({})).await;
    let rid = rec["id"].as_str().expect("id").to_string();
    app.publish("st", json!([{"event": "x", "data": {}}])).await;
    crate::recording::stop(&app, &rid).await;

    let dir = std::env::temp_dir().join(format!("synopticon-st-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("a folder");
    let config = dir.join("schemathesis.toml");
    std::fs::write(
        &config,
        format!(
            "[parameters]\n\"path.id\" = \"st\"\n\"path.name\" = \"st\"\n\"path.token\" = \"st\"\n\
             \"path.serial\" = \"ST-1\"\n\"path.rid\" = \"{rid}\"\n\"path.kind\" = \"websocket\"\n\
             \"path.action\" = \"pause\"\n"
        ),
    )
    .expect("the configuration");
    let run = tokio::process::Command::new(&st)
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(app.url("/api/openapi.json"))
        .args(["-H", &format!("Authorization: Bearer {ADMIN}")])
        .args(["--max-examples", EXAMPLES, "--seed", "20261204"])
        .args([
            "--generation-database",
            "none",
            "--workers",
            "1",
            "--no-color",
        ])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_headers_conformance,response_schema_conformance,negative_data_rejection,\
             unsupported_method,allow_header_conformance",
        ])
        // Live feeds stream for as long as they are open: their handshakes are tested in
        // live.rs and security.rs.
        .args([
            "--exclude-path-regex",
            "/(ws|sse)$",
            "--request-timeout",
            "10",
        ])
        .current_dir(&dir)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(RUN_DEADLINE, run)
        .await
        .unwrap_or_else(|_| panic!("schemathesis did not finish within {RUN_DEADLINE:?}"))
        .expect("schemathesis runs");
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found answers that do not match the document:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Not a run that tested nothing: the summary counts the cases.
    let generated = text
        .lines()
        .find_map(|l| l.trim().split_once(" generated, "))
        .and_then(|(n, _)| n.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no count of test cases in:\n{text}"));
    assert!(generated >= 1500, "only {generated} test cases:\n{text}");
    eprintln!("schemathesis: {generated} test cases, every answer as documented");
}
