//! HTTP webhook distributor: POSTs each event's JSON envelope to `baseUrl` + the event's
//! endpoint, with custom headers and a timeout.
//!
//! Retries use exponential backoff with full jitter and only for what can succeed later:
//! connection errors, timeouts, 408, 429 (honouring `Retry-After`) and 5xx. Any other
//! status is final: the event is reported as failed without a retry. Redirects are not
//! followed (a 3xx is final too, reported with its `Location`): following one would turn
//! the POST into a bodiless GET and hand the custom headers to another host. Receivers can
//! de-duplicate on the `X-Synopticon-Session` + `X-Synopticon-Seq` headers.

use std::sync::{Arc, Once};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use serde_json::Value;

use super::{Delivery, DistributorKind, Outcome, Protocol};
use crate::egress::EgressPolicy;
use crate::event::Event;
use crate::glob::Glob;
use crate::guardrails::Guardrails;
use crate::telemetry::DistributorTelemetry;
use crate::validation::{kind_of, FieldReader};

/// Default request timeout.
pub const DEFAULT_TIMEOUT_MS: u64 = 5000;
/// Default retries after the first attempt.
pub const DEFAULT_MAX_RETRIES: u64 = 3;
/// Default first backoff.
pub const DEFAULT_RETRY_BASE_MS: u64 = 200;
/// Default longest wait between attempts (also caps `Retry-After`).
pub const DEFAULT_RETRY_MAX_MS: u64 = 30_000;

/// Webhook settings.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// `http://` or `https://` base, without a trailing slash (`baseUrl`).
    pub base_url: String,
    /// Path for events no `endpoints` key matches (`endpoint`, default none).
    pub endpoint: String,
    /// Event pattern → path (`endpoints`), most specific first.
    pub endpoints: Vec<(Glob, String)>,
    /// Extra request headers (`headers`), e.g. `Authorization`.
    pub headers: HeaderMap,
    /// Per-attempt timeout (`timeoutMs`).
    pub timeout: Duration,
    /// Retries after the first attempt (`maxRetries`).
    pub max_retries: u32,
    /// First backoff (`retryBaseMs`); doubles per retry, with full jitter.
    pub retry_base: Duration,
    /// Longest wait between attempts (`retryMaxMs`).
    pub retry_max: Duration,
}

impl HttpConfig {
    /// The full URL for an event.
    pub fn url_for(&self, event: &str) -> String {
        let path = self
            .endpoints
            .iter()
            .find(|(g, _)| g.matches(event))
            .map(|(_, p)| p.as_str())
            .unwrap_or(&self.endpoint);
        format!("{}{}", self.base_url, path)
    }
}

fn check_path(path: &str, value: &Value) -> Result<String, String> {
    match value.as_str() {
        Some(p) if p.is_empty() || p.starts_with('/') => Ok(p.to_string()),
        Some(p) => Err(format!("{path}: {p:?} must start with /")),
        None => Err(format!(
            "{path}: must be a path string, got {}",
            kind_of(value)
        )),
    }
}

/// Headers a webhook's `headers` may not set: those that frame the request (a wrong
/// `Content-Length` or `Transfer-Encoding` corrupts it, `Host` sends it to another virtual
/// host, hop-by-hop ones change the connection) and the server's own `X-Synopticon-*`.
const RESERVED_HEADERS: [&str; 10] = [
    "content-length",
    "host",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
    "expect",
];

fn is_reserved_header(name: &HeaderName) -> bool {
    RESERVED_HEADERS.contains(&name.as_str()) || name.as_str().starts_with("x-synopticon-")
}

