//! Live feeds: `GET /api/v1/sessions/{id}/ws` (WebSocket) and `.../sse` (Server-Sent Events).
//!
//! The client is attached to the session's distributor *before* the handshake answers, so
//! every event accepted after the client sees `101`/`200` reaches it. Each WebSocket
//! connection is a [`WsConnection`] actor consuming its client queue as a stream; each SSE
//! response body is a [`SseBody`] stream over the same kind of queue.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use bytes::Bytes;
use futures_util::Stream;
use metrics::{describe_counter, Counter, Histogram};
use serde::Deserialize;
use serde_json::json;
use synopticon_actors::distributor::live::{
    ClientFeed, ClientQueue, Frame, Subscription, MAX_PATTERNS,
};
use synopticon_actors::distributor::{CloseReason, DistributorKind, LiveAttach};
use synopticon_actors::glob::{is_valid_pattern, PATTERN_RULE};
use synopticon_actors::telemetry::{DELIVERY_LATENCY, LIVE_FRAMES};

use super::api::{Answers, Api, Content};
use crate::auth::tokens::LiveLimit;
use crate::auth::{Access, Principal, ResourceScope, TokenScope};
use crate::error::ApiError;
use crate::state::AppState;

/// Client operations that could not be understood.
const LIVE_CLIENT_ERRORS: &str = "synopticon_live_client_errors_total";
/// The WebSocket subprotocol a browser offers next to `bearer.TOKEN`; the server selects
/// it, since a browser fails a handshake whose answer names no offered protocol.
pub const WS_PROTOCOL: &str = "synopticon";

/// Registers the routes.
pub fn configure(api: &mut Api) {
    api.live_feed("/api/v1/sessions/{id}/ws", ResourceScope::Session, |r| {
        r.get(Access::VIEWER, websocket).answers(Answers::UPGRADE)
    });
    api.live_feed("/api/v1/sessions/{id}/sse", ResourceScope::Session, |r| {
        r.get(Access::VIEWER, sse)
            .answers(Answers::ok(Content::Text("text/event-stream")))
    });
}

/// Describes this module's metrics.
pub fn describe_metrics() {
    describe_counter!(
        LIVE_CLIENT_ERRORS,
        "Messages from live clients that were refused (bad JSON, unknown op)."
    );
}

/// Query parameters of both feeds.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedQuery {
    /// Comma-separated event globs to start with (default: every event).
    events: Option<String>,
    /// Comma-separated device channel globs (`device:SN123:*`) to start with.
    channels: Option<String>,
    /// SSE resume point for clients that cannot set `Last-Event-ID`.
    last_event_id: Option<u64>,
    /// WebSocket resume point: the last seq the client has.
    since: Option<u64>,
    /// The session epoch that seq belongs to (from the hello frame).
    epoch: Option<String>,
}

impl FeedQuery {
    /// The starting subscription: the `events` asked for, which must lie within the
    /// token's events; without `events`, everything the token may see; in either case
    /// only from the sources the token may see.
    fn subscription(&self, scope: &TokenScope) -> Result<Subscription, ApiError> {
        let patterns = query_patterns("events", self.events.as_deref())?;
        let channels = query_patterns("channels", self.channels.as_deref())?;
        if patterns.len() + channels.len() > MAX_PATTERNS {
            return Err(ApiError::BadRequest(format!(
                "events and channels: {} patterns; a connection may hold at most {MAX_PATTERNS}",
                patterns.len() + channels.len()
            )));
        }
        if let Some(c) = channels.iter().find(|c| !scope.allows_events(c)) {
            return Err(ApiError::Forbidden(format!(
                "channels: this token may not subscribe to {c:?} (allowed: {:?})",
                scope.events.clone().unwrap_or_default()
            )));
        }
        let subscription = match &scope.events {
            // `only(&[])` would mean everything: an empty scope means nothing.
            Some(allowed) if patterns.is_empty() && allowed.is_empty() => Ok(Subscription::none()),
            Some(allowed) if patterns.is_empty() && channels.is_empty() => {
                Ok(Subscription::only(allowed))
            }
            _ => match patterns.iter().find(|p| !scope.allows_events(p)) {
                Some(p) => Err(ApiError::Forbidden(format!(
                    "events: this token may not subscribe to {p:?} (allowed: {:?})",
                    scope.events.clone().unwrap_or_default()
                ))),
                None => Ok(Subscription::only(&patterns)),
            },
        };
        let mut subscription = subscription?;
        if !channels.is_empty() {
            if patterns.is_empty() {
                // Channels alone: only those channels' events.
                subscription = Subscription::none();
            }
            subscription.subscribe_channels(&channels);
        }
        // Events of sources and devices outside the token's scope never reach the feed,
        // even when the session listens to them.
        Ok(subscription
            .from_sources(scope.sources.as_deref())
            .from_devices(scope.devices.as_deref()))
    }
}

