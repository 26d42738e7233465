//! `/api/v1/recordings` and `/api/v1/sessions/{id}/recordings`: recording sessions to
//! MCAP files; `/api/v1/sessions/{id}/replay`: playing a recording into a session
//! (docs/RECORDING.md).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use synopticon_actors::recording::replay::{self, Player, ReplayRequest};
use synopticon_actors::recording::{parse_spec, reader, RecordingInfo};
use synopticon_actors::rules::engine::RuleEngine;
use synopticon_actors::validation::Report;

use super::api::{Answers, Api, Content, Takes};
use super::body::{optional_json, redacted_json};
use super::scope::may_see;
use crate::auth::{Access, Principal, ResourceScope, Role};
use crate::error::ApiError;
use crate::state::AppState;

/// Registers the routes.
pub fn configure(api: &mut Api) {
    api.resource(
        "/api/v1/sessions/{id}/recordings",
        ResourceScope::Session,
        |r| {
            r.get(Access::VIEWER, of_session)
                .post(Access::OPERATOR, start)
                .takes(Takes::Object { required: false })
                .answers(Answers::CREATED)
        },
    );
    api.resource("/api/v1/recordings", ResourceScope::None, |r| {
        r.get(Access::VIEWER, list)
            // A file names its own session: only a token limited to no sessions.
            .post(Access::Unscoped(Role::Operator), import)
            .takes(Takes::Binary(MCAP_TYPES))
            .answers(Answers::CREATED)
    });
    api.resource("/api/v1/recordings/{rid}", ResourceScope::None, |r| {
        r.get(Access::VIEWER, get)
            .delete(Access::OPERATOR, delete)
            .answers(Answers::NO_CONTENT)
    });
    api.resource("/api/v1/recordings/{rid}/stop", ResourceScope::None, |r| {
        r.post(Access::OPERATOR, stop).takes(Takes::Nothing)
    });
    api.resource(
        "/api/v1/recordings/{rid}/download",
        ResourceScope::None,
        |r| {
            r.get(Access::VIEWER, download)
                .answers(Answers::ok(Content::Binary("application/octet-stream")))
        },
    );
    api.resource(
        "/api/v1/sessions/{id}/replay",
        ResourceScope::Session,
        |r| {
            r.get(Access::VIEWER, replay_status)
                .post(Access::OPERATOR, replay_start)
                .answers(Answers::CREATED)
                .delete(Access::OPERATOR, replay_stop)
        },
    );
    api.resource(
        "/api/v1/sessions/{id}/replay/{action}",
        ResourceScope::Session,
        |r| {
            r.post(Access::OPERATOR, replay_control)
                .takes(Takes::Object { required: false })
        },
    );
}

async fn start(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let mut report = Report::default();
    let spec = parse_spec("recording", &optional_json(&req, &body)?, &mut report);
    if !report.is_valid() {
        return Err(ApiError::invalid("invalid recording", report));
    }
    check_recording_scope(&state, &principal, &id, &spec).await?;
    let info = state.sessions.start_recording(&id, spec, None).await?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/recordings/{}", info.id)))
        .json(info))
}

/// A token limited to some sources, devices or events starts only recordings it will see:
/// of a session that hears nothing outside its scope, keeping only events within it.
/// Anything else would take disk and one of `recording.max_active` while answering 404 to
/// the one who started it.
async fn check_recording_scope(
    state: &AppState,
    principal: &Principal,
    id: &str,
    spec: &synopticon_actors::recording::RecordingSpec,
) -> Result<(), ApiError> {
    let scope = &principal.scope;
    if scope.sources.is_none() && scope.devices.is_none() && scope.events.is_none() {
        return Ok(());
    }
    let refuse = |why: String| {
        ApiError::Forbidden(format!(
            "token {:?} is limited; it may record only what it may see: {why}",
            principal.token_id
        ))
    };
    if id == synopticon_actors::system::SYSTEM_SESSION {
        return Err(refuse(
            "the system session hears every source and device".into(),
        ));
    }
    let status = state.sessions.status(id).await?;
    if let Some(s) = status
        .config
        .sources
        .iter()
        .find(|s| !scope.may_name_source(s))
    {
        return Err(refuse(format!("the session hears source {s:?}")));
    }
    if let Some(d) = status
        .config
        .devices
        .iter()
        .find(|d| !scope.may_name_devices(d))
    {
        return Err(refuse(format!("the session hears devices {d:?}")));
    }
    if let Some(e) = spec.events.iter().find(|e| !scope.allows_events(e)) {
        return Err(refuse(format!(
            "events {e:?} reach beyond {:?}; name the events to keep (\"events\")",
            scope.events.clone().unwrap_or_default()
        )));
    }
    Ok(())
}

/// A recording the caller may see ([`may_see`]), or 404, exactly as one that does not exist.
async fn visible(
    state: &AppState,
    principal: &Principal,
    rid: &str,
) -> Result<RecordingInfo, ApiError> {
    let info = state.rails.recordings.get(rid).await?;
    if may_see(&principal.scope, &info) {
        Ok(info)
    } else {
        Err(ApiError::NotFound(format!("recording {rid:?} not found")))
    }
}

