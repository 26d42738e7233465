//! Synopticon's actor system and domain, with no HTTP in it.
//!
//! Events enter a [`SessionActor`](session::SessionActor), which numbers them, routes them
//! by type and pushes them into the bounded queues of its distributors; each distributor is
//! a supervised actor that delivers over one protocol. The server crate turns REST calls,
//! WebSocket and SSE connections into the messages of [`messages`].
//!
//! # Layout
//! - [`messages`]: messages that cross actor boundaries (server → registry/session).
//! - [`registry`]: the registry actor that creates, finds and closes sessions.
//! - [`session`]: the session actor, its configuration ([`session::spec`]), routing
//!   ([`session::routing`]) and templates ([`session::templates`]).
//! - [`sessions`]: the [`Sessions`](sessions::Sessions) handle the server uses for every
//!   session operation, with the store behind it.
//! - [`distributor`]: the generic supervised distributor actor, its queue, breaker, live
//!   client fan-out, and one file per protocol.
//! - [`inference`]: ONNX Runtime detectors (YOLO family, CenterFace), the model thread
//!   behind each `InferenceActor`, and the hub of configured models.
//! - [`egress`]: where outbound connections may go (allowed and denied networks).
//! - [`event`]: the event type and its shared, serialize-once encodings.
//! - [`json`]: event payloads kept as the producer's raw JSON.
//! - [`source`]: vision sources (files, streams, cameras, folders, synthetic, external
//!   edge devices): the `CameraActor` (capture) of each source; tracking and analytics are
//!   the `TrackerActor` in `tracker`.
//! - [`store`]: what is kept across restarts (SQLite, PostgreSQL or memory).
//! - [`devices`]: the device registry, its change events and the sources of devices.
//! - [`bus`]: the server's own Redis connection (`redis.url`), publishing device channels.
//! - [`rules`]: rules that act on events (JSON log, captures, e-mails, digests,
//!   sessions, webhooks).
//! - [`input`]: detection envelopes consumed from brokers (Redis Streams, MQTT) into the
//!   trackers of their devices' sources.
//! - [`recording`]: sessions recorded to MCAP files, read back and replayed into a
//!   session (also re-analysed through a source's lines and zones).
//! - [`tracker`]: ByteTrack-style tracking, lines and zones, the `TrackerActor` of each
//!   source, and the evaluation on synthetic scenes.
//! - [`secrets`]: which configuration values are secret; hiding them in answers, sealing
//!   them for the store.
//! - [`telemetry`]: counters, metric names and internal events that log and count.
//! - [`validation`]: reports that list every problem at once.
//! - [`glob`]: `*`/`?` patterns for routing and subscriptions.
//! - [`guardrails`]: server-wide ceilings on per-session sizes; [`budget`]: the memory
//!   budget that queued events and SSE history share.

pub mod budget;
pub mod bus;
pub mod devices;
pub mod distributor;
pub mod egress;
pub mod event;
pub mod glob;
pub mod guardrails;
pub mod inference;
pub mod input;
pub mod json;
pub mod messages;
pub mod recording;
pub mod registry;
pub mod rules;
pub mod secrets;
pub mod session;
pub mod sessions;
pub mod source;
pub mod store;
pub mod system;
pub mod telemetry;
pub mod tracker;
pub mod validation;