/// The comma-separated globs of query parameter `name`, checked.
fn query_patterns<'a>(name: &str, list: Option<&'a str>) -> Result<Vec<&'a str>, ApiError> {
    let patterns: Vec<&str> = list
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if let Some(p) = patterns.iter().find(|p| !is_valid_pattern(p)) {
        return Err(ApiError::BadRequest(format!(
            "{name}: {p:?} is not a valid pattern: use {PATTERN_RULE}"
        )));
    }
    Ok(patterns)
}

/// Registers the connection under its token, within the connection limits.
fn register(
    state: &AppState,
    principal: &Principal,
    req: &HttpRequest,
    queue: &Arc<ClientQueue>,
) -> Result<(), ApiError> {
    let address = crate::auth::guard::address_key(req);
    state
        .auth
        .tokens
        .register_live(principal, &address, queue, state.auth.live_limits)
        .map_err(|limit| {
            queue.close(CloseReason::ClientGone);
            match limit {
                LiveLimit::Revoked => ApiError::Unauthorized(format!(
                    "token {:?} was revoked or changed while connecting",
                    principal.token_id
                )),
                LiveLimit::Total(n) => ApiError::Unavailable(format!(
                    "the server holds its maximum of {n} live connections (live.max_connections)"
                )),
                LiveLimit::PerToken(n) => ApiError::TooManyRequests {
                    message: format!(
                        "token {:?} holds its maximum of {n} live connections (live.max_connections_per_token)",
                        principal.token_id
                    ),
                    retry_after: 5,
                },
                LiveLimit::PerAddress(n) => ApiError::TooManyRequests {
                    message: format!(
                        "address {address} holds its maximum of {n} live connections (live.max_connections_per_address)"
                    ),
                    retry_after: 5,
                },
            }
        })
}

async fn attach(
    state: &AppState,
    id: &str,
    kind: DistributorKind,
    request: LiveAttach,
) -> Result<Arc<ClientQueue>, ApiError> {
    Ok(state.sessions.attach(id, kind, request).await?)
}

/// Per-connection handles on the shared metric series (no label lookups per frame).
struct FrameMetrics {
    sent: Counter,
    latency: Histogram,
    /// Frames sent on this connection, for sampling the latency.
    frames: std::cell::Cell<u32>,
    /// Sent frames not yet added to the shared counter: every connection of a session
    /// shares one, and adding to it per frame from two cores is what it would cost.
    pending: std::cell::Cell<u64>,
}

/// Frames a connection counts before adding them to the shared counter (and it adds
/// what it has whenever it is idle or closes).
const COUNT_EVERY: u64 = 64;

impl Drop for FrameMetrics {
    fn drop(&mut self) {
        self.flush();
    }
}

/// One frame in this many has its latency recorded (the histogram's shape needs no more,
/// and at millions of frames a second every sample costs).
const LATENCY_SAMPLE: u32 = 8;

impl FrameMetrics {
    fn new(session: &str, kind: DistributorKind) -> Self {
        Self {
            sent: metrics::counter!(LIVE_FRAMES, "session" => session.to_string(), "distributor" => kind.as_str(), "outcome" => "sent"),
            latency: metrics::histogram!(DELIVERY_LATENCY, "distributor" => kind.as_str()),
            frames: std::cell::Cell::new(0),
            pending: std::cell::Cell::new(0),
        }
    }

    /// Adds the frames counted here to the shared counter.
    fn flush(&self) {
        let n = self.pending.replace(0);
        if n > 0 {
            self.sent.increment(n);
        }
    }

    fn record(&self, frame: &Frame) {
        if frame.seq > 0 {
            let pending = self.pending.get() + 1;
            self.pending.set(pending);
            if pending >= COUNT_EVERY {
                self.flush();
            }
            let n = self.frames.get().wrapping_add(1);
            self.frames.set(n);
            if n % LATENCY_SAMPLE == 1 {
                self.latency
                    .record(frame.accepted_at.elapsed().as_secs_f64());
            }
        }
    }
}

