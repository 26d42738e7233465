//! `[server]`: the HTTP listener, its request limits, the mode and the egress policy.

use serde::{Deserialize, Serialize};
use synopticon_actors::validation::Report;

/// What the server is set up for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Authentication and rate limits off unless asked for; meant for loopback.
    LocalTesting,
    /// Authentication and rate limits on unless turned off; egress defaults refuse
    /// link-local, cloud metadata and the server's own listener.
    Production,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::LocalTesting => "local_testing",
            Mode::Production => "production",
        })
    }
}

/// HTTP listener and request limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to listen on.
    pub host: String,
    /// Port; 0 picks a free one.
    pub port: u16,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// Largest request body in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Most events in one POST.
    pub max_events_per_request: usize,
    /// Vision sources allowed at once (each holds threads and perhaps an ffmpeg).
    pub max_sources: usize,
    /// Of those, the last slots only sources and devices made over REST (or declared) may
    /// take: devices inputs register on their own never do.
    pub reserved_sources: usize,
    /// Edge messages (posted detections, inputs) stamped longer ago than this many seconds
    /// are refused, as ones more than 300 s ahead are (a device whose clock was reset says
    /// 1970); 0: any age.
    pub edge_max_age_secs: u64,
    /// Folders `file` and `folder` sources may read from; empty: any path the server
    /// can read (an operator could then replay any image or video on the machine).
    #[serde(default)]
    pub media_dirs: Vec<String>,
    /// Origins whose pages may call the API (CORS); `*` as the port allows any. Empty: in
    /// `local_testing`, `http://localhost:*` and `http://127.0.0.1:*`; in production none.
    #[serde(default)]
    pub cors_origins: Vec<String>,
    /// Names the server answers to, from a request's `Host`: `name` (any port),
    /// `name:port`, `*.domain` or `*`. Empty: without authentication (`local_testing`)
    /// `localhost`, `127.0.0.1`, `[::1]` with any port and `server.host`; with
    /// authentication any host. Others get 421 (a page of a name that resolves here —
    /// DNS rebinding — gets nothing).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// How long a request waits for an actor's answer.
    pub request_timeout_ms: u64,
    /// How long a request body may take to arrive in full (408 beyond, connection closed).
    pub body_timeout_ms: u64,
    /// How long a request may take from its headers to its answer (503 beyond).
    pub request_deadline_ms: u64,
    /// Requests running at once in the whole server, admins' aside (503 beyond).
    pub max_inflight_requests: usize,
    /// Connections the listener holds at once; 0: derived from the file descriptor limit,
    /// so that the server stops accepting before it runs out of descriptors.
    pub max_connections: usize,
    /// How long data a client does not take (unacknowledged, or unsent for want of window)
    /// may wait before the kernel drops the connection (`TCP_USER_TIMEOUT`).
    pub send_timeout_ms: u64,
    /// Grace period for connections at shutdown.
    pub shutdown_timeout_ms: u64,
    /// Enables the fault-injection routes under `/api/v1/debug`.
    pub debug_endpoints: bool,
    /// `local_testing` or `production`.
    pub mode: Mode,
    /// PEM certificate chain for https:// and wss://; with `tls_key_file`, the listener
    /// speaks TLS only.
    pub tls_cert_file: String,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: String,
    /// Where distributors and sources may connect to.
    pub egress: EgressSettings,
}

/// The egress policy: networks outbound connections may and may not reach.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressSettings {
    /// Networks allowed (`10.0.0.0/8`, `192.168.1.20`); when any is listed, addresses no
    /// rule holds are refused.
    pub allow: Vec<String>,
    /// Networks refused; in production link-local, cloud metadata and the server's own
    /// listener are added.
    pub deny: Vec<String>,
}

impl ServerSettings {
    /// Whether the server runs in `local_testing` mode.
    pub fn local_testing(&self) -> bool {
        self.mode == Mode::LocalTesting
    }

    /// Whether the server runs in `production` mode.
    pub fn production(&self) -> bool {
        self.mode == Mode::Production
    }

    /// Whether the listener is TLS.
    pub fn tls(&self) -> bool {
        !self.tls_cert_file.is_empty() || !self.tls_key_file.is_empty()
    }

    /// Source slots kept for the API: `reserved_sources`, leaving at least one for
    /// devices inputs register.
    pub fn reserved_sources(&self) -> usize {
        self.reserved_sources
            .min(self.max_sources.saturating_sub(1))
    }

    /// Whether `host` only serves this machine.
    pub fn host_is_loopback(&self) -> bool {
        self.host == "localhost"
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// Checks `[server]` on its own.
    pub fn validate(&self, r: &mut Report) {
        let s = self;
        if s.host.parse::<std::net::IpAddr>().is_err() && s.host != "localhost" {
            r.error(format!("server.host: {:?} is not an IP address", s.host));
        }
        if s.max_body_bytes < 1024 {
            r.error("server.max_body_bytes: must be at least 1024");
        }
        if s.max_events_per_request == 0 {
            r.error("server.max_events_per_request: must be at least 1");
        }
        if s.request_timeout_ms == 0 {
            r.error("server.request_timeout_ms: must be at least 1");
        }
        if s.body_timeout_ms < 100 {
            r.error("server.body_timeout_ms: must be at least 100");
        }
        if s.request_deadline_ms < s.body_timeout_ms {
            r.error(format!(
                "server.request_deadline_ms: {} must be at least server.body_timeout_ms ({})",
                s.request_deadline_ms, s.body_timeout_ms
            ));
        }
        if s.max_inflight_requests == 0 {
            r.error("server.max_inflight_requests: must be at least 1");
        }
        if s.debug_endpoints {
            r.warn("server.debug_endpoints: fault-injection routes are on; never enable them in production");
        }
        for problem in crate::cors::HostList::check(&s.allowed_hosts) {
            r.error(problem);
        }
        for problem in crate::cors::OriginList::check(&s.cors_origins) {
            r.error(problem);
        }
        for dir in &s.media_dirs {
            if !std::path::Path::new(dir).is_absolute() {
                r.error(format!(
                    "server.media_dirs: {dir:?} must be an absolute path"
                ));
            } else if !std::path::Path::new(dir).is_dir() {
                r.warn(format!(
                    "server.media_dirs: {dir:?} is not a folder; nothing in it can be read"
                ));
            }
        }
        if let Err(errors) = synopticon_actors::egress::EgressPolicy::new(
            &s.egress.allow,
            &s.egress.deny,
            s.production(),
        ) {
            errors.into_iter().for_each(|e| r.error(e));
        }
        if s.tls_cert_file.is_empty() != s.tls_key_file.is_empty() {
            r.error("server.tls_cert_file and server.tls_key_file: give both, or neither");
        } else if s.tls() {
            if let Err(e) = crate::tls::server_config(&s.tls_cert_file, &s.tls_key_file) {
                r.error(format!("server.tls_cert_file: {e}"));
            }
        }
        if s.send_timeout_ms < 1000 {
            r.error("server.send_timeout_ms: must be at least 1000");
        }
        if s.max_sources == 0 {
            r.error("server.max_sources: must be at least 1");
        }
        if s.reserved_sources >= s.max_sources {
            r.warn(format!(
                "server.reserved_sources ({}) is not below server.max_sources ({}): {} are kept, so devices inputs register have one slot",
                s.reserved_sources,
                s.max_sources,
                s.reserved_sources()
            ));
        }
    }
}
