//! Integration tests: each starts the real server on port 0 and talks to it with real
//! HTTP, WebSocket and SSE clients.

mod analyze;
mod browser;
mod config;
mod cross_site;
mod devices;
mod edge;
mod egress;
mod fuzz;
mod helpers;
mod inference;
mod inputs;
mod limits;
mod live;
mod metrics;
mod mqtt;
mod pipeline;
mod publish;
mod recording;
mod redis;
mod resume;
mod rules;
mod security;
mod sessions;
mod shutdown;
mod sources;
mod store;
mod supervision;
mod system;
mod templates;
mod tls;
mod tracking;
mod udp;
mod udp_ingest;
mod web;
mod webhook;
