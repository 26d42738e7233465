//! Messages that cross actor boundaries: what the server (and later the vision pipeline)
//! sends to the registry and to sessions, and what comes back.
//!
//! Distributor-internal messages (`Drain`, `Attach`, ...) live beside the distributor
//! actor in `distributor/actor.rs`; nothing outside a session sends them directly.

use std::sync::Arc;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::distributor::live::ClientQueue;
use crate::distributor::{CloseReason, DistributorKind, LiveAttach};
use crate::registry::RegistryError;
use crate::session::{SessionActor, SessionError, SessionStatus};
use crate::validation::Report;

/// Server → registry: create a session from a request body.
#[derive(Message)]
#[rtype(result = "Result<SessionStatus, RegistryError>")]
pub struct CreateSession(pub Value);

/// Server → registry: check a request body without creating anything.
#[derive(Message)]
#[rtype(result = "Report")]
pub struct ValidateSession(pub Value);

/// Sessions handle → registry: resolve a request against its template (validated, not
/// started).
#[derive(Message)]
#[rtype(result = "Result<crate::session::spec::SessionConfig, Report>")]
pub struct ResolveSession(pub Value);

/// Server → registry: look a session up.
#[derive(Message)]
#[rtype(result = "Option<Addr<SessionActor>>")]
pub struct FindSession(pub String);

/// Server → registry: every open session, in id order.
#[derive(Message)]
#[rtype(result = "Vec<Addr<SessionActor>>")]
pub struct ListSessions;

/// Server → registry: forget a session and hand it back so the caller can close it.
#[derive(Message)]
#[rtype(result = "Option<Addr<SessionActor>>")]
pub struct RemoveSession(pub String);

/// Server → registry: forget every session (shutdown) and hand them back.
#[derive(Message)]
#[rtype(result = "Vec<Addr<SessionActor>>")]
pub struct RemoveAllSessions;

/// One event as a producer submits it.
#[derive(Debug, Clone)]
pub struct IncomingEvent {
    /// Event type (already checked by the caller).
    pub name: String,
    /// Payload, as raw JSON (see [`crate::json`]).
    pub data: crate::json::SharedData,
    /// Producer's timestamp; the arrival time when absent.
    pub ts: Option<DateTime<Utc>>,
    /// What inside the server raised it (nothing for events posted by clients).
    pub origin: crate::event::Origin,
}

/// Where one accepted event went.
#[derive(Debug, Clone, Serialize)]
pub struct RoutedEvent {
    /// Sequence number in the session.
    pub seq: u64,
    /// Event type.
    pub event: Arc<str>,
    /// Distributors whose queue received it.
    pub routed_to: Vec<DistributorKind>,
}

/// Producer (REST, pipeline) → session: accept events, in order.
#[derive(Message)]
#[rtype(result = "Vec<RoutedEvent>")]
pub struct PublishEvents(pub Vec<IncomingEvent>);

/// Server → session: current status.
#[derive(Message)]
#[rtype(result = "SessionStatus")]
pub struct GetStatus;

/// Server → session: enable a distributor with `config`, or reconfigure it if enabled.
#[derive(Message)]
#[rtype(result = "Result<DistributorChange, SessionError>")]
pub struct PutDistributor {
    /// Which protocol.
    pub kind: DistributorKind,
    /// Its full settings; `null` for the ones the session holds for it.
    pub config: Value,
}

/// What [`PutDistributor`] did.
#[derive(Debug, Serialize)]
pub struct DistributorChange {
    /// `enabled` or `reconfigured`.
    pub action: &'static str,
    /// Settings that are legal but risky.
    pub warnings: Vec<String>,
    /// The session after the change.
    pub session: SessionStatus,
}

/// Server → session: stop a distributor (its settings are kept for a later enable).
#[derive(Message)]
#[rtype(result = "Result<SessionStatus, SessionError>")]
pub struct DisableDistributor(pub DistributorKind);

/// Server → session: replace the event routing.
#[derive(Message)]
#[rtype(result = "Result<Report, SessionError>")]
pub struct ReplaceRouting(pub Value);

/// Server → session: attach a WebSocket or SSE client.
#[derive(Message)]
#[rtype(result = "Result<Arc<ClientQueue>, SessionError>")]
pub struct AttachLiveClient {
    /// `websocket` or `sse`.
    pub kind: DistributorKind,
    /// Subscription and resume point.
    pub request: LiveAttach,
}

