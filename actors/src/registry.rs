//! The session registry: creates, finds and closes sessions.
//!
//! It is the only place that knows every session, so id uniqueness and the session limit
//! are checked here, in one actor, without locks.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use actix::prelude::*;

use crate::glob::Glob;
use crate::guardrails::Guardrails;
use crate::messages::*;
use crate::rules::engine::RuleEngine;
use crate::session::spec::resolve;
use crate::session::spec::SessionConfig;
use crate::session::templates::TemplateStore;
use crate::session::{SeqStart, SessionActor, SessionStatus};
use crate::store::Store;
use crate::system::SYSTEM_SESSION;
use crate::validation::Report;

/// Registry settings.
#[derive(Debug, Clone)]
pub struct RegistrySettings {
    /// Template used when a request names none.
    pub default_template: String,
    /// Sessions allowed at once.
    pub max_sessions: usize,
    /// HMAC key for fields sessions redact with `hash` (`privacy.redaction_secret`).
    pub redaction_key: Arc<ring::hmac::Key>,
    /// Ceilings on sessions' sizes and the memory budget they share.
    pub rails: Arc<Guardrails>,
    /// Where sessions reserve their sequence numbers.
    pub store: Arc<Store>,
    /// Messages each session's mailbox holds ([`crate::session::SESSION_MAILBOX`]).
    pub session_mailbox: usize,
}

/// Why a session could not be created.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The request did not validate.
    #[error("invalid session configuration")]
    Invalid(Report),
    /// The id is taken.
    #[error("session {0:?} already exists")]
    Conflict(String),
    /// The session limit is reached.
    #[error("the server already has its maximum of {0} sessions")]
    Full(usize),
    /// No such session.
    #[error("session {0:?} not found")]
    NotFound(String),
}

/// Holds every open session.
pub struct SessionRegistry {
    sessions: BTreeMap<String, Addr<SessionActor>>,
    /// Session id → the sources it listens to; consulted for every source event batch.
    sources: BTreeMap<String, Vec<String>>,
    /// Session id → the device serial globs it listens to.
    devices: BTreeMap<String, Vec<Glob>>,
    /// Session id → events from sources and devices it missed: its mailbox was full.
    drops: BTreeMap<String, Arc<MailboxDrops>>,
    /// Session id → how many of its recordings keep its sources' frames (set by the
    /// session): frames go only to sessions that record them.
    frames: BTreeMap<String, Arc<AtomicUsize>>,
    /// The rules, offered every event of sources and devices.
    rules: Option<Arc<RuleEngine>>,
    templates: Arc<TemplateStore>,
    settings: RegistrySettings,
}

impl SessionRegistry {
    /// An empty registry.
    pub fn new(templates: Arc<TemplateStore>, settings: RegistrySettings) -> Self {
        Self {
            sessions: BTreeMap::new(),
            sources: BTreeMap::new(),
            devices: BTreeMap::new(),
            drops: BTreeMap::new(),
            frames: BTreeMap::new(),
            rules: None,
            templates,
            settings,
        }
    }

    fn check(
        &self,
        request: &serde_json::Value,
    ) -> (Option<crate::session::spec::SessionConfig>, Report) {
        let (config, mut report) = resolve(
            request,
            &self.templates,
            &self.settings.default_template,
            || uuid::Uuid::new_v4().to_string(),
            &self.settings.rails,
        );
        if let Some(c) = &config {
            if self.sessions.contains_key(&c.id) {
                report.error(format!("id: session {:?} already exists", c.id));
            }
        }
        if self.counted() >= self.settings.max_sessions {
            report.error(format!(
                "the server already has its maximum of {} sessions",
                self.settings.max_sessions
            ));
        }
        (config, report)
    }
}

impl SessionRegistry {
    /// Sessions counted against `max_sessions`: the built-in system session is not.
    fn counted(&self) -> usize {
        self.sessions
            .keys()
            .filter(|id| id.as_str() != SYSTEM_SESSION)
            .count()
    }
}

impl Actor for SessionRegistry {
    type Context = Context<Self>;
}

impl Handler<CreateSession> for SessionRegistry {
    type Result = Result<SessionStatus, RegistryError>;

    fn handle(&mut self, msg: CreateSession, _: &mut Self::Context) -> Self::Result {
        let (config, report) = resolve(
            &msg.0,
            &self.templates,
            &self.settings.default_template,
            || uuid::Uuid::new_v4().to_string(),
            &self.settings.rails,
        );
        let Some(config) = config else {
            return Err(RegistryError::Invalid(report));
        };
        self.start(config, SeqStart::default(), None)
    }
}

