//! The Synopticon server: REST control, live feeds and metrics over the actor system of
//! `synopticon-actors`.
//!
//! # Layout
//! - [`analyze`]: the offline `analyze` command (images, folders, videos to JSON lines).
//! - [`auth`]: bearer tokens, roles, scopes, the check before every route, rate limits.
//! - [`backup`]: the `backup`, `restore` and `key new` commands.
//! - [`audit`]: who changed what, as structured log lines.
//! - [`tls`]: the rustls configuration of an https:// listener.
//! - [`configuration`]: settings from the embedded default, a file and the environment.
//! - [`edge`]: `synopticon edge`, the settings of an edge device publishing detections.
//! - [`startup`]: [`startup::Application`], used by `main` and by the tests.
//! - [`routes`]: one file per API area.
//! - [`error`]: the mapping of every error to an HTTP status and JSON body.
//! - [`telemetry`]: logging and the Prometheus recorder.

pub mod analyze;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod configuration;
pub mod cors;
pub mod edge;
pub mod error;
pub mod replay_cli;
pub mod routes;
pub mod startup;
pub mod state;
pub mod system_feed;
pub mod telemetry;
pub mod tls;
pub mod udp_ingest;
