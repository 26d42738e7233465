//! The check every route passes before its handler: authentication, role, scope and rate
//! limit, in that order, answering 401, 403, 404 and 429.
//!
//! Each resource is wrapped with a [`Guard`] holding the rule of each of its methods (the
//! router is built from those rules, see `routes::Api`, so a route cannot exist without
//! one). The principal the guard settles on is put in the request's extensions, where
//! handlers take it as an argument.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::BoxBody;
use actix_web::dev::Payload;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::ResponseError;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use metrics::{counter, describe_counter};
use serde::Serialize;

use super::rate_limit::Limits;
use super::state::AuthState;
use super::{Access, Principal, ResourceScope, Role};
use crate::error::ApiError;

/// Requests and events refused by a rate limit.
pub const RATE_LIMITED: &str = "synopticon_http_rate_limited_total";
/// Requests refused by authentication or authorization.
pub const AUTH_REFUSED: &str = "synopticon_http_auth_refused_total";

/// Describes this module's metrics.
pub fn describe_metrics() {
    describe_counter!(
        RATE_LIMITED,
        "Requests (limit=requests) and posted events (limit=events) refused with 429, by who was limited (by=token|address)."
    );
    describe_counter!(
        AUTH_REFUSED,
        "Requests refused: 401 (reason=missing|invalid|expired), 403 (reason=role), 404 (reason=scope)."
    );
    super::inflight::describe_metrics();
}

/// What one method of one route asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RouteRule {
    /// Who may call it.
    pub access: Access,
    /// Which path parameter names a scoped resource.
    pub scope: ResourceScope,
    /// A live feed: the token may also come as `access_token` or a WebSocket subprotocol,
    /// since browsers cannot set headers on `WebSocket` and `EventSource`.
    pub live_feed: bool,
}

/// The rules of one resource, by method.
#[derive(Clone)]
pub struct Guard {
    rules: Rc<HashMap<Method, RouteRule>>,
}

impl Guard {
    /// A guard for a resource whose methods have `rules`.
    pub fn new(rules: HashMap<Method, RouteRule>) -> Self {
        Self {
            rules: Rc::new(rules),
        }
    }

    /// Runs the check and takes a place among the requests in flight, then the handler. A
    /// refusal is an answer, not an error, so the request limits around every route can
    /// close the connection of a request whose body was never read.
    pub async fn call(
        self,
        req: ServiceRequest,
        next: Next<BoxBody>,
    ) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
        let rule = self.rules.get(req.method()).copied();
        let admitted = check(req.request(), rule).and_then(|principal| {
            let state = req
                .app_data::<web::Data<AuthState>>()
                .ok_or_else(|| ApiError::Internal("the server state is missing".into()))?;
            let place = state
                .inflight
                .admit(&principal, &address_key(req.request()))?;
            Ok((principal, place))
        });
        match admitted {
            Ok((principal, _place)) => {
                req.extensions_mut().insert(principal);
                next.call(req).await
            }
            Err(refusal) => Ok(req.into_response(refusal.error_response())),
        }
    }
}

/// The token a request shows: `Authorization: Bearer`, or for live feeds the
/// `access_token` query parameter or a `bearer.TOKEN` WebSocket subprotocol.
fn presented_token(req: &HttpRequest, live_feed: bool) -> Option<String> {
    if let Some(value) = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, token) = value.trim().split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() {
            return Some(token.trim().to_string());
        }
        // Another scheme: treated as no bearer token.
    }
    if !live_feed {
        return None;
    }
    if let Ok(query) = web::Query::<HashMap<String, String>>::from_query(req.query_string()) {
        if let Some(t) = query.get("access_token").filter(|t| !t.is_empty()) {
            return Some(t.clone());
        }
    }
    req.headers()
        .get_all(actix_web::http::header::SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix("bearer.").map(str::to_string))
}

fn refused(status: &'static str, reason: &'static str) {
    counter!(AUTH_REFUSED, "status" => status, "reason" => reason).increment(1);
}

