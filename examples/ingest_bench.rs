//! Ingestion benchmark: detection envelopes of 10 detections XADDed to a real Redis stream
//! (127.0.0.1:6379), consumed by the server's input into the tracker of an external source
//! with a line and a zone, through a rule (a JSON log of every line crossing), and out as
//! `detections` events on a WebSocket.
//!
//! Phase 1 (throughput): XADD every envelope in pipelines as fast as Redis takes them and
//! time until the input has acknowledged them all. Phase 2 (latency): XADD at a fixed rate
//! and measure, per envelope, the time from its XADD to the receipt of its `detections`
//! event (producer and client share this process's monotonic clock).
//!
//! `cargo run --release --example ingest_bench -- [--envelopes 100000] [--rate 2000] [--seconds 5] [--write-docs]`

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::{create_session, get_json, machine, percentile_ms, start_server_with, write_docs};

const REDIS: &str = "redis://127.0.0.1:6379";

struct Args {
    envelopes: u64,
    rate: u64,
    seconds: u64,
    write_docs: bool,
}

fn args() -> Args {
    let mut a = Args {
        envelopes: 100_000,
        rate: 2_000,
        seconds: 5,
        write_docs: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut num = || {
            it.next()
                .and_then(|v| v.parse::<u64>().ok())
                .expect("a number after the flag")
        };
        match flag.as_str() {
            "--envelopes" => a.envelopes = num(),
            "--rate" => a.rate = num(),
            "--seconds" => a.seconds = num(),
            "--write-docs" => a.write_docs = true,
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// Envelope `n`: ten people walking down at different speeds (they cross the middle line
/// now and then).
fn envelope(n: u64) -> String {
    let detections: Vec<Value> = (0..10)
        .map(|i| {
            let x = 40.0 + i as f64 * 60.0;
            // 2 px a frame: each person crosses the line about every 150 frames.
            let y = 100.0 + ((n * 2 + i * 37) % 300) as f64;
            json!({"track_id": i + 1, "class_id": 0, "class_name": "person", "confidence": 0.9,
                "bbox": {"x1": x - 20.0, "y1": y - 80.0, "x2": x + 20.0, "y2": y}})
        })
        .collect();
    json!({"version": 1,
        "source": {"device_id": "bench-dev", "camera_id": "bench-cam",
            "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)},
        "frame": {"number": n, "width": 640, "height": 480},
        "detections": detections})
    .to_string()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let stream = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let logs = std::env::temp_dir().join(format!("synopticon-bench-{}", uuid::Uuid::new_v4()));
    let (stream_cfg, logs_cfg) = (stream.clone(), logs.display().to_string());
    let port = start_server_with(move |s| {
        s.rules.log_dir = logs_cfg;
        s.inputs = vec![
            json!({"name": "bench", "kind": "redis_stream", "url": REDIS,
            "stream": stream_cfg, "batch": 500, "blockMs": 50}),
        ];
        s.rules.declared = vec![
            json!({"name": "crossings", "match": {"events": ["line_cross"]},
            "actions": ["json_log"]}),
        ];
    });
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let created = client
        .post(format!("{base}/api/v1/sources"))
        .json(
            &json!({"id": "bench-cam", "kind": "external", "device_id": "bench-dev",
            "edge_track_ids": true, "detections_every_ms": 0,
            "lines": [{"id": "middle", "points": [[0, "50%"], ["100%", "50%"]]}],
            "zones": [{"id": "right", "points": [[320, 0], [640, 0], [640, 480], [320, 480]]}]}),
        )
        .send()
        .await
        .expect("source");
    assert!(
        created.status().is_success(),
        "{}",
        created.text().await.unwrap_or_default()
    );
    create_session(
        &client,
        &base,
        &json!({"id": "bench", "sources": ["bench-cam"], "enabledDistributors": ["websocket"],
            "distributors": {"websocket": {"clientQueueCapacity": 100000}},
            "eventRouting": {"detections": ["websocket"], "*": []}}),
    )
    .await;

    let redis = redis::Client::open(REDIS).expect("redis");
    let mut conn = redis
        .get_multiplexed_async_connection()
        .await
        .expect("Redis on 6379");
    let acknowledged = |client: reqwest::Client, base: String| async move {
        get_json(&client, &format!("{base}/api/v1/inputs/bench")).await["acknowledged"]
            .as_u64()
            .unwrap_or(0)
    };

    // Phase 1: throughput.
    let bodies: Vec<String> = (0..a.envelopes).map(envelope).collect();
    let started = Instant::now();
    for chunk in bodies.chunks(1000) {
        let mut pipe = redis::pipe();
        for body in chunk {
            pipe.cmd("XADD")
                .arg(&stream)
                .arg("*")
                .arg("json")
                .arg(body)
                .ignore();
        }
        let _: () = pipe.query_async(&mut conn).await.expect("XADD");
    }
    let added = started.elapsed();
    loop {
        if acknowledged(client.clone(), base.clone()).await >= a.envelopes {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    let throughput = a.envelopes as f64 / elapsed.as_secs_f64();
    let rule = get_json(&client, &format!("{base}/api/v1/rules/crossings")).await;
    println!(
        "throughput: {} envelopes (10 detections each) in {:.2} s = {:.0}/s (XADD took {:.2} s); rule matched {} line crossings",
        a.envelopes,
        elapsed.as_secs_f64(),
        throughput,
        added.as_secs_f64(),
        rule["matched"]
    );

    // Phase 2: latency at a fixed rate, seen by a client connected now (in phase 1 it
    // would have fallen behind and been cut off as a slow consumer).
    // The client: frame number → receipt time.
    let received: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let (ws, _) =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/api/v1/sessions/bench/ws"))
            .await
            .expect("ws");
    let (_, mut read) = ws.split();
    {
        let received = received.clone();
        tokio::spawn(async move {
            while let Some(Ok(Message::Text(text))) = read.next().await {
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                if let Some(n) = v["data"]["frame"]["number"].as_u64() {
                    received.lock().unwrap().insert(n, Instant::now());
                }
            }
        });
    }

    let first = a.envelopes;
    let total = a.rate * a.seconds;
    let mut sent: HashMap<u64, Instant> = HashMap::new();
    let period = Duration::from_secs_f64(1.0 / a.rate as f64);
    let t0 = Instant::now();
    for i in 0..total {
        let n = first + i;
        let due = t0 + period * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        let body = envelope(n);
        let at = Instant::now();
        let _: () = redis::cmd("XADD")
            .arg(&stream)
            .arg("*")
            .arg("json")
            .arg(body)
            .query_async(&mut conn)
            .await
            .expect("XADD");
        sent.insert(n, at);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got = received.lock().unwrap().clone();
    let mut latencies: Vec<u64> = sent
        .iter()
        .filter_map(|(n, at)| got.get(n).map(|r| r.duration_since(*at).as_micros() as u64))
        .collect();
    latencies.sort_unstable();
    let (p50, p99) = (
        percentile_ms(&latencies, 0.5),
        percentile_ms(&latencies, 0.99),
    );
    println!(
        "latency at {}/s: {} of {} envelopes seen; XADD → detections event p50 {p50:.2} ms, p99 {p99:.2} ms",
        a.rate,
        latencies.len(),
        total
    );
    let table = format!(
        "{}.\n\n| Measure | Result |\n|---|---|\n| Throughput, Redis stream → tracker (10 detections, a line, a zone, a rule) | {:.0} envelopes/s ({} envelopes in {:.2} s) |\n| Latency at {}/s, XADD → `detections` event on a WebSocket | p50 {p50:.2} ms, p99 {p99:.2} ms ({} envelopes) |\n",
        machine(),
        throughput,
        a.envelopes,
        elapsed.as_secs_f64(),
        a.rate,
        latencies.len()
    );
    println!("{table}");
    if a.write_docs {
        write_docs("ingest", &table);
    }
    let _ = std::fs::remove_dir_all(&logs);
    let _: redis::RedisResult<()> = redis::cmd("DEL").arg(&stream).query_async(&mut conn).await;
    std::process::exit(0);
}
