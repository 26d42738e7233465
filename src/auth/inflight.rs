//! Requests in flight: how many one token, one client address and the whole server may
//! have running at once, and how long a body may take to arrive.
//!
//! Rate limits count requests as they start; a request that never ends (a body sent one
//! byte every ten seconds) is counted once and then holds a connection, a file descriptor
//! and a buffer for as long as it likes. So a body must arrive within a deadline
//! ([`DeadlineBody`], 408), and each token and each address may have only so many
//! requests running; the next one is refused at once (429) and its connection closed,
//! before its body is read. The server as a whole has a ceiling too (503). Admin tokens
//! count against neither that nor their address's: an attacker holding every place cannot
//! lock out the people who would stop it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::{header, ConnectionType};
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{HttpMessage, ResponseError};
use futures_util::Stream;

use metrics::{counter, describe_counter};
use parking_lot::Mutex;

use super::{Principal, Role};
use crate::error::ApiError;

/// Requests refused because too many were already running.
pub const INFLIGHT_REFUSED: &str = "synopticon_http_inflight_refused_total";
/// Requests whose body did not arrive within `server.body_timeout_ms`.
pub const BODY_TIMEOUTS: &str = "synopticon_http_body_timeouts_total";

/// Describes this module's metrics.
pub fn describe_metrics() {
    describe_counter!(
        INFLIGHT_REFUSED,
        "Requests refused because their token (by=token) or address (by=address) already had its maximum running (429), or the server did (by=server, 503)."
    );
    describe_counter!(
        BODY_TIMEOUTS,
        "Requests answered 408 because their body did not arrive within server.body_timeout_ms."
    );
}

/// How long a request's body may take to arrive and its answer to be ready.
#[derive(Clone, Copy, Debug)]
pub struct Deadlines {
    /// `server.body_timeout_ms`.
    pub body: Duration,
    /// `server.request_deadline_ms`.
    pub answer: Duration,
}

/// Time limits of every request, routes and unknown paths alike: its body must arrive
/// within `server.body_timeout_ms` (408) and its answer be ready within
/// `server.request_deadline_ms` (503). An answer given before the request's body was read
/// to its end closes the connection: otherwise the HTTP layer would go on reading (and
/// holding) a slow chunked body after answering it. A WebSocket upgrade keeps its payload
/// as it is: it carries the connection's frames for as long as it lasts.
pub async fn bound(
    deadlines: Deadlines,
    mut req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Deadlines {
        body: body_limit,
        answer: deadline,
    } = deadlines;
    let body = Arc::new(BodyState::default());
    let upgrade = req.headers().contains_key(header::UPGRADE);
    let unread = match req.take_payload() {
        Payload::None => None,
        payload if upgrade => {
            req.set_payload(payload);
            None
        }
        payload => {
            let shared = Rc::new(RefCell::new(payload));
            req.set_payload(Payload::Stream {
                payload: Box::pin(DeadlineBody::new(shared.clone(), body_limit, body.clone())),
            });
            Some(shared)
        }
    };
    let mut response = tokio::time::timeout(deadline, next.call(req))
        .await
        .map_err(|_| ApiError::Busy {
            status: 503,
            message: format!(
                "the request did not complete within {} ms (server.request_deadline_ms)",
                deadline.as_millis()
            ),
        })??;
    if body.expired.load(Ordering::Relaxed) {
        counter!(BODY_TIMEOUTS).increment(1);
        let timeout = ApiError::RequestTimeout(format!(
            "the request body did not arrive within {} ms (server.body_timeout_ms)",
            body_limit.as_millis()
        ));
        return Ok(response.into_response(timeout.error_response()));
    }
    if let Some(payload) = unread.filter(|_| !body.ended.load(Ordering::Relaxed)) {
        // The HTTP layer closes a connection whose request body is still being received
        // when the answer has gone out, but drains one whose reader is gone — for as long
        // as a slow chunked body takes. So the answer's body holds the request's until sent.
        response
            .response_mut()
            .head_mut()
            .set_connection_type(ConnectionType::Close);
        return Ok(response
            .map_body(|_, answer| HoldingBody {
                answer,
                _unread: payload,
            })
            .map_into_boxed_body());
    }
    Ok(response)
}

/// An answer's body holding the request body that was not read to its end.
struct HoldingBody {
    answer: BoxBody,
    _unread: Rc<RefCell<Payload>>,
}

impl MessageBody for HoldingBody {
    type Error = <BoxBody as MessageBody>::Error;

    fn size(&self) -> BodySize {
        self.answer.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.get_mut().answer).poll_next(cx)
    }
}

/// What became of a request body.
#[derive(Debug, Default)]
struct BodyState {
    /// The deadline passed before it ended.
    expired: AtomicBool,
    /// It was read to its end.
    ended: AtomicBool,
}

/// Who a count belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Holder {
    Token(Arc<str>),
    Address(String),
}

/// The limits, and what runs now.
#[derive(Debug)]
pub struct InFlight {
    /// Requests one token may have running (0: no limit).
    per_token: usize,
    /// Requests one client address may have running (0: no limit).
    per_address: usize,
    /// Requests the server runs at once, admins' aside.
    total: usize,
    state: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    by_holder: HashMap<Holder, usize>,
    total: usize,
}

/// A running request's place; dropping it frees the place.
#[derive(Debug)]
pub struct Permit {
    owner: Arc<InFlight>,
    holders: Vec<Holder>,
    counted: bool,
}

