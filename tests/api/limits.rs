//! Hardening against an operator (or an attacker with an operator token) who asks for too
//! much: sizes above the server's ceilings, floods of large events, slow request bodies.

use serde_json::{json, Value};

use crate::helpers::*;

const MIB: u64 = 1 << 20;

#[tokio::test]
async fn a_history_flood_stays_within_the_memory_budget_and_memory_returns_after_close() {
    let budget = 64 * MIB;
    let server = ServerProcess::start(&format!(
        "[server]\nport = 0\n[sessions]\nmemory_budget_bytes = {budget}\n"
    ));
    let app = &server.app;

    // The reported attack asked for a million events of history: above the ceiling.
    let refused = app
        .post(
            "/api/v1/sessions",
            &json!({"id": "flood", "distributors": {"sse": {"historySize": 1_000_000,
                "queueCapacity": 2_000_000, "clientQueueCapacity": 1_000_000, "maxClients": 100_000}}}),
        )
        .await;
    app.create_session(json!({"id": "flood", "distributors": {"sse": {"historySize": 100_000}}}))
        .await;
    let before = server.rss_kib();
    // 100 KB events, ten to a request: 400 MB in all, six times the budget.
    let big = "x".repeat(100_000);
    let body = Value::Array(
        (0..10)
            .map(|i| json!({"event": "frame", "data": {"i": i, "blob": big}}))
            .collect(),
    );
    let mut peak = before;
    for _ in 0..400 {
        app.publish("flood", body.clone()).await;
        peak = peak.max(server.rss_kib());
    }
    let sse = app.distributor("flood", "sse").await;
    let health = app.get("/api/health").await.body;
    let metrics = app.metrics().await;
    let resumed = app
        .request(reqwest::Method::GET, "/api/v1/sessions/flood/sse")
        .header("Last-Event-ID", "1")
        .send()
        .await
        .expect("sse");
    let mut first = String::new();
    {
        use futures_util::StreamExt;
        let mut stream = resumed.bytes_stream();
        while !first.contains("\n\n") {
            let chunk = tokio::time::timeout(DEADLINE, stream.next())
                .await
                .expect("the resumed stream starts")
                .expect("a chunk")
                .expect("bytes");
            first.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    let closed = app.delete("/api/v1/sessions/flood").await;
    let after_close = wait_until("memory to go back down", DEADLINE, || async {
        let rss = server.rss_kib();
        (rss < before + 32 * 1024).then_some(rss)
    })
    .await;
    let health_after = app.get("/api/health").await.body;

    assert_eq!(refused.status, 422, "{}", refused.body);
    let details = refused.body["details"].to_string();
    for (field, setting) in [
        ("historySize: 1000000", "sessions.max_history_size"),
        ("queueCapacity: 2000000", "sessions.max_queue_capacity"),
        (
            "clientQueueCapacity: 1000000",
            "sessions.max_client_queue_capacity",
        ),
        ("maxClients: 100000", "sessions.max_clients"),
    ] {
        assert!(
            details.contains(field) && details.contains(setting),
            "{field}: {details}"
        );
    }
    let grown_mib = (peak - before) / 1024;
    eprintln!(
        "RSS {} MiB before, {} MiB at the peak, {} MiB after the close; budget {} MiB",
        before / 1024,
        peak / 1024,
        after_close / 1024,
        budget / MIB
    );
    assert!(
        grown_mib < budget / MIB + 64,
        "RSS grew {grown_mib} MiB with a budget of {} MiB",
        budget / MIB
    );
    assert!(sse["budget_evictions"].as_u64().unwrap() > 3000, "{sse}");
    assert!(sse["held_bytes"].as_u64().unwrap() <= budget, "{sse}");
    let memory = &health["components"]["memory"];
    assert_eq!(memory["status"], "degraded", "{health}");
    assert!(memory["used_bytes"].as_u64().unwrap() <= budget, "{health}");
    assert!(
        memory["evicted_entries"].as_u64().unwrap() > 3000,
        "{health}"
    );
    let evicted = metric_value(
        &metrics,
        "synopticon_memory_budget_evictions_total{session=\"flood\",distributor=\"sse\",holder=\"history\"}",
    );
    assert!(evicted.unwrap_or_default() > 3000.0, "{evicted:?}");
    assert_eq!(
        metric_value(&metrics, "synopticon_memory_budget_bytes{state=\"limit\"}"),
        Some(budget as f64)
    );
    // A client resuming from the start is told what the budget took.
    assert!(first.contains("are no longer retained"), "{first}");
    assert_eq!(closed.status, 200);
    assert_eq!(
        health_after["components"]["memory"]["used_bytes"], 0,
        "{health_after}"
    );
}

const ADMIN: &str = "syn_limits-admin-000000000000000000000000000000000";
const OPERATOR: &str = "syn_limits-operator-0000000000000000000000000000000";

/// Opens a connection from `source` (a loopback address) and starts a POST that announces
/// a megabyte (or a chunked body) and sends one byte of it.
async fn slow_post(port: u16, source: &str, chunked: bool) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{source}:0").parse().expect("address"))
        .expect("bind the source address");
    let mut stream = tokio::time::timeout(DEADLINE, socket.connect(([127, 0, 0, 1], port).into()))
        .await
        .expect("the server accepts connections in time")
        .expect("connect");
    let framing = if chunked {
        "Transfer-Encoding: chunked\r\n\r\n1\r\n[\r\n"
    } else {
        "Content-Length: 1000000\r\n\r\n["
    };
    let head = format!(
        "POST /api/v1/sessions/lab/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {OPERATOR}\r\n\
         Content-Type: application/json\r\n{framing}"
    );
    tokio::time::timeout(DEADLINE, stream.write_all(head.as_bytes()))
        .await
        .expect("written in time")
        .expect("write");
    stream
}

/// The status code the server answered on `stream`, or 0 if it closed without one.
async fn status_of(mut stream: tokio::net::TcpStream) -> u16 {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 64];
    match tokio::time::timeout(DEADLINE, stream.read(&mut buf)).await {
        Ok(Ok(n)) if n >= 12 => String::from_utf8_lossy(&buf[9..12]).parse().unwrap_or(0),
        Ok(_) => 0,
        Err(_) => panic!("a slow request was held past the deadline"),
    }
}

