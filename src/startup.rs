//! Building and running the server: the same [`Application::build`] serves `main` and the
//! integration tests (which bind port 0).

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpServer};
use anyhow::{bail, Context as _};
use chrono::Utc;
use serde_json::Value;
use synopticon_actors::bus::RedisBus;
use synopticon_actors::devices::registry::{DeviceRegistry, DeviceSettings};
use synopticon_actors::distributor::CloseReason;
use synopticon_actors::inference::actor::ModelState;
use synopticon_actors::inference::ModelHub;
use synopticon_actors::input::{AutoRegistration, Inputs, Processor};
use synopticon_actors::registry::SetRuleEngine;
use synopticon_actors::registry::{RegistrySettings, SessionRegistry};
use synopticon_actors::rules::actions::Context as RuleContext;
use synopticon_actors::rules::engine::RuleEngine;
use synopticon_actors::session::templates::{TemplateOrigin, TemplateStore};
use synopticon_actors::sessions::Sessions;
use synopticon_actors::source::hub::{MediaAccess, SourceError, SourceHub};
use synopticon_actors::source::SourceConfig;
use synopticon_actors::store::{Kind, Store};

use crate::auth::inflight::InFlight;
use crate::auth::rate_limit::Limits;
use crate::auth::state::AuthState;
use crate::auth::tokens::{LiveLimits, TokenRecord, TokenStore};
use crate::configuration::Settings;
use crate::state::AppState;
use crate::{routes, telemetry};

/// How often histogram summaries are maintained.
const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);
/// How long shutdown waits for the recordings' files to be finished.
const RECORDING_FINISH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long shutdown waits for each session to close.
const SESSION_CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often live connections of expired tokens are looked for, at the latest (the sweep
/// also wakes when the next token expires).
const TOKEN_SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Longest wait at shutdown for a model that is still loading.
const MODEL_LOAD_GRACE: Duration = Duration::from_secs(10);

/// A built, bound, not yet running server.
pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
    actors: Arbiter,
}

impl Application {
    /// Validates `settings`, starts the actor system, creates declared sessions and binds
    /// the listener. Must run inside an actix `System`.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let metrics = telemetry::metrics_handle();
        synopticon_actors::distributor::http::install_crypto_provider();
        // The system session's feed: components report into it from the start; its
        // events wait until the session exists.
        let (feed, feed_rx) = if settings.system.session {
            let (feed, rx) = synopticon_actors::system::SystemFeed::channel();
            (feed, Some(rx))
        } else {
            (Default::default(), None)
        };
        let mut rails = settings.guardrails();
        rails.system = feed.clone();
        rails.recordings = synopticon_actors::recording::RecordingHub::new(
            settings.recording_settings(),
            settings
                .inference
                .models
                .iter()
                .map(|m| (m.name.clone(), m.path.clone()))
                .collect(),
        );
        let rails = Arc::new(rails);
        let templates = Arc::new(TemplateStore::with_guardrails(rails.clone()));
        let mut report = templates.load_dir(Path::new(&settings.sessions.templates_dir));
        report.merge(settings.validate(&templates));
        for warning in &report.warnings {
            tracing::warn!(%warning, "configuration warning");
        }
        if !report.is_valid() {
            bail!("invalid configuration:\n  {}", report.errors.join("\n  "));
        }

        let tls = if settings.server.tls() {
            Some(
                crate::tls::server_config(
                    &settings.server.tls_cert_file,
                    &settings.server.tls_key_file,
                )
                .map_err(|e| anyhow::anyhow!("server.tls_cert_file: {e}"))?,
            )
        } else {
            None
        };

        // Bound before any actor or model thread starts: a taken port fails here, with
        // nothing to stop (ONNX Runtime aborts a process that exits while it loads).
        let listener = TcpListener::bind((settings.server.host.as_str(), settings.server.port))
            .with_context(|| {
                format!(
                    "cannot listen on {}:{}",
                    settings.server.host, settings.server.port
                )
            })?;
        let address = listener.local_addr()?;
        rails.egress.set_own_listener(address);

