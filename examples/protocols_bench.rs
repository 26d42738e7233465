//! Per-protocol benchmark on loopback: for UDP, MQTT, HTTP webhooks and Redis, one session
//! with only that distributor, a real peer counting what arrives, and
//!
//! 1. throughput: `--events` events posted in batches of 1,000 as fast as accepted; the
//!    rate is what the peer received per second, first POST to last arrival;
//! 2. latency: 1,000 events/s for 3 s, each stamped with this process's monotonic clock;
//!    the peer measures POST → arrival.
//!
//! `cargo run --release --example protocols_bench -- [--events 100000] [--udp-targets 10] [--write-docs]`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;
use common::{create_session, machine, percentile_ms, start_server, write_docs};

static START: OnceLock<Instant> = OnceLock::new();

fn now_us() -> u64 {
    START.get_or_init(Instant::now).elapsed().as_micros() as u64
}

/// What a peer saw: a count, and latencies (µs) of stamped events.
#[derive(Default)]
struct Seen {
    count: AtomicU64,
    latencies: Mutex<Vec<u64>>,
    /// Set for the latency phase: only then are payloads searched for their stamp.
    timing: std::sync::atomic::AtomicBool,
}

impl Seen {
    fn record(&self, text: &[u8]) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.time(text);
    }

    /// The latency of a stamped payload, in the latency phase.
    fn time(&self, text: &[u8]) {
        if !self.timing.load(Ordering::Relaxed) {
            return;
        }
        if let Some(t) = stamp(text) {
            self.latencies
                .lock()
                .unwrap()
                .push(now_us().saturating_sub(t));
        }
    }
}

/// The number after `"t":` in a payload, without parsing the JSON.
fn stamp(bytes: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(bytes).ok()?;
    let at = text.find("\"t\":")? + 4;
    let rest = &text[at..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn udp_peer(targets: usize, seen: Arc<Seen>) -> Vec<String> {
    (0..targets)
        .map(|_| {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let addr = socket.local_addr().unwrap().to_string();
            let seen = seen.clone();
            // Each receiver counts on its own and adds to the shared count 64 at a time
            // (and when idle): ten threads adding every datagram to one counter would
            // measure that counter's cache line more than the senders.
            let _ = socket.set_read_timeout(Some(Duration::from_millis(2)));
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                let mut counted = 0;
                loop {
                    match socket.recv(&mut buf) {
                        Ok(n) => {
                            counted += 1;
                            seen.time(&buf[..n]);
                            if counted == 64 {
                                seen.count.fetch_add(counted, Ordering::Relaxed);
                                counted = 0;
                            }
                        }
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) =>
                        {
                            seen.count.fetch_add(counted, Ordering::Relaxed);
                            counted = 0;
                        }
                        Err(_) => break,
                    }
                }
            });
            addr
        })
        .collect()
}