/// Who may go on, or the answer for who may not.
pub fn check(req: &HttpRequest, rule: Option<RouteRule>) -> Result<Principal, ApiError> {
    let state = req
        .app_data::<web::Data<AuthState>>()
        .ok_or_else(|| ApiError::Internal("the server state is missing".into()))?;
    // A method the resource does not have: anyone authenticated gets the 405.
    let rule = rule.unwrap_or(RouteRule {
        access: Access::VIEWER,
        scope: ResourceScope::None,
        live_feed: false,
    });
    if !state.enabled {
        let principal = Principal::local();
        limit_requests(state, req, None)?;
        return Ok(principal);
    }
    let token = presented_token(req, rule.live_feed);
    let open = match rule.access {
        Access::Public => true,
        Access::Metrics => state.metrics_public,
        Access::Role(_) | Access::Unscoped(_) | Access::ServerAdmin => false,
    };
    let authenticated = token.as_deref().map(|t| state.tokens.authenticate(t));
    let principal = match authenticated {
        Some(Ok(p)) => p,
        Some(Err(why)) if !open => {
            limit_requests(state, req, None)?;
            refused("401", why);
            return Err(ApiError::Unauthorized(format!("the bearer token is {why}")));
        }
        None if !open => {
            limit_requests(state, req, None)?;
            refused("401", "missing");
            return Err(ApiError::Unauthorized(
                "this route needs a bearer token: Authorization: Bearer <token>".into(),
            ));
        }
        // An open route: a bad or missing token just means anonymous.
        _ => {
            limit_requests(state, req, None)?;
            return Ok(Principal::anonymous());
        }
    };
    // Every authenticated request is charged, refused ones included.
    limit_requests(state, req, Some(&principal))?;
    let needed = match rule.access {
        Access::Role(needed) => Some(needed),
        Access::Unscoped(needed) => {
            if !principal.scope.is_unlimited() {
                refused("403", "scope");
                return Err(ApiError::Forbidden(format!(
                    "token {:?} is scoped; this spans every source and device and needs a token without a scope",
                    principal.token_id
                )));
            }
            Some(needed)
        }
        Access::ServerAdmin => {
            if principal.role == Role::Admin && !principal.scope.is_unlimited() {
                refused("403", "scope");
                return Err(ApiError::Forbidden(format!(
                    "token {:?} is scoped; this concerns the whole server and needs an unscoped admin token",
                    principal.token_id
                )));
            }
            Some(Role::Admin)
        }
        Access::Metrics if !state.metrics_public => {
            // Metric labels name every session, source and distributor, and count every
            // event type's traffic: not for a token limited in any way.
            if !principal.scope.is_unlimited() {
                refused("403", "scope");
                return Err(ApiError::Forbidden(format!(
                    "token {:?} is scoped; /metrics names every session and source and needs a token without a scope",
                    principal.token_id
                )));
            }
            Some(Role::Viewer)
        }
        _ => None,
    };
    if let Some(needed) = needed {
        if principal.role < needed {
            refused("403", "role");
            return Err(ApiError::Forbidden(format!(
                "token {:?} is a {} token; this needs {}",
                principal.token_id,
                principal.role.as_str(),
                needed.as_str()
            )));
        }
    }
    let id = req.match_info().get("id").unwrap_or_default();
    let hidden = match rule.scope {
        ResourceScope::None => None,
        ResourceScope::Session => (!principal.scope.allows_session(id)).then_some("session"),
        ResourceScope::Source => (!principal.scope.allows_source(id)).then_some("source"),
    };
    if let Some(kind) = hidden {
        // Exactly what an unknown id gets: a scoped token cannot tell the difference.
        refused("404", "scope");
        return Err(ApiError::NotFound(format!("{kind} {id:?} not found")));
    }
    Ok(principal)
}

/// The client's address as a rate-limit key: an IPv6 client by its /64, which one host
/// usually holds whole.
pub fn address_key(req: &HttpRequest) -> String {
    match req.peer_addr().map(|a| a.ip()) {
        Some(std::net::IpAddr::V6(ip)) => match ip.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = ip.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Some(ip) => ip.to_string(),
        None => "unknown".into(),
    }
}

/// Which limiter a charge goes to.
#[derive(Clone, Copy)]
enum Budget {
    Requests,
    Events,
}

/// Takes `cost` from the caller's budget: a token's own bucket and its address's ceiling,
/// or, without a valid token, the address's bucket.
fn charge(
    limits: &Limits,
    req: &HttpRequest,
    principal: Option<&Principal>,
    budget: Budget,
    cost: f64,
) -> Result<(), ApiError> {
    charge_at(limits, &address_key(req), principal, budget, cost)
}

