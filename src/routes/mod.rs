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
//! Every route is declared through [`Api`], with the access it needs: the same call
//! registers the handler, wraps it in the auth [`Guard`] and records it in the route table
//! ([`table`]), which the security tests walk. A route cannot exist without a rule.

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
pub mod sessions;
pub mod sources;
pub mod system;
pub mod templates;
pub mod tokens;

use std::collections::HashMap;

use actix_web::error::JsonPayloadError;
use actix_web::http::Method;
use actix_web::{web, FromRequest, Handler, HttpRequest, HttpResponse, Responder};
use serde::Serialize;

use crate::auth::guard::{Guard, RouteRule};
use crate::auth::{Access, ResourceScope};
use crate::configuration::Settings;
use crate::error::ApiError;

/// One route of the API, as the router holds it.
#[derive(Debug, Clone, Serialize)]
pub struct RouteSpec {
    /// HTTP method.
    pub method: String,
    /// Path pattern, e.g. `/api/v1/sessions/{id}`.
    pub path: &'static str,
    /// Who may call it, which resource it scopes, whether it is a live feed.
    #[serde(flatten)]
    pub rule: RouteRule,
    /// What it takes as a body.
    pub takes: Takes,
    /// What it answers when it succeeds.
    pub answers: Answers,
}

/// What a route takes as its body (the OpenAPI document says so, and the handler refuses
/// anything else: 415 for another type, 400 or 422 for another JSON shape).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Takes {
    /// No body.
    Nothing,
    /// A JSON object (`required`: an empty body is refused; otherwise it means the
    /// defaults).
    Object {
        /// Whether a body must be sent.
        required: bool,
    },
    /// A JSON array of strings (ids, patterns).
    Strings,
    /// An event object or an array of them.
    Events,
    /// A binary body of one of these media types.
    Binary(&'static [&'static str]),
}

/// What a route answers when it succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Answers {
    /// The status code.
    pub status: u16,
    /// The body.
    pub content: Content,
    /// A `PUT` that answers 201 (with the same body) when it made what it names.
    pub or_created: bool,
}

/// The body of a successful answer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Content {
    /// A JSON object.
    Object,
    /// Nothing (204).
    Empty,
    /// Text of this media type (`text/plain`, `text/html`, `text/event-stream`).
    Text(&'static str),
    /// Bytes of this media type (`image/jpeg`, `application/octet-stream`).
    Binary(&'static str),
    /// A WebSocket handshake (101).
    Upgrade,
}

impl Answers {
    /// 200 with a JSON object.
    pub const OK: Answers = Answers::ok(Content::Object);
    /// 201 with the JSON object made.
    pub const CREATED: Answers = Answers::with(201, Content::Object);
    /// 202 with a JSON object saying what was accepted.
    pub const ACCEPTED: Answers = Answers::with(202, Content::Object);
    /// 204, no body.
    pub const NO_CONTENT: Answers = Answers::with(204, Content::Empty);
    /// 200, or 201 when the PUT made it: two answers the document lists.
    pub const PUT: Answers = Answers {
        or_created: true,
        ..Answers::OK
    };
    /// 101: a WebSocket.
    pub const UPGRADE: Answers = Answers::with(101, Content::Upgrade);

    /// 200 with this content.
    pub const fn ok(content: Content) -> Answers {
        Answers::with(200, content)
    }

    /// `status` with this content.
    pub const fn with(status: u16, content: Content) -> Answers {
        Answers {
            status,
            content,
            or_created: false,
        }
    }
}

/// One method of a resource as declared.
struct Declared {
    method: Method,
    access: Access,
    takes: Takes,
    answers: Answers,
}

/// Declares routes: registers each handler behind the auth guard and records its rule.
pub struct Api<'a> {
    cfg: &'a mut web::ServiceConfig,
    table: Vec<RouteSpec>,
}

/// The methods of one resource, being declared.
pub struct ResourceRoutes {
    path: &'static str,
    scope: ResourceScope,
    live_feed: bool,
    resource: actix_web::Resource,
    rules: Vec<Declared>,
}

impl ResourceRoutes {
    /// Adds `handler` for `method`, callable with `access`. It takes a JSON object
    /// (`POST`, `PATCH`; optional for `PUT`) or nothing, and answers 200 with a JSON
    /// object, unless [`takes`](Self::takes) and [`answers`](Self::answers) say otherwise.
    pub fn route<F, Args>(mut self, method: Method, access: Access, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.resource = self.resource.route(web::method(method.clone()).to(handler));
        let takes = match method {
            Method::POST | Method::PATCH => Takes::Object { required: true },
            Method::PUT => Takes::Object { required: false },
            _ => Takes::Nothing,
        };
        self.rules.push(Declared {
            method,
            access,
            takes,
            answers: Answers::OK,
        });
        self
    }

