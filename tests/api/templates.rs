//! Templates: built-ins, files, and user templates over REST.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn builtin_and_file_templates_are_listed() {
    let app = spawn_app().await;

    let listed = app.get("/api/v1/templates").await;
    let one = app.get("/api/v1/templates/research_lab").await;
    let missing = app.get("/api/v1/templates/none").await;

    let names: Vec<String> = listed.body["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    for name in [
        "local_testing",
        "research_lab",
        "production",
        "high_frequency",
        "mobile_remote",
        "basic",
        "realtime",
        "iot",
        "research",
        "high_throughput",
        "eye_tracking_lab",
    ] {
        assert!(
            names.contains(&name.to_string()),
            "{name} missing from {names:?}"
        );
    }
    assert_eq!(one.status, 200);
    assert_eq!(
        one.body["enabledDistributors"],
        json!(["http", "websocket", "mqtt", "sse"])
    );
    assert_eq!(one.body["origin"], "builtin_template");
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn custom_template_can_be_registered_and_used() {
    let app = spawn_app().await;
    let template = json!({
        "description": "pilot study",
        "enabledDistributors": ["sse"],
        "distributors": {"sse": {"historySize": 16}},
        "eventRouting": {"*": ["sse"]}
    });

    let first = app.put("/api/v1/templates/pilot", &template).await;
    let second = app.put("/api/v1/templates/pilot", &template).await;
    let session = app
        .create_session(json!({"id": "p1", "template": "pilot"}))
        .await;
    let builtin = app.put("/api/v1/templates/production", &template).await;
    let invalid = app
        .put(
            "/api/v1/templates/broken",
            &json!({"enabledDistributors": "sse", "distributors": {"sse": {"retryMs": "soon"}}}),
        )
        .await;

    assert_eq!(first.status, 201);
    assert_eq!(first.body["origin"], "api");
    assert_eq!(second.status, 200);
    assert_eq!(session["config"]["enabledDistributors"], json!(["sse"]));
    assert_eq!(session["config"]["distributors"]["sse"]["historySize"], 16);
    assert_eq!(builtin.status, 409);
    assert_eq!(invalid.status, 422);
    assert_eq!(
        invalid.body["details"].as_array().unwrap().len(),
        2,
        "{}",
        invalid.body
    );
}
