//! The [`Sessions`] handle: everything the server does with sessions, as typed async
//! methods that own their timeouts and errors, with the store behind them.
//!
//! Routes never hold an actor's address or send it a message: they call the handle, which
//! asks the registry or the session, waits at most its timeout, and keeps the store in
//! step. A change is written to the store before the call returns, so what a REST call
//! answered 2xx for survives a restart (a SIGKILL included); a store that cannot be
//! written is a [`SessionsError::Store`] (503) and the change is undone.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use serde_json::Value;

use crate::distributor::live::ClientQueue;
use crate::distributor::{CloseReason, DistributorKind, LiveAttach};
use crate::messages::*;
use crate::registry::{RegistryError, SessionRegistry};
use crate::session::spec::SessionConfig;
use crate::session::{SeqStart, SessionActor, SessionError, SessionStatus, SEQ_BLOCK};
use crate::store::{Kind, Store, StoreError};
use crate::validation::Report;

/// What can go wrong with a session.
#[derive(Debug, thiserror::Error)]
pub enum SessionsError {
    /// No such session (404).
    #[error("session {0:?} not found")]
    NotFound(String),
    /// The request did not validate; every problem is listed (422).
    #[error("invalid session configuration")]
    Invalid(Report),
    /// The id is taken (409).
    #[error("session {0:?} already exists")]
    Conflict(String),
    /// The distributor is not enabled (409).
    #[error("the {0} distributor is not enabled on this session")]
    NotEnabled(DistributorKind),
    /// The session is built in and stays (409).
    #[error("session {0:?} is built in: it cannot be closed (its distributors and routing can be changed)")]
    BuiltIn(String),
    /// Only the server writes into this session (403): the system session's events are
    /// what the dashboard and building monitoring trust.
    #[error("session {0:?} carries the server's own events: only the server writes into it")]
    ServerOnly(String),
    /// The session limit is reached (503).
    #[error("the server already has its maximum of {0} sessions")]
    Full(usize),
    /// Not possible now (409), e.g. too many recordings running.
    #[error("{0}")]
    Busy(String),
    /// An actor did not answer in time, or a live client could not attach (503).
    #[error("{0}")]
    Unavailable(String),
    /// The store could not keep the change, which was undone (503).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<RegistryError> for SessionsError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Invalid(report) => Self::Invalid(report),
            RegistryError::Conflict(id) => Self::Conflict(id),
            RegistryError::Full(n) => Self::Full(n),
            RegistryError::NotFound(id) => Self::NotFound(id),
        }
    }
}

impl From<SessionError> for SessionsError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::NotEnabled(kind) => Self::NotEnabled(kind),
            SessionError::Invalid(report) => Self::Invalid(report),
            SessionError::Attach(message) => Self::Unavailable(message),
        }
    }
}

/// A recording's error as a session error.
fn recording_error(e: crate::recording::hub::RecordingError) -> SessionsError {
    use crate::recording::hub::RecordingError as E;
    match e {
        E::NotFound(id) => SessionsError::NotFound(id),
        E::Conflict(m) => SessionsError::Busy(m),
        E::Unavailable(m) => SessionsError::Unavailable(m),
        E::Invalid(m) | E::TooLarge(m) => {
            let mut report = Report::default();
            report.error(m);
            SessionsError::Invalid(report)
        }
        E::Store(e) => SessionsError::Store(e),
    }
}

/// What a replay asks its session; a session stuck for ten request timeouts ends the
/// replay.
async fn ask_for_replay<M>(
    session: &Addr<SessionActor>,
    msg: M,
    timeout: Duration,
) -> Result<M::Result, String>
where
    M: Message + Send + 'static,
    M::Result: Send,
    SessionActor: Handler<M>,
{
    match tokio::time::timeout(timeout * 10, session.send(msg)).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(_)) => Err("the session closed".to_string()),
        Err(_) => Err("the session did not answer in time".to_string()),
    }
}