    /// What the method declared last takes as its body.
    pub fn takes(mut self, takes: Takes) -> Self {
        if let Some(last) = self.rules.last_mut() {
            last.takes = takes;
        }
        self
    }

    /// What the method declared last answers when it succeeds.
    pub fn answers(mut self, answers: Answers) -> Self {
        if let Some(last) = self.rules.last_mut() {
            last.answers = answers;
        }
        self
    }
}

/// `get`, `post`, ... : [`ResourceRoutes::route`] with the method named.
macro_rules! method_routes {
    ($($name:ident => $method:ident),*) => {
        impl ResourceRoutes {
            $(
                #[doc = concat!("`", stringify!($method), "`.")]
                pub fn $name<F, Args>(self, access: Access, handler: F) -> Self
                where
                    F: Handler<Args>,
                    Args: FromRequest + 'static,
                    F::Output: Responder + 'static,
                {
                    self.route(Method::$method, access, handler)
                }
            )*
        }
    };
}

method_routes!(get => GET, post => POST, put => PUT, patch => PATCH, delete => DELETE);

impl Api<'_> {
    /// Declares the resource at `path`; `{id}` in it names a resource of kind `scope`.
    pub fn resource(
        &mut self,
        path: &'static str,
        scope: ResourceScope,
        build: impl FnOnce(ResourceRoutes) -> ResourceRoutes,
    ) {
        self.declare(path, scope, false, build);
    }

    /// Declares a live feed (WebSocket or SSE): it also takes its token from the query or
    /// a subprotocol.
    pub fn live_feed(
        &mut self,
        path: &'static str,
        scope: ResourceScope,
        build: impl FnOnce(ResourceRoutes) -> ResourceRoutes,
    ) {
        self.declare(path, scope, true, build);
    }

    fn declare(
        &mut self,
        path: &'static str,
        scope: ResourceScope,
        live_feed: bool,
        build: impl FnOnce(ResourceRoutes) -> ResourceRoutes,
    ) {
        let routes = build(ResourceRoutes {
            path,
            scope,
            live_feed,
            resource: resource(path),
            rules: Vec::new(),
        });
        let mut rules = HashMap::new();
        let allowed: Vec<String> = routes.rules.iter().map(|d| d.method.to_string()).collect();
        for declared in routes.rules {
            let rule = RouteRule {
                access: declared.access,
                scope: routes.scope,
                live_feed: routes.live_feed,
            };
            self.table.push(RouteSpec {
                method: declared.method.to_string(),
                path: routes.path,
                rule,
                takes: declared.takes,
                answers: declared.answers,
            });
            rules.insert(declared.method, rule);
        }
        let guard = Guard::new(rules);
        // A method the resource does not have: 405, saying which it has.
        let allow = allowed.join(", ");
        let resource = routes
            .resource
            .default_service(web::to(move |req: HttpRequest| {
                let allow = allow.clone();
                async move { not_allowed(&req, &allow) }
            }));
        self.cfg.service(
            resource.wrap(actix_web::middleware::from_fn(move |req, next| {
                guard.clone().call(req, next)
            })),
        );
    }
}

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
            .error_handler(move |err, _| json_error(err, limit).into()),
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
    let mut api = Api {
        cfg,
        table: Vec::new(),
    };
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
    let Api { cfg, table } = api;
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

fn json_error(err: JsonPayloadError, limit: usize) -> ApiError {
    match err {
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
            body_too_large(limit)
        }
        JsonPayloadError::ContentType => not_json_type(),
        JsonPayloadError::Deserialize(e) if e.is_eof() && e.column() == 0 => empty_body(),
        JsonPayloadError::Deserialize(e) => {
            ApiError::BadRequest(format!("request body is not valid JSON: {e}"))
        }
        other => ApiError::BadRequest(format!("cannot read request body: {other}")),
    }
}

/// A JSON body of one kind: [`JsonObject`] or [`JsonArray`]. Anything else valid JSON (a
/// boolean, `null`, a number) is a 422 naming what came, as any other invalid body.
pub struct JsonOf<const ARRAY: bool>(serde_json::Value);

/// A JSON object body (`web::Json<Value>`, checked to be an object).
pub type JsonObject = JsonOf<false>;
/// A JSON array body.
pub type JsonArray = JsonOf<true>;

impl<const ARRAY: bool> JsonOf<ARRAY> {
    /// The value.
    pub fn into_inner(self) -> serde_json::Value {
        self.0
    }
}

impl<const ARRAY: bool> std::ops::Deref for JsonOf<ARRAY> {
    type Target = serde_json::Value;

    fn deref(&self) -> &serde_json::Value {
        &self.0
    }
}

