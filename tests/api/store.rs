//! The store with real engines and real restarts: the binary stopped with SIGTERM and with
//! SIGKILL and started again on the same SQLite file or PostgreSQL database, and a
//! PostgreSQL that goes away while events flow.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use synopticon::auth::tokens::hash_hex;

use crate::helpers::*;
use crate::mqtt::{Subscriber, SHARED_BROKER};

/// The PostgreSQL role `make test` makes (scripts/test-services.sh).
const POSTGRES: &str = "postgres://synopticon:synopticon@127.0.0.1:5432";
const ADMIN: &str = "syn_store-admin-0000000000000000000000000000000000";

/// The server of `make test`, or the one named by `SYNOPTICON_TEST_POSTGRES`.
fn postgres_server() -> String {
    std::env::var("SYNOPTICON_TEST_POSTGRES").unwrap_or_else(|_| POSTGRES.to_string())
}

fn psql(url: &str, sql: &str) {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .expect("psql is installed (make test installs postgresql)");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A store of a test's own: an SQLite file in a fresh folder, or a fresh PostgreSQL
/// database (dropped at the end).
pub(crate) enum TestStore {
    Sqlite(PathBuf),
    Postgres(String),
}

impl TestStore {
    pub(crate) fn sqlite() -> TestStore {
        let dir = std::env::temp_dir().join(format!("synopticon-store-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        TestStore::Sqlite(dir)
    }

    pub(crate) fn postgres() -> TestStore {
        let name = format!("synopticon_test_{}", uuid::Uuid::new_v4().simple());
        psql(
            &format!("{}/postgres", postgres_server()),
            &format!("CREATE DATABASE {name}"),
        );
        TestStore::Postgres(name)
    }

    pub(crate) fn url(&self) -> String {
        match self {
            TestStore::Sqlite(dir) => format!("sqlite://{}/synopticon.db", dir.display()),
            TestStore::Postgres(name) => format!("{}/{name}", postgres_server()),
        }
    }

    /// The `[store]` section of a server configuration.
    pub(crate) fn config(&self) -> String {
        // PostgreSQL needs its key given (several instances share one); SQLite makes one.
        let key = match self {
            TestStore::Sqlite(_) => String::new(),
            TestStore::Postgres(_) => "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into(),
        };
        format!(
            "[store]\nurl = \"{}\"\nsecret_key = \"{key}\"\n",
            self.url()
        )
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        match self {
            TestStore::Sqlite(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            TestStore::Postgres(name) => {
                let _ = Command::new("psql")
                    .args([
                        &format!("{}/postgres", postgres_server()),
                        "-q",
                        "-c",
                        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                    ])
                    .output();
            }
        }
    }
}

/// A production server on `store` with one admin token.
fn server_on(store: &TestStore) -> ServerProcess {
    ServerProcess::start(&format!(
        "[server]\nport = 0\nmode = \"production\"\n[[auth.tokens]]\nid = \"admin\"\nrole = \"admin\"\n\
         sha256 = \"{}\"\n{}",
        hash_hex(ADMIN),
        store.config()
    ))
}

/// Stops a server process with `signal` (`-TERM`, `-KILL`) and waits until it is gone.
pub(crate) fn stop(server: &mut ServerProcess, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &server.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = std::time::Instant::now() + DEADLINE;
    while server.child.try_wait().expect("wait").is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Posts one event and returns its sequence number.
async fn publish_one(app: &TestApp, session: &str, name: &str) -> u64 {
    let routed = app
        .publish(session, json!({"event": name, "data": {}}))
        .await;
    routed["events"][0]["seq"].as_u64().expect("a seq")
}

async fn keeps_everything_across_sigterm_and_sigkill(store: TestStore) {
    let session = format!("kept-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let sub = Subscriber::start(SHARED_BROKER, &format!("synopticon/{session}/#")).await;
    let mut server = server_on(&store);
    let admin = server.app.with_token(ADMIN);

    // Everything a user makes over REST.
    let template = admin
        .put("/api/v1/templates/kept-tpl", &json!({"description": "kept",
            "enabledDistributors": ["websocket", "mqtt"],
            "distributors": {"mqtt": {"broker": format!("mqtt://lab:pw-in-clear@127.0.0.1:{SHARED_BROKER}"),
                "reconnectDelayMs": 100}}}))
        .await;
    assert_eq!(template.status, 201, "{}", template.body);
    admin
        .create_session(json!({"id": session, "template": "kept-tpl",
            "eventRouting": {"*": ["websocket", "mqtt"]}}))
        .await;
    let token = admin
        .post(
            "/api/v1/tokens",
            &json!({"id": "kept-viewer", "role": "viewer"}),
        )
        .await;
    assert_eq!(token.status, 201, "{}", token.body);
    let viewer = token.body["token"].as_str().expect("secret").to_string();
    let source = admin
        .post(
            "/api/v1/sources",
            &json!({"id": "kept-cam", "kind": "external"}),
        )
        .await;
    assert_eq!(source.status, 201, "{}", source.body);
    let device = admin
        .post(
            "/api/v1/devices",
            &json!({"id": "kept-drone", "serial": "KEPT-1", "kind": "drone",
                "stream_url": "external", "stream_on": true,
                "metadata": {"api_token": "device-secret-in-clear"}}),
        )
        .await;
    assert_eq!(device.status, 201, "{}", device.body);
    let mut seen = Vec::new();
    let mut ws = server.app.with_token(&viewer).ws(&session, "").await;
    for i in 0..3 {
        seen.push(publish_one(&admin, &session, &format!("before_{i}")).await);
    }
    let frames = ws.events(3).await;
    assert_eq!(
        frames
            .iter()
            .map(|f| f["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        seen
    );

    for signal in ["-TERM", "-KILL"] {
        stop(&mut server, signal);
        server = server_on(&store);
        let admin = server.app.with_token(ADMIN);
        let status = admin.status(&session).await;
        let kinds: Vec<&str> = status["distributors"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|d| d["kind"].as_str())
            .collect();
        assert_eq!(kinds, ["websocket", "mqtt"], "{signal}: {status}");
        assert_eq!(status["config"]["template"], "kept-tpl");
        // Kept sealed, answered redacted, used in clear (the broker took the connection).
        assert_eq!(
            status["config"]["distributors"]["mqtt"]["broker"],
            format!("mqtt://lab:***redacted***@127.0.0.1:{SHARED_BROKER}")
        );
        assert_eq!(
            admin.get("/api/v1/templates/kept-tpl").await.status,
            200,
            "{signal}"
        );
        assert_eq!(
            admin.get("/api/v1/sources/kept-cam").await.status,
            200,
            "{signal}"
        );
        let device = admin.get("/api/v1/devices/sn/KEPT-1").await;
        assert_eq!(device.status, 200, "{signal}: {}", device.body);
        assert_eq!(device.body["kind"], "drone");
        assert_eq!(
            device.body["metadata"]["api_token"], "***redacted***",
            "{signal}"
        );
        // Its source runs again (an external one takes detections at once).
        let source = admin.get("/api/v1/sources/device-kept-drone").await;
        assert_eq!(source.status, 200, "{signal}: {}", source.body);
        assert_eq!(source.body["device"], "KEPT-1");
        let as_viewer = server.app.with_token(&viewer);
        assert_eq!(
            as_viewer.get("/api/v1/sessions").await.status,
            200,
            "{signal}: the token"
        );
        let mut ws = as_viewer.ws(&session, "").await;
        let seq = publish_one(&admin, &session, "after").await;
        let frame = ws.next_event().await.expect("a frame after the restart");
        assert_eq!(frame["seq"], seq);
        assert!(
            seen.iter().all(|s| *s < seq),
            "{signal}: seq {seq} after {seen:?}"
        );
        seen.push(seq);
        // The MQTT distributor reconnected: the event reaches the broker's subscriber.
        wait_until(
            "the event over MQTT after the restart",
            DEADLINE,
            || async {
                sub.events()
                    .iter()
                    .any(|m| m.payload["seq"].as_u64() == Some(seq))
                    .then_some(())
            },
        )
        .await;
    }
    // No secret reached the database.
    if let TestStore::Sqlite(dir) = &store {
        let mut bytes = std::fs::read(dir.join("synopticon.db")).unwrap_or_default();
        bytes.extend(std::fs::read(dir.join("synopticon.db-wal")).unwrap_or_default());
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("pw-in-clear"));
        assert!(!text.contains("device-secret-in-clear"));
    }
}

#[tokio::test]
async fn sqlite_keeps_everything_across_sigterm_and_sigkill() {
    keeps_everything_across_sigterm_and_sigkill(TestStore::sqlite()).await;
}

#[tokio::test]
async fn postgres_keeps_everything_across_sigterm_and_sigkill() {
    keeps_everything_across_sigterm_and_sigkill(TestStore::postgres()).await;
}

/// A PostgreSQL server of the test's own, so it can be stopped and started.
struct PrivatePostgres {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
}

impl PrivatePostgres {
    fn start() -> PrivatePostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("postgresql is installed (make test installs it)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .find(|b| b.join("initdb").is_file())
            .expect("initdb");
        let dir = std::env::temp_dir().join(format!("synopticon-pg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = PrivatePostgres { dir, port, bin };
        // PostgreSQL refuses to run as root: as root, it runs as the postgres user.
        Command::new("chown")
            .args(["-R", "postgres", &pg.dir.display().to_string()])
            .status()
            .ok();
        pg.run(
            "initdb",
            &["-D", &pg.data(), "-A", "trust", "-U", "postgres"],
        );
        pg.ctl("start");
        pg
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let program = self.bin.join(tool).display().to_string();
        // SAFETY: geteuid only reads the process's user id.
        let as_root = unsafe { libc::geteuid() } == 0;
        let mut command = if as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", &program]);
            c
        } else {
            Command::new(&program)
        };
        let out = command.args(args).output().expect(tool);
        assert!(
            out.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn ctl(&self, action: &str) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log").display().to_string();
        match action {
            "start" => self.run(
                "pg_ctl",
                &[
                    "-D",
                    &self.data(),
                    "-o",
                    &options,
                    "-l",
                    &log,
                    "-w",
                    "start",
                ],
            ),
            _ => self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]),
        }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| self.ctl("stop"));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn a_database_that_goes_away_stops_writes_but_not_events() {
    let pg = PrivatePostgres::start();
    let server = ServerProcess::start(&format!(
        "[server]\nport = 0\n[store]\nurl = \"{}\"\nsecret_key = \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"\n",
        pg.url()
    ));
    let app = &server.app;
    app.create_session(json!({"id": "flowing"})).await;
    let mut ws = app.ws("flowing", "").await;

    pg.ctl("stop");
    app.publish("flowing", batch("while_down", 5)).await;
    let live = ws.events(5).await;
    let refused = app
        .post("/api/v1/sessions", &json!({"id": "new-while-down"}))
        .await;
    let template = app
        .put(
            "/api/v1/templates/while-down",
            &json!({"enabledDistributors": ["sse"]}),
        )
        .await;
    let listed = app.get("/api/v1/sessions").await;

    pg.ctl("start");
    let created = wait_until("writes to work again", DEADLINE, || async {
        let r = app
            .post("/api/v1/sessions", &json!({"id": "new-after"}))
            .await;
        (r.status == 201).then_some(r)
    })
    .await;
    app.publish("flowing", batch("after", 1)).await;
    let after = ws.events(1).await;

    assert_eq!(live.len(), 5, "events flowed while the database was down");
    assert_eq!(refused.status, 503, "{}", refused.body);
    let error = refused.body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("store") && error.contains("unavailable"),
        "{error}"
    );
    assert_eq!(template.status, 503, "{}", template.body);
    // Nothing half-made: the refused session does not exist, the template neither.
    let ids: Vec<&str> = listed.body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert_eq!(ids, ["flowing", "system"], "{}", listed.body);
    assert_eq!(app.get("/api/v1/templates/while-down").await.status, 404);
    assert_eq!(created.body["id"], "new-after");
    assert_eq!(after[0]["seq"], 6);
}

/// Runs `synopticon ARGS --config` with `config` in a file of its own; exit status and
/// stderr.
fn cli(config: &str, args: &[&str]) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("synopticon-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("config.toml");
    std::fs::write(&file, config).expect("config");
    let out = Command::new(env!("CARGO_BIN_EXE_synopticon"))
        .args(args)
        .arg("--config")
        .arg(&file)
        .env_remove("SYNOPTICON_CONFIG")
        .output()
        .expect("the binary runs");
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_backup_moves_a_server_from_sqlite_to_postgres() {
    let from = TestStore::sqlite();
    let mut server = server_on(&from);
    let admin = server.app.with_token(ADMIN);
    let template = admin
        .put("/api/v1/templates/moved-tpl", &json!({"enabledDistributors": ["mqtt"],
            "distributors": {"mqtt": {"broker": format!("mqtt://lab:pw-in-clear@127.0.0.1:{SHARED_BROKER}")}}}))
        .await;
    assert_eq!(template.status, 201, "{}", template.body);
    admin
        .create_session(json!({"id": "moved", "template": "moved-tpl"}))
        .await;
    let token = admin
        .post(
            "/api/v1/tokens",
            &json!({"id": "moved-viewer", "role": "viewer"}),
        )
        .await;
    let viewer = token.body["token"].as_str().expect("secret").to_string();
    let seq = publish_one(&admin, "moved", "before").await;

    // Taken while the server runs.
    let TestStore::Sqlite(dir) = &from else {
        unreachable!()
    };
    let backup = dir.join("backup.json");
    let backup_arg = backup.display().to_string();
    let (ok, said) = cli(&from.config(), &["backup", &backup_arg]);
    assert!(ok, "{said}");
    assert!(said.contains("record(s)"), "{said}");
    let text = std::fs::read_to_string(&backup).expect("the backup");
    let dump: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(dump["format"], "synopticon-store");
    let mut kinds: Vec<&str> = dump["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["kind"].as_str())
        .collect();
    kinds.sort();
    // The session made over REST and the built-in system session.
    assert_eq!(kinds, ["session", "session", "template", "token"], "{text}");
    assert!(!text.contains("pw-in-clear"), "secrets stay sealed");
    let (ok, said) = cli(&from.config(), &["backup", &backup_arg]);
    assert!(!ok && said.contains("exists"), "{said}");
    stop(&mut server, "-TERM");

    // Into PostgreSQL, with the SQLite server's key; not twice, not with another key.
    let to = TestStore::postgres();
    let key_file = dir.join("secret.key").display().to_string();
    let to_config = format!(
        "[store]\nurl = \"{}\"\nkey_file = \"{key_file}\"\n",
        to.url()
    );
    let other = TestStore::sqlite();
    let (ok, said) = cli(&other.config(), &["restore", &backup_arg]);
    assert!(!ok && said.contains("another key"), "{said}");
    let (ok, said) = cli(&to_config, &["restore", &backup_arg]);
    assert!(ok, "{said}");
    assert!(said.contains("4 record(s) restored"), "{said}");
    let (ok, said) = cli(&to_config, &["restore", &backup_arg]);
    assert!(!ok && said.contains("not empty"), "{said}");

    let moved = ServerProcess::start(&format!(
        "[server]\nport = 0\nmode = \"production\"\n[[auth.tokens]]\nid = \"admin\"\nrole = \"admin\"\n\
         sha256 = \"{}\"\n{to_config}",
        hash_hex(ADMIN)
    ));
    let admin = moved.app.with_token(ADMIN);
    let status = admin.status("moved").await;
    assert_eq!(status["config"]["template"], "moved-tpl");
    assert_eq!(status["distributors"][0]["kind"], "mqtt");
    assert_eq!(
        status["config"]["distributors"]["mqtt"]["broker"],
        format!("mqtt://lab:***redacted***@127.0.0.1:{SHARED_BROKER}")
    );
    assert_eq!(admin.get("/api/v1/templates/moved-tpl").await.status, 200);
    let as_viewer = moved.app.with_token(&viewer);
    assert_eq!(as_viewer.get("/api/v1/sessions/moved").await.status, 200);
    let sub = Subscriber::start(SHARED_BROKER, "synopticon/moved/#").await;
    let next = publish_one(&admin, "moved", "after").await;
    assert!(next > seq, "seq {next} continues after {seq}");
    wait_until(
        "the event over MQTT on the moved server",
        DEADLINE,
        || async {
            sub.events()
                .iter()
                .any(|m| m.payload["seq"].as_u64() == Some(next))
                .then_some(())
        },
    )
    .await;
}

#[test]
fn a_damaged_store_stops_start_up_naming_the_file_and_the_fix() {
    let store = TestStore::sqlite();
    let TestStore::Sqlite(dir) = &store else {
        unreachable!()
    };
    let file = dir.join("synopticon.db");
    std::fs::write(&file, "this is not an SQLite database\n".repeat(300)).expect("garbage");
    let config = dir.join("config.toml");
    std::fs::write(&config, format!("[server]\nport = 0\n{}", store.config())).expect("config");
    // `timeout`: a server that started anyway is stopped instead of hanging the test.
    let out = Command::new("timeout")
        .arg("60")
        .arg(env!("CARGO_BIN_EXE_synopticon"))
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("SYNOPTICON_CONFIG")
        .output()
        .expect("the binary runs");
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains(&file.display().to_string()), "{said}");
    assert!(
        said.contains("not a readable SQLite database") && said.contains("synopticon restore"),
        "{said}"
    );
}

#[tokio::test]
async fn kept_line_and_zone_ids_from_before_the_id_rule_are_renamed_and_start() {
    // A source and a device kept by a version that took any id: made now, then their kept
    // records given such ids through a backup, as an old server's backup would hold them.
    let from = TestStore::sqlite();
    let mut server = server_on(&from);
    let admin = server.app.with_token(ADMIN);
    let source = admin
        .post(
            "/api/v1/sources",
            &json!({"id": "old-cam", "kind": "external",
                "lines": [{"id": "door", "points": [[0, "50%"], ["100%", "50%"]]}],
                "zones": [{"id": "desk", "points": [[0, 0], [10, 0], [10, 10]]}]}),
        )
        .await;
    assert_eq!(source.status, 201, "{}", source.body);
    let device = admin
        .post(
            "/api/v1/devices",
            &json!({"id": "old-dev", "serial": "OLD-1", "stream_url": "external", "stream_on": true,
                "source": {"lines": [{"id": "gate", "points": [[0, 5], [9, 5]]}]}}),
        )
        .await;
    assert_eq!(device.status, 201, "{}", device.body);
    let TestStore::Sqlite(dir) = &from else {
        unreachable!()
    };
    let backup = dir.join("backup.json");
    let (ok, said) = cli(&from.config(), &["backup", &backup.display().to_string()]);
    assert!(ok, "{said}");
    stop(&mut server, "-TERM");
    let old = std::fs::read_to_string(&backup)
        .expect("the backup")
        .replace(r#"\"id\":\"door\""#, r#"\"id\":\"Door A\""#)
        .replace(r#"\"id\":\"desk\""#, r#"\"id\":\"<b>desk</b>\""#)
        .replace(r#"\"id\":\"gate\""#, r#"\"id\":\"Gate 1\""#);
    assert!(
        old.contains("Door A") && old.contains("Gate 1"),
        "the backup was edited"
    );
    std::fs::write(&backup, old).expect("the old backup");
    let to = TestStore::sqlite();
    let TestStore::Sqlite(to_dir) = &to else {
        unreachable!()
    };
    let key_file = dir.join("secret.key").display().to_string();
    let to_config = format!(
        "[store]\nurl = \"sqlite://{}/store.db\"\nkey_file = \"{key_file}\"\n",
        to_dir.display()
    );
    let (ok, said) = cli(&to_config, &["restore", &backup.display().to_string()]);
    assert!(ok, "{said}");

    // They start, with ids that follow the rule, and keep them.
    for round in 0..2 {
        let mut restored = ServerProcess::start(&format!(
            "[server]\nport = 0\nmode = \"production\"\n[[auth.tokens]]\nid = \"admin\"\nrole = \"admin\"\n\
             sha256 = \"{}\"\n{to_config}",
            hash_hex(ADMIN)
        ));
        let admin = restored.app.with_token(ADMIN);
        let source = admin.get("/api/v1/sources/old-cam").await;
        assert_eq!(source.status, 200, "round {round}: {}", source.body);
        assert_eq!(source.body["state"], "running", "{}", source.body);
        assert_eq!(
            source.body["config"]["lines"][0]["id"], "Door_A",
            "{}",
            source.body
        );
        assert_eq!(source.body["config"]["zones"][0]["id"], "id-_b_desk__b_");
        let device_source = admin.get("/api/v1/sources/device-old-dev").await;
        assert_eq!(device_source.status, 200, "{}", device_source.body);
        assert_eq!(device_source.body["config"]["lines"][0]["id"], "Gate_1");
        let device = admin.get("/api/v1/devices/old-dev").await;
        assert_eq!(
            device.body["source"]["lines"][0]["id"], "Gate_1",
            "{}",
            device.body
        );
        stop(&mut restored, "-TERM");
    }
}
