//! Live clients (WebSocket and SSE connections) and the fan-out to them.
//!
//! Each connected client gets a [`ClientQueue`]: bounded, drop-oldest, never blocking the
//! distributor. The connection (in the server crate) consumes it as a [`ClientFeed`]
//! stream. A client that stops reading loses its oldest frames, each loss counted; once it
//! has overflowed `maxClientDrops` times in a row without reading anything it is cut off,
//! so a stuck browser tab costs a bounded amount of memory and no other client notices.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytestring::ByteString;
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
    /// Encoded text, shared with every other client receiving the same event.
    pub text: ByteString,
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

    /// Whether every event is wanted, whatever its name or origin.
    pub fn takes_everything(&self) -> bool {
        self.include.is_none()
            && self.exclude.is_empty()
            && self.sources.is_none()
            && self.devices.is_none()
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

/// A client's frames in order: single frames, and runs of frames shared by every client
/// that takes a whole batch (one reference count per run, not one per frame and client).
#[derive(Debug)]
enum Chunk {
    One(Frame),
    Run { frames: Arc<[Frame]>, next: usize },
}

/// Frames waiting for (or taken by) a client, with their count and bytes.
#[derive(Debug, Default)]
struct Waiting {
    chunks: VecDeque<Chunk>,
    frames: usize,
    bytes: usize,
}

impl Waiting {
    fn push(&mut self, chunk: Chunk, frames: usize, bytes: usize) {
        self.chunks.push_back(chunk);
        self.frames += frames;
        self.bytes += bytes;
    }

    /// Takes the oldest frame off (a run's is cloned: the run stays shared).
    fn pop(&mut self) -> Option<Frame> {
        let frame = match self.chunks.front_mut()? {
            Chunk::Run { frames, next } => {
                let frame = frames.get(*next).cloned();
                *next += 1;
                if *next >= frames.len() {
                    self.chunks.pop_front();
                }
                frame?
            }
            Chunk::One(_) => match self.chunks.pop_front() {
                Some(Chunk::One(frame)) => frame,
                _ => return None,
            },
        };
        self.frames -= 1;
        self.bytes -= frame.text.len();
        Some(frame)
    }

    /// Drops the oldest frame without handing it out.
    fn evict(&mut self) {
        let size = match self.chunks.front_mut() {
            None => return,
            Some(Chunk::One(frame)) => {
                let size = frame.text.len();
                self.chunks.pop_front();
                size
            }
            Some(Chunk::Run { frames, next }) => {
                let size = frames.get(*next).map_or(0, |f| f.text.len());
                *next += 1;
                if *next >= frames.len() {
                    self.chunks.pop_front();
                }
                size
            }
        };
        self.frames -= 1;
        self.bytes -= size;
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

#[derive(Debug)]
struct QueueState {
    waiting: Waiting,
    closed: Option<CloseReason>,
    /// Overflows since the consumer last took a frame.
    overflows_in_a_row: u64,
    /// The consumer's waker while it waits on an empty queue: a push wakes it only then
    /// (a consumer with frames in hand polls again anyway), so a busy connection costs
    /// the distributor no wake-up per frame.
    parked: Option<Waker>,
}

/// The bounded, drop-oldest queue between a distributor and one live connection.
#[derive(Debug)]
pub struct ClientQueue {
    /// Number of the client within its distributor (for logs).
    pub id: u64,
    state: Mutex<QueueState>,
    capacity: usize,
    /// Most bytes of frames waiting: a client that stops reading holds at most this much
    /// however large the events (the frame count alone would allow gigabytes).
    max_bytes: usize,
    /// Event patterns the client wants; changed by the connection, read on fan-out.
    subscription: RwLock<Subscription>,
    /// Frames evicted because the client was not reading.
    dropped: AtomicU64,
    /// Set when the queue is closed on a client that must not get its backlog (stuck,
    /// or its token revoked): the feed drops what it had taken too.
    discard: AtomicBool,
    /// Set by the feed whenever it hands a frame out: a client working through what it
    /// took is reading, and its overflows in a row start again from zero.
    progressed: AtomicBool,
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
                waiting: Waiting::default(),
                closed: None,
                overflows_in_a_row: 0,
                parked: None,
            }),
            capacity: capacity.max(1),
            max_bytes: usize::MAX,
            subscription: RwLock::new(subscription),
            dropped: AtomicU64::new(0),
            discard: AtomicBool::new(false),
            progressed: AtomicBool::new(false),
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
        let size = frame.text.len();
        self.enqueue(Chunk::One(frame), 1, size)
    }

    /// Queues a run of frames shared with other clients (all of a batch the client
    /// wants), `bytes` their total size.
    fn push_run(&self, frames: Arc<[Frame]>, bytes: usize) -> Offer {
        let count = frames.len();
        if count == 0 {
            return Offer::Filtered;
        }
        self.enqueue(Chunk::Run { frames, next: 0 }, count, bytes)
    }

    /// Queues `chunk` of `count` frames and `size` bytes, then evicts the oldest frames
    /// while over either bound (never the newest one); each frame of the chunk that had
    /// to push others out counts as one overflow.
    fn enqueue(&self, chunk: Chunk, count: usize, size: usize) -> Offer {
        let mut state = self.state.lock();
        if state.closed.is_some() {
            return Offer::Closed;
        }
        state.waiting.push(chunk, count, size);
        let mut evicted = 0u64;
        while state.waiting.frames > 1
            && (state.waiting.frames > self.capacity || state.waiting.bytes > self.max_bytes)
        {
            state.waiting.evict();
            evicted += 1;
        }
        if evicted > 0 {
            if self.progressed.swap(false, Ordering::Relaxed) {
                state.overflows_in_a_row = 0;
            }
            state.overflows_in_a_row += evicted.min(count as u64);
            self.dropped.fetch_add(evicted, Ordering::Relaxed);
        }
        let parked = state.parked.take();
        drop(state);
        if let Some(waker) = parked {
            waker.wake();
        }
        if evicted > 0 {
            Offer::Evicted(evicted)
        } else {
            Offer::Queued
        }
    }

    /// The consumer handed a frame out (written only when it was not already set, so a
    /// busy connection does not write the flag's cache line per frame).
    fn note_progress(&self) {
        if !self.progressed.load(Ordering::Relaxed) {
            self.progressed.store(true, Ordering::Relaxed);
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
            self.capacity.saturating_sub(state.waiting.frames),
            self.max_bytes.saturating_sub(state.waiting.bytes),
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
            state.waiting.clear();
            self.discard.store(true, Ordering::Relaxed);
        }
        let parked = state.parked.take();
        drop(state);
        if let Some(waker) = parked {
            waker.wake();
        }
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
            taken: Waiting::default(),
        }
    }
}

