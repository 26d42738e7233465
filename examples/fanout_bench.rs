//! Fan-out benchmark: one session, N WebSocket clients on loopback, events posted over REST,
//! against three servers in the same sitting with the same clients:
//!
//! - the floor: a bare broadcast server with the same two paths and nothing else
//!   (examples/common/floor.rs);
//! - Synopticon, its WebSocket distributor with its default client queues;
//! - Synopticon recording the session to an MCAP file at the same time.
//!
//! Phase 1 (throughput): post batches as fast as the server accepts them and count the
//! frames all clients receive. Phase 2 (latency): post at a fixed rate (10 events per
//! millisecond by default) and measure, per frame, the time from the producer's POST to the
//! client's receipt (producer and clients share this process's monotonic clock).
//!
//! `cargo run --release --example fanout_bench -- [--clients 100] [--seconds 5] [--rate 10000] [--history N] [--only LIST] [--rounds 3] [--write-docs]`
//! `--history N` sets the WebSocket history (`historySize`) of the session, to compare.
//! `--only synopticon` (or `floor`, `recording`, comma-separated) runs only those, to
//! profile one alone; it never writes the docs. `--rounds N` runs every server N times in
//! turn and reports medians (one run's tail is as much the machine's moment as the server).
//! `--write-docs` replaces the table between the fanout markers in docs/PERFORMANCE.md.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::{floor, machine, percentile_ms, write_docs};

static START: OnceLock<Instant> = OnceLock::new();

