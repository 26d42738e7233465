//! The UDP ingest port: JSON and binary datagrams into sessions, each refusal counted, and
//! the gaps in a producer's numbering.

use std::net::UdpSocket;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

pub(crate) fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn fnv1a32(text: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in text.bytes() {
        hash ^= byte as u32;
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// A datagram in the documented binary format, written here from the table in
/// docs/PROTOCOLS.md (not with the server's encoder).
pub(crate) fn binary(session: &str, seq: u64, name: &str, payload: &Value, micros: i64) -> Vec<u8> {
    let payload = payload.to_string();
    let mut d = Vec::new();
    d.extend_from_slice(b"SYNO");
    d.push(1);
    d.push(1);
    d.extend_from_slice(&40u16.to_be_bytes());
    d.extend_from_slice(&fnv1a32(session).to_be_bytes());
    d.extend_from_slice(&seq.to_be_bytes());
    d.extend_from_slice(&fnv1a32(name).to_be_bytes());
    d.extend_from_slice(&micros.to_be_bytes());
    d.extend_from_slice(&(name.len() as u16).to_be_bytes());
    d.extend_from_slice(&0u16.to_be_bytes());
    d.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    d.extend_from_slice(name.as_bytes());
    d.extend_from_slice(payload.as_bytes());
    d
}

pub(crate) fn series(metrics: &str, session: &str, outcome: &str, reason: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("synopticon_udp_ingest_datagrams_total{"))
        .filter(|l| {
            l.contains(&format!("session=\"{session}\""))
                && l.contains(&format!("outcome=\"{outcome}\""))
                && l.contains(&format!("reason=\"{reason}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

#[tokio::test]
async fn datagrams_reach_their_session_in_order_and_every_refusal_and_gap_is_counted() {
    let port = free_udp_port();
    let app = spawn_app_with(move |s| {
        s.udp_ingest.enabled = true;
        s.udp_ingest.port = port;
        s.udp_ingest.max_datagram_bytes = 512;
        s.udp_ingest.events_per_sec = 1.0;
        s.udp_ingest.event_burst = 8.0;
    })
    .await;
    app.create_session(json!({"id": "eye", "enabledDistributors": ["websocket"]}))
        .await;
    let mut consumer = app.ws("eye", "").await;
    // The server looks the open sessions up every second.
    tokio::time::sleep(Duration::from_millis(1300)).await;

    let producer = UdpSocket::bind("127.0.0.1:0").expect("a socket");
    let target = format!("127.0.0.1:{port}");
    let send = |bytes: &[u8]| {
        producer.send_to(bytes, &target).expect("sent");
        // Loopback keeps order; a pause keeps the receive buffer from overflowing.
        std::thread::sleep(Duration::from_millis(5));
    };
    // A numbered producer; its third datagram is never sent.
    for pseq in [1u64, 2, 4, 5] {
        let d = json!({"session": "eye", "event": "gaze_data", "data": {"x": pseq},
            "producer": "tracker-1", "pseq": pseq});
        send(d.to_string().as_bytes());
    }
    send(&binary(
        "eye",
        7,
        "pupil_data",
        &json!({"d": 3.2}),
        1_764_000_000_000_000,
    ));
    // Refused: unknown session, not JSON, too large, a bad event name.
    send(
        json!({"session": "nobody", "event": "x", "data": {}})
            .to_string()
            .as_bytes(),
    );
    send(b"\x00\x01 not an event");
    send(
        json!({"session": "eye", "event": "big", "data": {"pad": "x".repeat(600)}})
            .to_string()
            .as_bytes(),
    );
    send(
        json!({"session": "eye", "event": "bad name!", "data": {}})
            .to_string()
            .as_bytes(),
    );

    let events = consumer.events(5).await;
    let names: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(
        names,
        [
            "gaze_data",
            "gaze_data",
            "gaze_data",
            "gaze_data",
            "pupil_data"
        ]
    );
    let xs: Vec<u64> = events[..4]
        .iter()
        .filter_map(|e| e["data"]["x"].as_u64())
        .collect();
    assert_eq!(xs, [1, 2, 4, 5], "in the order sent");
    assert_eq!(events[4]["data"], json!({"d": 3.2}));
    assert_eq!(events[4]["ts"], "2025-11-24T16:00:00.000Z");

    // Over the session's rate: the burst had 8, five are used; of six more, some are refused.
    for i in 0..6 {
        send(
            json!({"session": "eye", "event": "gaze_data", "data": {"late": i}})
                .to_string()
                .as_bytes(),
        );
    }
    let metrics = wait_until("the counts", DEADLINE, || async {
        let m = app.metrics().await;
        (series(&m, "eye", "accepted", "") + series(&m, "eye", "rejected", "rate") == 11)
            .then_some(m)
    })
    .await;
    let accepted = series(&metrics, "eye", "accepted", "");
    let rate = series(&metrics, "eye", "rejected", "rate");
    assert!((8..=9).contains(&accepted), "{accepted} accepted");
    assert_eq!(accepted + rate, 11);
    assert_eq!(series(&metrics, "", "rejected", "unknown_session"), 1);
    assert_eq!(series(&metrics, "", "rejected", "malformed"), 1);
    assert_eq!(series(&metrics, "", "rejected", "too_large"), 1);
    assert_eq!(
        series(&metrics, "eye", "rejected", "malformed"),
        1,
        "the bad name"
    );
    assert_eq!(
        metric_value(
            &metrics,
            "synopticon_udp_ingest_gaps_total{session=\"eye\"}"
        ),
        Some(1.0),
        "pseq 3 never came"
    );
    assert_eq!(
        app.status("eye").await["events_received"].as_u64(),
        Some(accepted)
    );
}

#[tokio::test]
async fn a_numbering_that_jumps_or_goes_back_is_a_producer_restart_not_a_loss() {
    let port = free_udp_port();
    let app = spawn_app_with(move |s| {
        s.udp_ingest.enabled = true;
        s.udp_ingest.port = port;
    })
    .await;
    // Its own session name: metric series are the process's.
    app.create_session(json!({"id": "eye-restart", "enabledDistributors": ["websocket"]}))
        .await;
    let mut consumer = app.ws("eye-restart", "").await;
    let producer = UdpSocket::bind("127.0.0.1:0").expect("a socket");
    let target = format!("127.0.0.1:{port}");
    let numbered = |pseq: u64| {
        json!({"session": "eye-restart", "event": "gaze_data", "data": {"n": pseq}, "producer": "t", "pseq": pseq})
            .to_string()
    };
    // Until the port knows the session (it looks sessions up every second).
    wait_until("the first datagram taken", DEADLINE, || async {
        producer
            .send_to(numbered(1).as_bytes(), &target)
            .expect("sent");
        let m = app.metrics().await;
        (series(&m, "eye-restart", "accepted", "") > 0).then_some(())
    })
    .await;
    let accepted_before = series(&app.metrics().await, "eye-restart", "accepted", "");
    // 2^63 after 1: a new counter, not 9.2e18 lost datagrams. Then 3 lost; then back to 1.
    for pseq in [1u64 << 63, (1u64 << 63) + 4, 1, 2] {
        producer
            .send_to(numbered(pseq).as_bytes(), &target)
            .expect("sent");
        std::thread::sleep(Duration::from_millis(5));
    }
    let metrics = wait_until("the four datagrams", DEADLINE, || async {
        let m = app.metrics().await;
        (series(&m, "eye-restart", "accepted", "") == accepted_before + 4).then_some(m)
    })
    .await;
    assert_eq!(
        metric_value(
            &metrics,
            "synopticon_udp_ingest_gaps_total{session=\"eye-restart\"}"
        ),
        Some(3.0),
        "{metrics}"
    );
    assert_eq!(
        metric_value(
            &metrics,
            "synopticon_udp_ingest_producer_restarts_total{session=\"eye-restart\"}"
        ),
        Some(2.0),
        "the jump and the way back: {metrics}"
    );
    let total = accepted_before as usize + 4;
    let events = consumer.events(total).await;
    assert_eq!(events.len(), total);
}
