//! The TLS listener: https:// and wss:// with a test CA; plain HTTP to it fails cleanly.

use std::sync::Arc;

use futures_util::StreamExt;
use rustls::pki_types::pem::PemObject;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::Connector;

use crate::helpers::*;

#[tokio::test]
async fn https_and_wss_serve_clients_that_trust_the_ca_and_plain_http_is_turned_away() {
    // Arrange: a CA, a certificate for 127.0.0.1, and a server that speaks TLS only.
    let dir = std::env::temp_dir().join(format!("synopticon-tls-{}", uuid::Uuid::new_v4()));
    let (ca, cert, key) = test_certificates(&dir);
    let (cert_file, key_file) = (cert.display().to_string(), key.display().to_string());
    let app = spawn_app_with(move |s| {
        s.server.tls_cert_file = cert_file;
        s.server.tls_key_file = key_file;
    })
    .await;
    let ca_pem = std::fs::read(&ca).expect("ca");
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca_pem).expect("ca pem"))
        .timeout(DEADLINE)
        .build()
        .expect("client");
    let base = format!("https://127.0.0.1:{}", app.port);

    // Act and assert: REST over https.
    let health = https
        .get(format!("{base}/api/health"))
        .send()
        .await
        .expect("https");
    assert_eq!(health.status(), 200);
    let created = https
        .post(format!("{base}/api/v1/sessions"))
        .json(&json!({"id": "secure-lab"}))
        .send()
        .await
        .expect("https POST");
    assert_eq!(created.status(), 201);

    // A WebSocket over TLS gets its hello and the session's events.
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&ca_pem) {
        roots.add(c.expect("certificate")).expect("root");
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let request = format!("wss://127.0.0.1:{}/api/v1/sessions/secure-lab/ws", app.port)
        .into_client_request()
        .expect("request");
    let (mut ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        request,
        None,
        false,
        Some(Connector::Rustls(Arc::new(tls))),
    )
    .await
    .expect("wss handshake");
    let next = |frame: Option<Result<tokio_tungstenite::tungstenite::Message, _>>| -> Value {
        let text = frame
            .expect("a frame")
            .expect("ok")
            .into_text()
            .expect("text");
        serde_json::from_str(&text).expect("json")
    };
    assert_eq!(next(ws.next().await)["op"], "hello");
    let posted = https
        .post(format!("{base}/api/v1/sessions/secure-lab/events"))
        .json(&json!({"event": "face_detected", "data": {"x": 1}}))
        .send()
        .await
        .expect("events");
    assert_eq!(posted.status(), 202);
    let event = next(ws.next().await);
    assert_eq!(
        (event["event"].clone(), event["data"]["x"].clone()),
        (json!("face_detected"), json!(1))
    );

    // Plain HTTP to the TLS port gets no answer it could mistake for one, and a client
    // that does not trust the CA is refused; the server serves on.
    let plain = reqwest::Client::builder()
        .timeout(DEADLINE)
        .build()
        .expect("client")
        .get(format!("http://127.0.0.1:{}/api/health", app.port))
        .send()
        .await;
    match plain {
        // Refused at once: a hang until the deadline would be a failure too.
        Err(e) => assert!(!e.is_timeout(), "plain HTTP hung instead of failing: {e}"),
        Ok(r) => assert!(
            !r.status().is_success(),
            "plain HTTP answered {}",
            r.status()
        ),
    }
    let untrusting = reqwest::Client::builder()
        .timeout(DEADLINE)
        .build()
        .expect("client")
        .get(format!("{base}/api/health"))
        .send()
        .await;
    assert!(
        untrusting.is_err(),
        "a client without the CA must not connect"
    );
    let again = https
        .get(format!("{base}/api/health"))
        .send()
        .await
        .expect("https");
    assert_eq!(again.status(), 200);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_missing_or_mismatched_certificate_is_a_clear_start_up_error() {
    let dir = std::env::temp_dir().join(format!("synopticon-tls-bad-{}", uuid::Uuid::new_v4()));
    let (ca, cert, _key) = test_certificates(&dir);
    let mut settings = test_settings();
    settings.server.tls_cert_file = cert.display().to_string();
    // The CA's key does not belong to the server certificate.
    settings.server.tls_key_file = dir.join("ca.key").display().to_string();
    let templates = synopticon_actors::session::templates::TemplateStore::new();
    let report = settings.validate(&templates);
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.contains("do not make a usable pair")),
        "{:?}",
        report.errors
    );
    settings.server.tls_cert_file = dir.join("nope.pem").display().to_string();
    let report = settings.validate(&templates);
    assert!(
        report.errors.iter().any(|e| e.contains("cannot read")),
        "{:?}",
        report.errors
    );
    settings.server.tls_cert_file = ca.display().to_string();
    settings.server.tls_key_file = String::new();
    let report = settings.validate(&templates);
    assert!(
        report.errors.iter().any(|e| e.contains("give both")),
        "{:?}",
        report.errors
    );
    let _ = std::fs::remove_dir_all(dir);
}
