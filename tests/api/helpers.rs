//! Test harness: a real server on port 0 per test, real HTTP/WebSocket/SSE clients, and
//! `wait_until` with deadlines instead of sleeps.

use std::future::Future;
use std::time::Duration;

use eventsource_stream::{Event as SseEvent, Eventsource};
use futures_util::{SinkExt, Stream, StreamExt};
use serde_json::Value;
use synopticon::configuration::Settings;
use synopticon::startup::Application;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Longest any single wait in a test may take.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A running server and a client for it.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    /// Bound port.
    pub port: u16,
    /// HTTP client.
    pub client: reqwest::Client,
    /// Bearer token sent with every request and live feed, if any.
    pub token: Option<String>,
}

/// Settings every test starts from: port 0, fast heartbeats, debug hooks on.
pub fn test_settings() -> Settings {
    let (mut settings, _) = Settings::load_with_env(None, []).expect("embedded default loads");
    settings.server.port = 0;
    settings.server.workers = 1;
    settings.server.debug_endpoints = true;
    // Nothing kept: tests that keep state give their own store.
    settings.store.url = "memory".into();
    settings.live.heartbeat_interval_ms = 500;
    settings.live.client_timeout_ms = 3000;
    settings.live.sse_heartbeat_ms = 500;
    settings.sessions.templates_dir =
        concat!(env!("CARGO_MANIFEST_DIR"), "/config/templates").into();
    settings.log.level = "warn".into();
    // Each server records into its own folder.
    settings.recording.dir = std::env::temp_dir()
        .join(format!("synopticon-recordings-{}", uuid::Uuid::new_v4()))
        .display()
        .to_string();
    // Test data carries fixed dates (the golden re-analysis holds them): edge messages of
    // any age are taken, but in the tests of the age limit itself.
    settings.server.edge_max_age_secs = 0;
    // Models load only in the tests that ask for them (see `with_models`).
    settings.inference.models.clear();
    settings.inference.default_model = String::new();
    settings
}

/// The cache folder `make assets` fills (models, images, ONNX Runtime, reference venv).
pub fn cache_dir() -> std::path::PathBuf {
    match std::env::var_os("SYNOPTICON_CACHE") {
        Some(dir) if !dir.is_empty() => dir.into(),
        _ => concat!(env!("CARGO_MANIFEST_DIR"), "/.cache").into(),
    }
}

/// A file under the cache folder; fails the test with the fix when it is missing.
pub fn asset(relative: &str) -> std::path::PathBuf {
    let path = cache_dir().join(relative);
    assert!(
        path.is_file(),
        "{} is missing: run `make assets` (make test does it)",
        path.display()
    );
    path
}

/// The ONNX Runtime library from the cache (or ORT_DYLIB_PATH).
pub fn ort_library() -> String {
    match std::env::var("ORT_DYLIB_PATH") {
        Ok(path) if !path.is_empty() => path,
        _ => asset("onnxruntime/libonnxruntime.so.1.32.0")
            .display()
            .to_string(),
    }
}

/// Starts a server with the test settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts a server with the test settings changed by `tweak`.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings) + Send + 'static) -> TestApp {
    synopticon_actors::distributor::http::install_crypto_provider();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut settings = test_settings();
        tweak(&mut settings);
        synopticon::telemetry::init_logging(&settings.log);
        let result = actix_rt::System::new().block_on(async move {
            match Application::build(settings).await {
                Ok(app) => {
                    let _ = tx.send(Ok(app.port()));
                    app.run_until_stopped().await
                }
                Err(e) => {
                    let _ = tx.send(Err(format!("{e:#}")));
                    Ok(())
                }
            }
        });
        if let Err(e) = result {
            eprintln!("test server stopped: {e:#}");
        }
    });
    let port = tokio::time::timeout(DEADLINE, rx)
        .await
        .expect("server starts in time")
        .expect("server thread alive")
        .expect("server builds");
    TestApp::on(port)
}