fn charge_at(
    limits: &Limits,
    address: &str,
    principal: Option<&Principal>,
    budget: Budget,
    cost: f64,
) -> Result<(), ApiError> {
    let (what, by_token, by_address, ceiling) = match budget {
        Budget::Requests => (
            "requests",
            &limits.requests_by_token,
            &limits.requests_by_address,
            &limits.requests_per_address,
        ),
        Budget::Events => (
            "events",
            &limits.events_by_token,
            &limits.events_by_address,
            &limits.events_per_address,
        ),
    };
    let refuse = |by: &'static str, wait: Duration| {
        counter!(RATE_LIMITED, "limit" => what, "by" => by).increment(1);
        too_many(wait, what)
    };
    let authenticated = principal.filter(|p| p.authenticated);
    // More than a bucket holds can never pass: say so (413) rather than promise a
    // Retry-After that would never work.
    let burst = match authenticated {
        Some(_) => by_token.burst().min(ceiling.burst()),
        None => by_address.burst(),
    };
    if cost > burst {
        return Err(ApiError::PayloadTooLarge(format!(
            "{cost} {what} in one request is more than the {burst} one client may send at once \
             (rate_limit burst settings); send smaller batches"
        )));
    }
    match authenticated {
        Some(p) => {
            by_token
                .take(&p.token_id, cost)
                .map_err(|wait| refuse("token", wait))?;
            ceiling.take(address, cost).map_err(|wait| {
                // Refused by the address: the token's own budget is not spent.
                by_token.refund(&p.token_id, cost);
                refuse("address", wait)
            })
        }
        None => by_address
            .take(address, cost)
            .map_err(|wait| refuse("address", wait)),
    }
}

/// Takes one request from the caller's budget.
fn limit_requests(
    state: &AuthState,
    req: &HttpRequest,
    principal: Option<&Principal>,
) -> Result<(), ApiError> {
    match &state.limits {
        Some(limits) => charge(limits, req, principal, Budget::Requests, 1.0),
        None => Ok(()),
    }
}

/// Takes `events` from the event budget of a caller at `address` (events published over
/// a WebSocket, after the request that opened it).
pub fn limit_events_at(
    state: &AuthState,
    address: &str,
    principal: &Principal,
    events: usize,
) -> Result<(), ApiError> {
    match &state.limits {
        Some(limits) => charge_at(
            limits,
            address,
            Some(principal),
            Budget::Events,
            events as f64,
        ),
        None => Ok(()),
    }
}

/// Takes `events` from the caller's event budget (posted events, edge messages).
pub fn limit_events(
    state: &AuthState,
    req: &HttpRequest,
    principal: &Principal,
    events: usize,
) -> Result<(), ApiError> {
    match &state.limits {
        Some(limits) => charge(limits, req, Some(principal), Budget::Events, events as f64),
        None => Ok(()),
    }
}

/// The pace of a replay started by `principal` from `address`: its events are charged to
/// that caller's event budget (its token's bucket and its address's ceiling, or the
/// address's bucket without a token), at most a bucket at a time, and the replay waits
/// when the budget is spent. `None` when events are not rate-limited.
pub fn replay_pace(
    state: &Arc<AuthState>,
    address: String,
    principal: Principal,
) -> Option<synopticon_actors::recording::replay::Pace> {
    state.limits.as_ref()?;
    let state = state.clone();
    Some(std::sync::Arc::new(move |wanted: usize| {
        let Some(limits) = &state.limits else {
            return Ok(wanted);
        };
        let authenticated = principal.authenticated;
        let burst = if authenticated {
            limits
                .events_by_token
                .burst()
                .min(limits.events_per_address.burst())
        } else {
            limits.events_by_address.burst()
        };
        let n = (wanted as f64).min(burst).floor().max(1.0);
        if authenticated {
            limits.events_by_token.take(&principal.token_id, n)?;
            if let Err(wait) = limits.events_per_address.take(&address, n) {
                limits.events_by_token.refund(&principal.token_id, n);
                return Err(wait);
            }
        } else {
            limits.events_by_address.take(&address, n)?;
        }
        Ok(n as usize)
    }))
}

fn too_many(wait: Duration, what: &str) -> ApiError {
    let retry_after = wait.as_secs_f64().ceil().max(1.0) as u64;
    ApiError::TooManyRequests {
        message: format!("too many {what}; retry in {retry_after} s"),
        retry_after,
    }
}

/// Handlers take the guard's [`Principal`]. A request the guard did not see is refused:
/// a route that forgot its guard fails closed.
impl FromRequest for Principal {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(
            req.extensions()
                .get::<Principal>()
                .cloned()
                .ok_or_else(|| ApiError::Unauthorized("this route checked no token".into())),
        )
    }
}
