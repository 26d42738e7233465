//! The one place where domain errors become HTTP answers.
//!
//! Every error body is JSON: `{"error": "...", "details": [...]}` (plus `warnings` where
//! validation found some), so a client never has to parse text.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;
use synopticon_actors::devices::registry::DeviceError;
use synopticon_actors::inference::InferenceError;
use synopticon_actors::registry::RegistryError;
use synopticon_actors::session::templates::TemplateError;
use synopticon_actors::session::SessionError;
use synopticon_actors::sessions::SessionsError;
use synopticon_actors::source::hub::SourceError;
use synopticon_actors::store::StoreError;
use synopticon_actors::validation::Report;

/// An API failure, mapped to a status code in [`ResponseError`].
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body is not what the route takes (bad JSON, wrong shape).
    #[error("{0}")]
    BadRequest(String),
    /// 401: no token, or not a valid one (answered with `WWW-Authenticate: Bearer`).
    #[error("{0}")]
    Unauthorized(String),
    /// 403: a valid token whose role is too small.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such resource (or one outside the token's scope).
    #[error("{0}")]
    NotFound(String),
    /// 421: the request names a host this server does not answer to (`server.allowed_hosts`).
    #[error("{0}")]
    MisdirectedRequest(String),
    /// 405: the path exists but not with this method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 409: the request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// 413: the body is larger than the configured limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415: the body is not of a media type the route takes.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: well-formed but invalid; every problem is listed.
    #[error("{message}")]
    Invalid {
        /// Summary.
        message: String,
        /// One entry per problem.
        details: Vec<String>,
        /// Risky-but-legal findings, for context.
        warnings: Vec<String>,
    },
    /// 429: over a rate limit; `Retry-After` says when to try again.
    #[error("{message}")]
    TooManyRequests {
        /// What was limited.
        message: String,
        /// Seconds until it would pass.
        retry_after: u64,
    },
    /// 503: an actor did not answer in time, or a limit is reached.
    #[error("{0}")]
    Unavailable(String),
    /// 408: the request body did not arrive in time; the connection is closed.
    #[error("{0}")]
    RequestTimeout(String),
    /// 429 (this caller) or 503 (the server) has too many requests running, or 503 for
    /// a request that ran past its deadline: answered at once, `Retry-After: 1`, and the
    /// connection closed, so a held connection frees its descriptor.
    #[error("{message}")]
    Busy {
        /// 429 or 503.
        status: u16,
        /// Which limit.
        message: String,
    },
    /// 500: the server failed at something that should have worked.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// 422 from a validation report.
    pub fn invalid(message: impl Into<String>, report: Report) -> Self {
        Self::Invalid {
            message: message.into(),
            details: report.errors,
            warnings: report.warnings,
        }
    }
}

