//! The HTTP surface, one file per API area; each exposes `configure`.
//!
//! - [`dashboard`](self::dashboard): `/` and `/assets/{name}` (the web dashboard)
//! - [`openapi`](self::openapi): `/api/openapi.json`, generated from the route table
//! - [`health`](self::health): `/api/health`
//! - [`system`](self::system): `/api/config`, `/api/runtime`
//! - [`metrics`](self::metrics): `/metrics`
//! - [`templates`](self::templates): `/api/v1/templates`
//! - [`sessions`](self::sessions): `/api/v1/sessions` (sessions, distributors, routing, events)
//! - [`live`](self::live): `/api/v1/sessions/{id}/ws` and `/sse`
//! - [`inference`](self::inference): `/api/v1/detect`, `/api/v1/batch`, `/api/pipelines`
//! - [`sources`](self::sources): `/api/v1/sources` (vision sources, edge detections) and
//!   `/api/v1/sessions/{id}/sources`
//! - [`devices`](self::devices): `/api/v1/devices` (the device registry) and
//!   `/api/v1/sessions/{id}/devices`
//! - [`inputs`](self::inputs): `/api/v1/inputs` (broker inputs of a processor)
//! - [`recordings`](self::recordings): `/api/v1/recordings`, a session's recordings and
//!   replay (MCAP files)
//! - [`rules`](self::rules): `/api/v1/rules` (rules that act on events)
//! - [`tokens`](self::tokens): `/api/v1/tokens` (bearer tokens; admin only)
//! - [`debug`](self::debug): `/api/v1/debug` (fault injection, only with `server.debug_endpoints`)
//!
//! - [`api`]: how routes are declared; [`body`]: how their bodies are read; [`scope`]:
//!   what a token may see and change across areas.
//!
//! Every route is declared through [`api::Api`], with the access it needs: the same call
//! registers the handler, wraps it in the auth guard and records it in the route table
//! ([`table`]), which the security tests walk. A route cannot exist without a rule. The
//! area files import `api` and `body`, never this file.

pub mod api;
pub mod body;
pub mod dashboard;
pub mod debug;
pub mod devices;
pub mod health;
pub mod inference;
pub mod inputs;
pub mod live;
pub mod metrics;
pub mod openapi;
pub mod recordings;
pub mod rules;
pub mod scope;
pub mod sessions;
pub mod sources;
pub mod system;
pub mod templates;
pub mod tokens;

use actix_web::{web, HttpRequest, HttpResponse};

use api::Api;
pub use api::RouteSpec;

use crate::configuration::Settings;
use crate::error::ApiError;

/// Every route the server has with `settings`, in declaration order.
pub fn table(settings: &Settings) -> Vec<RouteSpec> {
    let mut table = Vec::new();
    let _ = actix_web::App::new().configure(|cfg| table = configure(cfg, settings));
    table
}

/// Registers every route; returns the route table.
pub fn configure(cfg: &mut web::ServiceConfig, settings: &Settings) -> Vec<RouteSpec> {
    let limit = settings.server.max_body_bytes;
    cfg.app_data(
        web::JsonConfig::default()
            .limit(limit)
            // A body without a JSON type is refused: browsers send `text/plain` and form
            // bodies to any origin without asking first.
            .content_type_required(true)
            .error_handler(move |err, _| body::json_error(err, limit).into()),
    )
    .app_data(web::PayloadConfig::default().limit(limit))
    .app_data(
        web::QueryConfig::default().error_handler(|err, _| {
            ApiError::BadRequest(format!("bad query string: {err}")).into()
        }),
    )
    .app_data(
        web::PathConfig::default()
            .error_handler(|err, _| ApiError::BadRequest(format!("bad path: {err}")).into()),
    );
    let mut api = Api::new(cfg);
    health::configure(&mut api);
    system::configure(&mut api);
    metrics::configure(&mut api);
    templates::configure(&mut api);
    sessions::configure(&mut api);
    live::configure(&mut api);
    recordings::configure(&mut api);
    inference::configure(&mut api);
    sources::configure(&mut api);
    devices::configure(&mut api);
    inputs::configure(&mut api);
    rules::configure(&mut api);
    tokens::configure(&mut api);
    openapi::configure(&mut api);
    dashboard::configure(&mut api);
    if settings.server.debug_endpoints {
        debug::configure(&mut api);
    }
    let (cfg, table) = api.finish();
    cfg.default_service(web::to(not_found));
    table
}

/// Describes the server-side metrics.
pub fn describe_metrics() {
    live::describe_metrics();
    crate::auth::guard::describe_metrics();
    crate::cors::describe_metrics();
    crate::udp_ingest::describe();
}

/// No such route. With authentication on, a caller without a valid token learns nothing,
/// not even which paths exist.
async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    crate::auth::guard::check(&req, None)?;
    Err(ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}
