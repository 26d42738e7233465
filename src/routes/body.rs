//! Reading request bodies as the routes declare them: JSON of the right type (415 for
//! another media type, 400 for broken JSON, 422 for another JSON kind), binary bodies of
//! named media types, and answers with secrets redacted.

use std::collections::HashMap;

use actix_web::error::JsonPayloadError;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use serde_json::Value;
use synopticon_actors::json::{self, kind_of_raw};
use synopticon_actors::messages::IncomingEvent;
use synopticon_actors::session::routing::check_event_name;
use synopticon_actors::validation::{kind_of, Report};

use crate::error::ApiError;

/// The 400 or 413 of a JSON body that could not be read (`web::JsonConfig`).
pub(super) fn json_error(err: JsonPayloadError, limit: usize) -> ApiError {
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

/// Checks every event of a request; all problems are reported together (422). Each
/// event's `data` is kept as the producer's JSON text ([`synopticon_actors::json`]).
pub fn parse_events(body: &[u8], max: usize) -> Result<Vec<IncomingEvent>, ApiError> {
    let not_json =
        |e: serde_json::Error| ApiError::BadRequest(format!("request body is not valid JSON: {e}"));
    let whole: &RawValue = serde_json::from_slice(body).map_err(not_json)?;
    let (items, batch): (Vec<&RawValue>, bool) = match kind_of_raw(whole) {
        "an array" => (serde_json::from_str(whole.get()).map_err(not_json)?, true),
        "an object" => (vec![whole], false),
        other => {
            return Err(ApiError::BadRequest(format!(
                "body must be an event object or an array of them, got {other}"
            )))
        }
    };
    if items.is_empty() {
        return Err(ApiError::invalid("no events", {
            let mut r = Report::default();
            r.error("the array is empty: send at least one event");
            r
        }));
    }
    if items.len() > max {
        return Err(ApiError::PayloadTooLarge(format!(
            "{} events in one request; the limit is {max} (server.max_events_per_request)",
            items.len()
        )));
    }
    let mut report = Report::default();
    let mut events = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let at = if batch {
            format!("[{i}].")
        } else {
            String::new()
        };
        if kind_of_raw(item) != "an object" {
            report.error(format!(
                "{at}: must be an object with \"event\" and \"data\", got {}",
                kind_of_raw(item)
            ));
            continue;
        }
        let mut map: HashMap<String, Box<RawValue>> = match serde_json::from_str(item.get()) {
            Ok(map) => map,
            Err(e) => {
                report.error(format!("{at}: {e}"));
                continue;
            }
        };
        let field =
            |raw: Option<Box<RawValue>>| raw.map(|r| serde_json::from_str::<Value>(r.get()));
        let name = match field(map.remove("event")) {
            Some(Ok(Value::String(s))) => match check_event_name(&s) {
                Ok(()) => Some(s),
                Err(e) => {
                    report.error(format!("{at}event: {e}"));
                    None
                }
            },
            Some(Ok(other)) => {
                report.error(format!(
                    "{at}event: must be a string, got {}",
                    kind_of(&other)
                ));
                None
            }
            Some(Err(e)) => {
                report.error(format!("{at}event: {e}"));
                None
            }
            None => {
                report.error(format!(
                    "{at}event: is required (the event type, e.g. \"face_detected\")"
                ));
                None
            }
        };
        let data = match map.remove("data").map(json::compact) {
            None => Some(json::empty_object()),
            Some(Ok(data)) => Some(data),
            Some(Err(e)) => {
                report.error(format!("{at}data: {e}"));
                None
            }
        };
        let ts = match field(map.remove("ts")) {
            None | Some(Ok(Value::Null)) => None,
            Some(Ok(Value::String(s))) => match DateTime::parse_from_rfc3339(&s) {
                Ok(t) => Some(t.with_timezone(&Utc)),
                Err(e) => {
                    report.error(format!("{at}ts: {s:?} is not an RFC 3339 time: {e}"));
                    None
                }
            },
            Some(Ok(other)) => {
                report.error(format!(
                    "{at}ts: must be an RFC 3339 string, got {}",
                    kind_of(&other)
                ));
                None
            }
            Some(Err(e)) => {
                report.error(format!("{at}ts: {e}"));
                None
            }
        };
        let mut unknown: Vec<&String> = map.keys().collect();
        unknown.sort();
        for key in unknown {
            report.error(format!(
                "{at}{key}: unknown field (known fields: event, data, ts)"
            ));
        }
        if let (Some(name), Some(data)) = (name, data) {
            events.push(IncomingEvent {
                name,
                data: data.into(),
                ts,
                origin: Default::default(),
            });
        }
    }
    if !report.is_valid() {
        return Err(ApiError::invalid(
            "invalid events; none were accepted",
            report,
        ));
    }
    Ok(events)
}