impl InFlight {
    /// Limits per token, per address (0: none) and for the whole server.
    pub fn new(per_token: usize, per_address: usize, total: usize) -> Self {
        Self {
            per_token,
            per_address,
            total,
            state: Mutex::new(Counts::default()),
        }
    }

    /// A place for a request of `principal` from `address`, or the answer refusing it.
    pub fn admit(
        self: &Arc<Self>,
        principal: &Principal,
        address: &str,
    ) -> Result<Permit, ApiError> {
        // An admin's token has its own ceiling, but neither its address nor the server's
        // counts it: whoever shares its address, or fills the server, cannot lock it out.
        let admin = principal.authenticated && principal.role == Role::Admin;
        let mut holders = Vec::with_capacity(2);
        if principal.authenticated && self.per_token > 0 {
            holders.push((Holder::Token(principal.token_id.clone()), self.per_token));
        }
        if self.per_address > 0 && !admin {
            holders.push((Holder::Address(address.to_string()), self.per_address));
        }
        let counted = !admin;
        let mut state = self.state.lock();
        if counted && state.total >= self.total {
            counter!(INFLIGHT_REFUSED, "by" => "server").increment(1);
            return Err(ApiError::Busy {
                status: 503,
                message: format!(
                    "the server is already running its maximum of {} requests (server.max_inflight_requests); retry shortly",
                    self.total
                ),
            });
        }
        for (holder, limit) in &holders {
            if state.by_holder.get(holder).copied().unwrap_or(0) >= *limit {
                let (by, what) = match holder {
                    Holder::Token(id) => ("token", format!("token {id:?}")),
                    Holder::Address(a) => ("address", format!("address {a}")),
                };
                counter!(INFLIGHT_REFUSED, "by" => by).increment(1);
                return Err(ApiError::Busy {
                    status: 429,
                    message: format!(
                        "{what} already has {limit} requests running (rate_limit.max_inflight_per_{by}); wait for one to finish"
                    ),
                });
            }
        }
        for (holder, _) in &holders {
            *state.by_holder.entry(holder.clone()).or_insert(0) += 1;
        }
        if counted {
            state.total += 1;
        }
        Ok(Permit {
            owner: self.clone(),
            holders: holders.into_iter().map(|(h, _)| h).collect(),
            counted,
        })
    }

    /// Requests running now (admins' included only per token and address).
    pub fn running(&self) -> usize {
        self.state.lock().total
    }
}

/// A request body that must have arrived in full by a deadline; past it, the stream ends
/// with an error and the state says so (408).
struct DeadlineBody {
    inner: Rc<RefCell<Payload>>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    state: Arc<BodyState>,
    done: bool,
}

impl DeadlineBody {
    /// Wraps `inner`, which must be complete within `limit` from now.
    fn new(inner: Rc<RefCell<Payload>>, limit: Duration, state: Arc<BodyState>) -> Self {
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep(limit)),
            state,
            done: false,
        }
    }
}

impl Stream for DeadlineBody {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let polled = Pin::new(&mut *self.inner.borrow_mut()).poll_next(cx);
        if let Poll::Ready(item) = polled {
            if item.is_none() {
                self.done = true;
                self.state.ended.store(true, Ordering::Relaxed);
            }
            return Poll::Ready(item);
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.done = true;
                self.state.expired.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the request body did not arrive in time",
                )))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut state = self.owner.state.lock();
        for holder in &self.holders {
            if let Some(n) = state.by_holder.get_mut(holder) {
                *n -= 1;
                if *n == 0 {
                    state.by_holder.remove(holder);
                }
            }
        }
        if self.counted {
            state.total -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(id: &str, role: Role) -> Principal {
        let mut p = Principal::local();
        p.token_id = id.into();
        p.role = role;
        p.authenticated = true;
        p
    }

    #[test]
    fn tokens_addresses_and_the_server_each_have_a_ceiling_and_permits_give_places_back() {
        let limits = Arc::new(InFlight::new(2, 3, 4));
        let op = principal("op", Role::Operator);
        let other = principal("other", Role::Operator);
        let a = limits.admit(&op, "10.0.0.1").unwrap();
        let _b = limits.admit(&op, "10.0.0.1").unwrap();
        let token_full = limits.admit(&op, "10.0.0.2").unwrap_err();
        let _c = limits.admit(&other, "10.0.0.1").unwrap();
        let address_full = limits.admit(&other, "10.0.0.1").unwrap_err();
        let _d = limits.admit(&other, "10.0.0.9").unwrap();
        let server_full = limits
            .admit(&principal("third", Role::Viewer), "10.0.0.7")
            .unwrap_err();
        // From the full address, with the server full: an admin still gets in.
        let admin = limits.admit(&principal("root", Role::Admin), "10.0.0.1");
        let mut local = Principal::local();
        local.token_id = "local".into();
        let unauthenticated = limits.admit(&local, "127.0.0.1");

        assert!(
            matches!(token_full, ApiError::Busy { status: 429, ref message } if message.contains("token \"op\""))
        );
        assert!(
            matches!(address_full, ApiError::Busy { status: 429, ref message } if message.contains("10.0.0.1"))
        );
        assert!(matches!(server_full, ApiError::Busy { status: 503, .. }));
        assert!(
            admin.is_ok(),
            "admins count against neither their address's ceiling nor the server's"
        );
        assert!(
            matches!(unauthenticated, Err(ApiError::Busy { status: 503, .. })),
            "without authentication everyone counts against the server's ceiling"
        );
        assert_eq!(limits.running(), 4);
        drop(a);
        assert_eq!(limits.running(), 3);
        assert!(limits.admit(&op, "10.0.0.2").is_ok(), "the place came back");
    }
}
