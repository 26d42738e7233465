//! Live clients (WebSocket and SSE connections) and the fan-out to them.
//!
//! Each connected client gets a [`ClientQueue`]: bounded, drop-oldest, never blocking the
//! distributor. The connection (in the server crate) consumes it as a [`ClientFeed`]
//! stream. A client that stops reading loses its oldest frames, each loss counted; once it
//! has overflowed `maxClientDrops` times in a row without reading anything it is cut off,
//! so a stuck browser tab costs a bounded amount of memory and no other client notices.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use futures_util::Stream;
use parking_lot::{Mutex, RwLock};
use serde::Serialize;

use super::CloseReason;
use crate::event::Origin;
use crate::glob::Glob;
use crate::telemetry::{DistributorTelemetry, LiveClientDisconnected};

/// One encoded event on its way to one client.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Session sequence number of the event.
    pub seq: u64,
    /// Encoded bytes, shared with every other client receiving the same event.
    pub bytes: Bytes,
    /// When the event arrived, to measure delivery latency at write time.
    pub accepted_at: Instant,
}

/// Most patterns (subscribed and excluded) one live connection may hold: room for a
/// token scope of the most globs a token may have (64) and as many of the client's own.
pub const MAX_PATTERNS: usize = 128;

/// Which events a live client wants (by event-name glob, or by device channel glob), and
/// which sources and devices its token lets it hear.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Subscription {
    /// `None` means every event; `Some(list)` only events matching one of the patterns
    /// (or one of `channels`).
    include: Option<Vec<Glob>>,
    /// Device channels (`device:SN123:*`): their events are wanted too, whatever their name.
    channels: Vec<Glob>,
    /// Events matching these are skipped even if included.
    exclude: Vec<Glob>,
    /// Set by the connection's token, never by the client: events raised by a source
    /// reach the client only when the source matches one of these.
    sources: Option<Vec<Glob>>,
    /// Set by the token too: events about a device only when its serial matches.
    devices: Option<Vec<Glob>>,
}

/// The subscription as shown to the client.
#[derive(Debug, Serialize)]
pub struct SubscriptionView {
    /// Patterns received (`["*"]` for everything).
    pub events: Vec<String>,
    /// Patterns excluded.
    pub exclude: Vec<String>,
    /// Device channel patterns received.
    pub channels: Vec<String>,
}

impl Subscription {
    /// Every event.
    pub fn all() -> Self {
        Self::default()
    }

    /// No event at all (a token scoped to no events).
    pub fn none() -> Self {
        Self {
            include: Some(Vec::new()),
            ..Self::default()
        }
    }

    /// Only events matching `patterns` (an empty list means every event).
    pub fn only<S: AsRef<str>>(patterns: &[S]) -> Self {
        if patterns.is_empty() {
            return Self::all();
        }
        Self {
            include: Some(patterns.iter().map(|p| Glob::new(p.as_ref())).collect()),
            ..Self::default()
        }
    }

    /// Limits the events raised by sources to sources matching `patterns` (`None`: any).
    /// Events no source raised (posted by clients) are not affected.
    pub fn from_sources<S: AsRef<str>>(mut self, patterns: Option<&[S]>) -> Self {
        self.sources = patterns.map(|list| list.iter().map(|p| Glob::new(p.as_ref())).collect());
        self
    }

    /// Limits the events about devices to devices whose serial matches `patterns`
    /// (`None`: any). Events about no device are not affected.
    pub fn from_devices<S: AsRef<str>>(mut self, patterns: Option<&[S]>) -> Self {
        self.devices = patterns.map(|list| list.iter().map(|p| Glob::new(p.as_ref())).collect());
        self
    }