#[tokio::test]
async fn slow_bodies_cannot_take_the_server_away_from_an_admin() {
    let hash = synopticon::auth::tokens::hash_hex;
    // A small descriptor table: 300 held connections would exhaust it without the limits.
    let server = ServerProcess::start_with(
        &format!(
            "[server]\nport = 0\nmode = \"production\"\nworkers = 1\nbody_timeout_ms = 3000\n\
             [rate_limit]\nrequests_per_sec = 10000.0\nrequest_burst = 10000.0\n\
             address_requests_per_sec = 10000.0\naddress_request_burst = 10000.0\n\
             [[auth.tokens]]\nid = \"admin\"\nrole = \"admin\"\nsha256 = \"{}\"\n\
             [[auth.tokens]]\nid = \"operator\"\nrole = \"operator\"\nsha256 = \"{}\"\n",
            hash(ADMIN),
            hash(OPERATOR)
        ),
        |command| {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe and only touches the child.
            unsafe {
                command.pre_exec(|| {
                    let limit = libc::rlimit {
                        rlim_cur: 160,
                        rlim_max: 160,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        },
    );
    let admin = server.app.with_token(ADMIN);
    admin.create_session(json!({"id": "lab"})).await;

    // The attacker, on another loopback address with the operator token.
    let mut held = Vec::new();
    for i in 0..300 {
        held.push(slow_post(server.app.port, "127.0.0.2", i % 2 == 1).await);
    }
    let started = std::time::Instant::now();
    let served = admin.get("/api/v1/sessions").await;
    let admin_wait = started.elapsed();
    let statuses = futures_util::future::join_all(held.into_iter().map(status_of)).await;
    let metrics = admin.metrics().await;
    let after = admin.get("/api/v1/sessions/lab").await;

    eprintln!("the admin was served in {admin_wait:?} while 300 slow bodies were pending");
    assert_eq!(served.status, 200, "{}", served.body);
    let count = |code: u16| statuses.iter().filter(|s| **s == code).count();
    // The token's 32 places were taken and timed out (408); every other attempt was
    // refused at once (429). None was held for ever.
    assert_eq!(count(408), 32, "{statuses:?}");
    assert_eq!(count(429), 268, "{statuses:?}");
    let refused = metric_value(
        &metrics,
        "synopticon_http_inflight_refused_total{by=\"token\"}",
    );
    assert_eq!(refused, Some(268.0));
    assert_eq!(
        metric_value(&metrics, "synopticon_http_body_timeouts_total"),
        Some(32.0)
    );
    assert_eq!(
        after.body["events_received"], 0,
        "no half-sent event was accepted"
    );
}