/// A client's frames as a stream; ends after the queue is closed and drained. Dropping it
/// (the connection went away) closes the queue, so the distributor forgets the client.
///
/// The feed takes everything queued at once (one lock for many frames, the queue's
/// storage swapped with its own empty one) and hands the frames out from there; the
/// connection asks for the next frame only when its socket takes more, so a client that
/// does not read holds at most the queue's bound waiting plus one bound taken.
#[derive(Debug)]
pub struct ClientFeed {
    queue: Arc<ClientQueue>,
    /// Frames taken off the queue, in order, not yet handed out.
    taken: Waiting,
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
        let this = self.get_mut();
        if this.queue.discard.load(Ordering::Relaxed) {
            this.taken.clear();
        }
        if let Some(frame) = this.taken.pop() {
            this.queue.note_progress();
            return Poll::Ready(Some(frame));
        }
        let mut state = this.queue.state.lock();
        if state.waiting.frames > 0 {
            // `taken` is empty: the queue gets it back as its (empty) storage.
            std::mem::swap(&mut state.waiting, &mut this.taken);
            state.overflows_in_a_row = 0;
            drop(state);
            return Poll::Ready(this.taken.pop());
        }
        if state.closed.is_some() {
            return Poll::Ready(None);
        }
        // Parked under the lock a push takes: a frame queued after this look wakes us.
        match &mut state.parked {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            parked => *parked = Some(cx.waker().clone()),
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
        self.offer_each(|client| (client.offer(name, origin, frame.clone()), 1))
    }

