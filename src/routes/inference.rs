//! Detection over REST: `POST /api/v1/detect` (one image), `POST /api/v1/batch` (several)
//! and `GET /api/pipelines` (the loaded models).
//!
//! Images arrive as the raw body (JPEG or PNG, sent as `image/jpeg`, `image/png` or
//! `application/octet-stream`) or as multipart form files. Size and format are checked here, before anything is queued; decoding and
//! inference happen on the model's own thread, never on an HTTP worker.

use std::time::Duration;

use actix_multipart::Multipart;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use synopticon_actors::inference::frame::{self, ImageLimits};
use synopticon_actors::inference::hub::ModelHandle;
use synopticon_actors::inference::{runtime, DetectImage, DetectOptions, Detections};

use super::api::{Api, Takes};
use crate::auth::{Access, ResourceScope};
use crate::error::ApiError;
use crate::state::AppState;

/// Registers the routes.
pub fn configure(api: &mut Api) {
    api.resource("/api/v1/detect", ResourceScope::None, |r| {
        r.post(Access::OPERATOR, detect)
            .takes(Takes::Binary(IMAGE_TYPES))
    });
    api.resource("/api/v1/batch", ResourceScope::None, |r| {
        r.post(Access::OPERATOR, batch)
            .takes(Takes::Binary(&["multipart/form-data"]))
    });
    api.resource("/api/pipelines", ResourceScope::None, |r| {
        r.get(Access::VIEWER, pipelines)
    });
}

/// Query parameters of both detect routes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DetectQuery {
    /// Model name; the default model when absent.
    model: Option<String>,
    /// Overrides the model's confidence threshold.
    confidence: Option<f32>,
    /// Comma-separated class names or ids to keep.
    classes: Option<String>,
}

impl DetectQuery {
    fn parse(req: &HttpRequest) -> Result<Self, ApiError> {
        let query = web::Query::<Self>::from_query(req.query_string())
            .map_err(|e| ApiError::BadRequest(format!("bad query string: {e}")))?
            .into_inner();
        if let Some(c) = query.confidence {
            if !(0.0..=1.0).contains(&c) {
                return Err(ApiError::BadRequest(format!(
                    "confidence must be between 0 and 1, got {c}"
                )));
            }
        }
        Ok(query)
    }

    fn options(&self) -> DetectOptions {
        DetectOptions {
            confidence: self.confidence,
            classes: self.classes.as_ref().map(|c| {
                c.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            }),
        }
    }
}

/// One image's answer.
#[derive(Serialize)]
struct DetectResponse {
    /// Name of the multipart file (batch only).
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(flatten)]
    result: Detections,
    /// `Session::run` time.
    inference_ms: f64,
    /// Decode + pre-process + run + decode + NMS.
    total_ms: f64,
}

impl DetectResponse {
    fn new(name: Option<String>, result: Detections) -> Self {
        let t = result.timings;
        Self {
            name,
            inference_ms: t.inference_ms,
            total_ms: t.decode_ms + t.preprocess_ms + t.inference_ms + t.postprocess_ms,
            result,
        }
    }
}

/// The answer of `/api/v1/batch`.
#[derive(Serialize)]
struct BatchResponse<'a> {
    model: &'a str,
    count: usize,
    results: Vec<DetectResponse>,
}

/// The answer of `/api/pipelines`.
#[derive(Serialize)]
struct Pipelines {
    runtime: serde_json::Value,
    limits: serde_json::Value,
    models: Vec<synopticon_actors::inference::hub::ModelReport>,
}

/// An uploaded image and its name.
struct Upload {
    name: Option<String>,
    bytes: Bytes,
}

async fn detect(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    super::body::require_media_type(&req, IMAGE_TYPES)?;
    let query = DetectQuery::parse(&req)?;
    let model = state.models.get(query.model.as_deref())?;
    let limits = state.settings.inference.limits();
    let mut uploads = read_uploads(&req, payload, &limits, 1).await?;
    let upload = uploads.pop().ok_or_else(|| {
        ApiError::BadRequest(
            "the request has no image: send a JPEG or PNG as the body or as a multipart file"
                .into(),
        )
    })?;
    let result = run(&state, model, upload.bytes, query.options(), &limits).await?;
    Ok(HttpResponse::Ok().json(DetectResponse::new(None, result)))
}

async fn batch(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if !is_multipart(&req) {
        return Err(ApiError::UnsupportedMediaType(
            "a batch is a multipart/form-data request with one file per image".into(),
        ));
    }
    let query = DetectQuery::parse(&req)?;
    let model = state.models.get(query.model.as_deref())?;
    let limits = state.settings.inference.limits();
    let max = state.settings.inference.max_batch_images;
    let uploads = read_uploads(&req, payload, &limits, max).await?;
    if uploads.is_empty() {
        return Err(ApiError::BadRequest(
            "the batch has no images: add one multipart file per image".into(),
        ));
    }
    let options = query.options();
    let mut results = Vec::with_capacity(uploads.len());
    // One at a time: a batch waits its turn in the model's queue like any request,
    // instead of filling the queue and starving everyone else.
    for upload in uploads {
        let result = run(&state, model, upload.bytes, options.clone(), &limits)
            .await
            .map_err(|e| name_error(e, upload.name.as_deref()))?;
        results.push(DetectResponse::new(upload.name, result));
    }
    // Serialized from structs, not through `json!`: a `Value` would widen every f32
    // to f64 and print 0.3 as 0.30000001192092896.
    Ok(HttpResponse::Ok().json(BatchResponse {
        model: &model.config.name,
        count: results.len(),
        results,
    }))
}