    /// Whether an event named `name`, raised by `origin`, is wanted.
    pub fn accepts(&self, name: &str, origin: &Origin) -> bool {
        let scoped = |scope: &Option<Vec<Glob>>, id: &Option<std::sync::Arc<str>>| match (scope, id)
        {
            (Some(allowed), Some(id)) => allowed.iter().any(|g| g.matches(id)),
            _ => true,
        };
        if !scoped(&self.sources, &origin.source) || !scoped(&self.devices, &origin.device) {
            return false;
        }
        let included = match &self.include {
            None => true,
            Some(list) => {
                list.iter().any(|g| g.matches(name))
                    || origin
                        .channel
                        .as_deref()
                        .is_some_and(|c| self.channels.iter().any(|g| g.matches(c)))
            }
        };
        included && !self.exclude.iter().any(|g| g.matches(name))
    }

    /// Adds device channels; the first narrows "every event" to what is subscribed.
    pub fn subscribe_channels<S: AsRef<str>>(&mut self, patterns: &[S]) {
        if patterns.is_empty() {
            return;
        }
        if self.include.is_none() {
            self.include = Some(Vec::new());
        }
        for p in patterns {
            let g = Glob::new(p.as_ref());
            if !self.channels.contains(&g) {
                self.channels.push(g);
            }
        }
    }

    /// Removes device channels.
    pub fn unsubscribe_channels<S: AsRef<str>>(&mut self, patterns: &[S]) {
        for p in patterns {
            let g = Glob::new(p.as_ref());
            self.channels.retain(|c| *c != g);
        }
    }

    /// Narrows or widens: the first `subscribe` replaces "everything" with the patterns,
    /// later ones add to them; a pattern previously excluded is no longer excluded.
    pub fn subscribe<S: AsRef<str>>(&mut self, patterns: &[S]) {
        for p in patterns {
            let g = Glob::new(p.as_ref());
            self.exclude.retain(|e| *e != g);
            if g.as_str() == "*" {
                self.include = None;
                continue;
            }
            match &mut self.include {
                None => self.include = Some(vec![g]),
                Some(list) if !list.contains(&g) => list.push(g),
                Some(_) => {}
            }
        }
    }

    /// Removes patterns; a pattern that was not subscribed becomes an exclusion.
    pub fn unsubscribe<S: AsRef<str>>(&mut self, patterns: &[S]) {
        for p in patterns {
            let g = Glob::new(p.as_ref());
            match &mut self.include {
                Some(list) if list.contains(&g) => list.retain(|i| *i != g),
                _ if g.as_str() == "*" => self.include = Some(Vec::new()),
                _ => {
                    if !self.exclude.contains(&g) {
                        self.exclude.push(g)
                    }
                }
            }
        }
    }

    /// The subscription in words, for acknowledgements.
    pub fn view(&self) -> SubscriptionView {
        SubscriptionView {
            events: match &self.include {
                None => vec!["*".into()],
                Some(list) => list.iter().map(|g| g.as_str().to_string()).collect(),
            },
            exclude: self
                .exclude
                .iter()
                .map(|g| g.as_str().to_string())
                .collect(),
            channels: self
                .channels
                .iter()
                .map(|g| g.as_str().to_string())
                .collect(),
        }
    }
}

#[derive(Debug)]
struct QueueState {
    frames: VecDeque<Frame>,
    /// Bytes of the frames waiting.
    bytes: usize,
    closed: Option<CloseReason>,
    /// Overflows since the consumer last took a frame.
    overflows_in_a_row: u64,
}

/// The bounded, drop-oldest queue between a distributor and one live connection.
#[derive(Debug)]
pub struct ClientQueue {
    /// Number of the client within its distributor (for logs).
    pub id: u64,
    state: Mutex<QueueState>,
    waker: AtomicWaker,
    capacity: usize,
    /// Most bytes of frames waiting: a client that stops reading holds at most this much
    /// however large the events (the frame count alone would allow gigabytes).
    max_bytes: usize,
    /// Event patterns the client wants; changed by the connection, read on fan-out.
    subscription: RwLock<Subscription>,
    /// Frames evicted because the client was not reading.
    dropped: AtomicU64,
}