        let store = Arc::new(
            Store::open(&settings.store.settings())
                .await
                .map_err(|e| anyhow::anyhow!(e))?,
        );
        tracing::info!(store = store.name(), engine = ?store.engine(), "store open");
        restore_templates(&store, &templates).await?;
        let kept = kept_tokens(&store, &settings.auth.tokens_file).await?;
        let tokens = Arc::new(
            TokenStore::load(&settings.auth.all_tokens(), kept).map_err(|e| anyhow::anyhow!(e))?,
        );

        let actors = Arbiter::new();
        let registry_settings = RegistrySettings {
            default_template: settings.sessions.default_template.clone(),
            max_sessions: settings.sessions.max_sessions,
            redaction_key: redaction_key(&settings.privacy.redaction_secret)?,
            rails: rails.clone(),
            store: store.clone(),
            session_mailbox: synopticon_actors::session::SESSION_MAILBOX,
        };
        let registry_templates = templates.clone();
        let registry = SessionRegistry::start_in_arbiter(&actors.handle(), move |_| {
            SessionRegistry::new(registry_templates, registry_settings)
        });
        if let Some(rx) = feed_rx {
            actors.spawn(synopticon_actors::system::forward(rx, registry.clone()));
        }
        let request_timeout = Duration::from_millis(settings.server.request_timeout_ms);
        let sessions = Sessions::new(registry.clone(), store.clone(), request_timeout)
            .with_recordings(rails.recordings.clone());
        // Recordings that were running when the server stopped are marked interrupted
        // before any session starts new ones.
        let interrupted = rails
            .recordings
            .attach_store(store.clone())
            .await
            .map_err(|e| anyhow::anyhow!("cannot read the recordings in the store: {e}"))?;
        let mut declared_ids = Vec::new();
        for declared in &settings.sessions.declared {
            let status = sessions
                .declare(declared.clone())
                .await
                .map_err(|e| anyhow::anyhow!("declared session {declared}: {e:?}"))?;
            declared_ids.push(status.id);
        }
        let restored = sessions
            .restore(&declared_ids)
            .await
            .map_err(|e| anyhow::anyhow!("cannot read the sessions in the store: {e}"))?;
        for (id, outcome) in restored {
            match outcome {
                Ok(()) => tracing::info!(session = %id, "session restored"),
                // Kept: a configuration fix (or the peer coming back) brings it back.
                Err(error) => {
                    tracing::error!(session = %id, %error, "a kept session could not start; it stays in the store")
                }
            }
        }

        // Recordings started over REST go on, in a new file that says which it continues.
        for old in interrupted {
            match sessions
                .start_recording(&old.session, old.spec.clone(), Some(old.id.clone()))
                .await
            {
                Ok(new) => {
                    tracing::info!(recording = %new.id, continues = %old.id, session = %old.session, "recording resumed after a restart")
                }
                Err(error) => {
                    tracing::warn!(recording = %old.id, session = %old.session, %error, "an interrupted recording could not go on")
                }
            }
        }

        if settings.system.session {
            crate::system_feed::ensure_session(&sessions)
                .await
                .map_err(|e| anyhow::anyhow!("cannot create the system session: {e}"))?;
        }