/// Debug hook → session: make one distributor panic.
#[derive(Message)]
#[rtype(result = "Result<(), SessionError>")]
pub struct InjectDistributorPanic(pub DistributorKind);

/// Server → session: close for good; the reply is the final status.
#[derive(Message)]
#[rtype(result = "SessionStatus")]
pub struct CloseSession(pub CloseReason);

/// The picture an event was raised on, for rules that capture it: the analysed frame of a
/// camera, or what an edge device sent with its envelope.
#[derive(Debug, Clone)]
pub enum FrameRef {
    /// A camera's frame, as analysed.
    Rgb(Arc<crate::inference::Frame>),
    /// An envelope's `frame_data`: base64 of a JPEG.
    Base64Jpeg(Arc<str>),
    /// An envelope's `frame_ref` naming a saved file.
    File(std::path::PathBuf),
}

/// One frame as a source analysed it: what a recording keeps of it (its detections as
/// the model or device gave them, the tracked boxes, the picture).
#[derive(Debug, Clone)]
pub struct AnalysedFrame {
    /// Source id.
    pub source: Arc<str>,
    /// The serial of the registered device the source belongs to, if any: a recording
    /// holding the frame is then the device's data too (device-scoped tokens).
    pub device: Option<Arc<str>>,
    /// Frame number within the source.
    pub number: u64,
    /// The frame's time (the source's clock: an edge device's timestamp).
    pub at: DateTime<Utc>,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Detections before the source's class and confidence filters.
    pub detections: Vec<crate::inference::Detection>,
    /// An edge device's own track id for each detection, when it gave them.
    pub track_ids: Option<Vec<Option<u64>>>,
    /// Tracked boxes after this frame: (track id, class, confidence, box).
    pub tracks: Vec<(u64, Arc<str>, f32, crate::inference::BBox)>,
    /// The picture, when one is at hand.
    pub picture: Option<Arc<FrameRef>>,
}

/// Registry → session: a frame of a source it listens to, for its recordings.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RecordFrame(pub Arc<AnalysedFrame>);

/// Source → registry: events of a vision source, for every session listening to it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PublishSourceEvents {
    /// Source id.
    pub source: Arc<str>,
    /// The serial of the registered device the source belongs to, if any: sessions
    /// listening to the device hear its source too.
    pub device: Option<Arc<str>>,
    /// The frame the events were raised on, if one is at hand.
    pub frame: Option<Arc<FrameRef>>,
    /// Events, in order.
    pub events: Vec<IncomingEvent>,
    /// The frame analysed, for sessions that record their sources' frames.
    pub analysed: Option<Arc<AnalysedFrame>>,
}

/// Server → registry: change which sources a session listens to.
#[derive(Message)]
#[rtype(result = "Result<Vec<String>, RegistryError>")]
pub struct SetSessionSources {
    /// Session id.
    pub session: String,
    /// Source ids (or `"*"`).
    pub sources: Vec<String>,
}

/// Sessions handle → session: its sequence numbers are reserved up to this one.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SeqReserved(pub u64);

/// Sessions handle → registry: start a session from a configuration kept in the store
/// (or declared), its sequence numbers continuing from `seq`.
#[derive(Message)]
#[rtype(result = "Result<SessionStatus, RegistryError>")]
pub struct RestoreSession {
    /// The configuration it ran with.
    pub config: crate::session::spec::SessionConfig,
    /// Where its numbers continue.
    pub seq: crate::session::SeqStart,
    /// Its WebSocket history as the store kept it (`historyStore: "store"`).
    pub kept: Option<Value>,
}

/// Registry → session: the sources it now listens to (shown in its status).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SourcesChanged(pub Vec<String>);

/// Server → registry: change which devices a session listens to.
#[derive(Message)]
#[rtype(result = "Result<Vec<String>, RegistryError>")]
pub struct SetSessionDevices {
    /// Session id.
    pub session: String,
    /// Serial globs (or `"*"`).
    pub devices: Vec<String>,
}

/// Registry → session: the devices it now listens to (shown in its status).
#[derive(Message)]
#[rtype(result = "()")]
pub struct DevicesChanged(pub Vec<String>);

/// Device registry → session registry: events about one device, for every session
/// listening to it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PublishDeviceEvents {
    /// The device's serial.
    pub serial: Arc<str>,
    /// Events, in order.
    pub events: Vec<IncomingEvent>,
}