/// A bearer token entry for `[[auth.tokens]]`: `secret` hashed, no scope.
pub fn token_config(id: &str, role: &str, secret: &str) -> synopticon::auth::tokens::TokenConfig {
    synopticon::auth::tokens::TokenConfig {
        id: id.into(),
        role: role.into(),
        sha256: synopticon::auth::tokens::hash_hex(secret),
        sessions: None,
        sources: None,
        events: None,
        devices: None,
        description: String::new(),
    }
}

/// The real binary with a configuration of its own (it must keep `port = 0` and let the
/// `synopticon::startup` info line through): for tests that need a process of their own
/// (its memory, its file limit, a signal). Killed when dropped.
pub struct ServerProcess {
    /// The process.
    pub child: std::process::Child,
    /// A client for it.
    pub app: TestApp,
    /// Its stdout (log) lines after the one with its address.
    pub log: std::sync::mpsc::Receiver<String>,
    dir: std::path::PathBuf,
}

impl ServerProcess {
    /// Starts `synopticon serve` with `config` (TOML text).
    pub fn start(config: &str) -> ServerProcess {
        Self::start_with(config, |_| {})
    }

    /// The same, with the command adjusted first (environment, resource limits).
    pub fn start_with(
        config: &str,
        adjust: impl FnOnce(&mut std::process::Command),
    ) -> ServerProcess {
        Self::run("serve", config, adjust)
    }

    /// `synopticon edge` with `config`.
    pub fn edge(config: &str) -> ServerProcess {
        Self::run("edge", config, |_| {})
    }

    fn run(
        subcommand: &str,
        config: &str,
        adjust: impl FnOnce(&mut std::process::Command),
    ) -> ServerProcess {
        use std::io::BufRead;
        synopticon_actors::distributor::http::install_crypto_provider();
        let dir = std::env::temp_dir().join(format!("synopticon-process-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("config.toml");
        // Each process keeps its state in its own folder unless the test says where.
        let config = if config.contains("[store]") {
            config.to_string()
        } else {
            format!(
                "{config}\n[store]\nurl = \"sqlite://{}/store.db\"\n",
                dir.display()
            )
        };
        std::fs::write(&file, config).expect("config file");
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_synopticon"));
        command
            .args([subcommand, "--config"])
            .arg(&file)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("NO_COLOR", "1")
            // As in `test_settings`: test data carries fixed dates.
            .env("SYNOPTICON__SERVER__EDGE_MAX_AGE_SECS", "0")
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        adjust(&mut command);
        let mut child = command.spawn().expect("the server binary starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, log) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        let prefix = "listening on http://127.0.0.1:";
        let port: u16 = loop {
            let line = log.recv_timeout(DEADLINE).unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("the server did not log its address in time")
            });
            if let Some(rest) = line.split(prefix).nth(1) {
                break rest
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
                    .and_then(|p| p.parse().ok())
                    .expect("a port after the address");
            }
        };
        let app = TestApp::on(port);
        ServerProcess {
            child,
            app,
            log,
            dir,
        }
    }

    /// Its resident memory, in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc status of the server");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls `check` until it returns `Some`, failing the test after `timeout`.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// An HTTP answer: status and JSON body (Null when not JSON).
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Body.
    pub body: Value,
}

impl TestApp {
    /// A client of the server on 127.0.0.1:`port`, without a token.
    pub fn on(port: u16) -> TestApp {
        TestApp {
            address: format!("http://127.0.0.1:{port}"),
            port,
            client: reqwest::Client::builder()
                .timeout(DEADLINE)
                .build()
                .expect("client"),
            token: None,
        }
    }

    /// Absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// The same server, every request sending `token`.
    pub fn with_token(&self, token: &str) -> TestApp {
        TestApp {
            address: self.address.clone(),
            port: self.port,
            client: self.client.clone(),
            token: Some(token.to_string()),
        }
    }

    /// A request to `path` with the token, if any.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, self.url(path));
        match &self.token {
            Some(t) => request.bearer_auth(t),
            None => request,
        }
    }

    async fn answer(response: reqwest::Response) -> Answer {
        let status = response.status().as_u16();
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        Answer { status, body }
    }

    /// GET.
    pub async fn get(&self, path: &str) -> Answer {
        Self::answer(
            self.request(reqwest::Method::GET, path)
                .send()
                .await
                .expect("GET"),
        )
        .await
    }

