//! Sessions: one [`SessionActor`] per session, owning its distributors, its routing and its
//! counters. Sessions share nothing with each other, so a slow or failing session cannot
//! touch another.

pub mod kept;
pub mod placeholders;
pub mod redaction;
pub mod routing;
pub mod spec;
pub mod templates;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use crate::distributor::breaker::BreakerState;
use crate::distributor::live::ClientQueue;
use crate::distributor::queue::{EventQueue, Pushed};
use crate::distributor::{
    parse_config, spawn, CloseReason, DistributorKind, DistributorLink, KindSet, SpawnRequest,
};
use crate::event::Event;
use crate::guardrails::Guardrails;
use crate::messages::*;
use crate::recording::hub::RecordingError;
use crate::recording::recorder::Recorder;
use crate::recording::replay::{Player, ReplayStatus};
use crate::recording::RecordingSpec;
use crate::store::{Kind, Store};
use crate::telemetry::{DistributorCounters, DistributorTelemetry, LastError, SessionTelemetry};
use crate::validation::Report;
use redaction::Redactor;
use routing::{parse_routing, warn_unreachable, Router};
use spec::SessionConfig;

/// What can go wrong when changing a running session.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The distributor is not enabled on this session.
    #[error("the {0} distributor is not enabled on this session")]
    NotEnabled(DistributorKind),
    /// The input did not validate.
    #[error("invalid configuration")]
    Invalid(Report),
    /// A live client could not be attached.
    #[error("{0}")]
    Attach(String),
}

/// One enabled distributor, as the session sees it.
struct Slot {
    link: Box<dyn DistributorLink>,
    queue: Arc<EventQueue>,
    telemetry: Arc<DistributorTelemetry>,
}

impl Slot {
    /// Routes `event` into the distributor's queue: wakes it when the queue was empty,
    /// counts what the queue's policy drops.
    fn enqueue(&self, event: &Arc<Event>) {
        self.telemetry.routed();
        match self.queue.push(event.clone()) {
            Pushed::Queued { was_empty: true } => self.link.wake(),
            Pushed::Queued { was_empty: false } => {}
            Pushed::Evicted(_) => self.telemetry.dropped(1, "queue full, oldest evicted"),
            Pushed::Refused => self.telemetry.dropped(1, "queue full, newest refused"),
        }
    }
}

/// Status of one distributor.
#[derive(Debug, Clone, Serialize)]
pub struct DistributorStatus {
    /// Protocol.
    pub kind: DistributorKind,
    /// `healthy` (breaker closed), `degraded` (probing) or `unhealthy` (breaker open).
    pub health: &'static str,
    /// Circuit breaker state.
    pub breaker: BreakerState,
    /// Counters since the distributor was enabled.
    #[serde(flatten)]
    pub counters: DistributorCounters,
    /// Events waiting in its queue.
    pub queued: usize,
    /// Its queue's capacity.
    pub queue_capacity: usize,
    /// Latest error.
    pub last_error: Option<LastError>,
}

/// Status of one session.
#[derive(Debug, Clone, Serialize)]
pub struct SessionStatus {
    /// Session id.
    pub id: String,
    /// `open` or `closed`.
    pub state: &'static str,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Seconds since creation.
    pub uptime_secs: f64,
    /// Events accepted.
    pub events_received: u64,
    /// Events from sources and devices missed because the session's mailbox was full.
    pub mailbox_dropped: u64,
    /// Sequence number of the latest event (0 before the first).
    pub last_seq: u64,
    /// Changes whenever the session's live history starts empty (at every start of the
    /// server, unless its WebSocket distributor keeps the history in the store): a client
    /// resuming with another epoch missed events the server no longer has.
    pub epoch: Arc<str>,
    /// Every enabled distributor.
    pub distributors: Vec<DistributorStatus>,
    /// Ids of the recordings running on it.
    pub recordings: Vec<String>,
    /// The recording playing into it, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay: Option<ReplayStatus>,
    /// The configuration in force.
    pub config: SessionConfig,
}

