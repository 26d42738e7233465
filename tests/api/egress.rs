//! The egress policy: where distributors and stream sources may connect, checked when a
//! configuration is validated and again, after name resolution, at every connection.

use serde_json::{json, Value};
use synopticon::configuration::{Settings, Switch};
use synopticon_actors::inference::{ModelConfig, ModelKind};

use crate::helpers::*;

const ADMIN: &str = "syn_egress-admin-000000000000000000000000000000000";
const OPERATOR: &str = "syn_egress-operator-0000000000000000000000000000000";

/// Production mode with an admin and an operator token.
fn production(s: &mut Settings) {
    s.server.mode = synopticon::configuration::Mode::Production;
    s.auth.tokens = vec![
        token_config("admin", "admin", ADMIN),
        token_config("operator", "operator", OPERATOR),
    ];
}

fn details(answer: &Answer) -> String {
    answer.body["details"].to_string()
}

#[tokio::test]
async fn production_refuses_metadata_link_local_and_its_own_api_at_validation() {
    let app = spawn_app_with(production).await;
    let operator = app.with_token(OPERATOR);
    let own = format!("http://127.0.0.1:{}/api/v1/sessions/other/events", app.port);
    let session = |distributor: &str, config: Value| {
        json!({"id": format!("to-{distributor}"), "enabledDistributors": [distributor],
            "distributors": {distributor: config}})
    };

    let metadata_hook = operator
        .post(
            "/api/v1/sessions",
            &session(
                "http",
                json!({"baseUrl": "http://169.254.169.254/latest/meta-data"}),
            ),
        )
        .await;
    // A decimal spelling of the same address: the URL parser reads it as the address.
    let decimal_hook = operator
        .post(
            "/api/v1/sessions",
            &session("http", json!({"baseUrl": "http://2852039166/latest"})),
        )
        .await;
    let self_hook = operator
        .post(
            "/api/v1/sessions",
            &session("http", json!({"baseUrl": own})),
        )
        .await;
    let mapped_broker = operator
        .post(
            "/api/v1/sessions",
            &session(
                "mqtt",
                json!({"broker": "mqtt://[::ffff:169.254.169.254]:1883"}),
            ),
        )
        .await;
    let redis = operator
        .post(
            "/api/v1/sessions",
            &session("redis", json!({"url": "redis://169.254.169.254:6379"})),
        )
        .await;
    let udp = operator
        .post(
            "/api/v1/sessions",
            &session(
                "udp",
                json!({"targets": ["[fe80::1]:9000", "169.254.1.1:9000"]}),
            ),
        )
        .await;
    let stream = operator
        .post(
            "/api/v1/sources",
            &json!({"id": "meta-cam", "kind": "stream", "url": "http://169.254.169.254/cam.mjpg"}),
        )
        .await;
    let file = operator
        .post(
            "/api/v1/sources",
            &json!({"id": "replay", "kind": "file", "url": "/etc/passwd"}),
        )
        .await;
    let missing = operator
        .post(
            "/api/v1/sources",
            &json!({"id": "replay", "kind": "file", "url": "/no/such/file.mp4"}),
        )
        .await;
    let allowed = operator
        .post(
            "/api/v1/sessions",
            &session("http", json!({"baseUrl": "http://127.0.0.1:9/hook"})),
        )
        .await;

    for (what, answer, needle) in [
        ("metadata webhook", &metadata_hook, "169.254.169.254:80"),
        ("decimal webhook", &decimal_hook, "169.254.169.254:80"),
        ("mapped MQTT broker", &mapped_broker, "169.254.169.254:1883"),
        ("Redis", &redis, "169.254.169.254:6379"),
        ("UDP", &udp, "[fe80::1]:9000"),
        ("stream source", &stream, "169.254.169.254:80"),
    ] {
        assert_eq!(answer.status, 422, "{what}: {}", answer.body);
        let text = details(answer);
        assert!(
            text.contains("egress policy refuses")
                && text.contains(needle)
                && text.contains("production default"),
            "{what}: {text}"
        );
    }
    assert_eq!(
        details(&udp).matches("egress policy refuses").count(),
        2,
        "{}",
        details(&udp)
    );
    assert_eq!(self_hook.status, 422, "{}", self_hook.body);
    assert!(
        details(&self_hook).contains("own listener"),
        "{}",
        details(&self_hook)
    );
    // Files: off without server.media_dirs, and nothing tells whether a path exists.
    assert_eq!((file.status, missing.status), (422, 422));
    assert_eq!(
        details(&file),
        details(&missing).replace("/no/such/file.mp4", "/etc/passwd")
    );
    assert!(
        details(&file).contains("server.media_dirs"),
        "{}",
        details(&file)
    );
    assert_eq!(allowed.status, 201, "{}", allowed.body);
}