/// The `Location` of a redirect, shortened and cleaned for an error message.
fn location(headers: &HeaderMap) -> String {
    let raw = headers
        .get(reqwest::header::LOCATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_else(|| "nowhere (no Location header)".into());
    let clean: String = raw.chars().filter(|c| !c.is_control()).take(256).collect();
    clean
}

/// Installs rustls' ring provider once per process (reqwest is built without one). The
/// server calls it at start; every HTTP client in the process depends on it.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The webhook protocol half of a distributor.
pub struct HttpProtocol {
    client: reqwest::Client,
    config: Arc<HttpConfig>,
    session: Arc<str>,
    /// Where the client may connect (its resolver filters through it).
    egress: Arc<EgressPolicy>,
}

/// The client for `config` ([`crate::egress::http_client`]).
fn client_for(config: &HttpConfig, egress: &Arc<EgressPolicy>) -> reqwest::Client {
    crate::egress::http_client(&config.base_url, egress)
}

/// How one attempt ended.
enum Attempt {
    Done,
    Retry {
        error: String,
        after: Option<Duration>,
        /// The request went out and no answer came in time: the receiver may have it.
        maybe_received: bool,
    },
    Final(String),
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    (when.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .ok()
}

async fn attempt(
    client: &reqwest::Client,
    config: &HttpConfig,
    url: &str,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Attempt {
    let request = client
        .post(url)
        .headers(headers)
        .timeout(config.timeout)
        .body(body);
    match request.send().await {
        Ok(response) => {
            let status = response.status();
            if status.is_success() {
                return Attempt::Done;
            }
            if status.is_redirection() {
                // Following would turn the POST into a GET without the event, and carry the
                // custom (often secret) headers to whatever host the answer names.
                return Attempt::Final(format!(
                    "HTTP {} from {url} redirects to {}; webhooks do not follow redirects (not retried): point baseUrl at the final address",
                    status.as_u16(),
                    location(response.headers())
                ));
            }
            let error = format!("HTTP {} from {url}", status.as_u16());
            let retryable = status == StatusCode::REQUEST_TIMEOUT
                || status == StatusCode::TOO_MANY_REQUESTS
                || status.is_server_error();
            if retryable {
                Attempt::Retry {
                    error,
                    after: retry_after(response.headers()),
                    maybe_received: false,
                }
            } else {
                Attempt::Final(format!("{error} (not retried)"))
            }
        }
        Err(e) if e.is_builder() => {
            Attempt::Final(format!("cannot build a request for {url}: {e}"))
        }
        Err(e) => {
            let what = if e.is_timeout() {
                format!("timed out after {} ms", config.timeout.as_millis())
            } else if e.is_connect() {
                "connection failed".to_string()
            } else {
                "request failed".to_string()
            };
            let cause = std::error::Error::source(&e)
                .map(|s| format!(": {s}"))
                .unwrap_or_default();
            Attempt::Retry {
                error: format!("{url}: {what}{cause}"),
                after: None,
                maybe_received: e.is_timeout() && !e.is_connect(),
            }
        }
    }
}

/// Full-jitter exponential backoff for retry number `n` (0-based).
fn backoff(config: &HttpConfig, n: u32) -> Duration {
    let ceiling = config
        .retry_base
        .saturating_mul(2u32.saturating_pow(n.min(20)))
        .min(config.retry_max);
    ceiling.mul_f64(fastrand::f64())
}

impl Protocol for HttpProtocol {
    type Config = HttpConfig;
    const KIND: DistributorKind = DistributorKind::Http;

    fn parse(r: &mut FieldReader<'_>, path: &str, rails: &Guardrails) -> HttpConfig {
        let base_url = match r.string("baseUrl") {
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                match reqwest::Url::parse(&url) {
                    Err(_) => r
                        .report()
                        .error(format!("{path}.baseUrl: {url:?} is not a valid URL")),
                    Ok(parsed) => {
                        let host = parsed.host_str().unwrap_or_default();
                        let port = parsed.port_or_known_default().unwrap_or(80);
                        if let Err(e) = rails.egress.check_written(host, port) {
                            r.report().error(format!("{path}.baseUrl: {e}"));
                        }
                    }
                }
                url.trim_end_matches('/').to_string()
            }
            Some(url) => {
                r.report().error(format!(
                    "{path}.baseUrl: HTTP baseUrl must start with http:// or https://, got {url:?}"
                ));
                String::new()
            }
            None => {
                r.report()
                    .error(format!("{path}.baseUrl: HTTP distributor requires baseUrl"));
                String::new()
            }
        };
        if base_url.starts_with("http://")
            && !base_url.contains("://127.")
            && !base_url.contains("://localhost")
        {
            r.report().warn(format!(
                "{path}.baseUrl: plain http:// sends events unencrypted beyond this machine"
            ));
        }
        let endpoint = match r.raw("endpoint") {
            Some(v) => check_path(&format!("{path}.endpoint"), v).unwrap_or_else(|e| {
                r.report().error(e);
                String::new()
            }),
            None => String::new(),
        };
        let mut endpoints = Vec::new();
        match r.raw("endpoints") {
            None => {}
            Some(Value::Object(map)) => {
                for (pattern, v) in map {
                    match check_path(&format!("{path}.endpoints.{pattern}"), v) {
                        Ok(p) => endpoints.push((Glob::new(pattern), p)),
                        Err(e) => r.report().error(e),
                    }
                }
            }
            Some(other) => r.report().error(format!(
                "{path}.endpoints: must be an object of event pattern → path, got {}",
                kind_of(other)
            )),
        }
        endpoints.sort_by_key(|(g, _)| std::cmp::Reverse(g.specificity()));
        let mut headers = HeaderMap::new();
        match r.raw("headers") {
            None => {}
            Some(Value::Object(map)) => {
                for (name, v) in map {
                    let header = HeaderName::from_bytes(name.as_bytes());
                    let value = v.as_str().map(HeaderValue::from_str);
                    match (header, value) {
                        (Ok(h), _) if is_reserved_header(&h) => r.report().error(format!(
                            "{path}.headers.{name}: set by the server for every request (it frames the \
                             request or names the event); a custom value would break delivery"
                        )),
                        (Ok(h), Some(Ok(v))) => {
                            headers.insert(h, v);
                        }
                        _ => r.report().error(format!(
                            "{path}.headers.{name}: not a valid header name with a string value"
                        )),
                    }
                }
            }
            Some(other) => r.report().error(format!(
                "{path}.headers: must be an object of header → value, got {}",
                kind_of(other)
            )),
        }
        let timeout = Duration::from_millis(r.u64("timeoutMs", 10, 600_000, DEFAULT_TIMEOUT_MS));
        let max_retries = r.u64("maxRetries", 0, 100, DEFAULT_MAX_RETRIES) as u32;
        let retry_base =
            Duration::from_millis(r.u64("retryBaseMs", 1, 600_000, DEFAULT_RETRY_BASE_MS));
        let retry_max =
            Duration::from_millis(r.u64("retryMaxMs", 1, 3_600_000, DEFAULT_RETRY_MAX_MS));
        if retry_max < retry_base {
            r.report()
                .error(format!("{path}.retryMaxMs: must be at least retryBaseMs"));
        }
        HttpConfig {
            base_url,
            endpoint,
            endpoints,
            headers,
            timeout,
            max_retries,
            retry_base,
            retry_max,
        }
    }

    fn answer_timeout(config: &Self::Config) -> Option<Duration> {
        Some(config.timeout)
    }

    fn new(
        session: Arc<str>,
        config: HttpConfig,
        _telemetry: Arc<DistributorTelemetry>,
        rails: &Guardrails,
    ) -> Self {
        install_crypto_provider();
        Self {
            client: client_for(&config, &rails.egress),
            config: Arc::new(config),
            session,
            egress: rails.egress.clone(),
        }
    }

    fn deliver(&mut self, event: &Arc<Event>) -> Delivery {
        let client = self.client.clone();
        let config = self.config.clone();
        let url = config.url_for(&event.name);
        let body = event.json().clone();
        let mut headers = config.headers.clone();
        // A configured Content-Type (say application/cloudevents+json) wins.
        if !headers.contains_key(CONTENT_TYPE) {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let ids = [
            ("x-synopticon-session", self.session.to_string()),
            ("x-synopticon-seq", event.seq.to_string()),
            ("x-synopticon-event", event.name.to_string()),
        ];
        for (name, value) in ids {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        }
        Delivery::Later(Box::pin(async move {
            let mut last_error = String::new();
            let mut maybe_received = false;
            for n in 0..=config.max_retries {
                match attempt(&client, &config, &url, headers.clone(), body.clone()).await {
                    Attempt::Done => return Outcome::Delivered,
                    Attempt::Final(error) => return Outcome::Rejected(error),
                    Attempt::Retry {
                        error,
                        after,
                        maybe_received: this_one,
                    } => {
                        maybe_received |= this_one;
                        last_error = error;
                        if n < config.max_retries {
                            let wait = after
                                .map_or_else(|| backoff(&config, n), |a| a.min(config.retry_max));
                            tokio::time::sleep(wait).await;
                        }
                    }
                }
            }
            let error = format!("{last_error} (after {} attempts)", config.max_retries + 1);
            if maybe_received {
                // An attempt timed out after sending: the receiver may have the event.
                Outcome::Unconfirmed(error)
            } else {
                Outcome::Failed(error)
            }
        }))
    }

    fn reconfigure(&mut self, config: HttpConfig) {
        self.client = client_for(&config, &self.egress);
        self.config = Arc::new(config);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::Report;
    use serde_json::json;

    fn parse(v: Value) -> (HttpConfig, Report) {
        let mut report = Report::default();
        let mut r = FieldReader::new("http", &v, &mut report);
        let c = HttpProtocol::parse(&mut r, "http", &Guardrails::default());
        r.finish();
        (c, report)
    }

    #[test]
    fn endpoints_pick_the_most_specific_pattern() {
        let (c, report) = parse(
            json!({"baseUrl": "http://127.0.0.1:3000/", "endpoint": "/events",
            "endpoints": {"face_*": "/faces", "face_detected": "/faces/new"}}),
        );
        assert!(report.is_valid(), "{report:?}");
        assert_eq!(
            c.url_for("face_detected"),
            "http://127.0.0.1:3000/faces/new"
        );
        assert_eq!(c.url_for("face_lost"), "http://127.0.0.1:3000/faces");
        assert_eq!(c.url_for("gaze"), "http://127.0.0.1:3000/events");
    }

    #[test]
    fn every_problem_is_reported() {
        let (_, report) = parse(
            json!({"baseUrl": "ftp://x", "endpoint": "nope", "headers": {"bad header": "v"},
            "timeoutMs": 0, "retryBaseMs": 500, "retryMaxMs": 100}),
        );
        assert_eq!(report.errors.len(), 5, "{:?}", report.errors);
        assert!(report.errors[0].contains("HTTP baseUrl must start with http:// or https://"));
        let (_, missing) = parse(json!({}));
        assert!(missing.errors[0].contains("HTTP distributor requires baseUrl"));
    }

    #[test]
    fn headers_that_frame_the_request_are_refused() {
        let (c, report) = parse(json!({"baseUrl": "http://127.0.0.1:9", "headers": {
            "Content-Length": "5", "Host": "elsewhere", "Transfer-Encoding": "chunked",
            "Connection": "close", "X-Synopticon-Seq": "1", "X-Api-Key": "k",
            "Content-Type": "application/cloudevents+json"}}));
        assert_eq!(report.errors.len(), 5, "{:?}", report.errors);
        for name in [
            "Content-Length",
            "Host",
            "Transfer-Encoding",
            "Connection",
            "X-Synopticon-Seq",
        ] {
            assert!(
                report
                    .errors
                    .iter()
                    .any(|e| e.contains(&format!("headers.{name}:"))),
                "{name} not refused: {:?}",
                report.errors
            );
        }
        assert_eq!(c.headers.len(), 2);
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        h.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        assert!(retry_after(&h).unwrap() > Duration::from_secs(25));
    }
}