/// The actor behind one session.
pub struct SessionActor {
    id: Arc<str>,
    /// See [`SessionStatus::epoch`].
    epoch: Arc<str>,
    config: SessionConfig,
    router: Router,
    enabled: KindSet,
    slots: BTreeMap<DistributorKind, Slot>,
    seq: u64,
    telemetry: SessionTelemetry,
    created_at: DateTime<Utc>,
    closed: bool,
    /// Drops or hashes the fields the session redacts, before anything else sees them.
    redactor: Option<Redactor>,
    /// The server's ceilings (checked on every distributor change) and memory budget.
    rails: Arc<Guardrails>,
    /// How far the sequence numbers are reserved in the store.
    reservation: Reservation,
    /// Events from sources and devices its full mailbox turned away (counted by the
    /// registry, shown in the status).
    mailbox_drops: Option<Arc<crate::registry::MailboxDrops>>,
    /// Messages its mailbox holds ([`SESSION_MAILBOX`] unless a test says otherwise).
    mailbox: usize,
    /// Recordings running on it: every event is offered to each.
    recorders: Vec<Arc<Recorder>>,
    /// How many of them keep its sources' frames (the registry reads it).
    frame_demand: Arc<AtomicUsize>,
    /// The recording playing into it.
    replay: Option<Arc<Player>>,
    /// Its WebSocket history, kept in the store (`historyStore: "store"`).
    kept: Option<kept::KeptHistory>,
    /// Its kept history was written for a clean shutdown: it takes no more events (their
    /// numbers would come again after the restart).
    sealed: bool,
}

/// Messages a session's mailbox holds: producers posting over REST wait for room (their
/// back-pressure), events from sources and devices beyond it are dropped and counted.
pub const SESSION_MAILBOX: usize = 1024;

/// Sequence numbers are reserved in the store a block ahead, so that after a restart, a
/// SIGKILL included, a session continues above every number it may have used.
pub const SEQ_BLOCK: u64 = 10_000;

/// Where a session's sequence numbers start and how far they are reserved.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeqStart {
    /// The last number used (0 for a new session): the next event gets one more.
    pub last: u64,
    /// Numbers up to this one are reserved in the store.
    pub reserved: u64,
}

/// The session's side of the reservation.
struct Reservation {
    store: Arc<Store>,
    reserved: u64,
    /// The next block is being written.
    pending: bool,
    /// Numbers ran past the reservation while the store was unreachable (said once).
    overrun_said: bool,
}

impl SessionActor {
    /// The session, showing in its status the drops the registry counts for it.
    pub fn counting_mailbox_drops(
        mut self,
        drops: Arc<crate::registry::MailboxDrops>,
        mailbox: usize,
    ) -> Self {
        self.mailbox_drops = Some(drops);
        self.mailbox = mailbox.max(1);
        self
    }

    /// The session, telling the registry through `demand` whether any of its recordings
    /// keeps its sources' frames.
    pub fn sharing_frame_demand(mut self, demand: Arc<AtomicUsize>) -> Self {
        demand.store(self.frame_demand.load(Ordering::Relaxed), Ordering::Relaxed);
        self.frame_demand = demand;
        self
    }

    /// Starts a recording of this session.
    fn record(
        &mut self,
        spec: RecordingSpec,
        auto: bool,
        continues: Option<String>,
    ) -> Result<Arc<Recorder>, RecordingError> {
        let recorder = self
            .rails
            .recordings
            .start(&self.config, spec, auto, continues)?;
        self.recorders.push(recorder.clone());
        self.count_frame_demand();
        Ok(recorder)
    }

    fn count_frame_demand(&self) {
        let n = self.recorders.iter().filter(|r| r.wants_frames()).count();
        self.frame_demand.store(n, Ordering::Relaxed);
    }

    /// Forgets recordings that were stopped (over REST).
    fn prune_recorders(&mut self) {
        if self.recorders.iter().any(|r| r.is_stopping()) {
            self.recorders.retain(|r| !r.is_stopping());
            self.count_frame_demand();
        }
    }

