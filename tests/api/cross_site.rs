//! Requests a web page on another site can make: "simple" requests (a text/plain or
//! form body, or none) that browsers send anywhere without a preflight, state-changing
//! requests carrying a foreign `Origin`, and requests naming another host (DNS
//! rebinding). The browser itself drives the same attack in browser.rs.

use serde_json::{json, Value};

use crate::helpers::*;

const ADMIN: &str = "syn_cross-site-admin-00000000000000000000000000000000";

/// A request to `path` with `headers`, and an optional raw body.
async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Answer {
    let mut request = app.request(method, path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    let response = request.send().await.expect("an answer");
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    Answer { status, body }
}

fn error_of(answer: &Answer) -> &str {
    answer.body["error"].as_str().unwrap_or_default()
}

/// The sessions made over REST (the built-in `system` one aside).
async fn session_ids(app: &TestApp) -> Vec<String> {
    app.get("/api/v1/sessions").await.body["sessions"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|s| s["id"].as_str().map(str::to_string))
        .filter(|id| id != "system")
        .collect()
}

#[tokio::test]
async fn json_routes_take_only_json_and_binary_routes_name_what_they_take() {
    let app = spawn_app().await;
    let body = r#"{"id": "simple", "template": "local_testing"}"#;
    let post = reqwest::Method::POST;
    for (label, headers) in [
        ("text/plain", vec![("content-type", "text/plain")]),
        (
            "a form",
            vec![("content-type", "application/x-www-form-urlencoded")],
        ),
        ("no content type", vec![]),
    ] {
        let answer = send(&app, post.clone(), "/api/v1/sessions", &headers, Some(body)).await;
        assert_eq!(answer.status, 415, "{label}: {}", answer.body);
        assert!(
            error_of(&answer).contains("application/json"),
            "{label}: {}",
            answer.body
        );
    }
    assert!(session_ids(&app).await.is_empty(), "nothing was created");

    // JSON with nothing in it, where a body is needed.
    let json = [("content-type", "application/json")];
    let empty = send(&app, post.clone(), "/api/v1/sessions", &json, Some("")).await;
    assert_eq!(empty.status, 400, "{}", empty.body);
    assert!(error_of(&empty).contains("empty"), "{}", empty.body);
    let created = send(&app, post.clone(), "/api/v1/sessions", &json, Some(body)).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let json_suffix = [("content-type", "application/merge-patch+json")];
    let validated = send(
        &app,
        post.clone(),
        "/api/v1/sessions/validate",
        &json_suffix,
        Some(r#"{"id": "v"}"#),
    )
    .await;
    assert_eq!(
        validated.status, 200,
        "a +json type is JSON: {}",
        validated.body
    );

    // Routes that read their body themselves: events, a distributor, a recording.
    let text = [("content-type", "text/plain")];
    let events = send(
        &app,
        post.clone(),
        "/api/v1/sessions/simple/events",
        &text,
        Some(r#"{"event": "e"}"#),
    )
    .await;
    assert_eq!(events.status, 415, "{}", events.body);
    let events = send(
        &app,
        post.clone(),
        "/api/v1/sessions/simple/events",
        &json,
        Some(""),
    )
    .await;
    assert_eq!(events.status, 400, "{}", events.body);
    assert_eq!(app.status("simple").await["events_received"], 0);
    let put = reqwest::Method::PUT;
    let dist = send(
        &app,
        put.clone(),
        "/api/v1/sessions/simple/distributors/sse",
        &text,
        Some("{}"),
    )
    .await;
    assert_eq!(dist.status, 415, "{}", dist.body);
    // An empty body (the distributor's kept settings) needs no type.
    let dist = send(
        &app,
        put,
        "/api/v1/sessions/simple/distributors/sse",
        &[],
        None,
    )
    .await;
    assert_eq!(dist.status, 200, "{}", dist.body);
    let rec = send(
        &app,
        post.clone(),
        "/api/v1/sessions/simple/recordings",
        &text,
        Some("{}"),
    )
    .await;
    assert_eq!(rec.status, 415, "{}", rec.body);
    let rec = send(
        &app,
        post.clone(),
        "/api/v1/sessions/simple/recordings",
        &[],
        None,
    )
    .await;
    assert_eq!(rec.status, 201, "no body: the defaults: {}", rec.body);

    // Binary routes say what they take.
    let detect = send(
        &app,
        post.clone(),
        "/api/v1/detect",
        &text,
        Some("not an image"),
    )
    .await;
    assert_eq!(detect.status, 415, "{}", detect.body);
    assert!(error_of(&detect).contains("image/jpeg"), "{}", detect.body);
    let detect = send(
        &app,
        post.clone(),
        "/api/v1/detect",
        &[],
        Some("not an image"),
    )
    .await;
    assert_eq!(detect.status, 415, "{}", detect.body);
    let import = send(
        &app,
        post.clone(),
        "/api/v1/recordings",
        &text,
        Some("MCAP"),
    )
    .await;
    assert_eq!(import.status, 415, "{}", import.body);
    assert!(
        error_of(&import).contains("application/octet-stream"),
        "{}",
        import.body
    );
}

#[tokio::test]
async fn a_page_from_an_unlisted_origin_changes_nothing_in_any_mode() {
    let app = spawn_app().await;
    let own = app.address.clone();
    let json = ("content-type", "application/json");
    let post = reqwest::Method::POST;
    let create = |id: &str| json!({"id": id, "template": "local_testing"}).to_string();
    for origin in [
        "http://evil.example",
        "null",
        "http://127.0.0.1.evil.example:8080",
        "https://127.0.0.1",
    ] {
        let answer = send(
            &app,
            post.clone(),
            "/api/v1/sessions",
            &[json, ("origin", origin)],
            Some(&create("foreign")),
        )
        .await;
        assert_eq!(answer.status, 403, "Origin {origin}: {}", answer.body);
        assert!(
            error_of(&answer).contains("cors_origins"),
            "{}",
            answer.body
        );
    }
    // Without Origin, a browser's Sec-Fetch-Site still gives it away.
    let answer = send(
        &app,
        post.clone(),
        "/api/v1/sessions",
        &[json, ("sec-fetch-site", "cross-site")],
        Some(&create("foreign")),
    )
    .await;
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert!(session_ids(&app).await.is_empty());

    // The server's own pages, the default local pages, and clients that are not browsers.
    let mine = send(
        &app,
        post.clone(),
        "/api/v1/sessions",
        &[json, ("origin", &own)],
        Some(&create("own")),
    )
    .await;
    assert_eq!(mine.status, 201, "{}", mine.body);
    let dev = send(
        &app,
        post.clone(),
        "/api/v1/sessions",
        &[json, ("origin", "http://localhost:5173")],
        Some(&create("dev")),
    )
    .await;
    assert_eq!(dev.status, 201, "{}", dev.body);
    let same_site = send(
        &app,
        post.clone(),
        "/api/v1/sessions",
        &[json, ("sec-fetch-site", "same-origin")],
        Some(&create("tool")),
    )
    .await;
    assert_eq!(same_site.status, 201, "{}", same_site.body);

    // Every state-changing method; reads stay open (CORS keeps their answers from pages).
    let evil = ("origin", "http://evil.example");
    let delete = send(
        &app,
        reqwest::Method::DELETE,
        "/api/v1/sessions/own",
        &[evil],
        None,
    )
    .await;
    assert_eq!(delete.status, 403, "{}", delete.body);
    let put = send(
        &app,
        reqwest::Method::PUT,
        "/api/v1/sessions/own/routing",
        &[evil, json],
        Some(r#"{"*": ["sse"]}"#),
    )
    .await;
    assert_eq!(put.status, 403, "{}", put.body);
    let events = send(
        &app,
        post.clone(),
        "/api/v1/sessions/own/events",
        &[evil, json],
        Some(r#"{"event": "e"}"#),
    )
    .await;
    assert_eq!(events.status, 403, "{}", events.body);
    let read = send(
        &app,
        reqwest::Method::GET,
        "/api/v1/sessions/own",
        &[evil],
        None,
    )
    .await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.body["events_received"], 0);
    let mut ids = session_ids(&app).await;
    ids.sort();
    assert_eq!(ids, ["dev", "own", "tool"]);

    // Production: a valid admin token does not make a foreign page's request acceptable.
    let production = spawn_app_with(|s| {
        s.server.mode = synopticon::configuration::Mode::Production;
        s.auth.tokens = vec![token_config("admin", "admin", ADMIN)];
    })
    .await
    .with_token(ADMIN);
    // Counters are the process's: what this server adds is what is compared.
    let origin_refusals = |metrics: &str| {
        metric_value(
            metrics,
            "synopticon_http_cross_site_refused_total{reason=\"origin\"}",
        )
        .unwrap_or(0.0)
    };
    let before = origin_refusals(&production.metrics().await);
    let refused = send(
        &production,
        post.clone(),
        "/api/v1/sessions",
        &[json, evil],
        Some(&create("p")),
    )
    .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let listed_nowhere = send(
        &production,
        post.clone(),
        "/api/v1/sessions",
        &[json, ("origin", "http://localhost:5173")],
        Some(&create("p")),
    )
    .await;
    assert_eq!(
        listed_nowhere.status, 403,
        "production lists no origin by default: {}",
        listed_nowhere.body
    );
    let own = production.address.clone();
    let accepted = send(
        &production,
        post,
        "/api/v1/sessions",
        &[json, ("origin", &own)],
        Some(&create("p")),
    )
    .await;
    assert_eq!(accepted.status, 201, "{}", accepted.body);
    let metrics = production.metrics().await;
    assert_eq!(origin_refusals(&metrics) - before, 2.0, "{metrics}");
}

#[tokio::test]
async fn a_request_naming_another_host_is_refused_so_dns_rebinding_gets_nothing() {
    let app = spawn_app().await;
    let port = app.port;
    // Counters are the process's: what this test adds is what is compared.
    let host_refusals = |metrics: &str| {
        metric_value(
            metrics,
            "synopticon_http_cross_site_refused_total{reason=\"host\"}",
        )
        .unwrap_or(0.0)
    };
    let before = host_refusals(&app.metrics().await);
    let get = |host: String| {
        let app = &app;
        async move {
            send(
                app,
                reqwest::Method::GET,
                "/api/config",
                &[("host", &host)],
                None,
            )
            .await
        }
    };
    for host in [
        format!("evil.example:{port}"),
        "evil.example".to_string(),
        format!("localhost.evil.example:{port}"),
        format!("127.0.0.1.nip.io:{port}"),
        format!("[::2]:{port}"),
    ] {
        let answer = get(host.clone()).await;
        assert_eq!(answer.status, 421, "Host {host}: {}", answer.body);
        assert!(
            error_of(&answer).contains("allowed_hosts"),
            "{}",
            answer.body
        );
    }
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("LOCALHOST:{port}"),
        format!("[::1]:{port}"),
        "localhost".to_string(),
    ] {
        let answer = get(host.clone()).await;
        assert_eq!(answer.status, 200, "Host {host}: {}", answer.body);
    }
    // The dashboard and the live feeds too.
    let page = send(
        &app,
        reqwest::Method::GET,
        "/",
        &[("host", "evil.example")],
        None,
    )
    .await;
    assert_eq!(page.status, 421);
    app.create_session(json!({"id": "feed", "template": "local_testing"}))
        .await;
    let sse = send(
        &app,
        reqwest::Method::GET,
        "/api/v1/sessions/feed/sse",
        &[("host", "evil.example")],
        None,
    )
    .await;
    assert_eq!(sse.status, 421);
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://127.0.0.1:{port}/api/v1/sessions/feed/ws"
        ))
        .expect("a request");
    request
        .headers_mut()
        .insert("host", "evil.example".parse().expect("a header"));
    request
        .headers_mut()
        .insert("origin", "http://evil.example".parse().expect("a header"));
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 421),
        other => panic!("expected 421, got {:?}", other.map(|(_, r)| r.status())),
    }
    let metrics = app.metrics().await;
    assert_eq!(host_refusals(&metrics) - before, 8.0, "{metrics}");

    // Listed names, with or without a port; production answers any name by default.
    let listed = spawn_app_with(|s| {
        s.server.allowed_hosts = vec![
            "lab.example.org".into(),
            "*.lab.test".into(),
            "box:9000".into(),
        ];
    })
    .await;
    let try_host = |host: &'static str| {
        let listed = &listed;
        async move {
            send(
                listed,
                reqwest::Method::GET,
                "/api/health",
                &[("host", host)],
                None,
            )
            .await
            .status
        }
    };
    assert_eq!(try_host("lab.example.org:8080").await, 200);
    assert_eq!(try_host("cam.lab.test").await, 200);
    assert_eq!(try_host("box:9000").await, 200);
    assert_eq!(try_host("box:9001").await, 421);
    assert_eq!(try_host("lab.test.evil").await, 421);
    assert_eq!(
        try_host("localhost").await,
        421,
        "a list replaces the default"
    );
    let production = spawn_app_with(|s| {
        s.server.mode = synopticon::configuration::Mode::Production;
        s.auth.tokens = vec![token_config("admin", "admin", ADMIN)];
    })
    .await
    .with_token(ADMIN);
    let answer = send(
        &production,
        reqwest::Method::GET,
        "/api/config",
        &[("host", "synopticon.lab.example:443")],
        None,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);

    // Entries that are no host are named at start.
    let mut settings = test_settings();
    settings.server.allowed_hosts = vec![
        "http://lab.example.org".into(),
        "::1".into(),
        "ok.example".into(),
    ];
    let report = settings.validate(&synopticon_actors::session::templates::TemplateStore::new());
    let problems: Vec<&String> = report
        .errors
        .iter()
        .filter(|e| e.contains("server.allowed_hosts"))
        .collect();
    assert_eq!(problems.len(), 2, "{:?}", report.errors);
}

