//! One worker per action of a rule: a bounded queue (what overflows is dropped and
//! counted), retries with backoff for what can succeed later (an SMTP server that is down,
//! a webhook answering 503), a breaker that says so, and counters. A failing action never
//! blocks the pipeline or the other actions: the engine only queues.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Addr;
use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::future::{AbortHandle, Abortable};
use metrics::{counter, Counter};
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, OnceCell};

use super::capture::{self, Overlay};
use super::digest::{self, DigestConfig, DigestState, Item};
use super::email::{self, SmtpSettings};
use super::{ActionConfig, EventView};
use crate::messages::{FindSession, FrameRef, IncomingEvent, PublishEvents};
use crate::registry::SessionRegistry;
use crate::source::hub::SourceHub;
use crate::store::{Kind, Store};

/// Outcomes of rule actions.
pub const RULE_ACTIONS: &str = "synopticon_rule_actions_total";

/// Server-wide settings of the rules (`[rules]`).
#[derive(Debug, Clone)]
pub struct RulesSettings {
    /// Where `json_log` writes its daily files.
    pub log_dir: PathBuf,
    /// Days of JSON log kept.
    pub log_retention_days: u32,
    /// Where `frame_capture` saves JPEGs.
    pub captures_dir: PathBuf,
    /// Days of captures kept.
    pub captures_retention_days: u32,
    /// Bytes of captures kept at most (the oldest go first).
    pub captures_max_bytes: u64,
    /// Folders an envelope's `frame_ref` may name (resolved).
    pub frame_ref_dirs: Vec<PathBuf>,
    /// The SMTP server for e-mails.
    pub smtp: Option<SmtpSettings>,
    /// Matches each action may hold waiting.
    pub queue: usize,
}

/// What actions need from the server.
pub struct Context {
    /// Settings.
    pub settings: RulesSettings,
    /// Where digests are kept.
    pub store: Arc<Store>,
    /// Sessions, for the `session` action.
    pub registry: Addr<SessionRegistry>,
    /// Sources, for the lines and zones drawn on captures.
    pub sources: Arc<SourceHub>,
    /// Where webhooks may connect.
    pub egress: Arc<crate::egress::EgressPolicy>,
}

/// A matched event, shared by every action of the rule.
pub struct Matched {
    /// The rule.
    pub rule: Arc<str>,
    /// Event type.
    pub event: String,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// The source that raised it.
    pub source: Option<Arc<str>>,
    /// The device it is about.
    pub device: Option<Arc<str>>,
    /// Its data.
    pub data: Value,
    /// The frame it was raised on.
    pub frame: Option<Arc<FrameRef>>,
    /// The capture (JPEG, thumbnail), rendered once for all actions that want it.
    capture: OnceCell<Option<(Bytes, Bytes)>>,
}

impl Matched {
    /// A match of `rule`.
    pub fn new(rule: Arc<str>, e: &EventView<'_>, frame: Option<Arc<FrameRef>>) -> Self {
        Self {
            rule,
            event: e.name.to_string(),
            at: e.at,
            source: e.source.map(Arc::from),
            device: e.device.map(Arc::from),
            data: e.data.clone(),
            frame,
            capture: OnceCell::new(),
        }
    }

    /// The event as rules see it.
    pub fn view(&self) -> EventView<'_> {
        EventView {
            name: &self.event,
            data: &self.data,
            source: self.source.as_deref(),
            device: self.device.as_deref(),
            at: self.at,
        }
    }

    /// One JSON record: logs, webhooks and sessions carry it.
    pub fn record(&self) -> Value {
        json!({"ts": self.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "rule": &*self.rule, "event": self.event, "source": self.source.as_deref(),
            "device": self.device.as_deref(), "data": self.data})
    }

    /// The capture and its thumbnail, rendered (off the async threads) the first time an
    /// action asks; `None` when the event came with no frame.
    pub async fn capture(&self, ctx: &Context) -> Option<(Bytes, Bytes)> {
        self.capture
            .get_or_init(|| async {
                let frame = self.frame.clone()?;
                let overlay = self
                    .source
                    .as_deref()
                    .and_then(|s| ctx.sources.get(s).ok())
                    .map(|r| Overlay {
                        lines: r.config.lines.clone(),
                        zones: r.config.zones.clone(),
                    })
                    .unwrap_or_default();
                let data = self.data.clone();
                let dirs = ctx.settings.frame_ref_dirs.clone();
                let rendered = tokio::task::spawn_blocking(move || {
                    let mut image = capture::decode(&frame, &dirs)?;
                    capture::render(&mut image, &data, &overlay);
                    Ok::<_, String>((
                        capture::jpeg(&image, capture::QUALITY)?,
                        capture::thumbnail(&image)?,
                    ))
                })
                .await;
                match rendered {
                    Ok(Ok(c)) => Some(c),
                    Ok(Err(error)) => {
                        tracing::warn!(rule = %self.rule, %error, "no capture");
                        None
                    }
                    Err(_) => None,
                }
            })
            .await
            .clone()
    }
}