    /// Stops its recordings and its replay (the session is closing).
    fn stop_recording_and_replay(&mut self, reason: &str) {
        for r in self.recorders.drain(..) {
            r.stop(reason);
        }
        self.count_frame_demand();
        if let Some(player) = self.replay.take() {
            player.stop();
        }
    }

    /// Builds the session and starts its distributors on the current arbiter; `key` hashes
    /// the fields it redacts with `hash`; `rails` bounds what its distributors hold; its
    /// sequence numbers continue from `seq`, reserved ahead in `store`.
    pub fn new(
        config: SessionConfig,
        key: Arc<ring::hmac::Key>,
        rails: Arc<Guardrails>,
        seq: SeqStart,
        store: Arc<Store>,
        restored: Option<kept::Restored>,
    ) -> Result<Self, Report> {
        let id: Arc<str> = config.id.as_str().into();
        let keeps =
            kept::wanted(config.distributors.get(&DistributorKind::Websocket)).filter(|_| {
                config
                    .enabled_distributors
                    .contains(&DistributorKind::Websocket)
            });
        // A kept history brings its epoch back: clients resume across the restart.
        let (epoch, restored) = match (keeps, restored) {
            (Some(_), Some(r)) => (r.epoch, r.events),
            _ => (
                Arc::from(&uuid::Uuid::new_v4().simple().to_string()[..12]),
                Vec::new(),
            ),
        };
        let mut session = Self {
            reservation: Reservation {
                store,
                reserved: seq.reserved,
                pending: false,
                overrun_said: false,
            },
            rails,
            redactor: Redactor::new(&config.redact, key),
            router: Router::new(&config.event_routing),
            enabled: KindSet::EMPTY,
            slots: BTreeMap::new(),
            seq: seq.last,
            telemetry: SessionTelemetry::opened(&id, config.template.as_deref()),
            created_at: Utc::now(),
            epoch,
            closed: false,
            mailbox_drops: None,
            mailbox: SESSION_MAILBOX,
            recorders: Vec::new(),
            frame_demand: Arc::new(AtomicUsize::new(0)),
            replay: None,
            kept: keeps.map(kept::KeptHistory::new),
            sealed: false,
            id,
            config,
        };
        session.rails.system.emit(
            "session.created",
            json!({"id": &*session.id, "template": session.config.template,
                "distributors": session.config.enabled_distributors}),
        );
        for kind in session.config.enabled_distributors.clone() {
            let cfg = session
                .config
                .distributors
                .get(&kind)
                .cloned()
                .unwrap_or(Value::Null);
            if let Err(report) = session.start_distributor(kind, &cfg) {
                session.shutdown_all(CloseReason::SessionClosed);
                return Err(report);
            }
        }
        // The kept history goes back into the WebSocket distributor (no client is attached
        // yet), for clients resuming across the restart.
        if let Some(slot) = session.slots.get(&DistributorKind::Websocket) {
            for event in &restored {
                slot.enqueue(event);
                if let Some(k) = &mut session.kept {
                    k.push(event);
                }
            }
        }
        // Its template records it: from its first event, at every start.
        if let Some(spec) = session.config.recording.clone() {
            if let Err(error) = session.record(spec, true, None) {
                tracing::error!(session = %session.id, %error, "the session's template asks for a recording that cannot start");
                session.rails.system.emit(
                    "recording.failed",
                    json!({"session": &*session.id, "error": error.to_string()}),
                );
            }
        }
        Ok(session)
    }

    fn start_distributor(&mut self, kind: DistributorKind, config: &Value) -> Result<(), Report> {
        let telemetry = Arc::new(
            DistributorTelemetry::new(self.id.clone(), kind)
                .with_system(self.rails.system.clone())
                .with_epoch(self.epoch.clone()),
        );
        let (link, queue) = spawn(
            kind,
            SpawnRequest {
                session: self.id.clone(),
                config,
                telemetry: telemetry.clone(),
                rails: self.rails.clone(),
            },
        )?;
        self.slots.insert(
            kind,
            Slot {
                link,
                queue,
                telemetry,
            },
        );
        self.enabled.insert(kind);
        Ok(())
    }