/// What happened to a frame offered to a client.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer {
    /// Queued.
    Queued,
    /// Queued, evicting this many of the oldest frames (the frame limit, or the byte
    /// limit, was reached).
    Evicted(u64),
    /// The client does not want this event.
    Filtered,
    /// The client is gone or closed.
    Closed,
}

impl ClientQueue {
    /// An open queue holding at most `capacity` frames.
    pub fn new(id: u64, capacity: usize, subscription: Subscription) -> Self {
        Self {
            id,
            state: Mutex::new(QueueState {
                frames: VecDeque::with_capacity(capacity.min(64)),
                bytes: 0,
                closed: None,
                overflows_in_a_row: 0,
            }),
            waker: AtomicWaker::new(),
            capacity: capacity.max(1),
            max_bytes: usize::MAX,
            subscription: RwLock::new(subscription),
            dropped: AtomicU64::new(0),
        }
    }

    /// The same queue holding at most `max_bytes` of frames (a single larger frame is
    /// still queued, alone).
    pub fn bounded_in_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes.max(1);
        self
    }

    /// Offers a frame of event `name`, raised by `origin`; never blocks.
    pub fn offer(&self, name: &str, origin: &Origin, frame: Frame) -> Offer {
        if !self.wants(name, origin) {
            return Offer::Filtered;
        }
        self.push(frame)
    }

    /// Queues a frame whatever the subscription (protocol preambles, comments).
    pub fn push(&self, frame: Frame) -> Offer {
        let mut state = self.state.lock();
        if state.closed.is_some() {
            return Offer::Closed;
        }
        let size = frame.bytes.len();
        let mut evicted = 0;
        while !state.frames.is_empty()
            && (state.frames.len() >= self.capacity || state.bytes + size > self.max_bytes)
        {
            if let Some(old) = state.frames.pop_front() {
                state.bytes -= old.bytes.len();
            }
            evicted += 1;
        }
        if evicted > 0 {
            state.overflows_in_a_row += 1;
            self.dropped.fetch_add(evicted, Ordering::Relaxed);
        }
        state.bytes += size;
        state.frames.push_back(frame);
        drop(state);
        self.waker.wake();
        if evicted > 0 {
            Offer::Evicted(evicted)
        } else {
            Offer::Queued
        }
    }

    /// Whether the client wants an event named `name`, raised by `origin`.
    pub fn wants(&self, name: &str, origin: &Origin) -> bool {
        self.subscription.read().accepts(name, origin)
    }

    /// Free frames and bytes: what can be queued without evicting anything.
    pub fn room(&self) -> (usize, usize) {
        let state = self.state.lock();
        (
            self.capacity.saturating_sub(state.frames.len()),
            self.max_bytes.saturating_sub(state.bytes),
        )
    }

    /// Overflows since the client last read.
    pub fn overflows_in_a_row(&self) -> u64 {
        self.state.lock().overflows_in_a_row
    }

    /// Closes the queue: the feed yields what is queued, then ends. The first reason wins.
    pub fn close(&self, reason: CloseReason) {
        let mut state = self.state.lock();
        if state.closed.is_none() {
            state.closed = Some(reason);
        }
        if matches!(
            reason,
            CloseReason::SlowConsumer | CloseReason::TokenRevoked
        ) {
            // A stuck client will not read the backlog anyway, and a revoked one may not.
            state.frames.clear();
            state.bytes = 0;
        }
        drop(state);
        self.waker.wake();
    }

    /// Why the queue was closed, once it is.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.state.lock().closed
    }

    /// Whether the queue is closed.
    pub fn is_closed(&self) -> bool {
        self.state.lock().closed.is_some()
    }

    /// Frames evicted so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The subscription in words.
    pub fn subscription(&self) -> Subscription {
        self.subscription.read().clone()
    }

    /// What the subscription is, for people.
    pub fn subscription_view(&self) -> SubscriptionView {
        self.subscription.read().view()
    }

    /// Runs `change` on the subscription and returns its new view; a change that would
    /// leave more than [`MAX_PATTERNS`] patterns (every event is checked against each) is
    /// refused and leaves the subscription as it was.
    pub fn update_subscription(
        &self,
        change: impl FnOnce(&mut Subscription),
    ) -> Result<SubscriptionView, String> {
        let mut sub = self.subscription.write();
        let mut next = sub.clone();
        change(&mut next);
        let patterns =
            next.include.as_ref().map_or(0, Vec::len) + next.exclude.len() + next.channels.len();
        if patterns > MAX_PATTERNS {
            return Err(format!(
                "a connection may hold at most {MAX_PATTERNS} event and channel patterns (this would make \
                 {patterns}); the subscription is unchanged"
            ));
        }
        *sub = next;
        Ok(sub.view())
    }

    /// The consumer side as a stream.
    pub fn feed(self: &Arc<Self>) -> ClientFeed {
        ClientFeed {
            queue: self.clone(),
        }
    }
}