#[tokio::test]
async fn behind_a_proxy_that_ends_tls_the_dashboard_is_still_its_own_origin() {
    // The proxy passes `Host: lab.example.org` on; the browser's page is https://.
    let app = spawn_app_with(|s| s.server.allowed_hosts = vec!["lab.example.org".into()]).await;
    let json = ("content-type", "application/json");
    let post = |host: &'static str, origin: &'static str, id: &'static str| {
        let app = &app;
        async move {
            send(
                app,
                reqwest::Method::POST,
                "/api/v1/sessions",
                &[json, ("host", host), ("origin", origin)],
                Some(&json!({"id": id, "template": "local_testing"}).to_string()),
            )
            .await
            .status
        }
    };
    assert_eq!(
        post("lab.example.org", "https://lab.example.org", "tls").await,
        201
    );
    assert_eq!(
        post("lab.example.org", "http://lab.example.org", "plain").await,
        201
    );
    // A port the Host names must be the page's.
    assert_eq!(
        post("lab.example.org:8443", "https://lab.example.org", "a").await,
        403
    );
    assert_eq!(
        post("lab.example.org:8443", "https://lab.example.org:8443", "b").await,
        201
    );
    assert_eq!(
        post("lab.example.org", "https://other.example.org", "c").await,
        403
    );
}

