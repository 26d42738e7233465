//! Declaring routes: [`Api`] registers each handler behind the auth [`Guard`] and records
//! its rule, what it takes and what it answers in the route table ([`RouteSpec`]), from
//! which the OpenAPI document and the security tests are built.

use std::collections::HashMap;

use actix_web::http::Method;
use actix_web::{web, FromRequest, Handler, HttpRequest, HttpResponse, Responder};
use serde::Serialize;

use crate::auth::guard::{Guard, RouteRule};
use crate::auth::{Access, ResourceScope};
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

impl<'a> Api<'a> {
    /// Declares routes into `cfg`.
    pub fn new(cfg: &'a mut web::ServiceConfig) -> Self {
        Api {
            cfg,
            table: Vec::new(),
        }
    }

    /// The configuration being built, and the routes declared into it.
    pub fn finish(self) -> (&'a mut web::ServiceConfig, Vec<RouteSpec>) {
        (self.cfg, self.table)
    }
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