/// A client's frames as a stream; ends after the queue is closed and drained. Dropping it
/// (the connection went away) closes the queue, so the distributor forgets the client.
#[derive(Debug)]
pub struct ClientFeed {
    queue: Arc<ClientQueue>,
}

impl ClientFeed {
    /// The queue behind the feed.
    pub fn queue(&self) -> &Arc<ClientQueue> {
        &self.queue
    }
}

impl Stream for ClientFeed {
    type Item = Frame;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Frame>> {
        let queue = &self.queue;
        for attempt in 0..2 {
            {
                let mut state = queue.state.lock();
                if let Some(frame) = state.frames.pop_front() {
                    state.bytes -= frame.bytes.len();
                    state.overflows_in_a_row = 0;
                    return Poll::Ready(Some(frame));
                }
                if state.closed.is_some() {
                    return Poll::Ready(None);
                }
            }
            if attempt == 0 {
                // Register, then look again, so a frame offered in between is not missed.
                queue.waker.register(cx.waker());
            }
        }
        Poll::Pending
    }
}

impl Drop for ClientFeed {
    fn drop(&mut self) {
        self.queue.close(CloseReason::ClientGone);
    }
}

/// Settings of a live-feed distributor's fan-out.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FanoutConfig {
    /// Frames a client may have waiting (`clientQueueCapacity`).
    pub client_queue_capacity: usize,
    /// Bytes of frames a client may have waiting (`clientQueueBytes`).
    pub client_queue_bytes: usize,
    /// Overflows in a row that get a client disconnected; 0 never disconnects
    /// (`maxClientDrops`).
    pub max_client_drops: u64,
    /// Connected clients allowed on this distributor (`maxClients`).
    pub max_clients: usize,
}

/// The clients of one live-feed distributor.
pub struct LiveFanout {
    clients: Vec<Arc<ClientQueue>>,
    next_id: u64,
    config: FanoutConfig,
    telemetry: Arc<DistributorTelemetry>,
}

impl LiveFanout {
    /// No clients yet.
    pub fn new(config: FanoutConfig, telemetry: Arc<DistributorTelemetry>) -> Self {
        Self {
            clients: Vec::new(),
            next_id: 1,
            config,
            telemetry,
        }
    }

    /// New limits; they apply to clients that connect from now on (and to drop counting).
    pub fn set_config(&mut self, config: FanoutConfig) {
        self.config = config;
    }

    /// Adds a client and returns its queue.
    pub fn attach(&mut self, subscription: Subscription) -> Result<Arc<ClientQueue>, String> {
        self.sweep();
        if self.clients.len() >= self.config.max_clients {
            return Err(format!(
                "the {} distributor already has its maximum of {} clients",
                self.telemetry.kind, self.config.max_clients
            ));
        }
        let queue = Arc::new(
            ClientQueue::new(
                self.next_id,
                self.config.client_queue_capacity,
                subscription,
            )
            .bounded_in_bytes(self.config.client_queue_bytes),
        );
        self.next_id += 1;
        self.clients.push(queue.clone());
        self.telemetry.set_clients(self.clients.len());
        Ok(queue)
    }