    /// Offers several events at once: `events[i]` (name and origin) raised `frames[i]`,
    /// `bytes` their total size. A client that wants them all shares the run (one
    /// reference count, one lock); one that wants some gets its own run of those.
    /// Returns the deliveries made.
    pub fn publish_batch(
        &mut self,
        events: &[(&str, &Origin)],
        frames: &Arc<[Frame]>,
        bytes: usize,
    ) -> usize {
        self.offer_each(|client| {
            let subscription = client.subscription.read();
            if subscription.takes_everything() {
                drop(subscription);
                return (client.push_run(frames.clone(), bytes), frames.len());
            }
            let wanted: Vec<bool> = events
                .iter()
                .map(|(name, origin)| subscription.accepts(name, origin))
                .collect();
            drop(subscription);
            if wanted.iter().all(|w| *w) {
                return (client.push_run(frames.clone(), bytes), frames.len());
            }
            if !wanted.iter().any(|w| *w) {
                return (Offer::Filtered, 0);
            }
            let own: Vec<Frame> = frames
                .iter()
                .zip(&wanted)
                .filter(|(_, w)| **w)
                .map(|(f, _)| f.clone())
                .collect();
            let size = own.iter().map(|f| f.text.len()).sum();
            let count = own.len();
            (client.push_run(own.into(), size), count)
        })
    }

