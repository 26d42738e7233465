//! Integration tests: each starts the real server on port 0 and talks to it with real
//! HTTP, WebSocket and SSE clients.

mod analyze;
mod config;
mod helpers;
mod inference;
mod live;
mod metrics;
mod mqtt;
mod pipeline;
mod redis;
mod sessions;
mod shutdown;
mod sources;
mod supervision;
mod templates;
mod tracking;
mod udp;
mod webhook;
