//! `GET /api/openapi.json`: an OpenAPI 3.1 document of every route, generated from the
//! route table the router is built from (so a route cannot be missing from it): paths,
//! methods, path and feed parameters, who may call each (`security` and
//! `x-synopticon-access`), what each takes (JSON, which media types) and answers (its
//! status, JSON or a file). The fields of bodies are described in the docs each operation
//! links to.

use actix_web::{web, HttpResponse};
use serde_json::{json, Map, Value};

use super::api::{Answers, Api, Content, RouteSpec, Takes};
use crate::auth::{Access, ResourceScope, Role};
use crate::state::AppState;

/// Registers the route.
pub fn configure(api: &mut Api) {
    api.resource("/api/openapi.json", ResourceScope::None, |r| {
        r.get(Access::VIEWER, document)
    });
}

async fn document(state: web::Data<AppState>) -> HttpResponse {
    let doc = state.openapi.get_or_init(|| build(&state.routes));
    HttpResponse::Ok().json(doc)
}

/// The document for `table`.
pub fn build(table: &[RouteSpec]) -> Value {
    let mut paths = Map::new();
    let mut tags: Vec<&'static str> = Vec::new();
    for route in table {
        let tag = tag(route.path);
        if !tags.contains(&tag) {
            tags.push(tag);
        }
        let item = paths
            .entry(openapi_path(route.path))
            .or_insert_with(|| json!({}));
        item[route.method.to_ascii_lowercase()] = operation(route, tag);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Synopticon",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Camera frames and edge detections turned into tracked objects and events, distributed live per session. Every route, generated from the server's route table; bodies are described in docs/API.md and the documents each operation names.",
            "license": {"name": "MIT OR Apache-2.0", "identifier": "MIT OR Apache-2.0"},
        },
        "servers": [{"url": "/"}],
        "tags": tags.iter().map(|t| json!({"name": t, "description": tag_doc(t)})).collect::<Vec<_>>(),
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                    "description": "A token from auth.tokens or POST /api/v1/tokens. Live feeds also take it as ?access_token= or the WebSocket subprotocol bearer.TOKEN."},
            },
            "schemas": {
                "Event": {
                    "type": "object",
                    "required": ["event"],
                    "properties": {
                        "event": {"type": "string", "description": "The event type: 1-128 letters, digits, _ . : -"},
                        "data": {"description": "The payload, any JSON (an object by default)."},
                        "ts": {"type": "string", "format": "date-time", "description": "When it happened; the arrival time when absent."},
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error", "details"],
                    "properties": {
                        "error": {"type": "string", "description": "What went wrong."},
                        "details": {"type": "array", "items": {"type": "string"}, "description": "Every problem, each starting with the field it is about."},
                        "warnings": {"type": "array", "items": {"type": "string"}},
                    },
                },
            },
            "responses": {
                "Error": {
                    "description": "A JSON error: 400 bad input, 401 no valid token, 403 not allowed, 404 not found, 409 conflict, 413 too large, 422 invalid (every problem listed), 429 rate limited, 503 unavailable.",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                },
            },
        },
    })
}

fn operation(route: &RouteSpec, tag: &str) -> Value {
    let method = route.method.as_str();
    let mut op = json!({
        "operationId": operation_id(method, &openapi_path(route.path)),
        "summary": summary(method, &openapi_path(route.path), route.rule.live_feed),
        "tags": [tag],
        "x-synopticon-access": access_name(route.rule.access),
        "responses": responses(route),
    });
    if let Some(doc) = doc_for(route.path) {
        op["externalDocs"] = json!({"url": format!("docs/{doc}"), "description": doc});
    }
    op["security"] = match route.rule.access {
        Access::Public => json!([]),
        Access::Metrics => json!([{}, {"bearer": []}]),
        _ => json!([{"bearer": []}]),
    };
    let mut parameters: Vec<Value> = openapi_path(route.path)
        .split('/')
        .filter_map(|s| Some(s.strip_prefix('{')?.strip_suffix('}')?.to_string()))
        .map(|name| {
            json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"},
                "description": param_doc(&name, route.rule.scope)})
        })
        .collect();
    for (name, doc) in query_params(route.path) {
        parameters.push(json!({"name": name, "in": "query", "required": false,
            "schema": {"type": "string"}, "description": doc}));
    }
    if route.rule.live_feed {
        for (name, doc) in [
            ("events", "Comma-separated event-name globs to receive."),
            (
                "channels",
                "Comma-separated device channel globs to receive.",
            ),
            (
                "access_token",
                "The bearer token, for clients that cannot set headers.",
            ),
        ] {
            parameters.push(json!({"name": name, "in": "query", "required": false,
                "schema": {"type": "string"}, "description": doc}));
        }
    }
    if !parameters.is_empty() {
        op["parameters"] = json!(parameters);
    }
    if let Some(body) = request_body(route.takes) {
        op["requestBody"] = body;
    }
    op
}