// ---------------------------------------------------------------- WebSocket

async fn websocket(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    query: web::Query<FeedQuery>,
    req: HttpRequest,
    stream: web::Payload,
) -> Result<HttpResponse, actix_web::Error> {
    state.origins.check_handshake(&req)?;
    let subscription = query.subscription(&principal.scope)?;
    let session = state.sessions.status(&id).await.map_err(ApiError::from)?;
    // A resume point from another epoch cannot be served: that history is gone.
    let (resume_after, notice) = match (query.since, query.epoch.as_deref()) {
        (Some(since), Some(epoch)) if epoch != &*session.epoch => (
            None,
            Some(json!({"op": "resume", "since": since, "recovered": false,
                "replayed": 0, "last_seq": session.last_seq,
                "reason": format!("epoch {epoch:?} is not the session's current epoch {:?}: the server restarted and the events before it are gone; live events follow", session.epoch)})),
        ),
        (since, _) => (since, None),
    };
    let queue = attach(
        &state,
        &id,
        DistributorKind::Websocket,
        LiveAttach {
            subscription,
            resume_after,
        },
    )
    .await?;
    register(&state, &principal, &req, &queue)?;
    let live = &state.settings.live;
    let publisher = Publisher {
        state: state.clone(),
        address: crate::auth::guard::address_key(&req),
        principal: principal.clone(),
    };
    let connection = WsConnection {
        publisher,
        epoch: session.epoch.clone(),
        last_seq: session.last_seq,
        notice,
        scope: principal.scope.clone(),
        metrics: FrameMetrics::new(&id, DistributorKind::Websocket),
        session: id.into_inner(),
        feed: Some(queue.feed()),
        stream: None,
        queue: queue.clone(),
        last_seen: Instant::now(),
        heartbeat: Duration::from_millis(live.heartbeat_interval_ms),
        timeout: Duration::from_millis(live.client_timeout_ms),
        allowance: (CLIENT_MESSAGE_BURST, Instant::now()),
        throttled: false,
    };
    let response = ws::WsResponseBuilder::new(connection, &req, stream)
        .frame_size(live.max_frame_bytes)
        .protocols(&[WS_PROTOCOL])
        .start();
    if response.is_err() {
        // The handshake failed, so the actor never started: release the client slot.
        tracing::debug!("WebSocket handshake refused");
        queue.close(CloseReason::ClientGone);
    }
    response
}

/// What a client needs to publish over its socket.
struct Publisher {
    state: web::Data<AppState>,
    /// Its address, for the event rate limit.
    address: String,
    /// Its token.
    principal: Principal,
}

/// `{"op": "publish", "event", "data"?, "ts"?}` or `{"op": "publish", "batch": [...]}`,
/// with `"ack": true` for the assigned seqs and `ref` echoed in the answer.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishOp<'a> {
    #[allow(dead_code)]
    op: &'a str,
    #[serde(borrow, default)]
    event: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow, default)]
    data: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow, default)]
    ts: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow, default)]
    batch: Option<&'a serde_json::value::RawValue>,
    #[serde(default)]
    ack: bool,
    #[serde(rename = "ref", default)]
    reference: Option<serde_json::Value>,
}

/// Just the op, to pick the parser.
#[derive(Deserialize)]
struct OpName<'a> {
    #[serde(borrow)]
    op: std::borrow::Cow<'a, str>,
}

/// One WebSocket client.
pub struct WsConnection {
    /// For publishing.
    publisher: Publisher,
    /// The session's epoch and latest seq when the client connected, for the hello frame.
    epoch: Arc<str>,
    last_seq: u64,
    /// Said right after the hello (a resume point from another epoch).
    notice: Option<serde_json::Value>,
    /// Session id, for logs and the hello frame.
    session: String,
    /// What the client's token may subscribe to.
    scope: Arc<TokenScope>,
    /// The client's queue (subscription lives there).
    queue: Arc<ClientQueue>,
    /// Taken in `started` and added as a stream.
    feed: Option<ClientFeed>,
    /// The feed's stream, cancelled when a resume replaces the queue.
    stream: Option<SpawnHandle>,
    /// Last time the client showed it is alive (pong or any message).
    last_seen: Instant,
    /// Ping interval.
    heartbeat: Duration,
    /// Silence after which the client is dropped.
    timeout: Duration,
    /// Frame counters.
    metrics: FrameMetrics,
    /// Messages the client may still send now, and when that was worked out.
    allowance: (f64, Instant),
    /// Over its allowance and already told so: further messages are dropped silently
    /// (answering each would let a client make the server write as much as it reads).
    throttled: bool,
}