#[tokio::test]
async fn with_metrics_open_to_all_production_answers_only_the_names_it_is_reached_by() {
    let open = spawn_app_with(|s| {
        s.server.mode = synopticon::configuration::Mode::Production;
        s.auth.tokens = vec![token_config("admin", "admin", ADMIN)];
        s.auth.metrics_public = true;
    })
    .await;
    let metrics = |host: String| {
        let open = &open;
        async move {
            send(
                open,
                reqwest::Method::GET,
                "/metrics",
                &[("host", &host)],
                None,
            )
            .await
            .status
        }
    };
    // A rebinding page would read every session's and source's name otherwise.
    assert_eq!(metrics("evil.example".into()).await, 421);
    assert_eq!(metrics(format!("127.0.0.1:{}", open.port)).await, 200);
    // Without /metrics open, any name (every readable route needs a token); a request
    // naming no host at all is taken too (an HTTP/1.0 probe), and answered 401.
    let closed = spawn_app_with(|s| {
        s.server.mode = synopticon::configuration::Mode::Production;
        s.auth.tokens = vec![token_config("admin", "admin", ADMIN)];
    })
    .await;
    let answer = send(
        &closed.with_token(ADMIN),
        reqwest::Method::GET,
        "/api/v1/sessions",
        &[("host", "synopticon.lab.example")],
        None,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", closed.port))
        .await
        .expect("connect");
    raw.write_all(b"GET /api/v1/sessions HTTP/1.0\r\n\r\n")
        .await
        .expect("write");
    let mut head = vec![0u8; 64];
    let n = tokio::time::timeout(DEADLINE, raw.read(&mut head))
        .await
        .expect("an answer in time")
        .expect("read");
    let head = String::from_utf8_lossy(&head[..n]);
    assert!(
        head.starts_with("HTTP/1.0 401") || head.starts_with("HTTP/1.1 401"),
        "{head}"
    );
}
