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

#[tokio::test]
async fn placeholders_are_resolved_from_the_environment_when_a_session_is_made() {
    let server = ServerProcess::start_with("[server]\nport = 0\n", |command| {
        command
            .env("MQTT_TEST_BROKER", "mqtt://127.0.0.1:1883")
            .env("LAB_ROOM", "b12")
            .env("SECRET_OF_THE_HOST", "do-not-send");
    });
    let app = &server.app;
    let template = app
        .put(
            "/api/v1/templates/placed",
            &json!({"enabledDistributors": ["websocket", "mqtt"],
            "distributors": {"mqtt": {
                "broker": "${MQTT_TEST_BROKER:-mqtt://127.0.0.1:1}",
                "topic": "lab/${LAB_ROOM}/${LAB_DESK:-desk-1}/{event}",
                "clientId": "${LAB_LATER}"}}}),
        )
        .await;
    let missing = app
        .post(
            "/api/v1/sessions",
            &json!({"id": "unset", "template": "placed"}),
        )
        .await;
    let created = app
        .post(
            "/api/v1/sessions",
            &json!({"id": "placed-1", "template": "placed",
            "distributors": {"mqtt": {"clientId": "lab-${LAB_ROOM}"}}}),
        )
        .await;
    let forbidden = app
        .post(
            "/api/v1/sessions",
            &json!({"id": "leak", "enabledDistributors": ["http"],
            "distributors": {"http": {"baseUrl": "http://127.0.0.1:9",
                "headers": {"X-Leak": "${SECRET_OF_THE_HOST}"}}}}),
        )
        .await;
    let runtime = app.get("/api/runtime").await.body;

    // Registered with a warning: LAB_LATER may be set before a session needs it.
    assert_eq!(template.status, 201, "{}", template.body);
    assert_eq!(missing.status, 422, "{}", missing.body);
    assert!(
        missing.body["details"]
            .to_string()
            .contains("${LAB_LATER} is not set and has no default"),
        "{}",
        missing.body
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let mqtt = &created.body["config"]["distributors"]["mqtt"];
    assert_eq!(mqtt["broker"], "mqtt://127.0.0.1:1883");
    assert_eq!(mqtt["topic"], "lab/b12/desk-1/{event}");
    assert_eq!(mqtt["clientId"], "lab-b12");
    assert_eq!(forbidden.status, 422, "{}", forbidden.body);
    assert!(
        forbidden.body["details"]
            .to_string()
            .contains("is not a variable sessions may read"),
        "{}",
        forbidden.body
    );
    let vars = runtime["templateVariables"]
        .as_array()
        .expect("template variables");
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(var("MQTT_TEST_BROKER")["set"], true);
    assert_eq!(var("MQTT_TEST_BROKER")["hasDefault"], true);
    assert_eq!(var("LAB_LATER")["set"], false);
    assert_eq!(var("LAB_ROOM")["templates"], json!(["placed"]));
}

#[tokio::test]
async fn an_empty_put_enables_a_distributor_with_the_settings_the_session_holds() {
    let app = spawn_app().await;
    // local_testing holds an HTTP webhook to 127.0.0.1:3000, off.
    app.create_session(json!({"id": "held"})).await;

    let enabled = app
        .request(
            reqwest::Method::PUT,
            "/api/v1/sessions/held/distributors/http",
        )
        .send()
        .await
        .expect("PUT");
    let status = enabled.status().as_u16();
    let body: serde_json::Value = enabled.json().await.expect("JSON");

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["action"], "enabled");
    assert_eq!(
        body["session"]["config"]["distributors"]["http"]["baseUrl"],
        "http://127.0.0.1:3000"
    );
    assert!(body["session"]["config"]["enabledDistributors"]
        .as_array()
        .unwrap()
        .contains(&json!("http")));
}