/// What the route takes, as an OpenAPI request body.
fn request_body(takes: Takes) -> Option<Value> {
    let json_body = |required: bool, schema: Value| json!({"required": required, "content": {"application/json": {"schema": schema}}});
    Some(match takes {
        Takes::Nothing => return None,
        Takes::Object { required } => json_body(
            required,
            json!({"type": "object", "description": "The fields are described in the document this operation links to; every problem is answered at once (422)."}),
        ),
        Takes::Strings => json_body(true, json!({"type": "array", "items": {"type": "string"}})),
        Takes::Events => json_body(
            true,
            json!({"oneOf": [
                {"$ref": "#/components/schemas/Event"},
                {"type": "array", "items": {"$ref": "#/components/schemas/Event"}, "minItems": 1},
            ]}),
        ),
        Takes::Binary(types) => {
            let content: Map<String, Value> = types
                .iter()
                .map(|t| {
                    let schema = if *t == "multipart/form-data" {
                        json!({"type": "object", "additionalProperties": {"type": "string", "format": "binary"}})
                    } else {
                        json!({"type": "string", "format": "binary"})
                    };
                    (t.to_string(), json!({"schema": schema}))
                })
                .collect();
            json!({"required": true, "content": content})
        }
    })
}

fn responses(route: &RouteSpec) -> Value {
    let Answers {
        status,
        content,
        or_created,
    } = route.answers;
    let (description, body) = match content {
        Content::Object => (
            "The answer.",
            Some(("application/json", json!({"type": "object"}))),
        ),
        Content::Empty => ("Done; nothing to say.", None),
        Content::Text("text/event-stream") => (
            "A Server-Sent Events stream.",
            Some(("text/event-stream", json!({"type": "string"}))),
        ),
        Content::Text(kind) => ("Text.", Some((kind, json!({"type": "string"})))),
        Content::Binary(kind) => (
            "The file.",
            Some((kind, json!({"type": "string", "contentMediaType": kind}))),
        ),
        Content::Upgrade => ("Switching to the WebSocket protocol.", None),
    };
    let answer = |description: &str| {
        let mut r = json!({"description": description});
        if let Some((kind, schema)) = &body {
            r["content"] = json!({*kind: {"schema": schema}});
        }
        r
    };
    let mut out = Map::new();
    out.insert(status.to_string(), answer(description));
    if or_created {
        out.insert("201".into(), answer("Made: what did not exist before."));
    }
    out.insert(
        "default".into(),
        json!({"$ref": "#/components/responses/Error"}),
    );
    Value::Object(out)
}

/// The path as OpenAPI writes it: `{path:.*}` (a parameter taking slashes) is `{path}`.
pub fn openapi_path(path: &str) -> String {
    path.split('/')
        .map(
            |segment| match segment.strip_prefix('{').and_then(|s| s.split_once(':')) {
                Some((name, _)) => format!("{{{name}}}"),
                None => segment.to_string(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

/// `get_api_v1_sessions_id_distributors_kind`.
fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_ascii_lowercase();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        id.push('_');
        id.extend(
            part.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
                .map(|c| if c == '.' { '_' } else { c }),
        );
    }
    if path == "/" {
        id.push_str("_index");
    }
    id
}

/// "List sessions", "Get session", "Delete distributor", ...
fn summary(method: &str, path: &str, live_feed: bool) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != "api" && *p != "v1")
        .collect();
    let last = parts.last().copied().unwrap_or("dashboard");
    let named = last.starts_with('{');
    let noun = |p: &str| {
        p.trim_start_matches('{')
            .trim_end_matches('}')
            .replace('_', " ")
    };
    let thing = if named {
        // The parent collection, singular: sessions/{id} → session.
        let parent = parts
            .len()
            .checked_sub(2)
            .map(|i| parts[i])
            .unwrap_or("item");
        let single = parent.strip_suffix("ies").map_or_else(
            || parent.strip_suffix('s').unwrap_or(parent).to_string(),
            |s| format!("{s}y"),
        );
        single.replace('_', " ")
    } else {
        noun(last)
    };
    // "of a session" when the path goes through one named session (`sessions/{id}/...`).
    let own = if named {
        parts.len().saturating_sub(2)
    } else {
        parts.len().saturating_sub(1)
    };
    let whose = (0..own)
        .rev()
        .find(|&i| {
            !parts[i].starts_with('{') && parts.get(i + 1).is_some_and(|n| n.starts_with('{'))
        })
        .map(|i| format!(" of a {}", parts[i].strip_suffix('s').unwrap_or(parts[i])))
        .unwrap_or_default();
    if live_feed {
        return format!(
            "Live {} feed{whose}",
            if last == "ws" { "WebSocket" } else { "SSE" }
        );
    }
    let verb = match (method, named) {
        ("GET", false) if last.ends_with('s') => "List",
        ("GET", _) => "Get",
        ("POST", _) => "Post to",
        ("PUT", _) => "Put",
        ("PATCH", _) => "Change",
        ("DELETE", _) => "Delete",
        _ => method,
    };
    format!("{verb} {thing}{whose}")
}