#[tokio::test]
async fn a_name_that_resolves_to_a_denied_address_is_refused_when_connecting() {
    // Names are checked where they are resolved, at each connection: "2130706433" passes
    // as a name, and the system's resolver turns it into 127.0.0.1.
    let app = spawn_app_with(|s| s.server.egress.deny = vec!["127.0.0.0/8".into()]).await;
    app.create_session(
        json!({"id": "sneaky", "enabledDistributors": ["mqtt", "redis", "udp", "websocket"],
        "distributors": {
            "mqtt": {"broker": "mqtt://2130706433:1883", "reconnectDelayMs": 100},
            "redis": {"url": "redis://2130706433:6379", "reconnectDelayMs": 100},
            "udp": {"targets": ["2130706433:9"]}}}),
    )
    .await;
    let mut ws = app.ws("sneaky", "").await;
    app.publish("sneaky", batch("probe", 3)).await;
    ws.events(3).await;

    for kind in ["mqtt", "redis", "udp"] {
        let refused = wait_until(
            &format!("{kind} to report the refusal"),
            DEADLINE,
            || async {
                let d = app.distributor("sneaky", kind).await;
                let error = d["last_error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                error.contains("egress policy refuses").then_some(d)
            },
        )
        .await;
        let error = refused["last_error"]["message"].as_str().unwrap();
        assert!(
            error.contains("127.0.0.1") && error.contains("server.egress.deny"),
            "{kind}: {error}"
        );
        assert_eq!(refused["sent"], 0, "{kind}: {refused}");
    }
}

#[tokio::test]
async fn an_allow_list_closes_everything_it_does_not_name() {
    let app = spawn_app_with(|s| s.server.egress.allow = vec!["127.0.0.1".into()]).await;
    let outside = app
        .post(
            "/api/v1/sessions",
            &json!({"id": "out", "enabledDistributors": ["http"],
            "distributors": {"http": {"baseUrl": "http://127.0.0.2:9/hook"}}}),
        )
        .await;
    let inside = app
        .post(
            "/api/v1/sessions",
            &json!({"id": "in", "enabledDistributors": ["http"],
            "distributors": {"http": {"baseUrl": "http://127.0.0.1:9/hook"}}}),
        )
        .await;
    let bad = Settings::load_with_env(
        None,
        [(
            "SYNOPTICON__SERVER__EGRESS__DENY".to_string(),
            "[\"10.0.0.0/40\", \"nowhere\"]".to_string(),
        )],
    );

    assert_eq!(outside.status, 422, "{}", outside.body);
    assert!(
        details(&outside).contains("not in server.egress.allow"),
        "{}",
        details(&outside)
    );
    assert_eq!(inside.status, 201, "{}", inside.body);
    let (settings, _) = bad.expect("loads");
    let report = settings.validate(&synopticon_actors::session::templates::TemplateStore::new());
    let errors = report.errors.join("\n");
    assert!(
        errors.contains("server.egress.deny[0]") && errors.contains("server.egress.deny[1]"),
        "{errors}"
    );
}

#[tokio::test]
async fn stream_errors_are_for_admins_only() {
    // A stream at a refused address: the error says so, to the admin only (the kind of
    // error says whether a port answered, which is how a network is mapped).
    let app = spawn_app_with(|s| {
        production(s);
        s.auth.enabled = Switch::On;
        s.server.egress.deny = vec!["127.0.0.0/8".into()];
        // A stream source needs a model by name; this one never loads, which is all the
        // test needs: the capture runs and fails.
        s.inference.runtime_path = "/nonexistent/libonnxruntime.so".into();
        s.inference.models = vec![ModelConfig::new(
            "face",
            ModelKind::Centerface,
            "/nonexistent/face.onnx",
        )];
        s.inference.default_model = "face".into();
    })
    .await;
    let (admin, operator) = (app.with_token(ADMIN), app.with_token(OPERATOR));
    let created = operator
        .post(
            "/api/v1/sources",
            &json!({"id": "probe", "kind": "stream", "url": "rtsp://2130706433:1/x"}),
        )
        .await;
    let seen_by_admin = wait_until("the capture error", DEADLINE, || async {
        let s = admin.get("/api/v1/sources/probe").await.body;
        s["last_error"].is_string().then_some(s)
    })
    .await;
    let seen_by_operator = operator.get("/api/v1/sources/probe").await.body;
    let listed = operator.get("/api/v1/sources").await.body;
    let health = operator.get("/api/health").await.body;

    assert_eq!(created.status, 201, "{}", created.body);
    let error = seen_by_admin["last_error"].as_str().unwrap();
    assert!(
        error.contains("egress policy refuses 127.0.0.1:1"),
        "{error}"
    );
    let hidden = synopticon::routes::sources::HIDDEN_SOURCE_ERROR;
    assert_eq!(seen_by_operator["last_error"], hidden, "{seen_by_operator}");
    assert_eq!(listed["sources"][0]["last_error"], hidden, "{listed}");
    let in_health = &health["components"]["sources"]["sources"]["probe"]["last_error"];
    assert_eq!(in_health, hidden, "{health}");
}

#[tokio::test]
async fn an_input_the_egress_policy_refuses_is_refused_when_it_is_put() {
    let app = spawn_app_with(production).await.with_token(ADMIN);
    for (name, body, needle) in [
        (
            "meta-redis",
            json!({"kind": "redis_stream", "url": "redis://169.254.169.254:6379"}),
            "169.254.169.254:6379",
        ),
        (
            "meta-mqtt",
            json!({"kind": "mqtt", "broker": "mqtt://[::ffff:169.254.169.254]", "topic": "d/#"}),
            "169.254.169.254:1883",
        ),
        (
            "link-local",
            json!({"kind": "mqtt", "broker": "mqtt://[fe80::1]", "topic": "d/#"}),
            "[fe80::1]:1883",
        ),
    ] {
        let answer = app.put(&format!("/api/v1/inputs/{name}"), &body).await;
        assert_eq!(answer.status, 422, "{name}: {}", answer.body);
        let text = details(&answer);
        assert!(
            text.contains("egress policy refuses") && text.contains(needle),
            "{name}: {text}"
        );
    }
    let inputs = app.get("/api/v1/inputs").await.body;
    assert_eq!(inputs["inputs"], json!([]), "none was started: {inputs}");
    // An IPv6 broker without a port takes the scheme's: allowed here, so it is put.
    let v6 = app
        .put(
            "/api/v1/inputs/v6",
            &json!({"kind": "mqtt", "broker": "mqtt://[fd00::1]", "topic": "d/#"}),
        )
        .await;
    assert_eq!(v6.status, 201, "{}", v6.body);
    assert_eq!(
        v6.body["config"]["broker"], "mqtt://[fd00::1]",
        "{}",
        v6.body
    );
}
