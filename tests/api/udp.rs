//! UDP distributor against a real socket on loopback, decoding the documented format.

use std::net::UdpSocket;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

fn receiver() -> (UdpSocket, u16) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(DEADLINE)).unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

fn recv(socket: &UdpSocket) -> Vec<u8> {
    let mut buf = vec![0u8; 65536];
    let n = socket.recv(&mut buf).expect("a datagram in time");
    buf.truncate(n);
    buf
}

/// FNV-1a 32, written here from the spec in docs/PROTOCOLS.md.
fn fnv(text: &str) -> u32 {
    text.bytes()
        .fold(0x811c9dc5u32, |h, b| (h ^ b as u32).wrapping_mul(16777619))
}

struct Decoded {
    magic: [u8; 4],
    version: u8,
    format: u8,
    header_len: u16,
    session_hash: u32,
    seq: u64,
    event_hash: u32,
    ts_micros: i64,
    name: String,
    payload: Value,
}

fn decode(d: &[u8]) -> Decoded {
    let be16 = |at: usize| u16::from_be_bytes(d[at..at + 2].try_into().unwrap());
    let be32 = |at: usize| u32::from_be_bytes(d[at..at + 4].try_into().unwrap());
    let be64 = |at: usize| u64::from_be_bytes(d[at..at + 8].try_into().unwrap());
    let header_len = be16(6) as usize;
    let name_len = be16(32) as usize;
    let payload_len = be32(36) as usize;
    assert_eq!(
        d.len(),
        header_len + name_len + payload_len,
        "lengths add up to the datagram"
    );
    Decoded {
        magic: d[0..4].try_into().unwrap(),
        version: d[4],
        format: d[5],
        header_len: header_len as u16,
        session_hash: be32(8),
        seq: be64(12),
        event_hash: be32(20),
        ts_micros: be64(24) as i64,
        name: String::from_utf8(d[header_len..header_len + name_len].to_vec()).unwrap(),
        payload: serde_json::from_slice(&d[header_len + name_len..]).unwrap(),
    }
}

#[tokio::test]
async fn binary_datagrams_carry_every_field() {
    let app = spawn_app().await;
    let (a, port_a) = receiver();
    let (b, port_b) = receiver();
    app.create_session(json!({"id": "udp-bin", "enabledDistributors": ["udp"],
        "distributors": {"udp": {"targets": [format!("127.0.0.1:{port_a}"), {"host": "127.0.0.1", "port": port_b}]}}}))
        .await;

    app.publish("udp-bin", json!([
        {"event": "gaze_sample", "data": {"x": 0.25, "y": 0.75}, "ts": "2025-01-15T14:30:22.123456Z"},
        {"event": "pupil", "data": {"d": 3.1}}
    ]))
    .await;
    let first = decode(&recv(&a));
    let second = decode(&recv(&a));
    let copy = decode(&recv(&b));

    assert_eq!(&first.magic, b"SYNO");
    assert_eq!((first.version, first.format, first.header_len), (1, 1, 40));
    assert_eq!(first.session_hash, fnv("udp-bin"));
    assert_eq!(first.seq, 1);
    assert_eq!(first.event_hash, fnv("gaze_sample"));
    assert_eq!(first.ts_micros, 1_736_951_422_123_456);
    assert_eq!(first.name, "gaze_sample");
    assert_eq!(first.payload, json!({"x": 0.25, "y": 0.75}));
    assert_eq!((second.seq, second.name.as_str()), (2, "pupil"));
    assert_eq!(second.payload, json!({"d": 3.1}));
    assert_eq!(
        (copy.seq, copy.name.as_str()),
        (1, "gaze_sample"),
        "every target gets every datagram"
    );
    let udp = app.distributor("udp-bin", "udp").await;
    assert_eq!(
        (udp["sent"].as_u64(), udp["failed"].as_u64()),
        (Some(2), Some(0))
    );
}

#[tokio::test]
async fn json_encoding_sends_the_envelope() {
    let app = spawn_app().await;
    let (socket, port) = receiver();
    app.create_session(json!({"id": "udp-json", "enabledDistributors": ["udp"],
        "distributors": {"udp": {"targets": [format!("127.0.0.1:{port}")], "encoding": "json"}}}))
        .await;

    app.publish(
        "udp-json",
        json!({"event": "line_cross", "data": {"line": "gate"}}),
    )
    .await;
    let envelope: Value = serde_json::from_slice(&recv(&socket)).unwrap();

    assert_eq!(envelope["session"], "udp-json");
    assert_eq!(envelope["seq"], 1);
    assert_eq!(envelope["event"], "line_cross");
    assert_eq!(envelope["data"], json!({"line": "gate"}));
}

#[tokio::test]
async fn oversized_datagrams_are_refused_and_counted_not_cut() {
    let app = spawn_app().await;
    let (socket, port) = receiver();
    app.create_session(json!({"id": "udp-big", "enabledDistributors": ["udp"],
        "distributors": {"udp": {"targets": [format!("127.0.0.1:{port}")], "maxDatagramBytes": 200}}}))
        .await;

    app.publish(
        "udp-big",
        json!([
            {"event": "huge", "data": {"blob": "x".repeat(500)}},
            {"event": "small", "data": {}}
        ]),
    )
    .await;
    let only = decode(&recv(&socket));
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let nothing_more = socket.recv(&mut [0u8; 2048]);

    assert_eq!(
        (only.seq, only.name.as_str()),
        (2, "small"),
        "the oversized event was not sent, not even cut"
    );
    assert!(nothing_more.is_err());
    let udp = app.distributor("udp-big", "udp").await;
    assert_eq!(
        (udp["sent"].as_u64(), udp["failed"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(
        udp["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("exceeds maxDatagramBytes 200"),
        "{udp}"
    );
    assert_eq!(
        udp["breaker"], "closed",
        "a refused event says nothing about the peer"
    );
}

#[tokio::test]
async fn udp_settings_are_validated_at_once() {
    let app = spawn_app().await;

    let missing = app
        .post(
            "/api/v1/sessions/validate",
            &json!({"enabledDistributors": ["udp"]}),
        )
        .await;
    let bad = app
        .post("/api/v1/sessions/validate", &json!({"enabledDistributors": ["udp"], "distributors": {"udp": {
            "targets": ["host-only", "h:70000", {"port": 9}], "encoding": "morse", "maxDatagramBytes": 9000}}}))
        .await;

    assert_eq!(missing.body["valid"], false);
    assert!(missing.body["errors"][0]
        .as_str()
        .unwrap()
        .contains("UDP distributor requires at least one target"));
    let errors: Vec<String> = serde_json::from_value(bad.body["errors"].clone()).unwrap();
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert!(
        errors
            .iter()
            .filter(|e| e.contains("port must be 1-65535"))
            .count()
            == 2,
        "{errors:#?}"
    );
    assert!(errors.iter().any(|e| e.contains("host is missing")));
    assert!(errors.iter().any(|e| e.contains("encoding")));
    assert_eq!(
        bad.body["warnings"].as_array().unwrap().len(),
        1,
        "fragmentation warning"
    );
}