impl SessionRegistry {
    /// Starts the session of `config`, its numbers continuing from `seq`.
    fn start(
        &mut self,
        config: SessionConfig,
        seq: SeqStart,
        kept: Option<serde_json::Value>,
    ) -> Result<SessionStatus, RegistryError> {
        if self.sessions.contains_key(&config.id) {
            return Err(RegistryError::Conflict(config.id));
        }
        if self.counted() >= self.settings.max_sessions && config.id != SYSTEM_SESSION {
            return Err(RegistryError::Full(self.settings.max_sessions));
        }
        let id = config.id.clone();
        let drops = Arc::new(MailboxDrops::new(&id));
        let frames = Arc::new(AtomicUsize::new(0));
        let restored =
            kept.and_then(|doc| crate::session::kept::restore(&Arc::from(id.as_str()), &doc));
        let session = SessionActor::new(
            config,
            self.settings.redaction_key.clone(),
            self.settings.rails.clone(),
            seq,
            self.settings.store.clone(),
            restored,
        )
        .map_err(RegistryError::Invalid)?
        .counting_mailbox_drops(drops.clone(), self.settings.session_mailbox)
        .sharing_frame_demand(frames.clone());
        let status = session.status();
        self.sources
            .insert(id.clone(), status.config.sources.clone());
        self.devices
            .insert(id.clone(), globs(&status.config.devices));
        self.drops.insert(id.clone(), drops);
        self.frames.insert(id.clone(), frames);
        self.sessions.insert(id, session.start());
        Ok(status)
    }
}

impl Handler<ResolveSession> for SessionRegistry {
    type Result = Result<SessionConfig, Report>;

    fn handle(&mut self, msg: ResolveSession, _: &mut Self::Context) -> Self::Result {
        match self.check(&msg.0) {
            (Some(config), report) if report.is_valid() => Ok(config),
            (_, report) => Err(report),
        }
    }
}

impl Handler<RestoreSession> for SessionRegistry {
    type Result = Result<SessionStatus, RegistryError>;

    fn handle(&mut self, msg: RestoreSession, _: &mut Self::Context) -> Self::Result {
        self.start(msg.config, msg.seq, msg.kept)
    }
}

impl Handler<ValidateSession> for SessionRegistry {
    type Result = MessageResult<ValidateSession>;

    fn handle(&mut self, msg: ValidateSession, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.check(&msg.0).1)
    }
}

impl Handler<FindSession> for SessionRegistry {
    type Result = Option<Addr<SessionActor>>;

    fn handle(&mut self, msg: FindSession, _: &mut Self::Context) -> Self::Result {
        self.sessions.get(&msg.0).cloned()
    }
}

impl Handler<ListSessions> for SessionRegistry {
    type Result = MessageResult<ListSessions>;

    fn handle(&mut self, _: ListSessions, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.sessions.values().cloned().collect())
    }
}

impl Handler<RemoveSession> for SessionRegistry {
    type Result = Option<Addr<SessionActor>>;

    fn handle(&mut self, msg: RemoveSession, _: &mut Self::Context) -> Self::Result {
        self.sources.remove(&msg.0);
        self.devices.remove(&msg.0);
        self.drops.remove(&msg.0);
        self.frames.remove(&msg.0);
        self.sessions.remove(&msg.0)
    }
}

impl Handler<RemoveAllSessions> for SessionRegistry {
    type Result = MessageResult<RemoveAllSessions>;

    fn handle(&mut self, _: RemoveAllSessions, _: &mut Self::Context) -> Self::Result {
        self.sources.clear();
        self.devices.clear();
        self.drops.clear();
        self.frames.clear();
        MessageResult(std::mem::take(&mut self.sessions).into_values().collect())
    }
}

impl Handler<PublishSourceEvents> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: PublishSourceEvents, _: &mut Self::Context) {
        if let Some(rules) = &self.rules {
            rules.offer(
                Some(&msg.source),
                msg.device.as_deref(),
                &msg.events,
                msg.frame.as_ref(),
            );
        }
        for (id, session) in &self.sessions {
            let by_source = self
                .sources
                .get(id)
                .is_some_and(|s| s.iter().any(|s| s == "*" || **s == *msg.source));
            let by_device = msg
                .device
                .as_deref()
                .is_some_and(|serial| self.listens_to_device(id, serial));
            if by_source || by_device {
                if !msg.events.is_empty() {
                    self.hand_over(id, session, &msg.events);
                }
                if let Some(frame) = &msg.analysed {
                    self.hand_frame(id, session, frame);
                }
            }
        }
    }
}

impl Handler<SetSessionSources> for SessionRegistry {
    type Result = Result<Vec<String>, RegistryError>;

    fn handle(&mut self, msg: SetSessionSources, _: &mut Self::Context) -> Self::Result {
        let session = self
            .sessions
            .get(&msg.session)
            .ok_or_else(|| RegistryError::NotFound(msg.session.clone()))?;
        session.do_send(SourcesChanged(msg.sources.clone()));
        self.sources.insert(msg.session, msg.sources.clone());
        Ok(msg.sources)
    }
}

/// Server → registry: the rules to offer events to.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetRuleEngine(pub Arc<RuleEngine>);

impl Handler<SetRuleEngine> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: SetRuleEngine, _: &mut Self::Context) {
        self.rules = Some(msg.0);
    }
}

/// Events from sources and devices that a session's full mailbox turned away.
pub struct MailboxDrops {
    count: AtomicU64,
    metric: metrics::Counter,
}

