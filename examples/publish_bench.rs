//! Producer benchmark: how many events one producer gets into a session, over REST (one
//! event per POST, and batches) and over the live WebSocket (`{"op": "publish", "batch":
//! [...]}`, acknowledged) and over the UDP ingest port, in the same run against the same
//! server; and how fast a recording of a fifth as many events replays into a session at
//! `rate` 0.
//!
//! `cargo run --release --example publish_bench -- [--seconds 3] [--events 1000000] [--batch 1000] [--write-docs]`

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::{create_session, flags, get_json, machine, start_server_with, write_docs};

fn sample(n: u64) -> Value {
    json!({"event": "gaze_sample", "data": {"participant": "P001", "n": n, "x": 0.4183, "y": 0.5721, "pupil": 3.12}})
}

/// One event per POST, one after the other, for `seconds`.
async fn rest_single(client: &reqwest::Client, url: &str, seconds: u64) -> f64 {
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        let r = client
            .post(url)
            .json(&sample(n))
            .send()
            .await
            .expect("POST");
        assert!(r.status().is_success(), "{}", r.status());
        n += 1;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// Batches of `batch` per POST, one after the other, for `seconds`.
async fn rest_batches(client: &reqwest::Client, url: &str, seconds: u64, batch: u64) -> f64 {
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        let body: Vec<Value> = (0..batch).map(|i| sample(n + i)).collect();
        let r = client.post(url).json(&body).send().await.expect("POST");
        assert!(r.status().is_success(), "{}", r.status());
        n += batch;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// `events` in batches of `batch` over one WebSocket, sent without waiting; done when the
/// last acknowledgement arrives.
async fn ws_batches(port: u16, events: u64, batch: u64) -> f64 {
    let url = format!("ws://127.0.0.1:{port}/api/v1/sessions/bench/ws?events=none");
    let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("ws");
    let (mut sink, mut stream) = ws.split();
    let frames = events / batch;
    let started = Instant::now();
    let reader = tokio::spawn(async move {
        let mut accepted = 0u64;
        while accepted < frames * batch {
            match stream.next().await {
                Some(Ok(Message::Text(text))) => {
                    let v: Value = serde_json::from_str(&text).expect("JSON");
                    match v["op"].as_str() {
                        Some("ack") => accepted += v["accepted"].as_u64().unwrap_or(0),
                        Some("error") => panic!("refused: {v}"),
                        _ => {}
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("feed ended: {other:?}"),
            }
        }
        accepted
    });
    for f in 0..frames {
        let body: Vec<Value> = (0..batch).map(|i| sample(f * batch + i)).collect();
        let op = json!({"op": "publish", "batch": body, "ack": true});
        sink.send(Message::Text(op.to_string().into()))
            .await
            .expect("send");
    }
    let accepted = reader.await.expect("reader");
    accepted as f64 / started.elapsed().as_secs_f64()
}

/// `events` JSON datagrams from one socket to the UDP ingest port, as fast as it sends
/// them: events/s the session took (first datagram to last event in), and how many.
async fn udp_ingest(client: &reqwest::Client, base: &str, port: u16, events: u64) -> (f64, u64) {
    create_session(client, base, &json!({"id": "udp"})).await;
    // The ingest port looks the open sessions up every second.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let received = |client: reqwest::Client, url: String| async move {
        get_json(&client, &url).await["events_received"]
            .as_u64()
            .unwrap_or(0)
    };
    let url = format!("{base}/api/v1/sessions/udp");
    let started = Instant::now();
    let sender = std::thread::spawn(move || {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("a socket");
        for n in 1..=events {
            let datagram = json!({"session": "udp", "event": "gaze_sample", "producer": "bench", "pseq": n,
                "data": {"participant": "P001", "n": n, "x": 0.4183, "y": 0.5721, "pupil": 3.12}});
            let _ = socket.send_to(datagram.to_string().as_bytes(), ("127.0.0.1", port));
        }
    });
    let mut last = (0u64, Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = received(client.clone(), url.clone()).await;
        if now >= events || last.1.elapsed() > Duration::from_secs(2) {
            break;
        }
        if now != last.0 {
            last = (now, Instant::now());
        }
    }
    let _ = sender.join();
    let got = received(client.clone(), url).await;
    let took = (last.1 - started).as_secs_f64().max(0.001);
    (got as f64 / took, got)
}

/// Records `events` posted in batches, then replays the recording at `rate` 0 into
/// another session: the events it holds, and the replay's events/s (POST of the replay to
/// its end, as the session counts them).
async fn replay_rate(client: &reqwest::Client, base: &str, events: u64, batch: u64) -> (u64, f64) {
    let post = |path: String, body: Value| {
        let client = client.clone();
        async move {
            let r = client.post(path).json(&body).send().await.expect("POST");
            assert!(r.status().is_success(), "{}", r.status());
            r.json::<Value>().await.unwrap_or(Value::Null)
        }
    };
    post(format!("{base}/api/v1/sessions"), json!({"id": "recorded"})).await;
    post(format!("{base}/api/v1/sessions"), json!({"id": "replayed"})).await;
    let rec = post(
        format!("{base}/api/v1/sessions/recorded/recordings"),
        json!({}),
    )
    .await;
    let rid = rec["id"].as_str().expect("a recording").to_string();
    let url = format!("{base}/api/v1/sessions/recorded/events");
    let mut n = 0;
    while n < events {
        let body: Vec<Value> = (n..n + batch).map(sample).collect();
        post(url.clone(), json!(body)).await;
        n += batch;
    }
    let info = post(format!("{base}/api/v1/recordings/{rid}/stop"), json!({})).await;
    let recorded = info["events"].as_u64().unwrap_or(0);
    let started = Instant::now();
    post(
        format!("{base}/api/v1/sessions/replayed/replay"),
        json!({"recording": rid, "rate": 0}),
    )
    .await;
    loop {
        let status = get_json(client, &format!("{base}/api/v1/sessions/replayed/replay")).await;
        if status["state"] != "playing" || started.elapsed() > Duration::from_secs(300) {
            let played = status["played"].as_u64().unwrap_or(0);
            return (recorded, played as f64 / started.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::main]
async fn main() {
    let (f, docs) = flags(&[("seconds", 3), ("events", 1_000_000), ("batch", 1000)]);
    let (seconds, events, batch) = (f["seconds"], f["events"], f["batch"]);
    let udp_port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port");
    let port = start_server_with(move |s| {
        s.udp_ingest.enabled = true;
        s.udp_ingest.port = udp_port;
        s.udp_ingest.events_per_sec = 10_000_000.0;
        s.udp_ingest.event_burst = 1_000_000.0;
        s.inference.models.clear();
        s.inference.default_model = String::new();
        s.server.max_events_per_request = 100_000;
        s.live.max_frame_bytes = 64 << 20;
        s.recording.dir = std::env::temp_dir()
            .join(format!("synopticon-bench-{}", std::process::id()))
            .display()
            .to_string();
    });
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    create_session(
        &client,
        &base,
        &json!({"id": "bench", "enabledDistributors": ["websocket"]}),
    )
    .await;
    let url = format!("{base}/api/v1/sessions/bench/events");
    let single = rest_single(&client, &url, seconds).await;
    let batched = rest_batches(&client, &url, seconds, batch).await;
    let ws = ws_batches(port, events, batch).await;
    let (recorded, replayed) = replay_rate(&client, &base, events / 5, batch).await;
    let udp_sent = events / 5;
    let (udp, udp_in) = udp_ingest(&client, &base, udp_port, udp_sent).await;
    let table = format!(
        "{}; one producer, {}-byte events, {} build.\n\n\
         | Path | Events/s |\n|---|---|\n\
         | REST, one event per POST | {single:.0} |\n\
         | REST, {} events per POST | {batched:.0} |\n\
         | WebSocket `publish`, {} events per frame, acknowledged, {} events | {ws:.0} |\n\
         | UDP ingest, JSON datagrams from one socket ({udp_in} of {udp_sent} taken in) | {udp:.0} |\n\
         | Replay of a recording at `rate` 0 ({recorded} events, into a session) | {replayed:.0} |\n",
        machine(),
        sample(0).to_string().len(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        batch,
        batch,
        events
    );
    println!("{table}");
    if docs {
        write_docs("publish", &table);
    }
}