/// A replay's batch into its session (waiting for it is the back-pressure).
async fn publish_to(
    session: &Addr<SessionActor>,
    batch: Vec<IncomingEvent>,
    timeout: Duration,
) -> Result<(), String> {
    let asked = batch.len();
    let routed = ask_for_replay(session, PublishEvents(batch), timeout).await?;
    // A session sealed for the shutdown takes nothing more (as `Sessions::publish`).
    if asked > 0 && routed.is_empty() {
        return Err("the session is closing: the server is shutting down".to_string());
    }
    Ok(())
}

/// The sessions of this server.
#[derive(Clone)]
pub struct Sessions {
    registry: Addr<SessionRegistry>,
    /// Where sessions record to.
    recordings: crate::recording::RecordingHub,
    store: Arc<Store>,
    /// How long an actor may take to answer.
    timeout: Duration,
}

impl Sessions {
    /// A handle on `registry`, keeping sessions in `store`.
    pub fn new(registry: Addr<SessionRegistry>, store: Arc<Store>, timeout: Duration) -> Self {
        Self {
            registry,
            recordings: Default::default(),
            store,
            timeout,
        }
    }

    /// The handle, keeping recordings started through it in `recordings`.
    pub fn with_recordings(mut self, recordings: crate::recording::RecordingHub) -> Self {
        self.recordings = recordings;
        self
    }

    /// The registry (for sources, which publish their events through it).
    pub fn registry(&self) -> &Addr<SessionRegistry> {
        &self.registry
    }