    /// POST with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        Self::answer(
            self.request(reqwest::Method::POST, path)
                .json(body)
                .send()
                .await
                .expect("POST"),
        )
        .await
    }

    /// POST with a raw body.
    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> Answer {
        let request = self
            .request(reqwest::Method::POST, path)
            .header("content-type", "application/json");
        Self::answer(request.body(body).send().await.expect("POST")).await
    }

    /// POST with a raw body and a content type.
    pub async fn post_bytes(&self, path: &str, body: Vec<u8>, content_type: &str) -> Answer {
        let request = self
            .request(reqwest::Method::POST, path)
            .header("content-type", content_type);
        Self::answer(request.body(body).send().await.expect("POST")).await
    }

    /// POST a multipart form.
    pub async fn post_form(&self, path: &str, form: reqwest::multipart::Form) -> Answer {
        let request = self.request(reqwest::Method::POST, path).multipart(form);
        Self::answer(request.send().await.expect("POST")).await
    }

    /// PATCH with a JSON body.
    pub async fn patch(&self, path: &str, body: &Value) -> Answer {
        Self::answer(
            self.request(reqwest::Method::PATCH, path)
                .json(body)
                .send()
                .await
                .expect("PATCH"),
        )
        .await
    }

    /// PUT with a JSON body.
    pub async fn put(&self, path: &str, body: &Value) -> Answer {
        Self::answer(
            self.request(reqwest::Method::PUT, path)
                .json(body)
                .send()
                .await
                .expect("PUT"),
        )
        .await
    }

    /// DELETE.
    pub async fn delete(&self, path: &str) -> Answer {
        Self::answer(
            self.request(reqwest::Method::DELETE, path)
                .send()
                .await
                .expect("DELETE"),
        )
        .await
    }

    /// Creates a session and asserts 201.
    pub async fn create_session(&self, body: Value) -> Value {
        let answer = self.post("/api/v1/sessions", &body).await;
        assert_eq!(answer.status, 201, "create session: {}", answer.body);
        answer.body
    }

    /// Posts events and asserts 202.
    pub async fn publish(&self, session: &str, events: Value) -> Value {
        let answer = self
            .post(&format!("/api/v1/sessions/{session}/events"), &events)
            .await;
        assert_eq!(answer.status, 202, "publish: {}", answer.body);
        answer.body
    }

    /// Session status.
    pub async fn status(&self, session: &str) -> Value {
        let answer = self.get(&format!("/api/v1/sessions/{session}")).await;
        assert_eq!(answer.status, 200, "status: {}", answer.body);
        answer.body
    }

    /// One distributor's status within a session status.
    pub async fn distributor(&self, session: &str, kind: &str) -> Value {
        let status = self.status(session).await;
        status["distributors"]
            .as_array()
            .and_then(|ds| ds.iter().find(|d| d["kind"] == kind).cloned())
            .unwrap_or(Value::Null)
    }

    /// `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.request(reqwest::Method::GET, "/metrics")
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics body")
    }

    /// Opens a WebSocket feed and reads its hello frame.
    pub async fn ws(&self, session: &str, query: &str) -> WsClient {
        let url = format!(
            "ws://127.0.0.1:{}/api/v1/sessions/{session}/ws{query}",
            self.port
        );
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = url.into_client_request().expect("ws request");
        if let Some(t) = &self.token {
            request.headers_mut().insert(
                "authorization",
                format!("Bearer {t}").parse().expect("header value"),
            );
        }
        let (stream, _) = tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(request))
            .await
            .expect("ws connects in time")
            .expect("ws handshake");
        let mut client = WsClient { stream };
        let hello = client.next_json().await.expect("hello frame");
        assert_eq!(hello["op"], "hello", "{hello}");
        client
    }

    /// Opens an SSE feed.
    pub async fn sse(&self, session: &str, query: &str, last_event_id: Option<u64>) -> SseClient {
        let mut request = self
            .request(
                reqwest::Method::GET,
                &format!("/api/v1/sessions/{session}/sse{query}"),
            )
            .timeout(Duration::from_secs(600));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.expect("sse request");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        SseClient {
            events: Box::pin(response.bytes_stream().eventsource()),
        }
    }
}