async fn pipelines(state: web::Data<AppState>) -> HttpResponse {
    let loaded = runtime::loaded();
    HttpResponse::Ok().json(Pipelines {
        runtime: json!({
            "library": state.models.library().display().to_string(),
            "loaded": loaded.is_some(),
            "version": loaded.as_ref().map(|r| r.version.clone()),
        }),
        limits: json!({
            "max_image_bytes": state.settings.inference.max_image_bytes,
            "max_image_pixels": state.settings.inference.max_image_pixels,
            "max_batch_images": state.settings.inference.max_batch_images,
        }),
        models: state.models.reports(),
    })
}

/// Queues one image on the model and waits for its result.
async fn run(
    state: &AppState,
    model: &ModelHandle,
    image: Bytes,
    options: DetectOptions,
    limits: &ImageLimits,
) -> Result<Detections, ApiError> {
    let timeout = Duration::from_millis(state.settings.inference.request_timeout_ms);
    let request = model.addr.send(DetectImage {
        image,
        options,
        limits: *limits,
    });
    match tokio::time::timeout(timeout, request).await {
        Ok(Ok(result)) => result.map_err(ApiError::from),
        Ok(Err(_)) => Err(ApiError::Unavailable(format!(
            "model {:?} is not running",
            model.config.name
        ))),
        Err(_) => Err(ApiError::Unavailable(format!(
            "model {:?} did not finish within {} ms (inference.request_timeout_ms)",
            model.config.name,
            timeout.as_millis()
        ))),
    }
}

/// Prefixes an error with the batch item it is about.
fn name_error(error: ApiError, name: Option<&str>) -> ApiError {
    let Some(name) = name else { return error };
    let prefix = |m: String| format!("image {name:?}: {m}");
    match error {
        ApiError::BadRequest(m) => ApiError::BadRequest(prefix(m)),
        ApiError::PayloadTooLarge(m) => ApiError::PayloadTooLarge(prefix(m)),
        ApiError::UnsupportedMediaType(m) => ApiError::UnsupportedMediaType(prefix(m)),
        ApiError::Invalid {
            message,
            details,
            warnings,
        } => ApiError::Invalid {
            message: prefix(message),
            details,
            warnings,
        },
        other => other,
    }
}

/// What the detect routes take as a body: an image, or a multipart form of them.
const IMAGE_TYPES: &[&str] = &[
    "image/jpeg",
    "image/png",
    "application/octet-stream",
    "multipart/form-data",
];

fn is_multipart(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"))
}

/// The images of a request: the raw body, or each multipart file, checked for size and
/// format (not yet decoded).
async fn read_uploads(
    req: &HttpRequest,
    payload: web::Payload,
    limits: &ImageLimits,
    max_images: usize,
) -> Result<Vec<Upload>, ApiError> {
    if !is_multipart(req) {
        let bytes =
            super::body::read_body(req, payload, limits.max_bytes, || too_large(limits)).await?;
        frame::check(&bytes, limits)?;
        return Ok(vec![Upload { name: None, bytes }]);
    }

    let mut multipart = Multipart::new(req.headers(), payload);
    let mut uploads = Vec::new();
    while let Some(field) = multipart.next().await {
        let mut field =
            field.map_err(|e| ApiError::BadRequest(format!("malformed multipart body: {e}")))?;
        let disposition = field.content_disposition().cloned();
        let filename = disposition
            .as_ref()
            .and_then(|d| d.get_filename())
            .map(str::to_string);
        let field_name = disposition
            .as_ref()
            .and_then(|d| d.get_name())
            .map(str::to_string);
        // Plain form values (no file name, no content type or a text one) are not
        // images; skip them.
        let is_text = field
            .content_type()
            .is_none_or(|m| m.type_().as_str() == "text");
        if filename.is_none() && is_text {
            while let Some(chunk) = field.next().await {
                chunk
                    .map_err(|e| ApiError::BadRequest(format!("malformed multipart body: {e}")))?;
            }
            continue;
        }
        let name = filename.or(field_name);
        if uploads.len() == max_images {
            return Err(ApiError::PayloadTooLarge(format!(
                "more than {max_images} images in one request (inference.max_batch_images)"
            )));
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk
                .map_err(|e| ApiError::BadRequest(format!("malformed multipart body: {e}")))?;
            if body.len() + chunk.len() > limits.max_bytes {
                return Err(name_error(too_large(limits), name.as_deref()));
            }
            body.extend_from_slice(&chunk);
        }
        let bytes = body.freeze();
        frame::check(&bytes, limits).map_err(|e| name_error(e.into(), name.as_deref()))?;
        uploads.push(Upload { name, bytes });
    }
    Ok(uploads)
}

fn too_large(limits: &ImageLimits) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "the image is larger than the limit of {} bytes (inference.max_image_bytes)",
        limits.max_bytes
    ))
}