    fn shutdown_all(&mut self, reason: CloseReason) {
        for (_, slot) in std::mem::take(&mut self.slots) {
            slot.link.shutdown(reason);
        }
        self.enabled = KindSet::EMPTY;
    }

    /// Current status, read from shared counters (no distributor is asked).
    pub fn status(&self) -> SessionStatus {
        let distributors = self
            .slots
            .iter()
            .map(|(kind, slot)| {
                let breaker = slot.telemetry.breaker_state();
                DistributorStatus {
                    kind: *kind,
                    health: match breaker {
                        BreakerState::Closed => "healthy",
                        BreakerState::HalfOpen => "degraded",
                        BreakerState::Open => "unhealthy",
                    },
                    breaker,
                    counters: slot.telemetry.counters(),
                    queued: slot.queue.len(),
                    queue_capacity: slot.queue.capacity(),
                    last_error: slot.telemetry.last_error(),
                }
            })
            .collect();
        let mut config = self.config.clone();
        config.enabled_distributors = self.slots.keys().copied().collect();
        SessionStatus {
            id: self.config.id.clone(),
            state: if self.closed { "closed" } else { "open" },
            created_at: self.created_at,
            uptime_secs: (Utc::now() - self.created_at).num_milliseconds() as f64 / 1000.0,
            events_received: self.telemetry.received_count(),
            mailbox_dropped: self.mailbox_drops.as_ref().map_or(0, |d| d.count()),
            last_seq: self.seq,
            epoch: self.epoch.clone(),
            distributors,
            recordings: self
                .recorders
                .iter()
                .filter(|r| !r.is_stopping())
                .map(|r| r.id().to_string())
                .collect(),
            replay: self.replay.as_ref().map(|p| p.status()),
            config,
        }
    }

    /// Reserves the next block of sequence numbers when half of this one is used. The
    /// write is asynchronous: a slow or absent store never holds up an event. If numbers
    /// run past the reservation (the store down for a whole block), events keep flowing and
    /// the log says that a restart now could repeat some.
    fn reserve_ahead(&mut self, ctx: &mut Context<Self>) {
        let r = &mut self.reservation;
        if self.seq > r.reserved && !r.overrun_said {
            r.overrun_said = true;
            tracing::warn!(session = %self.id, seq = self.seq, reserved = r.reserved, "sequence numbers ran past their reservation in the store; a restart before it is written could repeat some");
        }
        if r.pending || self.seq + SEQ_BLOCK / 2 < r.reserved {
            return;
        }
        r.pending = true;
        let next = r.reserved.max(self.seq) + SEQ_BLOCK;
        let (store, id) = (r.store.clone(), self.id.clone());
        let write = async move { store.reserve_seq(&id, next).await };
        ctx.spawn(write.into_actor(self).map(move |written, act, _| {
            act.reservation.pending = false;
            match written {
                Ok(()) => {
                    act.reservation.reserved = act.reservation.reserved.max(next);
                    act.reservation.overrun_said = false;
                }
                Err(error) => {
                    tracing::warn!(session = %act.id, %error, "cannot reserve sequence numbers; retrying with the next event")
                }
            }
        }));
    }

    /// Writes the kept history to the store if it changed (at most one write at a time).
    fn keep_history(&mut self, ctx: &mut Context<Self>) {
        let Some(k) = &mut self.kept else { return };
        if !k.dirty || k.writing {
            return;
        }
        k.dirty = false;
        k.writing = true;
        let doc = k.document(&self.epoch);
        let (store, id) = (self.reservation.store.clone(), self.id.clone());
        let write = async move { store.put(Kind::History, &id, &doc).await };
        ctx.spawn(write.into_actor(self).map(|written, act, _| {
            if let Some(k) = &mut act.kept {
                k.writing = false;
                if let Err(error) = written {
                    k.dirty = true;
                    tracing::warn!(session = %act.id, %error, "cannot keep the WebSocket history; trying again in a second");
                }
            }
        }));
    }