fn now_ns() -> u64 {
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

struct Args {
    clients: usize,
    seconds: u64,
    rate: u64,
    write_docs: bool,
    /// The WebSocket distributor's `historySize` (the server's default when absent).
    history: Option<u64>,
    /// Which servers to run (`--only floor,synopticon,recording`; all by default), to
    /// profile one alone.
    only: Option<Vec<String>>,
    /// Rounds of all servers in turn (`--rounds`, 3); figures are medians.
    rounds: usize,
}

fn args() -> Args {
    let mut a = Args {
        clients: 100,
        seconds: 5,
        rate: 10_000,
        write_docs: false,
        history: None,
        only: None,
        rounds: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut num = || {
            it.next()
                .and_then(|v| v.parse::<u64>().ok())
                .expect("a number after the flag")
        };
        match flag.as_str() {
            "--clients" => a.clients = num() as usize,
            "--seconds" => a.seconds = num(),
            "--rate" => a.rate = num(),
            "--write-docs" => a.write_docs = true,
            "--history" => a.history = Some(num()),
            "--rounds" => a.rounds = (num() as usize).max(1),
            "--only" => {
                a.only = it
                    .next()
                    .map(|v| v.split(',').map(str::to_string).collect())
            }
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// Pulls the number after `"t":` out of a frame without parsing the whole JSON.
fn stamp(text: &str) -> Option<u64> {
    let at = text.find("\"t\":")? + 4;
    let digits: &str = &text[at..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

struct Client {
    frames: Arc<AtomicU64>,
    /// Set to end the client, which then hands back its latencies.
    stop: Arc<AtomicBool>,
    latencies: tokio::task::JoinHandle<Vec<u32>>,
}

async fn connect(port: u16, session: &str, record: Arc<AtomicBool>) -> Client {
    let url = format!("ws://127.0.0.1:{port}/api/v1/sessions/{session}/ws");
    // Nagle off on the client too, as any latency-sensitive client would.
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .expect("ws connect");
    let frames = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (counter, stopped) = (frames.clone(), stop.clone());
    let latencies = tokio::spawn(async move {
        let mut lat = Vec::new();
        loop {
            let msg = match tokio::time::timeout(Duration::from_millis(100), ws.next()).await {
                Ok(Some(Ok(msg))) => msg,
                Ok(_) => break,
                Err(_) if stopped.load(Ordering::Relaxed) => break,
                Err(_) => continue,
            };
            if let Message::Text(text) = msg {
                // Event envelopes start with their session; control frames (hello, acks) do not.
                if !text.starts_with("{\"session\"") {
                    continue;
                }
                counter.fetch_add(1, Ordering::Relaxed);
                if record.load(Ordering::Relaxed) {
                    if let Some(t) = stamp(&text) {
                        lat.push(((now_ns().saturating_sub(t)) / 1000) as u32);
                    }
                }
            }
        }
        lat
    });
    Client {
        frames,
        stop,
        latencies,
    }
}

/// Cumulative `(le, count)` of the server's WebSocket delivery-latency histogram.
async fn server_histogram(http: &reqwest::Client, base: &str) -> Vec<(f64, u64)> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = "synopticon_delivery_latency_seconds_bucket{distributor=\"websocket\",le=\"";
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect()
}

/// Upper bucket bound (ms) under which a fraction `p` of the observations fall.
fn bucket_quantile(before: &[(f64, u64)], after: &[(f64, u64)], p: f64) -> String {
    let diff: Vec<(f64, u64)> = after
        .iter()
        .map(|(le, n)| {
            (
                *le,
                n - before.iter().find(|(l, _)| l == le).map_or(0, |(_, m)| *m),
            )
        })
        .collect();
    let total = diff.last().map_or(0, |(_, n)| *n);
    let want = (total as f64 * p).ceil() as u64;
    match diff.iter().find(|(_, n)| *n >= want) {
        Some((le, _)) if le.is_finite() => format!("≤ {:.2}", le * 1000.0),
        _ => "> 5000".into(),
    }
}

fn total(clients: &[Client]) -> u64 {
    clients
        .iter()
        .map(|c| c.frames.load(Ordering::Relaxed))
        .sum()
}

/// One server under test.
#[derive(Clone, Copy, PartialEq)]
enum Server {
    Floor,
    Synopticon,
    Recording,
}

impl Server {
    /// Its name for `--only`.
    fn flag(self) -> &'static str {
        match self {
            Server::Floor => "floor",
            Server::Synopticon => "synopticon",
            Server::Recording => "recording",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Server::Floor => "floor (bare broadcast server)",
            Server::Synopticon => "Synopticon",
            Server::Recording => "Synopticon, recording the session",
        }
    }
}

/// What one server did.
struct Measured {
    throughput: f64,
    accepted: f64,
    dropped: u64,
    received: u64,
    expected: u64,
    rate: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    server_p99: Option<String>,
}

/// Frames the server's clients lost: the distributor's count, or the floor's.
async fn dropped(
    http: &reqwest::Client,
    base: &str,
    server: Server,
    floor_lost: &AtomicU64,
) -> u64 {
    if server == Server::Floor {
        return floor_lost.load(Ordering::Relaxed);
    }
    let status: Value = http
        .get(format!(
            "{base}/api/v1/sessions/bench/distributors/websocket"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap_or(Value::Null);
    status["client_frames_dropped"].as_u64().unwrap_or(0)
}

async fn measure(a: &Args, server: Server, port: u16, floor_lost: &AtomicU64) -> Measured {
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    if server != Server::Floor {
        // Its own queue is large (what is measured is delivery); client queues as shipped.
        let mut session = json!({"id": "bench", "enabledDistributors": ["websocket"],
            "distributors": {"websocket": {"queueCapacity": 1_000_000, "maxClients": 10_000}}});
        if let Some(n) = a.history {
            session["distributors"]["websocket"]["historySize"] = json!(n);
        }
        common::create_session(&http, &base, &session).await;
        if server == Server::Recording {
            let r = http
                .post(format!("{base}/api/v1/sessions/bench/recordings"))
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
        }
    }
    let record = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..a.clients {
        clients.push(connect(port, "bench", record.clone()).await);
    }
    let events_url = format!("{base}/api/v1/sessions/bench/events");
    let dropped_before = dropped(&http, &base, server, floor_lost).await;

    // Phase 1: throughput.
    let batch: Value = Value::Array(
        (0..1000)
            .map(|i| json!({"event": "tick", "data": {"i": i}}))
            .collect(),
    );
    let body = serde_json::to_vec(&batch).unwrap();
    let started = Instant::now();
    let mut posted = 0u64;
    while started.elapsed() < Duration::from_secs(a.seconds) {
        let r = http
            .post(&events_url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        posted += 1000;
        // Clients keep up on average: the backlog stays within 10,000 frames a client.
        while (posted * a.clients as u64).saturating_sub(total(&clients))
            > 10_000 * a.clients as u64
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let expected = posted * a.clients as u64;
    while total(&clients) < expected && started.elapsed() < Duration::from_secs(a.seconds + 60) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let throughput = total(&clients) as f64 / elapsed;
    let accepted = posted as f64 / elapsed;

    // Phase 2: latency at a fixed rate, 10 events per tick.
    let per_tick = 10u64;
    let tick = Duration::from_nanos(1_000_000_000 * per_tick / a.rate);
    let before = total(&clients);
    let hist_before = server_histogram(&http, &base).await;
    record.store(true, Ordering::Relaxed);
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let phase2 = Instant::now();
    let mut sent = 0u64;
    while phase2.elapsed() < Duration::from_secs(a.seconds) {
        interval.tick().await;
        let t = now_ns();
        let events: Vec<Value> = (0..per_tick)
            .map(|i| json!({"event": "tick", "data": {"t": t, "i": i}}))
            .collect();
        let http = http.clone();
        let url = events_url.clone();
        tokio::spawn(async move {
            http.post(url)
                .json(&events)
                .send()
                .await
                .map(|r| r.status().as_u16())
        });
        sent += per_tick;
    }
    let want = before + sent * a.clients as u64;
    let wait = Instant::now();
    while total(&clients) < want && wait.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    record.store(false, Ordering::Relaxed);
    let received = total(&clients) - before;
    // The server records a frame when its connection writes it; give the last ones a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let server_p99 = if server == Server::Floor {
        None
    } else {
        let hist_after = server_histogram(&http, &base).await;
        Some(bucket_quantile(&hist_before, &hist_after, 0.99))
    };
    let lost = dropped(&http, &base, server, floor_lost).await - dropped_before;
    // Closing the session (or, for the floor, dropping the sockets) hands back the latencies.
    if server == Server::Floor {
        for c in &clients {
            c.stop.store(true, Ordering::Relaxed);
        }
    } else {
        http.delete(format!("{base}/api/v1/sessions/bench"))
            .send()
            .await
            .unwrap();
    }
    let mut lat: Vec<u32> = Vec::new();
    for c in clients {
        if let Ok(l) = c.latencies.await {
            lat.extend(l);
        }
    }
    lat.sort_unstable();
    Measured {
        throughput,
        accepted,
        dropped: lost,
        received,
        expected: sent * a.clients as u64,
        rate: sent as f64 / phase2.elapsed().as_secs_f64(),
        p50: percentile_ms(&lat, 0.50),
        p99: percentile_ms(&lat, 0.99),
        p999: percentile_ms(&lat, 0.999),
        max: percentile_ms(&lat, 1.0),
        server_p99,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    START.get_or_init(Instant::now);
    let recordings = std::env::temp_dir().join(format!("synopticon-bench-{}", std::process::id()));
    let dir = recordings.display().to_string();
    let port = common::start_server_with(move |s| s.recording.dir = dir);
    let (floor_port, floor_lost) = floor::start(0);
    let servers: Vec<Server> = [Server::Floor, Server::Synopticon, Server::Recording]
        .into_iter()
        .filter(|server| {
            a.only
                .as_ref()
                .is_none_or(|only| only.iter().any(|o| o == server.flag()))
        })
        .collect();
    // Rounds of every server in turn: one run's tail says more about the machine's
    // moment than about the server, so each figure is the median of its rounds.
    let mut runs: Vec<Vec<Measured>> = servers.iter().map(|_| Vec::new()).collect();
    for round in 1..=a.rounds {
        for (i, server) in servers.iter().enumerate() {
            let p = if *server == Server::Floor {
                floor_port
            } else {
                port
            };
            let m = measure(&a, *server, p, &floor_lost).await;
            println!(
                "round {round}, {}: {:.0} deliveries/s, p99 {:.2} ms, {} dropped",
                server.name(),
                m.throughput,
                m.p99,
                m.dropped
            );
            runs[i].push(m);
        }
    }
    let _ = std::fs::remove_dir_all(&recordings);
    // Without the floor (`--only`), ratios are to the first server run.
    let Some(floor_runs) = runs.first() else {
        return;
    };
    let median = |ms: &[Measured], f: fn(&Measured) -> f64| {
        let mut v: Vec<f64> = ms.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let floor_throughput = median(floor_runs, |m| m.throughput);
    let floor_p99 = median(floor_runs, |m| m.p99);
    let mut table = format!(
        "{machine}, release build; servers and {clients} clients in one process on loopback, one after the other, \
{rounds} rounds in turn; each figure is the median of the rounds.\n\n\
| Server | Fan-out at max rate | vs floor | Frames dropped | At {rate:.0} events/s: received | p50 / p99 / p99.9 / max (POST → client) | p99 vs floor | Server p99 (accepted → written) |\n|---|---|---|---|---|---|---|---|\n",
        machine = machine(),
        clients = a.clients,
        rounds = a.rounds,
        rate = median(floor_runs, |m| m.rate),
    );
    for (server, ms) in servers.iter().zip(&runs) {
        // The latency columns come from the round with the median p99.
        let mut by_p99: Vec<&Measured> = ms.iter().collect();
        by_p99.sort_by(|x, y| x.p99.total_cmp(&y.p99));
        let m = by_p99[by_p99.len() / 2];
        let throughput = median(ms, |m| m.throughput);
        table.push_str(&format!(
            "| {} | {:.0} deliveries/s ({:.0} events/s) | {:.2} | {} | {} of {} | {:.2} / {:.2} / {:.2} / {:.2} ms | {:.2} | {} |\n",
            server.name(),
            throughput,
            median(ms, |m| m.accepted),
            throughput / floor_throughput,
            ms.iter().map(|m| m.dropped).sum::<u64>(),
            ms.iter().map(|m| m.received).sum::<u64>(),
            ms.iter().map(|m| m.expected).sum::<u64>(),
            m.p50,
            m.p99,
            m.p999,
            m.max,
            m.p99 / floor_p99,
            m.server_p99.clone().map_or("—".into(), |p| format!("{p} ms")),
        ));
    }
    table.push_str("\nEach round against the floor's run in the same round (throughput, p99):\n\n");
    for (server, ms) in servers.iter().zip(&runs).skip(1) {
        let rounds: Vec<String> = ms
            .iter()
            .zip(floor_runs)
            .map(|(m, f)| format!("{:.2} / {:.2}", m.throughput / f.throughput, m.p99 / f.p99))
            .collect();
        table.push_str(&format!("- {}: {}\n", server.name(), rounds.join(", ")));
    }
    println!("{table}");
    if a.write_docs && a.only.is_none() {
        write_docs("fanout", &table);
    }
    std::process::exit(0);
}