/// A WebSocket client.
pub struct WsClient {
    /// The raw stream, for tests that need it.
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What a WebSocket read produced.
#[derive(Debug)]
pub enum WsRead {
    /// A JSON text frame.
    Json(Value),
    /// A close frame: code and reason.
    Closed(u16, String),
}

impl WsClient {
    /// Next text frame or close frame (pings and pongs skipped); None on timeout/end.
    pub async fn read(&mut self) -> Option<WsRead> {
        loop {
            let next = tokio::time::timeout(DEADLINE, self.stream.next())
                .await
                .ok()??;
            match next.ok()? {
                Message::Text(text) => {
                    return Some(WsRead::Json(
                        serde_json::from_str(&text).expect("JSON frame"),
                    ))
                }
                Message::Close(frame) => {
                    return Some(match frame {
                        Some(f) => WsRead::Closed(f.code.into(), f.reason.to_string()),
                        None => WsRead::Closed(1005, String::new()),
                    })
                }
                _ => continue,
            }
        }
    }

    /// Next JSON frame (control or event).
    pub async fn next_json(&mut self) -> Option<Value> {
        match self.read().await? {
            WsRead::Json(v) => Some(v),
            WsRead::Closed(..) => None,
        }
    }

    /// Next event frame, skipping control replies (`op` frames).
    pub async fn next_event(&mut self) -> Option<Value> {
        loop {
            let v = self.next_json().await?;
            if v.get("op").is_none() {
                return Some(v);
            }
        }
    }

    /// `n` event frames.
    pub async fn events(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            match self.next_event().await {
                Some(v) => out.push(v),
                None => panic!("expected {n} events, feed ended after {i}"),
            }
        }
        out
    }

    /// Sends a JSON text frame.
    pub async fn send(&mut self, value: Value) {
        self.stream
            .send(Message::Text(value.to_string().into()))
            .await
            .expect("ws send");
    }

    /// Waits for the close frame, skipping anything before it.
    pub async fn closed(&mut self) -> (u16, String) {
        loop {
            match self.read().await {
                Some(WsRead::Closed(code, reason)) => return (code, reason),
                Some(WsRead::Json(_)) => continue,
                None => panic!("feed ended without a close frame"),
            }
        }
    }
}

/// An SSE client.
pub struct SseClient {
    events: std::pin::Pin<
        Box<
            dyn Stream<
                    Item = Result<SseEvent, eventsource_stream::EventStreamError<reqwest::Error>>,
                > + Send,
        >,
    >,
}

impl SseClient {
    /// Next event; None when the stream ended (or on timeout).
    pub async fn next(&mut self) -> Option<SseEvent> {
        tokio::time::timeout(DEADLINE, self.events.next())
            .await
            .ok()?
            .map(|e| e.expect("well-formed SSE"))
    }

    /// `n` events.
    pub async fn events(&mut self, n: usize) -> Vec<SseEvent> {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            match self.next().await {
                Some(e) => out.push(e),
                None => panic!("expected {n} SSE events, stream ended after {i}"),
            }
        }
        out
    }
}

/// `n` events named `name` with `{"i": k}` payloads.
/// The value of one series (name with its labels, exactly as exposed) in a `/metrics` text.
pub fn metric_value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

pub fn batch(name: &str, n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| serde_json::json!({"event": name, "data": {"i": i}}))
            .collect(),
    )
}

/// A throwaway certificate authority and a server certificate for 127.0.0.1 signed by it,
/// made with openssl in `dir`: returns (ca.pem, server.pem, server.key).
pub fn test_certificates(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let sh = |command: &str| {
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("sh");
        assert!(status.success(), "{command}");
    };
    std::fs::create_dir_all(dir).expect("dir");
    sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 -subj '/CN=synopticon test CA'");
    sh("openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj '/CN=127.0.0.1'");
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext.cnf");
    sh("openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 1 -extfile ext.cnf");
    sh("chmod 755 . && chmod 644 *");
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}