/// The recordings a token sees, for a list: without `holds`, which can name thousands
/// of event types (`GET /api/v1/recordings/{rid}` has it).
fn listed(principal: &Principal, all: Vec<RecordingInfo>, session: Option<&str>) -> Vec<Value> {
    all.into_iter()
        .filter(|r| session.is_none_or(|s| r.session == s) && may_see(&principal.scope, r))
        .map(|r| {
            let mut shown = serde_json::to_value(&r).unwrap_or(Value::Null);
            if let Value::Object(fields) = &mut shown {
                fields.remove("holds");
            }
            shown
        })
        .collect()
}

async fn list(state: web::Data<AppState>, principal: Principal) -> Result<HttpResponse, ApiError> {
    let seen = listed(&principal, state.rails.recordings.list().await?, None);
    Ok(HttpResponse::Ok().json(json!({"recordings": seen})))
}

/// What an import takes: MCAP has no registered media type.
const MCAP_TYPES: &[&str] = &["application/octet-stream", "application/x-mcap"];

/// An MCAP file recorded elsewhere (the body, `application/octet-stream`), kept as a
/// finished recording to replay; `?name=` says where it came from.
async fn import(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
    query: web::Query<std::collections::HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    super::body::require_media_type(&req, MCAP_TYPES)?;
    let limit = usize::try_from(
        state
            .settings
            .recording
            .max_import_mb
            .saturating_mul(1 << 20),
    )
    .unwrap_or(usize::MAX);
    let body = super::body::read_body(&req, payload, limit, || {
        ApiError::PayloadTooLarge(format!(
            "the file is larger than recording.max_import_mb ({} MiB)",
            state.settings.recording.max_import_mb
        ))
    })
    .await?;
    let name = query
        .get("name")
        .map(|n| n.chars().take(200).collect::<String>())
        .unwrap_or_else(|| "an upload".into());
    let hub = state.rails.recordings.clone();
    let info = web::block(move || hub.import(&body, &name))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    state.rails.recordings.keep_imported(&info).await?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/recordings/{}", info.id)))
        .json(info))
}

async fn of_session(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let of = listed(&principal, state.rails.recordings.list().await?, Some(&id));
    Ok(HttpResponse::Ok().json(json!({"recordings": of})))
}

async fn get(
    state: web::Data<AppState>,
    principal: Principal,
    rid: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(visible(&state, &principal, &rid).await?))
}

async fn stop(
    state: web::Data<AppState>,
    principal: Principal,
    rid: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    visible(&state, &principal, &rid).await?;
    let info = state
        .rails
        .recordings
        .stop(&rid, "stopped over REST")
        .await?;
    Ok(HttpResponse::Ok().json(info))
}

async fn delete(
    state: web::Data<AppState>,
    principal: Principal,
    rid: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    visible(&state, &principal, &rid).await?;
    state.rails.recordings.delete(&rid).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The `.mcap` file, streamed (a running recording's file is readable up to its last
/// flush).
async fn download(
    state: web::Data<AppState>,
    principal: Principal,
    rid: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    use tokio::io::AsyncReadExt;
    let info = visible(&state, &principal, &rid).await?;
    let path = state
        .rails
        .recordings
        .path(&info)
        .ok_or_else(|| ApiError::NotFound(format!("recording {:?} has no file", info.id)))?;
    let file = tokio::fs::File::open(&path).await.map_err(|e| {
        ApiError::NotFound(format!(
            "the file of recording {:?} cannot be read: {e}",
            info.id
        ))
    })?;
    let length = file
        .metadata()
        .await
        .map(|m| m.len())
        .map_err(|e| ApiError::Internal(format!("the file of recording {:?}: {e}", info.id)))?;
    // A running recording grows. Whose data its first `length` bytes hold was noted before
    // they were written: asked again now, and not a byte more is sent.
    visible(&state, &principal, &rid).await?;
    let chunks = futures_util::stream::unfold(Some(file.take(length)), |file| async move {
        let mut file = file?;
        let mut buf = web::BytesMut::with_capacity(1 << 18);
        match file.read_buf(&mut buf).await {
            Ok(0) => None,
            Ok(_) => Some((Ok::<_, std::io::Error>(buf.freeze()), Some(file))),
            Err(e) => Some((Err(e), None)),
        }
    });
    let mut response = HttpResponse::Ok();
    response
        .content_type("application/octet-stream")
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"{}\"", info.file),
        ))
        .insert_header(("Cache-Control", "no-store"))
        .no_chunking(length);
    Ok(response.streaming(chunks))
}

/// Most frames one re-analysis goes through.
const MAX_REANALYSED_FRAMES: usize = 1_000_000;

