//! The real binary: port 0 is logged, SIGTERM closes sessions and exits 0.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn sigterm_closes_sessions_and_exits_cleanly() {
    synopticon_actors::distributor::http::install_crypto_provider();
    let dir = std::env::temp_dir().join(format!("synopticon-shutdown-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        "[server]\nport = 0\n[log]\nlevel = \"info\"\n[[sessions.declared]]\nid = \"lab\"\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_synopticon"))
        .args(["serve", "--config"])
        .arg(&config)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let port: u16 = loop {
        let line = rx
            .recv_timeout(DEADLINE)
            .expect("the server logs its address");
        if let Some(rest) = line.split("listening on http://127.0.0.1:").nth(1) {
            break rest
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap();
        }
    };
    let app = TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        client: reqwest::Client::new(),
        token: None,
    };
    let mut ws = app.ws("lab", "").await;
    let mut sse = app.sse("lab", "", None).await;
    app.publish("lab", batch("before_shutdown", 2)).await;
    assert_eq!(ws.events(2).await.len(), 2);
    assert_eq!(sse.events(2).await.len(), 2);

    let sent = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    assert_eq!(ws.closed().await, (1001, "server_shutdown".to_string()));
    assert!(sse.next().await.is_none(), "SSE stream ends");
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            sent.elapsed() < DEADLINE,
            "the server did not exit within {DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
    let _ = std::fs::remove_dir_all(dir);
    let _ = json!({});
}