    async fn ask<T>(
        &self,
        what: &str,
        request: impl Future<Output = Result<T, MailboxError>>,
    ) -> Result<T, SessionsError> {
        match tokio::time::timeout(self.timeout, request).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(SessionsError::Unavailable(format!("{what} is not running"))),
            Err(_) => Err(SessionsError::Unavailable(format!(
                "{what} did not answer within {} ms",
                self.timeout.as_millis()
            ))),
        }
    }

    async fn find(&self, id: &str) -> Result<Addr<SessionActor>, SessionsError> {
        self.ask(
            "the session registry",
            self.registry.send(FindSession(id.to_string())),
        )
        .await?
        .ok_or_else(|| SessionsError::NotFound(id.to_string()))
    }

    async fn status_of(
        &self,
        session: &Addr<SessionActor>,
    ) -> Result<SessionStatus, SessionsError> {
        self.ask("the session", session.send(GetStatus)).await
    }

    /// Writes the session's configuration as it runs now.
    async fn keep(&self, status: &SessionStatus) -> Result<(), SessionsError> {
        let config = serde_json::to_value(&status.config).unwrap_or(Value::Null);
        self.store.put(Kind::Session, &status.id, &config).await?;
        Ok(())
    }

    /// Checks a request without creating anything.
    pub async fn validate(&self, body: Value) -> Result<Report, SessionsError> {
        self.ask(
            "the session registry",
            self.registry.send(ValidateSession(body)),
        )
        .await
    }

    /// Creates a session from a request (a template and overrides), keeps it and reserves
    /// its first sequence numbers; a store that cannot take it undoes the creation.
    pub async fn create(&self, body: Value) -> Result<SessionStatus, SessionsError> {
        let status = self
            .ask(
                "the session registry",
                self.registry.send(CreateSession(body)),
            )
            .await??;
        let kept = async {
            self.keep(&status).await?;
            self.store.reserve_seq(&status.id, SEQ_BLOCK).await?;
            Ok::<(), SessionsError>(())
        };
        if let Err(error) = kept.await {
            let _ = self.close_unkept(&status.id).await;
            return Err(error);
        }
        if let Ok(session) = self.find(&status.id).await {
            session.do_send(SeqReserved(SEQ_BLOCK));
        }
        Ok(status)
    }

    /// Creates a session declared in the configuration: it is not kept (the configuration
    /// has it), but its sequence numbers continue across restarts like any session's.
    pub async fn declare(&self, body: Value) -> Result<SessionStatus, SessionsError> {
        let config = self
            .ask(
                "the session registry",
                self.registry.send(ResolveSession(body)),
            )
            .await?
            .map_err(SessionsError::Invalid)?;
        let last = self.last_reserved(&config.id).await?;
        self.start(config, last).await
    }

    /// The reservation a session left in the store (0 for none).
    async fn last_reserved(&self, id: &str) -> Result<u64, SessionsError> {
        Ok(self
            .store
            .reserved_seqs()
            .await?
            .into_iter()
            .find_map(|(s, reserved)| (s == id).then_some(reserved))
            .unwrap_or(0))
    }

    /// Starts a session whose numbers continue above `last`, once the next block is
    /// reserved.
    async fn start(
        &self,
        config: SessionConfig,
        last: u64,
    ) -> Result<SessionStatus, SessionsError> {
        self.store.reserve_seq(&config.id, last + SEQ_BLOCK).await?;
        let seq = SeqStart {
            last,
            reserved: last + SEQ_BLOCK,
        };
        let kept = self.store.get(Kind::History, &config.id).await?;
        Ok(self
            .ask(
                "the session registry",
                self.registry.send(RestoreSession { config, seq, kept }),
            )
            .await??)
    }

    /// Starts every session kept in the store, their numbers continuing above their
    /// reservations; `skip` names sessions the configuration declares (which win). A
    /// session that cannot start (its settings no longer validate) is reported and kept.
    pub async fn restore(
        &self,
        skip: &[String],
    ) -> Result<Vec<(String, Result<(), SessionsError>)>, SessionsError> {
        let reserved = self.store.reserved_seqs().await?;
        let mut results = Vec::new();
        for (id, body) in self.store.list(Kind::Session).await? {
            if skip.contains(&id) {
                tracing::warn!(session = %id, "a kept session has the id of a declared one: the declared one runs");
                continue;
            }
            let restored = async {
                let config: SessionConfig = serde_json::from_value(body).map_err(|e| {
                    SessionsError::Store(StoreError::Damaged(format!("session {id}: {e}")))
                })?;
                let last = reserved
                    .iter()
                    .find_map(|(s, r)| (*s == id).then_some(*r))
                    .unwrap_or(0);
                self.start(config, last).await.map(|_| ())
            };
            let outcome = restored.await;
            results.push((id, outcome));
        }
        Ok(results)
    }

    /// Every session that answered in time, in id order, and how many did not.
    pub async fn statuses(&self) -> Result<(Vec<SessionStatus>, usize), SessionsError> {
        let sessions = self
            .ask("the session registry", self.registry.send(ListSessions))
            .await?;
        let asked = futures_util::future::join_all(
            sessions
                .iter()
                .map(|s| tokio::time::timeout(self.timeout, s.send(GetStatus))),
        )
        .await;
        let total = asked.len();
        let answered: Vec<SessionStatus> = asked.into_iter().filter_map(|s| s.ok()?.ok()).collect();
        let silent = total - answered.len();
        Ok((answered, silent))
    }

    /// Every session that answered in time, in id order.
    pub async fn list(&self) -> Result<Vec<SessionStatus>, SessionsError> {
        Ok(self.statuses().await?.0)
    }

    /// One session's status.
    pub async fn status(&self, id: &str) -> Result<SessionStatus, SessionsError> {
        let session = self.find(id).await?;
        self.status_of(&session).await
    }

    /// Closes a session (clients get close frames) and forgets it; the final status.
    pub async fn close(&self, id: &str) -> Result<SessionStatus, SessionsError> {
        if id == crate::system::SYSTEM_SESSION {
            return Err(SessionsError::BuiltIn(id.to_string()));
        }
        // Forgotten by the store first: a session the store still held would come back.
        self.store.delete(Kind::Session, id).await?;
        self.store.delete(Kind::History, id).await?;
        self.close_unkept(id).await
    }

    async fn close_unkept(&self, id: &str) -> Result<SessionStatus, SessionsError> {
        let session = self
            .ask(
                "the session registry",
                self.registry.send(RemoveSession(id.to_string())),
            )
            .await?
            .ok_or_else(|| SessionsError::NotFound(id.to_string()))?;
        self.ask(
            "the session",
            session.send(CloseSession(CloseReason::SessionClosed)),
        )
        .await
    }

    /// Closes every session (shutdown); they stay in the store.
    pub async fn close_all(&self, reason: CloseReason) -> usize {
        let sessions = self
            .ask(
                "the session registry",
                self.registry.send(RemoveAllSessions),
            )
            .await
            .unwrap_or_default();
        // Kept histories are written before the sessions go (a clean shutdown loses none).
        if reason == CloseReason::ServerShutdown {
            let flushing = sessions
                .iter()
                .map(|s| tokio::time::timeout(self.timeout, s.send(crate::session::FlushHistory)));
            futures_util::future::join_all(flushing).await;
        }
        let closing = sessions
            .iter()
            .map(|s| tokio::time::timeout(self.timeout, s.send(CloseSession(reason))));
        futures_util::future::join_all(closing).await.len()
    }

    /// Runs a change on the session, keeps the result, and puts the old configuration
    /// back if the store cannot take it.
    async fn change<T, F>(
        &self,
        id: &str,
        apply: impl FnOnce(Addr<SessionActor>) -> F,
    ) -> Result<T, SessionsError>
    where
        F: Future<Output = Result<T, SessionsError>>,
    {
        let session = self.find(id).await?;
        let before = self.status_of(&session).await?;
        let answer = apply(session.clone()).await?;
        let after = self.status_of(&session).await?;
        if let Err(error) = self.keep(&after).await {
            self.revert(&session, &before, &after).await;
            return Err(error);
        }
        Ok(answer)
    }

    /// Puts a session's distributors, routing and sources back as they were.
    async fn revert(
        &self,
        session: &Addr<SessionActor>,
        before: &SessionStatus,
        after: &SessionStatus,
    ) {
        for kind in &after.config.enabled_distributors {
            if !before.config.enabled_distributors.contains(kind) {
                let _ = self
                    .ask("the session", session.send(DisableDistributor(*kind)))
                    .await;
            }
        }
        for kind in &before.config.enabled_distributors {
            if let Some(config) = before.config.distributors.get(kind) {
                let put = PutDistributor {
                    kind: *kind,
                    config: config.clone(),
                };
                let _ = self.ask("the session", session.send(put)).await;
            }
        }
        let routing = serde_json::to_value(&before.config.event_routing).unwrap_or(Value::Null);
        let _ = self
            .ask("the session", session.send(ReplaceRouting(routing)))
            .await;
        let sources = SetSessionSources {
            session: before.id.clone(),
            sources: before.config.sources.clone(),
        };
        let _ = self
            .ask("the session registry", self.registry.send(sources))
            .await;
        let devices = SetSessionDevices {
            session: before.id.clone(),
            devices: before.config.devices.clone(),
        };
        let _ = self
            .ask("the session registry", self.registry.send(devices))
            .await;
    }

    /// Enables a distributor with `config`, or reconfigures it.
    pub async fn put_distributor(
        &self,
        id: &str,
        kind: DistributorKind,
        config: Value,
    ) -> Result<DistributorChange, SessionsError> {
        self.change(id, |session| async move {
            Ok(self
                .ask("the session", session.send(PutDistributor { kind, config }))
                .await??)
        })
        .await
    }

    /// Stops a distributor; its settings are kept for a later enable.
    pub async fn disable_distributor(
        &self,
        id: &str,
        kind: DistributorKind,
    ) -> Result<SessionStatus, SessionsError> {
        self.change(id, |session| async move {
            Ok(self
                .ask("the session", session.send(DisableDistributor(kind)))
                .await??)
        })
        .await
    }

    /// Replaces the event routing; the session after it, and the warnings.
    pub async fn replace_routing(
        &self,
        id: &str,
        routing: Value,
    ) -> Result<(SessionStatus, Report), SessionsError> {
        let report = self
            .change(id, |session| async move {
                Ok(self
                    .ask("the session", session.send(ReplaceRouting(routing)))
                    .await??)
            })
            .await?;
        Ok((self.status(id).await?, report))
    }

    /// Changes which sources a session listens to.
    pub async fn set_sources(
        &self,
        id: &str,
        sources: Vec<String>,
    ) -> Result<Vec<String>, SessionsError> {
        self.change(id, |_| async move {
            let request = SetSessionSources {
                session: id.to_string(),
                sources,
            };
            Ok(self
                .ask("the session registry", self.registry.send(request))
                .await??)
        })
        .await
    }

    /// Changes which devices (serial globs) a session listens to.
    pub async fn set_devices(
        &self,
        id: &str,
        devices: Vec<String>,
    ) -> Result<Vec<String>, SessionsError> {
        self.change(id, |_| async move {
            let request = SetSessionDevices {
                session: id.to_string(),
                devices,
            };
            Ok(self
                .ask("the session registry", self.registry.send(request))
                .await??)
        })
        .await
    }

    /// Accepts events, in order; where each went.
    pub async fn publish(
        &self,
        id: &str,
        events: Vec<IncomingEvent>,
    ) -> Result<Vec<RoutedEvent>, SessionsError> {
        // Clients publish through here (REST, WebSocket, UDP): the server's own events go
        // into the system session by the system feed, never this way.
        if id == crate::system::SYSTEM_SESSION {
            return Err(SessionsError::ServerOnly(id.to_string()));
        }
        let session = self.find(id).await?;
        let asked = events.len();
        let routed = self
            .ask("the session", session.send(PublishEvents(events)))
            .await?;
        // A session sealed for the shutdown takes nothing more.
        if asked > 0 && routed.is_empty() {
            return Err(SessionsError::Unavailable(format!(
                "session {id:?} is closing: the server is shutting down"
            )));
        }
        Ok(routed)
    }

    /// Starts recording a session; the recording is kept in the store before this
    /// returns.
    pub async fn start_recording(
        &self,
        id: &str,
        spec: crate::recording::RecordingSpec,
        continues: Option<String>,
    ) -> Result<crate::recording::RecordingInfo, SessionsError> {
        let session = self.find(id).await?;
        let recorder = self
            .ask(
                "the session",
                session.send(crate::session::StartRecording { spec, continues }),
            )
            .await?
            .map_err(recording_error)?;
        if let Err(error) = self.recordings.keep(&recorder).await {
            recorder.stop("the store could not keep it");
            return Err(recording_error(error));
        }
        Ok(recorder.info())
    }

    /// Plays cues into a session: the player is attached to it (its status shows it)
    /// and runs until the end, a stop, or the session's end; `pace` charges its events to
    /// whoever started it.
    pub async fn start_replay(
        &self,
        id: &str,
        player: Arc<crate::recording::replay::Player>,
        cues: Vec<crate::recording::replay::Cue>,
        rate: f64,
        looping: bool,
        pace: Option<crate::recording::replay::Pace>,
    ) -> Result<(), SessionsError> {
        if id == crate::system::SYSTEM_SESSION {
            return Err(SessionsError::ServerOnly(id.to_string()));
        }
        let session = self.find(id).await?;
        self.ask(
            "the session",
            session.send(crate::session::AttachReplay(player.clone())),
        )
        .await?;
        let timeout = self.timeout;
        tokio::spawn(crate::recording::replay::play(
            player,
            cues,
            rate,
            looping,
            pace,
            {
                let session = session.clone();
                move |batch| {
                    let session = session.clone();
                    async move { publish_to(&session, batch, timeout).await }
                }
            },
            move || {
                let session = session.clone();
                async move { ask_for_replay(&session, crate::session::Room, timeout).await }
            },
        ));
        Ok(())
    }

    /// The recording playing into a session, if any.
    pub async fn replay(
        &self,
        id: &str,
    ) -> Result<Option<Arc<crate::recording::replay::Player>>, SessionsError> {
        let session = self.find(id).await?;
        self.ask("the session", session.send(crate::session::GetReplay))
            .await
    }

    /// Attaches a live client to the session's WebSocket or SSE distributor.
    pub async fn attach(
        &self,
        id: &str,
        kind: DistributorKind,
        request: LiveAttach,
    ) -> Result<Arc<ClientQueue>, SessionsError> {
        let session = self.find(id).await?;
        Ok(self
            .ask(
                "the session",
                session.send(AttachLiveClient { kind, request }),
            )
            .await??)
    }

    /// Debug hook: makes one distributor panic inside its supervised boundary.
    pub async fn inject_panic(&self, id: &str, kind: DistributorKind) -> Result<(), SessionsError> {
        let session = self.find(id).await?;
        Ok(self
            .ask("the session", session.send(InjectDistributorPanic(kind)))
            .await??)
    }

    /// The store behind the sessions.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }
}