/// What an action has done.
#[derive(Debug, Serialize)]
pub struct ActionStatus {
    /// Its type.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Matches handed to it.
    pub matched: u64,
    /// Done.
    pub done: u64,
    /// Given up (a final failure).
    pub failed: u64,
    /// Dropped: its queue was full.
    pub dropped: u64,
    /// Attempts that failed and were tried again.
    pub retries: u64,
    /// Waiting in its queue.
    pub queued: usize,
    /// `closed` (working) or `open` (failing; matches wait and are tried again).
    pub breaker: &'static str,
    /// The latest error, and when.
    pub last_error: Option<(String, DateTime<Utc>)>,
    /// Digests: events gathered for the next one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gathered: Option<u64>,
}

/// An action's counters.
pub struct ActionStats {
    matched: AtomicU64,
    done: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    retries: AtomicU64,
    gathered: AtomicU64,
    open: AtomicBool,
    last_error: Mutex<Option<(String, DateTime<Utc>)>>,
    m_done: Counter,
    m_failed: Counter,
    m_dropped: Counter,
}

impl ActionStats {
    fn new(rule: &str, kind: &'static str) -> Self {
        let outcome = |o: &'static str| counter!(RULE_ACTIONS, "rule" => rule.to_string(), "action" => kind, "outcome" => o);
        Self {
            matched: AtomicU64::new(0),
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            gathered: AtomicU64::new(0),
            open: AtomicBool::new(false),
            last_error: Mutex::new(None),
            m_done: outcome("done"),
            m_failed: outcome("failed"),
            m_dropped: outcome("dropped"),
        }
    }

    fn done(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
        self.m_done.increment(1);
        self.open.store(false, Ordering::Relaxed);
    }

    fn failed(&self, rule: &str, kind: &str, error: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.m_failed.increment(1);
        tracing::warn!(rule, action = kind, %error, "rule action failed");
        *self.last_error.lock() = Some((error, Utc::now()));
    }

    fn retry(&self, rule: &str, kind: &str, error: String) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        if !self.open.swap(true, Ordering::Relaxed) {
            tracing::warn!(rule, action = kind, %error, "rule action failing; matches wait and are tried again");
        }
        *self.last_error.lock() = Some((error, Utc::now()));
    }
}

/// How one attempt ended.
pub enum Attempt {
    /// Done.
    Done,
    /// Never going to work.
    Final(String),
    /// May work later.
    Retry(String),
}

/// First wait after a failure; doubled up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(500);
/// Longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a match is tried before it is given up (counted as failed): a peer down for
/// longer than this is an outage to fix, not something to hold the queue for.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(86_400);

/// One running action.
pub struct ActionRuntime {
    /// Its settings.
    pub config: ActionConfig,
    tx: mpsc::Sender<Arc<Matched>>,
    stats: Arc<ActionStats>,
    abort: AbortHandle,
    capacity: usize,
}

impl ActionRuntime {
    /// Starts action `index` of `rule` on `arbiter`.
    pub fn start(
        rule: &str,
        index: usize,
        config: ActionConfig,
        ctx: Arc<Context>,
        arbiter: &actix::ArbiterHandle,
    ) -> Self {
        let capacity = ctx.settings.queue.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let stats = Arc::new(ActionStats::new(rule, config.kind()));
        let (abort, registration) = AbortHandle::new_pair();
        let worker = {
            let (rule, config, stats) = (Arc::<str>::from(rule), config.clone(), stats.clone());
            async move {
                match config {
                    ActionConfig::EmailDigest(d) => {
                        run_digest(rule, index, d, rx, ctx, stats).await
                    }
                    other => run(rule, other, rx, ctx, stats).await,
                }
            }
        };
        arbiter.spawn(async move {
            let _ = Abortable::new(worker, registration).await;
        });
        Self {
            config,
            tx,
            stats,
            abort,
            capacity,
        }
    }

