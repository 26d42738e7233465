//! Cross-origin access: which web pages on other origins may call the API (`fetch`,
//! `EventSource`) and open its WebSockets (`server.cors_origins`; docs/API.md#cors).
//!
//! Browsers enforce CORS for `fetch` and `EventSource` from the headers [`layer`] adds;
//! they do not for WebSockets, so a WebSocket handshake from a page is checked here
//! ([`OriginList::check_handshake`]) against the same list.

use std::sync::Arc;

use actix_cors::Cors;
use actix_web::http::header;
use actix_web::HttpRequest;

use crate::configuration::Settings;
use crate::error::ApiError;

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
    /// `server.cors_origins`, or in `local_testing` with none listed, the pages of this
    /// machine (`http://localhost:*`, `http://127.0.0.1:*`).
    pub fn from_settings(settings: &Settings) -> Self {
        let listed = &settings.server.cors_origins;
        let entries: Vec<String> = if listed.is_empty() && settings.server.local_testing() {
            vec!["http://localhost:*".into(), "http://127.0.0.1:*".into()]
        } else {
            listed.clone()
        };
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
        let own = req.connection_info();
        let same = origin
            .split_once("://")
            .is_some_and(|(_, host)| host.eq_ignore_ascii_case(own.host()));
        if same || self.allows(origin) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "a page from {origin} may not open this WebSocket: add it to server.cors_origins"
            )))
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
        let (mut settings, _) =
            Settings::load_with_env(None, std::iter::empty()).expect("the embedded default");
        settings.server.mode = "production".into();
        settings.server.cors_origins = entries.iter().map(|s| s.to_string()).collect();
        OriginList::from_settings(&settings)
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