async fn replay_start(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let mut report = Report::default();
    let request = replay::parse_request(&optional_json(&req, &body)?, &mut report);
    if !report.is_valid() {
        return Err(ApiError::invalid("invalid replay", report));
    }
    // The session must exist before the recording is read.
    state.sessions.status(&id).await?;
    let info = visible(&state, &principal, &request.recording).await?;
    let path = state
        .rails
        .recordings
        .path(&info)
        .ok_or_else(|| ApiError::NotFound(format!("recording {:?} has no file", info.id)))?;
    let source = match &request.reanalyze {
        Some(source) => Some(super::scope::visible_source(&state, &principal, source)?.config),
        None => None,
    };
    let request_for_cues = request.clone();
    let rules = state.rules.clone();
    let cues = web::block(move || cues(&path, &request_for_cues, source, &rules))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| {
            let mut r = Report::default();
            r.error(e);
            ApiError::invalid("the recording cannot be replayed", r)
        })?;
    // A running recording may have grown while it was read: what was read was noted
    // before it was written, so the token must still see all of it now.
    visible(&state, &principal, &request.recording).await?;
    let player = Player::new(&request, &cues);
    state
        .sessions
        .start_replay(
            &id,
            player.clone(),
            cues,
            request.rate,
            request.looping,
            crate::auth::guard::replay_pace(
                &state.auth,
                crate::auth::guard::address_key(&req),
                principal.clone(),
            ),
        )
        .await?;
    Ok(redacted_json(StatusCode::CREATED, &player.status()))
}

/// The cues of a replay: the recorded events, or what the recorded detections raise
/// through `source`'s configuration now (and the matches of a dry run of the rules).
fn cues(
    path: &std::path::Path,
    request: &ReplayRequest,
    source: Option<synopticon_actors::source::SourceConfig>,
    rules: &RuleEngine,
) -> Result<Vec<replay::Cue>, String> {
    let Some(config) = source else {
        let recorded = reader::read(path, &request.keep(None))?;
        return Ok(replay::cues_of_events(&recorded, request));
    };
    let from = request
        .from_source
        .clone()
        .unwrap_or_else(|| config.id.clone());
    let recorded = reader::read(path, &request.keep(Some(&from)))?;
    let frames = replay::frames_in_window(&recorded, &from, request)?;
    if frames.len() > MAX_REANALYSED_FRAMES {
        return Err(format!(
            "the window holds {} frames; at most {MAX_REANALYSED_FRAMES} are re-analysed at once (narrow it with start_offset_s and duration_s)",
            frames.len()
        ));
    }
    let envelopes: Vec<Value> = frames.iter().map(|f| f.envelope.clone()).collect();
    let id = config.id.clone();
    let mut raised = synopticon_actors::tracker::actor::replay_indexed(config, &envelopes)?;
    if request.rules {
        raised = rules.dry_run(&id, raised);
    }
    Ok(replay::cues_of_reanalysis(&frames, raised, request))
}

/// The player of session `id`, if a recording the token may see plays into it (one it may
/// not see is answered as no replay at all).
async fn player_of(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<std::sync::Arc<Player>, ApiError> {
    let none = || ApiError::NotFound(format!("no recording is playing into session {id:?}"));
    let player = state.sessions.replay(id).await?.ok_or_else(none)?;
    let recording = player.status().recording;
    match state.rails.recordings.get(&recording).await {
        Ok(info) if may_see(&principal.scope, &info) => Ok(player),
        // Deleted while it plays: whoever may see everything may still stop it.
        Err(_) if principal.scope.is_unlimited() => Ok(player),
        _ => Err(none()),
    }
}

async fn replay_status(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(player_of(&state, &principal, &id).await?.status()))
}

async fn replay_stop(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let player = player_of(&state, &principal, &id).await?;
    player.stop();
    Ok(HttpResponse::Ok().json(player.status()))
}

/// `pause`, `resume`, `stop`, or `seek` with `{"position_s": S}`.
async fn replay_control(
    state: web::Data<AppState>,
    principal: Principal,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (id, action) = path.into_inner();
    let player = player_of(&state, &principal, &id).await?;
    match action.as_str() {
        "pause" => player.pause(),
        "resume" => player.resume(),
        "stop" => player.stop(),
        "seek" => {
            let body = optional_json(&req, &body)?;
            let length = player.status().duration_s;
            let Some(position) = body
                .get("position_s")
                .and_then(Value::as_f64)
                .filter(|p| (0.0..=length).contains(p))
            else {
                let mut r = Report::default();
                r.error(format!(
                    "seek.position_s: seconds from the start of the window (0 to {length:.3}), got {}",
                    body.get("position_s").unwrap_or(&Value::Null)
                ));
                return Err(ApiError::invalid("invalid seek", r));
            };
            player.seek(position);
        }
        other => {
            return Err(ApiError::NotFound(format!(
                "no replay action {other:?} (pause, resume, seek, stop)"
            )))
        }
    }
    Ok(HttpResponse::Ok().json(player.status()))
}