        let models = Arc::new(ModelHub::start(&settings.inference, &actors.handle()));
        let sources = Arc::new(
            SourceHub::new(
                actors.handle(),
                registry.clone().recipient(),
                models.clone(),
                settings.server.max_sources,
                // With other users (production, or authentication on), no folders means none.
                MediaAccess::new(
                    &settings.server.media_dirs,
                    settings.server.production() || settings.auth_enabled(),
                ),
                rails.egress.clone(),
            )
            .refusing_timestamps_older_than(
                (settings.server.edge_max_age_secs > 0)
                    .then(|| Duration::from_secs(settings.server.edge_max_age_secs)),
            ),
        );
        // Rules are in place before anything can raise an event: a source or an input
        // started first could have its first crossings pass no rule.
        let rules = Arc::new(RuleEngine::new(
            RuleContext {
                settings: settings.rules.settings(),
                store: store.clone(),
                registry: registry.clone(),
                sources: sources.clone(),
                egress: rails.egress.clone(),
            },
            actors.handle(),
        ));
        start_rules(&store, &rules, &settings.rules.declared).await?;
        registry
            .send(SetRuleEngine(rules.clone()))
            .await
            .map_err(|e| anyhow::anyhow!("the session registry stopped: {e}"))?;
        for declared in &settings.sources {
            if let Err(e) = sources.add(declared.clone()) {
                sources.stop_all();
                wait_for_models(&models).await;
                return Err(match e {
                    SourceError::Invalid(report) => anyhow::anyhow!(
                        "declared source {:?}: {}",
                        declared.id,
                        report.errors.join("; ")
                    ),
                    other => anyhow::anyhow!("declared source {:?}: {other}", declared.id),
                });
            }
        }

        restore_sources(&store, &sources, &settings.sources).await?;

        let bus = match settings.redis.url.as_str() {
            "" => None,
            url => Some(RedisBus::start(url).map_err(|e| anyhow::anyhow!(e))?),
        };
        let devices = Arc::new(DeviceRegistry::new(
            store.clone(),
            registry.clone().recipient(),
            bus.clone(),
            sources.clone(),
            DeviceSettings {
                channel_prefix: settings.devices.channel_prefix.clone(),
                instance: settings.store.instance.clone(),
                max_devices: settings.devices.max_devices,
                reserved_sources: settings.reserved_sources(),
            },
        ));
        let failed = devices
            .start_sources()
            .await
            .map_err(|e| anyhow::anyhow!("cannot read the devices in the store: {e}"))?;
        for (serial, error) in failed {
            // Kept: the device is still registered, and a PATCH (or the stream coming
            // back) starts it.
            tracing::error!(device = %serial, %error, "a device's source could not start");
        }
        let inputs = Arc::new(Inputs::new(
            Arc::new(Processor::new(
                sources.clone(),
                devices.clone(),
                AutoRegistration {
                    max_devices: settings.devices.max_auto_registered,
                    per_minute: settings.devices.auto_registered_per_minute,
                    reserved_sources: settings.reserved_sources(),
                },
            )),
            rails.egress.clone(),
            settings.store.instance.clone(),
            actors.handle(),
        ));
        start_inputs(&store, &inputs, &settings.inputs).await?;

        let auth_enabled = settings.auth_enabled();
        if !auth_enabled && !address.ip().is_loopback() {
            // Loud on purpose: this is the one set-up where anyone on the network can do
            // anything. Logged and written to stderr, which no log filter hides.
            let warning = format!(
                "AUTHENTICATION IS OFF and the server listens on {address}, beyond this machine: anyone who can reach it can create and close sessions, read every live feed and post events. Set auth.enabled = true (or server.mode = \"production\") with tokens, or bind 127.0.0.1."
            );
            tracing::error!(%address, "{warning}");
            eprintln!("\n*** WARNING ***\n{warning}\n");
        }
        if !auth_enabled && !settings.server.local_testing() {
            tracing::warn!(
                "authentication is off (auth.enabled = false) in {} mode",
                settings.server.mode
            );
        }
        let limits = settings
            .rate_limit_enabled()
            .then(|| Limits::new(&settings.rate_limit));
        let workers = match settings.server.workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let max_connections = connection_limit(settings.server.max_connections, workers);
        // Requests in flight and live connections each get a share of the connections the
        // listener holds, so neither can take them all: the rest is for admins, whom the
        // ceilings do not count, and for requests being read.
        let inflight_total = capped(
            "server.max_inflight_requests",
            settings.server.max_inflight_requests,
            max_connections / 4,
        );
        let live_limits = LiveLimits {
            total: capped(
                "live.max_connections",
                settings.live.max_connections,
                max_connections / 2,
            ),
            per_token: settings.live.max_connections_per_token,
            per_address: settings.live.max_connections_per_address,
        };
        // Per token and per address only where requests are limited at all (production);
        // the server-wide ceiling always.
        let inflight = Arc::new(match &limits {
            Some(_) => InFlight::new(
                settings.rate_limit.max_inflight_per_token,
                settings.rate_limit.max_inflight_per_address,
                inflight_total,
            ),
            None => InFlight::new(0, 0, inflight_total),
        });
        let send_timeout = Duration::from_millis(settings.server.send_timeout_ms);