/// Text frames a client may send per second, sustained (subscription changes, pings).
const CLIENT_MESSAGES_PER_SEC: f64 = 20.0;
/// And in a burst.
const CLIENT_MESSAGE_BURST: f64 = 50.0;

/// A client's request over the socket.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientOp {
    op: String,
    #[serde(default)]
    events: Vec<String>,
    /// Device channel globs (`device:SN123:*`).
    #[serde(default)]
    channels: Vec<String>,
    /// `subscribe` only: the feed starts again after this seq, from the history.
    #[serde(default)]
    since: Option<u64>,
    /// With `since`: the epoch the client's seqs are from.
    #[serde(default)]
    epoch: Option<String>,
}

impl WsConnection {
    fn reply(&self, ctx: &mut ws::WebsocketContext<Self>, value: serde_json::Value) {
        ctx.text(value.to_string());
    }

    fn refuse(&self, ctx: &mut ws::WebsocketContext<Self>, error: String) {
        metrics::counter!(LIVE_CLIENT_ERRORS, "distributor" => "websocket").increment(1);
        self.reply(ctx, json!({"op": "error", "error": error}));
    }

    /// Takes one message from the client's allowance: subscription changes are cheap
    /// but not free, and a client has no reason to send many.
    /// Whether to act on a client frame. Over the allowance the client is told once, then
    /// its frames are ignored until the allowance has refilled completely (which ignored
    /// frames do not delay).
    fn admit(&mut self, ctx: &mut ws::WebsocketContext<Self>) -> bool {
        let (left, since) = self.allowance;
        let now = Instant::now();
        let left = (left + since.elapsed().as_secs_f64() * CLIENT_MESSAGES_PER_SEC)
            .min(CLIENT_MESSAGE_BURST);
        if self.throttled && left < CLIENT_MESSAGE_BURST {
            self.allowance = (left, now);
            return false;
        }
        self.throttled = false;
        if left >= 1.0 {
            self.allowance = (left - 1.0, now);
            return true;
        }
        self.allowance = (left, now);
        self.throttled = true;
        self.refuse(
            ctx,
            format!(
                "too many messages: at most {CLIENT_MESSAGES_PER_SEC} per second (bursts of \
                 {CLIENT_MESSAGE_BURST}); frames are ignored until the allowance refills"
            ),
        );
        false
    }

    /// Events the client publishes into the session: checked like posted ones, charged to
    /// its event rate limit, accepted in order (the socket is not read meanwhile, which is
    /// the producer's back-pressure), acknowledged with their seqs when asked.
    fn publish(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        let op: PublishOp = match serde_json::from_str(text) {
            Ok(op) => op,
            Err(e) => {
                return self.refuse(
                    ctx,
                    format!("cannot read the publish op: {e}; send {{\"op\": \"publish\", \"event\": \"gaze\", \"data\": {{...}}}} or {{\"op\": \"publish\", \"batch\": [...]}}"),
                )
            }
        };
        let reference = op.reference.clone();
        let p = &self.publisher;
        if p.principal.role < crate::auth::Role::Operator {
            return self.publish_failed(
                ctx,
                reference.as_ref(),
                ApiError::Forbidden(format!(
                    "token {:?} is a {} token; publishing needs an operator token",
                    p.principal.token_id,
                    p.principal.role.as_str()
                )),
            );
        }
        let body = match (op.batch, op.event) {
            (Some(_), Some(_)) => {
                return self.publish_failed(
                    ctx,
                    reference.as_ref(),
                    ApiError::BadRequest("publish takes \"event\" or \"batch\", not both".into()),
                )
            }
            (Some(batch), None) => batch.get().to_string(),
            (None, _) => {
                let mut one = String::with_capacity(text.len());
                one.push('{');
                let mut sep = "";
                for (k, v) in [("event", op.event), ("data", op.data), ("ts", op.ts)] {
                    if let Some(v) = v {
                        one.push_str(&format!("{sep}\"{k}\":{}", v.get()));
                        sep = ",";
                    }
                }
                one.push('}');
                one
            }
        };
        let max = p.state.settings.server.max_events_per_request;
        let events = match super::body::parse_events(body.as_bytes(), max) {
            Ok(events) => events,
            Err(e) => return self.publish_failed(ctx, reference.as_ref(), e),
        };
        if let Err(e) = super::scope::check_publish_scope(&p.principal, &events) {
            return self.publish_failed(ctx, reference.as_ref(), e);
        }
        if let Err(e) = crate::auth::guard::limit_events_at(
            &p.state.auth,
            &p.address,
            &p.principal,
            events.len(),
        ) {
            return self.publish_failed(ctx, reference.as_ref(), e);
        }
        let (sessions, id, ack) = (p.state.sessions.clone(), self.session.clone(), op.ack);
        let work = async move { sessions.publish(&id, events).await };
        ctx.wait(
            work.into_actor(self)
                .map(move |outcome, act, ctx| match outcome {
                    Ok(routed) if ack => {
                        let seqs: Vec<u64> = routed.iter().map(|r| r.seq).collect();
                        let mut answer = json!({"op": "ack", "accepted": seqs.len(), "seqs": seqs});
                        if let Some(r) = reference {
                            answer["ref"] = r;
                        }
                        act.reply(ctx, answer);
                    }
                    Ok(_) => {}
                    Err(e) => act.publish_failed(ctx, reference.as_ref(), e.into()),
                }),
        );
    }