impl MailboxDrops {
    fn new(session: &str) -> Self {
        Self {
            count: AtomicU64::new(0),
            metric: metrics::counter!(crate::telemetry::SESSION_MAILBOX_DROPPED, "session" => session.to_string()),
        }
    }

    fn add(&self, n: usize) {
        let before = self.count.fetch_add(n as u64, Ordering::Relaxed);
        self.metric.increment(n as u64);
        // Logged at the first drop and then at each power of two, not per batch.
        let after = before + n as u64;
        if before == 0 || (after.is_power_of_two() && n > 0) {
            tracing::warn!(
                dropped = after,
                "a session's mailbox is full: events from sources and devices are dropped"
            );
        }
    }

    /// Events dropped so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

impl SessionRegistry {
    /// Hands events to a listening session without waiting: the payloads are shared (a
    /// copy of the list, not of the frames), and a session whose mailbox is full misses
    /// them, counted, rather than queueing without bound.
    fn hand_over(&self, id: &str, session: &Addr<SessionActor>, events: &[IncomingEvent]) {
        if let Err(SendError::Full(_)) = session.try_send(PublishEvents(events.to_vec())) {
            if let Some(drops) = self.drops.get(id) {
                drops.add(events.len());
            }
        }
    }

    /// Hands a source's analysed frame to a session that records frames; a full mailbox
    /// misses it, counted like an event.
    fn hand_frame(&self, id: &str, session: &Addr<SessionActor>, frame: &Arc<AnalysedFrame>) {
        let wanted = self
            .frames
            .get(id)
            .is_some_and(|n| n.load(Ordering::Relaxed) > 0);
        if !wanted {
            return;
        }
        if let Err(SendError::Full(_)) = session.try_send(RecordFrame(frame.clone())) {
            if let Some(drops) = self.drops.get(id) {
                drops.add(1);
            }
        }
    }

    fn listens_to_device(&self, session: &str, serial: &str) -> bool {
        self.devices
            .get(session)
            .is_some_and(|globs| globs.iter().any(|g| g.matches(serial)))
    }
}

fn globs(patterns: &[String]) -> Vec<Glob> {
    patterns.iter().map(|p| Glob::new(p)).collect()
}

impl Handler<PublishDeviceEvents> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: PublishDeviceEvents, _: &mut Self::Context) {
        if let Some(rules) = &self.rules {
            rules.offer(None, Some(&msg.serial), &msg.events, None);
        }
        for (id, session) in &self.sessions {
            // The system session carries every device's events.
            if id == SYSTEM_SESSION || self.listens_to_device(id, &msg.serial) {
                self.hand_over(id, session, &msg.events);
            }
        }
    }
}

impl Handler<SetSessionDevices> for SessionRegistry {
    type Result = Result<Vec<String>, RegistryError>;

    fn handle(&mut self, msg: SetSessionDevices, _: &mut Self::Context) -> Self::Result {
        let session = self
            .sessions
            .get(&msg.session)
            .ok_or_else(|| RegistryError::NotFound(msg.session.clone()))?;
        session.do_send(DevicesChanged(msg.devices.clone()));
        self.devices.insert(msg.session, globs(&msg.devices));
        Ok(msg.devices)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Origin;

    fn batch(i: usize) -> Vec<IncomingEvent> {
        let frame = crate::json::to_raw(&serde_json::json!({"frame": "x".repeat(1000), "i": i}));
        vec![IncomingEvent {
            name: "detections".into(),
            data: frame.into(),
            ts: None,
            origin: Origin::source("cam".into()),
        }]
    }

    #[actix_rt::test]
    async fn a_full_session_mailbox_drops_source_events_and_counts_them() {
        let store = Arc::new(Store::memory().await.expect("store"));
        let settings = RegistrySettings {
            default_template: "local_testing".into(),
            max_sessions: 10,
            redaction_key: Arc::new(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"k")),
            rails: Arc::new(Guardrails::default()),
            store,
            session_mailbox: 4,
        };
        let registry = SessionRegistry::new(Arc::new(TemplateStore::new()), settings).start();
        for id in ["a", "b"] {
            registry
                .send(CreateSession(
                    serde_json::json!({"id": id, "sources": ["cam"]}),
                ))
                .await
                .expect("registry")
                .expect("session");
        }
        // Queued before the registry runs: it hands them over faster than the sessions,
        // which share its thread, can take them.
        for i in 0..50 {
            registry.do_send(PublishSourceEvents {
                source: "cam".into(),
                device: None,
                events: batch(i),
                frame: None,
                analysed: None,
            });
        }
        let sessions = registry.send(ListSessions).await.expect("registry");
        let mut seen = Vec::new();
        for session in sessions {
            let status = session.send(GetStatus).await.expect("session");
            seen.push((status.events_received, status.mailbox_dropped));
        }
        for (received, dropped) in &seen {
            assert_eq!(received + dropped, 50, "{seen:?}");
            assert!(*dropped > 0, "{seen:?}");
        }
    }
}