        if settings.udp_ingest.enabled {
            crate::udp_ingest::start(&settings.udp_ingest, sessions.clone(), &actors.handle())
                .await?;
        }
        if settings.system.session {
            actors.spawn(crate::system_feed::watch(crate::system_feed::Watched {
                sessions: sessions.clone(),
                sources: sources.clone(),
                models: models.clone(),
                feed: feed.clone(),
                health_every: Duration::from_secs(settings.system.health_interval_secs),
            }));
        }
        let origins = Arc::new(crate::cors::OriginList::new(&settings.cors_origins()));
        let site = Arc::new(crate::cors::CrossSite {
            hosts: crate::cors::HostList::new(&settings.allowed_hosts()),
            origins: origins.clone(),
        });
        let auth = Arc::new(AuthState {
            enabled: auth_enabled,
            metrics_public: settings.auth.metrics_public,
            tokens,
            limits,
            inflight,
            live_limits,
        });
        let deadlines = crate::auth::inflight::Deadlines {
            body: Duration::from_millis(settings.server.body_timeout_ms),
            answer: Duration::from_millis(settings.server.request_deadline_ms),
        };
        let routes = routes::table(&settings);
        let state = web::Data::new(AppState {
            system: feed,
            sessions,
            store,
            templates,
            request_timeout,
            settings: Arc::new(settings),
            started: Instant::now(),
            started_at: Utc::now(),
            metrics: metrics.clone(),
            models,
            sources,
            devices,
            inputs,
            rules,
            bus,
            auth: auth.clone(),
            rails,
            origins,
            routes,
            openapi: std::sync::OnceLock::new(),
            snapshots: std::sync::Mutex::new(std::collections::HashMap::new()),
        });
        let app_state = state.clone();
        let auth_state = web::Data::from(auth);
        let origins = state.origins.clone();
        let server = HttpServer::new(move || {
            let site = site.clone();
            App::new()
                .app_data(app_state.clone())
                .app_data(auth_state.clone())
                .wrap(actix_web::middleware::from_fn(move |req, next| {
                    crate::auth::inflight::bound(deadlines, req, next)
                }))
                .wrap(crate::cors::layer(origins.clone()))
                // Outermost: a request for another host, or from a page that may not
                // change anything, is refused before CORS or any route sees it.
                .wrap(actix_web::middleware::from_fn(move |req, next| {
                    crate::cors::refuse_cross_site(site.clone(), req, next)
                }))
                .configure(|cfg| {
                    routes::configure(cfg, &app_state.settings);
                })
        })
        .on_connect(move |connection, _| {
            if let Some(tcp) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
                // Live feeds write many small frames: without TCP_NODELAY, Nagle's
                // algorithm and delayed ACKs hold them back for tens of milliseconds.
                if let Err(error) = tcp.set_nodelay(true) {
                    tracing::debug!(%error, "cannot set TCP_NODELAY");
                }
                set_send_timeout(tcp, send_timeout);
            }
        });
        let server = match tls {
            Some(config) => server.listen_rustls_0_23(listener, config)?,
            None => server.listen(listener)?,
        };
        let scheme = if state.settings.server.tls() {
            "https"
        } else {
            "http"
        };
        let server = server
            .workers(workers)
            // Per worker: the total stays within the descriptors the process may open.
            .max_connections(max_connections.div_ceil(workers).max(1))
            .disable_signals()
            .shutdown_timeout(state.settings.server.shutdown_timeout_ms.div_ceil(1000))
            .run();

        let tokens = state.auth.tokens.clone();
        actix_rt::spawn(async move {
            loop {
                // Woken when the next token expires, so its feeds close right then.
                let wait = tokens.until_next_sweep(Utc::now(), TOKEN_SWEEP_INTERVAL);
                actix_rt::time::sleep(wait).await;
                tokens.sweep_expired();
            }
        });
        actix_rt::spawn(async move {
            let mut tick = actix_rt::time::interval(METRICS_UPKEEP_INTERVAL);
            loop {
                tick.tick().await;
                metrics.run_upkeep();
            }
        });
        tracing::info!(%address, workers, max_connections, auth = auth_enabled, "listening on {scheme}://{address}");
        Ok(Application {
            port: address.port(),
            server,
            state,
            actors,
        })
    }

    /// The bound port (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGINT/SIGTERM, then shuts down gracefully.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let state = self.state.clone();
        actix_rt::spawn(async move {
            wait_for_signal().await;
            graceful_shutdown(&state, &handle).await;
        });
        self.server.await?;
        wait_for_models(&self.state.models).await;
        self.actors.stop();
        tracing::info!("stopped");
        Ok(())
    }
}

