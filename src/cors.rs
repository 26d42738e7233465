//! Cross-origin access: which web pages on other origins may call the API (`fetch`,
//! `EventSource`) and open its WebSockets (`server.cors_origins`), and which names the
//! server answers to (`server.allowed_hosts`; docs/SECURITY.md#pages-on-other-sites).
//!
//! Browsers enforce CORS for reading answers (`fetch`, `EventSource`) from the headers
//! [`layer`] adds, but they send "simple" requests (a form post, a `text/plain` body) to
//! any origin without asking first, and they do not apply CORS to WebSockets at all. So
//! [`refuse_cross_site`] runs before everything else: a request naming a host the server
//! does not answer to (DNS rebinding) is refused, and so is every state-changing request
//! from a page outside the allowed origins, whatever the mode. A WebSocket handshake from
//! a page is checked against the same list ([`OriginList::check_handshake`]).

use std::sync::Arc;

use actix_cors::Cors;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, ConnectionType, Method};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, ResponseError};
use metrics::{counter, describe_counter};

use crate::error::ApiError;

/// Requests refused because of the host they named or the page that sent them.
pub const CROSS_SITE_REFUSED: &str = "synopticon_http_cross_site_refused_total";

/// Describes this module's metric.
pub fn describe_metrics() {
    describe_counter!(
        CROSS_SITE_REFUSED,
        "Requests refused before any route: a Host outside server.allowed_hosts (reason=host, 421), or a state-changing request from a page outside server.cors_origins (reason=origin, 403)."
    );
}

/// The origins allowed besides the server's own.
#[derive(Debug, Clone, Default)]
pub struct OriginList {
    /// Written out in full: `https://lab.example.org`.
    exact: Vec<String>,
    /// `scheme://host` of `scheme://host:*` entries: any port, or none.
    any_port: Vec<String>,
    /// `*`: every origin.
    everyone: bool,
}

impl OriginList {
    /// The origins of `entries` (`server.cors_origins` with its default filled in:
    /// [`Settings::cors_origins`](crate::configuration::Settings::cors_origins)).
    pub fn new(entries: &[String]) -> Self {
        let mut list = OriginList::default();
        for entry in entries {
            let entry = entry.trim_end_matches('/').to_ascii_lowercase();
            if entry == "*" {
                list.everyone = true;
            } else if let Some(base) = entry.strip_suffix(":*") {
                list.any_port.push(base.to_string());
            } else {
                list.exact.push(entry);
            }
        }
        list
    }

    /// Problems with `server.cors_origins` entries.
    pub fn check(entries: &[String]) -> Vec<String> {
        entries
            .iter()
            .filter(|e| e.as_str() != "*")
            .filter_map(|e| {
                let base = e.strip_suffix(":*").unwrap_or(e);
                let rest = base
                    .strip_prefix("http://")
                    .or_else(|| base.strip_prefix("https://"));
                let ok = rest.is_some_and(|authority| {
                    let (host, port) = match authority.rsplit_once(':') {
                        Some((h, p)) => (h, Some(p)),
                        None => (authority, None),
                    };
                    !host.is_empty()
                        && host
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-.[]".contains(&b))
                        && port.is_none_or(|p| p.parse::<u16>().is_ok())
                });
                (!ok).then(|| {
                    format!("server.cors_origins: {e:?} must be scheme://host[:port] (\":*\" for any port) or \"*\"")
                })
            })
            .collect()
    }

    /// Whether a page from `origin` may call the API.
    pub fn allows(&self, origin: &str) -> bool {
        if self.everyone {
            return true;
        }
        let origin = origin.to_ascii_lowercase();
        self.exact.contains(&origin)
            || self.any_port.iter().any(|base| {
                origin == *base
                    || origin
                        .strip_prefix(base.as_str())
                        .and_then(|rest| rest.strip_prefix(':'))
                        .is_some_and(|port| {
                            !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
                        })
            })
    }

    /// A WebSocket handshake from a page: allowed from the server's own pages and the
    /// listed origins. Clients that are not browsers send no `Origin` and pass.
    pub fn check_handshake(&self, req: &HttpRequest) -> Result<(), ApiError> {
        let Some(origin) = req.headers().get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = origin.to_str().unwrap_or_default();
        if same_origin(req, origin) || self.allows(origin) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "a page from {origin} may not open this WebSocket: add it to server.cors_origins"
            )))
        }
    }
}