fn mqtt_peer(session: &str, seen: Arc<Seen>) {
    use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
    let mut options = MqttOptions::new(format!("bench-{session}"), "127.0.0.1", 1883);
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut connection) = Client::new(options, 10_000);
    let mut network = connection.eventloop.network_options();
    network.set_tcp_nodelay(true);
    connection.eventloop.set_network_options(network);
    client
        .subscribe(format!("synopticon/{session}/#"), QoS::AtMostOnce)
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _client = client;
        for event in connection.iter() {
            match event {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = tx.send(());
                }
                Ok(Event::Incoming(Packet::Publish(p))) if !p.topic.ends_with("/status") => {
                    seen.record(&p.payload)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
                _ => {}
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
}

fn redis_peer(session: &str, seen: Arc<Seen>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let pattern = format!("synopticon:{session}:*");
    std::thread::spawn(move || {
        let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
        let mut conn = client.get_connection().unwrap();
        let mut pubsub = conn.as_pubsub();
        pubsub.psubscribe(&pattern).unwrap();
        tx.send(()).unwrap();
        while let Ok(msg) = pubsub.get_message() {
            seen.record(msg.get_payload_bytes());
        }
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
}

fn http_peer(seen: Arc<Seen>) -> u16 {
    use actix_web::{web, App, HttpResponse, HttpServer};
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let server = HttpServer::new(move || {
                let seen = seen.clone();
                App::new().default_service(web::to(move |body: web::Bytes| {
                    seen.record(&body);
                    async { HttpResponse::NoContent().finish() }
                }))
            })
            .workers(1)
            .bind(("127.0.0.1", 0))
            .unwrap();
            tx.send(server.addrs()[0].port()).unwrap();
            server.run().await
        })
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap()
}

struct Row {
    name: String,
    rate: f64,
    unit: &'static str,
    received: u64,
    expected: u64,
    p50: f64,
    p99: f64,
    max: f64,
}

/// Waits until the peer has `expected` messages, or none came for 3 s; when the last
/// one came.
async fn last_arrival(seen: &Seen, expected: u64) -> Instant {
    let mut last = (seen.count.load(Ordering::Relaxed), Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = seen.count.load(Ordering::Relaxed);
        if now >= expected || last.1.elapsed() > Duration::from_secs(3) {
            return last.1;
        }
        if now != last.0 {
            last = (now, Instant::now());
        }
    }
}

/// `events` datagrams of the distributor's size (an envelope of `{"i": N}`), each sent
/// to every address in one sendmmsg call, as fast as the receivers keep up.
async fn bare_udp(addrs: &[String], seen: Arc<Seen>, events: u64) -> Row {
    let targets: Vec<std::net::SocketAddr> = addrs.iter().map(|a| a.parse().unwrap()).collect();
    let fanout = targets.len() as u64;
    let counter = seen.clone();
    let started = Instant::now();
    let sender = std::thread::spawn(move || {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut all = synopticon_actors::distributor::mmsg::Targets::new(targets);
        let datagram = br#"{"session":"UDP-json-10-targets","seq":123456,"event":"tick","ts":"2026-11-27T22:00:00.000Z","data":{"i":999}}"#;
        for sent in 1..=events {
            all.send(&socket, datagram);
            while (sent * fanout).saturating_sub(counter.count.load(Ordering::Relaxed)) > 200_000 {
                std::thread::yield_now();
            }
        }
    });
    let expected = events * fanout;
    let last = last_arrival(&seen, expected).await;
    sender.join().unwrap();
    let received = seen.count.load(Ordering::Relaxed);
    let elapsed = (last - started).as_secs_f64().max(0.001);
    Row {
        name: format!("bare sendmmsg loop, {fanout} targets (floor)"),
        rate: received as f64 / elapsed,
        unit: "datagrams/s",
        received,
        expected,
        p50: f64::NAN,
        p99: f64::NAN,
        max: f64::NAN,
    }
}

async fn run(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    distributor: Value,
    seen: Arc<Seen>,
    fanout: u64,
    events: u64,
) -> Row {
    let session: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == ' ')
        .collect::<String>()
        .replace(' ', "-");
    let kind = distributor["kind"].as_str().unwrap().to_string();
    let mut config = distributor.clone();
    config.as_object_mut().unwrap().remove("kind");
    config["queueCapacity"] = json!(100_000);
    let body = json!({"id": session, "enabledDistributors": [kind], "distributors": {kind.clone(): config}});
    create_session(http, base, &body).await;
    let url = format!("{base}/api/v1/sessions/{session}/events");
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Throughput.
    let batch = serde_json::to_vec(&Value::Array(
        (0..1000)
            .map(|i| json!({"event": "tick", "data": {"i": i}}))
            .collect(),
    ))
    .unwrap();
    let started = Instant::now();
    let mut posted = 0;
    while posted < events {
        let r = http
            .post(&url)
            .header("content-type", "application/json")
            .body(batch.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        posted += 1000;
        while posted * fanout - seen.count.load(Ordering::Relaxed) > 200_000
            && started.elapsed() < Duration::from_secs(120)
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let expected = posted * fanout;
    let last = last_arrival(&seen, expected).await;
    let received = seen.count.load(Ordering::Relaxed);
    let elapsed = (last - started).as_secs_f64().max(
        started
            .elapsed()
            .as_secs_f64()
            .min((last - started).as_secs_f64() + 0.02),
    );
    let rate = received as f64 / elapsed;

    // Latency at 1,000 events/s.
    seen.latencies.lock().unwrap().clear();
    seen.timing.store(true, Ordering::Relaxed);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        tick.tick().await;
        let t = now_us();
        let events: Vec<Value> = (0..10)
            .map(|i| json!({"event": "tick", "data": {"t": t, "i": i}}))
            .collect();
        let _ = http.post(&url).json(&events).send().await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    seen.timing.store(false, Ordering::Relaxed);
    let mut lat = seen.latencies.lock().unwrap().clone();
    lat.sort_unstable();
    http.delete(format!("{base}/api/v1/sessions/{session}"))
        .send()
        .await
        .unwrap();
    Row {
        name: name.into(),
        rate,
        unit: if fanout > 1 {
            "datagrams/s"
        } else {
            "events/s"
        },
        received,
        expected,
        p50: percentile_ms(&lat, 0.5),
        p99: percentile_ms(&lat, 0.99),
        max: percentile_ms(&lat, 1.0),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut events = 100_000u64;
    let mut targets = 10usize;
    let mut update_docs = false;
    let mut rounds = 3usize;
    let mut udp_only = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--events" => events = args.next().unwrap().parse().unwrap(),
            "--udp-targets" => targets = args.next().unwrap().parse().unwrap(),
            "--write-docs" => update_docs = true,
            "--rounds" => rounds = args.next().unwrap().parse::<usize>().unwrap().max(1),
            "--udp-only" => udp_only = true,
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    START.get_or_init(Instant::now);
    let port = start_server();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut rows = Vec::new();

    // The distributor against its floor, a bare sendmmsg loop on one socket to the same
    // number of targets (datagrams of the distributor's size, measured the same way), in
    // rounds one after the other: the table gives the round with the median ratio.
    let mut pairs = Vec::new();
    for round in 1..=rounds {
        let seen = Arc::new(Seen::default());
        let addrs = udp_peer(targets, seen.clone());
        let udp = json!({"kind": "udp", "targets": addrs, "encoding": "json"});
        let name = format!("UDP json, {targets} targets");
        let distributor = run(&http, &base, &name, udp, seen, targets as u64, events).await;
        let seen = Arc::new(Seen::default());
        let addrs = udp_peer(targets, seen.clone());
        let bare = bare_udp(&addrs, seen, events).await;
        println!(
            "round {round}: UDP distributor {:.0}, bare loop {:.0} datagrams/s ({:.2})",
            distributor.rate,
            bare.rate,
            distributor.rate / bare.rate
        );
        pairs.push((distributor, bare));
    }
    pairs.sort_by(|a, b| (a.0.rate / a.1.rate).total_cmp(&(b.0.rate / b.1.rate)));
    let ratios: Vec<String> = pairs
        .iter()
        .map(|(d, b)| format!("{:.2}", d.rate / b.rate))
        .collect();
    let (distributor, bare) = pairs.swap_remove(pairs.len() / 2);
    let ratio = distributor.rate / bare.rate;
    rows.push(distributor);
    rows.push(bare);
    if udp_only {
        return;
    }

    let seen = Arc::new(Seen::default());
    mqtt_peer("bench-mqtt-qos0", seen.clone());
    let mqtt = json!({"kind": "mqtt", "broker": "mqtt://127.0.0.1:1883", "qos": 0});
    rows.push(run(&http, &base, "bench mqtt qos0", mqtt, seen, 1, events).await);

    let seen = Arc::new(Seen::default());
    mqtt_peer("bench-mqtt-qos1", seen.clone());
    let mqtt =
        json!({"kind": "mqtt", "broker": "mqtt://127.0.0.1:1883", "qos": 1, "maxInFlight": 64});
    rows.push(run(&http, &base, "bench mqtt qos1", mqtt, seen, 1, events / 4).await);

    let seen = Arc::new(Seen::default());
    redis_peer("bench-redis", seen.clone());
    let redis = json!({"kind": "redis", "url": "redis://127.0.0.1:6379", "maxInFlight": 64});
    rows.push(run(&http, &base, "bench redis", redis, seen, 1, events).await);

    let seen = Arc::new(Seen::default());
    let hport = http_peer(seen.clone());
    let hook =
        json!({"kind": "http", "baseUrl": format!("http://127.0.0.1:{hport}"), "maxInFlight": 32});
    rows.push(run(&http, &base, "bench http", hook, seen, 1, events / 10).await);

    let mut table = format!(
        "{}, release build; server, peers and producer on one machine over loopback.\n\n\
| Distributor | Throughput | Received | Latency p50 / p99 / max at 1,000 events/s (POST → peer) |\n|---|---|---|---|\n",
        machine()
    );
    for r in &rows {
        table.push_str(&format!(
            "| {} | {:.0} {} | {} of {} | {} |\n",
            r.name.replace("bench ", "").replace("qos", "QoS "),
            r.rate,
            r.unit,
            r.received,
            r.expected,
            if r.p50.is_nan() {
                "—".to_string()
            } else {
                format!("{:.2} / {:.2} / {:.2} ms", r.p50, r.p99, r.max)
            }
        ));
    }
    table.push_str(&format!(
        "\nThe UDP distributor reaches {:.2} of the bare sendmmsg loop run right after it (the median of {} rounds: {}).\n",
        ratio,
        ratios.len(),
        ratios.join(", ")
    ));
    println!("{table}");
    if update_docs {
        write_docs("protocols", &table);
    }
    std::process::exit(0);
}