/// Registers the templates kept in the store; a template file of the same name wins.
async fn restore_templates(store: &Store, templates: &TemplateStore) -> anyhow::Result<()> {
    for (name, body) in store.list(Kind::Template).await? {
        if templates
            .get(&name)
            .is_some_and(|t| t.origin != TemplateOrigin::Api)
        {
            tracing::warn!(template = %name, "a kept template has the name of a built-in or file template, which wins");
            continue;
        }
        if let Err(error) = templates.put(&name, &body, TemplateOrigin::Api) {
            // Kept: a later version (or a changed ceiling) may take it again.
            tracing::error!(template = %name, %error, "a kept template no longer validates; it stays in the store");
        }
    }
    Ok(())
}

/// Starts the sources kept in the store; one declared in the configuration with the same
/// id wins. A source that cannot start is reported and kept.
async fn restore_sources(
    store: &Store,
    sources: &SourceHub,
    declared: &[SourceConfig],
) -> anyhow::Result<()> {
    for (id, mut body) in store.list(Kind::Source).await? {
        if declared.iter().any(|d| d.id == id) {
            tracing::warn!(source = %id, "a kept source has the id of a declared one, which runs");
            continue;
        }
        // Kept before line and zone ids were held to the rule ids follow: renamed, kept.
        let renamed = synopticon_actors::tracker::analytics::migrate_ids(&mut body);
        if !renamed.is_empty() {
            tracing::warn!(source = %id, ?renamed, "line and zone ids of a kept source renamed to the characters ids take");
            store.put(Kind::Source, &id, &body).await?;
        }
        let started = serde_json::from_value::<SourceConfig>(body)
            .map_err(|e| e.to_string())
            .and_then(|config| {
                sources.add(config).map_err(|e| match e {
                    SourceError::Invalid(report) => report.errors.join("; "),
                    other => other.to_string(),
                })
            });
        match started {
            Ok(_) => tracing::info!(source = %id, "source restored"),
            Err(error) => {
                tracing::error!(source = %id, %error, "a kept source could not start; it stays in the store")
            }
        }
    }
    Ok(())
}

/// Puts in force the rules the configuration declares, then those kept in the store.
async fn start_rules(store: &Store, rules: &RuleEngine, declared: &[Value]) -> anyhow::Result<()> {
    start_named(store, Kind::Rule, "rule", declared, |n, b, d| {
        rules.put(n, b, d).map(|_| ())
    })
    .await
}

/// Starts the inputs the configuration declares, then those kept in the store.
async fn start_inputs(store: &Store, inputs: &Inputs, declared: &[Value]) -> anyhow::Result<()> {
    start_named(store, Kind::Input, "input", declared, |n, b, d| {
        inputs.put(n, b, d).map(|_| ())
    })
    .await
}

