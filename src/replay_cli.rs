//! `synopticon replay FILE --to URL --session ID`: plays a recording into a session of a
//! running server. The file goes to the server (`POST /api/v1/recordings`), which replays
//! it like any of its own recordings (marks, rate, window, re-analysis); progress is
//! printed until the replay ends. Ctrl-C stops it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use synopticon_actors::egress::{http_client, EgressPolicy};

/// What to play, where.
#[derive(Debug, Clone)]
pub struct ReplayArgs {
    /// The `.mcap` file.
    pub file: PathBuf,
    /// The server, e.g. `http://127.0.0.1:8080`.
    pub to: String,
    /// The session to play into.
    pub session: String,
    /// 1.0 real time, 0 as fast as possible.
    pub rate: f64,
    /// Start again at the end (until Ctrl-C).
    pub looping: bool,
    /// Event globs to play (all when empty).
    pub events: Vec<String>,
    /// Seconds into the recording to start at.
    pub start_offset_s: Option<f64>,
    /// Seconds to play.
    pub duration_s: Option<f64>,
    /// Re-analyse the recorded detections with this source's lines and zones.
    pub reanalyze: Option<String>,
    /// With `reanalyze`: a dry run of the rules in force too.
    pub rules: bool,
    /// Create the session if it does not exist.
    pub create: bool,
    /// Bearer token.
    pub token: Option<String>,
}

/// How often progress is asked for.
const POLL: Duration = Duration::from_millis(500);
/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<(u16, Value)> {
        let request = match &self.token {
            Some(t) => request.bearer_auth(t),
            None => request,
        };
        let response = request
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    async fn json(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let url = self.url(path);
        let request = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url),
        };
        let request = match body {
            Some(b) => request
                .header("content-type", "application/json")
                .body(b.to_string()),
            None => request,
        };
        self.send(request).await
    }
}

/// The server's error, as it said it.
fn said(status: u16, body: &Value) -> String {
    let details = body["details"]
        .as_array()
        .map(|d| {
            d.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default();
    match body["error"].as_str() {
        Some(e) if details.is_empty() => format!("{status}: {e}"),
        Some(e) => format!("{status}: {e}: {details}"),
        None => format!("{status}: {body}"),
    }
}

/// Plays the file; the summary line when it ends.
pub async fn run(args: ReplayArgs) -> anyhow::Result<String> {
    synopticon_actors::distributor::http::install_crypto_provider();
    let base = args.to.trim_end_matches('/').to_string();
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        bail!(
            "--to: the server's URL, e.g. http://127.0.0.1:8080, got {:?}",
            args.to
        );
    }
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let client = Client {
        http: http_client(&base, &Arc::new(EgressPolicy::open())),
        base,
        token: args.token.clone(),
    };
    let name: String = args
        .file
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let upload = client
        .http
        .post(client.url(&format!("/api/v1/recordings?name={name}")))
        .header("content-type", "application/octet-stream")
        .body(bytes);
    let (status, recording) = client.send(upload).await?;
    if status != 201 {
        bail!(
            "the server did not take the file: {}",
            said(status, &recording)
        );
    }
    let rid = recording["id"].as_str().unwrap_or_default().to_string();
    eprintln!(
        "recording {rid}: {} events, {} frames of detections, {:.1} s",
        recording["events"],
        recording["detections"],
        recording["duration_s"].as_f64().unwrap_or(0.0)
    );
    let session = &args.session;
    if args.create {
        let (status, body) = client
            .json("POST", "/api/v1/sessions", Some(json!({"id": session})))
            .await?;
        if status != 201 && status != 409 {
            bail!("cannot create session {session:?}: {}", said(status, &body));
        }
    }
    let mut request = json!({"recording": rid, "rate": args.rate, "loop": args.looping});
    if !args.events.is_empty() {
        request["events"] = json!(args.events);
    }
    if let Some(s) = args.start_offset_s {
        request["start_offset_s"] = json!(s);
    }
    if let Some(d) = args.duration_s {
        request["duration_s"] = json!(d);
    }
    if let Some(source) = &args.reanalyze {
        request["reanalyze"] = json!(source);
        request["rules"] = json!(args.rules);
    }
    let path = format!("/api/v1/sessions/{session}/replay");
    let (status, started) = client.json("POST", &path, Some(request)).await?;
    if status != 201 {
        bail!("the replay did not start: {}", said(status, &started));
    }
    let total = started["total"].as_u64().unwrap_or(0);
    eprintln!(
        "playing {total} events into session {session} at rate {}",
        args.rate
    );
    let mut shown = u64::MAX;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                let _ = client.json("DELETE", &path, None).await;
                bail!("stopped (Ctrl-C)");
            }
            _ = tokio::time::sleep(POLL) => {}
        }
        let (status, now) = client.json("GET", &path, None).await?;
        if status != 200 {
            bail!("the replay's status cannot be read: {}", said(status, &now));
        }
        let played = now["played"].as_u64().unwrap_or(0);
        if played != shown {
            shown = played;
            eprintln!(
                "{} {played}/{total} events, {:.1}/{:.1} s{}",
                now["state"].as_str().unwrap_or("?"),
                now["position_s"].as_f64().unwrap_or(0.0),
                now["duration_s"].as_f64().unwrap_or(0.0),
                match now["loops"].as_u64() {
                    Some(n) if n > 0 => format!(", loop {n}"),
                    _ => String::new(),
                }
            );
        }
        match now["state"].as_str() {
            Some("finished") => {
                return Ok(format!(
                    "played {played} events of recording {rid} into session {session}"
                ))
            }
            Some("stopped") => match now["error"].as_str() {
                Some(e) => bail!("the replay stopped: {e}"),
                None => bail!("the replay was stopped after {played} events"),
            },
            _ => {}
        }
    }
}
