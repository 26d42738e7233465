//! The device registry: `POST/GET /api/v1/devices`, `GET/PATCH/DELETE
//! /api/v1/devices/{id}` and `/api/v1/devices/sn/{serial}`, and which devices a session
//! listens to: `PUT /api/v1/sessions/{id}/devices`.
//!
//! A token scoped to some devices (serial globs) finds no other: they are 404 to it, left
//! out of its lists, and their events never reach its live feeds.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};
use synopticon_actors::devices::registry::DeviceChange;
use synopticon_actors::session::spec::parse_serial_patterns;
use synopticon_actors::store::DeviceKey;
use synopticon_actors::validation::Report;

use super::api::{Answers, Api, Takes};
use super::body::redacted_json;
use super::scope::{check_outputs_scope, disclosed};
use crate::audit;
use crate::auth::{Access, Principal, ResourceScope};
use crate::error::ApiError;
use crate::state::AppState;

/// Most devices one page lists.
const MAX_PAGE: usize = 1000;
/// A page when the request names no limit.
const DEFAULT_PAGE: usize = 100;

/// Registers the routes.
pub fn configure(api: &mut Api) {
    api.resource("/api/v1/devices", ResourceScope::None, |r| {
        r.get(Access::VIEWER, list)
            .post(Access::OPERATOR, create)
            .answers(Answers::CREATED)
    });
    api.resource("/api/v1/devices/{id}", ResourceScope::None, |r| {
        r.get(Access::VIEWER, get_by_id)
            .patch(Access::OPERATOR, patch_by_id)
            .delete(Access::OPERATOR, delete_by_id)
            .answers(Answers::NO_CONTENT)
    });
    api.resource("/api/v1/devices/sn/{serial}", ResourceScope::None, |r| {
        r.get(Access::VIEWER, get_by_serial)
            .patch(Access::OPERATOR, patch_by_serial)
            .delete(Access::OPERATOR, delete_by_serial)
            .answers(Answers::NO_CONTENT)
    });
    api.resource(
        "/api/v1/sessions/{id}/devices",
        ResourceScope::Session,
        |r| {
            r.put(Access::OPERATOR, session_devices)
                .takes(Takes::Strings)
        },
    );
}

/// `GET /api/v1/devices` filters and paging.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    kind: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

fn serial(device: &Value) -> &str {
    device["serial"].as_str().unwrap_or_default()
}

/// The device as `principal` may see it.
fn shown(state: &AppState, principal: &Principal, device: &Value) -> Value {
    state
        .devices
        .show(device, |status| disclosed(principal, status))
}

async fn list(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::BadRequest(format!(
            "limit: from 1 to {MAX_PAGE}, got {limit}"
        )));
    }
    let offset = query.offset.unwrap_or(0);
    let matching: Vec<Value> = state
        .devices
        .list()
        .await?
        .into_iter()
        .filter(|d| principal.scope.allows_device(serial(d)))
        .filter(|d| query.kind.as_deref().is_none_or(|k| d["kind"] == k))
        .collect();
    let total = matching.len();
    let page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(|d| shown(&state, &principal, d))
        .collect();
    Ok(redacted_json(
        StatusCode::OK,
        &json!({"devices": page, "total": total, "offset": offset, "limit": limit}),
    ))
}

async fn create(
    state: web::Data<AppState>,
    principal: Principal,
    body: super::body::JsonObject,
) -> Result<HttpResponse, ApiError> {
    if let Some(serial) = body["serial"].as_str() {
        if !principal.scope.allows_device(serial) {
            return Err(ApiError::Forbidden(format!(
                "token {:?} may only register devices whose serial matches {:?}",
                principal.token_id,
                principal.scope.devices.clone().unwrap_or_default()
            )));
        }
    }
    let change = state.devices.create(&body).await?;
    audit::record_change(
        &principal,
        "device.create",
        serial(&change.device),
        &fields_of(&body),
    );
    Ok(answer(&state, &principal, StatusCode::CREATED, change))
}

