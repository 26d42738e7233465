//! The server's own Redis connection (`redis.url`): messages other services subscribe to,
//! such as device changes on `device:{serial}:{what}` channels.
//!
//! One connection for the whole server, fed through a bounded queue: a publisher never
//! waits for Redis. While Redis is away messages wait in the queue and are tried again;
//! what no longer fits is dropped and counted, and a message not published within 30 s of
//! being queued counts as failed. Nothing is lost silently.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use metrics::{counter, describe_counter, describe_gauge, gauge};
use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::secrets::redact_url;

/// Messages the bus handled, by outcome: published, failed (not published within
/// [`MESSAGE_TTL`] of being queued), dropped (the queue was full).
pub const BUS_MESSAGES: &str = "synopticon_redis_bus_messages_total";
/// 1 while the bus holds a connection to Redis.
pub const BUS_CONNECTED: &str = "synopticon_redis_bus_connected";

/// Messages that may wait for Redis.
pub const BUS_QUEUE: usize = 10_000;
/// How long one `PUBLISH` may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between connection attempts.
const RECONNECT: Duration = Duration::from_secs(1);
/// A message not published this long after it was queued counts as failed: it is tried
/// again while Redis is away, but a long outage must not leave stale news to drain.
pub const MESSAGE_TTL: Duration = Duration::from_secs(30);

/// Describes the bus's metrics.
pub fn describe() {
    describe_counter!(
        BUS_MESSAGES,
        "Messages of the server's Redis connection (redis.url) by outcome: published, failed (Redis refused or timed out), dropped (the queue of 10,000 was full)."
    );
    describe_gauge!(
        BUS_CONNECTED,
        "1 while the server's Redis connection (redis.url) is up."
    );
}

/// What the bus has done, for `/api/health` and the status of its users.
#[derive(Debug, Default, Serialize)]
pub struct BusStatus {
    /// The URL, its password hidden.
    pub url: String,
    /// Whether a connection is up.
    pub connected: bool,
    /// Messages Redis took.
    pub published: u64,
    /// Messages Redis refused or did not answer.
    pub failed: u64,
    /// Messages dropped because the queue was full.
    pub dropped: u64,
    /// Messages waiting.
    pub queued: usize,
    /// The latest connection or command error.
    pub last_error: Option<String>,
}

#[derive(Default)]
struct Counters {
    connected: AtomicBool,
    published: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// One message: its channel, its payload, when it was queued.
type Message = (String, Bytes, Instant);

/// The server's Redis publisher. Cheap to clone.
#[derive(Clone)]
pub struct RedisBus {
    tx: mpsc::Sender<Message>,
    counters: Arc<Counters>,
    url: Arc<str>,
}

impl RedisBus {
    /// Checks `url` and starts the connection in the background (on the current Tokio
    /// runtime); messages published before it is up wait in the queue.
    pub fn start(url: &str) -> Result<RedisBus, String> {
        let shown: Arc<str> = Arc::from(redact_url(url).unwrap_or_else(|| url.to_string()));
        let client = redis::Client::open(url).map_err(|e| format!("redis.url {shown:?}: {e}"))?;
        let (tx, rx) = mpsc::channel(BUS_QUEUE);
        let counters = Arc::new(Counters::default());
        gauge!(BUS_CONNECTED).set(0.0);
        let task = tokio::spawn(run(client, rx, counters.clone(), shown.clone()));
        let (watched, url) = (counters.clone(), shown.clone());
        // The task ends only when every sender is gone; if it ever stops otherwise (a
        // panic), health says so instead of looking connected.
        tokio::spawn(async move {
            if let Err(e) = task.await {
                watched.connected.store(false, Ordering::Relaxed);
                gauge!(BUS_CONNECTED).set(0.0);
                *watched.last_error.lock() = Some(format!("the Redis bus stopped: {e}"));
                tracing::error!(url = %url, error = %e, "the Redis bus stopped");
            }
        });
        Ok(RedisBus {
            tx,
            counters,
            url: shown,
        })
    }

    /// Queues `payload` for `PUBLISH channel`; never waits. A full queue drops it (counted).
    pub fn publish(&self, channel: String, payload: Bytes) {
        match self.tx.try_send((channel, payload, Instant::now())) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                let dropped = self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                counter!(BUS_MESSAGES, "outcome" => "dropped").increment(1);
                if dropped.is_power_of_two() {
                    tracing::warn!(url = %self.url, dropped = dropped + 1, "the Redis bus queue is full: messages are dropped");
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                counter!(BUS_MESSAGES, "outcome" => "failed").increment(1);
            }
        }
    }

    /// What the bus has done.
    pub fn status(&self) -> BusStatus {
        let c = &self.counters;
        BusStatus {
            url: self.url.to_string(),
            connected: c.connected.load(Ordering::Relaxed),
            published: c.published.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            queued: BUS_QUEUE - self.tx.capacity(),
            last_error: c.last_error.lock().clone(),
        }
    }
}

/// Connects (retrying), then publishes what comes, until every sender is gone.
async fn run(
    client: redis::Client,
    mut rx: mpsc::Receiver<Message>,
    counters: Arc<Counters>,
    url: Arc<str>,
) {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(COMMAND_TIMEOUT))
        .set_response_timeout(Some(COMMAND_TIMEOUT))
        .set_max_delay(RECONNECT);
    // Logged when it changes: a Redis away for an hour is one line, not 3600.
    let fail = |error: String| {
        let mut last = counters.last_error.lock();
        if last.as_deref() != Some(error.as_str()) {
            tracing::warn!(url = %url, %error, "Redis bus");
        }
        *last = Some(error);
    };
    let mut connection: ConnectionManager = loop {
        match client
            .get_connection_manager_with_config(config.clone())
            .await
        {
            Ok(c) => break c,
            Err(e) => {
                fail(format!("cannot connect: {e}"));
                if rx.is_closed() {
                    return;
                }
                tokio::time::sleep(RECONNECT).await;
            }
        }
    };
    tracing::info!(url = %url, "Redis bus connected");
    counters.connected.store(true, Ordering::Relaxed);
    gauge!(BUS_CONNECTED).set(1.0);
    while let Some((channel, payload, queued)) = rx.recv().await {
        // A message is tried again while the connection manager reconnects (the queue
        // holds what comes meanwhile), until it is too old to matter.
        loop {
            if queued.elapsed() > MESSAGE_TTL {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                counter!(BUS_MESSAGES, "outcome" => "failed").increment(1);
                break;
            }
            let sent: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                .arg(&channel)
                .arg(payload.as_ref())
                .query_async(&mut connection)
                .await;
            match sent {
                Ok(_) => {
                    counters.published.fetch_add(1, Ordering::Relaxed);
                    counter!(BUS_MESSAGES, "outcome" => "published").increment(1);
                    if !counters.connected.swap(true, Ordering::Relaxed) {
                        tracing::info!(url = %url, "Redis bus connected again");
                        gauge!(BUS_CONNECTED).set(1.0);
                    }
                    break;
                }
                Err(e) => {
                    if counters.connected.swap(false, Ordering::Relaxed) {
                        gauge!(BUS_CONNECTED).set(0.0);
                        fail(format!("PUBLISH {channel}: {e}"));
                    }
                    tokio::time::sleep(RECONNECT).await;
                }
            }
        }
    }
}