    /// Runs `offer` for every client (what it did, and how many frames it offered);
    /// counts evictions, cuts off clients stuck for `maxClientDrops` overflows, forgets
    /// closed ones. Returns the frames taken.
    fn offer_each(&mut self, mut offer: impl FnMut(&ClientQueue) -> (Offer, usize)) -> usize {
        let mut taken = 0;
        let mut evicted = 0;
        let mut any_closed = false;
        for client in &self.clients {
            let (outcome, count) = offer(client);
            match outcome {
                Offer::Queued => taken += count,
                Offer::Evicted(n) => {
                    taken += count;
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

    /// A fan-out of client queues of `capacity` frames (no byte bound) that cuts a client
    /// off after `max_drops` overflows in a row, and its counters.
    fn fanout(capacity: usize, max_drops: u64) -> (LiveFanout, Arc<DistributorTelemetry>) {
        let telemetry = Arc::new(DistributorTelemetry::new(
            "t".into(),
            DistributorKind::Websocket,
        ));
        let config = FanoutConfig {
            client_queue_capacity: capacity,
            client_queue_bytes: usize::MAX,
            max_client_drops: max_drops,
            max_clients: 10,
        };
        (LiveFanout::new(config, telemetry.clone()), telemetry)
    }

    fn frame(seq: u64) -> Frame {
        Frame {
            seq,
            text: ByteString::from(format!("{seq}")),
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
        let (mut fanout, telemetry) = fanout(2, 3);
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

    /// Counts its wake-ups.
    struct Counting(AtomicU64);

    impl futures_util::task::ArcWake for Counting {
        fn wake_by_ref(me: &Arc<Self>) {
            me.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_parked_feed_is_woken_once_and_takes_everything_queued_in_order() {
        let q = Arc::new(ClientQueue::new(1, 100, Subscription::all()));
        let mut feed = q.feed();
        let wakes = Arc::new(Counting(AtomicU64::new(0)));
        let waker = futures_util::task::waker(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut feed).poll_next(&mut cx).is_pending());
        for seq in 1..=5 {
            q.push(frame(seq));
        }
        // Only the first push found the feed waiting.
        assert_eq!(wakes.0.load(Ordering::Relaxed), 1);
        assert_eq!(q.room().0, 95);
        let mut got = Vec::new();
        while let Poll::Ready(Some(f)) = Pin::new(&mut feed).poll_next(&mut cx) {
            got.push(f.seq);
            // The first take emptied the queue at once.
            assert_eq!(q.room(), (100, usize::MAX));
        }
        assert_eq!(got, [1, 2, 3, 4, 5]);
        // Parked again: the next push wakes it again.
        q.push(frame(6));
        assert_eq!(wakes.0.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_client_reading_what_it_took_is_not_cut_off_and_one_that_stops_is() {
        let (mut fanout, _) = fanout(4, 3);
        let q = fanout.attach(Subscription::all()).unwrap();
        let mut feed = q.feed();
        let next = |feed: &mut ClientFeed| {
            futures_util::FutureExt::now_or_never(feed.next())
                .flatten()
                .map(|f| f.seq)
        };
        for seq in 1..=4 {
            fanout.publish("e", &none(), &frame(seq));
        }
        // The feed takes all four at once, then works through them.
        assert_eq!(next(&mut feed), Some(1));
        for seq in 5..=8 {
            fanout.publish("e", &none(), &frame(seq));
        }
        // Behind, but reading: each overflow comes after a frame read.
        for seq in 9..=14 {
            fanout.publish("e", &none(), &frame(seq));
            assert!(next(&mut feed).is_some());
            assert_eq!(q.close_reason(), None, "cut off while reading (seq {seq})");
        }
        // Stopped reading: once full, three overflows in a row, and it is cut off.
        for seq in 15..=20 {
            fanout.publish("e", &none(), &frame(seq));
        }
        assert_eq!(q.close_reason(), Some(CloseReason::SlowConsumer));
    }

    #[test]
    fn frames_taken_by_a_feed_are_dropped_when_its_client_is_cut_off() {
        let q = Arc::new(ClientQueue::new(1, 100, Subscription::all()));
        let mut feed = q.feed();
        for seq in 1..=3 {
            q.push(frame(seq));
        }
        let first = futures_util::FutureExt::now_or_never(feed.next()).flatten();
        assert_eq!(first.map(|f| f.seq), Some(1));
        q.close(CloseReason::TokenRevoked);
        assert!(matches!(
            futures_util::FutureExt::now_or_never(feed.next()),
            Some(None)
        ));
    }

    #[test]
    fn a_batch_is_shared_by_clients_taking_all_and_filtered_for_the_others() {
        let (mut fanout, telemetry) = fanout(4, 0);
        let all = fanout.attach(Subscription::all()).unwrap();
        let faces = fanout.attach(Subscription::only(&["face_*"])).unwrap();
        let nothing = fanout.attach(Subscription::only(&["gaze"])).unwrap();
        let names = ["face_seen", "tick", "face_lost"];
        let origin = none();
        let events: Vec<(&str, &Origin)> = names.iter().map(|n| (*n, &origin)).collect();
        let frames: Arc<[Frame]> = (1..=3).map(frame).collect();
        let bytes = frames.iter().map(|f| f.text.len()).sum();
        assert_eq!(fanout.publish_batch(&events, &frames, bytes), 3 + 2);
        // One more batch than the queue holds: the oldest go, counted per frame.
        let more: Arc<[Frame]> = (4..=6).map(frame).collect();
        let more_events: Vec<(&str, &Origin)> = ["tick"; 3].iter().map(|n| (*n, &origin)).collect();
        fanout.publish_batch(&more_events, &more, 3);
        let drain = |q: &Arc<ClientQueue>| {
            let mut feed = q.feed();
            let mut seqs = Vec::new();
            while let Some(f) = futures_util::FutureExt::now_or_never(feed.next()).flatten() {
                seqs.push(f.seq);
            }
            seqs
        };
        assert_eq!(drain(&all), [3, 4, 5, 6]);
        assert_eq!(all.dropped(), 2);
        assert_eq!(drain(&faces), [1, 3]);
        assert!(drain(&nothing).is_empty());
        assert_eq!(telemetry.counters().client_frames_dropped, 2);
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