/// Query parameters of the routes that take some (besides the live feeds').
fn query_params(path: &str) -> &'static [(&'static str, &'static str)] {
    match path {
        "/api/v1/sources/{id}/frame.jpg" => &[("quality", "JPEG quality, 1 to 100 (80).")],
        "/api/v1/rules/captures" => &[("limit", "How many, newest first, 1 to 200 (24).")],
        "/api/v1/sessions/{id}/sse" => &[(
            "lastEventId",
            "Resume after this seq (like the Last-Event-ID header).",
        )],
        _ => &[],
    }
}

fn access_name(access: Access) -> &'static str {
    match access {
        Access::Public => "public",
        Access::Metrics => "viewer (or public with auth.metrics_public)",
        Access::Role(Role::Viewer) => "viewer",
        Access::Role(Role::Operator) => "operator",
        Access::Role(Role::Admin) => "admin",
        Access::Unscoped(Role::Viewer) => "viewer without a scope",
        Access::Unscoped(Role::Operator) => "operator without a scope",
        Access::Unscoped(Role::Admin) | Access::ServerAdmin => "admin without a scope",
    }
}

fn param_doc(name: &str, scope: ResourceScope) -> &'static str {
    match (name, scope) {
        ("id", ResourceScope::Session) => "A session id.",
        ("id", ResourceScope::Source) => "A source id.",
        ("kind", _) => "A distributor: http, websocket, sse, mqtt, redis or udp.",
        ("name", _) => "A name.",
        ("token", _) => "A token id.",
        ("path", _) => "A capture's path, as the captures list gives it.",
        ("rid", _) => "A recording id.",
        ("action", _) => "pause, resume, seek (body {\"position_s\"}) or stop.",
        _ => "An identifier.",
    }
}

fn tag(path: &str) -> &'static str {
    let p = path
        .trim_start_matches("/api/v1/")
        .trim_start_matches("/api/");
    if p.starts_with("recordings") || p.contains("/recordings") || p.contains("/replay") {
        return "recordings";
    }
    for (prefix, tag) in [
        ("sessions", "sessions"),
        ("templates", "templates"),
        ("sources", "sources"),
        ("devices", "devices"),
        ("inputs", "inputs"),
        ("rules", "rules"),
        ("tokens", "tokens"),
        ("detect", "inference"),
        ("batch", "inference"),
        ("pipelines", "inference"),
        ("debug", "debug"),
        ("whoami", "tokens"),
    ] {
        if p.starts_with(prefix) {
            return tag;
        }
    }
    if path == "/" || path.starts_with("/assets") {
        "dashboard"
    } else {
        "server"
    }
}

fn tag_doc(tag: &str) -> &'static str {
    match tag {
        "sessions" => "Sessions, their distributors, routing, events and live feeds.",
        "templates" => "Named starting points for sessions.",
        "sources" => "Cameras, streams, files, folders and edge detections; lines and zones.",
        "devices" => "The device registry.",
        "inputs" => "Broker inputs of a processor.",
        "rules" => "Rules that act on events.",
        "recordings" => "Sessions recorded to MCAP files, and played back into sessions.",
        "tokens" => "Bearer tokens.",
        "inference" => "Detection on posted images.",
        "debug" => "Fault injection (server.debug_endpoints).",
        "dashboard" => "The web dashboard.",
        _ => "Health, configuration, metrics and this document.",
    }
}

fn doc_for(path: &str) -> Option<&'static str> {
    Some(match tag(path) {
        "sources" => "SOURCES.md",
        "devices" => "DEVICES.md",
        "inputs" => "EDGE.md",
        "rules" => "RULES.md",
        "recordings" => "RECORDING.md",
        "tokens" => "SECURITY.md",
        "inference" => "MODELS.md",
        "dashboard" => "DASHBOARD.md",
        _ if path.ends_with("/ws") || path.ends_with("/sse") => "PROTOCOLS.md",
        _ if path == "/metrics" => "METRICS.md",
        _ => "API.md",
    })
}