/// The names (and ports) the server answers to, from `Host`: a page whose own name
/// resolves to this server (DNS rebinding) names its own host, and is refused.
#[derive(Debug, Clone, Default)]
pub struct HostList {
    /// Hosts with any port: `localhost`, `127.0.0.1`, `[::1]` (lowercase, IPv6 bracketed).
    any_port: Vec<String>,
    /// `host:port` entries.
    exact: Vec<(String, u16)>,
    /// `*.example.org` entries, kept as `.example.org`.
    suffixes: Vec<String>,
    /// `*`: any host.
    everyone: bool,
}

impl HostList {
    /// The names of `entries` (`server.allowed_hosts` with its default filled in:
    /// [`Settings::allowed_hosts`](crate::configuration::Settings::allowed_hosts)).
    pub fn new(entries: &[String]) -> Self {
        let mut list = HostList::default();
        for entry in entries {
            let entry = entry.trim().to_ascii_lowercase();
            if entry == "*" {
                list.everyone = true;
            } else if let Some(domain) = entry.strip_prefix("*.") {
                list.suffixes.push(format!(".{domain}"));
            } else {
                match split_authority(&entry) {
                    Some((host, Some(port))) => list.exact.push((host, port)),
                    Some((host, None)) => list.any_port.push(host),
                    None => {}
                }
            }
        }
        list
    }

    /// Problems with `server.allowed_hosts` entries.
    pub fn check(entries: &[String]) -> Vec<String> {
        entries
            .iter()
            .filter(|e| e.as_str() != "*")
            .filter_map(|e| {
                let name = e.strip_prefix("*.").map(|rest| format!("x.{rest}"));
                let ok = split_authority(name.as_deref().unwrap_or(e)).is_some();
                (!ok).then(|| {
                    format!("server.allowed_hosts: {e:?} must be a host name or address, host:port, *.domain or \"*\" (IPv6 in brackets: \"[::1]\")")
                })
            })
            .collect()
    }

    /// Whether a request naming `authority` (a `Host` header) is for this server.
    pub fn allows(&self, authority: &str) -> bool {
        if self.everyone {
            return true;
        }
        let Some((host, port)) = split_authority(authority) else {
            return false;
        };
        self.any_port.contains(&host)
            || port.is_some_and(|p| self.exact.iter().any(|(h, ep)| *h == host && *ep == p))
            || self.suffixes.iter().any(|s| host.ends_with(s.as_str()))
    }
}

/// `host[:port]` as a lowercase host (IPv6 kept in brackets, a final dot dropped) and its
/// port; `None` when it is not one.
fn split_authority(authority: &str) -> Option<(String, Option<u16>)> {
    let authority = authority.trim().to_ascii_lowercase();
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        inside.parse::<std::net::Ipv6Addr>().ok()?;
        (format!("[{inside}]"), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host.to_string(), Some(port)),
            None => (authority.clone(), None),
        }
    };
    if authority.starts_with('[') && port.is_none() && !authority.ends_with(']') {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok()?),
        None => None,
    };
    let host = host.strip_suffix('.').unwrap_or(&host).to_string();
    let valid = !host.is_empty()
        && (host.starts_with('[')
            || host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'));
    valid.then_some((host, port))
}

/// The host a request names: its `Host` header, and the authority of an absolute
/// request target (HTTP/2's `:authority`) when there is one. Never `X-Forwarded-Host` or
/// `Forwarded`, which any page may set on a request to its own origin.
fn named_hosts(req: &HttpRequest) -> Vec<&str> {
    let mut hosts: Vec<&str> = req
        .headers()
        .get_all(header::HOST)
        .map(|v| v.to_str().unwrap_or("\u{0}"))
        .collect();
    if let Some(authority) = req.uri().authority() {
        hosts.push(authority.as_str());
    }
    hosts
}

/// Whether `origin` (`scheme://host[:port]`) is the server itself, as the request names it:
/// the same host, and the same port when `Host` names one. A `Host` without a port is the
/// default port of whatever scheme the browser used: a proxy that ends TLS and passes the
/// `Host` on (`Origin: https://lab.example.org`, `Host: lab.example.org`) is the same
/// origin, though this listener speaks plain HTTP.
fn same_origin(req: &HttpRequest, origin: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let Some((origin_host, origin_port)) = split_authority(authority) else {
        return false;
    };
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        443
    } else {
        80
    };
    let origin_port = origin_port.unwrap_or(default_port);
    let hosts = named_hosts(req);
    !hosts.is_empty()
        && hosts.iter().all(|h| {
            split_authority(h).is_some_and(|(host, port)| {
                host == origin_host && port.unwrap_or(origin_port) == origin_port
            })
        })
}