    /// Queues a match without waiting; a full queue drops it (counted).
    pub fn offer(&self, item: Arc<Matched>) {
        self.stats.matched.fetch_add(1, Ordering::Relaxed);
        if self.tx.try_send(item).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            self.stats.m_dropped.increment(1);
        }
    }

    /// Its counters.
    pub fn status(&self) -> ActionStatus {
        let s = &self.stats;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ActionStatus {
            kind: self.config.kind(),
            matched: get(&s.matched),
            done: get(&s.done),
            failed: get(&s.failed),
            dropped: get(&s.dropped),
            retries: get(&s.retries),
            queued: self.capacity - self.tx.capacity(),
            breaker: if s.open.load(Ordering::Relaxed) {
                "open"
            } else {
                "closed"
            },
            last_error: s.last_error.lock().clone(),
            gathered: matches!(self.config, ActionConfig::EmailDigest(_)).then(|| get(&s.gathered)),
        }
    }

    /// Stops the worker (what waits in its queue is dropped).
    pub fn stop(&self) {
        self.abort.abort();
    }
}

async fn run(
    rule: Arc<str>,
    config: ActionConfig,
    mut rx: mpsc::Receiver<Arc<Matched>>,
    ctx: Arc<Context>,
    stats: Arc<ActionStats>,
) {
    let kind = config.kind();
    let mut last_prune = Instant::now() - Duration::from_secs(3600);
    // One client for the action's life: its connections are reused from match to match.
    let client = match &config {
        ActionConfig::Webhook { url, .. } => crate::egress::http_client(url, &ctx.egress),
        _ => reqwest::Client::new(),
    };
    while let Some(item) = rx.recv().await {
        let mut wait = MIN_BACKOFF;
        let first = Instant::now();
        loop {
            match perform(&config, &item, &ctx, &client).await {
                Attempt::Done => {
                    stats.done();
                    break;
                }
                Attempt::Final(e) => {
                    stats.failed(&rule, kind, e);
                    break;
                }
                Attempt::Retry(e) if first.elapsed() >= GIVE_UP_AFTER => {
                    stats.failed(&rule, kind, format!("given up after a day of retries: {e}"));
                    break;
                }
                Attempt::Retry(e) => {
                    stats.retry(&rule, kind, e);
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(MAX_BACKOFF);
                }
            }
        }
        if last_prune.elapsed() >= Duration::from_secs(600) {
            last_prune = Instant::now();
            prune(&config, &ctx).await;
        }
    }
}

/// Retention of logs and captures.
async fn prune(config: &ActionConfig, ctx: &Context) {
    let s = ctx.settings.clone();
    let day = Duration::from_secs(86_400);
    let _ = tokio::task::spawn_blocking({
        let config = config.clone();
        move || match config {
            ActionConfig::JsonLog => {
                capture::prune(&s.log_dir, day * s.log_retention_days, u64::MAX);
            }
            ActionConfig::FrameCapture => {
                capture::prune(
                    &s.captures_dir,
                    day * s.captures_retention_days,
                    s.captures_max_bytes,
                );
            }
            _ => {}
        }
    })
    .await;
}