    /// Offers one event's frame to every client; counts evictions and cuts off stuck
    /// clients. Returns the number of clients that took the frame.
    pub fn publish(&mut self, name: &str, origin: &Origin, frame: &Frame) -> usize {
        let mut taken = 0;
        let mut evicted = 0;
        let mut any_closed = false;
        for client in &self.clients {
            match client.offer(name, origin, frame.clone()) {
                Offer::Queued => taken += 1,
                Offer::Evicted(n) => {
                    taken += 1;
                    evicted += n;
                    let limit = self.config.max_client_drops;
                    if limit > 0 && client.overflows_in_a_row() >= limit {
                        client.close(CloseReason::SlowConsumer);
                        any_closed = true;
                        LiveClientDisconnected {
                            telemetry: &self.telemetry,
                            client: client.id,
                            reason: CloseReason::SlowConsumer.as_str(),
                        }
                        .emit();
                    }
                }
                Offer::Filtered => {}
                Offer::Closed => any_closed = true,
            }
        }
        self.telemetry.client_frames_dropped(evicted);
        if any_closed {
            self.sweep();
        }
        taken
    }

    /// Forgets clients whose connection is gone; counts those the server cut off from
    /// outside the fan-out (their token was revoked).
    pub fn sweep(&mut self) {
        let before = self.clients.len();
        let telemetry = &self.telemetry;
        self.clients.retain(|c| {
            let reason = c.close_reason();
            if reason == Some(CloseReason::TokenRevoked) {
                LiveClientDisconnected {
                    telemetry,
                    client: c.id,
                    reason: CloseReason::TokenRevoked.as_str(),
                }
                .emit();
            }
            reason.is_none()
        });
        if self.clients.len() != before {
            self.telemetry.set_clients(self.clients.len());
        }
    }