    /// Whether the WebSocket distributor's settings now keep the history, and how much.
    fn update_kept(&mut self) {
        let wanted = kept::wanted(self.config.distributors.get(&DistributorKind::Websocket))
            .filter(|_| self.slots.contains_key(&DistributorKind::Websocket));
        match (wanted, &mut self.kept) {
            (None, _) => self.kept = None,
            (Some(size), Some(k)) => k.resize(size),
            (Some(size), None) => self.kept = Some(kept::KeptHistory::new(size)),
        }
    }

    fn slot(&self, kind: DistributorKind) -> Result<&Slot, SessionError> {
        self.slots.get(&kind).ok_or(SessionError::NotEnabled(kind))
    }
}

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Producers wait for the reply (sequence numbers), so the mailbox bound is their
        // back-pressure; sized for bursts of REST batches.
        ctx.set_mailbox_capacity(self.mailbox);
        ctx.run_interval(kept::KEEP_EVERY, |act, ctx| act.keep_history(ctx));
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.stop_recording_and_replay("session closed");
        if !self.closed {
            self.shutdown_all(CloseReason::SessionClosed);
            self.telemetry.closed(&self.id, "stopped");
        }
    }
}

impl Handler<PublishEvents> for SessionActor {
    type Result = MessageResult<PublishEvents>;

    fn handle(&mut self, msg: PublishEvents, ctx: &mut Self::Context) -> Self::Result {
        if self.sealed {
            return MessageResult(Vec::new());
        }
        let mut routed = Vec::with_capacity(msg.0.len());
        let now = Utc::now();
        for mut incoming in msg.0 {
            if let Some(redactor) = &self.redactor {
                redactor.apply_raw(&mut incoming.data);
            }
            self.seq += 1;
            let name: Arc<str> = incoming.name.into();
            let event = Arc::new(
                Event::new(
                    self.id.clone(),
                    self.seq,
                    name.clone(),
                    incoming.ts.unwrap_or(now),
                    incoming.data,
                )
                .with_origin(incoming.origin),
            );
            self.telemetry.received();
            for r in &self.recorders {
                r.offer(&event);
            }
            let targets = match self.router.route(&name) {
                Some(set) => set.intersect(self.enabled),
                None => self.enabled,
            };
            // The kept history holds what the WebSocket distributor holds.
            if let Some(k) = self
                .kept
                .as_mut()
                .filter(|_| targets.contains(DistributorKind::Websocket))
            {
                k.push(&event);
            }
            for kind in targets.iter() {
                let Some(slot) = self.slots.get(&kind) else {
                    continue;
                };
                slot.enqueue(&event);
            }
            routed.push(RoutedEvent {
                seq: self.seq,
                event: name,
                routed_to: targets.iter().collect(),
            });
        }
        self.reserve_ahead(ctx);
        self.prune_recorders();
        MessageResult(routed)
    }
}

impl Handler<RecordFrame> for SessionActor {
    type Result = ();

    fn handle(&mut self, msg: RecordFrame, _: &mut Self::Context) {
        for r in &self.recorders {
            r.offer_frame(&msg.0);
        }
    }
}

/// Server → session: start recording it.
#[derive(Message)]
#[rtype(result = "Result<Arc<Recorder>, RecordingError>")]
pub struct StartRecording {
    /// What to keep.
    pub spec: RecordingSpec,
    /// The recording it continues (after a restart).
    pub continues: Option<String>,
}

impl Handler<StartRecording> for SessionActor {
    type Result = Result<Arc<Recorder>, RecordingError>;

    fn handle(&mut self, msg: StartRecording, _: &mut Self::Context) -> Self::Result {
        self.prune_recorders();
        self.record(msg.spec, false, msg.continues)
    }
}

/// Server → session: write the kept history now (a clean shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct FlushHistory;