    /// A refused publish: the error as REST would answer it, with its status and `ref`.
    fn publish_failed(
        &self,
        ctx: &mut ws::WebsocketContext<Self>,
        reference: Option<&serde_json::Value>,
        e: ApiError,
    ) {
        metrics::counter!(LIVE_CLIENT_ERRORS, "distributor" => "websocket").increment(1);
        let mut body = e.body();
        body["op"] = json!("error");
        body["status"] = json!(actix_web::ResponseError::status_code(&e).as_u16());
        if let ApiError::TooManyRequests { retry_after, .. } = &e {
            body["retry_after"] = json!(retry_after);
        }
        if let Some(r) = reference {
            body["ref"] = r.clone();
        }
        self.reply(ctx, body);
    }

    fn handle_text(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        let op: ClientOp = match serde_json::from_str(text) {
            Ok(op) => op,
            Err(e) => {
                return self.refuse(ctx, format!(
                    "cannot read {text:.64?}: {e}; send {{\"op\": \"subscribe\"|\"unsubscribe\", \"events\": [\"face_*\"], \"channels\": [\"device:SN123:*\"]}}"
                ))
            }
        };
        if let Some(bad) = op
            .events
            .iter()
            .chain(&op.channels)
            .find(|p| !is_valid_pattern(p))
        {
            return self.refuse(
                ctx,
                format!("pattern {bad:?} is not valid: use {PATTERN_RULE}"),
            );
        }
        match op.op.as_str() {
            "subscribe" | "unsubscribe"
                if op.events.is_empty() && op.channels.is_empty() && op.since.is_none() =>
            {
                self.refuse(
                    ctx,
                    format!(
                        "{} needs a non-empty \"events\" or \"channels\" list (or, for subscribe, \"since\")",
                        op.op
                    ),
                )
            }
            "subscribe"
                if op
                    .events
                    .iter()
                    .chain(&op.channels)
                    .any(|p| !self.scope.allows_events(p)) =>
            {
                let refused: Vec<&String> = op
                    .events
                    .iter()
                    .chain(&op.channels)
                    .filter(|p| !self.scope.allows_events(p))
                    .collect();
                self.refuse(
                    ctx,
                    format!(
                        "not allowed: this token may not subscribe to {refused:?} (allowed: {:?}); the subscription is unchanged",
                        self.scope.events.clone().unwrap_or_default()
                    ),
                )
            }
            "subscribe" | "unsubscribe" => {
                let subscribe = op.op == "subscribe";
                let changed = self.queue.update_subscription(|s| {
                    if subscribe {
                        if !op.events.is_empty() {
                            s.subscribe(&op.events);
                        }
                        s.subscribe_channels(&op.channels);
                    } else {
                        if !op.events.is_empty() {
                            s.unsubscribe(&op.events);
                        }
                        s.unsubscribe_channels(&op.channels);
                    }
                });
                match changed {
                    Ok(view) => {
                        self.reply(
                            ctx,
                            json!({"op": "subscribed", "events": view.events, "exclude": view.exclude, "channels": view.channels}),
                        );
                        if let (true, Some(since)) = (subscribe, op.since) {
                            self.resume(since, op.epoch, ctx);
                        }
                    }
                    Err(why) => self.refuse(ctx, why),
                }
            }
            "ping" => self.reply(ctx, json!({"op": "pong"})),
            other => self.refuse(
                ctx,
                format!("unknown op {other:?}; known: subscribe, unsubscribe, ping, publish"),
            ),
        }
    }
}

