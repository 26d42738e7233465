//! `/api/health`, `/api/config`, `/api/runtime` and `check-config`.

use std::process::Command;

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn health_reports_each_component() {
    let app = spawn_app().await;
    app.create_session(json!({"id": "h1"})).await;

    let health = app.get("/api/health").await;

    assert_eq!(health.status, 200);
    assert_eq!(health.body["status"], "ok");
    // With the built-in system session.
    assert_eq!(health.body["components"]["registry"]["sessions_open"], 2);
    for component in ["http", "registry", "sessions", "metrics"] {
        assert_eq!(
            health.body["components"][component]["status"], "ok",
            "{component}"
        );
    }
}

#[tokio::test]
async fn config_and_runtime_describe_the_server() {
    let app = spawn_app_with(|s| s.sessions.max_sessions = 7).await;

    let config = app.get("/api/config").await;
    let runtime = app.get("/api/runtime").await;

    assert_eq!(config.status, 200);
    assert_eq!(config.body["sessions"]["max_sessions"], 7);
    assert_eq!(config.body["server"]["port"], 0);
    assert_eq!(runtime.body["version"], env!("CARGO_PKG_VERSION"));
    assert!(runtime.body["uptime_secs"].as_f64().unwrap() >= 0.0);
    let vars = runtime.body["environmentVariables"].as_array().unwrap();
    let port = vars
        .iter()
        .find(|v| v["name"] == "SYNOPTICON__SERVER__PORT")
        .expect("port variable listed");
    assert_eq!(port["key"], "server.port");
    assert!(vars.iter().any(|v| v["name"] == "SYNOPTICON_CONFIG"));
}

fn check_config(contents: &str) -> (i32, String) {
    let dir = std::env::temp_dir().join(format!("synopticon-check-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("config.toml");
    std::fs::write(&file, contents).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_synopticon"))
        .arg("check-config")
        .arg(&file)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(dir);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn check_config_accepts_the_example() {
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.toml"))
            .unwrap();

    let (code, out) = check_config(&example);

    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 error(s)"), "{out}");
}

#[test]
fn check_config_prints_every_error() {
    let (code, out) = check_config(
        r#"
[live]
heartbeat_interval_ms = 10000
client_timeout_ms = 5000
[log]
format = "xml"
[sessions]
default_template = "nope"
[[sessions.declared]]
id = "a"
enabledDistributors = ["fax"]
"#,
    );

    assert_eq!(code, 1, "{out}");
    let errors: Vec<_> = out.lines().filter(|l| l.starts_with("error: ")).collect();
    // The declared session also inherits the missing default template: five in all.
    assert_eq!(errors.len(), 5, "{out}");
    assert!(out.contains("live.client_timeout_ms"));
    assert!(out.contains("log.format"));
    assert!(out.contains("sessions.default_template"));
    assert!(out.contains("sessions.declared[0].enabledDistributors[0]"));
    assert!(out.contains("sessions.declared[0].template"));
}

#[test]
fn check_config_reports_type_errors_by_key() {
    let (code, out) = check_config("[server]\nport = \"eighty\"\n");

    assert_eq!(code, 1);
    assert!(out.contains("server.port"), "{out}");
}

#[test]
fn media_folders_must_be_absolute_and_production_warns_without_them() {
    let (code, out) = check_config("[server]\nmedia_dirs = [\"\", \"videos\"]\n");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("server.media_dirs: \"\" must be an absolute path"),
        "{out}"
    );
    assert!(
        out.contains("server.media_dirs: \"videos\" must be an absolute path"),
        "{out}"
    );

    let (_, out) = check_config("[server]\nmode = \"production\"\n");
    assert!(out.contains("warning: server.media_dirs: empty"), "{out}");
}

#[test]
fn check_config_lists_every_problem_with_the_models() {
    let (code, out) = check_config(
        r#"
[inference]
default_model = "people"
max_batch_images = 0
[[inference.models]]
name = "face"
kind = "centerface"
path = "/nonexistent/centerface.onnx"
confidence = 1.5
[[inference.models]]
name = "face"
kind = "yolov8"
path = "/nonexistent/yolo.onnx"
input_size = [8, 8]
roi = { x1 = 100, y1 = 0, x2 = 50, y2 = 10 }
"#,
    );

    assert_eq!(code, 1, "{out}");
    for needle in [
        "inference.models[0].confidence: 1.5 is not between 0 and 1",
        "inference.models[1].name: \"face\" is used twice",
        "inference.models[1].input_size",
        "inference.models[1].roi",
        "inference.default_model: \"people\" is not among the models",
        "inference.max_batch_images: must be at least 1",
        "warning: inference.models[0].path: /nonexistent/centerface.onnx does not exist",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }

    let (code, out) =
        check_config("[[inference.models]]\nname = \"x\"\nkind = \"resnet\"\npath = \"m.onnx\"\n");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("inference.models[0].kind") && out.contains("resnet"),
        "{out}"
    );
}

#[test]
fn check_config_checks_declared_sources_against_the_models() {
    let (code, out) = check_config(
        r#"
[[sources]]
id = "driveway"
kind = "external"
lines = [{ id = "gate", points = [["50%", 0], ["50%", "100%"]] }]

[[sources]]
id = "garden"
kind = "file"
url = "/videos/garden.mp4"
model = "people"

[[sources]]
id = "door"
kind = "stream"
url = "file:///etc/passwd"
"#,
    );

    assert_eq!(code, 1, "{out}");
    let errors: Vec<_> = out.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 2, "{out}");
    assert!(
        out.contains("sources[1].model: no model named \"people\" (configured: face)"),
        "{out}"
    );
    assert!(out.contains("sources[2].url"), "{out}");
}