/// The device named by `key`, or 404 when it is outside the token's scope.
async fn find(
    state: &AppState,
    principal: &Principal,
    key: DeviceKey<'_>,
) -> Result<Value, ApiError> {
    let device = state.devices.get(key).await?;
    if principal.scope.allows_device(serial(&device)) {
        Ok(device)
    } else {
        // The same answer as for a device that does not exist.
        Err(ApiError::NotFound(match key {
            DeviceKey::Id(id) => format!("device {id:?} not found"),
            DeviceKey::Serial(s) => format!("device with serial {s:?} not found"),
        }))
    }
}

async fn get(
    state: web::Data<AppState>,
    principal: Principal,
    key: DeviceKey<'_>,
) -> Result<HttpResponse, ApiError> {
    let device = find(&state, &principal, key).await?;
    Ok(redacted_json(
        StatusCode::OK,
        &shown(&state, &principal, &device),
    ))
}

async fn get_by_id(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    get(state, principal, DeviceKey::Id(&id)).await
}

async fn get_by_serial(
    state: web::Data<AppState>,
    principal: Principal,
    serial: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    get(state, principal, DeviceKey::Serial(&serial)).await
}

async fn patch(
    state: web::Data<AppState>,
    principal: Principal,
    key: DeviceKey<'_>,
    body: Value,
) -> Result<HttpResponse, ApiError> {
    let visible = |serial: &str| principal.scope.allows_device(serial);
    let change = state.devices.patch(key, &body, &visible).await?;
    if !change.events.is_empty() {
        audit::record_change(
            &principal,
            "device.update",
            serial(&change.device),
            &fields_of(&body),
        );
    }
    Ok(answer(&state, &principal, StatusCode::OK, change))
}

async fn patch_by_id(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    body: super::body::JsonObject,
) -> Result<HttpResponse, ApiError> {
    patch(state, principal, DeviceKey::Id(&id), body.into_inner()).await
}

async fn patch_by_serial(
    state: web::Data<AppState>,
    principal: Principal,
    serial: web::Path<String>,
    body: super::body::JsonObject,
) -> Result<HttpResponse, ApiError> {
    patch(
        state,
        principal,
        DeviceKey::Serial(&serial),
        body.into_inner(),
    )
    .await
}

async fn delete(
    state: web::Data<AppState>,
    principal: Principal,
    key: DeviceKey<'_>,
) -> Result<HttpResponse, ApiError> {
    let visible = |serial: &str| principal.scope.allows_device(serial);
    let change = state.devices.delete(key, &visible).await?;
    audit::record(&principal, "device.delete", serial(&change.device));
    Ok(HttpResponse::NoContent().finish())
}

async fn delete_by_id(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    delete(state, principal, DeviceKey::Id(&id)).await
}

async fn delete_by_serial(
    state: web::Data<AppState>,
    principal: Principal,
    serial: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    delete(state, principal, DeviceKey::Serial(&serial)).await
}

/// The device after a change, with the events it raised and, if its source could not
/// follow, why.
fn answer(
    state: &AppState,
    principal: &Principal,
    status: StatusCode,
    change: DeviceChange,
) -> HttpResponse {
    let mut body = shown(state, principal, &change.device);
    body["events"] = json!(change.events);
    if let Some(error) = change.source_error {
        body["stream"]["error"] = Value::String(error);
    }
    redacted_json(status, &body)
}

/// The field names a body sets, for the audit line.
fn fields_of(body: &Value) -> String {
    body.as_object()
        .map(|m| m.keys().cloned().collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

async fn session_devices(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    body: super::body::JsonArray,
) -> Result<HttpResponse, ApiError> {
    let mut report = Report::default();
    let devices = parse_serial_patterns("devices", &body, &mut report);
    if !report.is_valid() {
        return Err(ApiError::invalid("invalid device list", report));
    }
    // A token limited to some devices cannot make a session listen to others.
    if let Some(wider) = devices
        .iter()
        .find(|d| !principal.scope.may_name_devices(d))
    {
        return Err(ApiError::Forbidden(format!(
            "devices: this token may not listen to {wider:?} (allowed: {:?})",
            principal.scope.devices.clone().unwrap_or_default()
        )));
    }
    let target = id.into_inner();
    check_outputs_scope(&state, &principal, &target, None).await?;
    let devices = state.sessions.set_devices(&target, devices).await?;
    audit::record(&principal, "session.devices", &target);
    Ok(HttpResponse::Ok().json(json!({"devices": devices})))
}