impl Handler<FlushHistory> for SessionActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: FlushHistory, _: &mut Self::Context) -> Self::Result {
        let doc = self.kept.as_ref().map(|k| k.document(&self.epoch));
        // Sealed, its exact last number is kept: after the restart its numbers go on from
        // there, so a resuming client misses nothing that was never sent.
        self.sealed = doc.is_some();
        let (store, id, last) = (self.reservation.store.clone(), self.id.clone(), self.seq);
        Box::pin(async move {
            let Some(doc) = doc else { return };
            let kept = async {
                store.put(Kind::History, &id, &doc).await?;
                store.reserve_seq(&id, last).await
            };
            if let Err(error) = kept.await {
                tracing::warn!(session = %id, %error, "cannot keep the WebSocket history at shutdown");
            }
        })
    }
}

/// Server → session: a recording now plays into it (one at a time: a running one stops).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttachReplay(pub Arc<Player>);

impl Handler<AttachReplay> for SessionActor {
    type Result = ();

    fn handle(&mut self, msg: AttachReplay, _: &mut Self::Context) {
        if let Some(old) = self.replay.replace(msg.0) {
            old.stop();
        }
    }
}

/// Player → session: how many more events every distributor that is making progress
/// (its breaker closed) has room for in its queue (`usize::MAX` with none). A replay at
/// rate 0 sends no more than that at a time, so "as fast as possible" is as fast as the
/// outputs take the events, not faster (their queues would drop the surplus).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Room;

impl Handler<Room> for SessionActor {
    type Result = usize;

    fn handle(&mut self, _: Room, _: &mut Self::Context) -> usize {
        self.slots
            .values()
            .filter(|slot| slot.telemetry.breaker_state() == BreakerState::Closed)
            .map(|slot| slot.queue.capacity().saturating_sub(slot.queue.len()))
            .min()
            .unwrap_or(usize::MAX)
    }
}

/// Server → session: the player running on it, if any.
#[derive(Message)]
#[rtype(result = "Option<Arc<Player>>")]
pub struct GetReplay;

impl Handler<GetReplay> for SessionActor {
    type Result = Option<Arc<Player>>;

    fn handle(&mut self, _: GetReplay, _: &mut Self::Context) -> Self::Result {
        self.replay.clone()
    }
}

impl Handler<SeqReserved> for SessionActor {
    type Result = ();

    fn handle(&mut self, msg: SeqReserved, _: &mut Self::Context) {
        self.reservation.reserved = self.reservation.reserved.max(msg.0);
    }
}

impl Handler<SourcesChanged> for SessionActor {
    type Result = ();

    fn handle(&mut self, msg: SourcesChanged, _: &mut Self::Context) {
        self.config.sources = msg.0;
    }
}

impl Handler<DevicesChanged> for SessionActor {
    type Result = ();

    fn handle(&mut self, msg: DevicesChanged, _: &mut Self::Context) {
        self.config.devices = msg.0;
    }
}

impl Handler<GetStatus> for SessionActor {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.status())
    }
}

impl Handler<PutDistributor> for SessionActor {
    type Result = Result<DistributorChange, SessionError>;