impl ApiError {
    /// The JSON body every answer with this error has (also sent over WebSockets).
    pub fn body(&self) -> serde_json::Value {
        match self {
            Self::Invalid {
                message,
                details,
                warnings,
            } => json!({"error": message, "details": details, "warnings": warnings}),
            other => json!({"error": other.to_string(), "details": []}),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::MisdirectedRequest(_) => StatusCode::MISDIRECTED_REQUEST,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Busy { status: 429, .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let body = self.body();
        let mut response = HttpResponse::build(self.status_code());
        match self {
            Self::Unauthorized(_) => {
                response.insert_header((
                    actix_web::http::header::WWW_AUTHENTICATE,
                    "Bearer realm=\"synopticon\"",
                ));
            }
            Self::TooManyRequests { retry_after, .. } => {
                response.insert_header((actix_web::http::header::RETRY_AFTER, *retry_after));
            }
            Self::RequestTimeout(_) => {
                response.force_close();
            }
            Self::Busy { .. } => {
                response.insert_header((actix_web::http::header::RETRY_AFTER, 1));
                response.force_close();
            }
            _ => {}
        }
        response.json(body)
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Invalid(report) => {
                Self::invalid("invalid session configuration", report)
            }
            RegistryError::Conflict(_) => Self::Conflict(e.to_string()),
            RegistryError::Full(_) => Self::Unavailable(e.to_string()),
            RegistryError::NotFound(_) => Self::NotFound(e.to_string()),
        }
    }
}

impl From<SessionsError> for ApiError {
    fn from(e: SessionsError) -> Self {
        match e {
            SessionsError::NotFound(_) => Self::NotFound(e.to_string()),
            SessionsError::ServerOnly(_) => Self::Forbidden(e.to_string()),
            SessionsError::Invalid(report) => {
                Self::invalid("invalid session configuration", report)
            }
            SessionsError::Conflict(_)
            | SessionsError::NotEnabled(_)
            | SessionsError::Busy(_)
            | SessionsError::BuiltIn(_) => Self::Conflict(e.to_string()),
            SessionsError::Full(_) | SessionsError::Unavailable(_) => {
                Self::Unavailable(e.to_string())
            }
            SessionsError::Store(store) => store.into(),
        }
    }
}

impl From<synopticon_actors::recording::hub::RecordingError> for ApiError {
    fn from(e: synopticon_actors::recording::hub::RecordingError) -> Self {
        use synopticon_actors::recording::hub::RecordingError as E;
        match e {
            E::NotFound(_) => Self::NotFound(e.to_string()),
            E::TooLarge(m) => Self::PayloadTooLarge(format!("{m} (recording.max_import_mb)")),
            E::Conflict(m) => Self::Conflict(m),
            E::Unavailable(m) => Self::Unavailable(m),
            E::Invalid(m) => {
                let mut report = synopticon_actors::validation::Report::default();
                report.error(m);
                Self::invalid("not a recording", report)
            }
            E::Store(store) => store.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(message) => Self::Conflict(message),
            // The change was not kept (and was undone): try again once the store is back.
            StoreError::Unavailable { .. } | StoreError::Damaged(_) => Self::Unavailable(format!(
                "{e}; nothing was changed — try again when the store is back"
            )),
        }
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::NotEnabled(_) => Self::Conflict(e.to_string()),
            SessionError::Invalid(report) => Self::invalid("invalid configuration", report),
            SessionError::Attach(message) => Self::Unavailable(message),
        }
    }
}

impl From<DeviceError> for ApiError {
    fn from(e: DeviceError) -> Self {
        match e {
            DeviceError::NotFound(_) => Self::NotFound(e.to_string()),
            DeviceError::Invalid(report) => Self::invalid("invalid device", report),
            DeviceError::Conflict(message) => Self::Conflict(message),
            DeviceError::Full(_) => Self::Unavailable(e.to_string()),
            DeviceError::Store(store) => store.into(),
        }
    }
}

impl From<TemplateError> for ApiError {
    fn from(e: TemplateError) -> Self {
        match e {
            TemplateError::Builtin(_) | TemplateError::FromFile(_) => Self::Conflict(e.to_string()),
            TemplateError::NotFound(_) => Self::NotFound(e.to_string()),
            TemplateError::Invalid(report) => Self::invalid("invalid template", report),
        }
    }
}

impl From<InferenceError> for ApiError {
    fn from(e: InferenceError) -> Self {
        let message = e.to_string();
        match e {
            InferenceError::UnknownModel { .. } => Self::NotFound(message),
            InferenceError::NotAnImage(_) => Self::UnsupportedMediaType(message),
            InferenceError::BadImage(_) => Self::Invalid {
                message,
                details: Vec::new(),
                warnings: Vec::new(),
            },
            InferenceError::TooLarge(_) => Self::PayloadTooLarge(message),
            InferenceError::BadRequest(_) => Self::BadRequest(message),
            InferenceError::Runtime(_)
            | InferenceError::ModelUnavailable { .. }
            | InferenceError::Busy(_)
            | InferenceError::Superseded => Self::Unavailable(message),
            InferenceError::Failed(_) => Self::Internal(message),
        }
    }
}

impl From<crate::auth::tokens::TokenError> for ApiError {
    fn from(e: crate::auth::tokens::TokenError) -> Self {
        use crate::auth::tokens::TokenError;
        match e {
            TokenError::Invalid(report) => Self::invalid("invalid token request", report),
            TokenError::NotFound(_) => Self::NotFound(e.to_string()),
            TokenError::Conflict(m) => Self::Conflict(m),
            TokenError::Storage(m) => Self::Internal(m),
            TokenError::Wider(m) => Self::Forbidden(m),
        }
    }
}

impl From<SourceError> for ApiError {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::Invalid(report) => Self::invalid("invalid source request", report),
            SourceError::Conflict(_) | SourceError::WrongKind(_) => Self::Conflict(e.to_string()),
            SourceError::NotFound(_) => Self::NotFound(e.to_string()),
            SourceError::Unavailable(_) | SourceError::Full(_) | SourceError::Reserved { .. } => {
                Self::Unavailable(e.to_string())
            }
        }
    }
}
