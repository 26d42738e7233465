//! Fault injection for tests and drills, mounted only when `server.debug_endpoints` is on.
//!
//! `POST /api/v1/debug/sessions/{id}/distributors/{kind}/panic` makes that distributor's
//! actor panic inside its supervised boundary, to watch the supervisor restart it.

use actix_web::{web, HttpResponse};
use serde_json::json;
use synopticon_actors::distributor::DistributorKind;

use super::api::{Answers, Api, Takes};
use crate::auth::{Access, ResourceScope};
use crate::error::ApiError;
use crate::state::AppState;

/// Registers the routes.
pub fn configure(api: &mut Api) {
    api.resource(
        "/api/v1/debug/sessions/{id}/distributors/{kind}/panic",
        ResourceScope::Session,
        |r| {
            r.post(Access::ServerAdmin, panic)
                .takes(Takes::Nothing)
                .answers(Answers::ACCEPTED)
        },
    );
}

async fn panic(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, kind_name) = path.into_inner();
    let kind = DistributorKind::parse(&kind_name)
        .ok_or_else(|| ApiError::NotFound(format!("unknown distributor {kind_name:?}")))?;
    state.sessions.inject_panic(&id, kind).await?;
    tracing::warn!(
        session = id,
        distributor = kind_name,
        "fault injected: distributor will panic"
    );
    Ok(HttpResponse::Accepted()
        .json(json!({"injected": "panic", "session": id, "distributor": kind})))
}
