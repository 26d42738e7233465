//! `GET /metrics`: Prometheus text exposition, rendered from the process recorder.

use actix_web::{web, HttpResponse};

use super::api::{Answers, Api, Content};
use crate::auth::{Access, ResourceScope};
use crate::state::AppState;

/// Registers the route.
pub fn configure(api: &mut Api) {
    api.resource("/metrics", ResourceScope::None, |r| {
        r.get(Access::Metrics, render)
            .answers(Answers::ok(Content::Text("text/plain")))
    });
}

async fn render(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}