    fn handle(&mut self, mut msg: PutDistributor, _: &mut Self::Context) -> Self::Result {
        // No settings: the ones the session holds for it (from its template or creation).
        if msg.config.is_null() {
            msg.config = self
                .config
                .distributors
                .get(&msg.kind)
                .cloned()
                .unwrap_or_else(|| Value::Object(Default::default()));
        } else {
            let mut problems = Vec::new();
            placeholders::resolve(
                &mut msg.config,
                &format!("distributors.{}", msg.kind),
                &self.rails.placeholder_vars,
                &placeholders::ProcessEnvironment,
                &mut problems,
            );
            if !problems.is_empty() {
                let mut report = Report::default();
                problems.into_iter().for_each(|p| report.error(p.message));
                return Err(SessionError::Invalid(report));
            }
        }
        let mut report = Report::default();
        parse_config(
            msg.kind,
            &format!("distributors.{}", msg.kind),
            &msg.config,
            &mut report,
            &self.rails,
        );
        if !report.is_valid() {
            return Err(SessionError::Invalid(report));
        }
        let action = match self.slots.get(&msg.kind) {
            Some(slot) => {
                slot.link
                    .reconfigure(&msg.config, &self.rails)
                    .map_err(SessionError::Invalid)?;
                tracing::info!(session = %self.id, distributor = %msg.kind, "distributor reconfigured");
                "reconfigured"
            }
            None => {
                self.start_distributor(msg.kind, &msg.config)
                    .map_err(SessionError::Invalid)?;
                tracing::info!(session = %self.id, distributor = %msg.kind, "distributor enabled");
                "enabled"
            }
        };
        self.config.distributors.insert(msg.kind, msg.config);
        self.update_kept();
        self.rails.system.emit(
            &format!("distributor.{action}"),
            json!({"session": &*self.id, "distributor": msg.kind}),
        );
        Ok(DistributorChange {
            action,
            warnings: report.warnings,
            session: self.status(),
        })
    }
}

impl Handler<DisableDistributor> for SessionActor {
    type Result = Result<SessionStatus, SessionError>;

    fn handle(&mut self, msg: DisableDistributor, _: &mut Self::Context) -> Self::Result {
        let slot = self
            .slots
            .remove(&msg.0)
            .ok_or(SessionError::NotEnabled(msg.0))?;
        slot.link.shutdown(CloseReason::DistributorDisabled);
        self.enabled = self.slots.keys().copied().collect();
        self.update_kept();
        tracing::info!(session = %self.id, distributor = %msg.0, "distributor disabled");
        self.rails.system.emit(
            "distributor.disabled",
            json!({"session": &*self.id, "distributor": msg.0}),
        );
        Ok(self.status())
    }
}

impl Handler<ReplaceRouting> for SessionActor {
    type Result = Result<Report, SessionError>;

    fn handle(&mut self, msg: ReplaceRouting, _: &mut Self::Context) -> Self::Result {
        let mut report = Report::default();
        let routing = parse_routing("eventRouting", &msg.0, &mut report);
        if !report.is_valid() {
            return Err(SessionError::Invalid(report));
        }
        let enabled: Vec<_> = self.slots.keys().copied().collect();
        warn_unreachable("eventRouting", &routing, &enabled, &mut report);
        self.router = Router::new(&routing);
        self.config.event_routing = routing;
        tracing::info!(session = %self.id, "event routing replaced");
        self.rails
            .system
            .emit("session.routing", json!({"session": &*self.id}));
        Ok(report)
    }
}

impl Handler<AttachLiveClient> for SessionActor {
    type Result = ResponseFuture<Result<Arc<ClientQueue>, SessionError>>;

    fn handle(&mut self, msg: AttachLiveClient, _: &mut Self::Context) -> Self::Result {
        match self.slot(msg.kind) {
            Ok(slot) => {
                let fut = slot.link.attach(msg.request);
                Box::pin(async move { fut.await.map_err(SessionError::Attach) })
            }
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }
}

impl Handler<InjectDistributorPanic> for SessionActor {
    type Result = Result<(), SessionError>;

    fn handle(&mut self, msg: InjectDistributorPanic, _: &mut Self::Context) -> Self::Result {
        self.slot(msg.0)?.link.inject_panic();
        Ok(())
    }
}

impl Handler<CloseSession> for SessionActor {
    type Result = MessageResult<CloseSession>;

    fn handle(&mut self, msg: CloseSession, ctx: &mut Self::Context) -> Self::Result {
        let mut status = self.status();
        self.stop_recording_and_replay("session closed");
        self.shutdown_all(msg.0);
        self.closed = true;
        status.state = "closed";
        self.telemetry.closed(&self.id, msg.0.as_str());
        self.rails.system.emit(
            "session.closed",
            json!({"id": &*self.id, "reason": msg.0.as_str(), "events": status.events_received}),
        );
        ctx.stop();
        MessageResult(status)
    }
}