async fn perform(
    config: &ActionConfig,
    item: &Matched,
    ctx: &Context,
    client: &reqwest::Client,
) -> Attempt {
    match config {
        ActionConfig::JsonLog => {
            let dir = ctx.settings.log_dir.clone();
            let line = item.record().to_string();
            let file = dir.join(format!("{}.jsonl", item.at.format("%Y-%m-%d")));
            let written = tokio::task::spawn_blocking(move || {
                use std::io::Write;
                std::fs::create_dir_all(&dir)?;
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&file)?;
                f.write_all(format!("{line}\n").as_bytes())
            })
            .await;
            match written {
                Ok(Ok(())) => Attempt::Done,
                Ok(Err(e)) => Attempt::Retry(format!(
                    "JSON log in {}: {e}",
                    ctx.settings.log_dir.display()
                )),
                Err(e) => Attempt::Final(e.to_string()),
            }
        }
        ActionConfig::FrameCapture => {
            let Some((jpeg, _)) = item.capture(ctx).await else {
                return Attempt::Final("the event came with no frame to capture".into());
            };
            let who = item
                .device
                .as_deref()
                .or(item.source.as_deref())
                .unwrap_or("unknown");
            let dir = ctx
                .settings
                .captures_dir
                .join(who)
                .join(item.at.format("%Y-%m-%d").to_string());
            let track = item
                .data
                .get("track_id")
                .map_or(String::new(), |t| format!("-{t}"));
            let file = dir.join(format!(
                "{}-{}-{}{track}.jpg",
                item.at.format("%H%M%S%.3f"),
                item.rule,
                item.event
            ));
            let saved = tokio::task::spawn_blocking(move || {
                std::fs::create_dir_all(&dir)?;
                std::fs::write(&file, &jpeg)
            })
            .await;
            match saved {
                Ok(Ok(())) => Attempt::Done,
                Ok(Err(e)) => Attempt::Retry(format!("capture: {e}")),
                Err(e) => Attempt::Final(e.to_string()),
            }
        }
        ActionConfig::EmailImmediate(mail) => {
            let Some(smtp) = &ctx.settings.smtp else {
                return Attempt::Final("no SMTP server configured ([rules.smtp])".into());
            };
            let view = item.view();
            let subject = super::render(&mail.subject, &item.rule, &view);
            let body = super::render(&mail.body, &item.rule, &view);
            let attachments = match (mail.attach_capture, item.capture(ctx).await) {
                (true, Some((jpeg, _))) => vec![(
                    format!("{}-{}.jpg", item.event, item.at.format("%Y%m%d-%H%M%S")),
                    jpeg,
                )],
                _ => Vec::new(),
            };
            match email::send(smtp, &mail.to, &subject, &body, &attachments).await {
                Ok(()) => Attempt::Done,
                Err(e) if e.retryable => Attempt::Retry(e.message),
                Err(e) => Attempt::Final(e.message),
            }
        }
        ActionConfig::Session { session } => {
            let found = ctx.registry.send(FindSession(session.clone())).await;
            let addr = match found {
                Ok(Some(addr)) => addr,
                // Retrying would hold every later match behind one for a session that
                // may never open again.
                Ok(None) => return Attempt::Final(format!("session {session:?} is not open")),
                Err(_) => return Attempt::Retry("the session registry did not answer".into()),
            };
            let event = IncomingEvent {
                name: "rule_matched".into(),
                data: crate::json::to_raw(&item.record()).into(),
                ts: Some(item.at),
                origin: crate::event::Origin {
                    source: item.source.clone(),
                    device: item.device.clone(),
                    ..Default::default()
                },
            };
            match addr.send(PublishEvents(vec![event])).await {
                Ok(_) => Attempt::Done,
                Err(_) => Attempt::Retry(format!("session {session:?} did not answer")),
            }
        }
        // An address written in the URL was checked against the policy when the rule was
        // put in force; names are checked by the client's resolver at each connection.
        ActionConfig::Webhook { url, headers } => {
            let mut request = client
                .post(url)
                .timeout(Duration::from_secs(10))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(item.record().to_string());
            for (k, v) in headers {
                request = request.header(k, v);
            }
            match request.send().await {
                Ok(r) if r.status().is_success() => Attempt::Done,
                // Like the HTTP distributor: a refusal is final, a server in trouble (or
                // asking to slow down) is tried again.
                Ok(r) if r.status().is_server_error() || r.status().as_u16() == 429 => {
                    Attempt::Retry(format!("{url}: {}", r.status()))
                }
                Ok(r) => Attempt::Final(format!("{url}: {}", r.status())),
                Err(e) => Attempt::Retry(format!("{url}: {e}")),
            }
        }
        ActionConfig::EmailDigest(_) => Attempt::Final("digests run on their own".into()),
    }
}

/// How often a digest checks whether it is due.
const DIGEST_TICK: Duration = Duration::from_millis(500);

/// The store record of a digest.
fn digest_id(rule: &str, index: usize) -> String {
    format!("{rule}.{index}")
}

