//! The real binary: port 0 is logged, SIGTERM closes sessions and exits 0.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::helpers::*;

#[tokio::test]
async fn sigterm_closes_sessions_and_exits_cleanly() {
    let mut server = ServerProcess::start(
        "[server]\nport = 0\n[log]\nlevel = \"info\"\n[[sessions.declared]]\nid = \"lab\"\n",
    );
    let app = &server.app;
    let mut ws = app.ws("lab", "").await;
    let mut sse = app.sse("lab", "", None).await;
    app.publish("lab", batch("before_shutdown", 2)).await;
    assert_eq!(ws.events(2).await.len(), 2);
    assert_eq!(sse.events(2).await.len(), 2);

    let sent = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    assert_eq!(ws.closed().await, (1001, "server_shutdown".to_string()));
    assert!(sse.next().await.is_none(), "SSE stream ends");
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            sent.elapsed() < DEADLINE,
            "the server did not exit within {DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
}
