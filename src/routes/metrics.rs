//! `GET /metrics`: Prometheus text exposition, rendered from the process recorder.

use actix_web::{web, HttpResponse};

use super::resource;
use crate::startup::AppState;

/// Registers the route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/metrics").route(web::get().to(render)));
}

async fn render(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}