    /// Disconnects every client with `reason`.
    pub fn close_all(&mut self, reason: CloseReason) {
        for client in self.clients.drain(..) {
            // One already closed keeps its reason: a client that left is not counted, a
            // revoked one is counted as revoked (the sweep would have).
            let reason = match client.close_reason() {
                None => reason,
                Some(CloseReason::TokenRevoked) => CloseReason::TokenRevoked,
                Some(_) => continue,
            };
            client.close(reason);
            LiveClientDisconnected {
                telemetry: &self.telemetry,
                client: client.id,
                reason: reason.as_str(),
            }
            .emit();
        }
        self.telemetry.set_clients(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distributor::DistributorKind;
    use futures_util::StreamExt;

    fn none() -> Origin {
        Origin::default()
    }

    fn frame(seq: u64) -> Frame {
        Frame {
            seq,
            bytes: Bytes::from(format!("{seq}")),
            accepted_at: Instant::now(),
        }
    }

    #[test]
    fn subscription_narrows_then_widens() {
        let mut s = Subscription::all();
        assert!(s.accepts("anything", &none()));
        s.subscribe(&["face_*"]);
        assert!(s.accepts("face_detected", &none()));
        assert!(!s.accepts("track_started", &none()));
        s.subscribe(&["track_*"]);
        assert!(s.accepts("track_started", &none()));
        s.unsubscribe(&["face_*"]);
        assert!(!s.accepts("face_detected", &none()));
        let mut all = Subscription::all();
        all.unsubscribe(&["noise"]);
        assert!(!all.accepts("noise", &none()));
        assert!(all.accepts("signal", &none()));
        all.subscribe(&["noise"]);
        assert!(all.accepts("noise", &none()));
    }

    #[test]
    fn a_source_scope_hides_other_sources_and_survives_subscribing_to_everything() {
        let mut s = Subscription::all().from_sources(Some(&["lab-cam-*"]));
        assert!(s.accepts("track_started", &Origin::source("lab-cam-1".into())));
        assert!(!s.accepts("track_started", &Origin::source("driveway".into())));
        assert!(
            s.accepts("note", &none()),
            "client events belong to the session"
        );
        s.subscribe(&["*"]);
        assert!(!s.accepts("track_started", &Origin::source("driveway".into())));
        let open = Subscription::all().from_sources(None::<&[&str]>);
        assert!(open.accepts("track_started", &Origin::source("driveway".into())));
    }

    #[test]
    fn channels_add_device_events_and_a_device_scope_hides_other_devices() {
        let about = |serial: &str, what: &str| Origin {
            device: Some(serial.into()),
            channel: Some(format!("device:{serial}:{what}").into()),
            ..Origin::default()
        };
        let mut s = Subscription::only(&["face_*"]);
        s.subscribe_channels(&["device:SN1:*"]);
        assert!(s.accepts("face_detected", &none()));
        assert!(s.accepts("device.updated", &about("SN1", "updated")));
        assert!(!s.accepts("device.updated", &about("SN2", "updated")));
        assert_eq!(s.view().channels, ["device:SN1:*"]);
        // Channels alone narrow "everything" to those channels.
        let mut only = Subscription::all();
        only.subscribe_channels(&["device:*:stream"]);
        assert!(only.accepts("device.stream.status", &about("SN2", "stream")));
        assert!(!only.accepts("device.updated", &about("SN2", "updated")));
        assert!(!only.accepts("face_detected", &none()));
        only.unsubscribe_channels(&["device:*:stream"]);
        assert!(!only.accepts("device.stream.status", &about("SN2", "stream")));
        // A token's device scope wins over any subscription.
        let mut scoped = Subscription::all().from_devices(Some(&["SN1"]));
        scoped.subscribe(&["*"]);
        assert!(scoped.accepts("device.updated", &about("SN1", "updated")));
        assert!(!scoped.accepts("device.updated", &about("SN2", "updated")));
        assert!(scoped.accepts("note", &none()));
    }

    #[test]
    fn slow_client_is_cut_off_without_touching_the_fast_one() {
        let telemetry = Arc::new(DistributorTelemetry::new(
            "t".into(),
            DistributorKind::Websocket,
        ));
        let mut fanout = LiveFanout::new(
            FanoutConfig {
                client_queue_capacity: 2,
                client_queue_bytes: usize::MAX,
                max_client_drops: 3,
                max_clients: 10,
            },
            telemetry.clone(),
        );
        let slow = fanout.attach(Subscription::all()).unwrap();
        let fast = fanout.attach(Subscription::all()).unwrap();
        let mut fast_feed = fast.feed();
        let mut received = Vec::new();
        for seq in 1..=10 {
            fanout.publish("e", &none(), &frame(seq));
            // The fast client reads everything as it comes.
            while let Some(f) = futures_util::FutureExt::now_or_never(fast_feed.next()).flatten() {
                received.push(f.seq);
            }
        }
        assert_eq!(received, (1..=10).collect::<Vec<_>>());
        assert_eq!(slow.close_reason(), Some(CloseReason::SlowConsumer));
        // Capacity 2: seqs 3, 4, 5 overflowed, the third overflow cut it off.
        assert_eq!(slow.dropped(), 3);
        let counters = telemetry.counters();
        assert_eq!(counters.connected_clients, 1);
        assert_eq!(counters.slow_client_disconnects, 1);
        assert_eq!(counters.client_frames_dropped, 3);
    }

    #[test]
    fn feed_ends_after_close_and_drop_closes_queue() {
        let q = Arc::new(ClientQueue::new(1, 4, Subscription::all()));
        q.offer("e", &none(), frame(1));
        q.close(CloseReason::SessionClosed);
        let mut feed = q.feed();
        let first = futures_util::FutureExt::now_or_never(feed.next()).flatten();
        assert_eq!(first.map(|f| f.seq), Some(1));
        // Closed and drained: the stream ends instead of waiting.
        assert!(matches!(
            futures_util::FutureExt::now_or_never(feed.next()),
            Some(None)
        ));
        let q2 = Arc::new(ClientQueue::new(2, 4, Subscription::all()));
        drop(q2.feed());
        assert_eq!(q2.close_reason(), Some(CloseReason::ClientGone));
    }
}