#[test]
fn check_config_warns_loudly_when_authentication_is_off_beyond_loopback() {
    let (code, out) = check_config("[server]\nhost = \"0.0.0.0\"\n");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("authentication is OFF") && out.contains("0.0.0.0"),
        "{out}"
    );
    // The same address in production mode, with a token: no such warning.
    let (code, out) = check_config(
        "[server]\nhost = \"0.0.0.0\"\nmode = \"production\"\n[[auth.tokens]]\nid = \"a\"\nrole = \"admin\"\nsha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\n",
    );
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("authentication is OFF"), "{out}");
    let (code, out) = check_config(
        "[server]\nmode = \"staging\"\n[[auth.tokens]]\nid = \"a b\"\nrole = \"root\"\nsha256 = \"xyz\"\n",
    );
    assert_eq!(code, 1, "{out}");
    for needle in [
        "server.mode",
        "auth.tokens[0].id",
        "auth.tokens[0].role",
        "auth.tokens[0].sha256",
    ] {
        assert!(out.contains(needle), "{needle} in {out}");
    }
}

/// The `SYNOPTICON__...` variables `docker-compose.yml` gives the synopticon service.
fn compose_environment() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docker-compose.yml"))
        .expect("docker-compose.yml");
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("SYNOPTICON__"))
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| {
            let v = v.trim();
            let unquoted = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            // `${VAR:?...}` is what the user gives: a hash stands in for it.
            let value = if unquoted.starts_with("${") {
                synopticon::auth::tokens::hash_hex("syn_compose")
            } else {
                unquoted.to_string()
            };
            (k.to_string(), value)
        })
        .collect()
}

/// The `ENV` of the `Dockerfile` (one instruction, continued over lines).
fn dockerfile_environment() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile"))
        .expect("Dockerfile");
    let mut joined = String::new();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("ENV ") {
            inside = true;
            joined.push_str(rest);
        } else if inside {
            joined.push(' ');
            joined.push_str(line);
        } else {
            continue;
        }
        match joined.strip_suffix('\\') {
            Some(cut) => joined = cut.to_string(),
            None => inside = false,
        }
    }
    // NAME=value, the value bare or in single quotes (which may hold spaces).
    let mut out = Vec::new();
    let mut rest = joined.trim();
    while let Some((name, after)) = rest.split_once('=') {
        let (value, next) = match after.strip_prefix('\'') {
            Some(quoted) => quoted.split_once('\'').unwrap_or((quoted, "")),
            None => after.split_once(char::is_whitespace).unwrap_or((after, "")),
        };
        out.push((name.trim().to_string(), value.to_string()));
        rest = next.trim();
    }
    out
}

#[test]
fn the_compose_file_and_the_dockerfile_configure_a_server_that_starts() {
    let compose = compose_environment();
    assert!(
        compose
            .iter()
            .any(|(k, _)| k == "SYNOPTICON__SERVER__ALLOWED_HOSTS"),
        "{compose:?}"
    );
    let (settings, report) =
        synopticon::configuration::Settings::load_with_env(None, compose.clone())
            .expect("it loads");
    assert!(report.is_valid(), "{:?}", report.errors);
    let checked = settings.validate(&synopticon_actors::session::templates::TemplateStore::new());
    assert!(checked.is_valid(), "{:?}", checked.errors);
    assert!(settings.server.production() && settings.auth.metrics_public);
    // Prometheus scrapes the service by its name; a rebinding page's name gets nothing.
    let hosts = synopticon::cors::HostList::new(&settings.allowed_hosts());
    assert!(hosts.allows("synopticon:8080"));
    assert!(hosts.allows("localhost:8080"));
    assert!(!hosts.allows("evil.example:8080"));

    let docker = dockerfile_environment();
    let names: Vec<&str> = docker.iter().map(|(k, _)| k.as_str()).collect();
    assert!(names.contains(&"SYNOPTICON__SERVER__MODE"), "{docker:?}");
    let settings_vars: Vec<(String, String)> = docker
        .into_iter()
        .filter(|(k, _)| k.starts_with("SYNOPTICON__"))
        .collect();
    let (settings, report) =
        synopticon::configuration::Settings::load_with_env(None, settings_vars).expect("it loads");
    assert!(report.is_valid(), "{:?}", report.errors);
    assert!(settings.server.production());
    assert_eq!(settings.server.host, "0.0.0.0");
    assert_eq!(settings.inference.models.len(), 1, "the face model");
}