/// Methods that change nothing; every other one is "state-changing".
fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// The names a server answers to and the pages that may change things on it: what
/// [`refuse_cross_site`] checks.
#[derive(Debug, Clone, Default)]
pub struct CrossSite {
    /// `server.allowed_hosts`.
    pub hosts: HostList,
    /// `server.cors_origins`.
    pub origins: Arc<OriginList>,
}

/// Why a request is refused before any route, if it is.
fn cross_site_refusal(req: &HttpRequest, state: &CrossSite) -> Option<(&'static str, ApiError)> {
    let hosts = named_hosts(req);
    if hosts.is_empty() && !state.hosts.everyone {
        return Some((
            "host",
            ApiError::MisdirectedRequest("the request names no host: send a Host header".into()),
        ));
    }
    if let Some(bad) = hosts.iter().find(|h| !state.hosts.allows(h)) {
        return Some((
            "host",
            ApiError::MisdirectedRequest(format!(
                "this server does not answer to the host {:?}; add it to server.allowed_hosts if it names this server",
                bad.chars().take(256).collect::<String>()
            )),
        ));
    }
    if is_safe(req.method()) {
        return None;
    }
    match req.headers().get(header::ORIGIN) {
        Some(origin) => {
            let origin = origin.to_str().unwrap_or("(not text)");
            (!same_origin(req, origin) && !state.origins.allows(origin)).then(|| {
                (
                    "origin",
                    ApiError::Forbidden(format!(
                        "a page from {:?} may not change anything here: add its origin to server.cors_origins",
                        origin.chars().take(256).collect::<String>()
                    )),
                )
            })
        }
        // A browser that sends no Origin still says where the request comes from.
        None => req
            .headers()
            .get("sec-fetch-site")
            .is_some_and(|site| site.as_bytes().eq_ignore_ascii_case(b"cross-site"))
            .then(|| {
                (
                    "origin",
                    ApiError::Forbidden(
                        "a page on another site may not change anything here".into(),
                    ),
                )
            }),
    }
}

/// Runs before everything else (CORS included): refuses a request naming a host outside
/// `server.allowed_hosts` (421), and a state-changing one from a page outside
/// `server.cors_origins` (403), in every mode. The refusal closes the connection, since
/// the body is never read.
pub async fn refuse_cross_site<B: MessageBody + 'static>(
    site: Arc<CrossSite>,
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    match cross_site_refusal(req.request(), &site) {
        None => Ok(next.call(req).await?.map_into_boxed_body()),
        Some((reason, error)) => {
            counter!(CROSS_SITE_REFUSED, "reason" => reason).increment(1);
            let mut response = error.error_response();
            response
                .head_mut()
                .set_connection_type(ConnectionType::Close);
            Ok(req.into_response(response))
        }
    }
}

/// The CORS headers for `origins`: preflights answered, `Authorization` allowed, the
/// headers clients read exposed.
pub fn layer(origins: Arc<OriginList>) -> Cors {
    Cors::default()
        .allowed_origin_fn(move |origin, _| origin.to_str().is_ok_and(|o| origins.allows(o)))
        .allowed_methods(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::IF_MATCH,
            header::HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([
            header::ETAG,
            header::RETRY_AFTER,
            header::LOCATION,
            header::WWW_AUTHENTICATE,
        ])
        .max_age(600)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> OriginList {
        OriginList::new(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn a_port_wildcard_takes_any_port_and_nothing_else() {
        let l = list(&["http://localhost:*", "https://lab.example.org"]);
        assert!(l.allows("http://localhost:5173"));
        assert!(l.allows("http://localhost"));
        assert!(l.allows("https://lab.example.org"));
        assert!(!l.allows("http://localhost.evil.org"));
        assert!(!l.allows("http://localhost:80x"));
        assert!(!l.allows("https://localhost:5173"), "another scheme");
        assert!(!l.allows("https://lab.example.org:8443"));
        assert!(
            !list(&[]).allows("http://localhost:3000"),
            "production: none"
        );
    }

    #[test]
    fn bad_entries_are_named() {
        let problems = OriginList::check(&[
            "https://ok.example".into(),
            "http://localhost:*".into(),
            "lab.example.org".into(),
            "https://x.example/path".into(),
        ]);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("lab.example.org"));
    }
}