/// Puts `declared` entries (`name` plus a body) in force, any problem stopping the start,
/// then the ones of `kind` kept in the store: one with a declared one's name is left to the
/// declared one, and one that no longer validates is logged and kept.
async fn start_named<E: std::fmt::Display>(
    store: &Store,
    kind: Kind,
    what: &str,
    declared: &[Value],
    put: impl Fn(&str, &Value, bool) -> Result<(), E>,
) -> anyhow::Result<()> {
    let mut names = Vec::new();
    for entry in declared {
        let (name, body) = crate::configuration::named_entry(entry);
        put(&name, &body, true).map_err(|e| anyhow::anyhow!("declared {what} {name:?}: {e}"))?;
        names.push(name);
    }
    for (name, body) in store.list(kind).await? {
        if names.contains(&name) {
            tracing::warn!(what, %name, "a kept one has the name of a declared one, which is in force");
            continue;
        }
        if let Err(error) = put(&name, &body, false) {
            tracing::error!(what, %name, %error, "a kept one could not be put in force; it stays in the store");
        }
    }
    Ok(())
}

/// The tokens kept in the store; those of a former `auth.tokens_file` are moved into it
/// first (once: a token already in the store is not written again).
async fn kept_tokens(store: &Store, tokens_file: &str) -> anyhow::Result<Vec<TokenRecord>> {
    let parse = |id: &str, body: Value| {
        serde_json::from_value::<TokenRecord>(body)
            .map_err(|e| anyhow::anyhow!("the store holds a token {id:?} it cannot read: {e}"))
    };
    let mut kept = Vec::new();
    for (id, body) in store.list(Kind::Token).await? {
        kept.push(parse(&id, body)?);
    }
    if tokens_file.is_empty() {
        return Ok(kept);
    }
    let bytes = match std::fs::read(tokens_file) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(kept),
        Err(e) => anyhow::bail!("auth.tokens_file {tokens_file}: {e}"),
    };
    let from_file: Vec<TokenRecord> = serde_json::from_slice(&bytes)
        .map_err(|e| anyhow::anyhow!("auth.tokens_file {tokens_file}: {e}"))?;
    let mut moved = 0;
    for record in from_file {
        if kept.iter().any(|k| k.id == record.id) {
            continue;
        }
        let body = serde_json::to_value(&record)?;
        store.put(Kind::Token, &record.id, &body).await?;
        kept.push(record);
        moved += 1;
    }
    if moved > 0 {
        tracing::warn!(
            moved,
            tokens_file,
            "tokens of auth.tokens_file are now kept in the store; the file and the setting can go"
        );
    }
    Ok(kept)
}

/// `wanted`, or `most` when that is lower (said once in the log).
fn capped(key: &str, wanted: usize, most: usize) -> usize {
    let most = most.max(1);
    if wanted > most {
        tracing::warn!(
            key,
            wanted,
            most,
            "{key} is lowered to {most} to fit the connections this process may hold; raise the file descriptor limit (ulimit -n) for more"
        );
    }
    wanted.min(most)
}

/// A client that stops reading (its window stays shut) holds its connection, and the
/// answer in the kernel's buffers, for ever: `TCP_USER_TIMEOUT` has the kernel drop a
/// connection whose data has gone unacknowledged, or unsent for want of window, this long.
#[cfg(target_os = "linux")]
fn set_send_timeout(tcp: &actix_web::rt::net::TcpStream, timeout: Duration) {
    use std::os::fd::AsRawFd;
    let millis = libc::c_uint::try_from(timeout.as_millis()).unwrap_or(libc::c_uint::MAX);
    // SAFETY: setsockopt reads `millis` (a c_uint, as TCP_USER_TIMEOUT takes) for the
    // length given, on a socket this connection owns.
    let set = unsafe {
        libc::setsockopt(
            tcp.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_USER_TIMEOUT,
            (&millis as *const libc::c_uint).cast(),
            std::mem::size_of::<libc::c_uint>() as libc::socklen_t,
        )
    };
    if set != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "cannot set TCP_USER_TIMEOUT");
    }
}