impl WsConnection {
    /// `{"op": "subscribe", "since": SEQ, "epoch"?: E}`: the feed starts again after
    /// `since` — a `resume` frame, what the history holds after it in order (also what
    /// this socket already had after it), then live events — on a new queue that replaces
    /// the connection's current one.
    fn resume(&mut self, since: u64, epoch: Option<String>, ctx: &mut ws::WebsocketContext<Self>) {
        if let Some(epoch) = epoch.filter(|e| **e != *self.epoch) {
            return self.reply(
                ctx,
                json!({"op": "resume", "since": since, "recovered": false, "replayed": 0,
                    "reason": format!("epoch {epoch:?} is not the session's current epoch {:?}: the server restarted and the events before it are gone; live events go on", &*self.epoch)}),
            );
        }
        let state = self.publisher.state.clone();
        let session = self.session.clone();
        let request = LiveAttach {
            subscription: self.queue.subscription(),
            resume_after: Some(since),
        };
        let attach = async move {
            state
                .sessions
                .attach(&session, DistributorKind::Websocket, request)
                .await
        };
        // Nothing else from this client is handled until the feed is replaced.
        ctx.wait(attach.into_actor(self).map(|attached, act, ctx| {
            let queue = match attached {
                Ok(queue) => queue,
                Err(e) => return act.refuse(ctx, format!("cannot resume: {e}")),
            };
            if let Some(old) = act.stream.take() {
                ctx.cancel_future(old);
            }
            act.queue.close(CloseReason::ClientGone);
            let p = &act.publisher;
            if let Err(limit) = p.state.auth.tokens.register_live(
                &p.principal,
                &p.address,
                &queue,
                p.state.auth.live_limits,
            ) {
                // The old feed is gone and the new one is not allowed (the token was
                // revoked meanwhile, or a limit): the connection ends, saying why.
                queue.close(CloseReason::ClientGone);
                let why = if matches!(limit, LiveLimit::Revoked) {
                    CloseReason::TokenRevoked.as_str()
                } else {
                    "connection_limit"
                };
                ctx.close(Some(ws::CloseReason {
                    code: ws::CloseCode::Policy,
                    description: Some(why.into()),
                }));
                ctx.stop();
                return;
            }
            act.stream = Some(ctx.add_stream(queue.feed()));
            act.queue = queue;
        }));
    }
}

impl Actor for WsConnection {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(feed) = self.feed.take() {
            self.stream = Some(ctx.add_stream(feed));
        }
        let view = self.queue.subscription_view();
        let can_publish = self.publisher.principal.role >= crate::auth::Role::Operator;
        self.reply(ctx, json!({"op": "hello", "session": self.session, "epoch": &*self.epoch, "last_seq": self.last_seq, "events": view.events, "exclude": view.exclude, "channels": view.channels, "publish": can_publish}));
        if let Some(notice) = self.notice.take() {
            self.reply(ctx, notice);
        }
        ctx.run_interval(self.heartbeat, |act, ctx| {
            act.metrics.flush();
            if act.last_seen.elapsed() > act.timeout {
                tracing::debug!(session = %act.session, client = act.queue.id, "WebSocket client timed out");
                ctx.close(Some(ws::CloseReason {
                    code: ws::CloseCode::Away,
                    description: Some("heartbeat timeout".into()),
                }));
                ctx.stop();
            } else {
                ctx.ping(b"");
            }
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.queue.close(CloseReason::ClientGone);
    }
}

/// Frames from the session.
impl StreamHandler<Frame> for WsConnection {
    fn handle(&mut self, frame: Frame, ctx: &mut Self::Context) {
        self.metrics.record(&frame);
        ctx.text(frame.text);
    }