impl<const ARRAY: bool> FromRequest for JsonOf<ARRAY> {
    type Error = actix_web::Error;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let json = web::Json::<serde_json::Value>::from_request(req, payload);
        Box::pin(async move {
            let value = json.await?.into_inner();
            let wanted = if ARRAY { "an array" } else { "an object" };
            if value.is_array() == ARRAY && (ARRAY || value.is_object()) {
                return Ok(Self(value));
            }
            let mut report = synopticon_actors::validation::Report::default();
            report.error(format!(
                "the body must be a JSON {}, got {}",
                wanted.trim_start_matches("an "),
                synopticon_actors::validation::kind_of(&value)
            ));
            Err(ApiError::invalid(format!("the body is not {wanted}"), report).into())
        })
    }
}

/// The 415 of a route that takes JSON, sent something else.
fn not_json_type() -> ApiError {
    ApiError::UnsupportedMediaType(
        "this route takes a JSON body: send it with Content-Type: application/json".into(),
    )
}

/// The 400 of a route that needs a body, sent none.
fn empty_body() -> ApiError {
    ApiError::BadRequest("the request body is empty: this route takes a JSON body".into())
}

/// Whether the request says its body is JSON (`application/json`, `*/*+json`).
fn is_json(req: &HttpRequest) -> bool {
    use actix_web::HttpMessage;
    matches!(req.mime_type(), Ok(Some(mime)) if mime.subtype() == actix_web::mime::JSON || mime.suffix() == Some(actix_web::mime::JSON))
}

/// An object body a route may go without (`null` when empty); one that is there must say
/// it is JSON (415 otherwise), be JSON (400) and be an object (422).
pub fn optional_json(req: &HttpRequest, body: &[u8]) -> Result<serde_json::Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Value::Null);
    }
    if !is_json(req) {
        return Err(not_json_type());
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("request body is not valid JSON: {e}")))?;
    if !value.is_object() {
        let mut report = synopticon_actors::validation::Report::default();
        report.error(format!(
            "the body must be a JSON object (or nothing), got {}",
            synopticon_actors::validation::kind_of(&value)
        ));
        return Err(ApiError::invalid("the body is not an object", report));
    }
    Ok(value)
}

/// A JSON body a route needs, read whole within `limit` bytes: its type is checked before
/// anything is read (415), and an empty one is refused (400).
pub async fn read_json_body(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<web::Bytes, ApiError> {
    if !is_json(req) {
        return Err(not_json_type());
    }
    let body = read_body(req, payload, limit, || body_too_large(limit)).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(empty_body());
    }
    Ok(body)
}

/// A route that takes a binary body of one of `types` (e.g. `image/jpeg`): any other
/// declared type, or none, is a 415 that names them.
pub fn require_media_type(req: &HttpRequest, types: &[&str]) -> Result<(), ApiError> {
    use actix_web::HttpMessage;
    let declared = req.mime_type().ok().flatten();
    let essence = declared
        .as_ref()
        .map(|m| format!("{}/{}", m.type_(), m.subtype()).to_ascii_lowercase());
    if essence.as_deref().is_some_and(|e| types.contains(&e)) {
        return Ok(());
    }
    Err(ApiError::UnsupportedMediaType(format!(
        "this route takes {}; the request says {}",
        types.join(", "),
        match req.headers().get(actix_web::http::header::CONTENT_TYPE) {
            Some(t) => format!("Content-Type: {:?}", t.to_str().unwrap_or("(not text)")),
            None => "no Content-Type".into(),
        }
    )))
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

/// A resource; its unsupported methods get [`not_allowed`] once its methods are known.
pub fn resource(path: &str) -> actix_web::Resource {
    web::resource(path)
}

/// The 405 of a method `req`'s resource does not have, with `Allow` naming those it has.
fn not_allowed(req: &HttpRequest, allow: &str) -> HttpResponse {
    use actix_web::ResponseError;
    let mut response = ApiError::MethodNotAllowed(format!(
        "{} is not supported on {} (it takes {allow})",
        req.method(),
        req.path()
    ))
    .error_response();
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(allow) {
        response
            .headers_mut()
            .insert(actix_web::http::header::ALLOW, value);
    }
    response
}

/// Reads a whole request body of at most `limit` bytes; `too_large` words the 413 (a
/// declared `Content-Length` over the limit is refused before anything is read).
pub async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
    too_large: impl Fn() -> ApiError,
) -> Result<web::Bytes, ApiError> {
    use futures_util::StreamExt;
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::BadRequest(format!("cannot read the request body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The 413 of a JSON body over `server.max_body_bytes`.
pub fn body_too_large(limit: usize) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "request body is larger than the limit of {limit} bytes"
    ))
}

/// A JSON response with secrets redacted.
pub fn redacted_json(
    status: actix_web::http::StatusCode,
    value: &impl serde::Serialize,
) -> HttpResponse {
    let mut json = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
    crate::configuration::redact(&mut json);
    HttpResponse::build(status).json(json)
}
