//! The system feed: the server's own events (sessions opened and closed, distributors
//! changed, breakers moving, restarts, sources and models changing state, devices, tokens,
//! a periodic health summary) published into the built-in `system` session, which
//! distributes them like any session's events (docs/API.md#the-system-session).
//!
//! Components hold a [`SystemFeed`] (it travels in the guardrails) and [`SystemFeed::emit`]
//! never waits: events go through a bounded channel to [`forward`], which hands them to
//! the session in batches. A full channel drops the event and counts it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use chrono::Utc;
use metrics::{counter, describe_counter};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::event::Origin;
use crate::messages::{FindSession, IncomingEvent, PublishEvents};
use crate::registry::SessionRegistry;

/// The built-in session's id.
pub const SYSTEM_SESSION: &str = "system";
/// System events by outcome: `published` or `dropped` (the feed's channel was full).
pub const SYSTEM_EVENTS: &str = "synopticon_system_events_total";
/// Events waiting between the components and the session.
const CHANNEL: usize = 4096;
/// Events handed over in one message.
const BATCH: usize = 256;
/// How long the registry or the session may take to answer.
const ANSWER: Duration = Duration::from_secs(5);
/// Pause before looking for the session again.
const NOT_YET: Duration = Duration::from_millis(200);

/// Describes the feed's metric.
pub fn describe() {
    describe_counter!(
        SYSTEM_EVENTS,
        "System events by outcome: published into the system session, or dropped because its feed was full."
    );
}

/// Where components send the server's own events; a feed made with `Default` discards
/// them (tools and tests that build parts without a server).
#[derive(Debug, Clone, Default)]
pub struct SystemFeed {
    tx: Option<mpsc::Sender<IncomingEvent>>,
    dropped: Arc<AtomicU64>,
}

impl SystemFeed {
    /// A feed and the receiving end [`forward`] drains.
    pub fn channel() -> (Self, mpsc::Receiver<IncomingEvent>) {
        let (tx, rx) = mpsc::channel(CHANNEL);
        (
            Self {
                tx: Some(tx),
                dropped: Arc::new(AtomicU64::new(0)),
            },
            rx,
        )
    }

    /// Publishes `name` with `data` into the system session; never waits.
    pub fn emit(&self, name: &str, data: Value) {
        self.emit_with(name, data, Origin::default());
    }

    /// The same, saying which source or device the event is about.
    pub fn emit_with(&self, name: &str, data: Value, origin: Origin) {
        let Some(tx) = &self.tx else { return };
        // Error texts may hold URLs with passwords: viewers read this feed.
        let text = data.to_string();
        let data = match crate::secrets::redact_url(&text) {
            Some(clean) => serde_json::from_str(&clean).unwrap_or(data),
            None => data,
        };
        let event = IncomingEvent {
            name: name.to_string(),
            data: crate::json::to_raw(&data).into(),
            ts: Some(Utc::now()),
            origin,
        };
        if tx.try_send(event).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            counter!(SYSTEM_EVENTS, "outcome" => "dropped").increment(1);
        }
    }

    /// Events dropped because the feed was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Hands the feed's events to the `system` session, in order, until the feed closes. Until
/// the session exists (it is made after the kept sessions are restored) events wait in
/// the channel.
pub async fn forward(mut rx: mpsc::Receiver<IncomingEvent>, registry: Addr<SessionRegistry>) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        if batch.is_empty() {
            match rx.recv().await {
                Some(event) => batch.push(event),
                None => return,
            }
        }
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
        let found = tokio::time::timeout(
            ANSWER,
            registry.send(FindSession(SYSTEM_SESSION.to_string())),
        )
        .await;
        let session = match found {
            Ok(Ok(session)) => session,
            // The registry stopped: the server is shutting down.
            Ok(Err(_)) => return,
            Err(_) => None,
        };
        let Some(session) = session else {
            tokio::time::sleep(NOT_YET).await;
            continue;
        };
        let n = batch.len() as u64;
        let events = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
        let outcome = match tokio::time::timeout(ANSWER, session.send(PublishEvents(events))).await
        {
            Ok(Ok(_)) => "published",
            _ => "dropped",
        };
        counter!(SYSTEM_EVENTS, "outcome" => outcome).increment(n);
    }
}