async fn run_digest(
    rule: Arc<str>,
    index: usize,
    config: DigestConfig,
    mut rx: mpsc::Receiver<Arc<Matched>>,
    ctx: Arc<Context>,
    stats: Arc<ActionStats>,
) {
    let id = digest_id(&rule, index);
    // The kept digest is read before anything is gathered: starting empty while the
    // store is away would overwrite what it holds. Matches wait in the queue meanwhile.
    let mut wait = MIN_BACKOFF;
    let mut state: DigestState = loop {
        match ctx.store.get(Kind::Digest, &id).await {
            Ok(None) => break DigestState::default(),
            Ok(Some(kept)) => match serde_json::from_value(kept) {
                Ok(state) => break state,
                Err(e) => {
                    stats.failed(
                        &rule,
                        "email_digest",
                        format!("the kept digest is unreadable and starts over: {e}"),
                    );
                    break DigestState::default();
                }
            },
            Err(e) => {
                stats.retry(
                    &rule,
                    "email_digest",
                    format!("cannot read the kept digest: {e}"),
                );
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_BACKOFF);
            }
        }
    };
    if state.since.is_none() {
        state.since = Some(Utc::now());
    }
    stats.gathered.store(state.count(), Ordering::Relaxed);
    let mut tick = tokio::time::interval(DIGEST_TICK);
    let mut next_try = Instant::now();
    wait = MIN_BACKOFF;
    loop {
        tokio::select! {
            item = rx.recv() => {
                let Some(item) = item else { return };
                gather(&mut state, &item, &config, &ctx).await;
                keep(&ctx, &id, &state, &stats, &rule).await;
            }
            _ = tick.tick() => {
                let since = state.since.unwrap_or_else(Utc::now);
                if Utc::now() < config.due_after(since) || Instant::now() < next_try {
                    continue;
                }
                if state.count() == 0 {
                    // Nothing to say: the next period starts now, no e-mail.
                    state.since = Some(Utc::now());
                    keep(&ctx, &id, &state, &stats, &rule).await;
                    continue;
                }
                let Some(smtp) = &ctx.settings.smtp else {
                    stats.failed(&rule, "email_digest", "no SMTP server configured ([rules.smtp])".into());
                    next_try = Instant::now() + MAX_BACKOFF;
                    continue;
                };
                let (subject, body, thumbnails) = digest::compose(&config, &rule, &state);
                match email::send(smtp, &config.to, &subject, &body, &thumbnails).await {
                    Ok(()) => {
                        tracing::info!(rule = %rule, events = state.count(), "digest sent");
                        state = DigestState { since: Some(Utc::now()), sent: state.sent + 1, ..DigestState::default() };
                        keep(&ctx, &id, &state, &stats, &rule).await;
                        stats.done();
                        wait = MIN_BACKOFF;
                    }
                    Err(e) => {
                        stats.retry(&rule, "email_digest", e.message);
                        next_try = Instant::now() + wait;
                        wait = (wait * 2).min(MAX_BACKOFF);
                    }
                }
            }
        }
    }
}

async fn gather(state: &mut DigestState, item: &Matched, config: &DigestConfig, ctx: &Context) {
    if state.items.len() >= digest::MAX_ITEMS {
        state.overflow += 1;
        return;
    }
    let with_thumbnail =
        state.items.iter().filter(|i| i.thumbnail.is_some()).count() < config.thumbnails;
    let thumbnail = if with_thumbnail {
        item.capture(ctx)
            .await
            .map(|(_, thumb)| base64::engine::general_purpose::STANDARD.encode(thumb))
    } else {
        None
    };
    let text = |k: &str| item.data.get(k).and_then(Value::as_str).map(str::to_string);
    state.items.push(Item {
        at: item.at,
        event: item.event.clone(),
        source: item.source.as_deref().map(str::to_string),
        device: item.device.as_deref().map(str::to_string),
        place: text("line_id").or_else(|| text("zone_id")),
        class: text("class_name"),
        thumbnail,
    });
}

/// Writes the digest's state; a store that refuses it is logged (the state stays in
/// memory and is written with the next change).
async fn keep(ctx: &Context, id: &str, state: &DigestState, stats: &ActionStats, rule: &str) {
    let value = serde_json::to_value(state).unwrap_or(Value::Null);
    if let Err(e) = ctx.store.put(Kind::Digest, id, &value).await {
        stats.retry(rule, "email_digest", format!("cannot keep the digest: {e}"));
    }
    // Shown once written: what `gathered` counts survives a crash.
    stats.gathered.store(state.count(), Ordering::Relaxed);
}

/// Forgets a digest's kept state (its rule is gone).
pub async fn forget_digest(store: &Store, rule: &str, index: usize) {
    let _ = store.delete(Kind::Digest, &digest_id(rule, index)).await;
}