#[cfg(not(target_os = "linux"))]
fn set_send_timeout(_: &actix_web::rt::net::TcpStream, _: Duration) {}

/// Descriptors kept for everything but client connections (files, broker and database
/// sockets, ffmpeg pipes, model files, the listener): a quarter of the limit, at most
/// this many.
const RESERVED_DESCRIPTORS: usize = 256;

/// Connections the listener may hold: `configured`, or, when 0, what the descriptor limit
/// leaves after the reserve (at least one per worker). The soft descriptor limit is raised
/// to the hard one first, as servers do: the default of 1024 is a relic.
fn connection_limit(configured: usize, workers: usize) -> usize {
    let descriptors = raise_descriptor_limit();
    if configured > 0 {
        if descriptors.is_some_and(|d| configured + RESERVED_DESCRIPTORS > d) {
            tracing::warn!(
                configured,
                descriptors,
                "server.max_connections leaves fewer than {RESERVED_DESCRIPTORS} descriptors for everything else"
            );
        }
        return configured;
    }
    match descriptors {
        Some(d) => (d - (d / 4).min(RESERVED_DESCRIPTORS)).max(workers),
        None => 25_000,
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the limit in force.
#[cfg(unix)]
fn raise_descriptor_limit() -> Option<usize> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                tracing::debug!(
                    from = limit.rlim_cur,
                    to = limit.rlim_max,
                    "file descriptor limit raised"
                );
                limit = raised;
            }
        }
    }
    usize::try_from(limit.rlim_cur).ok()
}

#[cfg(not(unix))]
fn raise_descriptor_limit() -> Option<usize> {
    None
}

/// ONNX Runtime aborts the process if it exits while a session is being created: lets a
/// model that is still loading finish first (at most [`MODEL_LOAD_GRACE`]).
async fn wait_for_models(models: &ModelHub) {
    let deadline = Instant::now() + MODEL_LOAD_GRACE;
    while models
        .states()
        .iter()
        .any(|(_, s)| *s == ModelState::Loading)
        && Instant::now() < deadline
    {
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The HMAC key for `hash` redaction: from the configured secret, or random for this run.
fn redaction_key(secret: &str) -> anyhow::Result<Arc<ring::hmac::Key>> {
    use ring::rand::SecureRandom;
    let bytes = if secret.is_empty() {
        let mut random = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut random)
            .map_err(|_| anyhow::anyhow!("the system's random number generator failed"))?;
        random.to_vec()
    } else {
        secret.as_bytes().to_vec()
    };
    Ok(Arc::new(ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        &bytes,
    )))
}

/// Closes every session (clients get close frames and stream ends), then stops the server.
pub async fn graceful_shutdown(state: &AppState, server: &ServerHandle) {
    tracing::info!("shutting down: stopping inputs and sources, closing sessions");
    state.inputs.stop_all();
    state.rules.stop_all();
    state.sources.stop_all();
    // Files finished (with their index) before the sessions go; they go on after a restart.
    state
        .rails
        .recordings
        .stop_all(
            synopticon_actors::recording::hub::SHUTDOWN,
            RECORDING_FINISH_TIMEOUT,
        )
        .await;
    let closed = tokio::time::timeout(
        SESSION_CLOSE_TIMEOUT,
        state.sessions.close_all(CloseReason::ServerShutdown),
    )
    .await
    .unwrap_or_default();
    tracing::info!(sessions = closed, "sessions closed");
    server.stop(true).await;
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use actix_rt::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = actix_rt::signal::ctrl_c() => tracing::info!("SIGINT received"),
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot watch SIGTERM; only SIGINT stops the server");
                let _ = actix_rt::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = actix_rt::signal::ctrl_c().await;
    }
}