    /// The queue was closed by the server: say why in the close frame.
    fn finished(&mut self, ctx: &mut Self::Context) {
        let reason = self
            .queue
            .close_reason()
            .unwrap_or(CloseReason::SessionClosed);
        let code = match reason {
            CloseReason::ServerShutdown => ws::CloseCode::Away,
            CloseReason::SlowConsumer | CloseReason::TokenRevoked => ws::CloseCode::Policy,
            _ => ws::CloseCode::Normal,
        };
        ctx.close(Some(ws::CloseReason {
            code,
            description: Some(reason.as_str().into()),
        }));
        ctx.stop();
    }
}

/// Messages from the client.
impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for WsConnection {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        self.last_seen = Instant::now();
        match msg {
            Ok(ws::Message::Ping(payload)) => ctx.pong(&payload),
            Ok(ws::Message::Pong(_)) => {}
            // Publishing is charged to the event rate limit, not to the allowance for
            // subscription changes.
            Ok(ws::Message::Text(text))
                if serde_json::from_str::<OpName>(&text).is_ok_and(|o| o.op == "publish") =>
            {
                self.publish(&text, ctx)
            }
            Ok(ws::Message::Text(_) | ws::Message::Binary(_)) if !self.admit(ctx) => {}
            Ok(ws::Message::Text(text)) => self.handle_text(&text, ctx),
            Ok(ws::Message::Binary(_)) => self.refuse(
                ctx,
                "binary frames are not understood; send JSON text".into(),
            ),
            Ok(ws::Message::Close(reason)) => {
                ctx.close(reason);
                ctx.stop();
            }
            Ok(ws::Message::Continuation(_)) | Ok(ws::Message::Nop) => {}
            Err(error) => {
                tracing::debug!(session = %self.session, %error, "WebSocket protocol error");
                let code = match error {
                    // A frame over live.max_frame_bytes.
                    ws::ProtocolError::Overflow => ws::CloseCode::Size,
                    _ => ws::CloseCode::Protocol,
                };
                ctx.close(Some(ws::CloseReason {
                    code,
                    description: Some(error.to_string()),
                }));
                ctx.stop();
            }
        }
    }
}

// ---------------------------------------------------------------- SSE

async fn sse(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    query: web::Query<FeedQuery>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let header_id = match req.headers().get("Last-Event-ID") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::BadRequest(
                        "Last-Event-ID: must be the id (a sequence number, 0 to 18446744073709551615) of an event this feed sent"
                            .into(),
                    )
                })?,
        ),
    };
    let request = LiveAttach {
        subscription: query.subscription(&principal.scope)?,
        resume_after: header_id.or(query.last_event_id),
    };
    let queue = attach(&state, &id, DistributorKind::Sse, request).await?;
    register(&state, &principal, &req, &queue)?;
    let heartbeat = Duration::from_millis(state.settings.live.sse_heartbeat_ms);
    let mut interval =
        actix_rt::time::interval_at(actix_rt::time::Instant::now() + heartbeat, heartbeat);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let body = SseBody {
        metrics: FrameMetrics::new(&id, DistributorKind::Sse),
        feed: queue.feed(),
        heartbeat: interval,
        finished: false,
    };
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

/// An SSE response body: frames from the queue, heartbeat comments when idle, and a final
/// comment saying why the stream ends.
pub struct SseBody {
    feed: ClientFeed,
    heartbeat: actix_rt::time::Interval,
    finished: bool,
    metrics: FrameMetrics,
}

impl Stream for SseBody {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.feed).poll_next(cx) {
            Poll::Ready(Some(frame)) => {
                self.metrics.record(&frame);
                return Poll::Ready(Some(Ok(frame.text.into_bytes())));
            }
            Poll::Ready(None) => {
                self.finished = true;
                let reason = self
                    .feed
                    .queue()
                    .close_reason()
                    .unwrap_or(CloseReason::SessionClosed);
                return Poll::Ready(Some(Ok(Bytes::from(format!(
                    ": stream closed: {}\n\n",
                    reason.as_str()
                )))));
            }
            // Caught up: what was sent is counted now.
            Poll::Pending => self.metrics.flush(),
        }
        match self.heartbeat.poll_tick(cx) {
            Poll::Ready(_) => Poll::Ready(Some(Ok(Bytes::from_static(b": heartbeat\n\n")))),
            Poll::Pending => Poll::Pending,
        }
    }
}
